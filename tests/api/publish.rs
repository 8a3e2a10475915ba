//! `POST /publish`: success, batches, idempotency, and every error path, each checked to have
//! written nothing.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp, PUBLISH_KEY};

async fn stored(app: &TestApp) -> (i64, i64) {
    (
        app.count_rows("SELECT count(*) FROM notifications").await,
        app.count_rows("SELECT count(*) FROM broadcasts").await,
    )
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error body is JSON");
    (status, body)
}

#[tokio::test]
async fn a_single_event_is_stored_and_answered_with_ids() {
    let app = spawn_app().await;
    let body = app.notify("42", "like").await;
    assert_eq!(
        body,
        json!({"ids": [1], "recipients": 1, "online_sessions": 0, "muted": 0})
    );
    let body = app
        .publish_ok(&json!({"topic": "global", "data": {"v": 2}}))
        .await;
    assert_eq!(body["ids"], json!([2]));
    assert_eq!(stored(&app).await, (1, 1));
}

#[tokio::test]
async fn a_batch_is_stored_whole_with_one_id_per_recipient() {
    let app = spawn_app().await;
    let body = app
        .publish_ok(&json!([
            {"to": ["1", "2", "3"], "kind": "mention"},
            {"topic": "article:9", "data": {"title": "new comment"}},
            {"to": "1", "kind": "follow", "actor": {"id": "5"}}
        ]))
        .await;
    assert_eq!(body["ids"], json!([1, 2, 3, 4, 5]));
    assert_eq!(body["recipients"], 4);
    assert_eq!(stored(&app).await, (4, 1));
    let seqs = app
        .count_rows("SELECT max(seq) FROM notifications WHERE user_id = '1'")
        .await;
    assert_eq!(seqs, 2);
}

#[tokio::test]
async fn a_bad_event_rejects_the_whole_batch_and_names_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!([{"to": "1", "kind": "like"}, {"to": "1", "kind": "Not A Kind"}]),
            "[1].kind",
        ),
        (
            json!([{"to": "1", "kind": "like"}, {"to": [], "kind": "like"}]),
            "[1].to",
        ),
        (json!({"to": "1"}), "kind"),
        (json!({"kind": "like"}), "to"),
        (
            json!({"to": "1", "kind": "like", "actor": "alice"}),
            "actor",
        ),
        (
            json!({"to": "1", "kind": "like", "topic": "global"}),
            "topic",
        ),
        (json!({"topic": "no spaces allowed"}), "topic"),
        (json!({"to": "x".repeat(129), "kind": "like"}), "to"),
        (json!([]), "body"),
        (json!("a string"), "body"),
    ];
    for (body, field) in cases {
        let (status, error) = error_of(app.publish(&body).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["error"]["code"], "invalid_field");
        assert_eq!(error["error"]["field"], field, "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains(field));
    }
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"topic": "global"})).collect();
    let (status, error) = error_of(app.publish(&Value::Array(too_many)).await).await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (400, Some("body"))
    );
    assert_eq!(stored(&app).await, (0, 0));
    assert_eq!(app.count_rows("SELECT count(*) FROM user_state").await, 0);
}

