//! Resume with `since`: exactly what was missed, in order, then live; also while publishing
//! goes on, across a server restart, and when history no longer reaches back.

use serde_json::json;

use crate::helpers::{restart, second_node, spawn_app, spawn_app_with};

#[tokio::test]
async fn reconnecting_with_since_replays_exactly_what_was_missed() {
    let app = spawn_app().await;
    let (client, welcome) = app.connect_user("42", "").await;
    assert_eq!(welcome["seq"], 0);
    app.notify("42", "like").await;
    client.close().await;
    for _ in 0..30 {
        app.notify("42", "reply").await;
    }
    let (mut client, welcome) = app.connect_user("42", "&since=1").await;
    assert_eq!(
        (welcome["seq"].as_i64(), welcome["unread"].as_i64()),
        (Some(31), Some(31))
    );
    let seqs = client.notification_seqs(30).await;
    assert_eq!(seqs, (2..=31).collect::<Vec<_>>());
    assert_eq!(
        client.next_of_type("resumed").await,
        json!({"type": "resumed", "stream": "user", "replayed": 30, "complete": true})
    );
    app.notify("42", "follow").await;
    let live = client.next_of_type("notification").await;
    assert_eq!(live["notification"]["seq"], 32);
    assert_eq!(live["unread"], 32);
}

