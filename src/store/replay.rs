//! Which part of a stream a replay reads, and whether what was read is complete. Shared by
//! every backend, so SQLite and PostgreSQL answer `resumed.complete` by the same rule.

use super::Replay;

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

/// A replay of a user's stream. An event folding into a grouped notification moves it to a
/// new seq and leaves its old seq empty, so the rows cannot be counted as [`ReplayWindow`]
/// does: the replay is complete unless retention removed a seq after `since` (`pruned` is the
/// highest it removed), or more notifications were missed than one replay carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseWindow {
    /// The position the client asked to resume from.
    pub since: i64,
    /// The stream's latest seq when the replay was read.
    pub latest: i64,
    /// The highest seq retention removed from the stream.
    pub pruned: i64,
}

impl SparseWindow {
    /// The window for a client at `since`, given the stream's `(last_seq, pruned_seq)` as
    /// read from its state row (none: the user never received anything).
    pub fn of(since: i64, state: Option<(i64, i64)>) -> SparseWindow {
        let (latest, pruned) = state.unwrap_or((0, 0));
        SparseWindow {
            since,
            latest,
            pruned,
        }
    }

    /// Whether there is anything to read at all.
    pub fn is_empty(&self) -> bool {
        self.since >= self.latest
    }

    /// How many rows to read, newest first, for a replay of at most `limit`: one more, which
    /// tells that some were left out.
    pub fn rows_to_read(limit: u64) -> i64 {
        i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
    }

    /// The replay of `newest_first` (read with [`SparseWindow::rows_to_read`]), oldest first,
    /// keeping the newest `limit`.
    pub fn finish<T>(&self, mut newest_first: Vec<T>, limit: u64) -> Replay<T> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let overflow = newest_first.len() > limit;
        newest_first.truncate(limit);
        newest_first.reverse();
        Replay {
            items: newest_first,
            // A client claiming to be ahead of the stream must refetch.
            complete: self.since <= self.latest && self.since >= self.pruned && !overflow,
            latest: self.latest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_left_behind_by_updates_do_not_make_a_replay_incomplete() {
        let window = SparseWindow {
            since: 2,
            latest: 9,
            pruned: 0,
        };
        // Seqs 3..=9, of which only 5 and 9 still hold a notification.
        let replay = window.finish(vec![9, 5], 10);
        assert_eq!(replay.items, vec![5, 9]);
        assert!(replay.complete);
        let pruned = SparseWindow {
            pruned: 4,
            ..window
        };
        assert!(!pruned.finish(vec![9, 5], 10).complete);
        let pruned_before = SparseWindow {
            pruned: 2,
            ..window
        };
        assert!(pruned_before.finish(vec![9, 5], 10).complete);
        let overflow = window.finish(vec![9, 5, 4], 2);
        assert_eq!((overflow.items, overflow.complete), (vec![5, 9], false));
        let ahead = SparseWindow {
            since: 10,
            ..window
        };
        assert!(!ahead.finish(Vec::<i64>::new(), 10).complete);
    }

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