#[tokio::test]
async fn garbage_and_wrong_content_are_refused_with_their_status() {
    let app = spawn_app_with(|c| c.max_publish_bytes = 1024).await;
    let post = || app.http.post(app.url("/publish")).bearer_auth(PUBLISH_KEY);

    let (status, error) = error_of(
        post()
            .header("Content-Type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    let (status, error) = error_of(post().body("to=1").send().await.unwrap()).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let (status, error) = error_of(
        post()
            .header("Content-Type", "text/plain")
            .body(r#"{"to":"1","kind":"x"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415, "{error}");

    let big = json!({"to": "1", "kind": "like", "data": {"pad": "x".repeat(2000)}});
    let (status, error) = error_of(app.publish(&big).await).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // Chunked, without a Content-Length: the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(b"[".to_vec()), Ok(vec![b' '; 2000]), Ok(b"]".to_vec())];
    let stream = futures_util::stream::iter(chunks);
    let (status, _) = error_of(
        post()
            .header("Content-Type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(stored(&app).await, (0, 0));
    app.notify("1", "like").await;
}

#[tokio::test]
async fn publishing_needs_a_valid_key() {
    let app = spawn_app().await;
    let body = json!({"to": "1", "kind": "like"});
    for auth in [
        None,
        Some("Bearer wrong-key"),
        Some("Basic dGVzdA=="),
        Some("Bearer "),
    ] {
        let mut request = app.http.post(app.url("/publish")).json(&body);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert!(response.headers().contains_key("www-authenticate"));
        let (status, error) = error_of(response).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
    }
    // A user's JWT is not a publisher key.
    let token = app.token("1");
    let response = app
        .http
        .post(app.url("/publish"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(stored(&app).await, (0, 0));
}

#[tokio::test]
async fn publishers_are_rate_limited_with_retry_after() {
    let app = spawn_app_with(|c| c.publish_rate = 1).await;
    let body = json!({"topic": "global"});
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let response = app.publish(&body).await;
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let (_, error) = error_of(response).await;
            assert_eq!(error["error"]["code"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(statuses, vec![200, 200, 429, 429]);
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&seconds));
    assert_eq!(stored(&app).await, (0, 2));
}

async fn publish_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/publish"))
        .bearer_auth(PUBLISH_KEY)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_idempotency_key_publishes_once() {
    let app = spawn_app().await;
    let body = json!({"to": ["1", "2"], "kind": "like"});
    let first: Value = publish_with_key(&app, "k-1", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["ids"], json!([1, 2]));
    assert!(first.get("duplicate").is_none());
    let again: Value = publish_with_key(&app, "k-1", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["ids"], first["ids"]);
    assert_eq!(again["recipients"], 2);
    assert_eq!(again["duplicate"], true);
    assert_eq!(stored(&app).await, (2, 0));

    let other = json!({"to": "3", "kind": "like"});
    let (status, error) = error_of(publish_with_key(&app, "k-1", &other).await).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    assert_eq!(stored(&app).await, (2, 0));

    // The key survives a restart (it is in the database, not in memory).
    let app = crate::helpers::restart(app).await;
    let again: Value = publish_with_key(&app, "k-1", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        (&again["ids"], &again["recipients"]),
        (&json!([1, 2]), &json!(2))
    );
    assert_eq!(stored(&app).await, (2, 0));
}

#[tokio::test]
async fn concurrent_requests_with_one_key_publish_exactly_once() {
    let app = spawn_app().await;
    let recipients: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
    let body = json!({"to": recipients, "kind": "system"});
    let requests = (0..6).map(|_| publish_with_key(&app, "same-key", &body));
    let responses = futures_util::future::join_all(requests).await;
    let mut fresh = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => {
                let body: Value = response.json().await.unwrap();
                if body.get("duplicate").is_none() {
                    fresh += 1;
                }
                assert_eq!(body["recipients"], 500);
            }
            409 => {
                assert!(response.headers().contains_key("retry-after"));
                let (_, error) = error_of(response).await;
                assert_eq!(error["error"]["code"], "idempotency_key_in_flight");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(stored(&app).await, (500, 0));
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused() {
    let app = spawn_app().await;
    let long = "k".repeat(300);
    let (status, error) =
        error_of(publish_with_key(&app, &long, &json!({"topic": "global"})).await).await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (400, Some("Idempotency-Key"))
    );
    assert_eq!(stored(&app).await, (0, 0));
}

/// Makes the database itself refuse any notification of kind `poison`, as a full disk or a
/// broken constraint would refuse a write: informd's statements are left as they are.
async fn poison_kind(app: &TestApp) {
    if app.database.is_postgres() {
        app.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'poisoned'; END $$",
        )
        .await;
        app.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON notifications FOR EACH ROW \
             WHEN (NEW.kind = 'poison') EXECUTE FUNCTION refuse_poison()",
        )
        .await;
    } else {
        app.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON notifications \
             WHEN NEW.kind = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        )
        .await;
    }
}

#[tokio::test]
async fn a_write_the_database_refuses_is_undone_whole_and_the_next_one_commits() {
    let app = spawn_app().await;
    poison_kind(&app).await;
    app.notify("alice", "like").await;

    // Refused after the stream moved and the ids were taken, in the same transaction.
    let response = app.publish(&json!({"to": "alice", "kind": "poison"})).await;
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("unavailable"))
    );

    // Nothing of it stayed: the next publish gets the next seq, and the badge counts two.
    app.notify("alice", "reply").await;
    let seqs = "SELECT CAST(sum(seq) AS BIGINT) FROM notifications WHERE user_id = 'alice'";
    assert_eq!(app.count_rows(seqs).await, 1 + 2);
    let state = "SELECT last_seq * 10 + unread FROM user_state WHERE user_id = 'alice'";
    assert_eq!(app.count_rows(state).await, 22);
    let (_, welcome) = app.connect_user("alice", "").await;
    assert_eq!(welcome["unread"], 2, "{welcome}");
}
