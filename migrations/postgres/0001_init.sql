-- informd schema (PostgreSQL). Times are unix milliseconds; JSON fields are stored as text,
-- exactly as published (jsonb would reorder keys and reformat numbers).

-- One row per user who ever received a notification: the stream position and the badge.
-- A publish moves it forward with an upsert, which locks the row until the publish commits:
-- that lock is what makes `seq` gapless and the badge exact across nodes.
CREATE TABLE user_state (
    user_id  TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    unread   BIGINT NOT NULL
);

-- Ids unique across notifications and broadcasts. A sequence, not a counter row: ids need
-- only be unique, and a counter row would make every publish on every node wait for the one
-- before it.
CREATE SEQUENCE event_ids;

CREATE TABLE notifications (
    id         BIGINT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT,
    subject    TEXT,
    data       TEXT,
    created_at BIGINT NOT NULL,
    read       BOOLEAN NOT NULL DEFAULT false,
    UNIQUE (user_id, seq)
);
CREATE INDEX notifications_created ON notifications (created_at);

-- The same per topic.
CREATE TABLE topic_state (
    topic    TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE broadcasts (
    id         BIGINT PRIMARY KEY,
    topic      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    data       TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (topic, seq)
);
CREATE INDEX broadcasts_created ON broadcasts (created_at);

-- The primary key makes a key unique across nodes: a second publish with the same key waits
-- for the first to commit, then finds it taken.
CREATE TABLE idempotency_keys (
    key             TEXT PRIMARY KEY,
    body_hash       BYTEA NOT NULL,
    ids             TEXT NOT NULL,
    recipients      BIGINT NOT NULL,
    online_sessions BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at);
