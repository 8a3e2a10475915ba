//! One WebSocket session: a single async task per socket that `select!`s over the hub's queue
//! for this session, the client's frames ([`crate::ws::WsConnection`]), and one timer for the
//! heartbeat and the token's expiry ([`deadlines`]), stops when the hub kicks it (its queue
//! closes; a write in progress gives up), then closes with a code that says what to do next.
//!
//! Ordering and resume: every stream the session receives (the user's notifications and each
//! topic) carries a gapless `seq`. Per stream the session keeps a position
//! (`streams::Position`): the last seq the client has, and where the run of seqs this
//! session sent it started. The rule is:
//! - live and gap-filling frames go out only with a seq above the last one; anything at or
//!   below it is dropped, which makes "register with the hub, then replay from the database,
//!   then go live" free of gaps and duplicates however the two overlap;
//! - a seq that jumps ahead (possible only when several nodes publish) is filled from the
//!   database first;
//! - a resume (`since` on connect, `subscribe` with `since`) replays the seqs after `since`
//!   except those in the run this session already sent: `global` is live from the connect,
//!   so broadcasts that went out before the client's `subscribe` with `since` arrived are not
//!   sent twice. Those gap frames then come after the live ones they precede, followed by
//!   `resumed`.
//!
//! The badge: every user frame carries the unread count after its commit, and frames are
//! queued in commit order, so the last frame a client got shows the current badge. A live
//! notification dropped because a replay already sent it would break that (the replay's frames
//! carry the count read before it), so the session then sends the current count in an
//! `unread` frame.

mod commands;
mod deadlines;
mod replay;
mod streams;
mod threads;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::auth::{now_secs, Identity};
use crate::hub::{Outbound, QueueReceiver, Registration, SessionId, SessionSignal};
use crate::metrics::Metrics;
use crate::protocol::{self, close, ClientFrame};
use crate::state::AppState;
use crate::ws::connection::ReadError;
use crate::ws::{Inbound, WsConnection};
use deadlines::{Deadlines, Due};
use streams::{Position, Topics};
pub use threads::SessionThreads;

/// Bad frames in a row tolerated before the session is closed with 1008.
const MAX_STRIKES: u32 = 10;
/// Topics one session may hold besides `global`.
const MAX_TOPICS: usize = 64;
/// Most ids in one `read` frame.
const MAX_READ_IDS: usize = 1000;
/// Queued frames gathered into one write to the socket.
const MAX_GATHER_BYTES: usize = 64 * 1024;

/// Everything a session needs to start; built by the `/inform` handshake.
pub struct SessionStart {
    /// The session's place in the hub; released when the session ends, however it ends.
    pub registration: Registration,
    pub identity: Option<Identity>,
    pub since: Option<i64>,
    pub queue: QueueReceiver,
    pub signal: Arc<SessionSignal>,
}

/// Why the loop ends.
enum Exit {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The client is gone (closed, or the connection broke); nothing more to send.
    Gone,
}

/// The state of one live session.
struct Session {
    state: AppState,
    id: SessionId,
    identity: Option<Identity>,
    conn: WsConnection,
    signal: Arc<SessionSignal>,
    /// Last notification seq sent to the client.
    user_position: Position,
    /// A live notification frame was dropped as already sent (it came in a replay); the badge
    /// it carried may be newer than the replay's, so the current one is sent after the burst.
    badge_stale: bool,
    /// The badge the client shows, when this session set it (welcome, replay); `None` once a
    /// live frame set it to a count only the frame knows.
    shown_badge: Option<i64>,
    topics: Topics,
    last_heard: Instant,
    /// How long one write to the client may take (`write_timeout_secs`).
    write_timeout: Duration,
    /// Set when a write ran out of time: the client stopped reading, so the close frame is not
    /// waited for.
    stalled: bool,
    strikes: u32,
    limiter: DefaultDirectRateLimiter,
}

