//! informd: a notification push service.
//!
//! Browsers hold a WebSocket to `/inform`; backend services `POST /publish` likes, replies,
//! follows and announcements; informd stores each notification, keeps the unread count, and
//! pushes the event and the new badge to every tab of the user, or to everyone.
//!
//! Where things live, following a publish from the HTTP request to the browser:
//! - [`http`]: routes. `POST /publish` → [`publish`] (checks key, body, idempotency) →
//!   [`store`] (one transaction; SQLite behind the [`store::Store`] trait) → after commit, the
//!   store's listener, [`broker::Fanout`], serialises one frame per event → [`broker`] (memory,
//!   or across nodes) → [`hub`] (sharded actors that own the session table) → each session's
//!   bounded queue → [`session`] (one task per socket, over [`ws`]) → the browser.
//! - [`server`]: the front door. One port: WebSocket handshakes for `/inform` go to
//!   [`http::inform`] and then run on the raw socket ([`ws`]); everything else goes to the
//!   actix-web application ([`http`]).
//! - [`protocol`]: the frames and close codes; [`model`]: events and validation;
//!   [`auth`]: user tokens, publisher keys, origins; [`config`]: settings;
//!   [`error`]: the HTTP error type; [`startup`]: wiring, serving, graceful shutdown;
//!   [`retention`]: pruning; [`escalation`]: the offline hook (a webhook for users who stay
//!   offline); [`cli`]: the `informd` command; [`online`]: session counts on this node or
//!   across nodes; [`preferences`]: what each user muted, kept in memory on every node.

pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod error;
pub mod escalation;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod online;
pub mod preferences;
pub mod priority;
pub mod protocol;
pub mod publish;
pub mod retention;
pub mod schema_guard;
pub mod server;
pub mod session;
pub mod startup;
pub mod state;
pub mod store;
pub mod ws;

/// Entry points for the fuzz targets in `fuzz/` that reach code not otherwise public. Not an
/// API: nothing else may depend on it.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::BytesMut;
    use tokio::io::AsyncRead;

    use crate::error::ApiError;
    use crate::server::head::{read_until_decided, Head, FIRST_READ};
    use crate::ws::handshake::Opening;

    /// The front door's first-head reader ([`server`](crate::server)) over any byte source:
    /// `Ok` with what the head is, `Err(Some(error))` when it is refused (too large),
    /// `Err(None)` when the source ends first. The bytes read come back too.
    pub async fn read_head<R: AsyncRead + Unpin>(
        io: &mut R,
    ) -> (Result<Opening, Option<ApiError>>, BytesMut) {
        let mut buf = BytesMut::with_capacity(FIRST_READ);
        let verdict = match read_until_decided(io, &mut buf).await {
            Ok(opening) => Ok(opening),
            Err(Head::Refused(error)) => Err(Some(error)),
            Err(Head::Gone | Head::Read(..)) => Err(None),
        };
        (verdict, buf)
    }
}
