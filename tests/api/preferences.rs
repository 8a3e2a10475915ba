//! Preferences: `GET`/`PUT /api/preferences`, muted kinds and groups left out of publishes
//! (counted in `muted`), muted topics kept from sessions, and all of it on every node.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Client, TestApp};
use crate::redis::{two_nodes, RedisServer};

/// `PUT /api/preferences` as `user`.
async fn put_preferences(app: &TestApp, user: &str, body: &Value) -> reqwest::Response {
    app.http
        .put(app.url("/api/preferences"))
        .bearer_auth(app.token(user))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Sets `user`'s preferences and checks the answer.
async fn mute(app: &TestApp, user: &str, body: &Value) {
    let response = put_preferences(app, user, body).await;
    assert_eq!(response.status(), 200);
    let stored: Value = response.json().await.unwrap();
    for list in ["muted_kinds", "muted_groups", "muted_topics"] {
        let expected = body.get(list).cloned().unwrap_or_else(|| json!([]));
        assert_eq!(stored[list], expected, "{list}");
    }
}

/// `GET path` as `user`, which must answer 200 with JSON.
async fn get_json(app: &TestApp, user: &str, path: &str) -> Value {
    let response = app.get_as(user, path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn preferences_of(app: &TestApp, user: &str) -> Value {
    get_json(app, user, "/api/preferences").await
}

/// The kinds in `user`'s inbox, newest first.
async fn inbox_kinds(app: &TestApp, user: &str) -> Vec<String> {
    let page = get_json(app, user, "/api/notifications").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_string())
        .collect()
}

/// A session for `user` subscribed to `topics`.
async fn subscribed(app: &TestApp, user: &str, topics: &[&str]) -> Client {
    let (mut client, _) = app.connect_user(user, "").await;
    for topic in topics {
        client
            .send_json(&json!({"type": "subscribe", "topic": topic}))
            .await;
        client.next_of_type("subscribed").await;
    }
    client
}

/// Publishes a broadcast on `muted_topic`, then one on `other`, and returns the topic of the
/// first broadcast `client` receives: `other` when the muted one never came.
async fn first_broadcast_after(
    publisher: &TestApp,
    client: &mut Client,
    muted_topic: &str,
    other: &str,
) -> Value {
    publisher
        .publish_ok(&json!({"topic": muted_topic, "data": {"n": 1}}))
        .await;
    publisher
        .publish_ok(&json!({"topic": other, "data": {"n": 2}}))
        .await;
    client.next_of_type("broadcast").await
}

#[tokio::test]
async fn a_muted_kind_is_neither_stored_nor_pushed_and_is_counted() {
    let app = spawn_app().await;
    mute(&app, "1", &json!({"muted_kinds": ["follow"]})).await;
    let (mut client, _) = app.connect_user("1", "").await;

    let answer = app
        .publish_ok(&json!({"to": ["1", "2"], "kind": "follow"}))
        .await;
    assert_eq!(answer["muted"], 1);
    assert_eq!(answer["recipients"], 1);
    assert_eq!(answer["ids"].as_array().unwrap().len(), 1);

    // The next frame the muted user gets is the like, first in their stream, badge 1.
    app.notify("1", "like").await;
    let frame = client.next_of_type("notification").await;
    assert_eq!(frame["notification"]["kind"], "like");
    assert_eq!(frame["notification"]["seq"], 1);
    assert_eq!(frame["unread"], 1);
    assert_eq!(inbox_kinds(&app, "1").await, ["like"]);
    assert_eq!(inbox_kinds(&app, "2").await, ["follow"]);
    let stored = app
        .count_rows("SELECT COUNT(*) FROM notifications WHERE user_id = '1' AND kind = 'follow'")
        .await;
    assert_eq!(stored, 0);
    // Without mutes the answer still says so.
    assert_eq!(app.notify("2", "follow").await["muted"], 0);
}

#[tokio::test]
async fn a_muted_group_is_left_out_and_other_groups_still_arrive() {
    let app = spawn_app().await;
    mute(&app, "1", &json!({"muted_groups": ["like:article:9"]})).await;
    let (mut client, _) = app.connect_user("1", "").await;

    let answer = app
        .publish_ok(&json!([
            {"to": ["1", "2"], "kind": "like", "group": "like:article:9"},
            {"to": ["1", "2"], "kind": "reply", "group": "reply:article:9"},
        ]))
        .await;
    assert_eq!(answer["muted"], 1);
    assert_eq!(answer["recipients"], 3);
    let frame = client.next_of_type("notification").await;
    assert_eq!(frame["notification"]["kind"], "reply");
    assert_eq!(frame["unread"], 1);
    assert_eq!(inbox_kinds(&app, "1").await, ["reply"]);
    assert_eq!(inbox_kinds(&app, "2").await, ["reply", "like"]);
    let badge = get_json(&app, "1", "/api/notifications/unread").await;
    assert_eq!(badge["unread"], 1);
}

#[tokio::test]
async fn a_publish_every_recipient_muted_answers_200_and_repeats_the_same() {
    let app = spawn_app().await;
    mute(&app, "1", &json!({"muted_kinds": ["follow", "like"]})).await;
    let body = json!([{"to": "1", "kind": "follow"}, {"to": "1", "kind": "like"}]);
    let answer = app.publish_ok(&body).await;
    assert_eq!(answer["muted"], 2);
    assert_eq!(answer["recipients"], 0);
    assert_eq!(answer["ids"], json!([]));

    // With an idempotency key: remembered, and a repeat answers the same, even once the
    // preferences changed.
    let keyed = |app: &TestApp| {
        app.http
            .post(app.url("/publish"))
            .bearer_auth(crate::helpers::PUBLISH_KEY)
            .header("Idempotency-Key", "all-muted-1")
            .json(&body)
            .send()
    };
    let first: Value = keyed(&app).await.unwrap().json().await.unwrap();
    assert_eq!(first["muted"], 2);
    mute(&app, "1", &json!({})).await;
    let repeat: Value = keyed(&app).await.unwrap().json().await.unwrap();
    assert_eq!(repeat["duplicate"], true);
    assert_eq!(repeat["muted"], 2);
    assert_eq!(repeat["ids"], first["ids"]);
    assert!(inbox_kinds(&app, "1").await.is_empty());
    // Unmuted now: the same body stores both.
    assert_eq!(app.publish_ok(&body).await["muted"], 0);
    assert_eq!(inbox_kinds(&app, "1").await, ["like", "follow"]);
}

#[tokio::test]
async fn preferences_read_back_replace_whole_and_survive_a_restart() {
    let app = spawn_app().await;
    assert_eq!(
        preferences_of(&app, "1").await,
        json!({"muted_kinds": [], "muted_groups": [], "muted_topics": []})
    );
    let all = json!({
        "muted_kinds": ["follow"],
        "muted_groups": ["reply:article:99"],
        "muted_topics": ["article:7"]
    });
    mute(&app, "1", &all).await;
    assert_eq!(preferences_of(&app, "1").await, all);
    // Another user is untouched.
    assert_eq!(preferences_of(&app, "2").await["muted_kinds"], json!([]));
    let app = crate::helpers::restart(app).await;
    assert_eq!(preferences_of(&app, "1").await, all);
    assert_eq!(app.notify("1", "follow").await["muted"], 1);
    // PUT replaces the whole document: lists left out are emptied.
    mute(&app, "1", &json!({"muted_kinds": ["like"]})).await;
    assert_eq!(
        preferences_of(&app, "1").await,
        json!({"muted_kinds": ["like"], "muted_groups": [], "muted_topics": []})
    );
    assert_eq!(app.notify("1", "follow").await["muted"], 0);
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_field_and_strangers_get_401() {
    let app = spawn_app().await;
    let many: Vec<String> = (0..257).map(|i| format!("k{i}")).collect();
    let cases = [
        (json!(["follow"]), "body"),
        (json!({"muted_users": ["7"]}), "muted_users"),
        (json!({"muted_kinds": "follow"}), "muted_kinds"),
        (json!({"muted_kinds": ["ok", "Not Ok"]}), "muted_kinds[1]"),
        (json!({"muted_groups": ["g", ""]}), "muted_groups[1]"),
        (json!({"muted_groups": [7]}), "muted_groups[0]"),
        (
            json!({"muted_topics": ["article:1", "no spaces", "x"]}),
            "muted_topics[1]",
        ),
        (json!({"muted_topics": ["global"]}), "muted_topics[0]"),
        (json!({"muted_kinds": many}), "muted_kinds"),
    ];
    for (body, field) in cases {
        let response = put_preferences(&app, "1", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_field", "{body}");
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    let not_json = app
        .http
        .put(app.url("/api/preferences"))
        .bearer_auth(app.token("1"))
        .body("{muted")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let error: Value = not_json.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_json");
    // Nothing was stored by any of them.
    assert_eq!(preferences_of(&app, "1").await["muted_kinds"], json!([]));

    for request in [
        app.http.get(app.url("/api/preferences")),
        app.http
            .put(app.url("/api/preferences"))
            .json(&json!({"muted_kinds": ["follow"]})),
        app.http
            .put(app.url("/api/preferences"))
            .bearer_auth("not-a-token")
            .json(&json!({"muted_kinds": ["follow"]})),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["code"].is_string());
    }
    let post = app
        .http
        .post(app.url("/api/preferences"))
        .bearer_auth(app.token("1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn a_muted_topic_stops_reaching_an_open_session_until_unmuted() {
    let app = spawn_app().await;
    let mut client = subscribed(&app, "5", &["article:7", "article:8"]).await;
    let mut other = subscribed(&app, "6", &["article:7"]).await;
    let first = first_broadcast_after(&app, &mut client, "article:7", "article:8").await;
    assert_eq!(first["topic"], "article:7", "not muted yet");
    client.next_of_type("broadcast").await; // article:8

    mute(&app, "5", &json!({"muted_topics": ["article:7"]})).await;
    let first = first_broadcast_after(&app, &mut client, "article:7", "article:8").await;
    assert_eq!(first["topic"], "article:8", "the muted topic still arrived");
    // Another user's session on the topic still gets it.
    let seen: Vec<i64> = [
        other.next_of_type("broadcast").await,
        other.next_of_type("broadcast").await,
    ]
    .iter()
    .map(|b| b["seq"].as_i64().unwrap())
    .collect();
    assert_eq!(seen, [1, 2]);

    // A subscribe that asks for a replay replays nothing of a muted topic.
    let mut late = subscribed(&app, "5", &[]).await;
    late.send_json(&json!({"type": "subscribe", "topic": "article:7", "since": 0}))
        .await;
    let resumed = late.next_of_type("resumed").await;
    assert_eq!(resumed["replayed"], 0, "{resumed}");

    mute(&app, "5", &json!({})).await;
    app.publish_ok(&json!({"topic": "article:7", "data": {"n": 3}}))
        .await;
    let back = client.next_of_type("broadcast").await;
    assert_eq!(back["topic"], "article:7");
    // The broadcast sent while muted is not replayed as a gap.
    assert_eq!(back["seq"], 3);
}

/// Waits until `app` answers `user`'s preferences with `expected` (another node's change has
/// arrived).
async fn wait_for_preferences(app: &TestApp, user: &str, expected: &Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while preferences_of(app, user).await != *expected {
        assert!(
            Instant::now() < deadline,
            "the change never reached the node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn preferences_changed_on_one_node_hold_on_another() {
    let redis = RedisServer::start();
    let (first, second) = two_nodes(&redis).await;
    let mut client = subscribed(&second, "4", &["article:7", "article:8"]).await;
    let prefs =
        json!({"muted_kinds": ["follow"], "muted_groups": [], "muted_topics": ["article:7"]});
    mute(&first, "4", &prefs).await;
    wait_for_preferences(&second, "4", &prefs).await;

    let answer = second.notify("4", "follow").await;
    assert_eq!(answer["muted"], 1);
    let stored = second
        .count_rows("SELECT COUNT(*) FROM notifications WHERE user_id = '4'")
        .await;
    assert_eq!(stored, 0);
    let first_seen = first_broadcast_after(&first, &mut client, "article:7", "article:8").await;
    assert_eq!(
        first_seen["topic"], "article:8",
        "the muted topic reached node two"
    );

    // Unmuting on the second node reaches the first.
    let none = json!({"muted_kinds": [], "muted_groups": [], "muted_topics": []});
    mute(&second, "4", &none).await;
    wait_for_preferences(&first, "4", &none).await;
    assert_eq!(first.notify("4", "follow").await["muted"], 0);
}

#[tokio::test]
async fn a_node_that_missed_a_change_while_redis_was_away_catches_up() {
    let mut redis = RedisServer::start();
    let (first, second) = two_nodes(&redis).await;
    redis.stop();
    // A change whose announcement is lost for good (its node died before Redis came back),
    // written as that node would have: only reading everything again on resubscribing brings
    // it to the others.
    first
        .execute(
            "INSERT INTO preferences (user_id, document, updated_at) VALUES ('9', \
             '{\"muted_kinds\":[\"follow\"],\"muted_groups\":[],\"muted_topics\":[]}', 0)",
        )
        .await;
    redis.restart();
    let prefs = json!({"muted_kinds": ["follow"], "muted_groups": [], "muted_topics": []});
    wait_for_preferences(&second, "9", &prefs).await;
    assert_eq!(second.notify("9", "follow").await["muted"], 1);
}
