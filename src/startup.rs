//! Building and running the server: wire config → hub → broker → store → HTTP, bind, serve,
//! and shut down gracefully.
//!
//! Tests build an [`Application`] on port 0 and read [`Application::port`]; the binary does the
//! same on the configured address. Shutdown (a signal, or [`Stopper::stop`]) follows the spec:
//! stop accepting, refuse new publishes, close every session with 1001, let in-flight requests
//! finish within `shutdown_grace_secs`, return.

use std::sync::Arc;
use std::time::Duration;

use actix_server::Server;
use tokio::sync::Notify;

use crate::auth::Verifier;
use crate::broker::{self, Fanout};
use crate::config::{redact_url, Config};
use crate::escalation;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::preferences::PreferenceService;
use crate::protocol::close;
use crate::publish::Publisher;
use crate::state::AppState;
use crate::{retention, schema_guard, server, store};

/// A built, bound server that has not started serving yet.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    stopper: Stopper,
    signals: Signals,
}

/// Asks a running [`Application`] to shut down, from any thread.
#[derive(Clone, Default)]
pub struct Stopper {
    wake: Arc<Notify>,
    /// Why the node stops on its own, when it must not go on (the first reason given).
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl Stopper {
    pub fn stop(&self) {
        self.wake.notify_one();
    }

    /// Shuts down gracefully, then [`Application::run_until_stopped`] answers an error with
    /// `reason`, so the process exits non-zero.
    pub fn fail(&self, reason: String) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(reason);
        }
        self.wake.notify_one();
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok()?.clone()
    }
}

/// The number of threads to use when the config says 0.
fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The number of threads a setting asks for, where 0 means one per core.
pub(crate) fn threads(configured: usize) -> usize {
    match configured {
        0 => cores(),
        n => n,
    }
}

/// Raises the open-file soft limit to the hard limit: every session is a socket.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!(
            "open-file limit {limit}: room for about {} sessions",
            limit.saturating_sub(100)
        ),
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }
}

