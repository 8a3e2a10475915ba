//! `GET /api/presence?user=42` (publisher key): whether a user is online, and with how many
//! sessions, on every node. A backend asks before deciding between a push and an email.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::auth::url_query_value;
use crate::error::ApiError;
use crate::model::check_user_id;
use crate::state::AppState;

pub async fn presence(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.publisher.authorize(authorization)?;
    let user = url_query_value(req.query_string(), "user").ok_or(ApiError::InvalidQuery {
        name: "user",
        message: "is required: /api/presence?user=42".into(),
    })?;
    check_user_id(&user).map_err(|message| ApiError::InvalidQuery {
        name: "user",
        message,
    })?;
    let sessions = state.online.user_sessions(&[&user]).await;
    let sessions = sessions.first().copied().unwrap_or(0);
    Ok(HttpResponse::Ok().json(json!({
        "user": user,
        "online": sessions > 0,
        "sessions": sessions,
    })))
}
