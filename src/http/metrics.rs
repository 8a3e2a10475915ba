//! `GET /metrics`: the Prometheus text format. Served on the main listener, or only on
//! `metrics_listen` when that is set (see [`crate::server`]).

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// The text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render())
}
