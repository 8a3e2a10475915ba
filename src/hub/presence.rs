//! Live session counts, readable without asking the shards: `POST /publish` reports how many
//! sessions an event reached.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::model::GLOBAL_TOPIC;

/// This node's counts at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub sessions: usize,
    pub users: Vec<(Arc<str>, usize)>,
    pub topics: Vec<(Arc<str>, usize)>,
}

/// Counts kept by the shards as sessions come, go, subscribe and unsubscribe.
#[derive(Debug, Default)]
pub struct Presence {
    sessions: AtomicUsize,
    users: DashMap<Arc<str>, usize>,
    topics: DashMap<Arc<str>, usize>,
}

fn increment(map: &DashMap<Arc<str>, usize>, key: &Arc<str>) {
    *map.entry(key.clone()).or_insert(0) += 1;
}

fn decrement(map: &DashMap<Arc<str>, usize>, key: &str) {
    map.remove_if_mut(key, |_, count| {
        *count = count.saturating_sub(1);
        *count == 0
    });
}

impl Presence {
    pub(super) fn session_added(&self, user: Option<&Arc<str>>) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        if let Some(user) = user {
            increment(&self.users, user);
        }
    }

    pub(super) fn session_removed(&self, user: Option<&str>) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        if let Some(user) = user {
            decrement(&self.users, user);
        }
    }

    pub(super) fn subscribed(&self, topic: &Arc<str>) {
        increment(&self.topics, topic);
    }

    pub(super) fn unsubscribed(&self, topic: &str) {
        decrement(&self.topics, topic);
    }

    /// The counts as they are now, for sharing with other nodes.
    pub fn snapshot(&self) -> Snapshot {
        let copy = |map: &DashMap<Arc<str>, usize>| {
            map.iter()
                .map(|entry| (entry.key().clone(), *entry.value()))
                .collect()
        };
        Snapshot {
            sessions: self.sessions(),
            users: copy(&self.users),
            topics: copy(&self.topics),
        }
    }

    /// Sessions open on this node.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Sessions open for `user`.
    pub fn user_sessions(&self, user: &str) -> usize {
        self.users.get(user).map(|c| *c).unwrap_or(0)
    }

    /// Sessions receiving `topic` (all of them for `global`).
    pub fn topic_sessions(&self, topic: &str) -> usize {
        if topic == GLOBAL_TOPIC {
            return self.sessions();
        }
        self.topics.get(topic).map(|c| *c).unwrap_or(0)
    }
}
