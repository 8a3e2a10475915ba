//! Keeping every node's [`Mutes`] current when preferences change on another node.
//!
//! With a Redis broker, a node that stores a user's preferences publishes the user id on
//! `{broker_prefix}:preferences`; every node (the sender too) reads that user's preferences
//! again from the database, so the database stays the one record and the order of messages
//! does not matter. Pub/sub keeps nothing, so after every (re)subscription a node reads
//! everyone's preferences again: what it missed while away is then in force too. With the
//! memory broker there is one node and nothing to do.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Mutes;
use crate::broker::redis::{subscribe, REDIS_WAIT, RETRY_FIRST, RETRY_MOST};
use crate::config::Config;
use crate::store::{Store, StoreError};

/// Tells the other nodes whose preferences changed.
pub struct Announcer {
    changed: mpsc::UnboundedSender<String>,
}

impl Announcer {
    /// Queues the news that `user`'s preferences changed (sent in order, retried while Redis
    /// is away).
    pub fn changed(&self, user: &str) {
        if self.changed.send(user.to_string()).is_err() {
            log::warn!("preferences: the Redis publisher is gone; other nodes catch up later");
        }
    }
}

/// Starts announcing and listening when `broker` is Redis; `None` with the memory broker.
pub fn start(config: &Config, store: Arc<dyn Store>, mutes: Arc<Mutes>) -> Option<Announcer> {
    if config.broker == "memory" {
        return None;
    }
    // The broker opened the same URL already: a bad one stopped the start before this.
    let client = match redis::Client::open(config.broker.as_str()) {
        Ok(client) => client,
        Err(e) => {
            log::error!("preferences: cannot use the broker URL: {e}");
            return None;
        }
    };
    let channel = format!("{}:preferences", config.broker_prefix);
    let (changed, queue) = mpsc::unbounded_channel();
    let arbiter = actix::Arbiter::new();
    arbiter.spawn(announce_loop(client.clone(), channel.clone(), queue));
    arbiter.spawn(listen_loop(client, channel, store, mutes));
    Some(Announcer { changed })
}

/// The next pause after `pause`.
fn longer(pause: Duration) -> Duration {
    (pause * 2).min(RETRY_MOST)
}

/// Publishes each changed user id, in order; a message that fails is sent again once Redis
/// answers, so a short outage loses nothing.
async fn announce_loop(
    client: redis::Client,
    channel: String,
    mut queue: mpsc::UnboundedReceiver<String>,
) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    while let Some(user) = queue.recv().await {
        let mut pause = RETRY_FIRST;
        loop {
            let sent = tokio::time::timeout(REDIS_WAIT, async {
                let c = match connection.as_mut() {
                    Some(c) => c,
                    None => connection.insert(client.get_multiplexed_async_connection().await?),
                };
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&user)
                    .query_async::<i64>(c)
                    .await
            })
            .await;
            match sent {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => log::warn!("preferences: cannot announce a change: {e}"),
                Err(_) => log::warn!("preferences: Redis did not answer an announcement"),
            }
            connection = None;
            tokio::time::sleep(pause).await;
            pause = longer(pause);
        }
    }
}

/// Applies the changes other nodes announce; after every (re)subscription, reads everyone's
/// preferences again.
async fn listen_loop(
    client: redis::Client,
    channel: String,
    store: Arc<dyn Store>,
    mutes: Arc<Mutes>,
) {
    let mut pause = RETRY_FIRST;
    loop {
        match subscribe(&client, &channel).await {
            Ok(pubsub) => {
                let mut messages = pubsub.into_on_message();
                match reload_all(&*store, &mutes).await {
                    Ok(()) => {
                        pause = RETRY_FIRST;
                        while let Some(message) = messages.next().await {
                            let Ok(user) = std::str::from_utf8(message.get_payload_bytes()) else {
                                log::warn!("preferences: a message on {channel} is not a user id");
                                continue;
                            };
                            if let Err(e) = reload(&*store, &mutes, user).await {
                                // Read everything again once the database answers.
                                log::warn!("preferences: cannot read a change: {e}");
                                break;
                            }
                        }
                        log::warn!("preferences: no longer hearing other nodes; resubscribing");
                    }
                    Err(e) => log::warn!("preferences: cannot read preferences: {e}"),
                }
            }
            Err(e) => log::debug!("preferences: cannot subscribe to Redis: {e}"),
        }
        tokio::time::sleep(pause).await;
        pause = longer(pause);
    }
}

async fn reload_all(store: &dyn Store, mutes: &Mutes) -> Result<(), StoreError> {
    mutes.replace_all(store.all_preferences().await?);
    log::debug!("preferences: reloaded; {} users have some", mutes.len());
    Ok(())
}

async fn reload(store: &dyn Store, mutes: &Mutes, user: &str) -> Result<(), StoreError> {
    mutes.set(user, store.preferences(user).await?);
    Ok(())
}
