//! The simulated browsers: sessions that record every probe they receive (which event, how
//! late) until told to stop, then prove they are still alive. Each connects here, on the
//! runtime, and is then run by a reader thread ([`crate::readers`]).

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::probe::{self, now_micros};
use crate::readers::{Opening, Readers};
use crate::Common;

/// Threads that read the sessions. One: a reader that sleeps whenever it has caught up is
/// woken by the server's next frame, so every thread added is woken more often, each time for
/// fewer frames. Two cost the generator a third more CPU per delivery than one in a paced
/// fan-out, with twice the context switches, and moved fewer frames unpaced (BENCHMARKS, "The
/// generator's readers in event loops").
const READER_THREADS: usize = 1;

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
    pub fn record(&mut self, text: &str) -> bool {
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

/// Counters every session updates.
#[derive(Debug, Default)]
pub struct Progress {
    pub deliveries: AtomicU64,
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
}

impl Progress {
    /// Counts a session that could not open, and says why for the first few.
    pub fn failed_to_connect(&self, index: usize, error: &dyn Display) {
        if self.failed.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("session {index} failed to connect: {error:#}");
        }
    }
}

/// The connected sessions of a run.
pub struct Fleet {
    readers: Readers,
    clients: usize,
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

/// Opens the TCP connection a session runs on, from `source` when given.
async fn connect(server: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
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
    Ok(stream)
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
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, bool)>();
        let readers = Readers::start(
            READER_THREADS,
            common.readers_nice,
            progress.clone(),
            ready_tx.clone(),
        )
        .context("starting the reader threads")?;
        let sources = common.source_ips.as_ref().map(|r| r.0.clone());
        let started = std::time::Instant::now();
        for k in 0..n {
            let path = match user(k) {
                Some(user) => format!("/inform?token={}", token(&common.secret, &user)?),
                None => "/inform".to_string(),
            };
            let source = sources.as_ref().map(|ips| IpAddr::V4(ips[k % ips.len()]));
            let gate = gate.clone();
            let ready = ready_tx.clone();
            let progress = progress.clone();
            let handoff = readers.handoff();
            let topic = topic.map(str::to_string);
            tokio::spawn(async move {
                let connected = async {
                    let permit = gate.acquire_owned().await?;
                    let stream = connect(server, source).await?.into_std()?;
                    anyhow::Ok((permit, stream))
                }
                .await;
                let failure = match connected {
                    Ok((permit, stream)) => handoff
                        .open(Opening {
                            index: k,
                            stream,
                            url: format!("ws://{server}{path}"),
                            topic,
                            permit,
                        })
                        .err(),
                    Err(e) => Some(e),
                };
                if let Some(e) = failure {
                    progress.failed_to_connect(k, &e);
                    let _ = ready.send((k, false));
                }
            });
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
            readers,
            clients: n,
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
        let Fleet {
            readers, clients, ..
        } = self;
        let seen = tokio::task::spawn_blocking(move || readers.stop())
            .await
            .unwrap_or_default();
        let mut results: Vec<ClientResult> = std::iter::repeat_with(ClientResult::default)
            .take(clients)
            .collect();
        for (index, result) in seen {
            if let Some(slot) = results.get_mut(index) {
                *slot = result;
            }
        }
        results
    }
}
