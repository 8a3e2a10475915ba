//! Many publishers at once: seqs stay gapless per user, every tab gets everything once, and
//! the pushed unread count matches the database.

use std::collections::HashMap;

use serde_json::json;

use crate::helpers::spawn_app;

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const PUBLISHERS: usize = 20;
const EVENTS_EACH: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_publishers_keep_every_stream_gapless() {
    let app = spawn_app().await;
    let mut tabs = Vec::new();
    for user in USERS {
        for _ in 0..2 {
            tabs.push((user, app.connect_user(user, "").await.0));
        }
    }
    let publishers = (0..PUBLISHERS).map(|p| {
        let http = app.http.clone();
        let url = app.url("/publish");
        tokio::spawn(async move {
            for e in 0..EVENTS_EACH {
                // Every event goes to every user; alternate single events and small batches.
                let body = if e % 5 == 0 {
                    json!([{"to": USERS, "kind": "like", "data": {"p": p, "e": e}}])
                } else {
                    json!({"to": USERS, "kind": "reply", "data": {"p": p, "e": e}})
                };
                let response = http
                    .post(&url)
                    .bearer_auth(crate::helpers::PUBLISH_KEY)
                    .json(&body)
                    .send()
                    .await
                    .expect("publish");
                assert_eq!(response.status(), 200);
            }
        })
    });
    let readers = tabs.into_iter().map(|(user, mut client)| {
        tokio::spawn(async move {
            let total = PUBLISHERS * EVENTS_EACH;
            let mut seqs = Vec::with_capacity(total);
            let mut last_unread = 0;
            let mut origins = HashMap::new();
            for _ in 0..total {
                let frame = client.next_of_type("notification").await;
                seqs.push(frame["notification"]["seq"].as_i64().unwrap());
                last_unread = frame["unread"].as_i64().unwrap();
                let data = &frame["notification"]["data"];
                *origins
                    .entry((data["p"].as_i64().unwrap(), data["e"].as_i64().unwrap()))
                    .or_insert(0) += 1;
            }
            (user, seqs, last_unread, origins)
        })
    });
    let readers: Vec<_> = readers.collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let total = (PUBLISHERS * EVENTS_EACH) as i64;
    for reader in readers {
        let (user, seqs, last_unread, origins) = reader.await.unwrap();
        assert_eq!(
            seqs,
            (1..=total).collect::<Vec<_>>(),
            "{user}: seqs not 1..N in order"
        );
        assert_eq!(last_unread, total, "{user}: last pushed unread");
        assert_eq!(
            origins.len(),
            total as usize,
            "{user}: some event missing or doubled"
        );
        assert!(origins.values().all(|n| *n == 1));
        let unread_in_db = app
            .count_rows(&format!(
                "SELECT unread FROM user_state WHERE user_id = '{user}'"
            ))
            .await;
        let rows = app
            .count_rows(&format!(
                "SELECT count(*) FROM notifications WHERE user_id = '{user}' AND NOT read"
            ))
            .await;
        assert_eq!((unread_in_db, rows), (total, total));
        let distinct_seqs = app
            .count_rows(&format!(
                "SELECT count(DISTINCT seq) FROM notifications WHERE user_id = '{user}'"
            ))
            .await;
        assert_eq!(distinct_seqs, total);
    }
}
