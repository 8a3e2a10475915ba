//! The simulated browsers: one light task per WebSocket session that records every probe it
//! receives (which event, how late) until told to stop, then proves it is still alive.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::probe::{self, now_micros};
use crate::Common;

/// What one session saw.
#[derive(Debug, Default)]
pub struct ClientResult {
    /// Probe indices received, in arrival order.
    pub received: Vec<u32>,
    /// Publish→receive latency of each, µs.
    pub latencies_us: Vec<u32>,
    /// Answered a final ping: the session was open to the end.
    pub alive: bool,
    /// Close code, if the server closed the session.
    pub closed: Option<u16>,
    /// The session got its `welcome`.
    pub connected: bool,
}

impl ClientResult {
    /// Records the probe in a frame, if it carries one; returns whether it did.
    fn record(&mut self, text: &str) -> bool {
        let Some(p) = probe::parse(text) else {
            return false;
        };
        let latency = now_micros().saturating_sub(p.t);
        self.received.push(p.i);
        self.latencies_us
            .push(u32::try_from(latency).unwrap_or(u32::MAX));
        true
    }
}

/// Counters every session task updates.
#[derive(Debug, Default)]
pub struct Progress {
    pub deliveries: AtomicU64,
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
}

/// The connected sessions of a run.
pub struct Fleet {
    tasks: Vec<JoinHandle<ClientResult>>,
    stop: watch::Sender<bool>,
    pub progress: Arc<Progress>,
    pub failed: usize,
    /// Which sessions got their `welcome`, by index.
    pub connected: Vec<bool>,
}

/// Mints an HS256 user token (what the site's backend does for a logged-in user).
pub fn token(secret: &str, user: &str) -> anyhow::Result<String> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
    }
    let exp = now_micros() / 1_000_000 + 24 * 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Claims { sub: user, exp },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("minting a token")
}

/// Host and port of the server, from its base URL.
pub fn server_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url must be http://host:port"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    std::net::ToSocketAddrs::to_socket_addrs(authority)
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} resolves to nothing"))
}

async fn open(
    server: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{server}{path}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

/// Waits for the `welcome` frame.
async fn welcome(ws: &mut WebSocketStream<TcpStream>) -> anyhow::Result<()> {
    wait_for(ws, "welcome").await
}

/// Subscribes to `topic` and waits for the server's `subscribed`.
async fn subscribe(ws: &mut WebSocketStream<TcpStream>, topic: &str) -> anyhow::Result<()> {
    let frame = serde_json::json!({"type": "subscribe", "topic": topic}).to_string();
    ws.send(Message::Text(frame)).await?;
    wait_for(ws, "subscribed").await
}

/// Reads until a frame of type `kind` arrives.
async fn wait_for(ws: &mut WebSocketStream<TcpStream>, kind: &str) -> anyhow::Result<()> {
    let wanted = format!(r#""type":"{kind}""#);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains(&wanted) => return Ok(()),
            Ok(Some(Ok(Message::Close(frame)))) => return Err(anyhow!("closed: {frame:?}")),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err(anyhow!("closed before {kind}")),
            Err(_) => return Err(anyhow!("no {kind} within 30 s")),
        }
    }
}

