//! Cross-node fan-out. The store commits on one node; the broker carries what changed to the
//! hub of every node, so that each live session, wherever it is connected, receives it once.
//!
//! [`Fanout`] sits between the two: it receives committed [`Change`]s from the store, turns each
//! into a ready-to-send frame (serialised once, here, on the committing node) and gives the
//! resulting [`Delivery`]s to the [`Broker`]. The memory broker hands them straight to the
//! local hub; a Redis broker (many nodes) publishes them to every node's hub.

mod memory;
mod online;
pub(crate) mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::online::{LocalOnline, OnlineCounts};
use crate::store::{Change, CommitListener};

pub use crate::delivery::Delivery;
pub use memory::MemoryBroker;
pub use online::RedisOnline;
pub use redis::RedisBroker;

/// Why the broker is not usable.
#[derive(Debug, thiserror::Error)]
#[error("broker: {0}")]
pub struct BrokerError(pub String);

/// Carries deliveries to the hubs of all nodes. Implementations must keep the order of
/// deliveries from one node, and must not block the caller (the store's writer).
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sends the deliveries to every node's hub (including this node's).
    fn publish(&self, deliveries: Vec<Delivery>);
    /// Whether the broker is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), BrokerError>;
}

/// The store's [`CommitListener`]: turns committed changes into deliveries for the broker.
///
/// Serialising the frames happens on a thread of its own, fed in commit order through a
/// channel, so the store's writer can start the next transaction at once instead of
/// formatting thousands of frames first.
pub struct Fanout {
    changes: mpsc::UnboundedSender<Vec<Change>>,
}

impl Fanout {
    /// Starts the fan-out thread. Must run inside an actix system.
    pub fn start(broker: Arc<dyn Broker>) -> Fanout {
        let (changes, mut queue) = mpsc::unbounded_channel::<Vec<Change>>();
        let arbiter = crate::priority::delivery_arbiter();
        arbiter.spawn(async move {
            while let Some(batch) = queue.recv().await {
                let deliveries = batch.iter().map(Delivery::from_change).collect();
                broker.publish(deliveries);
            }
        });
        Fanout { changes }
    }
}

impl CommitListener for Fanout {
    fn committed(&self, changes: Vec<Change>) {
        if self.changes.send(changes).is_err() {
            log::warn!("fan-out thread is gone; committed events reach sessions on resume only");
        }
    }
}

/// What `broker` sets up: the fan-out, and the session counts that go with it.
pub struct Opened {
    pub broker: Arc<dyn Broker>,
    pub online: Arc<dyn OnlineCounts>,
}

/// Opens the broker that `broker` names (`memory`, or a `redis://` URL) over the local hub.
pub fn open(config: &Config, hub: Hub, metrics: Arc<Metrics>) -> Result<Opened, BrokerError> {
    match config.broker.as_str() {
        "memory" => Ok(Opened {
            broker: Arc::new(MemoryBroker::new(hub.clone())),
            online: LocalOnline::new(hub),
        }),
        url => {
            let broker =
                RedisBroker::start(url, &config.broker_prefix, hub.clone(), metrics.clone())?;
            let online = RedisOnline::start(
                broker.client(),
                &config.broker_prefix,
                broker.node().to_string(),
                hub,
                metrics,
            );
            Ok(Opened {
                broker: Arc::new(broker),
                online,
            })
        }
    }
}
