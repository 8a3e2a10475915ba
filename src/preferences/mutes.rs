//! Every user's preferences, in memory on this node: what publishing and the sessions consult
//! instead of the database. Filled whole at start (and again whenever this node may have missed
//! a change), then kept current one user at a time by [`super::PreferenceService`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::Preferences;
use crate::model::EventInput;

/// One user's mutes, with sets for the look-ups a publish and a broadcast make.
#[derive(Debug)]
struct UserMutes {
    document: Preferences,
    kinds: HashSet<String>,
    groups: HashSet<String>,
    topics: HashSet<String>,
}

impl UserMutes {
    fn new(document: Preferences) -> UserMutes {
        let set = |list: &[String]| list.iter().cloned().collect::<HashSet<_>>();
        UserMutes {
            kinds: set(&document.muted_kinds),
            groups: set(&document.muted_groups),
            topics: set(&document.muted_topics),
            document,
        }
    }

    fn mutes(&self, kind: &str, group: Option<&str>) -> bool {
        self.kinds.contains(kind) || group.is_some_and(|g| self.groups.contains(g))
    }
}

/// The preferences of every user who has any. Users without an entry have muted nothing.
#[derive(Debug, Default)]
pub struct Mutes {
    users: RwLock<HashMap<Arc<str>, Arc<UserMutes>>>,
    /// Users with at least one muted topic: while it is 0, a broadcast needs no look-up.
    topic_muters: AtomicUsize,
}

impl Mutes {
    /// Replaces everything with `all` (at start, and after this node may have missed changes).
    pub fn replace_all(&self, all: Vec<(String, Preferences)>) {
        let users: HashMap<Arc<str>, Arc<UserMutes>> = all
            .into_iter()
            .filter(|(_, document)| !document.is_empty())
            .map(|(user, document)| (Arc::from(user), Arc::new(UserMutes::new(document))))
            .collect();
        let topic_muters = users.values().filter(|m| !m.topics.is_empty()).count();
        if let Ok(mut table) = self.users.write() {
            *table = users;
            self.topic_muters.store(topic_muters, Ordering::Release);
        }
    }

    /// Sets one user's preferences (`None`, or an empty document: nothing muted).
    pub fn set(&self, user: &str, document: Option<Preferences>) {
        let entry = document
            .filter(|d| !d.is_empty())
            .map(|d| Arc::new(UserMutes::new(d)));
        let Ok(mut table) = self.users.write() else {
            return;
        };
        let had_topics = table.get(user).is_some_and(|m| !m.topics.is_empty());
        let has_topics = entry.as_ref().is_some_and(|m| !m.topics.is_empty());
        match entry {
            Some(entry) => table.insert(Arc::from(user), entry),
            None => table.remove(user),
        };
        match (had_topics, has_topics) {
            (false, true) => self.topic_muters.fetch_add(1, Ordering::AcqRel),
            (true, false) => self.topic_muters.fetch_sub(1, Ordering::AcqRel),
            _ => 0,
        };
    }

    /// The user's preferences (empty when they have none).
    pub fn get(&self, user: &str) -> Preferences {
        self.users
            .read()
            .ok()
            .and_then(|table| table.get(user).map(|m| m.document.clone()))
            .unwrap_or_default()
    }

    /// Users with preferences.
    pub fn len(&self) -> usize {
        self.users.read().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes from each notification the recipients who muted its kind or its group, and
    /// returns how many (event, recipient) pairs that removed.
    pub fn drop_muted(&self, events: &mut [EventInput]) -> usize {
        let Ok(table) = self.users.read() else {
            return 0;
        };
        if table.is_empty() {
            return 0;
        }
        let mut muted = 0;
        for event in events {
            let EventInput::Notification(n) = event else {
                continue;
            };
            let group = n.group.as_deref();
            let before = n.to.len();
            n.to.retain(|user| {
                !table
                    .get(user.as_str())
                    .is_some_and(|m| m.mutes(&n.kind, group))
            });
            muted += before - n.to.len();
        }
        muted
    }

    /// Whether `user` muted `topic`.
    pub fn mutes_topic(&self, user: &str, topic: &str) -> bool {
        if self.topic_muters.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.users
            .read()
            .ok()
            .and_then(|table| table.get(user).map(|m| m.topics.contains(topic)))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_events;
    use serde_json::json;

    fn prefs(kinds: &[&str], groups: &[&str], topics: &[&str]) -> Preferences {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Preferences {
            muted_kinds: list(kinds),
            muted_groups: list(groups),
            muted_topics: list(topics),
        }
    }

    #[test]
    fn muted_recipients_are_dropped_and_counted() -> Result<(), crate::model::FieldError> {
        let mutes = Mutes::default();
        mutes.set("1", Some(prefs(&["follow"], &[], &[])));
        mutes.set("2", Some(prefs(&[], &["like:article:9"], &[])));
        let mut events = parse_events(&json!([
            {"to": ["1", "2", "3"], "kind": "follow"},
            {"to": ["1", "2", "3"], "kind": "like", "group": "like:article:9"},
            {"to": ["1", "2"], "kind": "like", "group": "like:article:8"},
        ]))?;
        assert_eq!(mutes.drop_muted(&mut events), 2);
        let recipients: Vec<Vec<String>> = events
            .iter()
            .map(|e| match e {
                EventInput::Notification(n) => n.to.clone(),
                EventInput::Broadcast(_) => Vec::new(),
            })
            .collect();
        assert_eq!(recipients, [vec!["2", "3"], vec!["1", "3"], vec!["1", "2"]]);
        Ok(())
    }

    #[test]
    fn topic_mutes_follow_every_change() {
        let mutes = Mutes::default();
        assert!(!mutes.mutes_topic("1", "article:7"));
        mutes.set("1", Some(prefs(&[], &[], &["article:7"])));
        assert!(mutes.mutes_topic("1", "article:7"));
        assert!(!mutes.mutes_topic("2", "article:7"));
        mutes.set("1", Some(prefs(&["like"], &[], &[])));
        assert!(!mutes.mutes_topic("1", "article:7"));
        assert_eq!(mutes.topic_muters.load(Ordering::Acquire), 0);
        mutes.replace_all(vec![
            ("2".into(), prefs(&[], &[], &["article:7"])),
            ("3".into(), Preferences::default()),
        ]);
        assert!(mutes.mutes_topic("2", "article:7"));
        assert_eq!(mutes.len(), 1);
        mutes.set("2", None);
        assert!(mutes.is_empty());
        assert_eq!(mutes.topic_muters.load(Ordering::Acquire), 0);
    }
}
