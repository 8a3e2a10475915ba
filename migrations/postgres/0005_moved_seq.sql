-- An update of an unread grouped notification (a fold) moves it to a new position in its
-- user's stream. The position it moved to goes in `moved_seq`, which no index holds, so the
-- update is a heap-only (HOT) one: no new entry in any index, and the old version is cleared
-- from its page without a vacuum. `seq` keeps the position the row was inserted at until the
-- row is read, when `moved_seq` is folded into it. So a row stands at
-- `coalesce(moved_seq, seq)`, and `moved_seq` is set only on unread grouped rows, which
-- `notifications_open_group` lists per user. (Adding a nullable column rewrites no row.)
-- DECISIONS 108.
ALTER TABLE notifications ADD COLUMN moved_seq BIGINT;
