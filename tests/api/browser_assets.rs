//! `/static/*` (ETag, 304, CORS, content types) and the demo's on/off rules, over plain HTTP.
//! What the files do in a browser is tested in tests/browser.

use reqwest::header;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Client};

#[actix_web::test]
async fn the_client_is_served_with_an_etag_cache_headers_and_cors() {
    let app = spawn_app().await;
    let first = app
        .http
        .get(app.url("/static/informd.js"))
        .header(header::ORIGIN, "https://another-site.example")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let headers = first.headers().clone();
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(headers["cross-origin-resource-policy"], "cross-origin");
    assert!(headers[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let etag = headers[header::ETAG].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let body = first.text().await.unwrap();
    assert!(body.contains("global.informd = informd"));
    assert!(!body.contains("export "), "a classic script cannot export");

    let again = app
        .http
        .get(app.url("/static/informd.js"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[header::ETAG], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());

    let stale = app
        .http
        .get(app.url("/static/informd.js"))
        .header(header::IF_NONE_MATCH, "\"something-older\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);

    let module = app
        .http
        .get(app.url("/static/informd.mjs"))
        .send()
        .await
        .unwrap();
    assert_eq!(module.status(), 200);
    assert_ne!(module.headers()[header::ETAG], etag.as_str());
    let module = module.text().await.unwrap();
    assert!(module.starts_with(&body));
    assert!(module.contains("export const connect"));

    let css = app
        .http
        .get(app.url("/static/demo.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        css.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );

    for missing in ["/static/nope.js", "/static/../Cargo.toml", "/static/"] {
        let answer = app.http.get(app.url(missing)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{missing}");
    }
}

/// Status of `GET /`, `GET /demo/token` and `POST /demo/send` on `app`.
async fn demo_statuses(app: &crate::helpers::TestApp) -> [u16; 3] {
    let page = app.http.get(app.url("/")).send().await.unwrap();
    let token = app
        .http
        .get(app.url("/demo/token?user=reader"))
        .send()
        .await
        .unwrap();
    let send = app
        .http
        .post(app.url("/demo/send"))
        .json(&json!({"as": "alice", "kind": "like", "to": "reader"}))
        .send()
        .await
        .unwrap();
    [
        page.status().as_u16(),
        token.status().as_u16(),
        send.status().as_u16(),
    ]
}

#[actix_web::test]
async fn a_configured_jwt_secret_turns_the_demo_off_unless_asked_for() {
    let production = spawn_app().await;
    assert_eq!(demo_statuses(&production).await, [404, 404, 404]);
    let asked = spawn_app_with(|c| c.demo = Some(true)).await;
    assert_eq!(demo_statuses(&asked).await, [200, 200, 200]);
    let development = spawn_app_with(|c| c.jwt_secret = None).await;
    assert_eq!(demo_statuses(&development).await, [200, 200, 200]);
    let refused = spawn_app_with(|c| {
        c.jwt_secret = None;
        c.demo = Some(false);
    })
    .await;
    assert_eq!(demo_statuses(&refused).await, [404, 404, 404]);
}

#[actix_web::test]
async fn the_demo_page_renders_the_badge_and_seq_and_its_tokens_open_sessions() {
    let app = spawn_app_with(|c| c.demo = Some(true)).await;
    app.notify("reader", "like").await;
    app.notify("reader", "like").await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(
        page.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"data-count="2""#), "badge");
    assert!(html.contains(r#""seq":2"#), "boot seq");
    assert!(html.contains("/static/informd.js"));

    let answer: Value = app
        .http
        .get(app.url("/demo/token?user=zoe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["token"].as_str().unwrap();
    let mut client = Client::connect(&app.ws_url(&format!("?token={token}")), &[])
        .await
        .unwrap();
    assert_eq!(client.next_of_type("welcome").await["user"], "zoe");

    let sent: Value = app
        .http
        .post(app.url("/demo/send"))
        .json(&json!({"as": "bob", "kind": "reply", "to": "zoe"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent["online_sessions"], 1);
    let frame = client.next_of_type("notification").await;
    assert_eq!(frame["notification"]["actor"]["name"], "Bob Okafor");
}

#[actix_web::test]
async fn demo_send_refuses_other_origins_and_unknown_kinds() {
    let app = spawn_app_with(|c| c.demo = Some(true)).await;
    let foreign = app
        .http
        .post(app.url("/demo/send"))
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({"as": "alice", "kind": "like"}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let unknown = app
        .http
        .post(app.url("/demo/send"))
        .json(&json!({"as": "alice", "kind": "poke"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["field"], "kind");
}