/// Runs the session to its end and unregisters it from the hub, whatever the exit path.
pub async fn run(state: AppState, conn: WsConnection, start: SessionStart) {
    let _running = state.session_started();
    // The user is seen now and when this session ends (for the offline hook).
    let _seen = match (&state.escalation, &start.identity) {
        (Some(escalation), Some(identity)) => Some(escalation.last_seen.session(&identity.user)),
        _ => None,
    };
    let mut counted = Counted::open(state.metrics.clone());
    let registration = start.registration;
    let id = registration.id();
    let rate = NonZeroU32::new(state.config.inbound_rate).unwrap_or(NonZeroU32::MIN);
    let write_timeout = Duration::from_secs(state.config.write_timeout_secs);
    let mut session = Session {
        state,
        id,
        identity: start.identity,
        conn,
        signal: start.signal,
        user_position: Position::default(),
        badge_stale: false,
        shown_badge: None,
        topics: Topics::default(),
        last_heard: Instant::now(),
        write_timeout,
        stalled: false,
        strikes: 0,
        limiter: RateLimiter::direct(
            Quota::per_second(rate)
                .allow_burst(rate.saturating_mul(NonZeroU32::MIN.saturating_add(1))),
        ),
    };
    // Opening (welcome, maybe a replay) happens once; boxed, its large future does not size
    // the session's task for its whole life.
    let exit = match Box::pin(session.open(start.since)).await {
        Ok(()) => session.serve(start.queue).await,
        Err(exit) => exit,
    };
    drop(registration); // no more deliveries while the close frame goes out
    counted.close_code = match exit {
        Exit::Close(code, _) => code,
        Exit::Gone => close::ABNORMAL,
    };
    if session.stalled {
        session
            .state
            .metrics
            .slow_consumers
            .with_label_values(&["write"])
            .inc();
    }
    session.finish(exit).await;
}

/// Counts a session in the metrics while it lives, and its close code when it ends, however
/// it ends (a panic counts as 1006).
struct Counted {
    metrics: Arc<Metrics>,
    close_code: u16,
}

impl Counted {
    fn open(metrics: Arc<Metrics>) -> Counted {
        metrics.sessions.inc();
        metrics.sessions_opened.inc();
        Counted {
            metrics,
            close_code: close::ABNORMAL,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // The close is counted before the session leaves the gauge. A scrape is still no
        // snapshot (the registry reads its metrics one after another, in hash order), so a
        // reader may see the gauge fall a moment before the close that made it fall.
        self.metrics
            .sessions_closed
            .with_label_values(&[&self.close_code.to_string()])
            .inc();
        self.metrics.sessions.dec();
    }
}

impl Session {
    fn user(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.user.as_str())
    }

    /// Whether this session's user muted `topic` (asked anew for each frame, so a change of
    /// preferences applies to sessions already open).
    fn mutes_topic(&self, topic: &str) -> bool {
        self.user()
            .is_some_and(|user| self.state.preferences.mutes().mutes_topic(user, topic))
    }

    /// Sends `welcome`, then replays the user's stream from `since` when asked.
    async fn open(&mut self, since: Option<i64>) -> Result<(), Exit> {
        let user_state = match self.user() {
            Some(user) => self.state.store.user_state(user).await.map_err(|e| {
                log::error!("session {}: cannot read user state: {e}", self.id);
                Exit::Close(close::TRY_AGAIN_LATER, "storage unavailable")
            })?,
            None => Default::default(),
        };
        let welcome = protocol::welcome(
            self.user(),
            user_state.unread,
            user_state.seq,
            self.state.config.heartbeat_secs,
        );
        self.write(welcome).await?;
        self.shown_badge = Some(user_state.unread);
        self.user_position = Position::at(user_state.seq);
        if let (Some(since), Some(_)) = (since, self.user()) {
            self.replay_user(since, user_state.unread, true).await?;
        }
        Ok(())
    }

