//! `fanout`: broadcasts on `global` (or on one topic every session subscribes to), each of
//! which every session must receive exactly once.
//!
//! Besides deliveries/s, it times each broadcast's `POST /publish`, and with `--probe-rate` a
//! [`PublishProbe`] times durable targeted publishes made while the fan-out loads the server:
//! a publish should not wait behind the fan-out. It reports its own CPU time per delivery, and
//! the server's given its `--pid`, from the first broadcast until the last delivery.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::clients::Fleet;
use crate::probe::{now_micros, Probe};
use crate::publish_probe::{aside, PublishProbe};
use crate::publisher::Publisher;
use crate::report::{liveness, Latency, Summary, Tally};
use crate::server_usage::CpuTime;
use crate::Common;

/// The load's shape, from the command line.
#[derive(Debug, Clone)]
pub struct Shape {
    pub clients: usize,
    pub events: usize,
    /// Broadcasts per second; 0 means as fast as the server answers.
    pub rate: f64,
    pub topic: String,
    /// Probe publishes per second while the broadcasts go out; 0: no probe.
    pub probe_rate: f64,
    /// When to begin publishing (Unix time in ms); `None`: as soon as the sessions settle.
    pub start_at: Option<u64>,
}

pub async fn run(common: &Common, shape: Shape) -> anyhow::Result<Summary> {
    let Shape {
        clients,
        events,
        rate,
        probe_rate,
        start_at,
        ..
    } = shape;
    let topic = shape.topic.as_str();
    let subscribe = (topic != "global").then_some(topic);
    let fleet =
        Fleet::connect_subscribed(common, clients, |k| Some(format!("fan-{k}")), subscribe).await?;
    let connected = clients - fleet.failed;
    let publisher = Publisher::new(common.publish_base(), &common.key)?;
    eprintln!(
        "broadcasting {events} events to {connected} sessions{}",
        if rate > 0.0 {
            format!(" at {rate}/s")
        } else {
            " unpaced".into()
        }
    );
    if let Some(start_at) = start_at {
        wait_until_unix_ms(start_at).await;
    }
    let probe = if probe_rate > 0.0 {
        Some(PublishProbe::start(
            common.publish_base(),
            &common.key,
            probe_rate,
        )?)
    } else {
        None
    };
    let cpu_before = common.pid.and_then(CpuTime::of);
    let own_cpu_before = CpuTime::of(std::process::id());
    let start = Instant::now();
    // On a thread of its own, like the probe: among the sessions' readers, the publisher's
    // requests would wait for the generator's own busy runtime.
    let topic_owned = topic.to_string();
    let broadcasting = aside("broadcaster", move || {
        broadcast(publisher, events, rate, topic_owned)
    })?;
    let Broadcasted {
        accepted,
        publish_us,
        http_errors,
    } = tokio::task::spawn_blocking(move || broadcasting.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the broadcasting thread panicked"))?;
    let publishing = start.elapsed();
    let expected = connected as u64 * accepted.len() as u64;
    let delivered = fleet
        .await_deliveries(expected, Duration::from_secs(common.drain_timeout))
        .await;
    let elapsed = start.elapsed();
    let cpu_used: Vec<(&str, CpuTime)> = [
        (
            "server",
            common
                .pid
                .and_then(|pid| CpuTime::used_since(pid, cpu_before)),
        ),
        (
            "generator",
            CpuTime::used_since(std::process::id(), own_cpu_before),
        ),
    ]
    .into_iter()
    .filter_map(|(whose, cpu)| Some((whose, cpu?)))
    .collect();
    let probed = probe.map(PublishProbe::finish);
    let rate_seen = delivered as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{delivered} of {expected} deliveries in {:.2} s: {rate_seen:.0} deliveries/s (publishing took {:.2} s)",
        elapsed.as_secs_f64(),
        publishing.as_secs_f64()
    );
    for (whose, cpu) in &cpu_used {
        eprintln!("{whose} CPU: {}", cpu.line(delivered));
    }
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
    let broadcast_publish = Latency::of_micros(publish_us);
    eprintln!(
        "broadcast publish answered in: {}",
        broadcast_publish.line()
    );
    if let Some(probed) = &probed {
        eprintln!(
            "probe publishes during the fan-out: {} answered in {}; {} failed",
            probed.latencies_us.len(),
            Latency::of_micros(probed.latencies_us.iter().copied()).line(),
            probed.errors
        );
    }
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
    summary.set("publish_ms", broadcast_publish.to_json());
    summary.set("publishing_seconds", json!(publishing.as_secs_f64()));
    if let Some(probed) = &probed {
        let answered = Latency::of_micros(probed.latencies_us.iter().copied());
        summary.set(
            "probe",
            json!({
                "rate": probe_rate,
                "publishes": probed.latencies_us.len(),
                "errors": probed.errors,
                "publish_ms": answered.to_json(),
            }),
        );
    }
    for (whose, cpu) in &cpu_used {
        summary.set(&format!("{whose}_cpu"), cpu.to_json(delivered));
    }
    summary.set("liveness", liveness(&results));
    if failed > 0 {
        summary.fail(&format!("{failed} sessions failed to connect"));
    }
    if http_errors > 0 {
        summary.fail(&format!("{http_errors} publishes failed"));
    }
    if let Some(errors) = probed.as_ref().map(|p| p.errors).filter(|e| *e > 0) {
        summary.fail(&format!("{errors} probe publishes failed"));
    }
    if !tally.clean() {
        summary.fail("deliveries were lost, doubled or misdelivered");
    }
    Ok(summary)
}

/// Sleeps until the wall clock reads `unix_ms`; says so when that has already passed, since
/// the phase the caller asked for is then lost.
async fn wait_until_unix_ms(unix_ms: u64) {
    let now_ms = now_micros() / 1000;
    if now_ms > unix_ms {
        eprintln!(
            "--start-at passed {} ms before the sessions settled: publishing at once",
            now_ms - unix_ms
        );
        return;
    }
    tokio::time::sleep(Duration::from_millis(unix_ms - now_ms)).await;
}

/// What the broadcasting thread achieved.
struct Broadcasted {
    accepted: Vec<u32>,
    /// Each accepted broadcast's publish time, µs.
    publish_us: Vec<u64>,
    http_errors: usize,
}

/// Publishes `events` broadcasts on `topic` at `rate` per second (0: each as soon as the
/// previous one is answered).
async fn broadcast(publisher: Publisher, events: usize, rate: f64, topic: String) -> Broadcasted {
    let mut done = Broadcasted {
        accepted: Vec::with_capacity(events),
        publish_us: Vec::with_capacity(events),
        http_errors: 0,
    };
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
        let sent = Instant::now();
        match publisher.post(body).await {
            Ok(()) => {
                done.publish_us.push(sent.elapsed().as_micros() as u64);
                done.accepted.push(i as u32);
            }
            Err(e) => {
                if done.http_errors < 5 {
                    eprintln!("publish {i} failed: {e}");
                }
                done.http_errors += 1;
            }
        }
    }
    done
}