impl Application {
    /// Builds every part and binds the listener. Must run inside an actix system.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        for warning in config.development_warnings() {
            log::warn!("!!! {warning}");
        }
        let signals = Signals::install();
        raise_open_file_limit();
        // Listen first: a port that is taken stops the start before anything is created on
        // disk.
        let listener = bind_setting(&config.listen, "listen")?;
        let metrics_listener = match &config.metrics_listen {
            Some(address) => Some(bind_setting(address, "metrics_listen")?),
            None => None,
        };
        let config = Arc::new(config);
        let verifier = Verifier::from_config(&config)?;
        let shards = threads(config.hub_shards);
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::start(shards, config.max_sessions_per_user, metrics.clone());
        let opened = broker::open(&config, hub.clone(), metrics.clone())?;
        let fanout = Arc::new(Fanout::start(opened.broker.clone()));
        let store = store::open(
            &config.database,
            fanout,
            metrics.clone(),
            config.commit_priority(),
        )
        .await?;
        let preferences = PreferenceService::start(&config, store.clone()).await?;
        let publisher = Publisher::new(&config, store.clone(), preferences.mutes().clone());
        let workers = threads(config.workers);
        let mut state = AppState::new(
            config.clone(),
            store,
            hub,
            opened,
            verifier,
            (publisher, preferences),
            metrics,
        );
        retention::spawn(state.store.clone(), &config);
        escalation::start(&mut state)?;
        let stopper = Stopper::default();
        schema_guard::spawn(state.store.clone(), stopper.clone());

        let address = listener.local_addr()?;
        let port = address.port();
        let metrics_address = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let server = server::build(
            listener,
            metrics_listener,
            workers,
            config.shutdown_grace_secs,
            state.clone(),
        )?;
        log::info!("browser origins: {}", config.origin_mode());
        if let Some(address) = metrics_address {
            log::info!("metrics on http://{address}/metrics only");
        }
        log::info!(
            "informd listening on {address} (database {}, broker {}, {workers} workers, {workers} session threads, {shards} hub shards)",
            redact_url(&config.database),
            redact_url(&config.broker)
        );
        if config.demo_on() {
            log::warn!(
                "demo page on http://{address}/ : it hands out tokens for any user; set demo = false (INFORMD_DEMO=false) to turn it off"
            );
        }
        Ok(Application {
            port,
            server,
            state,
            stopper,
            signals,
        })
    }

    /// The port actually bound (useful with `listen = "127.0.0.1:0"`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that shuts this application down.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Serves until SIGTERM, SIGINT or [`Stopper::stop`], then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            state,
            stopper,
            mut signals,
            ..
        } = self;
        let handle = server.handle();
        let serving = actix_web::rt::spawn(server);
        tokio::select! {
            reason = signals.termination() => log::info!("{reason}: shutting down"),
            _ = stopper.wake.notified() => log::info!("stop requested: shutting down"),
        }
        // One deadline for the whole shutdown: nothing below may wait past the grace.
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(state.config.shutdown_grace_secs);
        state.begin_shutdown();
        handle.pause().await;
        state.hub.close_all(close::GOING_AWAY).await;
        // Let the sessions' close frames go out before their threads stop. A client that does
        // not read is not waited for (see `session::finish`).
        if tokio::time::timeout_at(deadline, state.sessions_finished())
            .await
            .is_err()
        {
            log::warn!(
                "{} sessions still closing at the end of the grace period",
                state.running_sessions()
            );
        }
        // Escalations being sent are recorded, and the sessions just closed were the last
        // sight of their users: record that too.
        if let Some(escalation) = &state.escalation {
            let _ = tokio::time::timeout_at(deadline, escalation.stop()).await;
        }
        // In-flight requests finish (a publish answered 200 is committed before its answer).
        let stopped = tokio::time::timeout_at(deadline, handle.stop(true)).await;
        // Sessions still closing when the grace ran out end with their threads.
        state.session_threads.stop();
        match stopped {
            Ok(()) => {
                let _ = serving.await;
                log::info!("informd stopped");
            }
            Err(_) => log::warn!("shutdown grace period over; abandoning what is left"),
        }
        match stopper.failure() {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    }
}

/// Binds the address of the setting `key`; an error says what went wrong and which setting
/// to change.
fn bind_setting(address: &str, key: &str) -> anyhow::Result<std::net::TcpListener> {
    let env = format!("INFORMD_{}", key.to_uppercase());
    server::bind(address).map_err(|e| {
        let advice = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is in use (another informd, or another program, holds it): stop \
                 it, or choose another port"
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges): choose a port above 1023 \
                 and let the proxy listen on 80 and 443"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "this machine has no such address: use one of its own, 127.0.0.1 or 0.0.0.0"
            }
            _ => "",
        };
        let cause = if advice.is_empty() {
            e.to_string()
        } else {
            advice.to_string()
        };
        let flag = if key == "listen" {
            ", or serve --listen"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {address}: {cause}; set {key} ({env}{flag})")
    })
}

/// The signals that stop informd, listened for from the start of [`Application::build`]:
/// a SIGTERM sent as soon as the "listening" line appears is a graceful stop, not the default
/// action that kills the process.
struct Signals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(int), Ok(hup)) => Some([term, int, hup]),
                _ => {
                    log::error!("cannot install signal handlers");
                    None
                }
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for SIGTERM or SIGINT. SIGHUP (sent by a closing terminal, or by an operator used
    /// to daemons that reload) is logged and ignored: informd reloads nothing, and dying of it
    /// would cut every session.
    #[cfg(unix)]
    async fn termination(&mut self) -> &'static str {
        let Some([term, int, hup]) = self.streams.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return "SIGTERM",
                _ = int.recv() => return "SIGINT",
                _ = hup.recv() => log::warn!(
                    "SIGHUP ignored: informd does not reload its configuration; restart it to \
                     apply a change (clients resume with nothing lost)"
                ),
            }
        }
    }

    #[cfg(not(unix))]
    async fn termination(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
