//! Fan-out between nodes over Redis pub/sub.
//!
//! Every node delivers what it commits to its own hub directly, and publishes it, in commit
//! order, on one channel (`{broker_prefix}:deliveries`) that every node subscribes to; a node
//! ignores its own messages. A node holds what it could not publish while Redis was away and
//! sends it once Redis is back. Pub/sub keeps nothing: a message that a subscriber misses
//! (Redis restarting, a dropped connection, a slow subscriber cut off by Redis) is not retried.
//! When a node subscribes again its sessions read their streams from the database past the
//! place they reached; in between, a session notices a hole in `seq` at the next delivery of
//! its stream, and a client that reconnects resumes with `since`. The database is the record,
//! Redis only says "look now". See docs/DECISIONS.md.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytestring::ByteString;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Broker, BrokerError, Delivery};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// How long connecting to Redis, or one command, may take.
pub(crate) const REDIS_WAIT: Duration = Duration::from_secs(2);
/// First and longest pause between attempts to reach Redis again.
pub(crate) const RETRY_FIRST: Duration = Duration::from_millis(100);
pub(crate) const RETRY_MOST: Duration = Duration::from_secs(5);

/// Fan-out to the hubs of every node through Redis.
pub struct RedisBroker {
    hub: Hub,
    client: redis::Client,
    node: String,
    outgoing: mpsc::UnboundedSender<Vec<Delivery>>,
    /// Whether this node hears the other nodes now.
    subscriber: Arc<Reachability>,
}

/// What goes over the channel: who sent it, and the deliveries of one commit.
#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    deliveries: Vec<WireDelivery>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "lowercase")]
enum WireDelivery {
    User {
        user: String,
        seq: Option<i64>,
        frame: String,
        published_ms: Option<u64>,
    },
    Topic {
        topic: String,
        seq: i64,
        frame: String,
        published_ms: u64,
    },
}

impl RedisBroker {
    /// Starts the publishing and subscribing tasks on an arbiter of their own. Redis need not
    /// be up yet: both keep trying, and `/readyz` says 503 until it answers.
    pub fn start(
        url: &str,
        prefix: &str,
        hub: Hub,
        metrics: Arc<Metrics>,
    ) -> Result<RedisBroker, BrokerError> {
        let client = redis::Client::open(url)
            .map_err(|e| BrokerError(format!("{}: {e}", crate::config::redact_url(url))))?;
        let node = node_id();
        let channel = format!("{prefix}:deliveries");
        let (outgoing, queue) = mpsc::unbounded_channel();
        let subscriber = Arc::new(Reachability::new("the subscriber"));
        let arbiter = actix::Arbiter::new();
        arbiter.spawn(publish_loop(
            client.clone(),
            channel.clone(),
            node.clone(),
            queue,
            metrics.clone(),
        ));
        arbiter.spawn(subscribe_loop(
            client.clone(),
            channel,
            node.clone(),
            hub.clone(),
            metrics,
            subscriber.clone(),
        ));
        Ok(RedisBroker {
            hub,
            client,
            node,
            outgoing,
            subscriber,
        })
    }
}

impl RedisBroker {
    /// The Redis client, for the other parts that meet there.
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// This node's name among the nodes.
    pub fn node(&self) -> &str {
        &self.node
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn publish(&self, deliveries: Vec<Delivery>) {
        if self.outgoing.send(deliveries.clone()).is_err() {
            log::warn!("broker: the Redis publisher is gone; other nodes catch up on resume");
        }
        self.hub.deliver(deliveries);
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        if !self.subscriber.is_up() {
            return Err(BrokerError(
                "not subscribed to Redis: this node does not hear the others yet".into(),
            ));
        }
        let answer = tokio::time::timeout(REDIS_WAIT, async {
            let mut connection = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        })
        .await;
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BrokerError(format!("Redis does not answer: {e}"))),
            Err(_) => Err(BrokerError(format!(
                "Redis does not answer within {} s",
                REDIS_WAIT.as_secs()
            ))),
        }
    }
}

