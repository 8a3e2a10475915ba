//! The simulated browsers' sockets once connected: a thread holding thousands of sessions in
//! one event loop (`mio`), in place of an async task per session.
//!
//! The generator shares the box with the server it measures, and every cycle it spends is one
//! the server does not get. A task per session paid, for every frame, a task wake-up and
//! re-queue, a poll through the runtime's I/O driver and the WebSocket adapter's waker relay:
//! about a third of the generator's time (`perf`, 2026-12-07). Here a frame costs what a
//! browser's would: the readiness event, one `recv(2)` and tungstenite's parse.
//!
//! Each session is opened here too (tungstenite's handshake, then `welcome`, then `subscribed`
//! when it subscribes), so no byte read during the opening is left behind in another reader.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::OwnedSemaphorePermit;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::{Message, WebSocket};

use crate::clients::{ClientResult, Progress};

/// The token of each loop's waker; sessions are numbered from 0.
const WAKER: Token = Token(usize::MAX);
/// How long an opening session may wait for each step (the handshake's answer, `welcome`,
/// `subscribed`).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a session told to stop may take to answer its ping.
const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// How often deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// Where each session reports, once, whether it opened: `(index, opened)`.
pub type Settled = tokio::sync::mpsc::UnboundedSender<(usize, bool)>;

/// A connected socket handed to a reader, with what its session needs to open.
pub struct Opening {
    pub index: usize,
    pub stream: std::net::TcpStream,
    /// `ws://host:port/inform?token=…`
    pub url: String,
    /// Subscribe to this topic before counting as open.
    pub topic: Option<String>,
    /// Held until the session is open or has failed: the fleet's cap on openings in flight.
    pub permit: OwnedSemaphorePermit,
}

enum Command {
    Open(Opening),
    Stop,
}

/// Hands sockets to the reader threads, in turn; cheap to clone into each connecting task.
#[derive(Clone)]
pub struct Handoff {
    loops: Arc<Vec<(mpsc::Sender<Command>, Arc<Waker>)>>,
}

impl Handoff {
    /// Gives the socket to a reader.
    pub fn open(&self, opening: Opening) -> anyhow::Result<()> {
        let (commands, waker) = &self.loops[opening.index % self.loops.len()];
        commands
            .send(Command::Open(opening))
            .map_err(|_| anyhow!("the reader threads are gone"))?;
        let _ = waker.wake();
        Ok(())
    }
}

/// The reader threads of a fleet.
pub struct Readers {
    handoff: Handoff,
    threads: Vec<JoinHandle<Vec<(usize, ClientResult)>>>,
}

impl Readers {
    /// Starts `threads` event loops at `nice` steps below the default priority.
    pub fn start(
        threads: usize,
        nice: i32,
        progress: Arc<Progress>,
        settled: Settled,
    ) -> io::Result<Readers> {
        let mut loops = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for n in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (commands, inbox) = mpsc::channel();
            let event_loop = EventLoop {
                poll,
                inbox,
                sessions: Vec::new(),
                progress: progress.clone(),
                settled: settled.clone(),
                stopping: false,
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("reader-{n}"))
                    .spawn(move || {
                        crate::lower_current_thread(nice);
                        event_loop.run()
                    })?,
            );
            loops.push((commands, waker));
        }
        Ok(Readers {
            handoff: Handoff {
                loops: Arc::new(loops),
            },
            threads: handles,
        })
    }

    pub fn handoff(&self) -> Handoff {
        self.handoff.clone()
    }

    /// Has every open session prove it is alive (a ping answered), closes them all and returns
    /// what each saw, by index. Blocks until the readers are done.
    pub fn stop(self) -> Vec<(usize, ClientResult)> {
        for (commands, waker) in self.handoff.loops.iter() {
            let _ = commands.send(Command::Stop);
            let _ = waker.wake();
        }
        let mut results = Vec::new();
        for thread in self.threads {
            results.extend(thread.join().unwrap_or_default());
        }
        results
    }
}

