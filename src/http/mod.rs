//! The HTTP surface: which path goes to which handler, CORS, and the access log.

mod health;
mod inbox;
mod inform;
mod publish;

use actix_cors::Cors;
use actix_web::http::{header, Method};

use actix_web::web;

use crate::auth::{host_of, origin_allowed, origin_matches};
use crate::state::AppState;

/// Registers every route. `allowed_origins` feeds CORS for the inbox API.
pub fn routes(cfg: &mut web::ServiceConfig, state: &AppState) {
    let allowed = state.config.allowed_origins.clone();
    let cors = Cors::default()
        .allowed_origin_fn(move |origin, head| {
            origin
                .to_str()
                .is_ok_and(|o| origin_matches(&allowed, o, host_of(&head.headers)))
        })
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .supports_credentials()
        .max_age(3600);
    cfg.route("/inform", web::get().to(inform::handshake))
        .route("/inform/", web::get().to(inform::handshake))
        .route("/publish", web::post().to(publish::publish))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::scope("/api/notifications")
                .wrap(cors)
                .route("", web::get().to(inbox::list))
                .route("/unread", web::get().to(inbox::unread))
                .route("/read", web::post().to(inbox::mark_read)),
        )
        .default_service(web::to(|| async { crate::error::not_found() }));
}

/// Refuses browser requests from origins that are not allowed (403, JSON body).
pub fn check_origin(
    state: &AppState,
    req: &actix_web::HttpRequest,
) -> Result<(), crate::error::ApiError> {
    if origin_allowed(&state.config.allowed_origins, req) {
        Ok(())
    } else {
        Err(crate::error::ApiError::ForbiddenOrigin)
    }
}
