//! The `/inform` socket: frames in both directions, tabs, topics, limits and bad input.

use serde_json::json;

use crate::helpers::{code, raw_exchange, spawn_app, spawn_app_with, Client, Event};

#[tokio::test]
async fn welcome_comes_first_for_users_and_anonymous_visitors() {
    let app = spawn_app().await;
    app.notify("42", "like").await;
    let (_client, welcome) = app.connect_user("42", "").await;
    assert_eq!(
        welcome,
        json!({"type": "welcome", "user": "42", "unread": 1, "seq": 1, "heartbeat": 25})
    );
    let mut anonymous = Client::connect(&app.ws_url(""), &[])
        .await
        .expect("anonymous");
    let welcome = anonymous.next_of_type("welcome").await;
    assert_eq!(welcome["user"], json!(null));
    assert_eq!(welcome["unread"], 0);
}

#[tokio::test]
async fn a_notification_arrives_with_every_field_and_the_new_count() {
    let app = spawn_app().await;
    let (mut client, _) = app.connect_user("42", "").await;
    let body = json!({
        "to": ["42", "43"], "kind": "reply",
        "actor": {"id": "7", "name": "alice", "avatar": "/a.png"},
        "subject": {"type": "article", "id": "99", "title": "Hello", "url": "/articles/99"},
        "data": {"excerpt": "nice"}
    });
    let published = app.publish_ok(&body).await;
    assert_eq!(published["recipients"], 2);
    assert_eq!(published["online_sessions"], 1);
    let frame = client.next_of_type("notification").await;
    assert_eq!(frame["unread"], 1);
    let n = &frame["notification"];
    assert_eq!(n["id"], published["ids"][0]);
    assert_eq!(n["seq"], 1);
    assert_eq!(n["kind"], "reply");
    assert_eq!(n["actor"], body["actor"]);
    assert_eq!(n["subject"], body["subject"]);
    assert_eq!(n["data"], body["data"]);
    assert_eq!(n["read"], false);
    let created = n["created_at"].as_str().expect("created_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    app.notify("42", "like").await;
    assert_eq!(client.next_of_type("notification").await["unread"], 2);
}

#[tokio::test]
async fn three_tabs_receive_everything_and_reading_in_one_updates_the_others() {
    let app = spawn_app().await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(app.connect_user("42", "").await.0);
    }
    let published = app
        .publish_ok(&json!([{"to": "42", "kind": "like"}, {"to": "42", "kind": "follow"}]))
        .await;
    assert_eq!(published["online_sessions"], 6);
    for tab in tabs.iter_mut() {
        let first = tab.next_of_type("notification").await;
        let second = tab.next_of_type("notification").await;
        assert_eq!(
            (first["unread"].as_i64(), second["unread"].as_i64()),
            (Some(1), Some(2))
        );
        assert_eq!(second["notification"]["kind"], "follow");
    }
    let first_id = published["ids"][0].clone();
    tabs[0]
        .send_json(&json!({"type": "read", "ids": [first_id]}))
        .await;
    for tab in tabs.iter_mut() {
        assert_eq!(
            tab.next_of_type("unread").await,
            json!({"type": "unread", "unread": 1})
        );
    }
    tabs[2]
        .send_json(&json!({"type": "read", "all": true}))
        .await;
    for tab in tabs.iter_mut() {
        assert_eq!(tab.next_of_type("unread").await["unread"], 0);
    }
    let badge: serde_json::Value = app
        .get_as("42", "/api/notifications/unread")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(badge, json!({"unread": 0, "seq": 2}));
}

#[tokio::test]
async fn global_broadcasts_reach_users_and_anonymous_sessions() {
    let app = spawn_app().await;
    let (mut user, _) = app.connect_user("1", "").await;
    let mut anonymous = Client::connect(&app.ws_url(""), &[]).await.unwrap();
    anonymous.next_of_type("welcome").await;
    let published = app
        .publish_ok(&json!({"topic": "global", "data": {"message": "site updated"}}))
        .await;
    assert_eq!(published["online_sessions"], 2);
    for client in [&mut user, &mut anonymous] {
        let frame = client.next_of_type("broadcast").await;
        assert_eq!(frame["topic"], "global");
        assert_eq!(frame["id"], published["ids"][0]);
        assert_eq!(frame["seq"], 1);
        assert_eq!(frame["data"], json!({"message": "site updated"}));
        assert!(frame["created_at"].is_string());
    }
}

