//! Users reading their inbox through the REST API while the daemon crashes: each round picks a
//! user and marks some of their notifications read (`up_to` a seq, or a few `ids`), so badges
//! go down as publishes push them up. Failures during a restart are simply tried later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::publishers::{may_run, user_name, Phase};
use crate::clients::token;

/// Counters of the REST readers.
#[derive(Debug, Default)]
pub struct ReadStats {
    /// `POST /api/notifications/read` answered 200.
    pub marked: AtomicU64,
    /// Requests that failed (the daemon was down) and were dropped.
    pub failed: AtomicU64,
}

/// Marks notifications read via REST until the load stops.
pub async fn reader(
    url: String,
    secret: String,
    users: usize,
    pause: Duration,
    mut phase: watch::Receiver<Phase>,
    stats: Arc<ReadStats>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    while may_run(&mut phase).await {
        let user = user_name(fastrand::usize(0..users));
        let token = token(&secret, &user)?;
        match mark_some(&http, &url, &token).await {
            Ok(true) => {
                stats.marked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64())) => {}
            _ = phase.changed() => {}
        }
    }
    Ok(())
}

/// One read: `up_to` a random seq, or the ids of a few unread notifications. `Ok(false)` when
/// the user had nothing to read.
async fn mark_some(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<bool> {
    let body = if fastrand::bool() {
        let badge: Value = http
            .get(format!("{url}/api/notifications/unread"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let seq = badge["seq"].as_i64().unwrap_or(0);
        if seq == 0 {
            return Ok(false);
        }
        json!({"up_to": fastrand::i64(1..=seq)})
    } else {
        let page: Value = http
            .get(format!("{url}/api/notifications?limit=5&unread=true"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let ids: Vec<i64> = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|_| fastrand::bool())
                    .filter_map(|n| n["id"].as_i64())
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Ok(false);
        }
        json!({"ids": ids})
    };
    http.post(format!("{url}/api/notifications/read"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?
        .error_for_status()?;
    Ok(true)
}
