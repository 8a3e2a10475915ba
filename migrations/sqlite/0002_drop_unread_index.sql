-- The unique (user_id, seq) index already serves the per-user unread queries; a second index
-- on the same keys doubled the random page writes of every publish.
DROP INDEX notifications_unread;
