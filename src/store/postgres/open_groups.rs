//! What this node's writer remembers of its recipients' unread grouped notifications, so that
//! a grouped publish neither looks them up nor corrects the badge afterwards (DECISIONS 104).
//!
//! An entry holds every unread grouped notification a user had when the user's state row
//! stood at (`last_seq`, `unread`). Whatever changes a user's unread notifications, on any
//! node, moves one of the two in the same transaction: a publish moves `last_seq` forward
//! (never back), and marking read or retention's removal of an unread notification lowers
//! `unread` without moving `last_seq`. So a run that holds the user's row and finds it where
//! the entry left it knows the entry is still true; otherwise it looks the user up. Should
//! the database disagree all the same (a row changed by hand), the fold's guard or the unique
//! index of open groups refuses the write, and the run is retried with nothing remembered.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;

use lru::LruCache;

use crate::store::plan::{OpenGroup, PublishPlan};

/// Users remembered per node, the most recently published to. An entry is a few hundred
/// bytes per open group, so this bounds the memory to a few MB in the usual case.
const USERS: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => panic!("USERS is not zero"),
};

/// Open groups remembered per user. A user with more is looked up on every grouped run, as
/// if not remembered: a complete entry would cost more to load than the lookup saves.
pub const GROUPS_PER_USER: usize = 32;

/// Where a user's state row stood: (`last_seq`, `unread`).
pub type Position = (i64, i64);

/// One user's unread grouped notifications, by group, at a position of the user's stream.
struct Entry {
    at: Position,
    groups: HashMap<String, OpenGroup>,
}

/// Every user's unread notifications of a group that a lookup found (or `None` for a user
/// who has more than [`GROUPS_PER_USER`]).
pub type Loaded = HashMap<String, Option<Vec<(String, OpenGroup)>>>;

/// The writer's memory of open groups.
pub struct OpenGroups {
    users: LruCache<String, Entry>,
}

impl Default for OpenGroups {
    fn default() -> Self {
        OpenGroups {
            users: LruCache::new(USERS),
        }
    }
}

impl OpenGroups {
    /// Sets in `plan` the open groups of every recipient remembered, and returns where each
    /// remembered recipient's stream must stand for that to be true.
    pub fn recall(&mut self, plan: &mut PublishPlan<'_>) -> HashMap<String, Position> {
        let mut expected = HashMap::new();
        if self.users.is_empty() {
            return expected; // a site that never groups pays nothing more
        }
        let users: Vec<&str> = plan.users.counts().map(|(user, _)| user).collect();
        for user in users {
            if let Some(entry) = self.users.get(user) {
                expected.insert(user.to_string(), entry.at);
            }
        }
        let keys: Vec<(String, String)> = (plan.group_keys().into_iter())
            .map(|(user, group)| (user.to_string(), group.to_string()))
            .collect();
        for (user, group) in keys {
            if let Some(entry) = self.users.peek(&user) {
                plan.set_open(&user, &group, entry.groups.get(&group).cloned());
            }
        }
        expected
    }

    /// After the run committed: what is now true of each recipient. `held` names the
    /// recipients whose entry the run found true, `loaded` what the run looked up.
    pub fn remember(&mut self, plan: &PublishPlan<'_>, held: &HashSet<&str>, mut loaded: Loaded) {
        if self.users.is_empty() && loaded.is_empty() {
            return; // nothing remembered, nothing looked up: nothing to remember
        }
        let mut opened: HashMap<&str, Vec<(&str, &OpenGroup)>> = HashMap::new();
        for (user, group, open) in plan.open_groups() {
            opened.entry(user).or_default().push((group, open));
        }
        for (user, last_seq, unread) in plan.users.positions() {
            let base = match loaded.remove(user) {
                Some(Some(found)) => Some(found.into_iter().collect()),
                Some(None) => None,
                None if held.contains(&user) => self.users.pop(user).map(|entry| entry.groups),
                None => None,
            };
            let Some(mut groups) = base else {
                self.users.pop(user);
                continue;
            };
            for (group, open) in opened.remove(user).unwrap_or_default() {
                groups.insert(group.to_string(), open.clone());
            }
            if groups.len() > GROUPS_PER_USER {
                self.users.pop(user);
                continue;
            }
            let entry = Entry {
                at: (last_seq, unread),
                groups,
            };
            self.users.put(user.to_string(), entry);
        }
    }

    /// Forgets everything: the database disagreed with what was remembered.
    pub fn forget_all(&mut self) {
        self.users.clear();
    }
}