#[tokio::test]
async fn resume_has_no_gap_or_duplicate_while_publishing_continues() {
    let app = spawn_app().await;
    for _ in 0..20 {
        app.notify("7", "like").await;
    }
    let total = 220;
    let publisher = {
        let http = app.http.clone();
        let url = app.url("/publish");
        tokio::spawn(async move {
            for _ in 20..total {
                let response = http
                    .post(&url)
                    .bearer_auth(crate::helpers::PUBLISH_KEY)
                    .json(&json!({"to": "7", "kind": "like"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        })
    };
    // Reconnect several times while the publisher runs, each time from where we were.
    let mut last = 10;
    let mut received = Vec::new();
    for round in 0..4 {
        let (mut client, _) = app.connect_user("7", &format!("&since={last}")).await;
        let mut resumed = false;
        let want = if round == 3 { total } else { last + 20 };
        while last < want {
            let frame = client.next().await;
            match frame["type"].as_str() {
                Some("notification") => {
                    let seq = frame["notification"]["seq"].as_i64().unwrap();
                    assert_eq!(seq, last + 1, "gap or duplicate in round {round}");
                    last = seq;
                    received.push(seq);
                }
                // The badge, when a notification came both in the replay and live.
                Some("unread") => {}
                Some("resumed") => {
                    assert!(!resumed);
                    resumed = true;
                    assert_eq!(frame["complete"], true);
                }
                other => panic!("unexpected frame {other:?}"),
            }
        }
        client.close().await;
    }
    publisher.await.unwrap();
    assert_eq!(received, (11..=total).collect::<Vec<_>>());
}

#[tokio::test]
async fn resume_works_across_a_server_restart() {
    let app = spawn_app().await;
    app.notify("5", "like").await;
    let app = restart(app).await;
    for _ in 0..30 {
        app.notify("5", "like").await;
    }
    let app = restart(app).await;
    let (mut client, welcome) = app.connect_user("5", "&since=1").await;
    assert_eq!(welcome["seq"], 31);
    assert_eq!(
        client.notification_seqs(30).await,
        (2..=31).collect::<Vec<_>>()
    );
    assert_eq!(client.next_of_type("resumed").await["replayed"], 30);
    // Ids stay unique across restarts.
    let body = app.notify("5", "like").await;
    assert_eq!(body["ids"], json!([32]));
}

#[tokio::test]
async fn too_much_missed_replays_the_newest_and_says_incomplete() {
    let app = spawn_app_with(|c| c.replay_max = 10).await;
    for _ in 0..30 {
        app.notify("1", "like").await;
    }
    let (mut client, _) = app.connect_user("1", "&since=0").await;
    assert_eq!(
        client.notification_seqs(10).await,
        (21..=30).collect::<Vec<_>>()
    );
    let resumed = client.next_of_type("resumed").await;
    assert_eq!(
        (resumed["replayed"].as_i64(), resumed["complete"].as_bool()),
        (Some(10), Some(false))
    );
    app.notify("1", "like").await;
    assert_eq!(client.notification_seqs(1).await, vec![31]);
}

#[tokio::test]
async fn a_client_ahead_of_the_server_is_told_to_refetch() {
    let app = spawn_app().await;
    app.notify("1", "like").await;
    let (mut client, _) = app.connect_user("1", "&since=50").await;
    let resumed = client.next_of_type("resumed").await;
    assert_eq!(
        (resumed["replayed"].as_i64(), resumed["complete"].as_bool()),
        (Some(0), Some(false))
    );
    // Live delivery continues from the server's position.
    app.notify("1", "like").await;
    assert_eq!(client.notification_seqs(1).await, vec![2]);
}

#[tokio::test]
async fn pruned_history_is_reported_incomplete() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.notify("1", "like").await;
    }
    // Simulate retention having removed the two oldest, and recorded that it did (as it
    // does: an update of a grouped notification leaves seqs empty too, so rows are not
    // counted).
    app.execute("DELETE FROM notifications WHERE seq <= 2")
        .await;
    app.execute("UPDATE user_state SET pruned_seq = 2").await;
    let (mut client, _) = app.connect_user("1", "&since=0").await;
    assert_eq!(client.notification_seqs(3).await, vec![3, 4, 5]);
    assert_eq!(client.next_of_type("resumed").await["complete"], false);
}

#[tokio::test]
async fn topics_resume_with_since_on_subscribe() {
    let app = spawn_app().await;
    for i in 0..6 {
        app.publish_ok(&json!({"topic": "article:1", "data": {"i": i}}))
            .await;
    }
    let (mut client, _) = app.connect_user("1", "").await;
    client
        .send_json(&json!({"type": "subscribe", "topic": "article:1", "since": 2}))
        .await;
    for seq in 3..=6 {
        let frame = client.next_of_type("broadcast").await;
        assert_eq!(
            (frame["topic"].as_str(), frame["seq"].as_i64()),
            (Some("article:1"), Some(seq))
        );
    }
    assert_eq!(
        client.next_of_type("resumed").await,
        json!({"type": "resumed", "stream": "topic:article:1", "replayed": 4, "complete": true})
    );
    app.publish_ok(&json!({"topic": "article:1", "data": {}}))
        .await;
    assert_eq!(client.next_of_type("broadcast").await["seq"], 7);
    // global can be resumed the same way.
    app.publish_ok(&json!({"topic": "global", "data": {}}))
        .await;
    assert_eq!(client.next_of_type("broadcast").await["topic"], "global");
    // Asking again from 0 replays nothing: this session already sent seq 1.
    client
        .send_json(&json!({"type": "subscribe", "topic": "global", "since": 0}))
        .await;
    assert_eq!(client.next_of_type("resumed").await["replayed"], 0);
}

/// Collects `n` broadcast frames of `topic` as seqs (other frames between them are an error).
async fn broadcast_seqs(client: &mut crate::helpers::Client, topic: &str, n: usize) -> Vec<i64> {
    let mut seqs = Vec::with_capacity(n);
    for _ in 0..n {
        let frame = client.next_of_type("broadcast").await;
        assert_eq!(frame["topic"], topic, "{frame}");
        seqs.push(frame["seq"].as_i64().expect("seq"));
    }
    seqs
}

#[tokio::test]
async fn resuming_global_after_live_broadcasts_sends_the_gap_once() {
    // The client saw global up to 2 on its previous connection; 3 and 4 came while it was
    // away, 5 and 6 after it reconnected but before its `subscribe` with `since` arrived.
    let app = spawn_app().await;
    for i in 1..=4 {
        app.publish_ok(&json!({"topic": "global", "data": {"i": i}}))
            .await;
    }
    let (mut client, _) = app.connect_user("1", "").await;
    for i in 5..=6 {
        app.publish_ok(&json!({"topic": "global", "data": {"i": i}}))
            .await;
    }
    assert_eq!(broadcast_seqs(&mut client, "global", 2).await, vec![5, 6]);
    client
        .send_json(&json!({"type": "subscribe", "topic": "global", "since": 2}))
        .await;
    // Only the gap: 5 and 6 went out live already.
    assert_eq!(broadcast_seqs(&mut client, "global", 2).await, vec![3, 4]);
    assert_eq!(
        client.next_of_type("resumed").await,
        json!({"type": "resumed", "stream": "topic:global", "replayed": 2, "complete": true})
    );
    app.publish_ok(&json!({"topic": "global", "data": {"i": 7}}))
        .await;
    assert_eq!(broadcast_seqs(&mut client, "global", 1).await, vec![7]);
}

#[tokio::test]
async fn resubscribing_a_topic_with_since_skips_what_went_out_live() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.publish_ok(&json!({"topic": "article:9", "data": {}}))
            .await;
    }
    let (mut client, _) = app.connect_user("1", "").await;
    client
        .send_json(&json!({"type": "subscribe", "topic": "article:9"}))
        .await;
    assert_eq!(client.next_of_type("subscribed").await["seq"], 3);
    for _ in 0..2 {
        app.publish_ok(&json!({"topic": "article:9", "data": {}}))
            .await;
    }
    assert_eq!(
        broadcast_seqs(&mut client, "article:9", 2).await,
        vec![4, 5]
    );
    client
        .send_json(&json!({"type": "subscribe", "topic": "article:9", "since": 1}))
        .await;
    assert_eq!(
        broadcast_seqs(&mut client, "article:9", 2).await,
        vec![2, 3]
    );
    assert_eq!(client.next_of_type("resumed").await["replayed"], 2);
    app.publish_ok(&json!({"topic": "article:9", "data": {}}))
        .await;
    assert_eq!(broadcast_seqs(&mut client, "article:9", 1).await, vec![6]);
}

