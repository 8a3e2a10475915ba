//! A crash under supervisor: informd is killed with SIGKILL (no shutdown, no close frames),
//! supervisor starts it again, and browsers reconnect through nginx and resume with nothing
//! lost, while a backend keeps publishing through the outage.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Event, PUBLISH_KEY};
use crate::stack::Stack;

/// How long a client or publisher keeps retrying through the outage.
const OUTAGE_LIMIT: Duration = Duration::from_secs(30);

/// Publishes notifications to `user`, one at a time, each retried (with the same
/// Idempotency-Key, as a careful backend does) until it is answered 200. Returns how many
/// attempts failed.
async fn publish_through_outage(stack: &Stack, user: &str, count: usize) -> usize {
    let mut failures = 0;
    for i in 0..count {
        let deadline = Instant::now() + OUTAGE_LIMIT;
        loop {
            let answer = stack
                .http
                .post(stack.url("/publish"))
                .bearer_auth(PUBLISH_KEY)
                .header("Idempotency-Key", format!("outage-{i}"))
                .json(&json!({"to": user, "kind": "reply", "data": {"n": i}}))
                .send()
                .await;
            if matches!(&answer, Ok(response) if response.status() == 200) {
                break;
            }
            failures += 1;
            assert!(
                Instant::now() < deadline,
                "publish {i} still failing after {OUTAGE_LIMIT:?}: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    failures
}

#[tokio::test]
async fn kill_9_restarts_informd_and_clients_resume_with_nothing_lost() {
    let stack = Stack::start().await;
    let (mut client, _) = stack.connect("42", "").await;
    for _ in 0..3 {
        let response = stack.publish(&json!({"to": "42", "kind": "like"})).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(client.notification_seqs(3).await, vec![1, 2, 3]);

    let old = stack.informd_pid().expect("informd runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 informd");
    // No close frame: nginx drops the browser's connection when informd's goes.
    assert_eq!(client.closed().await, None);

    // A backend publishes five more while informd is down and coming back.
    let publisher = publish_through_outage(&stack, "42", 5);

    // The browser reconnects with the last seq it saw, retrying while nginx answers 502.
    let reconnect = async {
        let deadline = Instant::now() + OUTAGE_LIMIT;
        loop {
            match stack.browser(&stack.token("42"), "&since=3").await {
                Ok(client) => return client,
                Err(refused) => {
                    assert!(
                        Instant::now() < deadline,
                        "could not reconnect: {refused:?}\n{}",
                        stack.supervisord_log()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let (failures, mut client) = tokio::join!(publisher, reconnect);
    // The first publish is sent right after the kill, long before supervisor has started a
    // new informd (it notices the exit on its next tick), so the outage is seen.
    assert!(failures > 0, "the publisher never saw informd down");
    let new = stack.wait_restarted(old).await;
    assert_ne!(new, old);

    // Whatever came before the reconnect is replayed, whatever came after arrives live: each
    // of seq 4..=8 exactly once, in order.
    let welcome = client.next_of_type("welcome").await;
    assert_eq!(welcome["user"], "42");
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        match client.next_event().await {
            Event::Frame(frame) if frame["type"] == "notification" => {
                seqs.push(frame["notification"]["seq"].as_i64().expect("seq"))
            }
            Event::Frame(frame) if frame["type"] == "resumed" || frame["type"] == "unread" => {}
            other => panic!("unexpected {other:?} after seqs {seqs:?}"),
        }
    }
    assert_eq!(
        seqs,
        vec![4, 5, 6, 7, 8],
        "gapless and in order ({failures} publish attempts failed during the outage)"
    );
    let unread = stack
        .http
        .get(stack.url("/api/notifications/unread"))
        .bearer_auth(stack.token("42"))
        .send()
        .await
        .unwrap();
    let unread: serde_json::Value = unread.json().await.unwrap();
    assert_eq!(unread["seq"], 8, "nothing published twice: {unread}");
    assert!(
        stack
            .supervisord_log()
            .contains("exited: informd (terminated by SIGKILL"),
        "{}",
        stack.supervisord_log()
    );
}
