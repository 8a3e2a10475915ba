//! `GET /inform`: the WebSocket handshake. Everything that can be refused is refused here,
//! before the upgrade, with a JSON error: origin (403), token (401), `since` (400), too many
//! sessions (429), shutting down (503). Then the session is registered with the hub and its
//! loop spawned.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;

use super::check_origin;
use crate::auth::{token_from_request, url_query_value};
use crate::error::ApiError;
use crate::hub::{RegisterError, SessionHandle, SessionSignal};
use crate::session::{self, SessionStart};
use crate::state::AppState;

pub async fn handshake(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    check_origin(&state, &req)?;
    let identity = match token_from_request(&req, &state.config.cookie_name, true) {
        Some(token) => Some(state.verifier.verify(&token)?),
        None if state.config.allow_anonymous => None,
        None => {
            return Err(ApiError::Unauthorized(
                "a token is required: Authorization: Bearer, ?token= or the cookie".into(),
            ))
        }
    };
    let since = match url_query_value(req.query_string(), "since") {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or(
            ApiError::InvalidQuery {
                name: "since",
                message: "must be a non-negative integer".into(),
            },
        )?),
    };
    let (response, ws, stream) =
        actix_ws::handle(&req, body).map_err(|e| ApiError::UpgradeRequired(e.to_string()))?;
    let stream = stream.max_frame_size(state.config.max_frame_bytes);
    let (queue_tx, queue_rx) = mpsc::channel(state.config.outbound_queue);
    let signal = Arc::new(SessionSignal::default());
    let id = state.next_session_id();
    let user = identity.as_ref().map(|i| Arc::<str>::from(i.user.as_str()));
    state
        .hub
        .register(SessionHandle {
            id,
            user,
            queue: queue_tx,
            signal: signal.clone(),
        })
        .await
        .map_err(|e| match e {
            RegisterError::TooManySessions(n) => ApiError::TooManySessions(n),
            RegisterError::ShuttingDown => ApiError::ShuttingDown,
        })?;
    log::debug!(
        "session {id} open ({})",
        if identity.is_some() {
            "user"
        } else {
            "anonymous"
        }
    );
    let start = SessionStart {
        id,
        identity,
        since,
        queue: queue_rx,
        signal,
    };
    actix_web::rt::spawn(session::run(state.get_ref().clone(), ws, stream, start));
    Ok(response)
}
