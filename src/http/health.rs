//! `GET /healthz` (the process answers) and `GET /readyz` (its database and broker answer).
//! A load balancer probes these every few seconds, so they log at debug, not in the access log.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    log::debug!("GET /healthz 200");
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await;
    let broker = state.broker.ping().await;
    if let Err(e) = &database {
        log::warn!("readyz: database: {e}");
    }
    if let Err(e) = &broker {
        state.metrics.broker_errors.inc();
        log::warn!("readyz: {e}");
    }
    let ready = database.is_ok() && broker.is_ok() && !state.is_shutting_down();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "database": word(database.is_ok()),
        "broker": word(broker.is_ok()),
    });
    log::debug!("GET /readyz {}", if ready { 200 } else { 503 });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
