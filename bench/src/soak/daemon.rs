//! The real informd process under test: started on a fixed loopback port and a SQLite file,
//! killed with SIGKILL (no shutdown, no flush, like a crash or the OOM killer), and restarted on
//! the same port and file so clients and publishers find it again.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// How the daemon is started each time.
pub struct DaemonSpec {
    pub binary: PathBuf,
    pub database: PathBuf,
    pub port: u16,
    pub secret: String,
    pub key: String,
    /// Where the daemon's stderr goes (appended across restarts).
    pub log: PathBuf,
}

/// A running (or killed) informd.
pub struct Daemon {
    spec: DaemonSpec,
    child: Option<Child>,
    http: reqwest::Client,
    /// Times it was killed and came back.
    pub restarts: u64,
    /// Longest time from kill to ready.
    pub slowest_restart: Duration,
}

/// Picks a loopback port that is free now, below the ephemeral range: while the daemon is
/// down, a client's outgoing connection could otherwise be given its port (even connect to
/// itself), and the restart would find the port taken. The daemon binds it with SO_REUSEADDR.
pub fn free_port() -> anyhow::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000.min(ephemeral_low.saturating_sub(1000));
    for _ in 0..200 {
        let port = fastrand::u16(low..ephemeral_low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port below the ephemeral range {ephemeral_low}")
}

impl Daemon {
    pub fn new(spec: DaemonSpec) -> anyhow::Result<Daemon> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        Ok(Daemon {
            spec,
            child: None,
            http,
            restarts: 0,
            slowest_restart: Duration::ZERO,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.port)
    }

    /// Starts the process and waits until `/readyz` answers 200.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("opening {}", self.spec.log.display()))?;
        let child = Command::new(&self.spec.binary)
            .arg("serve")
            .env("INFORMD_LISTEN", format!("127.0.0.1:{}", self.spec.port))
            .env("INFORMD_DATABASE", &self.spec.database)
            .env("INFORMD_JWT_SECRET", &self.spec.secret)
            .env("INFORMD_PUBLISH_KEYS", &self.spec.key)
            // Everything published in the run must stay replayable and stored: no pruning.
            .env("INFORMD_TOPIC_HISTORY_MAX", "100000000")
            .env("INFORMD_REPLAY_MAX", "100000000")
            .env("INFORMD_HEARTBEAT_SECS", "5")
            .env("INFORMD_WORKERS", "2")
            .env("INFORMD_HUB_SHARDS", "2")
            .env("INFORMD_SHUTDOWN_GRACE_SECS", "5")
            .env(
                "RUST_LOG",
                std::env::var("SOAK_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.binary.display()))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/readyz", self.url());
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "informd exited during start ({status}); see {}",
                        self.spec.log.display()
                    );
                }
            }
            if let Ok(response) = self.http.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "informd not ready within 60 s; see {}",
                    self.spec.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then a fresh start on the same port and database.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        let began = Instant::now();
        self.kill().await?;
        self.start().await?;
        self.restarts += 1;
        self.slowest_restart = self.slowest_restart.max(began.elapsed());
        Ok(())
    }

    async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().context("sending SIGKILL")?;
            child.wait().await.context("reaping informd")?;
        }
        Ok(())
    }

    /// A clean stop (SIGTERM, then waiting), so the database file is closed before the check.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            // No signal crate needed: `kill -TERM` is on every machine that runs informd.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => {
                status.context("waiting for informd")?;
            }
            Err(_) => {
                child.start_kill()?;
                child.wait().await?;
                bail!("informd did not stop within 30 s of SIGTERM");
            }
        }
        Ok(())
    }
}
