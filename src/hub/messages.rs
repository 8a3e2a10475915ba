//! The messages a [`super::shard::Shard`] handles, one struct each.

use std::sync::Arc;

use actix::Message;

use super::{SessionHandle, SessionId};
use crate::delivery::Delivery;

/// Add a session. Refused when its user already has the most sessions allowed.
#[derive(Message)]
#[rtype(result = "Result<(), RegisterError>")]
pub struct Register {
    pub session: SessionHandle,
}

/// Why a session was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("this user already has {0} live sessions")]
    TooManySessions(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Remove a session that ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub id: SessionId,
}

/// Start queuing a topic's deliveries for a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub id: SessionId,
    pub topic: Arc<str>,
}

/// Stop queuing a topic's deliveries for a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub id: SessionId,
    pub topic: Arc<str>,
}

/// Queue these frames for the sessions they are addressed to, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub deliveries: Vec<Delivery>,
}

/// Queue an [`super::Outbound::Resync`] for every session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resync;

/// Close every session with `code` and accept no more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub code: u16,
}
