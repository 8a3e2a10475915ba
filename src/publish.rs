//! Publishing: from an authorised `POST /publish` body to committed events and the answer.
//!
//! Order of checks: key, rate limit, body, idempotency, then one store transaction for the
//! whole batch (so a bad event rejects everything and nothing is half-published). Live delivery
//! happens through the store's commit listener, not here. Recipients who muted an event are
//! taken off it before the store sees it, from the preferences every node keeps in memory
//! ([`Mutes`]): no query per recipient.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::{bearer, PublisherKeys};
use crate::config::Config;
use crate::error::ApiError;
use crate::model::{now_millis, parse_events, EventInput};
use crate::online::OnlineCounts;
use crate::preferences::Mutes;
use crate::store::{IdempotencyRecord, PublishOutcome, PublishRequest, Store, StoreError};

/// Longest `Idempotency-Key`, bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `200` body of `POST /publish`.
#[derive(Debug, Serialize)]
pub struct PublishResponse {
    pub ids: Vec<i64>,
    pub recipients: usize,
    pub online_sessions: usize,
    /// (event, recipient) pairs neither stored nor pushed because the recipient muted them.
    pub muted: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl PublishResponse {
    fn new(outcome: PublishOutcome, duplicate: bool) -> PublishResponse {
        PublishResponse {
            ids: outcome.ids,
            recipients: outcome.recipients,
            online_sessions: outcome.online_sessions,
            muted: outcome.muted,
            duplicate,
        }
    }
}

/// Checks publishers and turns their bodies into stored events.
pub struct Publisher {
    store: Arc<dyn Store>,
    /// Every user's mutes, consulted for each recipient.
    mutes: Arc<Mutes>,
    keys: PublisherKeys,
    limiter: Option<DefaultKeyedRateLimiter<usize>>,
    /// Idempotency keys being processed on this node (409 for a concurrent repeat).
    in_flight: Mutex<HashSet<String>>,
    topic_history_max: u64,
    idempotency_ttl_ms: i64,
}

/// A publish's events once the muted recipients are off them.
struct Unmuted {
    events: Vec<EventInput>,
    /// (event, recipient) pairs taken off.
    muted: usize,
    /// Live sessions the remaining events reach.
    online_sessions: usize,
}

/// Removes an idempotency key from the in-flight set on every exit path.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.key);
        }
    }
}

impl Publisher {
    pub fn new(config: &Config, store: Arc<dyn Store>, mutes: Arc<Mutes>) -> Publisher {
        let limiter = NonZeroU32::new(config.publish_rate).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Publisher {
            store,
            mutes,
            keys: PublisherKeys::new(&config.publish_keys()),
            limiter,
            in_flight: Mutex::new(HashSet::new()),
            topic_history_max: config.topic_history_max,
            idempotency_ttl_ms: (config.idempotency_ttl_secs as i64).saturating_mul(1000),
        }
    }

