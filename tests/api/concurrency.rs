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

/// Makes the database itself refuse every notification of `kind`, as a constraint an
/// operator added would: informd's checks let it through, the `INSERT` fails.
async fn database_refuses_kind(app: &crate::helpers::TestApp, kind: &str) {
    if app.database.is_postgres() {
        app.execute(&format!(
            "CREATE FUNCTION refuse_kind() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.kind = '{kind}' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$"
        ))
        .await;
        app.execute(
            "CREATE TRIGGER refuse_kind BEFORE INSERT ON notifications \
             FOR EACH ROW EXECUTE FUNCTION refuse_kind()",
        )
        .await;
    } else {
        app.execute(&format!(
            "CREATE TRIGGER refuse_kind BEFORE INSERT ON notifications \
             WHEN NEW.kind = '{kind}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ))
        .await;
    }
}

/// The writer commits concurrent publishes as one group; when the database refuses one of
/// them, the others still commit, in order, and only the refused one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_database_refuses_fails_alone() {
    const PUBLISHES: usize = 200;
    let app = spawn_app().await;
    database_refuses_kind(&app, "refused").await;
    let (mut tab, _) = app.connect_user("erin", "").await;
    let refused = |i: usize| i % 10 == 9;
    let publishes = (0..PUBLISHES).map(|i| {
        let http = app.http.clone();
        let url = app.url("/publish");
        tokio::spawn(async move {
            let kind = if refused(i) { "refused" } else { "like" };
            http.post(&url)
                .bearer_auth(crate::helpers::PUBLISH_KEY)
                .json(&json!({"to": "erin", "kind": kind, "data": {"i": i}}))
                .send()
                .await
                .expect("publish")
                .status()
        })
    });
    let publishes: Vec<_> = publishes.collect();
    for (i, publish) in publishes.into_iter().enumerate() {
        let status = publish.await.unwrap();
        if refused(i) {
            assert_eq!(status, 503, "publish {i}, refused by the database");
        } else {
            assert_eq!(status, 200, "publish {i}");
        }
    }
    let accepted = (0..PUBLISHES).filter(|i| !refused(*i)).count() as i64;
    let mut delivered = Vec::new();
    for seq in 1..=accepted {
        let frame = tab.next_of_type("notification").await;
        assert_eq!(frame["notification"]["seq"], seq, "gapless, in order");
        assert_eq!(frame["unread"], seq);
        delivered.push(frame["notification"]["data"]["i"].as_i64().unwrap());
    }
    delivered.sort_unstable();
    let expected: Vec<i64> = (0..PUBLISHES as i64)
        .filter(|i| !refused(*i as usize))
        .collect();
    assert_eq!(delivered, expected, "every accepted publish once");
    assert_eq!(
        app.count_rows("SELECT unread FROM user_state WHERE user_id = 'erin'")
            .await,
        accepted,
        "the badge in the database"
    );
}
