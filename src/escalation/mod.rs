//! The offline hook: a notification still unread `escalation_after_secs` after it was
//! published, whose user has had no live session anywhere since, is POSTed once to
//! `escalation_webhook`, so the site can email it.
//!
//! The due work lives in the database ([`crate::store::escalation`]), so it survives restarts
//! and is shared by every node. A worker on each node, every [`tick`]:
//! 1. scans: notifications that became due since the last scan, still unread, whose user was
//!    not seen since ([`seen`]), go into the outbox (one node at a time does this);
//! 2. leases a few due outbox rows (each to one node), checks each again (still unread, user
//!    not seen, no session online on any node: [`crate::online`]), and POSTs it
//!    ([`webhook`]). A 2xx ends it; anything else is tried again after [`backoff`].
//!
//! A node that dies mid-POST leaves its lease to run out, and another node sends the row
//! again: the receiver may see a notification twice, with the same `Idempotency-Key`.

pub mod seen;
pub mod webhook;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::metrics::Metrics;
use crate::model::now_millis;
use crate::online::OnlineCounts;
use crate::state::AppState;
use crate::store::escalation::{DueScan, EscalationStore, Finish, Leased};
use webhook::{AttemptError, Webhook, ATTEMPT_TIMEOUT};

/// How far before its cursor a scan looks again: a notification committed after later ones
/// were scanned (a slow transaction, another node's clock a little ahead) is still found.
const LOOKBACK: Duration = Duration::from_secs(30);
/// Notifications older than this when they become due are not escalated: after a long outage,
/// or a webhook turned off and on again, a day's backlog is sent, not months of it.
const MAX_CATCH_UP: Duration = Duration::from_secs(24 * 3600);
/// Most notifications one scan queues; the next scan goes on from there.
const SCAN_LIMIT: i64 = 1000;
/// Outbox rows one node leases per tick; they are POSTed concurrently.
const LEASE_BATCH: i64 = 32;
/// How long a lease lasts: one attempt and a wide margin, so no other node takes the row
/// while it is being sent.
const LEASE_FOR: Duration = Duration::from_secs(ATTEMPT_TIMEOUT.as_secs() + 30);
/// The first retry waits about this long; each next one twice as long...
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// ...up to this.
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// Time between two passes of the worker: a quarter of `escalation_after_secs`, between
/// 250 ms and 5 s, so a notification is sent at most a few seconds late.
pub fn tick(after_secs: u64) -> Duration {
    Duration::from_millis(after_secs.saturating_mul(250).clamp(250, 5000))
}

/// The wait before the try that follows `attempts` failed ones: doubling from
/// [`FIRST_RETRY`], capped at [`MAX_RETRY`], and scaled by `jitter` (0 to 1) into its upper
/// half, so that rows that failed together do not all come back together.
pub fn backoff(attempts: i64, jitter: f64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
    let full = FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_RETRY);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A number in [0, 1) from the standard library's per-process random hash keys.
fn jitter() -> f64 {
    let random = RandomState::new().build_hasher().finish();
    (random >> 11) as f64 / (1u64 << 53) as f64
}

/// Why a leased row is not sent: its notification is gone (`read` is `None`) or read, or its
/// user was seen at or after it was published.
fn reason_to_skip(
    read: Option<bool>,
    published_at: i64,
    last_seen: Option<i64>,
) -> Option<&'static str> {
    match read {
        None => Some("it was deleted"),
        Some(true) => Some("it was read"),
        Some(false) if last_seen >= Some(published_at) => Some("its user was online since"),
        Some(false) => None,
    }
}

/// One node's worker.
struct Escalator {
    store: Arc<dyn EscalationStore>,
    online: Arc<dyn OnlineCounts>,
    webhook: Webhook,
    after: Duration,
    metrics: Arc<Metrics>,
}

/// The offline hook running on this node: what sessions and shutdown need of it.
pub struct Running {
    /// Where sessions record that their user was seen.
    pub last_seen: Arc<seen::LastSeen>,
    /// Held by the worker for each pass, so shutdown can wait for the current one to record
    /// its outcomes (a POST answered but not recorded would be sent again).
    pass: tokio::sync::Mutex<()>,
}

impl Running {
    /// Waits for the pass under way, if any (none starts once shutdown has begun), then writes
    /// the last sightings of users.
    pub async fn stop(&self) {
        let _no_pass = self.pass.lock().await;
        self.last_seen.flush().await;
    }
}