    /// Checks the `Authorization` header and the key's rate limit.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let presented = authorization.and_then(bearer).ok_or_else(|| {
            ApiError::Unauthorized("Authorization: Bearer <publisher key> is required".into())
        })?;
        let index = self
            .keys
            .check(presented)
            .ok_or_else(|| ApiError::Unauthorized("the publisher key is not valid".into()))?;
        if let Some(limiter) = &self.limiter {
            if let Err(not_until) = limiter.check_key(&index) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(ApiError::RateLimited {
                    retry_after: wait.as_secs() + 1,
                });
            }
        }
        Ok(())
    }

    /// Validates and stores the body; answers after the commit.
    pub async fn publish(
        &self,
        body: &[u8],
        idempotency_key: Option<&str>,
        online: &dyn OnlineCounts,
    ) -> Result<PublishResponse, ApiError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        let mut events = parse_events(&value).map_err(|e| ApiError::InvalidField {
            field: e.field,
            message: e.message,
        })?;
        let muted = self.mutes.drop_muted(&mut events);
        let online_sessions = online_sessions(&events, online).await;
        let unmuted = Unmuted {
            events,
            muted,
            online_sessions,
        };
        let Some(key) = idempotency_key else {
            let outcome = self.store(unmuted, None).await?;
            return Ok(PublishResponse::new(outcome, false));
        };
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
            return Err(ApiError::InvalidField {
                field: "Idempotency-Key".into(),
                message: format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"),
            });
        }
        let body_hash = Sha256::digest(body).to_vec();
        if let Some(answer) = self.remembered(key, &body_hash).await? {
            return Ok(answer);
        }
        let _guard = self.enter(key)?;
        // A request with this key may have finished between the look-up and the guard.
        if let Some(answer) = self.remembered(key, &body_hash).await? {
            return Ok(answer);
        }
        let record = IdempotencyRecord {
            key: key.to_string(),
            body_hash: body_hash.clone(),
            expires_at: now_millis().saturating_add(self.idempotency_ttl_ms),
        };
        match self.store(unmuted, Some(record)).await {
            Ok(outcome) => Ok(PublishResponse::new(outcome, false)),
            // Another node committed the same key first.
            Err(ApiError::IdempotencyInFlight) => self
                .remembered(key, &body_hash)
                .await?
                .ok_or(ApiError::IdempotencyInFlight),
            Err(e) => Err(e),
        }
    }

    async fn store(
        &self,
        unmuted: Unmuted,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<PublishOutcome, ApiError> {
        let Unmuted {
            events,
            muted,
            online_sessions,
        } = unmuted;
        let nothing_left = events.iter().all(|e| match e {
            EventInput::Notification(n) => n.to.is_empty(),
            EventInput::Broadcast(_) => false,
        });
        if nothing_left && idempotency.is_none() {
            // Every recipient muted it: there is nothing to store and nothing to remember.
            return Ok(PublishOutcome {
                ids: Vec::new(),
                recipients: 0,
                online_sessions,
                muted,
            });
        }
        let request = PublishRequest {
            events,
            idempotency,
            online_sessions,
            muted,
            topic_history_max: self.topic_history_max,
            received: SystemTime::now(),
        };
        match self.store.publish(request).await {
            Ok(outcome) => Ok(outcome),
            Err(StoreError::IdempotencyConflict) => Err(ApiError::IdempotencyInFlight),
            Err(e) => Err(e.into()),
        }
    }

    /// The remembered answer for `key`: the same one for the same body, 422 for another body.
    async fn remembered(
        &self,
        key: &str,
        body_hash: &[u8],
    ) -> Result<Option<PublishResponse>, ApiError> {
        match self.store.idempotency(key).await? {
            Some(stored) if stored.body_hash == body_hash => {
                Ok(Some(PublishResponse::new(stored.outcome, true)))
            }
            Some(_) => Err(ApiError::IdempotencyMismatch),
            None => Ok(None),
        }
    }

    fn enter(&self, key: &str) -> Result<InFlight<'_>, ApiError> {
        let mut set = self
            .in_flight
            .lock()
            .map_err(|_| ApiError::Unavailable("idempotency table poisoned".into()))?;
        if !set.insert(key.to_string()) {
            return Err(ApiError::IdempotencyInFlight);
        }
        Ok(InFlight {
            set: &self.in_flight,
            key: key.to_string(),
        })
    }
}

/// Live sessions the events will reach, on every node.
async fn online_sessions(events: &[EventInput], online: &dyn OnlineCounts) -> usize {
    let mut total = 0;
    for event in events {
        total += match event {
            // Every recipient muted it (and Redis refuses an `HMGET` of no fields).
            EventInput::Notification(n) if n.to.is_empty() => 0,
            EventInput::Notification(n) => {
                let users: Vec<&str> = n.to.iter().map(String::as_str).collect();
                online.user_sessions(&users).await.iter().sum()
            }
            EventInput::Broadcast(b) => online.topic_sessions(&b.topic).await,
        };
    }
    total
}
