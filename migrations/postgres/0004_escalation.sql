-- The offline hook (escalation_webhook): when each user last had a live session, the scan's
-- position, and the notifications waiting to be POSTed. Times are unix milliseconds.

-- Written when a session opens and when it closes (batched, and only while a webhook is
-- configured); a notification is escalated only if its user was not seen since it was created.
CREATE TABLE user_last_seen (
    user_id TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

-- How far the scan for due notifications has got: every notification created at or before
-- `scanned_to` has been considered (NULL until the first scan with a webhook configured). The
-- node that scans holds this row's lock (FOR UPDATE SKIP LOCKED): one scanner at a time.
CREATE TABLE escalation_cursor (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    scanned_to BIGINT
);
INSERT INTO escalation_cursor (singleton, scanned_to) VALUES (1, NULL);

-- The outbox. A row is pending until a POST got a 2xx (or it no longer needs sending); then
-- it stays, `done`, while the scan's look-back still covers its notification, so the scan
-- never queues it twice.
CREATE TABLE escalations (
    notification_id BIGINT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    published_at    BIGINT NOT NULL,
    done            BOOLEAN NOT NULL DEFAULT false,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- A node that claimed the row sends it until then; 0: not claimed.
    lease_until     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX escalations_due ON escalations (next_attempt_at) WHERE NOT done;
CREATE INDEX escalations_done ON escalations (published_at) WHERE done;
