//! Retention: a background task that prunes old notifications, old topic history and expired
//! idempotency keys, once at start and then every hour.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::model::now_millis;
use crate::store::{RetentionPolicy, Store};

/// Time between pruning passes.
const INTERVAL: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The policy the config asks for, as of now.
pub fn policy(config: &Config) -> RetentionPolicy {
    let now = now_millis();
    RetentionPolicy {
        notifications_before: cutoff(now, config.retention_days),
        broadcasts_before: cutoff(now, config.topic_history_days),
        idempotency_before: now,
    }
}

/// What is older than `days` before `now` goes; `days` 0 means nothing goes for its age.
fn cutoff(now: i64, days: u64) -> i64 {
    match days {
        0 => i64::MIN,
        days => now.saturating_sub(
            i64::try_from(days)
                .unwrap_or(i64::MAX)
                .saturating_mul(DAY_MS),
        ),
    }
}

/// Starts the pruning task on the current runtime.
pub fn spawn(store: Arc<dyn Store>, config: &Config) {
    let config = config.clone();
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        loop {
            ticks.tick().await;
            match store.prune(policy(&config)).await {
                Ok(report) if report.notifications + report.broadcasts == 0 => log::debug!(
                    "retention: nothing to prune ({} idempotency keys expired)",
                    report.idempotency_keys
                ),
                Ok(report) => log::info!(
                    "retention: pruned {} notifications, {} broadcasts, {} idempotency keys",
                    report.notifications,
                    report.broadcasts,
                    report.idempotency_keys
                ),
                Err(e) => log::error!("retention: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_keeps_everything_and_huge_ones_do_not_overflow() {
        assert_eq!(cutoff(1_000, 0), i64::MIN);
        assert_eq!(cutoff(DAY_MS * 3, 1), DAY_MS * 2);
        assert!(cutoff(0, u64::MAX) < -DAY_MS * 365 * 1000);
    }
}
