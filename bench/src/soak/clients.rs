//! The browsers: WebSocket sessions (users, and anonymous visitors that only follow
//! broadcasts) that stay connected through the daemon's crashes. Each reconnects with `since`
//! for its user stream and re-subscribes to `global` and its topic with `since`, and records
//! every frame it gets, so the end of the run can say whether it got each event exactly once.
//! Users also mark notifications read with `read` frames now and then.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::clients::token;

/// Longest silence on a socket before the client gives up on it (the daemon pings every 5 s).
const SILENCE: Duration = Duration::from_secs(20);

/// Everything one stream (the user's notifications, or one topic) delivered to a client.
#[derive(Debug, Default, Clone)]
pub struct StreamLog {
    /// Times each seq arrived, over all sessions.
    pub seen: HashMap<i64, u32>,
    /// Deliveries the server should not have made: a seq at or below the session's `since`,
    /// or one the same session had already sent.
    pub doubled: Vec<i64>,
    /// Seqs that arrived again in a later session because `since` could not say the client
    /// had them (`global` is live before the client's `subscribe` with `since`): allowed.
    pub reasked: u64,
    /// In-order streams only: a seq that did not follow the previous one in the session.
    pub out_of_order: Vec<(i64, i64)>,
}

impl StreamLog {
    /// The highest seq up to which the client has everything: what it resumes from.
    pub fn contiguous(&self) -> i64 {
        let mut n = 0;
        while self.seen.contains_key(&(n + 1)) {
            n += 1;
        }
        n
    }
}

/// One session's view of one stream: what it resumed from and what it sent.
struct SessionStream {
    since: i64,
    previous: i64,
    sent: HashSet<i64>,
    /// Whether seqs must arrive in order within the session (all but `global`, which is live
    /// before its replay).
    ordered: bool,
}

impl SessionStream {
    fn new(since: i64, ordered: bool) -> SessionStream {
        SessionStream {
            since,
            previous: since,
            sent: HashSet::new(),
            ordered,
        }
    }

    fn receive(&mut self, log: &mut StreamLog, seq: i64) {
        if seq <= self.since || !self.sent.insert(seq) {
            log.doubled.push(seq);
            return;
        }
        if self.ordered && seq != self.previous + 1 {
            log.out_of_order.push((self.previous, seq));
        }
        self.previous = seq;
        let count = log.seen.entry(seq).or_insert(0);
        if *count > 0 {
            log.reasked += 1;
        }
        *count += 1;
    }
}

/// What one client saw, shared with the orchestrator while it runs.
#[derive(Debug, Default, Clone)]
pub struct ClientLog {
    pub user: Option<String>,
    pub topic: Option<String>,
    pub notifications: StreamLog,
    pub global: StreamLog,
    pub topic_log: StreamLog,
    /// The badge as last told (welcome, notification or unread frame).
    pub badge: Option<i64>,
    /// Sessions opened after the first.
    pub reconnects: u64,
    /// `read` frames sent.
    pub reads_sent: u64,
    /// `error` frames received.
    pub errors: Vec<String>,
    /// Sessions that went silent past [`SILENCE`].
    pub stalls: u64,
}

/// Who a client is.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub user: Option<String>,
    pub topic: Option<String>,
}

