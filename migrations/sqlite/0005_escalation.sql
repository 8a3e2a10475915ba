-- The offline hook (escalation_webhook): when each user last had a live session, the scan's
-- position, and the notifications waiting to be POSTed. Times are unix milliseconds.

-- Written when a session opens and when it closes (batched, and only while a webhook is
-- configured); a notification is escalated only if its user was not seen since it was created.
CREATE TABLE user_last_seen (
    user_id TEXT PRIMARY KEY NOT NULL,
    seen_at INTEGER NOT NULL
) WITHOUT ROWID;

-- How far the scan for due notifications has got: every notification created at or before
-- `scanned_to` has been considered (NULL until the first scan with a webhook configured).
CREATE TABLE escalation_cursor (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    scanned_to INTEGER
);
INSERT INTO escalation_cursor (singleton, scanned_to) VALUES (1, NULL);

-- The outbox. A row is pending until a POST got a 2xx (or it no longer needs sending); then
-- it stays, `done`, while the scan's look-back still covers its notification, so the scan
-- never queues it twice.
CREATE TABLE escalations (
    notification_id INTEGER PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL,
    published_at    INTEGER NOT NULL,
    done            INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- A node that claimed the row sends it until then; 0: not claimed.
    lease_until     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX escalations_due ON escalations (next_attempt_at) WHERE done = 0;
CREATE INDEX escalations_done ON escalations (published_at) WHERE done = 1;
