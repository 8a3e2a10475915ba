//! Browser origins. A browser sends `Origin` on every WebSocket handshake and cross-origin
//! request; checking it stops another site from using a visitor's cookie to read their inbox.
//!
//! `allowed_origins` empty means same-origin only (the `Origin`'s host equals `Host`), `*` means
//! any origin. Requests without `Origin` (backends, CLI tools) are not browsers and pass.

use actix_web::http::header;

/// Whether the request's `Origin` (if any) may use this server, given its headers. A browser
/// sends one `Origin`; a request with two is forged, and refused whatever they say (checking
/// only the first would let the second through to whatever reads it next).
pub fn origin_allowed(allowed: &[String], headers: &header::HeaderMap) -> bool {
    let mut origins = headers.get_all(header::ORIGIN);
    match (origins.next(), origins.next()) {
        (None, _) => true,
        (Some(origin), None) => {
            origin_matches(allowed, origin.to_str().unwrap_or(""), host_of(headers))
        }
        (Some(_), Some(_)) => false,
    }
}

/// A log line for a refused origin, with what an operator needs to fix it: the `Origin`s
/// received, the `Host`, the rule in force and the client.
pub fn refusal_details(headers: &header::HeaderMap, rule: &str, client: &str) -> String {
    let origins: Vec<&str> = headers
        .get_all(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("(not text)"))
        .collect();
    format!(
        "origin refused: Origin {origins:?}, Host {:?}, allowed origins: {rule} (client {client}); \
         to allow it, add it to allowed_origins (INFORMD_ALLOWED_ORIGINS)",
        host_of(headers).unwrap_or("")
    )
}

/// The request's `Host` header.
pub fn host_of(headers: &header::HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// Whether a browser `origin` is allowed, given the request's `host`.
pub fn origin_matches(allowed: &[String], origin: &str, host: Option<&str>) -> bool {
    if allowed.is_empty() {
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        return matches!((origin_host, host), (Some(o), Some(h)) if !h.is_empty() && o.eq_ignore_ascii_case(h));
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn same_origin_by_default() {
        let req = TestRequest::default()
            .insert_header((header::HOST, "example.com"))
            .insert_header((header::ORIGIN, "https://example.com"))
            .to_http_request();
        assert!(origin_allowed(&[], req.headers()));
        let req = TestRequest::default()
            .insert_header((header::HOST, "example.com"))
            .insert_header((header::ORIGIN, "https://evil.test"))
            .to_http_request();
        assert!(!origin_allowed(&[], req.headers()));
    }

    #[test]
    fn two_origins_are_refused_even_if_both_are_allowed() {
        let req = TestRequest::default()
            .insert_header((header::HOST, "example.com"))
            .append_header((header::ORIGIN, "https://example.com"))
            .append_header((header::ORIGIN, "https://example.com"))
            .to_http_request();
        assert!(!origin_allowed(&[], req.headers()));
        assert!(!origin_allowed(&["*".into()], req.headers()));
    }

    #[test]
    fn listed_origins_and_wildcard() {
        let req = TestRequest::default()
            .insert_header((header::ORIGIN, "https://blog.example"))
            .to_http_request();
        assert!(origin_allowed(
            &["https://blog.example/".into()],
            req.headers()
        ));
        assert!(!origin_allowed(
            &["https://other.example".into()],
            req.headers()
        ));
        assert!(origin_allowed(&["*".into()], req.headers()));
        assert!(origin_allowed(
            &[],
            TestRequest::default().to_http_request().headers()
        ));
    }
}
