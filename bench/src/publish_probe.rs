//! A publisher that times its own publishes while a scenario loads the server: durable
//! single-event notifications, at a steady rate, to a user with no session (so nothing is
//! delivered and only the publish itself is measured).
//!
//! It runs on a thread and runtime of its own, not among the generator's thousands of
//! WebSocket readers, so what it measures is the server's answer time, not the generator's
//! own scheduling while it parses a flood of frames.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::time::MissedTickBehavior;

use crate::publisher::Publisher;

/// The user the probe publishes to; no session of the bench uses it.
const PROBE_USER: &str = "bench-probe";

/// What the probe measured.
#[derive(Debug, Default)]
pub struct ProbeResult {
    /// Each accepted publish's time from sending the request to having the answer, µs.
    pub latencies_us: Vec<u64>,
    pub errors: usize,
}

/// A running probe; [`PublishProbe::finish`] stops it and returns its figures.
pub struct PublishProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProbeResult>,
}

impl PublishProbe {
    /// Starts publishing to `base` at `rate` per second, one request at a time (a publish
    /// slower than the interval delays the next one).
    pub fn start(base: &str, key: &str, rate: f64) -> anyhow::Result<PublishProbe> {
        anyhow::ensure!(rate > 0.0, "the probe rate must be above 0");
        let publisher = Publisher::new(base, key)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let every = Duration::from_secs_f64(1.0 / rate);
        let thread = aside("publish-probe", move || probe(publisher, every, stopped))?;
        Ok(PublishProbe { stop, thread })
    }

    /// Stops the probe after its publish in flight, if any.
    pub fn finish(self) -> ProbeResult {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

async fn probe(publisher: Publisher, every: Duration, stop: Arc<AtomicBool>) -> ProbeResult {
    let mut result = ProbeResult::default();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let body = json!({"to": PROBE_USER, "kind": "bench.probe"}).to_string();
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let sent = Instant::now();
        match publisher.post(body.clone()).await {
            Ok(()) => result.latencies_us.push(sent.elapsed().as_micros() as u64),
            Err(e) => {
                if result.errors < 3 {
                    eprintln!("probe publish failed: {e}");
                }
                result.errors += 1;
            }
        }
    }
    result
}

/// Runs the future that `make` builds on a new thread with a runtime of its own, away from
/// the generator's sessions; join the handle for its output.
pub fn aside<Make, Run, T>(name: &str, make: Make) -> anyhow::Result<JoinHandle<T>>
where
    Make: FnOnce() -> Run + Send + 'static,
    Run: Future<Output = T>,
    T: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name} runtime"))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(make()))
        .with_context(|| format!("starting the {name} thread"))
}
