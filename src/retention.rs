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
        notifications_before: now - config.retention_days as i64 * DAY_MS,
        broadcasts_before: now - config.topic_history_days as i64 * DAY_MS,
        idempotency_before: now,
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
