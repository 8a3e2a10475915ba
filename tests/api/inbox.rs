//! The inbox REST API: pages, the badge, marking read, and its errors.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn pages_come_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    for kind in ["a", "b", "c", "d", "e"] {
        app.notify("1", kind).await;
    }
    app.notify("2", "other").await;
    let page: Value = app
        .get_as("1", "/api/notifications?limit=2")
        .await
        .json()
        .await
        .unwrap();
    let seqs: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![5, 4]);
    assert_eq!(page["items"][0]["kind"], "e");
    assert_eq!(page["next_before"], 4);
    assert_eq!(page["unread"], 5);
    let page: Value = app
        .get_as("1", "/api/notifications?limit=2&before=4")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["seq"], 3);
    assert_eq!(page["next_before"], 2);
    let page: Value = app
        .get_as("1", "/api/notifications?limit=2&before=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_before"], Value::Null);
}

#[tokio::test]
async fn stored_objects_come_back_exactly_as_published() {
    let app = spawn_app().await;
    let actor = r#"{"id":"7","name":"Zoë \"z\" <b>","score":1.50,"big":123456789012345678901}"#;
    let body = format!(
        r#"{{"to":"1","kind":"like","actor":{actor},"data":{{"nested":{{"a":[1,2,{{}}]}}}}}}"#
    );
    let response = app
        .http
        .post(app.url("/publish"))
        .bearer_auth(crate::helpers::PUBLISH_KEY)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = app
        .get_as("1", "/api/notifications")
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains(actor), "{text}");
    assert!(
        text.contains(r#""data":{"nested":{"a":[1,2,{}]}}"#),
        "{text}"
    );
}

#[tokio::test]
async fn reading_by_ids_up_to_and_all_updates_the_badge_and_live_sessions() {
    let app = spawn_app().await;
    let (mut tab, _) = app.connect_user("1", "").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.notify("1", "like").await["ids"][0].clone());
    }
    tab.notification_seqs(5).await;

    let response = app
        .post_as(
            "1",
            "/api/notifications/read",
            &json!({"ids": [ids[0], ids[1]]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"unread": 3})
    );
    assert_eq!(tab.next_of_type("unread").await["unread"], 3);

    let unread_page: Value = app
        .get_as("1", "/api/notifications?unread=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unread_page["items"].as_array().unwrap().len(), 3);
    assert!(unread_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["read"] == false));

    let body: Value = app
        .post_as("1", "/api/notifications/read", &json!({"up_to": 4}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["unread"], 1);
    assert_eq!(tab.next_of_type("unread").await["unread"], 1);

    // Another user's ids do not touch this user.
    let body: Value = app
        .post_as("2", "/api/notifications/read", &json!({"ids": [ids[4]]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["unread"], 0);

    let body: Value = app
        .post_as("1", "/api/notifications/read", &json!({"all": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["unread"], 0);
    assert_eq!(tab.next_of_type("unread").await["unread"], 0);
    let badge: Value = app
        .get_as("1", "/api/notifications/unread")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(badge, json!({"unread": 0, "seq": 5}));
    assert_eq!(
        app.count_rows("SELECT count(*) FROM notifications WHERE NOT read")
            .await,
        0
    );
}

#[tokio::test]
async fn inbox_errors_are_clear() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["https://blog.example".into()]).await;
    let no_token = app
        .http
        .get(app.url("/api/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let body: Value = no_token.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    // The query-string token is for WebSocket handshakes only.
    let query = app
        .http
        .get(app.url(&format!("/api/notifications?token={}", app.token("1"))))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 401);

    let bad = app
        .http
        .get(app.url("/api/notifications/unread"))
        .bearer_auth("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("before=x", "before"),
        ("unread=maybe", "unread"),
    ] {
        let response = app
            .get_as("1", &format!("/api/notifications?{query}"))
            .await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], name);
    }
    for body in [
        json!({}),
        json!({"all": false}),
        json!({"ids": [1], "all": true}),
        json!({"what": 1}),
    ] {
        let response = app.post_as("1", "/api/notifications/read", &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let garbage = app
        .http
        .post(app.url("/api/notifications/read"))
        .bearer_auth(app.token("1"))
        .header("Content-Type", "application/json")
        .body("{{{")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);

    let evil = app
        .http
        .get(app.url("/api/notifications"))
        .bearer_auth(app.token("1"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let body: Value = evil.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");

    // A preflight from a foreign origin gets the same JSON refusal.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/notifications"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403);
    let body: Value = preflight.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");

    let wrong_method = app.http.delete(app.url("/publish")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let not_a_socket = app.http.get(app.url("/inform")).send().await.unwrap();
    assert_eq!(not_a_socket.status(), 426);
    let body: Value = not_a_socket.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");

    let unknown = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn cors_answers_allowed_origins() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["https://blog.example".into()]).await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/notifications/read"))
        .header("Origin", "https://blog.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://blog.example"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
    let get = app
        .http
        .get(app.url("/api/notifications/unread"))
        .bearer_auth(app.token("1"))
        .header("Origin", "https://blog.example")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.headers()["access-control-allow-origin"],
        "https://blog.example"
    );
}