#[tokio::test]
async fn a_rendered_page_connects_from_the_badge_seq_and_misses_nothing() {
    let app = spawn_app().await;
    app.notify("3", "like").await;
    let badge: serde_json::Value = app
        .get_as("3", "/api/notifications/unread")
        .await
        .json()
        .await
        .unwrap();
    let seq = badge["seq"].as_i64().unwrap();
    // Published between the page render and the socket connect.
    app.notify("3", "reply").await;
    let (mut client, _) = app.connect_user("3", &format!("&since={seq}")).await;
    let frame = client.next_of_type("notification").await;
    assert_eq!(frame["notification"]["kind"], "reply");
    assert_eq!(client.next_of_type("resumed").await["replayed"], 1);
}

#[tokio::test]
async fn a_seq_that_jumps_ahead_is_filled_from_the_database() {
    // Two nodes on one database and no broker between them: what node A commits never
    // reaches node B's sessions live, so B's session sees seq 2 right after 0.
    let a = spawn_app().await;
    let b = second_node(&a).await;
    let (mut client, welcome) = b.connect_user("9", "").await;
    assert_eq!(welcome["seq"], 0);
    a.notify("9", "like").await;
    b.notify("9", "reply").await;
    let first = client.next_of_type("notification").await;
    let second = client.next_of_type("notification").await;
    assert_eq!(
        (
            first["notification"]["seq"].as_i64(),
            first["notification"]["kind"].as_str()
        ),
        (Some(1), Some("like"))
    );
    assert_eq!(
        (
            second["notification"]["seq"].as_i64(),
            second["notification"]["kind"].as_str()
        ),
        (Some(2), Some("reply"))
    );
    // Nothing doubled: the next frame is the next notification.
    b.notify("9", "follow").await;
    assert_eq!(client.notification_seqs(1).await, vec![3]);

    // The same for a topic.
    client
        .send_json(&json!({"type": "subscribe", "topic": "article:5"}))
        .await;
    assert_eq!(client.next_of_type("subscribed").await["seq"], 0);
    a.publish_ok(&json!({"topic": "article:5", "data": {"from": "a"}}))
        .await;
    b.publish_ok(&json!({"topic": "article:5", "data": {"from": "b"}}))
        .await;
    for (seq, from) in [(1, "a"), (2, "b")] {
        let frame = client.next_of_type("broadcast").await;
        assert_eq!(
            (frame["seq"].as_i64(), frame["data"]["from"].as_str()),
            (Some(seq), Some(from))
        );
    }
}

