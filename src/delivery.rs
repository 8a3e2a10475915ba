//! What the hub delivers: one committed change, addressed to the sessions of a user or a
//! topic, with its frame serialised once. Its own module, so that the hub (which routes
//! deliveries) and the broker (which carries them between nodes) both depend on it and not
//! on each other.

use std::sync::Arc;
use std::time::SystemTime;

use bytestring::ByteString;

use crate::protocol;
use crate::store::Change;

/// A frame addressed to the sessions of one user or of one topic.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// To every session of `user`. `seq` is the notification's seq; `None` for a badge update.
    User {
        user: Arc<str>,
        seq: Option<i64>,
        frame: ByteString,
        /// When the publish was accepted (`None` for a badge update).
        published: Option<SystemTime>,
    },
    /// To every session subscribed to `topic` (every session, for `global`).
    Topic {
        topic: Arc<str>,
        seq: i64,
        frame: ByteString,
        /// When the publish was accepted.
        published: SystemTime,
    },
}

impl Delivery {
    /// When the publish behind it was accepted (`None` for a badge update).
    pub fn published(&self) -> Option<SystemTime> {
        match self {
            Delivery::User { published, .. } => *published,
            Delivery::Topic { published, .. } => Some(*published),
        }
    }

    /// Builds the delivery for a committed change; the frame is serialised here, once.
    pub fn from_change(change: &Change) -> Delivery {
        match change {
            Change::Notified {
                user,
                notification,
                unread,
                published,
            } => Delivery::User {
                user: Arc::from(user.as_str()),
                seq: Some(notification.seq),
                frame: protocol::notification(notification, *unread),
                published: Some(*published),
            },
            Change::Unread { user, unread } => Delivery::User {
                user: Arc::from(user.as_str()),
                seq: None,
                frame: protocol::unread(*unread),
                published: None,
            },
            Change::Broadcast {
                broadcast,
                published,
            } => Delivery::Topic {
                topic: Arc::from(broadcast.topic.as_str()),
                seq: broadcast.seq,
                frame: protocol::broadcast(broadcast),
                published: *published,
            },
        }
    }
}