/// A session's socket, read the way tokio reads one: a read that returns less than it asked
/// for emptied the socket, so the next read answers `WouldBlock` without a system call until
/// the next readiness event. That saves a `recv(2)` per frame, and is sound because the
/// registration is edge-triggered: data that arrives after the short read raises a new event.
struct Socket {
    stream: TcpStream,
    drained: bool,
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let read = self.stream.read(buf);
        match &read {
            Ok(n) if *n < buf.len() => self.drained = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.drained = true,
            _ => {}
        }
        read
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// The connection under a session.
enum Link {
    Handshaking(MidHandshake<ClientHandshake<Socket>>),
    Open(WebSocket<Socket>),
    Gone,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Opening: waiting for a frame of this type (`welcome`, `subscribed`).
    Awaiting(&'static str),
    Reading,
    /// Told to stop: its ping is out, its pong not yet in.
    Pinged,
    Done,
}

struct Session {
    index: usize,
    link: Link,
    stage: Stage,
    topic: Option<String>,
    permit: Option<OwnedSemaphorePermit>,
    deadline: Option<Instant>,
    result: ClientResult,
}

/// What a frame or an error did to a session.
enum Outcome {
    Continue,
    /// Failed while opening.
    Failed(anyhow::Error),
    /// The connection ended (or the session finished) after it opened.
    Ended,
}

struct EventLoop {
    poll: Poll,
    inbox: mpsc::Receiver<Command>,
    sessions: Vec<Session>,
    progress: Arc<Progress>,
    settled: Settled,
    stopping: bool,
}

impl EventLoop {
    fn run(mut self) -> Vec<(usize, ClientResult)> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            if let Err(e) = self.poll.poll(&mut events, Some(TICK)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("informd-bench: a reader's event loop failed: {e}");
                    break;
                }
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    self.take_commands();
                } else if let Some(session) = self.sessions.get_mut(event.token().0) {
                    let outcome = session.on_ready(event.is_writable(), &self.progress);
                    self.settle(event.token().0, outcome);
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.expire(now);
            }
            if self.stopping && !self.sessions.iter().any(|s| s.stage == Stage::Pinged) {
                break;
            }
        }
        self.sessions
            .into_iter()
            .map(|mut session| {
                if let Link::Open(ws) = &mut session.link {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                }
                (session.index, session.result)
            })
            .collect()
    }

    fn take_commands(&mut self) {
        while let Ok(command) = self.inbox.try_recv() {
            match command {
                Command::Open(opening) => self.add(opening),
                Command::Stop => self.stop(),
            }
        }
    }

    /// Starts the handshake of a socket handed over.
    fn add(&mut self, opening: Opening) {
        let token = self.sessions.len();
        let index = opening.index;
        let mut stream = TcpStream::from_std(opening.stream);
        let started = self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                let socket = Socket {
                    stream,
                    drained: false,
                };
                match tungstenite::client(opening.url.as_str(), socket) {
                    Ok((ws, _)) => Ok(Link::Open(ws)),
                    Err(HandshakeError::Interrupted(mid)) => Ok(Link::Handshaking(mid)),
                    Err(HandshakeError::Failure(e)) => Err(e.into()),
                }
            });
        let (link, outcome) = match started {
            Ok(link) => (link, Outcome::Continue),
            Err(e) => (Link::Gone, Outcome::Failed(e)),
        };
        self.sessions.push(Session {
            index,
            link,
            stage: Stage::Awaiting("welcome"),
            topic: opening.topic,
            permit: Some(opening.permit),
            deadline: Some(Instant::now() + STEP_TIMEOUT),
            result: ClientResult::default(),
        });
        self.settle(token, outcome);
    }

    /// Reports a session that failed to open, and closes one whose connection ended.
    fn settle(&mut self, token: usize, outcome: Outcome) {
        let Some(session) = self.sessions.get_mut(token) else {
            return;
        };
        match outcome {
            Outcome::Continue => {
                if session.stage == Stage::Reading && session.permit.is_some() {
                    session.permit = None;
                    session.deadline = None;
                    session.result.connected = true;
                    self.progress.connected.fetch_add(1, Ordering::Relaxed);
                    let _ = self.settled.send((session.index, true));
                }
            }
            Outcome::Failed(e) => {
                self.progress.failed_to_connect(session.index, &e);
                session.end();
                let _ = self.settled.send((session.index, false));
            }
            Outcome::Ended => session.end(),
        }
    }

    /// Pings every open session; the loop ends once each has answered or run out of time.
    fn stop(&mut self) {
        self.stopping = true;
        let deadline = Instant::now() + PONG_TIMEOUT;
        for session in &mut self.sessions {
            if session.stage != Stage::Reading {
                continue;
            }
            let Link::Open(ws) = &mut session.link else {
                continue;
            };
            match ws.send(Message::Text(r#"{"type":"ping"}"#.into())) {
                Ok(()) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    session.end();
                    continue;
                }
            }
            session.stage = Stage::Pinged;
            session.deadline = Some(deadline);
        }
    }

    /// Ends the sessions whose step has run out of time.
    fn expire(&mut self, now: Instant) {
        for token in 0..self.sessions.len() {
            let session = &mut self.sessions[token];
            if session.deadline.is_none_or(|deadline| now < deadline) {
                continue;
            }
            let outcome = match session.stage {
                Stage::Awaiting(kind) => {
                    Outcome::Failed(anyhow!("no {kind} within {} s", STEP_TIMEOUT.as_secs()))
                }
                _ => Outcome::Ended,
            };
            self.settle(token, outcome);
        }
    }
}

