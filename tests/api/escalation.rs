//! The offline hook: a real HTTP receiver in the test, on a random port, takes informd's
//! escalation POSTs, checks their signature and `Idempotency-Key`, and answers as each test
//! scripts it. informd runs with `escalation_after_secs = 1` (its worker then ticks every
//! 250 ms). Each "nothing was sent" assertion waits for a control notification, published
//! alongside, to be sent first: the hook demonstrably ran over both.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::daemon::{configured, publish, refused_at_start, Daemon};
use crate::helpers::{spawn_app_with, spawn_on, TestApp, TestDatabase};

const SECRET: &str = "escalation-test-secret-0123456789";

/// One POST the receiver took.
#[derive(Debug, Clone)]
struct Received {
    idempotency_key: Option<String>,
    content_type: Option<String>,
    /// Whether `X-Informd-Signature` is the HMAC of the body with [`SECRET`].
    signed: bool,
    body: Value,
    /// What the receiver answered.
    status: u16,
}

impl Received {
    fn notification_id(&self) -> i64 {
        self.body["notification"]["id"].as_i64().unwrap_or(-1)
    }
}

/// A webhook receiver on 127.0.0.1: answers the scripted statuses in order, then 200; or 500
/// to everything while told to fail.
#[derive(Clone)]
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    failing: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/informd/escalate",
            listener.local_addr().unwrap().port()
        );
        let receiver = Receiver {
            url,
            received: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            failing: Arc::default(),
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        receiver
    }

    /// Reads one request, records it, answers, and closes the connection.
    async fn serve(self, mut stream: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let (head_len, headers) = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut parsed = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut parsed);
            if let Ok(httparse::Status::Complete(len)) = request.parse(&buf) {
                assert_eq!(request.method, Some("POST"));
                assert_eq!(request.path, Some("/informd/escalate"));
                let headers: Vec<(String, String)> = request
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (len, headers);
            }
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length").unwrap().parse().unwrap();
        while buf.len() < head_len + length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "body cut short");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = &buf[head_len..head_len + length];
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let status = match self.failing.load(Ordering::SeqCst) {
            true => 500,
            false => self.script.lock().unwrap().pop_front().unwrap_or(200),
        };
        self.received.lock().unwrap().push(Received {
            idempotency_key: header("idempotency-key"),
            content_type: header("content-type"),
            signed: header("x-informd-signature").as_deref() == Some(expected.as_str()),
            body: serde_json::from_slice(body).unwrap(),
            status,
        });
        let answer =
            format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    /// Answer 500 to everything (`true`), or follow the script again.
    fn fail_all(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The POSTs about notification `id`.
    fn about(&self, id: i64) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.notification_id() == id)
            .collect()
    }

    /// Waits until `done` holds for what was received; panics after `limit`.
    async fn wait_until(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.received()) {
            assert!(
                Instant::now() < deadline,
                "the receiver never got what was expected: {:#?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the control notification `control` of `user` to be sent, and a little more;
    /// then asserts that it was the only POST, so none of `skipped` was sent.
    async fn assert_only_sent(&self, control: i64, user: &str, skipped: &[i64]) {
        self.wait_for_sent(control).await;
        tokio::time::sleep(SETTLE).await;
        for id in skipped {
            assert!(self.about(*id).is_empty(), "{:#?}", self.received());
        }
        assert_well_formed(&self.about(control)[0], user, control);
        assert_eq!(self.received().len(), 1, "{:#?}", self.received());
    }

    /// Waits for a 2xx-answered POST about `id`.
    async fn wait_for_sent(&self, id: i64) {
        self.wait_until(Duration::from_secs(15), |all| {
            all.iter()
                .any(|r| r.notification_id() == id && r.status == 200)
        })
        .await;
    }
}

/// Enough worker ticks (250 ms each) for anything still pending to have been sent.
const SETTLE: Duration = Duration::from_millis(1500);

fn with_webhook(receiver: &Receiver) -> impl FnOnce(&mut informd::config::Config) + '_ {
    move |config| {
        config.escalation_webhook = Some(receiver.url.clone());
        config.escalation_secret = Some(SECRET.to_string().into());
        config.escalation_after_secs = 1;
    }
}

fn first_id(answer: &Value) -> i64 {
    answer["ids"][0].as_i64().unwrap()
}

/// Asserts that a POST is what docs/PROTOCOL.md promises for notification `id` of `user`.
fn assert_well_formed(post: &Received, user: &str, id: i64) {
    assert!(post.signed, "bad signature: {post:?}");
    assert_eq!(
        post.idempotency_key.as_deref(),
        Some(format!("informd-escalation-{id}").as_str())
    );
    assert_eq!(post.content_type.as_deref(), Some("application/json"));
    assert_eq!(post.body["user"], json!(user));
    assert_eq!(post.body["notification"]["id"], json!(id));
    assert_eq!(post.body["notification"]["read"], json!(false));
}

