//! One shard of the hub: an actor owning part of the session table.
//!
//! Everything here runs on the shard's own thread and never awaits: queuing a frame is a
//! `try_send`, and a session whose queue is full is dropped and kicked with 1013 (it resumes
//! with `since` and loses nothing), so one slow client never delays the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::{Actor, Context, Handler};
use flume::TrySendError;

use super::messages::{
    Deliver, Register, RegisterError, Resync, Shutdown, Subscribe, Unregister, Unsubscribe,
};
use super::{Outbound, Presence, SessionHandle, SessionId};
use crate::delivery::Delivery;
use crate::metrics::Metrics;
use crate::protocol::close;

/// A session as the shard keeps it.
struct Entry {
    handle: SessionHandle,
    /// Topics besides `global`, so that removal can clean the topic index.
    topics: Vec<Arc<str>>,
}

/// Part of the session table: sessions by id, by user and by topic.
pub struct Shard {
    sessions: HashMap<SessionId, Entry>,
    users: HashMap<Arc<str>, Vec<SessionId>>,
    topics: HashMap<Arc<str>, HashSet<SessionId>>,
    presence: Arc<Presence>,
    max_sessions_per_user: usize,
    shutting_down: bool,
    metrics: Arc<Metrics>,
}

impl Shard {
    pub fn new(
        presence: Arc<Presence>,
        max_sessions_per_user: usize,
        metrics: Arc<Metrics>,
    ) -> Shard {
        Shard {
            sessions: HashMap::new(),
            users: HashMap::new(),
            topics: HashMap::new(),
            presence,
            max_sessions_per_user,
            shutting_down: false,
            metrics,
        }
    }

    fn remove(&mut self, id: SessionId) -> Option<Entry> {
        let entry = self.sessions.remove(&id)?;
        if let Some(user) = &entry.handle.user {
            if let Some(ids) = self.users.get_mut(user) {
                ids.retain(|s| *s != id);
                if ids.is_empty() {
                    self.users.remove(user);
                }
            }
        }
        for topic in &entry.topics {
            self.remove_from_topic(id, topic);
        }
        self.presence.session_removed(entry.handle.user.as_deref());
        Some(entry)
    }

    fn remove_from_topic(&mut self, id: SessionId, topic: &Arc<str>) {
        if let Some(ids) = self.topics.get_mut(topic) {
            if ids.remove(&id) {
                self.presence.unsubscribed(topic);
            }
            if ids.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// Queues `item` for session `id`; returns false when the session must be dropped.
    fn offer(&self, entry: &Entry, item: Outbound) -> bool {
        match entry.handle.queue.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if entry.handle.signal.kick(close::TRY_AGAIN_LATER) {
                    self.metrics
                        .slow_consumers
                        .with_label_values(&["queue"])
                        .inc();
                    log::info!(
                        "session {} cannot keep up; closing it with {}",
                        entry.handle.id,
                        close::TRY_AGAIN_LATER
                    );
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Queues one delivery for its sessions; returns how many it was queued for.
    fn deliver(&self, delivery: Delivery, dropped: &mut Vec<SessionId>) -> u64 {
        let mut queued = 0;
        match delivery {
            Delivery::User {
                user, seq, frame, ..
            } => {
                let Some(ids) = self.users.get(&user) else {
                    return 0;
                };
                for id in ids {
                    if let Some(entry) = self.sessions.get(id) {
                        let item = Outbound::User {
                            seq,
                            frame: frame.clone(),
                        };
                        if self.offer(entry, item) {
                            queued += 1;
                        } else {
                            dropped.push(*id);
                        }
                    }
                }
            }
            Delivery::Topic {
                topic, seq, frame, ..
            } => {
                let mut send = |id: &SessionId, entry: &Entry| {
                    let item = Outbound::Topic {
                        topic: topic.clone(),
                        seq,
                        frame: frame.clone(),
                    };
                    if self.offer(entry, item) {
                        queued += 1;
                    } else {
                        dropped.push(*id);
                    }
                };
                if &*topic == crate::model::GLOBAL_TOPIC {
                    for (id, entry) in &self.sessions {
                        send(id, entry);
                    }
                } else if let Some(ids) = self.topics.get(&topic) {
                    for id in ids {
                        if let Some(entry) = self.sessions.get(id) {
                            send(id, entry);
                        }
                    }
                }
            }
        }
        queued
    }
}

impl Actor for Shard {
    type Context = Context<Self>;
}

impl Handler<Register> for Shard {
    type Result = Result<(), RegisterError>;

    /// Adds the session unless its user is at the limit or the node is shutting down.
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        if self.shutting_down {
            return Err(RegisterError::ShuttingDown);
        }
        let handle = msg.session;
        if let Some(user) = &handle.user {
            let ids = self.users.entry(user.clone()).or_default();
            if ids.len() >= self.max_sessions_per_user {
                return Err(RegisterError::TooManySessions(ids.len()));
            }
            ids.push(handle.id);
        }
        self.presence.session_added(handle.user.as_ref());
        self.sessions.insert(
            handle.id,
            Entry {
                handle,
                topics: Vec::new(),
            },
        );
        Ok(())
    }
}

impl Handler<Unregister> for Shard {
    type Result = ();

    /// Forgets a session that ended (no-op if it was already dropped).
    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        self.remove(msg.id);
    }
}

impl Handler<Subscribe> for Shard {
    type Result = ();

    /// Adds the session to the topic's subscribers (`global` needs nothing: every session
    /// receives it).
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        if &*msg.topic == crate::model::GLOBAL_TOPIC {
            return;
        }
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return;
        };
        if self
            .topics
            .entry(msg.topic.clone())
            .or_default()
            .insert(msg.id)
        {
            entry.topics.push(msg.topic.clone());
            self.presence.subscribed(&msg.topic);
        }
    }
}

impl Handler<Unsubscribe> for Shard {
    type Result = ();

    /// Removes the session from the topic's subscribers.
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            entry.topics.retain(|t| *t != msg.topic);
            self.remove_from_topic(msg.id, &msg.topic);
        }
    }
}

impl Handler<Deliver> for Shard {
    type Result = ();

    /// Queues each frame for its sessions; sessions that cannot keep up are dropped.
    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        let mut dropped = Vec::new();
        let (mut to_users, mut to_topics) = (0, 0);
        for delivery in msg.deliveries {
            let published = delivery.published();
            let to_user = matches!(delivery, Delivery::User { .. });
            let queued = self.deliver(delivery, &mut dropped);
            if to_user {
                to_users += queued;
            } else {
                to_topics += queued;
            }
            if let Some(published) = published.filter(|_| queued > 0) {
                self.metrics.delivered_since(published);
            }
        }
        let deliveries = &self.metrics.deliveries;
        deliveries.with_label_values(&["user"]).inc_by(to_users);
        deliveries.with_label_values(&["topic"]).inc_by(to_topics);
        for id in dropped {
            self.remove(id);
        }
    }
}

impl Handler<Resync> for Shard {
    type Result = ();

    /// Asks every session to check its streams; sessions that cannot keep up are dropped.
    fn handle(&mut self, _: Resync, _: &mut Context<Self>) {
        let dropped: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, entry)| !self.offer(entry, Outbound::Resync))
            .map(|(id, _)| *id)
            .collect();
        for id in dropped {
            self.remove(id);
        }
    }
}

impl Handler<Shutdown> for Shard {
    type Result = ();

    /// Kicks every session with the given code and refuses new ones.
    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) {
        self.shutting_down = true;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(entry) = self.remove(id) {
                entry.handle.signal.kick(msg.code);
            }
        }
    }
}
