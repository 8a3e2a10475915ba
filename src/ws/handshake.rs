//! Recognising a WebSocket handshake for `/inform` at the start of a connection, and
//! answering it: `101 Switching Protocols`, or a refusal with the API's JSON error body.

use actix_http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, TRANSFER_ENCODING, UPGRADE,
};
use actix_http::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::ResponseError;
use base64::prelude::{Engine, BASE64_STANDARD};

use crate::error::ApiError;

/// Most request headers considered; a handshake with more is left to the HTTP server.
const MAX_HEADERS: usize = 100;

/// A WebSocket handshake for `/inform`, parsed from the request head.
#[derive(Debug)]
pub struct Handshake {
    pub query: String,
    pub headers: HeaderMap,
    key: String,
    /// Length of the request head, bytes: what to consume before the WebSocket frames start.
    pub head_len: usize,
}

/// What the first bytes of a connection are.
#[derive(Debug)]
pub enum Opening {
    /// A WebSocket handshake for `/inform`: served by the session code.
    WebSocket(Handshake),
    /// A request for `/inform` that asks to become a WebSocket but breaks RFC 6455: answered
    /// with this error, and the connection closed.
    Refused(ApiError),
    /// Anything else (including malformed requests): served by the HTTP application.
    Http,
    /// The request head is not complete yet.
    Incomplete,
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).any(|value| {
        value
            .to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// Looks at the first bytes of a connection.
pub fn recognise(bytes: &[u8]) -> Opening {
    let mut raw_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut raw_headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Opening::Incomplete,
        Err(_) => return Opening::Http,
    };
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Opening::Http;
    };
    let mut headers = HeaderMap::new();
    for header in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Opening::Http;
        };
        headers.append(name, value);
    }
    classify(method, target, request.version, headers, head_len)
}

/// Looks at a request that the HTTP server read after an earlier one on the same connection
/// (a proxy that keeps its upstream connections alive sends handshakes that way) and asked to
/// upgrade: the same rules as for the first request.
pub fn recognise_later(request: &actix_http::Request) -> Opening {
    let version = match request.version() {
        actix_http::Version::HTTP_11 => Some(1),
        actix_http::Version::HTTP_10 => Some(0),
        _ => None,
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    classify(
        request.method().as_str(),
        target,
        version,
        request.headers().clone(),
        0,
    )
}

/// Whether a request head is a WebSocket handshake for `/inform`, one that breaks RFC 6455,
/// or anything else.
fn classify(
    method: &str,
    target: &str,
    version: Option<u8>,
    headers: HeaderMap,
    head_len: usize,
) -> Opening {
    if method != "GET" {
        return Opening::Http;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/inform" && path != "/inform/" {
        return Opening::Http;
    }
    if !has_token(&headers, &UPGRADE, "websocket") {
        // A plain GET: the HTTP route answers 426.
        return Opening::Http;
    }
    match check(version, &headers) {
        Ok(key) => Opening::WebSocket(Handshake {
            query: query.to_string(),
            headers,
            key,
            head_len,
        }),
        Err(error) => Opening::Refused(error),
    }
}

/// The rules of RFC 6455, section 4.2.1, for a request that asks for a WebSocket; the key when
/// they hold.
fn check(version: Option<u8>, headers: &HeaderMap) -> Result<String, ApiError> {
    if version != Some(1) {
        return Err(ApiError::InvalidHandshake("HTTP/1.1 is required"));
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(ApiError::InvalidHandshake(
            "Connection: Upgrade is required",
        ));
    }
    if headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING) {
        return Err(ApiError::InvalidHandshake("a handshake has no body"));
    }
    let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION);
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes() == b"13" => {}
        _ => {
            return Err(ApiError::UpgradeRequired(
                "Sec-WebSocket-Version must be 13".into(),
            ))
        }
    }
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY);
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.to_str().unwrap_or("").trim(),
        _ => {
            return Err(ApiError::InvalidHandshake(
                "exactly one Sec-WebSocket-Key is required",
            ))
        }
    };
    match BASE64_STANDARD.decode(key) {
        Ok(nonce) if nonce.len() == 16 => Ok(key.to_string()),
        _ => Err(ApiError::InvalidHandshake(
            "Sec-WebSocket-Key must be 16 bytes in base64",
        )),
    }
}

