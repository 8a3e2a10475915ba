//! Session counts across nodes, through Redis. Each node writes its own counts (sessions, and
//! sessions per user and per topic) under keys of its own every second, with a 10 s expiry,
//! and lists itself in a sorted set of live nodes; a node that dies drops out by itself when
//! its keys expire. A count is this node's, read from its hub, plus every other live node's,
//! read in one pipelined round trip: at most about a second old.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::GLOBAL_TOPIC;
use crate::online::OnlineCounts;

/// How often a node writes its counts, and how long they outlive it.
const WRITE_EVERY: Duration = Duration::from_secs(1);
const KEEP_FOR: Duration = Duration::from_secs(10);
/// Longest a count may wait on Redis before this node answers with its own counts only.
const READ_WAIT: Duration = Duration::from_millis(500);

/// The cluster's session counts, with Redis as the meeting point.
pub struct RedisOnline {
    hub: Hub,
    client: redis::Client,
    prefix: String,
    connection: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// The other live nodes, as last read.
    others: RwLock<Vec<String>>,
    metrics: Arc<Metrics>,
}

fn node_key(prefix: &str, node: &str, what: &str) -> String {
    format!("{prefix}:node:{node}:{what}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RedisOnline {
    /// Starts writing this node's counts; the returned counts read every node's.
    pub fn start(
        client: redis::Client,
        prefix: &str,
        node: String,
        hub: Hub,
        metrics: Arc<Metrics>,
    ) -> Arc<RedisOnline> {
        let online = Arc::new(RedisOnline {
            hub,
            client,
            prefix: prefix.to_string(),
            connection: tokio::sync::Mutex::new(None),
            others: RwLock::new(Vec::new()),
            metrics,
        });
        actix::Arbiter::new().spawn(write_loop(online.clone(), node));
        online
    }

    /// The shared connection, opened on first use and after a failure.
    async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self.client.get_multiplexed_async_connection().await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }

    fn others(&self) -> Vec<String> {
        self.others.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// Sums one pipelined read per other node; `None` when Redis does not answer in time.
    async fn remote<T: redis::FromRedisValue + Send>(
        &self,
        command: impl Fn(&str) -> redis::Cmd,
    ) -> Option<Vec<T>> {
        let others = self.others();
        if others.is_empty() {
            return Some(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for node in &others {
            pipeline.add_command(command(node));
        }
        let answer = tokio::time::timeout(READ_WAIT, async {
            let mut connection = self.connection().await?;
            pipeline.query_async::<Vec<T>>(&mut connection).await
        })
        .await;
        if !matches!(answer, Ok(Ok(_))) {
            self.forget_connection().await;
        }
        match answer {
            Ok(Ok(values)) => Some(values),
            Ok(Err(e)) => {
                self.metrics.broker_errors.inc();
                log::debug!("online counts: Redis: {e}; answering with this node's");
                None
            }
            Err(_) => {
                self.metrics.broker_errors.inc();
                log::debug!("online counts: Redis is slow; answering with this node's");
                None
            }
        }
    }
}

#[async_trait]
impl OnlineCounts for RedisOnline {
    async fn user_sessions(&self, users: &[&str]) -> Vec<usize> {
        let presence = self.hub.presence();
        let mut counts: Vec<usize> = users.iter().map(|u| presence.user_sessions(u)).collect();
        let remote: Option<Vec<Vec<Option<usize>>>> = self
            .remote(|node| {
                let mut command = redis::cmd("HMGET");
                command
                    .arg(node_key(&self.prefix, node, "users"))
                    .arg(users);
                command
            })
            .await;
        for node in remote.unwrap_or_default() {
            for (count, theirs) in counts.iter_mut().zip(node) {
                *count += theirs.unwrap_or(0);
            }
        }
        counts
    }

    async fn topic_sessions(&self, topic: &str) -> usize {
        let local = self.hub.presence().topic_sessions(topic);
        let remote: Option<Vec<Option<usize>>> = if topic == GLOBAL_TOPIC {
            self.remote(|node| {
                let mut command = redis::cmd("GET");
                command.arg(node_key(&self.prefix, node, "sessions"));
                command
            })
            .await
        } else {
            self.remote(|node| {
                let mut command = redis::cmd("HGET");
                command
                    .arg(node_key(&self.prefix, node, "topics"))
                    .arg(topic);
                command
            })
            .await
        };
        local
            + remote
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .sum::<usize>()
    }
}

/// Every second: this node's counts, replaced whole in one transaction (so a reader never
/// sees them half written, and a Redis that restarted has them again a second later); its
/// entry in the live-node set; and the list of the other live nodes.
async fn write_loop(online: Arc<RedisOnline>, node: String) {
    let prefix = online.prefix.clone();
    let nodes_key = format!("{prefix}:nodes");
    let keys = ["sessions", "users", "topics"].map(|what| node_key(&prefix, &node, what));
    let keep = KEEP_FOR.as_secs();
    let mut ticker = tokio::time::interval(WRITE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let snapshot = online.hub.presence().snapshot();
        let now = now_ms();
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        pipeline
            .cmd("SET")
            .arg(&keys[0])
            .arg(snapshot.sessions)
            .arg("EX")
            .arg(keep);
        for (key, counts) in [(&keys[1], &snapshot.users), (&keys[2], &snapshot.topics)] {
            pipeline.cmd("DEL").arg(key);
            if !counts.is_empty() {
                let mut hset = redis::cmd("HSET");
                hset.arg(key);
                for (name, count) in counts {
                    hset.arg(name.as_ref()).arg(*count);
                }
                pipeline.add_command(hset).cmd("EXPIRE").arg(key).arg(keep);
            }
        }
        pipeline.cmd("ZADD").arg(&nodes_key).arg(now).arg(&node);
        pipeline
            .cmd("ZREMRANGEBYSCORE")
            .arg(&nodes_key)
            .arg("-inf")
            .arg(now.saturating_sub(KEEP_FOR.as_millis() as u64));
        pipeline.cmd("EXPIRE").arg(&nodes_key).arg(keep * 6);
        let written = tokio::time::timeout(WRITE_EVERY, async {
            let mut connection = online.connection().await?;
            pipeline.query_async::<()>(&mut connection).await?;
            redis::cmd("ZRANGE")
                .arg(&nodes_key)
                .arg(0)
                .arg(-1)
                .query_async::<Vec<String>>(&mut connection)
                .await
        })
        .await;
        match written {
            Ok(Ok(live)) => {
                let others: Vec<String> = live.into_iter().filter(|n| *n != node).collect();
                if let Ok(mut slot) = online.others.write() {
                    *slot = others;
                }
            }
            Ok(Err(e)) => {
                online.forget_connection().await;
                log::debug!("online counts: cannot write to Redis: {e}");
            }
            Err(_) => {
                online.forget_connection().await;
                log::debug!("online counts: Redis did not answer in time");
            }
        }
    }
}
