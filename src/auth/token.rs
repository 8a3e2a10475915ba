//! Where a user's token travels: `Authorization: Bearer`, then the `token` query parameter
//! (WebSocket handshakes only: browsers cannot set headers there), then the configured cookie.

use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::HttpRequest;

/// The token the request carries, if any. An `Authorization` header that is not a bearer
/// token is treated as no token from that source.
pub fn token_from_request(
    req: &HttpRequest,
    cookie_name: &str,
    query_allowed: bool,
) -> Option<String> {
    token_from_parts(
        req.headers(),
        req.query_string(),
        cookie_name,
        query_allowed,
    )
}

/// [`token_from_request`] for a request given as its headers and query string.
pub fn token_from_parts(
    headers: &header::HeaderMap,
    query: &str,
    cookie_name: &str,
    query_allowed: bool,
) -> Option<String> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
    {
        return Some(token.to_string());
    }
    if query_allowed {
        let token = url_query_value(query, "token");
        if token.is_some() {
            return token;
        }
    }
    headers
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| Cookie::parse(pair.trim()).ok())
        .find(|cookie| cookie.name() == cookie_name)
        .map(|cookie| cookie.value().to_string())
        .filter(|t| !t.is_empty())
}

/// The credentials of an `Authorization: Bearer` header value. The scheme is matched without
/// regard to case (RFC 7235: `bearer` is as good as `Bearer`); any other scheme (`Basic` from a
/// staging site's password, say) is not ours and yields `None`.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.trim_start().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

/// The first value of `name` in a URL query string, percent-decoded.
pub fn url_query_value(query: &str, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::cookie::Cookie;
    use actix_web::test::TestRequest;

    #[test]
    fn header_then_query_then_cookie() {
        let req = TestRequest::with_uri("/inform?token=q")
            .insert_header((header::AUTHORIZATION, "Bearer h"))
            .cookie(Cookie::new("informd_token", "c"))
            .to_http_request();
        assert_eq!(
            token_from_request(&req, "informd_token", true).as_deref(),
            Some("h")
        );
        let req = TestRequest::with_uri("/inform?since=3&token=q%2Bx")
            .cookie(Cookie::new("informd_token", "c"))
            .to_http_request();
        assert_eq!(
            token_from_request(&req, "informd_token", true).as_deref(),
            Some("q+x")
        );
        let req = TestRequest::with_uri("/inform")
            .cookie(Cookie::new("informd_token", "c"))
            .to_http_request();
        assert_eq!(
            token_from_request(&req, "informd_token", true).as_deref(),
            Some("c")
        );
        assert_eq!(
            token_from_request(&TestRequest::default().to_http_request(), "x", true),
            None
        );
    }

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
