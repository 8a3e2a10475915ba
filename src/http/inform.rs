//! `/inform`: the WebSocket handshake. Everything that can be refused is refused here, before
//! the upgrade, with a JSON error: origin (403), token (401), `since` (400), too many sessions
//! (429), shutting down (503). Then the session is registered with the hub and its loop runs
//! on the connection.
//!
//! Handshakes arrive from the front door ([`crate::server`]) with the raw TCP stream; a
//! request to `/inform` that is not a WebSocket handshake reaches the HTTP application and
//! gets 426 from [`not_a_handshake`].

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use actix_web::http::header::HeaderMap;

use crate::auth::{origin_allowed, refusal_details, token_from_parts, url_query_value, Identity};
use crate::error::ApiError;
use crate::http::peer;
use crate::hub::{RegisterError, SessionHandle, SessionSignal};
use crate::session::{self, SessionStart};
use crate::state::AppState;
use crate::ws::handshake::{refusal, Handshake};
use crate::ws::WsConnection;

/// How long writing a handshake answer may take.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// `GET /inform` without a WebSocket handshake.
pub async fn not_a_handshake() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::UpgradeRequired(
        "send a WebSocket handshake (Upgrade: websocket, Sec-WebSocket-Version: 13)".into(),
    ))
}

/// What a successful handshake check yields.
struct Admitted {
    identity: Option<Identity>,
    since: Option<i64>,
}

/// The checks, in the order the protocol documents.
fn admit(state: &AppState, handshake: &Handshake) -> Result<Admitted, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    if !origin_allowed(&state.config.allowed_origins, &handshake.headers) {
        return Err(ApiError::ForbiddenOrigin);
    }
    let token = token_from_parts(
        &handshake.headers,
        &handshake.query,
        &state.config.cookie_name,
        true,
    );
    let identity = match token {
        Some(token) => Some(state.verifier.verify(&token)?),
        None if state.config.allow_anonymous => None,
        None => {
            return Err(ApiError::Unauthorized(
                "a token is required: Authorization: Bearer, ?token= or the cookie".into(),
            ))
        }
    };
    let since = match url_query_value(&handshake.query, "since") {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or(
            ApiError::InvalidQuery {
                name: "since",
                message: "must be a non-negative integer".into(),
            },
        )?),
    };
    Ok(Admitted { identity, since })
}

async fn answer(io: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(ANSWER_WAIT, io.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Answers a handshake that will not become a session with `error`, and closes the connection.
/// `headers` are the handshake's, when it was read far enough to have them.
pub async fn refuse(
    mut io: TcpStream,
    error: ApiError,
    headers: Option<&HeaderMap>,
    state: &AppState,
) {
    state
        .metrics
        .handshakes_refused
        .with_label_values(&[error.code()])
        .inc();
    let client = match headers {
        Some(headers) => state.proxies.client(io.peer_addr().ok(), headers),
        None => io.peer_addr().ok().map(|peer| peer.ip()),
    };
    let client = peer::display(client);
    if let (ApiError::ForbiddenOrigin, Some(headers)) = (&error, headers) {
        let rule = state.config.origin_mode();
        log::warn!("{}", refusal_details(headers, &rule, &client));
    }
    log::info!(
        "{client} \"GET /inform\" {} {}",
        error_status(&error),
        error.code()
    );
    if answer(&mut io, &refusal(&error)).await {
        let _ = tokio::time::timeout(ANSWER_WAIT, io.shutdown()).await;
    }
}

fn error_status(error: &ApiError) -> u16 {
    actix_web::ResponseError::status_code(error).as_u16()
}

/// Serves a WebSocket handshake whose head has been consumed from `io`: refuses it, or
/// accepts it and starts the session. `frames` are bytes the client sent after the head.
pub async fn accept(mut io: TcpStream, handshake: Handshake, frames: BytesMut, state: AppState) {
    let admitted = match admit(&state, &handshake) {
        Ok(admitted) => admitted,
        Err(error) => return refuse(io, error, Some(&handshake.headers), &state).await,
    };
    if let Some(identity) = &admitted.identity {
        // Across nodes (the hub checks this node's sessions again as it registers).
        let sessions = state.online.user_sessions(&[&identity.user]).await;
        let sessions = sessions.first().copied().unwrap_or(0);
        if sessions >= state.config.max_sessions_per_user {
            let error = ApiError::TooManySessions(sessions);
            return refuse(io, error, Some(&handshake.headers), &state).await;
        }
    }
    let (queue_tx, queue_rx) = crate::hub::outbound_queue(state.config.outbound_queue);
    let signal = Arc::new(SessionSignal::default());
    let id = state.next_session_id();
    let user = admitted
        .identity
        .as_ref()
        .map(|i| Arc::<str>::from(i.user.as_str()));
    let registered = state
        .hub
        .register(SessionHandle {
            id,
            user,
            queue: queue_tx,
            signal: signal.clone(),
        })
        .await;
    let registration = match registered {
        Ok(registration) => registration,
        Err(e) => {
            let error = match e {
                RegisterError::TooManySessions(n) => ApiError::TooManySessions(n),
                RegisterError::ShuttingDown => ApiError::ShuttingDown,
            };
            return refuse(io, error, Some(&handshake.headers), &state).await;
        }
    };
    let accepted = handshake.accept();
    // The request's headers are not needed any more; a session lives for hours.
    drop(handshake);
    if !answer(&mut io, &accepted).await {
        return; // `registration` unregisters as it drops
    }
    log::debug!(
        "\"GET /inform\" 101: session {id} ({})",
        if admitted.identity.is_some() {
            "user"
        } else {
            "anonymous"
        }
    );
    let _ = io.set_nodelay(true);
    let start = SessionStart {
        registration,
        identity: admitted.identity,
        since: admitted.since,
        queue: queue_rx,
        signal,
    };
    let connection = WsConnection::new(io, state.config.max_frame_bytes, frames);
    // The session runs as a task of its own (on the session thread that answered its
    // handshake), sized for the session alone, and the handshake's future ends here.
    actix_web::rt::spawn(session::run(state, connection, start));
}
