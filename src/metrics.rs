//! Prometheus metrics: what an operator graphs and alerts on. One registry per running
//! application (tests run several in one process), rendered in the text format at `GET
//! /metrics`.
//!
//! Counting is an atomic add on a hot path; where many frames are counted at once (a
//! broadcast to every session), callers add the total once.

use std::time::{Duration, SystemTime};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets, seconds: from a fast local commit to a badly stalled one.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Group-commit sizes, in queued writes.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every metric informd exports.
pub struct Metrics {
    registry: Registry,
    /// WebSocket sessions open on this node.
    pub sessions: IntGauge,
    pub sessions_opened: IntCounter,
    /// Sessions ended, by the close code sent (`1006`: the client went without a close).
    pub sessions_closed: IntCounterVec,
    /// Handshakes refused, by error code.
    pub handshakes_refused: IntCounterVec,
    /// Frames queued for sessions, by stream (`user` or `topic`).
    pub deliveries: IntCounterVec,
    /// `POST /publish` requests, by result (`ok`, `duplicate`, or the error code).
    pub publishes: IntCounterVec,
    /// Notifications and broadcasts stored.
    pub events_stored: IntCounterVec,
    /// `POST /publish`, from the request to the answer.
    pub publish_duration: Histogram,
    /// From the publish request's arrival to its frames being queued for every live session.
    pub delivery_latency: Histogram,
    /// One group commit, from the first statement to the commit returning.
    pub commit_duration: Histogram,
    /// Writes merged into one group commit.
    pub commit_batch: Histogram,
    /// Sessions closed with 1013 because they did not keep up, by where it was noticed
    /// (`queue`: the hub found the outbound queue full; `write`: a write timed out).
    pub slow_consumers: IntCounterVec,
    /// Replays from the database, by cause (`resume`: `since`; `gap`: a seq jumped ahead).
    pub replays: IntCounterVec,
    /// Events sent by replays.
    pub replayed_events: IntCounter,
    /// Database operations that failed.
    pub storage_errors: IntCounter,
    /// Broker operations that failed.
    pub broker_errors: IntCounter,
    /// Escalations to the offline webhook, by result (`sent`: a 2xx; `failed`: an attempt
    /// that will be retried; `skipped`: read, or its user came online, before it was sent).
    pub escalations: IntCounterVec,
}

/// `metric`, registered in `registry`.
///
/// The two `expect`s cannot fail at run time: every name and help text is a constant in this
/// file, checked the first time any test builds `Metrics`, and each registry is fresh (one per
/// application), so no name is registered twice. Nothing a user or the network sends reaches
/// them.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("a valid metric name");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::new(name, help))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]),
    )
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    registered(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())),
    )
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let build_info = registered(
            r,
            IntGaugeVec::new(
                Opts::new("informd_build_info", "The running build; always 1."),
                &["version"],
            ),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let sessions = registered(
            r,
            IntGauge::new("informd_sessions", "WebSocket sessions open on this node."),
        );
        Metrics {
            sessions,
            sessions_opened: counter(r, "informd_sessions_opened_total", "WebSocket sessions opened."),
            sessions_closed: counter_vec(
                r,
                "informd_sessions_closed_total",
                "WebSocket sessions ended, by the close code sent (1006: the client went first).",
                "code",
            ),
            handshakes_refused: counter_vec(
                r,
                "informd_handshakes_refused_total",
                "WebSocket handshakes refused, by error code.",
                "reason",
            ),
            deliveries: counter_vec(
                r,
                "informd_deliveries_total",
                "Frames queued for sessions, by stream.",
                "stream",
            ),
            publishes: counter_vec(
                r,
                "informd_publishes_total",
                "POST /publish requests, by result (ok, duplicate, or the error code).",
                "result",
            ),
            events_stored: counter_vec(
                r,
                "informd_events_stored_total",
                "Notifications and broadcasts stored.",
                "kind",
            ),
            publish_duration: histogram(
                r,
                "informd_publish_duration_seconds",
                "POST /publish, from the request to the answer.",
                LATENCY_BUCKETS,
            ),
            delivery_latency: histogram(
                r,
                "informd_publish_to_delivery_seconds",
                "From a publish request's arrival to its frames being queued for every live session.",
                LATENCY_BUCKETS,
            ),
            commit_duration: histogram(
                r,
                "informd_commit_duration_seconds",
                "One group commit to the database.",
                LATENCY_BUCKETS,
            ),
            commit_batch: histogram(
                r,
                "informd_commit_batch_size",
                "Writes merged into one group commit.",
                BATCH_BUCKETS,
            ),
            slow_consumers: counter_vec(
                r,
                "informd_slow_consumer_closes_total",
                "Sessions closed with 1013 for not keeping up, by where it was noticed.",
                "cause",
            ),
            replays: counter_vec(
                r,
                "informd_replays_total",
                "Replays from the database, by cause (resume or gap).",
                "cause",
            ),
            replayed_events: counter(
                r,
                "informd_replayed_events_total",
                "Events sent by replays.",
            ),
            storage_errors: counter(
                r,
                "informd_storage_errors_total",
                "Database operations that failed.",
            ),
            broker_errors: counter(
                r,
                "informd_broker_errors_total",
                "Broker operations that failed.",
            ),
            escalations: counter_vec(
                r,
                "informd_escalations_total",
                "POSTs to escalation_webhook, by result (sent, failed and retried, skipped).",
                "result",
            ),
            registry,
        }
    }

    /// Records the time since `published` (a publish request's arrival) as delivery latency.
    pub fn delivered_since(&self, published: SystemTime) {
        let elapsed = published.elapsed().unwrap_or(Duration::ZERO);
        self.delivery_latency.observe(elapsed.as_secs_f64());
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            log::error!("cannot render metrics: {e}");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.sessions.inc();
        metrics.sessions_closed.with_label_values(&["1000"]).inc();
        let text = metrics.render();
        assert!(text.contains("informd_sessions 1\n"), "{text}");
        assert!(text.contains("informd_sessions_closed_total{code=\"1000\"} 1\n"));
        assert!(text.contains("informd_build_info{version=\""));
        assert!(text.contains("# TYPE informd_publish_duration_seconds histogram"));
    }
}
