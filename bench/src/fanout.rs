//! `fanout`: broadcasts on `global` (or on one topic every session subscribes to), each of
//! which every session must receive exactly once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::clients::Fleet;
use crate::probe::{now_micros, Probe};
use crate::publisher::Publisher;
use crate::report::{liveness, Latency, Summary, Tally};
use crate::Common;

pub async fn run(
    common: &Common,
    clients: usize,
    events: usize,
    rate: f64,
    topic: &str,
) -> anyhow::Result<Summary> {
    let subscribe = (topic != "global").then_some(topic);
    let fleet =
        Fleet::connect_subscribed(common, clients, |k| Some(format!("fan-{k}")), subscribe).await?;
    let connected = clients - fleet.failed;
    let publisher = Publisher::new(common.publish_base(), &common.key)?;
    let mut accepted: Vec<u32> = Vec::with_capacity(events);
    let mut http_errors = 0;
    eprintln!(
        "broadcasting {events} events to {connected} sessions{}",
        if rate > 0.0 {
            format!(" at {rate}/s")
        } else {
            " unpaced".into()
        }
    );
    let start = Instant::now();
    let tokio_start = tokio::time::Instant::now();
    for i in 0..events {
        if rate > 0.0 {
            tokio::time::sleep_until(tokio_start + Duration::from_secs_f64(i as f64 / rate)).await;
        }
        let probe = Probe {
            i: i as u32,
            t: now_micros(),
        };
        let body = json!({"topic": topic, "data": probe}).to_string();
        match publisher.post(body).await {
            Ok(()) => accepted.push(i as u32),
            Err(e) => {
                if http_errors < 5 {
                    eprintln!("publish {i} failed: {e}");
                }
                http_errors += 1;
            }
        }
    }
    let publishing = start.elapsed();
    let expected = connected as u64 * accepted.len() as u64;
    let delivered = fleet
        .await_deliveries(expected, Duration::from_secs(common.drain_timeout))
        .await;
    let elapsed = start.elapsed();
    let rate_seen = delivered as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{delivered} of {expected} deliveries in {:.2} s: {rate_seen:.0} deliveries/s (publishing took {:.2} s)",
        elapsed.as_secs_f64(),
        publishing.as_secs_f64()
    );
    let failed = fleet.failed;
    let results = fleet.finish().await;
    let nothing: Vec<u32> = Vec::new();
    let tally = Tally::count(&results, |k| {
        if results[k].connected {
            &accepted
        } else {
            &nothing
        }
    });
    let latency = Latency::of(&results);
    eprintln!("latency publish->receive: {}", latency.line());
    eprintln!(
        "lost {}, doubled {}, misdelivered {}",
        tally.lost, tally.doubled, tally.misdelivered
    );

    let mut summary = Summary::new("fanout");
    summary.set("clients", json!(clients));
    summary.set("connected", json!(connected));
    summary.set("failed", json!(failed));
    summary.set("events", json!(events));
    summary.set("rate", json!(rate));
    summary.set("http_errors", json!(http_errors));
    summary.set("deliveries", tally.to_json());
    summary.set("deliveries_per_sec", json!(rate_seen.round()));
    summary.set("seconds", json!(elapsed.as_secs_f64()));
    summary.set("latency_ms", latency.to_json());
    summary.set("liveness", liveness(&results));
    if failed > 0 {
        summary.fail(&format!("{failed} sessions failed to connect"));
    }
    if http_errors > 0 {
        summary.fail(&format!("{http_errors} publishes failed"));
    }
    if !tally.clean() {
        summary.fail("deliveries were lost, doubled or misdelivered");
    }
    Ok(summary)
}
