//! What every request handler and session shares: the configuration and the running parts
//! (store, hub, broker, verifiers). Built once by [`crate::startup::Application`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::auth::Verifier;
use crate::broker::Broker;
use crate::config::Config;
use crate::hub::{Hub, SessionId};
use crate::publish::Publisher;
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
    shutting_down: Arc<AtomicBool>,
    next_session: Arc<AtomicU64>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        hub: Hub,
        broker: Arc<dyn Broker>,
        verifier: Verifier,
        publisher: Publisher,
    ) -> AppState {
        AppState {
            config,
            store,
            hub,
            broker,
            verifier: Arc::new(verifier),
            publisher: Arc::new(publisher),
            shutting_down: Arc::new(AtomicBool::new(false)),
            next_session: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A fresh id for a new session on this node.
    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether shutdown has begun: new sessions and publishes are refused with 503.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}