/// Starts the worker, and the recording of when users were seen, when a webhook is
/// configured. The configuration was checked at start (a secret goes with the webhook).
pub fn start(state: &mut AppState) -> anyhow::Result<()> {
    let config = state.config.clone();
    let (Some(url), Some(secret)) = (&config.escalation_webhook, &config.escalation_secret) else {
        return Ok(());
    };
    let store = state.store.escalations();
    let running = Arc::new(Running {
        last_seen: seen::LastSeen::start(store.clone()),
        pass: tokio::sync::Mutex::new(()),
    });
    state.escalation = Some(running.clone());
    let escalator = Escalator {
        store,
        online: state.online.clone(),
        webhook: Webhook::new(url.clone(), secret.clone())?,
        after: Duration::from_secs(config.escalation_after_secs),
        metrics: state.metrics.clone(),
    };
    let state = state.clone();
    log::info!(
        "escalation: unread notifications of offline users go to {} after {} s",
        crate::config::redact_url(url),
        config.escalation_after_secs
    );
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(tick(config.escalation_after_secs));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let _pass = running.pass.lock().await;
            if state.is_shutting_down() {
                return;
            }
            escalator.pass().await;
        }
    });
    Ok(())
}

impl Escalator {
    /// One scan, then one batch of deliveries.
    async fn pass(&self) {
        let now = now_millis();
        let cutoff = now.saturating_sub(millis(self.after));
        let scan = DueScan {
            cutoff,
            lookback: millis(LOOKBACK),
            oldest: cutoff.saturating_sub(millis(MAX_CATCH_UP)),
            limit: SCAN_LIMIT,
            now,
        };
        match self.store.enqueue_due(scan).await {
            Ok(0) => {}
            Ok(n) => log::debug!("escalation: {n} notifications due"),
            Err(e) => log::error!("escalation: cannot scan for due notifications: {e}"),
        }
        let leased = match self
            .store
            .lease(now, now.saturating_add(millis(LEASE_FOR)), LEASE_BATCH)
            .await
        {
            Ok(leased) => leased,
            Err(e) => {
                log::error!("escalation: cannot lease due escalations: {e}");
                return;
            }
        };
        join_all(leased.iter().map(|l| self.deliver(l))).await;
    }

    /// Sends one leased row, or drops it, or schedules its next try.
    async fn deliver(&self, leased: &Leased) {
        let id = leased.notification_id;
        let read = leased.notification.as_ref().map(|n| n.read);
        let skip = match reason_to_skip(read, leased.published_at, leased.last_seen) {
            Some(reason) => Some(reason),
            None => {
                let online = self.online.user_sessions(&[&leased.user]).await;
                (online.first().copied().unwrap_or(0) > 0).then_some("its user is online")
            }
        };
        let finish = match (&leased.notification, skip) {
            (Some(notification), None) => {
                let body = webhook::body(&leased.user, notification);
                match self.webhook.post(id, body).await {
                    Ok(()) => {
                        log::info!("escalation of notification {id} sent");
                        self.metrics.escalations.with_label_values(&["sent"]).inc();
                        Finish::Done
                    }
                    Err(e) => self.failed(leased, &e),
                }
            }
            (_, reason) => {
                let reason = reason.unwrap_or("it was deleted");
                log::debug!("escalation of notification {id}: not sent, {reason}");
                self.metrics
                    .escalations
                    .with_label_values(&["skipped"])
                    .inc();
                Finish::Done
            }
        };
        if let Err(e) = self.store.finish(leased, finish).await {
            log::error!("escalation of notification {id}: cannot record the outcome: {e}");
        }
    }

    /// Logs a failed attempt and says when to try again.
    fn failed(&self, leased: &Leased, error: &AttemptError) -> Finish {
        self.metrics
            .escalations
            .with_label_values(&["failed"])
            .inc();
        let attempts = leased.attempts.saturating_add(1);
        let wait = backoff(attempts, jitter());
        log::warn!(
            "escalation of notification {}: {error} (attempt {attempts}); next try in {}",
            leased.notification_id,
            humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
        );
        Finish::Retry {
            attempts,
            next_attempt_at: now_millis().saturating_add(millis(wait)),
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_an_hour() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(13, 1.0), Duration::from_secs(3600));
        assert_eq!(backoff(i64::MAX, 1.0), Duration::from_secs(3600));
        assert_eq!(backoff(0, 1.0), Duration::from_secs(1));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn only_unread_notifications_of_users_not_seen_since_are_sent() {
        assert_eq!(reason_to_skip(Some(false), 1_000, None), None);
        assert_eq!(reason_to_skip(Some(false), 1_000, Some(999)), None);
        assert!(reason_to_skip(Some(false), 1_000, Some(1_000)).is_some());
        assert!(reason_to_skip(Some(true), 1_000, None).is_some());
        assert_eq!(reason_to_skip(None, 1_000, None), Some("it was deleted"));
    }

    #[test]
    fn the_tick_follows_the_delay() {
        assert_eq!(tick(1), Duration::from_millis(250));
        assert_eq!(tick(8), Duration::from_secs(2));
        assert_eq!(tick(900), Duration::from_secs(5));
        assert_eq!(tick(u64::MAX), Duration::from_secs(5));
    }
}
