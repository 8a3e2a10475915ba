//! How many sessions are online, on this node or on every node: the publish answer's
//! `online_sessions`, the per-user session limit and `GET /api/presence` all ask here, so
//! one node alone and a cluster behind Redis give the same answers.

use std::sync::Arc;

use async_trait::async_trait;

use crate::hub::Hub;

/// Session counts across the deployment.
#[async_trait]
pub trait OnlineCounts: Send + Sync + 'static {
    /// Live sessions of each of `users`, in order.
    async fn user_sessions(&self, users: &[&str]) -> Vec<usize>;
    /// Live sessions receiving `topic` (every session, for `global`).
    async fn topic_sessions(&self, topic: &str) -> usize;
}

/// One node: its own hub knows everything.
pub struct LocalOnline {
    hub: Hub,
}

impl LocalOnline {
    pub fn new(hub: Hub) -> Arc<LocalOnline> {
        Arc::new(LocalOnline { hub })
    }
}

#[async_trait]
impl OnlineCounts for LocalOnline {
    async fn user_sessions(&self, users: &[&str]) -> Vec<usize> {
        let presence = self.hub.presence();
        users.iter().map(|u| presence.user_sessions(u)).collect()
    }

    async fn topic_sessions(&self, topic: &str) -> usize {
        self.hub.presence().topic_sessions(topic)
    }
}