#[tokio::test]
async fn a_gap_too_long_to_fill_tells_the_client_to_refetch() {
    // As above, but more was missed than a replay brings (`replay_max` 3): the newest come,
    // and a `resumed` frame with `complete: false` says the rest did not.
    let a = spawn_app_with(|c| c.replay_max = 3).await;
    let b = second_node(&a).await;
    let (mut client, _) = b.connect_user("9", "").await;
    for _ in 0..5 {
        a.notify("9", "like").await;
    }
    b.notify("9", "reply").await;
    assert_eq!(client.notification_seqs(3).await, vec![4, 5, 6]);
    let resumed = client.next_of_type("resumed").await;
    assert_eq!(
        (resumed["stream"].as_str(), resumed["complete"].as_bool()),
        (Some("user"), Some(false)),
        "{resumed}"
    );
    // A gap that can be filled whole is not announced: the next frame is the next
    // notification. (A badge may come first: the session checks it after the replay above,
    // and may already see the next publish's count.)
    a.notify("9", "like").await;
    b.notify("9", "follow").await;
    let mut frame = client.next().await;
    while frame["type"] == "unread" {
        frame = client.next().await;
    }
    assert_eq!(frame["notification"]["seq"], 7, "{frame}");
    assert_eq!(client.notification_seqs(1).await, vec![8]);

    // The same for a topic.
    client
        .send_json(&json!({"type": "subscribe", "topic": "article:5"}))
        .await;
    assert_eq!(client.next_of_type("subscribed").await["seq"], 0);
    for _ in 0..5 {
        a.publish_ok(&json!({"topic": "article:5"})).await;
    }
    b.publish_ok(&json!({"topic": "article:5"})).await;
    for seq in 4..=6 {
        assert_eq!(client.next_of_type("broadcast").await["seq"], seq);
    }
    let resumed = client.next_of_type("resumed").await;
    assert_eq!(
        (resumed["stream"].as_str(), resumed["complete"].as_bool()),
        (Some("topic:article:5"), Some(false)),
        "{resumed}"
    );
}

/// What one client ends with: its last badge and the last seq it got, once the socket has
/// been quiet after `seq` arrived: for a moment once the badge shows `expected`, for a few
/// seconds while it does not (a correcting frame may be slow on a loaded machine).
async fn settled_badge(
    client: &mut crate::helpers::Client,
    seq: i64,
    expected: i64,
) -> (Option<i64>, i64) {
    let (mut badge, mut last) = (None, 0);
    loop {
        let wait = if last < seq {
            crate::helpers::FRAME_TIMEOUT
        } else if badge == Some(expected) {
            std::time::Duration::from_millis(200)
        } else {
            std::time::Duration::from_secs(3)
        };
        let frame = match tokio::time::timeout(wait, client.next_event()).await {
            Ok(crate::helpers::Event::Frame(frame)) => frame,
            Ok(crate::helpers::Event::Closed(code)) => panic!("closed with {code:?}"),
            Err(_) if last >= seq => return (badge, last),
            Err(_) => panic!("seq {seq} never came (last {last})"),
        };
        match frame["type"].as_str() {
            Some("notification") => {
                badge = frame["unread"].as_i64();
                last = last.max(frame["notification"]["seq"].as_i64().unwrap_or(0));
            }
            Some("unread") => badge = frame["unread"].as_i64(),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_notification_published_during_a_resume_leaves_the_badge_right() {
    // A notification committed while a session opens comes in the replay (with the badge
    // read before it) and its live frame is dropped as a duplicate: the client must still
    // end with the badge counting it. The race is narrow, so many users try at once, in a
    // few rounds.
    let app = spawn_app().await;
    for round in 0..3 {
        let users: Vec<String> = (0..60).map(|i| format!("racer{round}-{i}")).collect();
        for _ in 0..20 {
            app.publish_ok(&json!({"to": users, "kind": "like"})).await;
        }
        let racers = users.iter().map(|user| {
            let app = &app;
            async move {
                let body = json!({"to": user, "kind": "reply"});
                let (_, (mut client, _)) =
                    tokio::join!(app.publish_ok(&body), app.connect_user(user, "&since=0"));
                let settled = settled_badge(&mut client, 21, 21).await;
                client.close().await;
                (user.clone(), settled)
            }
        });
        let results = futures_util::future::join_all(racers).await;
        let stale: Vec<_> = results
            .into_iter()
            .filter(|(_, (badge, _))| *badge != Some(21))
            .collect();
        assert!(stale.is_empty(), "badges left behind: {stale:?}");
    }
}