/// A name for this process among the nodes, so it can skip its own messages.
fn node_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}-{:x}", std::process::id(), nanos)
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn encode(node: &str, deliveries: &[Delivery]) -> Result<String, serde_json::Error> {
    let deliveries = deliveries
        .iter()
        .map(|delivery| match delivery {
            Delivery::User {
                user,
                seq,
                frame,
                published,
            } => WireDelivery::User {
                user: user.to_string(),
                seq: *seq,
                frame: frame.to_string(),
                published_ms: published.map(millis),
            },
            Delivery::Topic {
                topic,
                seq,
                frame,
                published,
            } => WireDelivery::Topic {
                topic: topic.to_string(),
                seq: *seq,
                frame: frame.to_string(),
                published_ms: millis(*published),
            },
        })
        .collect();
    serde_json::to_string(&Envelope {
        node: node.to_string(),
        deliveries,
    })
}

fn decode(payload: &[u8]) -> Result<Envelope, serde_json::Error> {
    serde_json::from_slice(payload)
}

impl From<WireDelivery> for Delivery {
    fn from(wire: WireDelivery) -> Delivery {
        match wire {
            WireDelivery::User {
                user,
                seq,
                frame,
                published_ms,
            } => Delivery::User {
                user: Arc::from(user),
                seq,
                frame: ByteString::from(frame),
                published: published_ms.map(from_millis),
            },
            WireDelivery::Topic {
                topic,
                seq,
                frame,
                published_ms,
            } => Delivery::Topic {
                topic: Arc::from(topic),
                seq,
                frame: ByteString::from(frame),
                published: from_millis(published_ms),
            },
        }
    }
}

/// Whether Redis is reachable, as last seen by one loop; logs only the changes.
struct Reachability {
    /// One of `UNKNOWN`, `UP`, `DOWN`.
    state: AtomicU8,
    what: &'static str,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Reachability {
    fn new(what: &'static str) -> Reachability {
        Reachability {
            state: AtomicU8::new(UNKNOWN),
            what,
        }
    }

    fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    fn lost(&self, error: &str) {
        if self.state.swap(DOWN, Ordering::AcqRel) != DOWN {
            log::warn!(
                "broker: {} cannot reach Redis ({error}); retrying, and sessions catch up from \
                 the database",
                self.what
            );
        }
    }

    fn back(&self) {
        if self.state.swap(UP, Ordering::AcqRel) != UP {
            log::info!("broker: {} is connected to Redis", self.what);
        }
    }
}

async fn connect(client: &redis::Client) -> Result<redis::aio::MultiplexedConnection, String> {
    match tokio::time::timeout(REDIS_WAIT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".to_string()),
    }
}

/// Commits' messages held while Redis cannot take them, oldest first: most a node keeps.
/// Past that the oldest go (the sessions fill such holes from the database at their stream's
/// next delivery), so an outage costs bounded memory.
const MAX_HELD: usize = 10_000;

