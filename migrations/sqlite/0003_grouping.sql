-- Grouping (issue 10). While unread, one notification stands for every event of its `group`
-- published to its user: `event_count` events, the latest distinct `actors` (a JSON array;
-- NULL on a row never grouped, which lists its one `actor`), changed last at `updated_at`
-- (NULL: never, so `created_at`). Plain rows keep the defaults, so a plain publish writes
-- nothing more than before.
ALTER TABLE notifications ADD COLUMN group_key TEXT;
ALTER TABLE notifications ADD COLUMN event_count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE notifications ADD COLUMN actors TEXT;
ALTER TABLE notifications ADD COLUMN updated_at INTEGER;

-- At most one unread notification per user and group, whatever the code does; also how a
-- publish finds it.
CREATE UNIQUE INDEX notifications_open_group ON notifications (user_id, group_key)
    WHERE group_key IS NOT NULL AND read = 0;

-- An update moves a notification to a new seq and leaves its old one empty, so a replay can
-- no longer count rows to tell whether retention removed some: the highest seq retention
-- removed from the user's stream tells it instead.
ALTER TABLE user_state ADD COLUMN pruned_seq INTEGER NOT NULL DEFAULT 0;
