//! When each user last had a live session, recorded for the offline hook: a session's user is
//! marked seen when it opens and when it closes. Marks are gathered in memory and written in
//! one batch every [`FLUSH_EVERY`], so a handshake never waits for the database, and a user
//! who opens ten tabs costs one row write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::now_millis;
use crate::store::escalation::EscalationStore;

/// How often gathered marks are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Marks waiting to be written, and where they go.
pub struct LastSeen {
    pending: Mutex<HashMap<String, i64>>,
    store: Arc<dyn EscalationStore>,
}

impl LastSeen {
    /// Starts writing marks to `store` on the current runtime.
    pub fn start(store: Arc<dyn EscalationStore>) -> Arc<LastSeen> {
        let seen = Arc::new(LastSeen {
            pending: Mutex::default(),
            store,
        });
        let writer = seen.clone();
        actix_web::rt::spawn(async move {
            let mut ticks = tokio::time::interval(FLUSH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                writer.flush().await;
            }
        });
        seen
    }

    /// Marks `user` seen now.
    pub fn touch(&self, user: &str) {
        let now = now_millis();
        // A poisoned lock only means another thread panicked mid-insert; the map is usable.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let at = pending.entry(user.to_string()).or_insert(now);
        *at = (*at).max(now);
    }

    /// Marks `user` seen now and again when the returned guard is dropped (the session's
    /// end, however it ends).
    pub fn session(self: &Arc<Self>, user: &str) -> SeenSession {
        self.touch(user);
        SeenSession {
            seen: self.clone(),
            user: user.to_string(),
        }
    }

    /// Writes the gathered marks; on failure they are kept for the next flush.
    pub async fn flush(&self) {
        let batch: Vec<(String, i64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.record_seen(batch.clone()).await {
            log::warn!("escalation: cannot record when users were last seen: {e}");
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (user, at) in batch {
                let kept = pending.entry(user).or_insert(at);
                *kept = (*kept).max(at);
            }
        }
    }
}

/// A live session of one user; marks the user seen when dropped.
pub struct SeenSession {
    seen: Arc<LastSeen>,
    user: String,
}

impl Drop for SeenSession {
    fn drop(&mut self) {
        self.seen.touch(&self.user);
    }
}
