//! Turning what the sessions saw into figures: exactly-once accounting, latency percentiles,
//! and the one-line JSON summary.

use std::collections::HashSet;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::clients::ClientResult;

/// Delivery accounting over all sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub doubled: u64,
    /// Probes a session received that were never meant for it.
    pub misdelivered: u64,
}

impl Tally {
    /// Compares what each session received with what it should have: `expected(k)` for
    /// session `k`.
    pub fn count<'a>(results: &[ClientResult], expected: impl Fn(usize) -> &'a [u32]) -> Tally {
        let mut tally = Tally::default();
        for (k, result) in results.iter().enumerate() {
            let want: HashSet<u32> = expected(k).iter().copied().collect();
            let mut seen = HashSet::with_capacity(result.received.len());
            for i in &result.received {
                if !seen.insert(*i) {
                    tally.doubled += 1;
                } else if !want.contains(i) {
                    tally.misdelivered += 1;
                }
            }
            tally.expected += want.len() as u64;
            tally.delivered += result.received.len() as u64;
            tally.lost += want.iter().filter(|i| !seen.contains(i)).count() as u64;
        }
        tally
    }

    pub fn clean(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.misdelivered == 0
    }

    pub fn to_json(self) -> Value {
        json!({
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "doubled": self.doubled,
            "misdelivered": self.misdelivered,
        })
    }
}

/// Publish→receive latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Publish→receive, over every session's deliveries.
    pub fn of(results: &[ClientResult]) -> Latency {
        Latency::of_micros(
            results
                .iter()
                .flat_map(|r| r.latencies_us.iter().map(|us| u64::from(*us))),
        )
    }

    /// Percentiles of durations given in microseconds.
    pub fn of_micros(micros: impl IntoIterator<Item = u64>) -> Latency {
        let Ok(mut histogram) = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3) else {
            return Latency::default();
        };
        for us in micros {
            histogram.saturating_record(us.max(1));
        }
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }

    pub fn to_json(self) -> Value {
        json!({"p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max})
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50, self.p90, self.p99, self.max
        )
    }
}

/// Sessions still open at the end, and those the server closed (with codes).
pub fn liveness(results: &[ClientResult]) -> Value {
    let alive = results.iter().filter(|r| r.alive).count();
    let mut closed: Map<String, Value> = Map::new();
    for code in results.iter().filter_map(|r| r.closed) {
        let entry = closed.entry(code.to_string()).or_insert(json!(0));
        *entry = json!(entry.as_u64().unwrap_or(0) + 1);
    }
    json!({"alive": alive, "closed": closed})
}

/// The scenario's result: figures for the JSON line, and whether the run was clean.
pub struct Summary {
    pub fields: Map<String, Value>,
    pub ok: bool,
}

impl Summary {
    pub fn new(scenario: &str) -> Summary {
        let mut fields = Map::new();
        fields.insert("scenario".into(), json!(scenario));
        Summary { fields, ok: true }
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.fields.insert(key.into(), value);
    }

    /// Marks the run failed, saying why on stderr.
    pub fn fail(&mut self, why: &str) {
        eprintln!("FAIL: {why}");
        self.ok = false;
    }

    pub fn ok(&self) -> bool {
        self.ok
    }

    pub fn json(&self) -> String {
        let mut fields = self.fields.clone();
        fields.insert("ok".into(), json!(self.ok));
        Value::Object(fields).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_doubled_and_misdelivered_are_counted_apart() {
        let results = vec![
            ClientResult {
                received: vec![0, 1, 1, 7],
                ..Default::default()
            },
            ClientResult {
                received: vec![0, 1, 2],
                ..Default::default()
            },
        ];
        let want = [0u32, 1, 2];
        let tally = Tally::count(&results, |_| &want);
        assert_eq!((tally.lost, tally.doubled, tally.misdelivered), (1, 1, 1));
        assert_eq!((tally.expected, tally.delivered), (6, 7));
        assert!(!tally.clean());
    }
}