#[tokio::test]
async fn an_unread_notification_is_posted_once_through_failures_and_a_restart() {
    let receiver = Receiver::start(&[]).await;
    receiver.fail_all(true);
    let dir = tempfile::tempdir().unwrap();
    let node = |dir: &std::path::Path| {
        let mut command = configured(dir);
        command
            .env("INFORMD_ESCALATION_WEBHOOK", &receiver.url)
            .env("INFORMD_ESCALATION_SECRET", SECRET)
            .env("INFORMD_ESCALATION_AFTER_SECS", "1");
        Daemon::start(command)
    };
    let first = node(dir.path());
    let http = reqwest::Client::new();
    let answer = publish(
        &http,
        &first,
        &json!({"to": "42", "kind": "like", "actor": {"name": "alice"}}),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let id = first_id(&answer.json().await.unwrap());

    // Two attempts answered 500, then informd is stopped with SIGTERM...
    receiver
        .wait_until(Duration::from_secs(15), |all| all.len() >= 2)
        .await;
    first.terminate();
    let (code, log) = first.exit_code().await;
    assert_eq!(code, Some(0), "{log:#?}");
    let failed_before_restart = receiver.received().len();
    let failures: Vec<&String> = log
        .iter()
        .filter(|l| {
            l.contains(&format!(
                "escalation of notification {id}: the webhook answered 500"
            ))
        })
        .collect();
    assert_eq!(failures.len(), failed_before_restart, "{log:#?}");
    assert!(
        failures[0].contains("(attempt 1); next try in"),
        "{failures:?}"
    );
    assert!(
        failures[1].contains("(attempt 2); next try in"),
        "{failures:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains(SECRET)),
        "the secret was logged"
    );
    // ...and started again on the same database, where the next attempt succeeds.
    receiver.fail_all(false);
    let second = node(dir.path());
    receiver.wait_for_sent(id).await;
    tokio::time::sleep(SETTLE).await;

    let posts = receiver.about(id);
    assert_eq!(posts.len(), failed_before_restart + 1, "{posts:#?}");
    assert!(posts[..failed_before_restart]
        .iter()
        .all(|p| p.status == 500));
    assert_eq!(posts[failed_before_restart].status, 200);
    for post in &posts {
        assert_well_formed(post, "42", id);
    }
    assert_eq!(
        posts[0].body, posts[failed_before_restart].body,
        "every attempt sends the same body"
    );
    assert_eq!(
        posts[0].body["notification"]["actor"],
        json!({"name": "alice"})
    );
    let metrics = reqwest::get(second.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("informd_escalations_total{result=\"sent\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_notification_read_before_it_is_due_is_not_posted() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_app_with(with_webhook(&receiver)).await;
    let read = first_id(&app.notify("reader", "like").await);
    let control = first_id(&app.notify("absent", "like").await);
    let marked = app
        .post_as("reader", "/api/notifications/read", &json!({"ids": [read]}))
        .await;
    assert_eq!(marked.status(), 200);

    receiver.assert_only_sent(control, "absent", &[read]).await;
}

#[tokio::test]
async fn a_user_who_was_online_since_the_publish_gets_no_post() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_app_with(with_webhook(&receiver)).await;
    // Online before the publish and still online when it is due.
    let (_present, _) = app.connect_user("present", "").await;
    let kept_open = first_id(&app.notify("present", "like").await);
    // Online at the publish, offline soon after, and when it is due.
    let (leaving, _) = app.connect_user("left", "").await;
    let left = first_id(&app.notify("left", "like").await);
    leaving.close().await;
    // Offline at the publish, online for a moment after it, offline when it is due.
    let visited = first_id(&app.notify("visitor", "like").await);
    let (visit, _) = app.connect_user("visitor", "").await;
    visit.close().await;
    // Online before the publish only.
    let (earlier, _) = app.connect_user("gone", "").await;
    earlier.close().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after_leaving = first_id(&app.notify("gone", "like").await);

    receiver
        .assert_only_sent(after_leaving, "gone", &[kept_open, visited, left])
        .await;
}

#[tokio::test]
async fn two_nodes_on_postgres_post_each_due_notification_once() {
    let receiver = Receiver::start(&[500]).await;
    let database = Arc::new(
        tokio::task::spawn_blocking(TestDatabase::postgres)
            .await
            .unwrap(),
    );
    let nodes: [TestApp; 2] = [
        spawn_on(database.clone(), with_webhook(&receiver)).await,
        spawn_on(database.clone(), with_webhook(&receiver)).await,
    ];
    let mut ids = Vec::new();
    for n in 0..24 {
        let node = &nodes[n % 2];
        ids.push(first_id(&node.notify(&format!("u{n}"), "like").await));
    }
    receiver
        .wait_until(Duration::from_secs(20), |all| {
            ids.iter().all(|id| {
                all.iter()
                    .any(|r| r.notification_id() == *id && r.status == 200)
            })
        })
        .await;
    tokio::time::sleep(SETTLE).await;
    let received = receiver.received();
    // One answered 500 and was tried again; every other was POSTed exactly once.
    assert_eq!(received.len(), ids.len() + 1, "{received:#?}");
    for id in ids {
        let sent = received
            .iter()
            .filter(|r| r.notification_id() == id && r.status == 200)
            .count();
        assert_eq!(sent, 1, "notification {id}");
    }
    assert!(received.iter().all(|r| r.signed));
}

#[tokio::test]
async fn a_webhook_without_a_secret_or_not_over_http_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (webhook, secret, says) in [
        ("https://blog.example/escalate", None, "escalation_secret is missing"),
        ("https://blog.example/escalate", Some("   "), "escalation_secret is missing"),
        ("https://blog.example/escalate", Some("short"), "escalation_secret is too short"),
        (
            "ftp://user:hunter2@blog.example/x",
            Some(SECRET),
            "escalation_webhook \"ftp://user:***@blog.example/x\" is not an http:// or https:// URL",
        ),
        ("https:///nohost", Some(SECRET), "INFORMD_ESCALATION_WEBHOOK"),
    ] {
        let mut command = configured(dir.path());
        command.env("INFORMD_ESCALATION_WEBHOOK", webhook);
        if let Some(secret) = secret {
            command.env("INFORMD_ESCALATION_SECRET", secret);
        }
        let output = refused_at_start(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{webhook}: started");
        assert!(stderr.contains(says), "{webhook} {secret:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        if secret.is_some_and(|s| s.len() > 10) {
            assert!(!stderr.contains(SECRET), "{stderr}");
        }
    }
    let mut command = configured(dir.path());
    command.env("INFORMD_ESCALATION_AFTER_SECS", "0");
    let output = refused_at_start(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("escalation_after_secs must be greater than 0"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_notification_read_while_its_post_is_retried_is_not_sent_again() {
    let receiver = Receiver::start(&[500]).await;
    let app = spawn_app_with(with_webhook(&receiver)).await;
    let id = first_id(&app.notify("slow-reader", "like").await);
    receiver
        .wait_until(Duration::from_secs(15), |all| all.len() == 1)
        .await;
    let marked = app
        .post_as(
            "slow-reader",
            "/api/notifications/read",
            &json!({"all": true}),
        )
        .await;
    assert_eq!(marked.status(), 200);

    // The retry finds it read and ends it without a POST.
    let deadline = Instant::now() + Duration::from_secs(15);
    while app
        .count_rows("SELECT count(*) FROM escalations WHERE done")
        .await
        != 1
    {
        assert!(Instant::now() < deadline, "the escalation never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let posts = receiver.about(id);
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0].status, 500);
}

#[tokio::test]
async fn a_user_online_on_another_node_gets_no_post() {
    let redis = crate::redis::RedisServer::start();
    let receiver = Receiver::start(&[]).await;
    let database = Arc::new(
        tokio::task::spawn_blocking(TestDatabase::postgres)
            .await
            .unwrap(),
    );
    let clustered = |config: &mut informd::config::Config| {
        config.broker = redis.url();
        config.broker_prefix = "escalation-test".into();
    };
    // Only the second node sends (and records when users were seen): what keeps it from
    // sending is the cluster's session count alone.
    let nodes: [TestApp; 2] = [
        spawn_on(database.clone(), clustered).await,
        spawn_on(database.clone(), |config| {
            clustered(config);
            with_webhook(&receiver)(config);
        })
        .await,
    ];
    // Online on the first node since before the publishes, as the second node sees it.
    let (_present, _) = nodes[0].connect_user("present", "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let presence: Value = nodes[1]
            .http
            .get(nodes[1].url("/api/presence?user=present"))
            .bearer_auth(crate::helpers::PUBLISH_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if presence["online"] == json!(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second node never saw the user"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut kept_open = Vec::new();
    for n in 0..4 {
        kept_open.push(first_id(&nodes[n % 2].notify("present", "like").await));
    }
    let control = first_id(&nodes[1].notify("absent", "like").await);

    receiver
        .assert_only_sent(control, "absent", &kept_open)
        .await;
}
