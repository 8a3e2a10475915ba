//! Retention: old notifications go (and stop counting as unread), topic history stays bounded
//! by count and age, expired idempotency keys are forgotten.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{restart, spawn_app_with, TestApp, PUBLISH_KEY};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Makes the rows of `table` that match `condition` `days` old, as time would.
async fn backdate(app: &TestApp, table: &str, days: i64, condition: &str) {
    let then = informd::model::now_millis() - days * DAY_MS;
    app.execute(&format!(
        "UPDATE {table} SET created_at = {then} WHERE {condition}"
    ))
    .await;
}

/// Polls `sql` until it returns `want` (retention runs in the background at start).
async fn wait_for(app: &TestApp, sql: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = app.count_rows(sql).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn zero_retention_days_keep_notifications_forever() {
    let app = spawn_app_with(|c| {
        c.retention_days = 0;
        c.topic_history_days = 1;
    })
    .await;
    app.notify("1", "like").await;
    app.notify("1", "like").await;
    app.publish_ok(&json!({"topic": "global", "data": {}}))
        .await;
    backdate(&app, "notifications", 3650, "true").await;
    backdate(&app, "broadcasts", 3650, "true").await;
    let app = restart(app).await;
    // The old broadcast going shows that the pruning pass ran.
    wait_for(&app, "SELECT count(*) FROM broadcasts", 0).await;
    assert_eq!(
        app.count_rows("SELECT count(*) FROM notifications").await,
        2
    );
}

#[tokio::test]
async fn old_notifications_are_pruned_and_the_badge_follows() {
    let app = spawn_app_with(|c| c.retention_days = 30).await;
    for _ in 0..4 {
        app.notify("1", "like").await;
    }
    app.post_as("1", "/api/notifications/read", &json!({"up_to": 1}))
        .await;
    // seq 1 (read) and 2 (unread) are 100 days old; 3 and 4 are fresh.
    backdate(&app, "notifications", 100, "seq <= 2").await;
    let app = restart(app).await;
    wait_for(&app, "SELECT count(*) FROM notifications", 2).await;
    let badge: serde_json::Value = app
        .get_as("1", "/api/notifications/unread")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(badge, json!({"unread": 2, "seq": 4}));
    // The stream position survives pruning: the next one is 5.
    assert_eq!(app.notify("1", "like").await["ids"], json!([5]));
    let (mut client, _) = app.connect_user("1", "&since=0").await;
    assert_eq!(client.notification_seqs(3).await, vec![3, 4, 5]);
    assert_eq!(client.next_of_type("resumed").await["complete"], false);
    // A client that had the pruned ones misses nothing.
    let (mut client, _) = app.connect_user("1", "&since=2").await;
    assert_eq!(client.notification_seqs(3).await, vec![3, 4, 5]);
    assert_eq!(client.next_of_type("resumed").await["complete"], true);
}

/// A grouped notification stands where its latest event put it. When retention removes it,
/// a client that saw only its first event missed it, and its resume says so.
#[tokio::test]
async fn a_pruned_group_counts_at_the_position_it_moved_to() {
    let app = spawn_app_with(|c| c.retention_days = 30).await;
    let like =
        |who: &str| json!({"to": "1", "kind": "like", "group": "post:1", "actor": {"id": who}});
    app.publish_ok(&like("ann")).await; // seq 1
    app.notify("1", "follow").await; // seq 2
    app.publish_ok(&like("bob")).await; // the like moves to seq 3
    backdate(&app, "notifications", 100, "kind = 'like'").await;
    let app = restart(app).await;
    wait_for(&app, "SELECT count(*) FROM notifications", 1).await;
    let (mut saw_the_follow, _) = app.connect_user("1", "&since=2").await;
    assert_eq!(
        saw_the_follow.next_of_type("resumed").await["complete"],
        false,
        "the like at seq 3 went unseen"
    );
    let (mut saw_everything, _) = app.connect_user("1", "&since=3").await;
    assert_eq!(
        saw_everything.next_of_type("resumed").await["complete"],
        true
    );
}

#[tokio::test]
async fn topic_history_is_bounded_by_count_and_age() {
    let app = spawn_app_with(|c| {
        c.topic_history_max = 5;
        c.topic_history_days = 7;
    })
    .await;
    for i in 0..8 {
        app.publish_ok(&json!({"topic": "article:1", "data": {"i": i}}))
            .await;
    }
    app.publish_ok(&json!({"topic": "global"})).await;
    assert_eq!(
        app.count_rows("SELECT count(*) FROM broadcasts WHERE topic = 'article:1'")
            .await,
        5
    );
    assert_eq!(
        app.count_rows("SELECT min(seq) FROM broadcasts WHERE topic = 'article:1'")
            .await,
        4
    );
    backdate(&app, "broadcasts", 8, "topic = 'global'").await;
    let app = restart(app).await;
    wait_for(
        &app,
        "SELECT count(*) FROM broadcasts WHERE topic = 'global'",
        0,
    )
    .await;
    assert_eq!(app.count_rows("SELECT count(*) FROM broadcasts").await, 5);
}

#[tokio::test]
async fn expired_idempotency_keys_are_forgotten() {
    let app = spawn_app_with(|_| {}).await;
    let send = |app: &TestApp| {
        app.http
            .post(app.url("/publish"))
            .bearer_auth(PUBLISH_KEY)
            .header("Idempotency-Key", "old-key")
            .json(&json!({"topic": "global"}))
            .send()
    };
    assert_eq!(send(&app).await.unwrap().status(), 200);
    app.execute("UPDATE idempotency_keys SET expires_at = 0")
        .await;
    // An expired key publishes again rather than answering the old result.
    let body: serde_json::Value = send(&app).await.unwrap().json().await.unwrap();
    assert!(body.get("duplicate").is_none());
    assert_eq!(app.count_rows("SELECT count(*) FROM broadcasts").await, 2);
    app.execute("UPDATE idempotency_keys SET expires_at = 0")
        .await;
    let app = restart(app).await;
    wait_for(&app, "SELECT count(*) FROM idempotency_keys", 0).await;
}

#[tokio::test]
async fn a_pass_larger_than_a_batch_removes_everything_old_and_keeps_badges_exact() {
    const USERS: usize = 5;
    const EACH: usize = 2500;
    const OLD: usize = 2400; // seqs 1..=2400 of each user: 12,000 rows, three batches
    assert!(USERS * OLD > 2 * informd::store::PRUNE_BATCH as usize);
    let app = spawn_app_with(|c| c.retention_days = 30).await;
    let events: Vec<_> = (0..USERS * EACH)
        .map(|i| json!({"to": format!("u{}", i % USERS), "kind": "like"}))
        .collect();
    for batch in events.chunks(1000) {
        app.publish_ok(&json!(batch)).await;
    }
    app.post_as("u0", "/api/notifications/read", &json!({"up_to": 200}))
        .await;
    backdate(&app, "notifications", 100, &format!("seq <= {OLD}")).await;

    let app = restart(app).await;
    let kept = USERS * (EACH - OLD);
    wait_for(&app, "SELECT count(*) FROM notifications", kept as i64).await;
    let wrong_badges = "SELECT count(*) FROM user_state AS s WHERE s.unread <> ( \
                        SELECT count(*) FROM notifications AS n \
                        WHERE n.user_id = s.user_id AND n.read = false)";
    assert_eq!(app.count_rows(wrong_badges).await, 0);
    for user in ["u0", "u4"] {
        let badge: serde_json::Value = app
            .get_as(user, "/api/notifications/unread")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(badge, json!({"unread": EACH - OLD, "seq": EACH}), "{user}");
    }
    // A client that had everything up to the last pruned seq misses nothing; one that had
    // less is told its replay is incomplete.
    let (mut client, _) = app.connect_user("u0", &format!("&since={OLD}")).await;
    let seqs: Vec<i64> = ((OLD + 1) as i64..=EACH as i64).collect();
    assert_eq!(client.notification_seqs(EACH - OLD).await, seqs);
    assert_eq!(client.next_of_type("resumed").await["complete"], true);
    let (mut client, _) = app.connect_user("u0", "&since=100").await;
    assert_eq!(client.notification_seqs(EACH - OLD).await, seqs);
    assert_eq!(client.next_of_type("resumed").await["complete"], false);
}
