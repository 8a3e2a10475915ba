-- What each user muted (GET/PUT /api/preferences): one JSON document per user who has any.
-- Every node keeps them all in memory; this table is the record they are read from.
CREATE TABLE preferences (
    user_id    TEXT PRIMARY KEY NOT NULL,
    document   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- How many (event, recipient) pairs a publish left out because they were muted, so that an
-- idempotent repeat answers the same `muted`.
ALTER TABLE idempotency_keys ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