    /// The main loop.
    async fn serve(&mut self, queue: QueueReceiver) -> Exit {
        let heartbeat = Duration::from_secs(self.state.config.heartbeat_secs);
        let mut deadlines = Deadlines::new(heartbeat, self.token_expiry());
        // A kick needs no wait of its own here: the hub drops the queue of a session it kicks,
        // which ends this wait once the queue is empty, and every write checks the kick first
        // (`guarded`). The wait holds no state between turns (`hub::queue`), so it is made anew
        // in each.
        loop {
            // Unbiased: a busy queue must not starve the client's frames, nor the reverse.
            let result = tokio::select! {
                item = queue.recv() => match item {
                    Some(item) => self.outbound_burst(item, &queue).await,
                    // The hub drops a session's queue when it kicks it, once the code is set:
                    // close with the kick's code (shutdown: 1001).
                    None => {
                        let code = self.signal.code().unwrap_or(close::TRY_AGAIN_LATER);
                        Err(Exit::Close(code, kick_reason(code)))
                    }
                },
                frame = self.conn.recv() => self.inbound(frame, &mut deadlines).await,
                due = deadlines.due() => match due {
                    Due::Heartbeat => self.heartbeat().await,
                    Due::Expired => Err(Exit::Close(close::TOKEN_EXPIRED, "token expired")),
                },
            };
            if let Err(exit) = result {
                return exit;
            }
        }
    }

    /// When the token runs out; `None` for an anonymous session.
    fn token_expiry(&self) -> Option<tokio::time::Instant> {
        self.identity
            .as_ref()
            .map(|i| tokio::time::Instant::now() + i.expires_in(now_secs()))
    }

    /// Writes one frame (and anything buffered before it); see [`Session::guarded`].
    async fn write(&mut self, frame: ByteString) -> Result<(), Exit> {
        self.guarded(|conn| conn.text(frame)).await
    }

    /// Runs one write to the client under the session's two limits: it gives up when the hub
    /// kicks the session meanwhile, and when the client has not taken the bytes within
    /// `write_timeout` (it stopped reading: close 1013, and it resumes with `since`). No write
    /// can hold the session's loop, its heartbeat, or a shutdown, for longer than that.
    async fn guarded<'a, F>(
        &'a mut self,
        write: impl FnOnce(&'a mut WsConnection) -> F,
    ) -> Result<(), Exit>
    where
        F: std::future::Future<Output = std::io::Result<()>> + 'a,
    {
        let Session {
            conn,
            signal,
            write_timeout,
            stalled,
            ..
        } = self;
        if let Some(code) = signal.code() {
            return Err(Exit::Close(code, kick_reason(code)));
        }
        // The write is polled first: one the socket takes at once (most of them) returns
        // before the kick is waited for, so it costs no registration with the signal.
        tokio::select! {
            biased;
            sent = tokio::time::timeout(*write_timeout, write(conn)) => match sent {
                Ok(sent) => sent.map_err(|_| Exit::Gone),
                Err(_) => {
                    *stalled = true;
                    Err(Exit::Close(close::TRY_AGAIN_LATER, "too slow: the client stopped reading"))
                }
            },
            code = signal.kicked() => Err(Exit::Close(code, kick_reason(code))),
        }
    }

