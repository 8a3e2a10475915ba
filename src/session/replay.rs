//! Replay: sending what a client missed from the database, for `since` on connect and on
//! subscribe, and to fill a gap in a live stream.

use super::{Exit, Session};
use crate::model::Notification;
use crate::protocol::{self, close};
use crate::store::Replay;

impl Session {
    /// Counts a replay: a resume (`since`) when announced, else a gap filled.
    fn count_replay(&self, announced: bool, replayed: usize) {
        let metrics = &self.state.metrics;
        let cause = if announced { "resume" } else { "gap" };
        metrics.replays.with_label_values(&[cause]).inc();
        metrics.replayed_events.inc_by(replayed as u64);
    }

    pub(super) async fn current_unread(&self) -> Result<i64, Exit> {
        match self.user() {
            Some(user) => self
                .state
                .store
                .user_state(user)
                .await
                .map(|s| s.unread)
                .map_err(|_| Exit::Close(close::TRY_AGAIN_LATER, "storage unavailable")),
            None => Ok(0),
        }
    }

    /// Sends what was committed on this session's streams after the place it has reached in
    /// each: what other nodes published while this node did not hear them (their messages
    /// are gone, and a stream with nothing newer would never show the hole).
    pub(super) async fn resync(&mut self) -> Result<(), Exit> {
        if let Some(user) = self.user().map(str::to_string) {
            let state = self.state.store.user_state(&user).await.map_err(|e| {
                log::error!("session {}: cannot read user state: {e}", self.id);
                Exit::Close(close::TRY_AGAIN_LATER, "storage unavailable")
            })?;
            let after = self.user_position.last();
            if state.seq > after {
                self.replay_user(after, state.unread, false).await?;
            }
        }
        for (topic, after) in self.topics.known() {
            self.replay_topic(&topic, after, false).await?;
        }
        Ok(())
    }

    /// Sends the user's notifications after `since` that the client has not had, then (when
    /// `announce`) a `resumed` frame.
    pub(super) async fn replay_user(
        &mut self,
        since: i64,
        unread: i64,
        announce: bool,
    ) -> Result<(), Exit> {
        let Some(user) = self.user().map(str::to_string) else {
            return Ok(());
        };
        let replay: Replay<Notification> = self
            .state
            .store
            .notifications_after(&user, since, self.state.config.replay_max)
            .await
            .map_err(|e| {
                log::error!("session {}: replay failed: {e}", self.id);
                Exit::Close(close::TRY_AGAIN_LATER, "storage unavailable")
            })?;
        let mut replayed = 0;
        if announce {
            // Frames follow from the client's `since`, except any this session sent it already.
            let resume = self.user_position.resume(since);
            for notification in &replay.items {
                if resume.wants(notification.seq) {
                    self.write(protocol::notification(notification, unread))
                        .await?;
                    replayed += 1;
                }
            }
        } else {
            for notification in &replay.items {
                if self.user_position.advance(notification.seq) {
                    self.write(protocol::notification(notification, unread))
                        .await?;
                    replayed += 1;
                }
            }
        }
        if replayed > 0 {
            self.shown_badge = Some(unread);
        }
        self.user_position
            .replayed(announce.then_some(since), replay.latest);
        self.count_replay(announce, replayed);
        // A gap filled live is announced only when it could not be filled whole: the client
        // then knows to refetch, as after a resume that came back incomplete.
        if announce || !replay.complete {
            self.write(protocol::resumed("user", replayed, replay.complete))
                .await?;
        }
        Ok(())
    }

    /// Sends the topic's broadcasts after `since` that the client has not had, then (when
    /// `announce`) a `resumed` frame.
    pub(super) async fn replay_topic(
        &mut self,
        topic: &str,
        since: i64,
        announce: bool,
    ) -> Result<(), Exit> {
        let replay = self
            .state
            .store
            .broadcasts_after(topic, since, self.state.config.replay_max)
            .await
            .map_err(|e| {
                log::error!("session {}: topic replay failed: {e}", self.id);
                Exit::Close(close::TRY_AGAIN_LATER, "storage unavailable")
            })?;
        // Frames follow from the client's `since`, except any this session sent it already.
        let resume = announce
            .then(|| self.topics.position(topic).map(|p| p.resume(since)))
            .flatten();
        let mut replayed = 0;
        // A muted topic's broadcasts are passed over like the live ones.
        let muted = self.mutes_topic(topic);
        for broadcast in &replay.items {
            let fresh = match &resume {
                Some(resume) => resume.wants(broadcast.seq),
                None => self
                    .topics
                    .position_mut(topic)
                    .is_some_and(|p| p.advance(broadcast.seq)),
            };
            if fresh && !muted {
                self.write(protocol::broadcast(broadcast)).await?;
                replayed += 1;
            }
        }
        if let Some(position) = self.topics.position_mut(topic) {
            position.replayed(announce.then_some(since), replay.latest);
        }
        self.count_replay(announce, replayed);
        if announce || !replay.complete {
            let stream = format!("topic:{topic}");
            self.write(protocol::resumed(&stream, replayed, replay.complete))
                .await?;
        }
        Ok(())
    }
}