/// Runs one client until `stop`, reconnecting whenever its session ends.
pub async fn client(
    url: String,
    secret: String,
    spec: ClientSpec,
    log: Arc<Mutex<ClientLog>>,
    mut stop: watch::Receiver<bool>,
) {
    {
        let mut log = lock(&log);
        log.user = spec.user.clone();
        log.topic = spec.topic.clone();
    }
    let ws_base = url.replacen("http://", "ws://", 1);
    let mut sessions = 0u64;
    let mut backoff = Duration::from_millis(50);
    while !*stop.borrow() {
        let ended = tokio::select! {
            ended = session(&ws_base, &secret, &spec, &log, sessions) => ended,
            _ = stop.changed() => break,
        };
        if ended {
            sessions += 1;
            backoff = Duration::from_millis(50);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn lock(log: &Mutex<ClientLog>) -> std::sync::MutexGuard<'_, ClientLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One session: connect, resume every stream, record frames until the socket ends. Returns
/// whether it got as far as `welcome`.
async fn session(
    ws_base: &str,
    secret: &str,
    spec: &ClientSpec,
    log: &Mutex<ClientLog>,
    earlier: u64,
) -> bool {
    let (user_since, global_since, topic_since) = {
        let log = lock(log);
        (
            log.notifications.contiguous(),
            log.global.contiguous(),
            log.topic_log.contiguous(),
        )
    };
    let url = match &spec.user {
        Some(user) => match token(secret, user) {
            Ok(token) => format!("{ws_base}/inform?token={token}&since={user_since}"),
            Err(_) => return false,
        },
        None => format!("{ws_base}/inform"),
    };
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await;
    let Ok(Ok((mut ws, _))) = connected else {
        return false;
    };
    let mut user = SessionStream::new(user_since, true);
    let mut global = SessionStream::new(global_since, false);
    let mut topic = SessionStream::new(topic_since, true);
    let mut welcomed = false;
    loop {
        let message = match tokio::time::timeout(SILENCE, ws.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(_) => return welcomed,
            Err(_) => {
                lock(log).stalls += 1;
                return welcomed;
            }
        };
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            lock(log).errors.push(format!("not JSON: {text}"));
            continue;
        };
        let mut reply = None;
        {
            let mut log = lock(log);
            match frame["type"].as_str() {
                Some("welcome") => {
                    welcomed = true;
                    if earlier > 0 {
                        log.reconnects += 1;
                    }
                    log.badge = frame["unread"].as_i64();
                }
                Some("notification") => {
                    if let Some(seq) = frame["notification"]["seq"].as_i64() {
                        user.receive(&mut log.notifications, seq);
                    }
                    log.badge = frame["unread"].as_i64();
                    if fastrand::u32(0..20) == 0 {
                        reply = Some(read_frame(&frame));
                        log.reads_sent += 1;
                    }
                }
                Some("unread") => log.badge = frame["unread"].as_i64(),
                Some("broadcast") => {
                    let seq = frame["seq"].as_i64().unwrap_or(0);
                    match frame["topic"].as_str() {
                        Some("global") => global.receive(&mut log.global, seq),
                        Some(t) if Some(t) == spec.topic.as_deref() => {
                            topic.receive(&mut log.topic_log, seq)
                        }
                        other => log.errors.push(format!("broadcast on {other:?}")),
                    }
                }
                Some("error") => log.errors.push(text.to_string()),
                _ => {}
            }
        }
        if frame["type"] == "welcome" {
            // Resume the broadcasts from where this client has everything.
            let mut frames =
                vec![json!({"type": "subscribe", "topic": "global", "since": global_since})];
            if let Some(name) = &spec.topic {
                frames.push(json!({"type": "subscribe", "topic": name, "since": topic_since}));
            }
            for frame in frames {
                if ws.send(Message::Text(frame.to_string())).await.is_err() {
                    return welcomed;
                }
            }
        }
        if let Some(reply) = reply {
            if ws.send(Message::Text(reply.to_string())).await.is_err() {
                return welcomed;
            }
        }
    }
}

/// A `read` frame for a notification just received: its id, or everything up to its seq.
fn read_frame(frame: &Value) -> Value {
    let notification = &frame["notification"];
    if fastrand::bool() {
        json!({"type": "read", "ids": [notification["id"].as_i64().unwrap_or(0)]})
    } else {
        json!({"type": "read", "up_to": notification["seq"].as_i64().unwrap_or(0)})
    }
}

/// The logs of every client, for the orchestrator.
pub type Logs = Vec<Arc<Mutex<ClientLog>>>;

/// A copy of every log as it is now.
pub fn snapshot(logs: &Logs) -> Vec<ClientLog> {
    logs.iter().map(|l| lock(l).clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_may_not_send_at_or_below_since_nor_twice() {
        let mut log = StreamLog::default();
        let mut first = SessionStream::new(0, true);
        for seq in 1..=3 {
            first.receive(&mut log, seq);
        }
        first.receive(&mut log, 3);
        assert_eq!(log.doubled, vec![3]);
        let mut second = SessionStream::new(log.contiguous(), true);
        second.receive(&mut log, 2);
        assert_eq!(log.doubled, vec![3, 2]);
        second.receive(&mut log, 5);
        assert_eq!(log.out_of_order, vec![(3, 5)]);
    }

    #[test]
    fn global_live_before_its_replay_is_not_a_double_but_may_be_asked_again() {
        let mut log = StreamLog::default();
        // Live 5 and 6, then the session ends before the replay of 1..=4 came.
        let mut first = SessionStream::new(0, false);
        first.receive(&mut log, 5);
        first.receive(&mut log, 6);
        assert_eq!(log.contiguous(), 0);
        // The next session resumes from 0 and gets 5 and 6 again: asked for, not doubled.
        let mut second = SessionStream::new(log.contiguous(), false);
        for seq in 1..=6 {
            second.receive(&mut log, seq);
        }
        assert!(log.doubled.is_empty() && log.out_of_order.is_empty());
        assert_eq!((log.reasked, log.contiguous()), (2, 6));
    }
}
