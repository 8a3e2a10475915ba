//! Handshake authentication: token sources, bad tokens, origins, anonymous sessions and the
//! asymmetric algorithms.

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Client, JWT_SECRET};

/// A token signed with `claims` and the test secret (or another one), built by hand so that
/// tests can make tokens the minting code would never make.
fn hs256(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    informd::auth::now_secs()
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_never_upgraded() {
    let app = spawn_app().await;
    let expired = hs256(json!({"sub": "1", "exp": now() - 120}), JWT_SECRET);
    let forged = hs256(json!({"sub": "1", "exp": now() + 600}), "not-the-secret");
    let no_exp = hs256(json!({"sub": "1"}), JWT_SECRET);
    let no_sub = hs256(json!({"exp": now() + 600}), JWT_SECRET);
    let future_nbf = hs256(
        json!({"sub": "1", "exp": now() + 600, "nbf": now() + 600}),
        JWT_SECRET,
    );
    // {"alg":"none"} with valid claims and no signature.
    let none_alg = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64_url(&json!({"sub": "1", "exp": now() + 600}).to_string())
    );
    let cases = [
        (expired, "token_expired"),
        (forged, "invalid_token"),
        (no_exp, "invalid_token"),
        (no_sub, "invalid_token"),
        (future_nbf, "invalid_token"),
        (none_alg, "invalid_token"),
        ("garbage".to_string(), "invalid_token"),
    ];
    for (token, expected) in cases {
        let refused = Client::connect(&app.ws_url(&format!("?token={token}")), &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{expected} token was accepted"));
        assert_eq!(refused.status, 401);
        assert_eq!(
            refused.body["error"]["code"], expected,
            "{:?}",
            refused.body
        );
        assert!(!refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&token[..10.min(token.len())]));
    }
    // Still serving.
    app.connect_user("1", "").await;
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn the_token_may_come_from_the_header_the_query_or_the_cookie() {
    let app = spawn_app().await;
    let token = app.token("7");
    let bearer = format!("Bearer {token}");
    let cookie = format!("informd_token={token}");
    for (url, headers) in [
        (app.ws_url(""), vec![("Authorization", bearer.as_str())]),
        (app.ws_url(&format!("?token={token}")), vec![]),
        (app.ws_url(""), vec![("Cookie", cookie.as_str())]),
    ] {
        let mut client = Client::connect(&url, &headers).await.expect("accepted");
        assert_eq!(client.next_of_type("welcome").await["user"], "7");
    }
}

#[tokio::test]
async fn anonymous_sessions_can_be_switched_off() {
    let app = spawn_app_with(|c| c.allow_anonymous = false).await;
    let refused = Client::connect(&app.ws_url(""), &[])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"]["code"], "unauthorized");
    app.connect_user("1", "").await;
}

#[tokio::test]
async fn origins_are_checked() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["https://blog.example".into()]).await;
    let url = app.ws_url(&format!("?token={}", app.token("1")));
    let refused = Client::connect(&url, &[("Origin", "https://evil.example")])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["error"]["code"], "origin_not_allowed");
    Client::connect(&url, &[("Origin", "https://blog.example")])
        .await
        .expect("allowed origin");

    // With no list, only the same origin is allowed.
    let app = spawn_app().await;
    let url = app.ws_url("");
    let same = format!("http://127.0.0.1:{}", app.port);
    Client::connect(&url, &[("Origin", &same)])
        .await
        .expect("same origin");
    let refused = Client::connect(&url, &[("Origin", "http://127.0.0.1:1")])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn audience_and_issuer_are_required_when_configured() {
    let app = spawn_app_with(|c| {
        c.jwt_audience = Some("blog".into());
        c.jwt_issuer = Some("https://blog.example".into());
    })
    .await;
    let good = hs256(
        json!({"sub": "1", "exp": now() + 600, "aud": "blog", "iss": "https://blog.example"}),
        JWT_SECRET,
    );
    let wrong_aud = hs256(
        json!({"sub": "1", "exp": now() + 600, "aud": "shop", "iss": "https://blog.example"}),
        JWT_SECRET,
    );
    let no_iss = hs256(
        json!({"sub": "1", "exp": now() + 600, "aud": "blog"}),
        JWT_SECRET,
    );
    // Several audiences, one of them ours: accepted.
    let many = hs256(
        json!({"sub": "1", "exp": now() + 600, "aud": ["shop", "blog"], "iss": "https://blog.example"}),
        JWT_SECRET,
    );
    for token in [good, many] {
        Client::connect(&app.ws_url(&format!("?token={token}")), &[])
            .await
            .expect("good token");
    }
    for token in [wrong_aud, no_iss] {
        let refused = Client::connect(&app.ws_url(&format!("?token={token}")), &[])
            .await
            .err()
            .expect("refused");
        assert_eq!(refused.status, 401);
    }
}

/// Test key pairs live in `tests/keys/`.
fn key(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

#[tokio::test]
async fn asymmetric_tokens_verify_with_the_configured_public_key() {
    for (algorithm, stem) in [("RS256", "rs256"), ("ES256", "es256"), ("EdDSA", "eddsa")] {
        let app = spawn_app_with(|c| {
            c.jwt_algorithm = algorithm.into();
            c.jwt_public_key_file = Some(key(&format!("{stem}-public.pem")));
        })
        .await;
        let private = std::fs::read(key(&format!("{stem}-private.pem"))).unwrap();
        let token = informd::auth::mint(&app.config, "9", 600, vec![], Some(&private)).unwrap();
        let mut client = Client::connect(&app.ws_url(&format!("?token={token}")), &[])
            .await
            .unwrap_or_else(|r| panic!("{algorithm} token refused: {r:?}"));
        assert_eq!(client.next_of_type("welcome").await["user"], "9");
        // An HS256 token, even one signed with the public key as the secret, is refused.
        let public = std::fs::read_to_string(key(&format!("{stem}-public.pem"))).unwrap();
        for secret in [JWT_SECRET, public.as_str()] {
            let hs = hs256(json!({"sub": "9", "exp": now() + 600}), secret);
            let refused = Client::connect(&app.ws_url(&format!("?token={hs}")), &[])
                .await
                .err()
                .expect("refused");
            assert_eq!(refused.status, 401, "{algorithm}");
        }
    }
}
