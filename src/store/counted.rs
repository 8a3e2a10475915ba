//! A [`Store`] that counts what passes through it for `/metrics`: failed operations and the
//! events stored. It wraps whichever database is in use, so every backend is counted the same.

use std::sync::Arc;

use async_trait::async_trait;

use super::escalation::EscalationStore;
use super::{
    PruneReport, PublishOutcome, PublishRequest, ReadSelector, Replay, RetentionPolicy, Store,
    StoreError, StoredIdempotency, UserState,
};
use crate::metrics::Metrics;
use crate::model::{Broadcast, Notification};
use crate::preferences::Preferences;

/// `inner`, counted into `metrics`.
pub struct Counted {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Counted {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Counted {
        Counted { inner, metrics }
    }

    /// Counts a failure; a taken idempotency key is an answer, not a failure.
    fn count<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            if !matches!(e, StoreError::IdempotencyConflict) {
                self.metrics.storage_errors.inc();
            }
        }
        result
    }
}

#[async_trait]
impl Store for Counted {
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, StoreError> {
        let outcome = self.count(self.inner.publish(request).await)?;
        let stored = &self.metrics.events_stored;
        let notifications = outcome.recipients as u64;
        let broadcasts = (outcome.ids.len() as u64).saturating_sub(notifications);
        stored
            .with_label_values(&["notification"])
            .inc_by(notifications);
        stored.with_label_values(&["broadcast"]).inc_by(broadcasts);
        Ok(outcome)
    }

    async fn mark_read(&self, user: &str, selector: ReadSelector) -> Result<i64, StoreError> {
        self.count(self.inner.mark_read(user, selector).await)
    }

    async fn user_state(&self, user: &str) -> Result<UserState, StoreError> {
        self.count(self.inner.user_state(user).await)
    }

    async fn notifications_after(
        &self,
        user: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Notification>, StoreError> {
        self.count(self.inner.notifications_after(user, after, limit).await)
    }

    async fn broadcasts_after(
        &self,
        topic: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Broadcast>, StoreError> {
        self.count(self.inner.broadcasts_after(topic, after, limit).await)
    }

    async fn topic_seq(&self, topic: &str) -> Result<i64, StoreError> {
        self.count(self.inner.topic_seq(topic).await)
    }

    async fn list_notifications(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u64,
        unread_only: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let page = self
            .inner
            .list_notifications(user, before, limit, unread_only)
            .await;
        self.count(page)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        self.count(self.inner.idempotency(key).await)
    }

    async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError> {
        self.count(self.inner.prune(policy).await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.count(self.inner.ping().await)
    }

    async fn newer_schema(&self) -> Result<Option<i64>, StoreError> {
        self.count(self.inner.newer_schema().await)
    }

    async fn all_preferences(&self) -> Result<Vec<(String, Preferences)>, StoreError> {
        self.count(self.inner.all_preferences().await)
    }

    async fn preferences(&self, user: &str) -> Result<Option<Preferences>, StoreError> {
        self.count(self.inner.preferences(user).await)
    }

    async fn set_preferences(
        &self,
        user: &str,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        self.count(self.inner.set_preferences(user, preferences).await)
    }

    fn escalations(&self) -> Arc<dyn EscalationStore> {
        self.inner.escalations()
    }
}
