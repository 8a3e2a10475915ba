//! The hub: which live sessions exist on this node, which user and topics each belongs to, and
//! the routing of deliveries to them.
//!
//! The session table is split over several `Shard` actors, each on its own thread, so no
//! single mailbox carries every delivery. A user's sessions all live on the shard chosen by
//! hashing the user id, so a notification goes to exactly one shard; a topic broadcast goes to
//! every shard, each of which sends the one pre-serialised frame to its own subscribers.
//! A shard never waits on a session: it `try_send`s into the session's bounded queue and, when
//! that is full, drops the session and tells it to close with 1013.

mod messages;
mod presence;
mod queue;
mod shard;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr};
use bytestring::ByteString;
use tokio::sync::Notify;

use crate::delivery::Delivery;
use crate::metrics::Metrics;
pub use messages::RegisterError;
use messages::{Deliver, Register, Resync, Shutdown, Subscribe, Unregister, Unsubscribe};
pub use presence::Presence;
pub use queue::{bounded as outbound_queue, QueueReceiver, QueueSender};
use shard::Shard;

/// Identifies one live session on this node.
pub type SessionId = u64;

/// A frame waiting in a session's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// For the user stream: a notification (`seq`) or a badge update (`seq` is `None`).
    User { seq: Option<i64>, frame: ByteString },
    /// For a topic stream.
    Topic {
        topic: Arc<str>,
        seq: i64,
        frame: ByteString,
    },
    /// The node may have missed other nodes' deliveries (its broker subscription was down):
    /// check every stream against the database.
    Resync,
}

/// Lets the hub tell a session to close, even while the session is blocked writing.
#[derive(Debug, Default)]
pub struct SessionSignal {
    notify: Notify,
    code: AtomicU16,
}

impl SessionSignal {
    /// Asks the session to close with `code`; the first reason given wins. Returns whether
    /// this call was the first.
    pub fn kick(&self, code: u16) -> bool {
        let first = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.notify.notify_one();
        first
    }

    /// The close code, if the session has been kicked.
    pub fn code(&self) -> Option<u16> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// Resolves once the session has been kicked, with the close code.
    pub async fn kicked(&self) -> u16 {
        loop {
            let code = self.code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// What the hub holds for a session: where to queue its frames and how to kick it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: Option<Arc<str>>,
    /// The session's outbound queue (`hub/queue.rs`); an idle session's costs a few dozen
    /// bytes.
    pub queue: QueueSender,
    pub signal: Arc<SessionSignal>,
}

/// A session's place in the hub, held by the session for its whole life. Dropping it
/// unregisters the session, so no exit path (an error, a cancelled task, a panic) can leave a
/// registration behind to count against the user's session limit.
pub struct Registration {
    hub: Hub,
    id: SessionId,
    user: Option<Arc<str>>,
}

impl Registration {
    /// The registered session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.id, self.user.as_deref());
    }
}

/// A cheap, cloneable handle to the shards of this node's hub.
#[derive(Clone)]
pub struct Hub {
    shards: Arc<[Addr<Shard>]>,
    presence: Arc<Presence>,
}

impl Hub {
    /// Starts `shards` shard actors, each on its own arbiter thread. Must run inside an actix
    /// system.
    pub fn start(shards: usize, max_sessions_per_user: usize, metrics: Arc<Metrics>) -> Hub {
        let presence = Arc::new(Presence::default());
        let shards: Vec<Addr<Shard>> = (0..shards.max(1))
            .map(|_| {
                let arbiter = crate::priority::delivery_arbiter();
                let presence = presence.clone();
                let metrics = metrics.clone();
                Shard::start_in_arbiter(&arbiter.handle(), move |_| {
                    Shard::new(presence, max_sessions_per_user, metrics)
                })
            })
            .collect();
        Hub {
            shards: shards.into(),
            presence,
        }
    }

    fn shard_index_of_user(&self, user: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        user.hash(&mut hasher);
        (hasher.finish() % self.shards.len() as u64) as usize
    }

    fn shard_of_user(&self, user: &str) -> &Addr<Shard> {
        &self.shards[self.shard_index_of_user(user)]
    }

    fn shard_of(&self, id: SessionId, user: Option<&str>) -> &Addr<Shard> {
        match user {
            Some(user) => self.shard_of_user(user),
            None => &self.shards[(id % self.shards.len() as u64) as usize],
        }
    }

    /// Adds a session; from the moment this returns, every delivery for its user and for
    /// `global` is queued for it. The session stays registered until the returned guard is
    /// dropped, on every path out of the session, a panic included.
    pub async fn register(&self, session: SessionHandle) -> Result<Registration, RegisterError> {
        let id = session.id;
        let user = session.user.clone();
        let shard = self.shard_of(id, user.as_deref());
        shard
            .send(Register { session })
            .await
            .map_err(|_| RegisterError::ShuttingDown)??;
        Ok(Registration {
            hub: self.clone(),
            id,
            user,
        })
    }

    /// Removes a session (it closed). Safe to call for a session the hub already dropped.
    fn unregister(&self, id: SessionId, user: Option<&str>) {
        self.shard_of(id, user).do_send(Unregister { id });
    }

    /// Subscribes a session to a topic; deliveries for it are queued once this returns.
    pub async fn subscribe(&self, id: SessionId, user: Option<&str>, topic: Arc<str>) {
        // A mailbox error means the hub is stopping; the session will be closed anyway.
        let _ = self.shard_of(id, user).send(Subscribe { id, topic }).await;
    }

    /// Stops delivering `topic` to a session.
    pub fn unsubscribe(&self, id: SessionId, user: Option<&str>, topic: Arc<str>) {
        self.shard_of(id, user).do_send(Unsubscribe { id, topic });
    }

    /// Routes deliveries to the shards that hold their sessions, keeping their order.
    pub fn deliver(&self, deliveries: Vec<Delivery>) {
        let mut per_shard: Vec<Vec<Delivery>> = vec![Vec::new(); self.shards.len()];
        for delivery in deliveries {
            match &delivery {
                Delivery::User { user, .. } => {
                    let index = self.shard_index_of_user(user);
                    per_shard[index].push(delivery);
                }
                Delivery::Topic { .. } => {
                    for batch in per_shard.iter_mut() {
                        batch.push(delivery.clone());
                    }
                }
            }
        }
        for (shard, batch) in self.shards.iter().zip(per_shard) {
            if !batch.is_empty() {
                shard.do_send(Deliver { deliveries: batch });
            }
        }
    }

    /// Has every session check its streams against the database: called when this node hears
    /// the other nodes again after a gap, since what they published meanwhile never reached it
    /// and a stream with nothing newer would never show the hole.
    pub fn resync(&self) {
        for shard in self.shards.iter() {
            shard.do_send(Resync);
        }
    }

    /// Closes every session with `code` (shutdown: 1001).
    pub async fn close_all(&self, code: u16) {
        for shard in self.shards.iter() {
            let _ = shard.send(Shutdown { code }).await;
        }
    }

    /// Live session counts on this node.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }
}
