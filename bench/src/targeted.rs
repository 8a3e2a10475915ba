//! `targeted`: notifications to random connected users through `POST /publish`, from several
//! concurrent publishers, each user receiving exactly the ones addressed to it. With
//! `--group N` each event carries one of N groups, so most fold into an unread notification
//! (each still reaches its user as a frame): the cost of grouping on the publish path.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::Fleet;
use crate::probe::{now_micros, Probe};
use crate::publisher::Publisher;
use crate::report::{liveness, Latency, Summary, Tally};
use crate::Common;

/// The load's shape, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub clients: usize,
    pub events: usize,
    /// Notifications per second; 0 means as fast as the server answers.
    pub rate: f64,
    pub batch: usize,
    pub concurrency: usize,
    /// Events carry one of this many groups; `None`: no group.
    pub groups: Option<usize>,
}

/// The user id of session `k`.
pub fn user(k: usize) -> String {
    format!("t-{k}")
}

/// What one publisher task achieved.
#[derive(Default)]
struct Published {
    accepted: Vec<u32>,
    failed_events: usize,
    failed_requests: usize,
    requests: usize,
}

pub async fn run(common: &Common, shape: Shape) -> anyhow::Result<Summary> {
    let fleet = Fleet::connect(common, shape.clients, |k| Some(user(k))).await?;
    let online: Vec<usize> = (0..shape.clients).filter(|k| fleet.connected[*k]).collect();
    anyhow::ensure!(!online.is_empty(), "no session connected");
    // Who gets event i, decided up front so the check knows what each session should see.
    let recipient: Arc<Vec<usize>> = Arc::new(
        (0..shape.events)
            .map(|_| online[fastrand::usize(..online.len())])
            .collect(),
    );
    let publisher = Publisher::new(common.publish_base(), &common.key)?;
    let next_request = Arc::new(AtomicUsize::new(0));
    eprintln!(
        "publishing {} notifications{} to {} sessions in requests of {}, {} at a time{}",
        shape.events,
        shape
            .groups
            .map_or(String::new(), |n| format!(" in {n} groups")),
        online.len(),
        shape.batch,
        shape.concurrency,
        if shape.rate > 0.0 {
            format!(", {}/s", shape.rate)
        } else {
            ", unpaced".into()
        }
    );
    let start = Instant::now();
    let tokio_start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..shape.concurrency)
        .map(|_| {
            let publisher = publisher.clone();
            let next_request = next_request.clone();
            let recipient = recipient.clone();
            tokio::spawn(async move {
                let mut done = Published::default();
                loop {
                    let first = next_request.fetch_add(1, Ordering::Relaxed) * shape.batch;
                    if first >= shape.events {
                        return done;
                    }
                    let last = (first + shape.batch).min(shape.events);
                    if shape.rate > 0.0 {
                        let at = Duration::from_secs_f64(first as f64 / shape.rate);
                        tokio::time::sleep_until(tokio_start + at).await;
                    }
                    let events: Vec<Value> = (first..last)
                        .map(|i| {
                            let probe = Probe {
                                i: i as u32,
                                t: now_micros(),
                            };
                            let mut event =
                                json!({"to": user(recipient[i]), "kind": "bench", "data": probe});
                            if let Some(groups) = shape.groups {
                                event["group"] = json!(format!("bench:{}", i % groups));
                            }
                            event
                        })
                        .collect();
                    let body = if shape.batch == 1 {
                        events[0].to_string()
                    } else {
                        Value::Array(events).to_string()
                    };
                    done.requests += 1;
                    match publisher.post(body).await {
                        Ok(()) => done.accepted.extend(first as u32..last as u32),
                        Err(e) => {
                            if done.failed_requests < 3 {
                                eprintln!("publish of {first}..{last} failed: {e}");
                            }
                            done.failed_requests += 1;
                            done.failed_events += last - first;
                        }
                    }
                }
            })
        })
        .collect();
    let mut published = Published::default();
    for task in tasks {
        let done = task.await?;
        published.accepted.extend(done.accepted);
        published.failed_events += done.failed_events;
        published.failed_requests += done.failed_requests;
        published.requests += done.requests;
    }
    let publishing = start.elapsed().as_secs_f64();
    let accepted_requests = published.requests - published.failed_requests;
    let requests_per_sec = accepted_requests as f64 / publishing;
    let notifications_per_sec = published.accepted.len() as f64 / publishing;
    eprintln!(
        "{accepted_requests} publishes ({} notifications) accepted in {publishing:.2} s: \
         {requests_per_sec:.0} publishes/s, {notifications_per_sec:.0} notifications/s; \
         {} requests failed",
        published.accepted.len(),
        published.failed_requests
    );
    let expected_total = published.accepted.len() as u64;
    let delivered = fleet
        .await_deliveries(expected_total, Duration::from_secs(common.drain_timeout))
        .await;
    eprintln!("{delivered} of {expected_total} notifications delivered");
    let mut expected: Vec<Vec<u32>> = vec![Vec::new(); shape.clients];
    for i in &published.accepted {
        expected[recipient[*i as usize]].push(*i);
    }
    let failed = fleet.failed;
    let results = fleet.finish().await;
    let tally = Tally::count(&results, |k| &expected[k]);
    let latency = Latency::of(&results);
    eprintln!("latency publish->receive: {}", latency.line());
    eprintln!(
        "lost {}, doubled {}, misdelivered {}",
        tally.lost, tally.doubled, tally.misdelivered
    );

    let mut summary = Summary::new("targeted");
    summary.set("clients", json!(shape.clients));
    summary.set("connected", json!(online.len()));
    summary.set("failed", json!(failed));
    summary.set("events", json!(shape.events));
    summary.set("rate", json!(shape.rate));
    summary.set("batch", json!(shape.batch));
    summary.set("concurrency", json!(shape.concurrency));
    summary.set("groups", json!(shape.groups));
    summary.set("http_errors", json!(published.failed_requests));
    summary.set("publishes_per_sec", json!(requests_per_sec.round()));
    summary.set(
        "notifications_per_sec",
        json!(notifications_per_sec.round()),
    );
    summary.set("publish_seconds", json!(publishing));
    summary.set("deliveries", tally.to_json());
    summary.set("latency_ms", latency.to_json());
    summary.set("liveness", liveness(&results));
    if failed > 0 {
        summary.fail(&format!("{failed} sessions failed to connect"));
    }
    if published.failed_requests > 0 {
        summary.fail(&format!("{} publishes failed", published.failed_requests));
    }
    if !tally.clean() {
        summary.fail("deliveries were lost, doubled or misdelivered");
    }
    Ok(summary)
}
