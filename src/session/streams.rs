//! Where a session stands in each stream it receives: the last `seq` the client has, and the
//! run of seqs this session itself sent, so that a resume never sends one of those again.

use std::sync::Arc;

use crate::model::GLOBAL_TOPIC;

/// A session's place in one stream. The client has had every seq in `from..=last` (sent by
/// this session, live or replayed, or claimed by its `since`), and nothing after `last`.
/// Unknown until the first frame, a replay or a `subscribed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    last: Option<i64>,
    /// Where the run that ends at `last` started; `None` until this session sends (or a
    /// resume claims) something on the stream.
    from: Option<i64>,
}

impl Position {
    /// A position at `seq`, with nothing sent yet: the client is not owed anything up to it.
    pub fn at(seq: i64) -> Position {
        Position {
            last: Some(seq),
            from: None,
        }
    }

    /// The last seq sent (0 when unknown).
    pub fn last(&self) -> i64 {
        self.last.unwrap_or(0)
    }

    /// The last seq sent, if the position is known at all.
    pub fn known(&self) -> Option<i64> {
        self.last
    }

    /// Whether `seq` skips over events the client has not had.
    pub fn is_behind(&self, seq: i64) -> bool {
        self.last.is_some_and(|last| seq > last + 1)
    }

    /// Moves to `seq` if it is new; false for a duplicate (already sent).
    pub fn advance(&mut self, seq: i64) -> bool {
        match self.last {
            Some(last) if seq <= last => false,
            _ => {
                self.from.get_or_insert(seq);
                self.last = Some(seq);
                true
            }
        }
    }

    /// Owes the client nothing up to `seq` (a `subscribed` at the topic's latest seq), keeping
    /// the run already sent.
    pub fn skip_to(&mut self, seq: i64) {
        self.last = Some(self.last.map_or(seq, |last| last.max(seq)));
    }

    /// Starts a resume from the client's `since`: what to replay, given what it already has.
    pub fn resume(&self, since: i64) -> Resume {
        let sent = match (self.from, self.last) {
            (Some(from), Some(last)) => Some((from, last)),
            _ => None,
        };
        Resume { since, sent }
    }

    /// After a replay that read the stream up to `latest`: the client now has everything
    /// from `since + 1` (when resuming) to `latest`, plus what it had before.
    pub fn replayed(&mut self, resumed_from: Option<i64>, latest: i64) {
        self.skip_to(latest);
        let last = self.last();
        if let Some(since) = resumed_from {
            // A client ahead of the stream (`since` past `latest`) has had nothing from this
            // session yet: the run starts with the next seq sent.
            let start = since.saturating_add(1).min(last.saturating_add(1));
            self.from = Some(self.from.map_or(start, |from| from.min(start)));
        }
    }
}

/// Which replayed seqs a resume sends: those after the client's `since` that this session has
/// not already sent it (live broadcasts that came between connecting and the `subscribe`).
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    since: i64,
    sent: Option<(i64, i64)>,
}

impl Resume {
    /// Whether the client still needs `seq`.
    pub fn wants(&self, seq: i64) -> bool {
        seq > self.since
            && !self
                .sent
                .is_some_and(|(from, last)| (from..=last).contains(&seq))
    }
}

/// The topics a session receives, with its position in each. `global` is always first.
#[derive(Debug)]
pub struct Topics {
    entries: Vec<(Arc<str>, Position)>,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            entries: vec![(Arc::from(GLOBAL_TOPIC), Position::default())],
        }
    }
}

impl Topics {
    pub fn contains(&self, topic: &str) -> bool {
        self.entries.iter().any(|(t, _)| &**t == topic)
    }

    /// Topics besides `global`.
    pub fn len(&self) -> usize {
        self.entries.len() - 1
    }

    pub fn add(&mut self, topic: Arc<str>) {
        if !self.contains(&topic) {
            self.entries.push((topic, Position::default()));
        }
    }

    /// Removes a topic (never `global`); false if it was not there.
    pub fn remove(&mut self, topic: &str) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|(t, _)| &**t == GLOBAL_TOPIC || &**t != topic);
        self.entries.len() != before
    }

    pub fn position(&self, topic: &str) -> Option<Position> {
        self.entries
            .iter()
            .find(|(t, _)| &**t == topic)
            .map(|(_, p)| *p)
    }

    /// The topics whose position is known, with it.
    pub fn known(&self) -> Vec<(Arc<str>, i64)> {
        self.entries
            .iter()
            .filter_map(|(t, p)| p.known().map(|last| (t.clone(), last)))
            .collect()
    }

    pub fn position_mut(&mut self, topic: &str) -> Option<&mut Position> {
        self.entries
            .iter_mut()
            .find(|(t, _)| &**t == topic)
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_drop_duplicates_and_see_gaps() {
        let mut p = Position::at(5);
        assert!(!p.advance(5));
        assert!(!p.advance(3));
        assert!(!p.is_behind(6));
        assert!(p.is_behind(7));
        assert!(p.advance(6));
        let mut unknown = Position::default();
        assert!(!unknown.is_behind(100));
        assert!(unknown.advance(100));
        assert!(!unknown.advance(100));
    }

    #[test]
    fn a_resume_skips_what_this_session_sent_live() {
        // Broadcasts 8 and 9 went out live before the client asked to resume from 5.
        let mut p = Position::default();
        assert!(p.advance(8));
        assert!(p.advance(9));
        let resume = p.resume(5);
        let wanted: Vec<i64> = (1..=10).filter(|&s| resume.wants(s)).collect();
        assert_eq!(wanted, vec![6, 7, 10]);
        p.replayed(Some(5), 10);
        assert_eq!(p.last(), 10);
        // Asking again from 0 wants only what neither the resume nor the live run covered.
        let again = p.resume(0);
        let wanted: Vec<i64> = (1..=10).filter(|&s| again.wants(s)).collect();
        assert_eq!(wanted, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_position_set_without_sending_owes_nothing_up_to_it() {
        let mut p = Position::at(4);
        let resume = p.resume(1);
        assert!((2..=4).all(|s| resume.wants(s)));
        assert!(p.advance(5));
        let resume = p.resume(1);
        assert!(resume.wants(4));
        assert!(!resume.wants(5));
    }

    #[test]
    fn global_is_always_there() {
        let mut topics = Topics::default();
        assert!(topics.contains("global"));
        assert_eq!(topics.len(), 0);
        topics.add(Arc::from("article:1"));
        assert_eq!(topics.len(), 1);
        assert!(!topics.remove("global"));
        assert!(topics.remove("article:1"));
        assert!(topics.position("article:1").is_none());
    }
}