#[tokio::test]
async fn topics_reach_only_their_subscribers() {
    let app = spawn_app().await;
    let (mut reader, _) = app.connect_user("1", "").await;
    let (mut other, _) = app.connect_user("2", "").await;
    reader
        .send_json(&json!({"type": "subscribe", "topic": "article:42"}))
        .await;
    assert_eq!(
        reader.next_of_type("subscribed").await,
        json!({"type": "subscribed", "topic": "article:42", "seq": 0})
    );
    app.publish_ok(&json!({"topic": "article:42", "data": {"comment": 1}}))
        .await;
    app.publish_ok(&json!({"topic": "global", "data": {"n": 1}}))
        .await;
    let frame = reader.next_of_type("broadcast").await;
    assert_eq!(
        (frame["topic"].as_str(), frame["seq"].as_i64()),
        (Some("article:42"), Some(1))
    );
    assert_eq!(reader.next_of_type("broadcast").await["topic"], "global");
    // The other user got the global one only.
    assert_eq!(other.next_of_type("broadcast").await["topic"], "global");

    reader
        .send_json(&json!({"type": "unsubscribe", "topic": "article:42"}))
        .await;
    assert_eq!(
        reader.next_of_type("unsubscribed").await["topic"],
        "article:42"
    );
    app.publish_ok(&json!({"topic": "article:42", "data": {"comment": 2}}))
        .await;
    app.publish_ok(&json!({"topic": "global", "data": {"n": 2}}))
        .await;
    let next = reader.next_of_type("broadcast").await;
    assert_eq!(
        next["topic"], "global",
        "unsubscribed topic still delivered: {next}"
    );
}

#[tokio::test]
async fn private_topics_need_a_claim() {
    let app = spawn_app().await;
    let (mut client, _) = app.connect_user("1", "").await;
    client
        .send_json(&json!({"type": "subscribe", "topic": "team:7"}))
        .await;
    let error = client.next_of_type("error").await;
    assert_eq!(error["code"], "forbidden_topic");

    let token = app.token_with("1", 3600, &["team:7*"]);
    let mut granted = Client::connect(&app.ws_url(&format!("?token={token}")), &[])
        .await
        .unwrap();
    granted.next_of_type("welcome").await;
    granted
        .send_json(&json!({"type": "subscribe", "topic": "team:7:general"}))
        .await;
    granted.next_of_type("subscribed").await;
    app.publish_ok(&json!({"topic": "team:7:general", "data": {}}))
        .await;
    assert_eq!(
        granted.next_of_type("broadcast").await["topic"],
        "team:7:general"
    );
}

