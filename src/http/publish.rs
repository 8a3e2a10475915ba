//! `POST /publish`: the HTTP side (headers, body size, content type); the rules are in
//! [`crate::publish`].

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use std::time::Instant;

use super::body;
use crate::error::ApiError;
use crate::publish::PublishResponse;
use crate::state::AppState;

/// `POST /publish`, timed and counted by result for `/metrics`.
pub async fn publish(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let result = accept_publish(&req, payload, &state).await;
    let metrics = &state.metrics;
    metrics
        .publish_duration
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok(answer) if answer.duplicate => "duplicate",
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    metrics.publishes.with_label_values(&[label]).inc();
    Ok(HttpResponse::Ok().json(result?))
}

/// Checks the request and publishes its events.
async fn accept_publish(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<PublishResponse, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.publisher.authorize(authorization)?;
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = body::read(req, payload, state.config.max_publish_bytes).await?;
    let idempotency_key = req
        .headers()
        .get("Idempotency-Key")
        .map(|v| {
            v.to_str().map_err(|_| ApiError::InvalidField {
                field: "Idempotency-Key".into(),
                message: "must be printable ASCII".into(),
            })
        })
        .transpose()?;
    state
        .publisher
        .publish(&body, idempotency_key, state.online.as_ref())
        .await
}
