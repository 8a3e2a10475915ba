//! `GET`/`PUT /api/preferences`: what the user muted. Authenticated and CORS-checked like the
//! REST inbox; the rules are in [`crate::preferences`].

use actix_web::{web, HttpRequest, HttpResponse};

use super::body;
use super::inbox::authenticate;
use crate::error::ApiError;
use crate::preferences::{parse_preferences, MAX_MUTED};
use crate::state::AppState;

/// The largest body: three full lists of the longest entries, and room for the JSON around
/// them.
const BODY_LIMIT: usize = 3 * MAX_MUTED * (crate::model::MAX_GROUP_BYTES + 8) + 1024;

/// `GET /api/preferences`: the user's document (empty lists when they muted nothing).
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let identity = authenticate(&state, &req)?;
    Ok(HttpResponse::Ok().json(state.preferences.get(&identity.user)))
}

/// `PUT /api/preferences`: replaces the whole document and answers with it as stored.
pub async fn put(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = authenticate(&state, &req)?;
    let body = body::read(&req, payload, BODY_LIMIT).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let preferences = parse_preferences(&value).map_err(|e| ApiError::InvalidField {
        field: e.field,
        message: e.message,
    })?;
    state
        .preferences
        .set(&identity.user, preferences.clone())
        .await?;
    log::debug!("preferences of user {} changed", identity.user);
    Ok(HttpResponse::Ok().json(preferences))
}