impl Session {
    /// Drives the session after a readiness event: the handshake, then every frame that has
    /// arrived.
    fn on_ready(&mut self, writable: bool, progress: &Progress) -> Outcome {
        let link = std::mem::replace(&mut self.link, Link::Gone);
        let mut ws = match link {
            Link::Handshaking(mut mid) => {
                mid.get_mut().get_mut().drained = false;
                match mid.handshake() {
                    Ok((ws, _)) => ws,
                    Err(HandshakeError::Interrupted(mid)) => {
                        self.link = Link::Handshaking(mid);
                        return Outcome::Continue;
                    }
                    Err(HandshakeError::Failure(e)) => return Outcome::Failed(e.into()),
                }
            }
            Link::Open(mut ws) => {
                ws.get_mut().drained = false;
                if writable {
                    // What a send could not write at once (a subscribe, the ping).
                    let _ = ws.flush();
                }
                ws
            }
            Link::Gone => return Outcome::Continue,
        };
        let outcome = loop {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    if let Some(outcome) = self.on_text(&mut ws, &text, progress) {
                        break outcome;
                    }
                }
                Ok(Message::Close(frame)) => {
                    if let Stage::Awaiting(_) = self.stage {
                        break Outcome::Failed(anyhow!("closed: {frame:?}"));
                    }
                    self.result.closed = frame.map(|f| u16::from(f.code)).or(Some(1005));
                    break Outcome::Ended;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    break Outcome::Continue;
                }
                Err(e) => match self.stage {
                    Stage::Awaiting(_) => break Outcome::Failed(e.into()),
                    _ => break Outcome::Ended,
                },
            }
        };
        // Kept even when the session ends, so that `end` closes it properly.
        self.link = Link::Open(ws);
        outcome
    }

    /// One text frame; `Some` when it decides the session's fate.
    fn on_text(
        &mut self,
        ws: &mut WebSocket<Socket>,
        text: &str,
        progress: &Progress,
    ) -> Option<Outcome> {
        match self.stage {
            Stage::Awaiting(kind) if is_of_type(text, kind) => match (kind, self.topic.take()) {
                ("welcome", Some(topic)) => {
                    let frame = serde_json::json!({"type": "subscribe", "topic": topic});
                    match ws.send(Message::Text(frame.to_string())) {
                        Ok(()) => {}
                        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                        }
                        Err(e) => return Some(Outcome::Failed(e.into())),
                    }
                    self.stage = Stage::Awaiting("subscribed");
                    self.deadline = Some(Instant::now() + STEP_TIMEOUT);
                }
                _ => self.stage = Stage::Reading,
            },
            Stage::Awaiting(_) | Stage::Done => {}
            Stage::Reading => {
                if self.result.record(text) {
                    progress.deliveries.fetch_add(1, Ordering::Relaxed);
                }
            }
            Stage::Pinged => {
                if is_of_type(text, "pong") {
                    self.result.alive = true;
                    self.stage = Stage::Done;
                    return Some(Outcome::Ended);
                }
                // A late delivery still counts.
                self.result.record(text);
            }
        }
        None
    }

    /// Closes the connection (a close frame, best effort) and forgets it.
    fn end(&mut self) {
        if let Link::Open(ws) = &mut self.link {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        self.link = Link::Gone;
        self.stage = Stage::Done;
        self.permit = None;
        self.deadline = None;
    }
}

/// Whether a server frame is of type `kind` (`"type":"kind"`, as informd writes it).
fn is_of_type(text: &str, kind: &str) -> bool {
    text.split_once(r#""type":""#)
        .is_some_and(|(_, rest)| rest.starts_with(kind) && rest[kind.len()..].starts_with('"'))
}

#[cfg(test)]
mod tests {
    use super::is_of_type;

    #[test]
    fn a_frame_type_is_matched_whole() {
        assert!(is_of_type(r#"{"type":"welcome","user":"1"}"#, "welcome"));
        assert!(is_of_type(r#"{"type":"pong"}"#, "pong"));
        assert!(!is_of_type(r#"{"type":"subscribed_later"}"#, "subscribed"));
        assert!(!is_of_type(r#"{"kind":"pong"}"#, "pong"));
    }
}
