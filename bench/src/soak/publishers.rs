//! The backend services: publishers that keep posting notifications and broadcasts through
//! the daemon's crashes. Every publish carries an `Idempotency-Key` and a marker in `data`,
//! and is retried with the same key and body until it is acknowledged, across restarts, so
//! the ledger of acknowledged publishes is exactly what the database must hold, once each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::watch;

/// What one acknowledged publish was.
#[derive(Debug, Clone)]
pub enum Target {
    /// Notifications to these users, one row each.
    Users(Vec<String>),
    /// One broadcast on this topic.
    Topic(String),
}

/// One publish the daemon answered 200 to.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The `Idempotency-Key`, also the `data.soak` marker of every stored row.
    pub key: String,
    pub target: Target,
    /// Ids from the answer, one per stored row.
    pub ids: Vec<i64>,
    /// The answer said `duplicate`: an earlier attempt had committed before a crash.
    pub duplicate: bool,
}

/// Counters shared by the publishers.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub attempts: AtomicU64,
    /// Publishes acknowledged (200).
    pub acked: AtomicU64,
    /// Attempts that failed (connection refused or reset, 5xx, 409) and were retried.
    pub retries: AtomicU64,
    /// Publishes refused with a status that retrying cannot change (a soak bug or a server
    /// bug): the run fails.
    pub refused: AtomicU64,
}

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Load {
    pub users: usize,
    pub topics: usize,
    /// Pause between one publisher's publishes.
    pub pause: Duration,
}

pub fn user_name(k: usize) -> String {
    format!("soak-{k}")
}

pub fn topic_name(k: usize) -> String {
    format!("article:soak-{k}")
}

/// What the load should do now; the orchestrator pauses it for checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Run,
    /// Finish the request in hand, then wait.
    Pause,
    Stop,
}

/// Waits while the load is paused; false once it is stopped.
pub async fn may_run(phase: &mut watch::Receiver<Phase>) -> bool {
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Run => return true,
            Phase::Stop => return false,
            Phase::Pause => {
                if phase.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// One publisher: publishes until the load stops, then finishes the publish in hand (retrying until
/// it is acknowledged, or `give_up` fires) and returns its ledger.
pub async fn publisher(
    index: usize,
    url: String,
    key: String,
    load: Load,
    mut phase: watch::Receiver<Phase>,
    give_up: watch::Receiver<bool>,
    stats: Arc<PublishStats>,
) -> anyhow::Result<Vec<Ack>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let endpoint = format!("{url}/publish");
    let mut ledger = Vec::new();
    let mut n = 0u64;
    while may_run(&mut phase).await {
        n += 1;
        let idempotency = format!("p{index}-{n}");
        let (target, body) = next_event(&load, &idempotency);
        if let Some(ack) = publish_until_acked(
            &http,
            &endpoint,
            &key,
            &idempotency,
            target,
            &body,
            &give_up,
            &stats,
        )
        .await
        {
            ledger.push(ack);
        }
        let pause = load.pause.mul_f64(0.5 + fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = phase.changed() => {}
        }
    }
    Ok(ledger)
}

/// A random event: mostly notifications to one to three users, some broadcasts.
fn next_event(load: &Load, marker: &str) -> (Target, Value) {
    let roll = fastrand::u32(0..10);
    if roll < 7 {
        let count = fastrand::usize(1..=3).min(load.users);
        let mut users: Vec<String> = Vec::with_capacity(count);
        while users.len() < count {
            let user = user_name(fastrand::usize(0..load.users));
            if !users.contains(&user) {
                users.push(user);
            }
        }
        let body = json!({"to": users, "kind": "soak", "data": {"soak": marker}});
        (Target::Users(users), body)
    } else {
        let topic = if roll < 9 || load.topics == 0 {
            "global".to_string()
        } else {
            topic_name(fastrand::usize(0..load.topics))
        };
        let body = json!({"topic": topic, "data": {"soak": marker}});
        (Target::Topic(topic), body)
    }
}

/// Posts the same body with the same key until the daemon acknowledges it.
#[allow(clippy::too_many_arguments)]
async fn publish_until_acked(
    http: &reqwest::Client,
    endpoint: &str,
    key: &str,
    idempotency: &str,
    target: Target,
    body: &Value,
    give_up: &watch::Receiver<bool>,
    stats: &PublishStats,
) -> Option<Ack> {
    let body = body.to_string();
    let mut backoff = Duration::from_millis(20);
    loop {
        if *give_up.borrow() {
            return None;
        }
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let sent = http
            .post(endpoint)
            .bearer_auth(key)
            .header("Idempotency-Key", idempotency)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status();
            if status.is_success() {
                if let Ok(answer) = response.json::<Value>().await {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    let ids = answer["ids"]
                        .as_array()
                        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default();
                    return Some(Ack {
                        key: idempotency.to_string(),
                        target,
                        ids,
                        duplicate: answer["duplicate"].as_bool().unwrap_or(false),
                    });
                }
                // The answer was cut off by the kill: ask again, the key makes it safe.
            } else if status.is_client_error() && status.as_u16() != 409 && status != 429 {
                let text = response.text().await.unwrap_or_default();
                eprintln!("soak: publish {idempotency} refused for good: {status} {text}");
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        stats.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}
