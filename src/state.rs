//! What every request handler and session shares: the configuration and the running parts
//! (store, hub, broker, verifiers). Built once by [`crate::startup::Application`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::auth::Verifier;
use crate::broker::{Broker, Opened};
use crate::config::Config;
use crate::escalation;
use crate::http::peer::TrustedProxies;
use crate::hub::{Hub, SessionId};
use crate::metrics::Metrics;
use crate::online::OnlineCounts;
use crate::preferences::PreferenceService;
use crate::publish::Publisher;
use crate::session::SessionThreads;
use crate::store::Store;

/// Shared by handlers through `web::Data`; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub broker: Arc<dyn Broker>,
    pub verifier: Arc<Verifier>,
    pub publisher: Arc<Publisher>,
    /// Every user's preferences (mutes), in memory, and the way to change them.
    pub preferences: Arc<PreferenceService>,
    pub metrics: Arc<Metrics>,
    /// Session counts, across nodes when there are several.
    pub online: Arc<dyn OnlineCounts>,
    /// `trusted_proxies`, parsed once.
    pub proxies: Arc<TrustedProxies>,
    /// The offline hook; `None` without `escalation_webhook`.
    pub escalation: Option<Arc<escalation::Running>>,
    /// Where sessions run, apart from the HTTP workers.
    pub session_threads: Arc<SessionThreads>,
    shutting_down: Arc<AtomicBool>,
    next_session: Arc<AtomicU64>,
    /// Session tasks still running (closing included), so shutdown can wait for their close
    /// frames to go out.
    running_sessions: Arc<RunningSessions>,
}

/// The count of running session tasks, and a signal for when it reaches zero.
#[derive(Default)]
struct RunningSessions {
    count: AtomicUsize,
    none_left: Notify,
}

/// Counts a running session task; dropped when the task ends, however it ends.
pub struct RunningSession(Arc<RunningSessions>);

impl Drop for RunningSession {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        hub: Hub,
        opened: Opened,
        verifier: Verifier,
        (publisher, preferences): (Publisher, PreferenceService),
        metrics: Arc<Metrics>,
    ) -> AppState {
        let Opened { broker, online } = opened;
        // Validated with the rest of the configuration; nothing is left to refuse here.
        let proxies = TrustedProxies::parse(&config.trusted_proxies).unwrap_or_default();
        // As many threads for sessions as for HTTP: a fan-out keeps those busy, and requests
        // are still served at once by the workers.
        let session_threads = SessionThreads::start(crate::startup::threads(config.workers));
        AppState {
            proxies: Arc::new(proxies),
            escalation: None,
            config,
            store,
            hub,
            broker,
            verifier: Arc::new(verifier),
            publisher: Arc::new(publisher),
            preferences: Arc::new(preferences),
            metrics,
            online,
            session_threads: Arc::new(session_threads),
            shutting_down: Arc::new(AtomicBool::new(false)),
            next_session: Arc::new(AtomicU64::new(1)),
            running_sessions: Arc::default(),
        }
    }

    /// A fresh id for a new session on this node.
    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks a session task as running until the returned guard is dropped.
    pub fn session_started(&self) -> RunningSession {
        self.running_sessions.count.fetch_add(1, Ordering::AcqRel);
        RunningSession(self.running_sessions.clone())
    }

    /// Session tasks still running.
    pub fn running_sessions(&self) -> usize {
        self.running_sessions.count.load(Ordering::Acquire)
    }

    /// Returns once no session task is running.
    pub async fn sessions_finished(&self) {
        loop {
            let none_left = self.running_sessions.none_left.notified();
            if self.running_sessions() == 0 {
                return;
            }
            none_left.await;
        }
    }

    /// Whether shutdown has begun: new sessions and publishes are refused with 503.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}
