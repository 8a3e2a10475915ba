//! The one error type of the HTTP surface, mapped in one place to a status and the spec's JSON
//! body `{"error":{"code":…,"message":…}}`. Internal causes (database errors) are logged, never
//! shown to the client.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthError;
use crate::store::StoreError;

/// Everything an HTTP endpoint can answer other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A field is missing or wrong; `field` names it.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// A query parameter is wrong.
    #[error("query parameter {name}: {message}")]
    InvalidQuery { name: &'static str, message: String },
    /// No credentials, or wrong ones.
    #[error("{0}")]
    Unauthorized(String),
    /// The user token was refused.
    #[error("{0}")]
    BadToken(#[from] AuthError),
    /// The browser origin is not allowed.
    #[error("origin not allowed")]
    ForbiddenOrigin,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("rate limited: retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("this user already has {0} live sessions")]
    TooManySessions(usize),
    /// The same `Idempotency-Key` came with a different body.
    #[error("this Idempotency-Key was used with a different body")]
    IdempotencyMismatch,
    /// The same `Idempotency-Key` is still being processed.
    #[error("a request with this Idempotency-Key is in flight")]
    IdempotencyInFlight,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// `/inform` was requested without a WebSocket handshake.
    #[error("this endpoint speaks WebSocket: {0}")]
    UpgradeRequired(String),
    /// A WebSocket handshake that RFC 6455 refuses; the message says which rule it broke.
    #[error("not a valid WebSocket handshake: {0}")]
    InvalidHandshake(&'static str),
    /// The request head or body did not arrive in time; the message says which.
    #[error("{0} did not arrive in time")]
    RequestTimeout(&'static str),
    /// The request head is larger than the server reads.
    #[error("the request head is larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// Every slot for connections still sending their first request is taken.
    #[error("too many connections are still sending their request")]
    Busy,
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// The database (or broker) failed; the cause is logged, not shown.
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
}

impl ApiError {
    /// The stable machine-readable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::BadToken(AuthError::Expired) => "token_expired",
            ApiError::BadToken(_) => "invalid_token",
            ApiError::ForbiddenOrigin => "origin_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManySessions(_) => "too_many_sessions",
            ApiError::IdempotencyMismatch => "idempotency_key_reused",
            ApiError::IdempotencyInFlight => "idempotency_key_in_flight",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::UpgradeRequired(_) => "upgrade_required",
            ApiError::InvalidHandshake(_) => "invalid_handshake",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::HeadersTooLarge { .. } => "headers_too_large",
            ApiError::Busy => "busy",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::IdempotencyInFlight => Some(1),
            ApiError::ShuttingDown | ApiError::Unavailable(_) => Some(5),
            ApiError::Busy => Some(1),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidQuery { .. }
            | ApiError::InvalidHandshake(_) => StatusCode::BAD_REQUEST,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unauthorized(_) | ApiError::BadToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenOrigin => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } | ApiError::TooManySessions(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyInFlight => StatusCode::CONFLICT,
            ApiError::ShuttingDown | ApiError::Unavailable(_) | ApiError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Unavailable(cause) = self {
            log::error!("request failed: {cause}");
        }
        let field = match self {
            ApiError::InvalidField { field, .. } => Some(field.as_str()),
            ApiError::InvalidQuery { name, .. } => Some(*name),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if matches!(self, ApiError::Unauthorized(_) | ApiError::BadToken(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if matches!(self, ApiError::UpgradeRequired(_)) {
            response.insert_header((header::UPGRADE, "websocket"));
            // RFC 6455, 4.4: the versions this server speaks.
            response.insert_header((header::SEC_WEBSOCKET_VERSION, "13"));
        }
        response.json(Body {
            error: Inner {
                code: self.code(),
                message: self.to_string(),
                field,
            },
        })
    }
}

/// The JSON body for errors raised outside our handlers (unknown routes, extractor failures).
pub fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(Body {
        error: Inner {
            code: "not_found",
            message: "no such endpoint".into(),
            field: None,
        },
    })
}
