//! `--preferences N`: before a run, gives N users preferences through `PUT /api/preferences`,
//! so that the publish path is measured with a full in-memory table to consult. The connected
//! users come first: every recipient of the run then has a document to check, and none of it
//! matches the run's events (kind `bench`, no group), so every delivery is still due. A muted
//! recipient costs the server less than an unmuted one (nothing stored or pushed), so this is
//! the dearer case.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::clients::token;
use crate::Common;

/// Requests in flight while setting up.
const SETUP_CONCURRENCY: usize = 16;
/// Pause between the setup and the run.
const SETTLE: Duration = Duration::from_secs(5);

/// The user ids that get preferences: `user(0..clients)` first, then made-up ones.
fn user_of(k: usize, clients: usize, user: fn(usize) -> String) -> String {
    if k < clients {
        user(k)
    } else {
        format!("p-{k}")
    }
}

/// Puts a document for `count` users; fails on the first refusal.
pub async fn install(
    common: &Common,
    count: usize,
    clients: usize,
    user: fn(usize) -> String,
) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let url = format!("{}/api/preferences", common.url.trim_end_matches('/'));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..SETUP_CONCURRENCY)
        .map(|_| {
            let (http, url, next) = (http.clone(), url.clone(), next.clone());
            let secret = common.secret.clone();
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let id = user_of(k, clients, user);
                    let body = json!({
                        "muted_kinds": ["follow", "mention"],
                        "muted_groups": [format!("like:article:{k}"), format!("reply:article:{k}")],
                        "muted_topics": [format!("article:{k}")],
                    });
                    let response = http
                        .put(&url)
                        .bearer_auth(token(&secret, &id)?)
                        .json(&body)
                        .send()
                        .await?;
                    anyhow::ensure!(
                        response.status().is_success(),
                        "PUT /api/preferences for {id}: {}",
                        response.status()
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    eprintln!(
        "preferences set for {count} users in {:.1} s; letting the server settle {} s",
        started.elapsed().as_secs_f64(),
        SETTLE.as_secs()
    );
    // The setup's writes (one commit each) are still being checkpointed into the database
    // file; the run measures publishing, not that.
    tokio::time::sleep(SETTLE).await;
    Ok(())
}
