//! Which part of a stream a replay reads, and whether what was read is complete. Shared by
//! every backend, so SQLite and PostgreSQL answer `resumed.complete` by the same rule.

/// Which part of a stream a replay reads, given the stream's latest seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The position the client asked to resume from.
    pub since: i64,
    /// The stream's latest seq when the replay was read.
    pub latest: i64,
    /// Read seqs greater than this (and at most `latest`).
    pub after: i64,
    /// Whether every missed event fits in the window.
    pub whole: bool,
}

impl ReplayWindow {
    /// The window for a client at `since` on a stream at `latest`, carrying at most `limit`
    /// events: the newest `limit` when more were missed.
    pub fn new(since: i64, latest: i64, limit: u64) -> ReplayWindow {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if latest.saturating_sub(since) > limit {
            ReplayWindow {
                since,
                latest,
                after: latest - limit,
                whole: false,
            }
        } else {
            ReplayWindow {
                since,
                latest,
                after: since,
                whole: true,
            }
        }
    }

    /// Whether there is anything to read at all.
    pub fn is_empty(&self) -> bool {
        self.since >= self.latest
    }

    /// Whether a replay that found `found` rows in the window carries every missed event:
    /// none pruned, none beyond the window. A client claiming to be ahead of the stream
    /// (`since > latest`) must refetch.
    pub fn complete(&self, found: usize) -> bool {
        self.since <= self.latest && self.whole && found as i64 == self.latest - self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_keeps_the_newest_when_too_much_was_missed() {
        let w = ReplayWindow::new(10, 15, 100);
        assert_eq!((w.after, w.whole), (10, true));
        assert!(w.complete(5));
        assert!(!w.complete(4), "a pruned row makes it incomplete");
        let w = ReplayWindow::new(0, 5000, 1000);
        assert_eq!((w.after, w.whole), (4000, false));
        assert!(!w.complete(1000));
    }

    #[test]
    fn a_client_ahead_of_the_stream_is_told_to_refetch() {
        let w = ReplayWindow::new(7, 3, 100);
        assert!(w.is_empty());
        assert!(!w.complete(0));
        assert!(ReplayWindow::new(3, 3, 100).complete(0));
    }
}
