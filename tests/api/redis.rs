//! Several nodes on one database with Redis between them: what one node commits reaches the
//! sessions of another at once, in order and once, and a Redis outage loses nothing. Each
//! test runs its own `redis-server` on a free port, so it can stop and restart it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{second_node, spawn_app_with, TestApp};

/// A private `redis-server`, stopped when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    /// Starts (again) on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/deps/redis.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two nodes on one SQLite file, with `redis` between them.
pub async fn two_nodes(redis: &RedisServer) -> (TestApp, TestApp) {
    let url = redis.url();
    let first = spawn_app_with(|config| {
        config.broker = url;
        config.broker_prefix = "test".into();
    })
    .await;
    let second = second_node(&first).await;
    wait_ready(&first, 200).await;
    wait_ready(&second, 200).await;
    (first, second)
}

/// Waits until `/readyz` answers `status`.
async fn wait_ready(app: &TestApp, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = app.http.get(app.url("/readyz")).send().await.unwrap();
        if answer.status().as_u16() == status {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn what_one_node_commits_reaches_sessions_on_another_in_order_once() {
    let redis = RedisServer::start();
    let (first, second) = two_nodes(&redis).await;
    let (mut client, _) = second.connect_user("42", "").await;
    for _ in 0..20 {
        first.notify("42", "like").await;
    }
    assert_eq!(
        client.notification_seqs(20).await,
        (1..=20).collect::<Vec<_>>()
    );
    first
        .publish_ok(&json!({"topic": "global", "data": {"text": "updated"}}))
        .await;
    let broadcast = client.next_of_type("broadcast").await;
    assert_eq!(broadcast["topic"], "global");
    // Nothing more: no second copy of anything.
    first.notify("42", "follow").await;
    let next = client.next_of_type("notification").await;
    assert_eq!(next["notification"]["seq"], 21);
}

#[tokio::test]
async fn a_redis_outage_loses_nothing_and_readiness_follows_it() {
    let mut redis = RedisServer::start();
    let (first, second) = two_nodes(&redis).await;
    let (mut client, _) = second.connect_user("7", "").await;
    first.notify("7", "like").await;
    assert_eq!(client.notification_seqs(1).await, vec![1]);

    redis.stop();
    wait_ready(&first, 503).await;
    wait_ready(&second, 503).await;
    // Publishing still commits while Redis is down.
    first.notify("7", "reply").await;
    first.notify("7", "reply").await;

    redis.restart();
    wait_ready(&first, 200).await;
    wait_ready(&second, 200).await;
    // Ready again means subscribed again: the next event crosses Redis, and the session sees
    // the hole before it and fills it from the database.
    first.notify("7", "follow").await;
    assert_eq!(client.notification_seqs(3).await, vec![2, 3, 4]);
}

#[tokio::test]
async fn a_node_that_stopped_hearing_redis_reads_what_it_missed_once_it_hears_again() {
    let redis = RedisServer::start();
    let (first, second) = two_nodes(&redis).await;
    let (mut client, _) = second.connect_user("7", "").await;
    first.notify("7", "like").await;
    assert_eq!(client.notification_seqs(1).await, vec![1]);

    // Cut every subscription (the publishers' connections stay up): what `first` publishes
    // now reaches nobody, and nothing is published after it, so no later seq shows the hole.
    let killed = redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers")
        .send_packed_command(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"))
        .await
        .expect("CLIENT KILL answers");
    assert_ne!(killed, redis::Value::Int(0), "no subscription was cut");
    first.notify("7", "reply").await;
    assert_eq!(client.notification_seqs(1).await, vec![2]);
}

#[tokio::test]
async fn a_broker_url_password_never_reaches_the_log_and_unknown_brokers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::daemon::configured(dir.path());
    command.env("INFORMD_BROKER", "redis://:hunter2-secret@127.0.0.1:1");
    let daemon = crate::daemon::Daemon::start(command);
    let line = daemon
        .wait_for_log("informd listening", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(line.contains("broker redis://:***@127.0.0.1:1"), "{line}");
    let ready = reqwest::get(daemon.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    daemon.terminate();
    let (_, log) = daemon.exit_code().await;
    assert!(!log.iter().any(|l| l.contains("hunter2")), "{log:?}");

    let output = crate::daemon::configured(dir.path())
        .env("INFORMD_BROKER", "nats://user:pw@127.0.0.1:4222")
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("\"nats://user:***@127.0.0.1:4222\" is not supported")
            && stderr.contains("redis://")
            && !stderr.contains(":pw@"),
        "{stderr}"
    );
}

/// `GET /api/presence?user=` with the publisher key.
async fn presence(app: &TestApp, user: &str) -> serde_json::Value {
    let answer = app
        .http
        .get(app.url(&format!("/api/presence?user={user}")))
        .bearer_auth(crate::helpers::PUBLISH_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}

/// Waits until `app` counts `sessions` for `user`.
async fn wait_sessions(app: &TestApp, user: &str, sessions: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = presence(app, user).await;
        if answer["sessions"] == sessions {
            assert_eq!(answer["online"], sessions > 0);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user}: {answer} never counted {sessions}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sessions_are_counted_and_limited_across_nodes() {
    let redis = RedisServer::start();
    let url = redis.url();
    let first = spawn_app_with(|config| {
        config.broker = url;
        config.max_sessions_per_user = 2;
    })
    .await;
    let second = second_node(&first).await;
    wait_ready(&second, 200).await;
    let (on_first, _) = first.connect_user("9", "").await;
    let (on_second, _) = second.connect_user("9", "").await;
    wait_sessions(&first, "9", 2).await;
    wait_sessions(&second, "9", 2).await;

    let answer = first.publish_ok(&json!({"to": "9", "kind": "like"})).await;
    assert_eq!(answer["online_sessions"], 2, "{answer}");
    let refused = crate::helpers::Client::connect(
        &first.ws_url(&format!("?token={}", first.token("9"))),
        &[],
    )
    .await
    .err()
    .expect("a third session is refused");
    assert_eq!(refused.status, 429);

    on_second.close().await;
    wait_sessions(&first, "9", 1).await;
    on_first.close().await;
    wait_sessions(&second, "9", 0).await;
}

#[tokio::test]
async fn presence_needs_the_publisher_key_and_a_user() {
    let app = crate::helpers::spawn_app().await;
    let (_client, _) = app.connect_user("5", "").await;
    wait_sessions(&app, "5", 1).await;
    let none = presence(&app, "6").await;
    assert_eq!(none, json!({"user": "6", "online": false, "sessions": 0}));
    let anonymous = app
        .http
        .get(app.url("/api/presence?user=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let missing = app
        .http
        .get(app.url("/api/presence"))
        .bearer_auth(crate::helpers::PUBLISH_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
}
