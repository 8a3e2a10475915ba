//! The client's commands: `read`, `subscribe`, `unsubscribe`, `refresh` and `ping`.

use std::sync::Arc;

use super::deadlines::Deadlines;
use super::{Exit, Session, MAX_READ_IDS, MAX_TOPICS};
use crate::model::{check_topic, GLOBAL_TOPIC};
use crate::protocol::{self, close, ClientFrame};
use crate::store::ReadSelector;

impl Session {
    pub(super) async fn client_frame(
        &mut self,
        frame: ClientFrame,
        deadlines: &mut Deadlines,
    ) -> Result<(), Exit> {
        match frame {
            ClientFrame::Ping => {
                self.strikes = 0;
                self.write(protocol::pong()).await
            }
            ClientFrame::Read { ids, up_to, all } => self.read(ids, up_to, all).await,
            ClientFrame::Subscribe { topic, since } => self.subscribe(topic, since).await,
            ClientFrame::Unsubscribe { topic } => self.unsubscribe(topic).await,
            ClientFrame::Refresh { token } => self.refresh(&token, deadlines).await,
        }
    }

    async fn read(
        &mut self,
        ids: Option<Vec<i64>>,
        up_to: Option<i64>,
        all: Option<bool>,
    ) -> Result<(), Exit> {
        let Some(user) = self.user().map(str::to_string) else {
            return self
                .error("anonymous", "an anonymous session has no notifications")
                .await;
        };
        let selector = match (ids, up_to, all) {
            (Some(ids), None, None) if ids.len() <= MAX_READ_IDS => ReadSelector::Ids(ids),
            (Some(_), None, None) => {
                let message = format!("at most {MAX_READ_IDS} ids per read");
                return self.error("bad_frame", &message).await;
            }
            (None, Some(seq), None) => ReadSelector::UpTo(seq),
            (None, None, Some(true)) => ReadSelector::All,
            _ => {
                return self
                    .error("bad_frame", "read takes one of ids, up_to or all:true")
                    .await
            }
        };
        self.strikes = 0;
        // The new count reaches every session of the user (this one too) through the hub.
        match self.state.store.mark_read(&user, selector).await {
            Ok(_) => Ok(()),
            Err(e) => {
                log::error!("session {}: mark read failed: {e}", self.id);
                self.error("unavailable", "could not mark read; try again")
                    .await
            }
        }
    }

    fn may_subscribe(&self, topic: &str) -> bool {
        topic == GLOBAL_TOPIC
            || self
                .state
                .config
                .topic_prefixes
                .iter()
                .any(|p| topic.starts_with(p.as_str()))
            || self
                .identity
                .as_ref()
                .is_some_and(|i| i.may_subscribe(topic))
    }

    async fn subscribe(&mut self, topic: String, since: Option<i64>) -> Result<(), Exit> {
        if let Err(m) = check_topic(&topic) {
            return self.error("bad_topic", &format!("topic {m}")).await;
        }
        if !self.may_subscribe(&topic) {
            return self
                .error(
                    "forbidden_topic",
                    "this session may not subscribe to that topic",
                )
                .await;
        }
        let topic: Arc<str> = Arc::from(topic);
        if !self.topics.contains(&topic) {
            if self.topics.len() >= MAX_TOPICS {
                let message = format!("at most {MAX_TOPICS} topics per session");
                return self.error("too_many_topics", &message).await;
            }
            self.topics.add(topic.clone());
            // Deliveries are queued from here on; the replay below fills in what came before.
            self.state
                .hub
                .subscribe(self.id, self.user(), topic.clone())
                .await;
        }
        self.strikes = 0;
        match since {
            Some(since) => self.replay_topic(&topic, since, true).await,
            None => {
                let latest = self.state.store.topic_seq(&topic).await.map_err(|e| {
                    log::error!("session {}: topic seq failed: {e}", self.id);
                    Exit::Close(close::TRY_AGAIN_LATER, "storage unavailable")
                })?;
                if let Some(position) = self.topics.position_mut(&topic) {
                    position.skip_to(latest);
                }
                self.write(protocol::subscribed(&topic, latest)).await
            }
        }
    }

    async fn unsubscribe(&mut self, topic: String) -> Result<(), Exit> {
        if topic == GLOBAL_TOPIC {
            return self
                .error("bad_topic", "every session receives global")
                .await;
        }
        let topic: Arc<str> = Arc::from(topic);
        if self.topics.remove(&topic) {
            self.state
                .hub
                .unsubscribe(self.id, self.user(), topic.clone());
        }
        self.strikes = 0;
        self.write(protocol::unsubscribed(&topic)).await
    }

    async fn refresh(&mut self, token: &str, deadlines: &mut Deadlines) -> Result<(), Exit> {
        let Some(current) = &self.identity else {
            return self
                .error("anonymous", "reconnect with a token to become a user")
                .await;
        };
        match self.state.verifier.verify(token) {
            Ok(identity) if identity.user == current.user => {
                self.identity = Some(identity);
                deadlines.expire_at(self.token_expiry());
                self.strikes = 0;
                Ok(())
            }
            Ok(_) => Err(Exit::Close(close::POLICY, "token is for another user")),
            Err(crate::auth::AuthError::Expired) => {
                self.error("token_expired", "the new token has expired")
                    .await
            }
            Err(e) => self.error("invalid_token", &e.to_string()).await,
        }
    }
}