impl Handshake {
    /// The `101 Switching Protocols` answer.
    pub fn accept(&self) -> Vec<u8> {
        let accept = actix_http::ws::hash_key(self.key.as_bytes());
        let mut response = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                             connection: Upgrade\r\nsec-websocket-accept: "
            .to_vec();
        response.extend_from_slice(&accept);
        response.extend_from_slice(b"\r\n\r\n");
        response
    }
}

/// A complete HTTP response refusing the handshake, with the API's JSON error body; the
/// connection closes after it.
pub fn refusal(error: &ApiError) -> Vec<u8> {
    let response = error.error_response();
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let body = response.into_body().try_into_bytes().unwrap_or_default();
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE: &str = "GET /inform?token=abc&since=3 HTTP/1.1\r\nHost: x\r\n\
        Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_handshake_for_inform_is_recognised_and_accepted() -> Result<(), Box<dyn std::error::Error>>
    {
        let Opening::WebSocket(handshake) = recognise(HANDSHAKE.as_bytes()) else {
            panic!("not recognised");
        };
        assert_eq!(handshake.query, "token=abc&since=3");
        assert_eq!(handshake.head_len, HANDSHAKE.len());
        let accept = String::from_utf8(handshake.accept())?;
        // The example from RFC 6455, section 1.3.
        assert!(accept.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        Ok(())
    }

    #[test]
    fn everything_else_goes_to_the_http_application() {
        assert!(matches!(
            recognise(&HANDSHAKE.as_bytes()[..40]),
            Opening::Incomplete
        ));
        let other_path = HANDSHAKE.replace("/inform?", "/elsewhere?");
        assert!(matches!(recognise(other_path.as_bytes()), Opening::Http));
        let no_upgrade = HANDSHAKE.replace("Upgrade: websocket\r\n", "");
        assert!(matches!(recognise(no_upgrade.as_bytes()), Opening::Http));
        let post = HANDSHAKE.replace("GET", "POST");
        assert!(matches!(recognise(post.as_bytes()), Opening::Http));
        assert!(matches!(
            recognise(b"\x16\x03\x01garbage\r\n\r\n"),
            Opening::Http
        ));
    }

    fn refused(head: &str) -> ApiError {
        match recognise(head.as_bytes()) {
            Opening::Refused(error) => error,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn handshakes_that_break_rfc_6455_are_refused() {
        let cases = [
            ("Key: dGhlIHNhbXBsZSBub25jZQ==", "Key: c2hvcnQ="),
            ("Key: dGhlIHNhbXBsZSBub25jZQ==", "Key: not base64 at all!"),
            ("HTTP/1.1", "HTTP/1.0"),
            ("keep-alive, Upgrade", "keep-alive"),
            ("Version: 13\r\n", "Version: 13\r\nContent-Length: 5\r\n"),
            (
                "Version: 13\r\n",
                "Version: 13\r\nTransfer-Encoding: chunked\r\n",
            ),
            (
                "Version: 13\r\n",
                "Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            ),
        ];
        for (from, to) in cases {
            let error = refused(&HANDSHAKE.replace(from, to));
            assert_eq!(error.code(), "invalid_handshake", "{to}");
        }
        let old_version = refused(&HANDSHAKE.replace("Version: 13", "Version: 8"));
        assert_eq!(old_version.code(), "upgrade_required");
    }

    #[test]
    fn refusals_carry_the_json_error() -> Result<(), Box<dyn std::error::Error>> {
        let bytes = refusal(&ApiError::ForbiddenOrigin);
        let text = String::from_utf8(bytes)?;
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.ends_with(r#""code":"origin_not_allowed","message":"origin not allowed"}}"#));
        Ok(())
    }
}
