//! Request bodies of the REST endpoints: read only once the request is authenticated, up to a
//! size limit and within a deadline, so that a client without credentials, or one that sends a
//! few bytes and then nothing, cannot hold a connection and a buffer.
//!
//! A request answered before its body is read is closed by actix-http after the answer, so an
//! unread body never keeps a connection either.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::ApiError;

/// How long a request body may take to arrive, once its head has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The body of `req`, at most `limit` bytes: 413 when it says or turns out to be larger, 408 when
/// it does not arrive within [`BODY_TIMEOUT`].
pub async fn read(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let collect = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::InvalidJson(format!("reading the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_TIMEOUT, collect)
        .await
        .map_err(|_| ApiError::RequestTimeout("the request body"))?
}