/// Publishes each commit's deliveries in order. While Redis is unreachable it holds them
/// (up to [`MAX_HELD`]) and tries to reconnect after a growing pause, whether or not more
/// commits arrive; once connected it sends what it held, in order, before anything newer.
/// Dropping them instead lost the commits of the first moments after Redis came back: the
/// other nodes were listening again, but this node was still waiting out its pause, and a
/// stream with no later delivery never showed its hole.
async fn publish_loop(
    client: redis::Client,
    channel: String,
    node: String,
    mut queue: mpsc::UnboundedReceiver<Vec<Delivery>>,
    metrics: Arc<Metrics>,
) {
    let reachability = Reachability::new("the publisher");
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut held: VecDeque<String> = VecDeque::new();
    let mut retry_at = tokio::time::Instant::now();
    let mut pause = RETRY_FIRST;
    loop {
        let waiting = !held.is_empty();
        tokio::select! {
            next = queue.recv() => {
                let Some(deliveries) = next else { return };
                match encode(&node, &deliveries) {
                    Ok(payload) => held.push_back(payload),
                    Err(e) => log::error!("broker: cannot encode deliveries: {e}"),
                }
                if held.len() > MAX_HELD {
                    held.pop_front();
                    metrics.broker_errors.inc();
                }
            }
            _ = tokio::time::sleep_until(retry_at), if waiting => {}
        }
        if connection.is_none() {
            if tokio::time::Instant::now() < retry_at {
                continue;
            }
            match connect(&client).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    metrics.broker_errors.inc();
                    reachability.lost(&e);
                    retry_at = tokio::time::Instant::now() + pause;
                    pause = (pause * 2).min(RETRY_MOST);
                    continue;
                }
            }
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        while let Some(payload) = held.front() {
            let sent = tokio::time::timeout(
                REDIS_WAIT,
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload.as_str())
                    .query_async::<i64>(c),
            )
            .await;
            let error = match sent {
                Ok(Ok(_)) => {
                    held.pop_front();
                    reachability.back();
                    pause = RETRY_FIRST;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer".to_string(),
            };
            metrics.broker_errors.inc();
            reachability.lost(&error);
            connection = None;
            retry_at = tokio::time::Instant::now() + pause;
            pause = (pause * 2).min(RETRY_MOST);
            break;
        }
    }
}

/// A subscription to `channel`, made within [`REDIS_WAIT`]; the error says why not.
pub(crate) async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, String> {
    let subscribed = tokio::time::timeout(REDIS_WAIT, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    })
    .await;
    match subscribed {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".to_string()),
    }
}

/// Receives the other nodes' deliveries and hands them to this node's hub; resubscribes with
/// a growing pause whenever the connection drops.
async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    node: String,
    hub: Hub,
    metrics: Arc<Metrics>,
    reachability: Arc<Reachability>,
) {
    let mut pause = RETRY_FIRST;
    loop {
        match subscribe(&client, &channel).await {
            Ok(pubsub) => {
                reachability.back();
                log::debug!("broker: subscribed to {channel}");
                pause = RETRY_FIRST;
                // What the other nodes published while this node was not listening is gone
                // from the channel; the sessions read it from the database.
                hub.resync();
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    match decode(message.get_payload_bytes()) {
                        Ok(envelope) if envelope.node == node => {}
                        Ok(envelope) => {
                            hub.deliver(envelope.deliveries.into_iter().map(Into::into).collect())
                        }
                        Err(e) => {
                            metrics.broker_errors.inc();
                            log::warn!("broker: a message on {channel} is not informd's: {e}");
                        }
                    }
                }
                metrics.broker_errors.inc();
                reachability.lost("connection closed");
            }
            Err(e) => {
                metrics.broker_errors.inc();
                reachability.lost(&e);
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MOST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_survive_the_wire() -> Result<(), serde_json::Error> {
        let published = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let deliveries = vec![
            Delivery::User {
                user: Arc::from("42"),
                seq: Some(7),
                frame: ByteString::from(r#"{"type":"notification"}"#),
                published: Some(published),
            },
            Delivery::User {
                user: Arc::from("42"),
                seq: None,
                frame: ByteString::from(r#"{"type":"unread","unread":0}"#),
                published: None,
            },
            Delivery::Topic {
                topic: Arc::from("global"),
                seq: 3,
                frame: ByteString::from(r#"{"type":"broadcast"}"#),
                published,
            },
        ];
        let envelope = decode(encode("node-a", &deliveries)?.as_bytes())?;
        assert_eq!(envelope.node, "node-a");
        let back: Vec<Delivery> = envelope.deliveries.into_iter().map(Into::into).collect();
        assert_eq!(format!("{back:?}"), format!("{deliveries:?}"));
        Ok(())
    }
}