/// Reads frames, recording probes, until `stop`; then pings to prove the session is alive.
async fn read_until_stopped(
    mut ws: WebSocketStream<TcpStream>,
    mut stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> ClientResult {
    let mut result = ClientResult {
        connected: true,
        ..ClientResult::default()
    };
    // One wait on the stop signal for the whole read loop: a new one at every frame would
    // register with the signal and leave it again each time, work a browser does not do and
    // that the generator, which shares the box with the server, should not spend. Frames are
    // polled first (`biased`): the signal comes once, and needs no random draw per frame.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if result.record(&text) {
                        progress.deliveries.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    result.closed = frame.map(|f| u16::from(f.code)).or(Some(1005));
                    return result;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return result,
            },
            _ = &mut stopped => break,
        }
    }
    // Liveness: the session answers a ping.
    if ws
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .is_ok()
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, ws.next()).await {
            match message {
                Message::Text(text) if text.contains(r#""type":"pong""#) => {
                    result.alive = true;
                    break;
                }
                Message::Text(text) => {
                    // A late delivery still counts.
                    result.record(&text);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    }
    let _ = ws.close(None).await;
    result
}

impl Fleet {
    /// Connects `n` sessions, session `k` as user `user(k)` (anonymous for `None`), and waits
    /// until every one has its `welcome` or failed.
    pub async fn connect(
        common: &Common,
        n: usize,
        user: impl Fn(usize) -> Option<String>,
    ) -> anyhow::Result<Fleet> {
        Fleet::connect_subscribed(common, n, user, None).await
    }

    /// [`Fleet::connect`], each session also subscribed to `topic` before it counts as ready.
    pub async fn connect_subscribed(
        common: &Common,
        n: usize,
        user: impl Fn(usize) -> Option<String>,
        topic: Option<&str>,
    ) -> anyhow::Result<Fleet> {
        let server = server_addr(&common.url)?;
        let gate = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
        let progress = Arc::new(Progress::default());
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<(usize, bool)>(1024);
        let sources = common.source_ips.as_ref().map(|r| r.0.clone());
        let mut tasks = Vec::with_capacity(n);
        let started = std::time::Instant::now();
        for k in 0..n {
            let path = match user(k) {
                Some(user) => format!("/inform?token={}", token(&common.secret, &user)?),
                None => "/inform".to_string(),
            };
            let source = sources.as_ref().map(|ips| IpAddr::V4(ips[k % ips.len()]));
            let gate = gate.clone();
            let ready = ready_tx.clone();
            let stop = stop_rx.clone();
            let progress = progress.clone();
            let topic = topic.map(str::to_string);
            tasks.push(tokio::spawn(async move {
                let connected = async {
                    let _permit = gate.acquire().await?;
                    let mut ws = open(server, source, &path).await?;
                    welcome(&mut ws).await?;
                    if let Some(topic) = &topic {
                        subscribe(&mut ws, topic).await?;
                    }
                    anyhow::Ok(ws)
                }
                .await;
                match connected {
                    Ok(ws) => {
                        progress.connected.fetch_add(1, Ordering::Relaxed);
                        let _ = ready.send((k, true)).await;
                        read_until_stopped(ws, stop, progress).await
                    }
                    Err(e) => {
                        if progress.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("session {k} failed to connect: {e:#}");
                        }
                        let _ = ready.send((k, false)).await;
                        ClientResult::default()
                    }
                }
            }));
        }
        drop(ready_tx);
        let mut done = 0;
        let mut connected = vec![false; n];
        while done < n {
            let Some((k, ok)) = ready_rx.recv().await else {
                break;
            };
            connected[k] = ok;
            done += 1;
            if done % 5000 == 0 {
                eprintln!("  {done}/{n} sessions settled");
            }
        }
        let failed = progress.failed.load(Ordering::Relaxed);
        eprintln!(
            "connected {} of {n} sessions in {:.1} s ({failed} failed)",
            n - failed,
            started.elapsed().as_secs_f64()
        );
        Ok(Fleet {
            tasks,
            stop,
            progress,
            failed,
            connected,
        })
    }

    /// Waits until `expected` probes have arrived in total, or `timeout` passes.
    pub async fn await_deliveries(&self, expected: u64, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.progress.deliveries.load(Ordering::Relaxed);
            if seen >= expected || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every session (each proves it is alive first) and collects what they saw.
    pub async fn finish(self) -> Vec<ClientResult> {
        let _ = self.stop.send(true);
        let mut results = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            results.push(task.await.unwrap_or_default());
        }
        results
    }
}
