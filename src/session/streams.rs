//! Where a session stands in each stream it receives: the last `seq` it sent the client.

use std::sync::Arc;

use crate::model::GLOBAL_TOPIC;

/// The last seq sent on one stream; unknown until the first frame or replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    last: Option<i64>,
}

impl Position {
    /// A position at `seq`.
    pub fn at(seq: i64) -> Position {
        Position { last: Some(seq) }
    }

    /// The last seq sent (0 when unknown).
    pub fn last(&self) -> i64 {
        self.last.unwrap_or(0)
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
                self.last = Some(seq);
                true
            }
        }
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
