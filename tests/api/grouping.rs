//! Grouping (`group` on a notification): events of one group fold into the recipient's unread
//! notification of that group, live, on resume and in the inbox; the badge counts it once; a
//! read one is never reopened; and concurrent publishers on two nodes never split a group or
//! lose a count.

use serde_json::{json, Value};

use crate::daemon::{configured, token, Daemon};
use crate::helpers::{only_id, spawn_app, Client, TestApp};

const GROUP: &str = "like:article:99";

/// A like of article 99 by `who`, to `to`.
fn like(to: &str, who: &str) -> Value {
    json!({
        "to": to, "kind": "like", "group": GROUP,
        "actor": {"id": who, "name": who},
        "subject": {"type": "article", "id": 99, "title": "Hello"}
    })
}

fn actor_ids(notification: &Value) -> Vec<&str> {
    notification["actors"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
        .unwrap_or_default()
}

async fn inbox(app: &TestApp, user: &str) -> Value {
    let response = app.get_as(user, "/api/notifications").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn three_likes_become_one_unread_item_live_on_resume_and_in_the_inbox() {
    let app = spawn_app().await;
    let (mut live, _) = app.connect_user("author", "").await;

    let first = only_id(&app.publish_ok(&like("author", "alice")).await);
    assert_eq!(
        only_id(&app.publish_ok(&like("author", "bob")).await),
        first
    );
    // A plain notification in between: it keeps its own row, and its seq stays where it is.
    let follow = only_id(&app.notify("author", "follow").await);
    assert_ne!(follow, first);
    assert_eq!(
        only_id(&app.publish_ok(&like("author", "carol")).await),
        first
    );

    // Live: every event arrives, the grouped item with the same id each time.
    let mut frames = Vec::new();
    for _ in 0..4 {
        frames.push(live.next_of_type("notification").await);
    }
    let seen: Vec<(i64, i64, i64)> = frames
        .iter()
        .map(|f| {
            let n = &f["notification"];
            (
                n["id"].as_i64().unwrap(),
                n["seq"].as_i64().unwrap(),
                n["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![(first, 1, 1), (first, 2, 2), (follow, 3, 1), (first, 4, 3)]
    );
    let unread: Vec<i64> = frames
        .iter()
        .map(|f| f["unread"].as_i64().unwrap())
        .collect();
    assert_eq!(
        unread,
        vec![1, 1, 2, 2],
        "a folded event leaves the badge alone"
    );
    let latest = &frames[3]["notification"];
    assert_eq!(actor_ids(latest), vec!["carol", "bob", "alice"]);
    assert_eq!(latest["actor"]["id"], "carol");
    assert_eq!(latest["group"], GROUP);
    assert_eq!(latest["subject"]["title"], "Hello");
    assert!(latest["updated_at"].as_str().unwrap() >= latest["created_at"].as_str().unwrap());
    assert_eq!(frames[2]["notification"]["group"], Value::Null);
    assert_eq!(actor_ids(&frames[2]["notification"]), Vec::<&str>::new());
    live.close().await;

    // Resume from before everything: each notification once, in its current state; the seqs
    // the updates left behind (1 and 2) do not make the replay incomplete.
    let (mut resumed, welcome) = app.connect_user("author", "&since=0").await;
    assert_eq!(
        (welcome["seq"].as_i64(), welcome["unread"].as_i64()),
        (Some(4), Some(2))
    );
    let replay = [
        resumed.next_of_type("notification").await,
        resumed.next_of_type("notification").await,
    ];
    assert_eq!(replay[0]["notification"]["id"].as_i64(), Some(follow));
    assert_eq!(replay[1]["notification"]["id"].as_i64(), Some(first));
    assert_eq!(replay[1]["notification"]["seq"], 4);
    assert_eq!(replay[1]["notification"]["count"], 3);
    assert_eq!(
        actor_ids(&replay[1]["notification"]),
        vec!["carol", "bob", "alice"]
    );
    assert_eq!(
        resumed.next_of_type("resumed").await,
        json!({"type": "resumed", "stream": "user", "replayed": 2, "complete": true})
    );
    resumed.close().await;
    let (mut later, _) = app.connect_user("author", "&since=3").await;
    assert_eq!(later.notification_seqs(1).await, vec![4]);
    assert_eq!(later.next_of_type("resumed").await["complete"], true);
    later.close().await;

    // The inbox shows the item once, at its latest position.
    let page = inbox(&app, "author").await;
    let items = page["items"].as_array().unwrap();
    let ids: Vec<i64> = items.iter().map(|n| n["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![first, follow]);
    assert_eq!(
        (items[0]["seq"].as_i64(), items[0]["count"].as_i64()),
        (Some(4), Some(3))
    );
    assert_eq!(page["unread"], 2);
    let unread_only = app.get_as("author", "/api/notifications?unread=true").await;
    let unread_only: Value = unread_only.json().await.unwrap();
    assert_eq!(unread_only["items"].as_array().map(Vec::len), Some(2));

    // `up_to` reads by seq: up to 3 covers the follow, not the like that moved to 4.
    let read = app
        .post_as("author", "/api/notifications/read", &json!({"up_to": 3}))
        .await;
    assert_eq!(read.json::<Value>().await.unwrap()["unread"], 1);
}

#[tokio::test]
async fn once_read_the_next_event_of_the_group_starts_a_new_item() {
    let app = spawn_app().await;
    let first = only_id(&app.publish_ok(&like("author", "alice")).await);
    assert_eq!(
        only_id(&app.publish_ok(&like("author", "bob")).await),
        first
    );
    let read = app
        .post_as(
            "author",
            "/api/notifications/read",
            &json!({"ids": [first]}),
        )
        .await;
    assert_eq!(read.json::<Value>().await.unwrap()["unread"], 0);

    let (mut live, _) = app.connect_user("author", "").await;
    let second = only_id(&app.publish_ok(&like("author", "carol")).await);
    assert_ne!(second, first, "a read item is never reopened");
    let frame = live.next_of_type("notification").await;
    assert_eq!(frame["notification"]["id"].as_i64(), Some(second));
    assert_eq!(
        (
            frame["notification"]["count"].as_i64(),
            frame["unread"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(actor_ids(&frame["notification"]), vec!["carol"]);
    // And the new one groups in turn.
    assert_eq!(
        only_id(&app.publish_ok(&like("author", "alice")).await),
        second
    );
    let frame = live.next_of_type("notification").await;
    assert_eq!(frame["notification"]["count"], 2);
    assert_eq!(frame["unread"], 1);

    let page = inbox(&app, "author").await;
    let items = page["items"].as_array().unwrap();
    let state: Vec<(i64, i64, bool)> = items
        .iter()
        .map(|n| {
            (
                n["id"].as_i64().unwrap(),
                n["count"].as_i64().unwrap(),
                n["read"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(state, vec![(second, 2, false), (first, 2, true)]);
    assert_eq!(page["unread"], 1);
}

#[tokio::test]
async fn several_events_of_a_group_in_one_batch_fold_into_one_item() {
    let app = spawn_app().await;
    let answer = app
        .publish_ok(&json!([
            like("author", "alice"),
            like("author", "bob"),
            like("author", "alice")
        ]))
        .await;
    let ids = answer["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id == &ids[0]), "{answer}");
    let page = inbox(&app, "author").await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["count"], 3);
    assert_eq!(actor_ids(&page["items"][0]), vec!["alice", "bob"]);
    assert_eq!(page["unread"], 1);
}

const PUBLISHERS: usize = 16;
const AUTHORS: [&str; 3] = ["ua", "ub", "uc"];

/// Two informd processes on one database (SQLite file or PostgreSQL).
fn two_nodes(dir: &std::path::Path) -> (Daemon, Daemon) {
    (
        Daemon::start(configured(dir)),
        Daemon::start(configured(dir)),
    )
}

async fn inbox_on(http: &reqwest::Client, node: &Daemon, user: &str) -> Value {
    http.get(node.url("/api/notifications"))
        .bearer_auth(token(user))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_publishers_on_two_nodes_make_one_item_of_count_sixteen() {
    let dir = tempfile::TempDir::new().unwrap();
    let (a, b) = two_nodes(dir.path());
    let http = reqwest::Client::new();
    let urls = [a.url("/publish"), b.url("/publish")];
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(PUBLISHERS));
    let publishers = (0..PUBLISHERS).map(|p| {
        let (http, url, start) = (http.clone(), urls[p % 2].clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            let mut body = like("x", &format!("reader{p}"));
            body["to"] = json!(AUTHORS);
            let response = http
                .post(url)
                .bearer_auth(crate::helpers::PUBLISH_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        })
    });
    let answers = futures_util::future::join_all(publishers).await;
    for author in AUTHORS {
        let page = inbox_on(&http, &a, author).await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{author}: {page}");
        assert_eq!(items[0]["count"], PUBLISHERS, "{author}: {page}");
        assert_eq!(items[0]["seq"], PUBLISHERS);
        assert_eq!(actor_ids(&items[0]).len(), 3);
        assert_eq!(page["unread"], 1);
        // The other node reads the same, and a resume from 0 carries it once, complete.
        assert_eq!(inbox_on(&http, &b, author).await["items"], page["items"]);
        let url = format!(
            "ws://127.0.0.1:{}/inform?token={}&since=0",
            b.port,
            token(author)
        );
        let mut client = Client::connect(&url, &[]).await.unwrap();
        client.next_of_type("welcome").await;
        let replayed = client.next_of_type("notification").await;
        assert_eq!(replayed["notification"]["count"], PUBLISHERS);
        assert_eq!(client.next_of_type("resumed").await["complete"], true);
    }
    // Every publish answered the item's id, the same for all.
    let ids: Vec<Value> = answers
        .into_iter()
        .map(|a| a.unwrap()["ids"].clone())
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
}
