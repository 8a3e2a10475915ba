-- informd schema (SQLite). Times are unix milliseconds; JSON fields are stored as text.

-- One row per user who ever received a notification: the stream position and the badge,
-- updated in the same transaction as the notification rows they count.
CREATE TABLE user_state (
    user_id  TEXT PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL,
    unread   INTEGER NOT NULL
) WITHOUT ROWID;

-- Ids unique across notifications and broadcasts come from this one counter.
CREATE TABLE id_counter (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    next_id   INTEGER NOT NULL
);
INSERT INTO id_counter (singleton, next_id) VALUES (1, 1);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT,
    subject    TEXT,
    data       TEXT,
    created_at INTEGER NOT NULL,
    read       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, seq)
);
CREATE INDEX notifications_unread ON notifications (user_id, seq) WHERE read = 0;
CREATE INDEX notifications_created ON notifications (created_at);

CREATE TABLE topic_state (
    topic    TEXT PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE broadcasts (
    id         INTEGER PRIMARY KEY NOT NULL,
    topic      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    data       TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (topic, seq)
);
CREATE INDEX broadcasts_created ON broadcasts (created_at);

CREATE TABLE idempotency_keys (
    key             TEXT PRIMARY KEY NOT NULL,
    body_hash       BLOB NOT NULL,
    ids             TEXT NOT NULL,
    recipients      INTEGER NOT NULL,
    online_sessions INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at);