#[tokio::test]
async fn ping_gets_pong() {
    let app = spawn_app().await;
    let (mut client, _) = app.connect_user("1", "").await;
    client.send_json(&json!({"type": "ping"})).await;
    assert_eq!(client.next().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_session_stays_open() {
    let app = spawn_app().await;
    let (mut client, _) = app.connect_user("1", "").await;
    let cases = [
        ("not json", "bad_frame"),
        (r#"{"no":"type"}"#, "bad_frame"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"subscribe"}"#, "bad_frame"),
        (r#"{"type":"subscribe","topic":"bad topic!"}"#, "bad_topic"),
        (r#"{"type":"read"}"#, "bad_frame"),
        (r#"{"type":"read","ids":[1],"all":true}"#, "bad_frame"),
        (r#"{"type":"unsubscribe","topic":"global"}"#, "bad_topic"),
    ];
    for (text, expected) in cases {
        client.send_text(text).await;
        let frame = client.next_of_type("error").await;
        assert_eq!(frame["code"], expected, "for {text}: {frame}");
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()));
        // A good frame resets the count of bad ones.
        client.send_json(&json!({"type": "ping"})).await;
        client.next_of_type("pong").await;
    }
    client.send_binary(&[1, 2, 3]).await;
    assert_eq!(
        client.next_of_type("error").await["code"],
        "unsupported_frame"
    );
    client.send_json(&json!({"type": "ping"})).await;
    client.next_of_type("pong").await;
}

#[tokio::test]
async fn a_client_that_keeps_misbehaving_is_closed_with_1008() {
    let app = spawn_app().await;
    let (mut client, _) = app.connect_user("1", "").await;
    for _ in 0..11 {
        client.send_text("garbage").await;
    }
    let mut errors = 0;
    let close = loop {
        match client.next_event().await {
            Event::Frame(frame) => {
                assert_eq!(frame["code"], "bad_frame");
                errors += 1;
            }
            Event::Closed(code) => break code,
        }
    };
    assert_eq!(errors, 10);
    assert_eq!(close, code(1008));
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let app = spawn_app_with(|c| c.max_frame_bytes = 1024).await;
    let (mut client, _) = app.connect_user("1", "").await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000));
    client.send_text(&big).await;
    assert_eq!(client.closed().await, code(1009));
    // The server keeps serving.
    let (mut again, _) = app.connect_user("1", "").await;
    again.send_json(&json!({"type": "ping"})).await;
    again.next_of_type("pong").await;
}

#[tokio::test]
async fn inbound_frames_are_rate_limited() {
    let app = spawn_app_with(|c| c.inbound_rate = 2).await;
    let (mut client, _) = app.connect_user("1", "").await;
    for _ in 0..6 {
        client.send_json(&json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..6 {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited");
                limited += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pongs, 4, "burst is twice the rate");
    assert_eq!(limited, 2);
}

#[tokio::test]
async fn refresh_extends_the_session_and_refuses_another_user() {
    let app = spawn_app_with(|c| c.jwt_leeway_secs = 0).await;
    let short = app.token_with("1", 2, &[]);
    let mut client = Client::connect(&app.ws_url(&format!("?token={short}")), &[])
        .await
        .unwrap();
    client.next_of_type("welcome").await;
    client
        .send_json(&json!({"type": "refresh", "token": app.token("1")}))
        .await;
    client
        .send_json(&json!({"type": "refresh", "token": "garbage"}))
        .await;
    assert_eq!(client.next_of_type("error").await["code"], "invalid_token");
    // Past the first token's expiry the session is still open.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    client.send_json(&json!({"type": "ping"})).await;
    client.next_of_type("pong").await;
    client
        .send_json(&json!({"type": "refresh", "token": app.token("2")}))
        .await;
    assert_eq!(client.closed().await, code(1008));
}

#[tokio::test]
async fn an_expired_session_is_closed_with_4001() {
    let app = spawn_app_with(|c| c.jwt_leeway_secs = 0).await;
    let token = app.token_with("1", 1, &[]);
    let mut client = Client::connect(&app.ws_url(&format!("?token={token}")), &[])
        .await
        .unwrap();
    client.next_of_type("welcome").await;
    assert_eq!(client.closed().await, code(4001));
}

#[tokio::test]
async fn sessions_per_user_are_limited() {
    let app = spawn_app_with(|c| c.max_sessions_per_user = 2).await;
    let (_a, _) = app.connect_user("1", "").await;
    let (b, _) = app.connect_user("1", "").await;
    let url = app.ws_url(&format!("?token={}", app.token("1")));
    let refused = Client::connect(&url, &[]).await.err().expect("refused");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["error"]["code"], "too_many_sessions");
    // Closing one makes room again.
    b.close().await;
    let mut attempts = 0;
    loop {
        match Client::connect(&url, &[]).await {
            Ok(_) => break,
            Err(r) if r.status == 429 && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(r) => panic!("still refused: {r:?}"),
        }
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_two_heartbeats() {
    let app = spawn_app_with(|c| c.heartbeat_secs = 1).await;
    let (mut silent, welcome) = app.connect_user("1", "").await;
    assert_eq!(welcome["heartbeat"], 1);
    let (mut lively, _) = app.connect_user("2", "").await;
    // `silent` does not read (so never answers pings) for a while; `lively` keeps reading,
    // which answers the server's pings.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        lively.send_json(&json!({"type": "ping"})).await;
        lively.next_of_type("pong").await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(silent.closed().await, code(4002));
    lively.send_json(&json!({"type": "ping"})).await;
    lively.next_of_type("pong").await;
}

#[tokio::test]
async fn a_handshake_that_arrives_in_pieces_is_still_recognised() {
    let app = spawn_app().await;
    let head = format!(
        "GET /inform?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        app.token("1")
    );
    let (first, rest) = head.as_bytes().split_at(40);
    let answer = raw_exchange(app.port, &[first, rest]).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

#[tokio::test]
async fn garbage_on_the_port_gets_an_http_error_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let answer = raw_exchange(app.port, &[b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n"]).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let long = format!(
        "GET /inform?pad={} HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "x".repeat(20_000)
    );
    let answer = raw_exchange(app.port, &[long.as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let (mut client, _) = app.connect_user("1", "").await;
    client.send_json(&json!({"type": "ping"})).await;
    client.next_of_type("pong").await;
}