    async fn error(&mut self, code: &str, message: &str) -> Result<(), Exit> {
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            return Err(Exit::Close(close::POLICY, "too many bad frames"));
        }
        self.write(protocol::error(code, message)).await
    }

    /// Frames from the hub: `first` and whatever else is already queued, gathered into as few
    /// socket writes as possible (one, usually), so a burst costs one system call, not one per
    /// frame.
    async fn outbound_burst(&mut self, first: Outbound, queue: &QueueReceiver) -> Result<(), Exit> {
        self.outbound(first).await?;
        while self.conn.buffered() < MAX_GATHER_BYTES {
            match queue.try_recv() {
                Ok(item) => self.outbound(item).await?,
                Err(_) => break,
            }
        }
        if self.badge_stale {
            // Frames are queued in commit order, each with the badge after its commit; one
            // that was dropped takes its badge with it, and the replay's (read earlier) would
            // stay on the client's screen. The current badge is at least as new.
            self.badge_stale = false;
            let unread = self.current_unread().await?;
            if self.shown_badge != Some(unread) {
                self.buffer(protocol::unread(unread))?;
                self.shown_badge = Some(unread);
            }
        }
        self.guarded(WsConnection::flush).await
    }

    /// Buffers a frame for the client.
    fn buffer(&mut self, frame: ByteString) -> Result<(), Exit> {
        self.conn.buffer_text(frame).map_err(|_| Exit::Gone)
    }

    /// A frame from the hub: buffered unless the client already has it.
    async fn outbound(&mut self, item: Outbound) -> Result<(), Exit> {
        match item {
            Outbound::User { seq: None, frame } => {
                // A newer count than any dropped frame's.
                self.badge_stale = false;
                self.shown_badge = None;
                self.buffer(frame)
            }
            Outbound::User {
                seq: Some(seq),
                frame,
            } => {
                if self.user_position.is_behind(seq) {
                    // Something before `seq` has not arrived (another node's publish is still
                    // on its way): send what the database has first, then this if still new.
                    let unread = self.current_unread().await?;
                    let after = self.user_position.last();
                    Box::pin(self.replay_user(after, unread, false)).await?;
                }
                if self.user_position.advance(seq) {
                    self.badge_stale = false;
                    self.shown_badge = None;
                    self.buffer(frame)?;
                } else {
                    self.badge_stale = true;
                }
                Ok(())
            }
            Outbound::Resync => self.resync().await,
            Outbound::Topic { topic, seq, frame } => {
                let Some(position) = self.topics.position(&topic) else {
                    return Ok(()); // unsubscribed while the frame was queued
                };
                if self.mutes_topic(&topic) {
                    // Passed over, not owed: unmuting later does not replay it as a gap.
                    if let Some(position) = self.topics.position_mut(&topic) {
                        position.advance(seq);
                    }
                    return Ok(());
                }
                if position.is_behind(seq) {
                    let after = position.last();
                    Box::pin(self.replay_topic(&topic, after, false)).await?;
                }
                let advanced = self
                    .topics
                    .position_mut(&topic)
                    .map(|p| p.advance(seq))
                    .unwrap_or(false);
                if advanced {
                    self.buffer(frame)?;
                }
                Ok(())
            }
        }
    }

    /// A frame (or an error) from the client.
    async fn inbound(
        &mut self,
        frame: Option<Result<Inbound, ReadError>>,
        deadlines: &mut Deadlines,
    ) -> Result<(), Exit> {
        self.last_heard = Instant::now();
        let frame = match frame {
            None | Some(Err(ReadError::Io(_))) => return Err(Exit::Gone),
            Some(Err(ReadError::TooBig)) => {
                return Err(Exit::Close(close::TOO_BIG, "frame too big"))
            }
            Some(Err(ReadError::Protocol(e))) => {
                log::debug!("session {}: protocol error: {e}", self.id);
                return Err(Exit::Close(close::PROTOCOL_ERROR, "protocol error"));
            }
            Some(Ok(frame)) => frame,
        };
        match frame {
            Inbound::Text(text) => {
                if self.limiter.check().is_err() {
                    return self
                        .error("rate_limited", "too many frames; slow down")
                        .await;
                }
                match ClientFrame::parse(&text) {
                    Ok(frame) => Box::pin(self.client_frame(frame, deadlines)).await,
                    Err(e) => self.error(e.code, &e.message).await,
                }
            }
            Inbound::Binary => {
                self.error("unsupported_frame", "frames are JSON text")
                    .await
            }
            Inbound::Fragment => {
                self.error("unsupported_frame", "fragmented frames are not supported")
                    .await
            }
            Inbound::Ping(payload) => self.guarded(|conn| conn.pong(payload)).await,
            Inbound::Pong => Ok(()),
            Inbound::Close => Err(Exit::Close(close::NORMAL, "bye")),
        }
    }

    async fn heartbeat(&mut self) -> Result<(), Exit> {
        if self.last_heard.elapsed() > Duration::from_secs(self.state.config.idle_timeout_secs()) {
            return Err(Exit::Close(close::IDLE, "no answer to pings"));
        }
        self.guarded(WsConnection::ping).await
    }

    /// Sends the close frame (if the client is still there), waiting at most `write_timeout`
    /// for it to go out; not at all for a client that already stopped reading, whose
    /// connection is dropped at once.
    async fn finish(self, exit: Exit) {
        let Exit::Close(code, reason) = exit else {
            return;
        };
        log::debug!("session {} closing with {code}: {reason}", self.id);
        let wait = if self.stalled {
            Duration::ZERO
        } else {
            self.write_timeout
        };
        self.conn.close(code, reason, wait).await;
    }
}

fn kick_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "server shutting down",
        close::TRY_AGAIN_LATER => "too slow: resume with since",
        _ => "closed by the server",
    }
}
