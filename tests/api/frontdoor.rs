//! The front door: what it refuses before a session or a handler runs. Handshakes that RFC 6455
//! refuses, forged origins, heads that stall or overflow, bodies that are too large or too slow,
//! and the bound on connections still sending their first head.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::daemon::{configured, token, Daemon};
use crate::helpers::{raw_exchange, spawn_app, Client, PUBLISH_KEY};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn handshake(token: &str, extra_headers: &str) -> String {
    format!(
        "GET /inform?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
         {extra_headers}\r\n"
    )
}

/// The JSON error body at the end of an HTTP answer.
fn error_code(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    value["error"]["code"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn handshakes_that_rfc_6455_refuses_get_a_json_400() {
    let app = spawn_app().await;
    let good = handshake(&app.token("1"), "");
    let broken = [
        ("a key that is not 16 bytes", good.replace(KEY, "c2hvcnQ=")),
        (
            "a key that is not base64",
            good.replace(KEY, "not*base64*at*all*!!"),
        ),
        ("HTTP/1.0", good.replace("HTTP/1.1", "HTTP/1.0")),
        (
            "a body",
            good.replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\nhello"),
        ),
        (
            "a chunked body",
            good.replace(
                "\r\n\r\n",
                "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
        ),
        (
            "two keys",
            good.replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Key: {KEY}\r\n\r\n")),
        ),
    ];
    for (what, head) in broken {
        let answer = raw_exchange(app.port, &[head.as_bytes()]).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert_eq!(error_code(&answer), "invalid_handshake", "{what}: {answer}");
    }
    let old = raw_exchange(
        app.port,
        &[good.replace("Version: 13", "Version: 8").as_bytes()],
    )
    .await;
    assert!(old.starts_with("HTTP/1.1 426"), "{old}");
    assert!(
        old.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{old}"
    );
    // And the good one still opens a session.
    let answer = raw_exchange(app.port, &[good.as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
}

#[tokio::test]
async fn two_origin_headers_are_refused_even_when_both_are_allowed() {
    let app = spawn_app().await;
    let port = app.port;
    let origins = format!("Origin: http://127.0.0.1\r\nOrigin: http://127.0.0.1:{port}\r\n");
    let answer = raw_exchange(port, &[handshake(&app.token("1"), &origins).as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(error_code(&answer), "origin_not_allowed");
    let one = format!("Origin: http://127.0.0.1:{port}\r\n");
    let request = format!(
        "GET /api/notifications/unread HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {}\r\n{one}{one}\r\n",
        app.token("1")
    );
    let answer = raw_exchange(port, &[request.as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[tokio::test]
async fn the_bearer_scheme_is_read_without_regard_to_case() {
    let app = spawn_app().await;
    let authorization = format!("bearer {}", app.token("42"));
    let mut client = Client::connect(&app.ws_url(""), &[("Authorization", &authorization)])
        .await
        .expect("handshake");
    let welcome = client.next_of_type("welcome").await;
    assert_eq!(welcome["user"], "42", "not an anonymous session: {welcome}");
    let unread = app
        .http
        .get(app.url("/api/notifications/unread"))
        .header("Authorization", &authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(unread.status(), 200);
    let published = app
        .http
        .post(app.url("/publish"))
        .header("Authorization", format!("BEARER {PUBLISH_KEY}"))
        .json(&json!({"to": "42", "kind": "like"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    client.next_of_type("notification").await;
}

/// A masked client text frame, as a browser sends it.
fn client_text_frame(text: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn frames_sent_along_with_the_handshake_are_not_lost() {
    let app = spawn_app().await;
    let mut bytes = handshake(&app.token("1"), "").into_bytes();
    bytes.extend(client_text_frame(r#"{"type":"ping"}"#));
    let mut io = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    io.write_all(&bytes).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(r#""type":"pong""#) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), io.read(&mut chunk))
            .await
            .expect("a pong for the ping sent with the handshake")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 101"));
}

#[tokio::test]
async fn heads_that_stall_get_408_and_heads_that_overflow_get_431() {
    let app = spawn_app().await;
    let started = Instant::now();
    let answer = raw_exchange(app.port, &[b"GET /inform?token=x HTTP/1.1\r\nHost: 1"]).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(error_code(&answer), "request_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
        "x".repeat(40_000)
    );
    let answer = raw_exchange(app.port, &[huge.as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(error_code(&answer), "headers_too_large");
}

#[tokio::test]
async fn oversized_inbox_bodies_get_the_json_413() {
    let app = spawn_app().await;
    let ids: Vec<String> = (0..20_000).map(|i| format!("n{i:08}")).collect();
    let answer = app
        .post_as("1", "/api/notifications/read", &json!({ "ids": ids }))
        .await;
    assert_eq!(answer.status(), 413);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn authenticated_bodies_that_stall_get_408() {
    let app = spawn_app().await;
    let mut io = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /api/notifications/read HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"all\":",
        app.token("1")
    );
    io.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), io.read(&mut answer))
        .await
        .expect("an answer once the body deadline passes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(error_code(&answer), "request_timeout");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_beyond_the_head_slots_are_turned_away_at_once() {
    // This test holds 600 connections: room for them on this side.
    rlimit::increase_nofile_limit(4096).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut command = configured(dir.path());
    command.env("INFORMD_WORKERS", "1");
    let daemon = Daemon::start(command);
    let mut stalled = Vec::new();
    for _ in 0..informd::server::HEAD_SLOTS {
        let mut io = TcpStream::connect(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        io.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        stalled.push(io);
    }
    // The server takes the stalled connections in order; give it a moment to have them all.
    let answer = loop {
        let answer = raw_exchange(daemon.port, &[b"GET /healthz HTTP/1.1\r\n\r\n"]).await;
        if !answer.starts_with("HTTP/1.1 200") || stalled.len() > informd::server::HEAD_SLOTS + 50 {
            break answer;
        }
        stalled.push(
            TcpStream::connect(("127.0.0.1", daemon.port))
                .await
                .unwrap(),
        );
    };
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(error_code(&answer), "busy");
    drop(stalled);
    let url = format!(
        "ws://127.0.0.1:{}/inform?token={}",
        daemon.port,
        token("alice")
    );
    let mut served = None;
    for _ in 0..50 {
        if let Ok(client) = Client::connect(&url, &[]).await {
            served = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = served.expect("once the stalled connections are gone, users get through");
    client.next_of_type("welcome").await;
}

/// Reads from `io` until `needle` has arrived; returns everything read.
async fn read_until(io: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), io.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no {needle} in {}", String::from_utf8_lossy(&seen)))
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Sends `handshake` and a `ping` frame behind it; asserts the 101 and returns what came
/// back up to the `pong`.
async fn upgrade_and_ping(io: &mut TcpStream, handshake: String) -> String {
    let mut bytes = handshake.into_bytes();
    bytes.extend(client_text_frame(r#"{"type":"ping"}"#));
    io.write_all(&bytes).await.unwrap();
    let answer = read_until(io, r#""type":"pong""#).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    answer
}

#[tokio::test]
async fn a_handshake_after_other_requests_on_a_kept_alive_connection_becomes_a_session() {
    // nginx with upstream keep-alive sends handshakes on connections that served requests.
    let app = spawn_app().await;
    let mut io = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    io.write_all(HEALTH.as_bytes()).await.unwrap();
    read_until(&mut io, r#"{"status":"ok"}"#).await;
    let answer = upgrade_and_ping(&mut io, handshake(&app.token("3"), "")).await;
    assert!(answer.contains(r#""type":"welcome""#), "{answer}");
    // A live session: a notification for user 3 arrives on this connection.
    app.notify("3", "follow").await;
    read_until(&mut io, r#""kind":"follow""#).await;

    // Pipelined: a request and the handshake in one write.
    let mut io = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let mut bytes = HEALTH.as_bytes().to_vec();
    bytes.extend(handshake(&app.token("3"), "").into_bytes());
    io.write_all(&bytes).await.unwrap();
    let answer = read_until(&mut io, r#""type":"welcome""#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("HTTP/1.1 101"), "{answer}");
}

/// `POST /publish` of one notification to `user`, as raw HTTP/1.1 on a kept-alive connection.
fn publish_request(user: &str, kind: &str) -> String {
    let body = json!({"to": user, "kind": kind}).to_string();
    format!(
        "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {PUBLISH_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_connection_that_published_can_become_a_session_that_receives() {
    // The publish is served by an HTTP worker and the session runs on a session thread: the
    // connection crosses from one to the other and nothing sent on it is lost.
    let app = spawn_app().await;
    let mut io = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    io.write_all(publish_request("7", "before").as_bytes())
        .await
        .unwrap();
    let answer = read_until(&mut io, r#""online_sessions""#).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let request = handshake(&app.token("7"), "").replace("/inform?", "/inform?since=0&");
    let answer = upgrade_and_ping(&mut io, request).await;
    assert!(answer.contains(r#""kind":"before""#), "replayed: {answer}");
    app.notify("7", "after").await;
    read_until(&mut io, r#""kind":"after""#).await;
}

#[tokio::test]
async fn later_handshakes_are_held_to_the_same_rules() {
    let app = spawn_app().await;
    for (request, status, code) in [
        (
            handshake(&app.token("3"), "").replace("Version: 13", "Version: 12"),
            "426",
            "upgrade_required",
        ),
        (handshake("forged", ""), "401", "invalid_token"),
        (
            handshake(&app.token("3"), "").replace("/inform?", "/healthz?"),
            "400",
            "invalid_handshake",
        ),
    ] {
        let mut io = TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        io.write_all(HEALTH.as_bytes()).await.unwrap();
        read_until(&mut io, r#"{"status":"ok"}"#).await;
        io.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until(&mut io, "\"error\"").await;
        let answer = read_until_closed(&mut io, answer).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request}: {answer}"
        );
        assert_eq!(error_code(&answer), code, "{answer}");
    }
}

/// Reads the rest of the answer, until the server closes the connection.
async fn read_until_closed(io: &mut TcpStream, mut seen: String) -> String {
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest))
        .await
        .expect("the connection is closed after a refusal")
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&rest));
    seen
}
