//! The user's inbox over REST: a page of notifications, the badge, and marking read.
//! Authenticated by the user's JWT (header or cookie; not the query string, which proxies log).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::body;
use crate::auth::{token_from_request, Identity};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ReadSelector;

/// Most items one page may hold.
const MAX_PAGE: u64 = 100;
/// Items per page when `limit` is not given.
const DEFAULT_PAGE: u64 = 20;
/// Most ids one read request may name.
const MAX_READ_IDS: usize = 1000;
/// The largest read request body: room for [`MAX_READ_IDS`] ids and then some.
const READ_BODY_LIMIT: usize = 64 * 1024;

/// The user a request of the user APIs comes from: their JWT, from the header or the cookie.
pub(super) fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Identity, ApiError> {
    let token = token_from_request(req, &state.config.cookie_name, false).ok_or_else(|| {
        ApiError::Unauthorized(
            "a user token is required (Authorization: Bearer, or the cookie)".into(),
        )
    })?;
    Ok(state.verifier.verify(&token)?)
}

fn query_number(req: &HttpRequest, name: &'static str) -> Result<Option<i64>, ApiError> {
    crate::auth::url_query_value(req.query_string(), name)
        .map(|v| {
            v.parse::<i64>().map_err(|_| ApiError::InvalidQuery {
                name,
                message: "must be an integer".into(),
            })
        })
        .transpose()
}

/// `GET /api/notifications?limit=20&before=<seq>&unread=true`
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let identity = authenticate(&state, &req)?;
    let limit = match query_number(&req, "limit")? {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as u64,
        Some(_) => {
            return Err(ApiError::InvalidQuery {
                name: "limit",
                message: format!("must be between 1 and {MAX_PAGE}"),
            })
        }
    };
    let before = query_number(&req, "before")?;
    let unread_only = match crate::auth::url_query_value(req.query_string(), "unread").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::InvalidQuery {
                name: "unread",
                message: "must be true or false".into(),
            })
        }
    };
    // One extra row tells whether another page follows.
    let mut items = state
        .store
        .list_notifications(&identity.user, before, limit + 1, unread_only)
        .await?;
    let next_before = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items.last().map(|n| n.seq)
    } else {
        None
    };
    let badge = state.store.user_state(&identity.user).await?;
    Ok(HttpResponse::Ok().json(json!({
        "items": items,
        "next_before": next_before,
        "unread": badge.unread,
    })))
}

/// `GET /api/notifications/unread`
pub async fn unread(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = authenticate(&state, &req)?;
    let badge = state.store.user_state(&identity.user).await?;
    Ok(HttpResponse::Ok().json(json!({"unread": badge.unread, "seq": badge.seq})))
}

/// The body of `POST /api/notifications/read`: exactly one of the three.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    ids: Option<Vec<i64>>,
    up_to: Option<i64>,
    all: Option<bool>,
}

/// `POST /api/notifications/read` with `{"ids":[…]}`, `{"up_to":seq}` or `{"all":true}`.
pub async fn mark_read(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = authenticate(&state, &req)?;
    let body = body::read(&req, payload, READ_BODY_LIMIT).await?;
    let body: ReadBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let selector = match (body.ids, body.up_to, body.all) {
        (Some(ids), None, None) if ids.len() <= MAX_READ_IDS => ReadSelector::Ids(ids),
        (Some(_), None, None) => {
            return Err(ApiError::InvalidField {
                field: "ids".into(),
                message: format!("at most {MAX_READ_IDS} ids"),
            })
        }
        (None, Some(seq), None) => ReadSelector::UpTo(seq),
        (None, None, Some(true)) => ReadSelector::All,
        _ => {
            return Err(ApiError::InvalidField {
                field: "body".into(),
                message: "give exactly one of ids, up_to or all:true".into(),
            })
        }
    };
    let unread = state.store.mark_read(&identity.user, selector).await?;
    Ok(HttpResponse::Ok().json(json!({"unread": unread})))
}
