//! PostgreSQL itself: several nodes on one database, the migration lock, an outage, and what
//! the operator sees. These run on the PostgreSQL of `INFORMD_TEST_POSTGRES`, else on the
//! machine's (127.0.0.1:5432, which scripts/deps/postgres.sh starts), in both runs of the suite.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::daemon::{configured, informd, publish, Daemon};
use crate::helpers::{only_id, restart, spawn_on, TestApp, TestDatabase, PUBLISH_KEY};

/// Publishers in the concurrency test, split over two nodes.
const PUBLISHERS: usize = 16;
/// Publishes each of them makes.
const PUBLISHES: usize = 20;
const USERS: [&str; 4] = ["ann", "bob", "cy", "dee"];

async fn fresh_postgres() -> Arc<TestDatabase> {
    Arc::new(
        tokio::task::spawn_blocking(TestDatabase::postgres)
            .await
            .expect("database"),
    )
}

#[tokio::test]
async fn sixteen_publishers_on_two_nodes_keep_seqs_gapless_and_badges_exact() {
    let database = fresh_postgres().await;
    let a = Arc::new(spawn_on(database.clone(), |_| {}).await);
    let b = Arc::new(spawn_on(database.clone(), |_| {}).await);
    let (mut client, _) = a.connect_user("ann", "").await;

    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let node = if p % 2 == 0 { a.clone() } else { b.clone() };
        publishers.push(tokio::spawn(async move {
            for i in 0..PUBLISHES {
                // Every publish reaches two or three users, in varying order, and the topic.
                let first = USERS[(p + i) % USERS.len()];
                let to = match i % 3 {
                    0 => json!(["ann", first, "dee"]),
                    1 => json!([first, "ann"]),
                    _ => json!(["ann", "bob", "cy"]),
                };
                let body = json!([
                    {"to": to, "kind": "like", "data": {"p": p, "i": i}},
                    {"topic": "article:1", "data": {"p": p, "i": i}},
                ]);
                node.publish_ok(&body).await;
            }
        }));
    }
    for publisher in publishers {
        publisher.await.expect("publisher");
    }

    let total_for = |user: &str| -> i64 {
        let mut n = 0;
        for p in 0..PUBLISHERS {
            for i in 0..PUBLISHES {
                let first = USERS[(p + i) % USERS.len()];
                let to: Vec<&str> = match i % 3 {
                    0 => vec!["ann", first, "dee"],
                    1 => vec![first, "ann"],
                    _ => vec!["ann", "bob", "cy"],
                };
                // A recipient named twice gets the event once.
                n += i64::from(to.contains(&user));
            }
        }
        n
    };
    for user in USERS {
        let total = total_for(user);
        let rows = a
            .count_rows(&format!(
                "SELECT count(*) FROM notifications WHERE user_id = '{user}'"
            ))
            .await;
        let distinct = a
            .count_rows(&format!(
                "SELECT count(DISTINCT seq) FROM notifications WHERE user_id = '{user}'"
            ))
            .await;
        let (lowest, highest) = (
            a.count_rows(&format!(
                "SELECT min(seq) FROM notifications WHERE user_id = '{user}'"
            ))
            .await,
            a.count_rows(&format!(
                "SELECT max(seq) FROM notifications WHERE user_id = '{user}'"
            ))
            .await,
        );
        assert_eq!(
            (rows, distinct, lowest, highest),
            (total, total, 1, total),
            "{user}: seqs are 1..={total} with no gap"
        );
        for node in [&a, &b] {
            let badge: Value = node
                .get_as(user, "/api/notifications/unread")
                .await
                .json()
                .await
                .expect("badge");
            assert_eq!(badge, json!({"unread": total, "seq": total}), "{user}");
        }
    }
    let broadcasts = (PUBLISHERS * PUBLISHES) as i64;
    assert_eq!(
        a.count_rows("SELECT count(DISTINCT seq) FROM broadcasts WHERE topic = 'article:1'")
            .await,
        broadcasts.min(a.config.topic_history_max as i64)
    );
    assert_eq!(
        a.count_rows("SELECT max(seq) FROM broadcasts WHERE topic = 'article:1'")
            .await,
        broadcasts
    );
    assert_eq!(
        a.count_rows("SELECT count(DISTINCT id) FROM notifications")
            .await,
        a.count_rows("SELECT count(*) FROM notifications").await
    );

    // A session on node A gets every notification once, in order: node B's commits reach it
    // as gaps filled from the database.
    a.notify("ann", "last").await;
    let expected: Vec<i64> = (1..=total_for("ann") + 1).collect();
    let got = client.notification_seqs(expected.len()).await;
    assert_eq!(got, expected);
}

#[tokio::test]
async fn an_idempotency_key_holds_across_nodes() {
    let database = fresh_postgres().await;
    let a = spawn_on(database.clone(), |_| {}).await;
    let b = spawn_on(database.clone(), |_| {}).await;
    let send = |node: &TestApp, key: String| {
        node.http
            .post(node.url("/publish"))
            .bearer_auth(PUBLISH_KEY)
            .header("Idempotency-Key", key)
            .json(&json!({"to": "ann", "kind": "like"}))
            .send()
    };
    for round in 0..10 {
        let key = format!("order-{round}");
        let (first, second) = tokio::join!(send(&a, key.clone()), send(&b, key.clone()));
        let mut ids = BTreeSet::new();
        for answer in [first, second] {
            let answer = answer.expect("publish");
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.expect("json");
            match status {
                200 => {
                    ids.insert(body["ids"].to_string());
                }
                // The other node was committing the same key at that moment.
                409 => assert_eq!(body["error"]["code"], "idempotency_key_in_flight", "{body}"),
                other => panic!("{key}: {other} {body}"),
            }
        }
        assert!(ids.len() <= 1, "{key}: two outcomes {ids:?}");
        // A repeat on either node answers the stored outcome.
        let repeat: Value = send(&b, key.clone())
            .await
            .expect("repeat")
            .json()
            .await
            .expect("json");
        assert_eq!(repeat["duplicate"], true, "{repeat}");
    }
    assert_eq!(
        a.count_rows("SELECT count(*) FROM notifications").await,
        10,
        "each key stored once"
    );
}

#[tokio::test]
async fn three_nodes_starting_at_once_migrate_once() {
    let database = fresh_postgres().await;
    let (a, b, c) = tokio::join!(
        spawn_on(database.clone(), |_| {}),
        spawn_on(database.clone(), |_| {}),
        spawn_on(database.clone(), |_| {})
    );
    for node in [&a, &b, &c] {
        node.notify("ann", "like").await;
    }
    assert_eq!(
        a.count_rows("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .await,
        std::fs::read_dir("migrations/postgres")
            .expect("migrations")
            .count() as i64
    );
    assert_eq!(c.count_rows("SELECT max(seq) FROM notifications").await, 3);
}

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection through it
/// dropped, new ones closed at once) and mend, as a network or a database failing would.
struct CuttableProxy {
    port: u16,
    cut: watch::Sender<bool>,
}

impl CuttableProxy {
    async fn start(upstream: (String, u16)) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (cut, watching) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut watching = watching.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watching.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        CuttableProxy { port, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// Host and port of a `postgres://` URL.
fn host_and_port(url: &str) -> (String, u16) {
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit('@').next())
        .unwrap_or("127.0.0.1:5432");
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(5432)),
        None => (authority.to_string(), 5432),
    }
}

#[tokio::test]
async fn an_unreachable_database_answers_503_promptly_and_both_recover() {
    let database = fresh_postgres().await;
    let proxy = CuttableProxy::start(host_and_port(&database.url)).await;
    let name = database.url.rsplit('/').next().expect("name").to_string();
    let through_proxy = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    let app = spawn_on(database.clone(), |c| c.database = through_proxy).await;
    app.notify("ann", "before").await;
    let ready = |app: &TestApp| {
        let request = app.http.get(app.url("/readyz")).send();
        async move { request.await.expect("readyz").status().as_u16() }
    };
    assert_eq!(ready(&app).await, 200);

    proxy.set_cut(true);
    for _ in 0..3 {
        let started = Instant::now();
        let answer = app.publish(&json!({"to": "ann", "kind": "during"})).await;
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.expect("json");
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the publish took {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        assert_eq!(ready(&app).await, 503);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    proxy.set_cut(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app.publish(&json!({"to": "ann", "kind": "after"})).await;
        if answer.status() == 200 && ready(&app).await == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing from the outage half-written: the seqs go on without a gap.
    let (mut client, _) = app.connect_user("ann", "&since=0").await;
    let frames = app
        .count_rows("SELECT count(*) FROM notifications WHERE user_id = 'ann'")
        .await;
    let seqs = client.notification_seqs(frames as usize).await;
    assert_eq!(seqs, (1..=frames).collect::<Vec<_>>());
    assert_eq!(client.next_of_type("resumed").await["complete"], true);
}

#[tokio::test]
async fn database_passwords_are_never_printed() {
    let database = fresh_postgres().await;
    let dir = tempfile::tempdir().expect("dir");
    let secret = "Sup3r-Secret-pw";
    // Trust authentication ignores the password, so the URL works with one in it.
    let url = database
        .url
        .replacen("://postgres@", &format!("://postgres:{secret}@"), 1);
    assert!(url.contains(secret), "{url}");

    let migrated = informd(dir.path())
        .args(["migrate", "--database", &url])
        .output()
        .expect("informd migrate");
    let said = String::from_utf8_lossy(&migrated.stdout).to_string()
        + &String::from_utf8_lossy(&migrated.stderr);
    assert!(migrated.status.success(), "{said}");
    assert!(said.contains("postgres:***@"), "{said}");

    let mut command = configured(dir.path());
    command.env("INFORMD_DATABASE", &url);
    let daemon = Daemon::start(command);
    let listening = daemon
        .wait_for_log("informd listening", Duration::from_secs(10))
        .await
        .expect("listening line");
    assert!(
        listening.contains("database postgres://postgres:***@"),
        "{listening}"
    );
    daemon.terminate();
    let (code, log) = daemon.exit_code().await;
    assert_eq!(code, Some(0));

    // Nor when the server cannot be reached, nor when the scheme is unknown.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let mut refusals = Vec::new();
    for database in [
        format!("postgres://postgres:{secret}@127.0.0.1:{port}/informd"),
        format!("mysql://root:{secret}@127.0.0.1/informd"),
    ] {
        let output = configured(dir.path())
            .env("INFORMD_DATABASE", &database)
            .arg("serve")
            .output()
            .expect("informd serve");
        assert!(!output.status.success());
        refusals.push(String::from_utf8_lossy(&output.stderr).to_string());
    }
    let mysql = refusals[1].lines().last().unwrap_or_default().to_string();
    assert!(
        mysql.contains("mysql://")
            && mysql.contains("sqlite:")
            && mysql.contains("postgres://")
            && mysql.contains("postgresql://"),
        "{mysql}"
    );
    assert!(
        refusals[0].contains("Connection refused"),
        "{}",
        refusals[0]
    );
    for text in log
        .iter()
        .map(String::as_str)
        .chain([said.as_str()])
        .chain(refusals.iter().map(String::as_str))
    {
        assert!(!text.contains(secret), "a password was printed: {text}");
    }
}

/// Waits (up to 10 s) until exactly `count` of informd's sessions on `app`'s database match
/// `condition` (on `pg_stat_activity`).
async fn until_informd_sessions(app: &TestApp, condition: &str, count: i64) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'informd' AND {condition}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.count_rows(&sql).await != count {
        assert!(
            Instant::now() < deadline,
            "not {count} informd session(s) with {condition}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_frozen_mid_commit_does_not_stall_the_others() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use sqlx::Connection;

    let database = fresh_postgres().await;
    let dir = tempfile::tempdir().expect("dir");
    let mut command = configured(dir.path());
    command.env("INFORMD_DATABASE", &database.url);
    let frozen = Daemon::start(command);
    let other = spawn_on(database.clone(), |_| {}).await;
    let http = reqwest::Client::new();
    for user in ["u0", "u1"] {
        let answer = publish(&http, &frozen, &json!({"to": user, "kind": "like"})).await;
        assert_eq!(answer.status(), 200);
    }

    // Hold u1's state row, so that the next commit on `frozen` stops inside its transaction,
    // having locked u0's row (rows are locked in user order)...
    let mut holder = sqlx::PgConnection::connect(&database.url)
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM user_state WHERE user_id = 'u1' FOR UPDATE")
        .execute(&mut holder)
        .await
        .expect("lock u1");
    let stuck = tokio::spawn({
        let http = http.clone();
        let url = frozen.url("/publish");
        async move {
            http.post(url)
                .bearer_auth(PUBLISH_KEY)
                .json(&json!({"to": ["u0", "u1"], "kind": "like"}))
                .send()
                .await
                .expect("publish")
        }
    });
    until_informd_sessions(&other, "state = 'active' AND wait_event_type = 'Lock'", 1).await;
    // ...then freeze the node, and let its statement finish: its transaction now sits idle,
    // holding u0's and u1's rows, and nothing on that node will ever end it.
    let pid = Pid::from_raw(i32::try_from(frozen.child.id()).expect("pid"));
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    until_informd_sessions(&other, "state = 'idle in transaction'", 1).await;

    // Another node's publish to u0 waits for the row, then gets it once PostgreSQL ends the
    // frozen transaction, instead of waiting for as long as the frozen node's connection lives.
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        other.publish(&json!({"to": "u0", "kind": "like"})),
    )
    .await
    .expect("the other node's publish was answered within 30 s");
    let waited = started.elapsed();
    assert_eq!(answer.status(), 200);
    assert!(
        waited >= Duration::from_secs(3),
        "the publish did not wait for the frozen node's lock ({waited:?}): the test tested nothing"
    );

    // The frozen node wakes to a transaction that was rolled back: its publish failed, and
    // said so; its next one goes through.
    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    let failed = tokio::time::timeout(Duration::from_secs(10), stuck)
        .await
        .expect("the frozen node answered once woken")
        .expect("publish task");
    assert_eq!(failed.status(), 503);
    let body: Value = failed.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let answer = publish(&http, &frozen, &json!({"to": "u1", "kind": "like"})).await;
    assert_eq!(answer.status(), 200);

    // Nothing of the rolled-back publish was kept, and the badges match the rows.
    for (user, stored) in [("u0", 2), ("u1", 2)] {
        let rows = other
            .count_rows(&format!(
                "SELECT count(*) FROM notifications WHERE user_id = '{user}'"
            ))
            .await;
        let badge = other
            .count_rows(&format!(
                "SELECT unread FROM user_state WHERE user_id = '{user}'"
            ))
            .await;
        assert_eq!((rows, badge), (stored, stored), "{user}");
    }
}

/// A node remembers its recipients' open groups, and checks them against each user's state
/// row before it uses them (DECISIONS 104). Rows changed by hand, behind informd's back,
/// leave that row as it was: the fold's guard and the unique index of open groups find them,
/// and the publish still does what it would have done without the memory.
#[tokio::test]
async fn open_groups_changed_by_hand_are_found_and_not_trusted() {
    let app = spawn_on(fresh_postgres().await, |_| {}).await;
    let like = |group: &str, who: &str| json!({"to": "ann", "kind": "like", "group": group, "actor": {"id": who}});
    let first = only_id(&app.publish_ok(&like("post:1", "bob")).await);
    assert_eq!(only_id(&app.publish_ok(&like("post:1", "cy")).await), first);

    // Read by hand, the badge left alone: folding into it would reopen a read item.
    app.execute(&format!(
        "UPDATE notifications SET read = true WHERE id = {first}"
    ))
    .await;
    let next = only_id(&app.publish_ok(&like("post:1", "dee")).await);
    assert_ne!(next, first, "an event folded into a read notification");
    let count = |id: i64| format!("SELECT event_count FROM notifications WHERE id = {id}");
    assert_eq!(app.count_rows(&count(first)).await, 2);
    assert_eq!(app.count_rows(&count(next)).await, 1);

    // An unread item of another group, made by hand: a new row of that group would be a
    // second open one.
    let made = app.count_rows("SELECT nextval('event_ids')").await;
    app.execute(&format!(
        "INSERT INTO notifications (id, user_id, seq, kind, created_at, group_key) \
         VALUES ({made}, 'ann', 1000, 'like', 0, 'post:2')"
    ))
    .await;
    let answer = app.publish_ok(&like("post:2", "eve")).await;
    assert_eq!(only_id(&answer), made, "{answer}");
    assert_eq!(app.count_rows(&count(made)).await, 2);
    let open = "SELECT count(*) FROM notifications WHERE user_id = 'ann' AND NOT read";
    assert_eq!(app.count_rows(open).await, 2);
}

/// Grouped runs find open groups and folded rows by probing indexes, and never read
/// `notifications` whole: the sessions they run on are told to plan that way (DECISIONS 99
/// and 107). Left to PostgreSQL, plans made while the table is small scan it, and a plan
/// cached then goes on scanning it once it is large. The same publishes without `group`
/// scan nothing (they only insert), so both must leave the table's scan count where
/// starting informd left it. And a fold changes no indexed column, so each stays on its
/// page (HOT, DECISIONS 108): here the rows fit on one page, so every update must be HOT.
#[tokio::test]
async fn grouped_publishes_probe_indexes_and_fold_in_place() {
    let mut scans = Vec::new();
    for grouped in [false, true] {
        let app = spawn_on(fresh_postgres().await, |_| {}).await;
        for round in 0..8 {
            for user in USERS {
                let mut event =
                    json!({"to": user, "kind": "like", "actor": {"id": format!("a{round}")}});
                if grouped {
                    event["group"] = json!(format!("post:{}", round % 3));
                }
                app.publish_ok(&event).await;
            }
        }
        // A session's statistics are written when it ends: stop this node, and read them
        // once its sessions are gone (through a node started on the same database).
        let stopped_at = app
            .count_rows("SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::int8")
            .await;
        let app = restart(app).await;
        let old = format!("backend_start < to_timestamp({stopped_at} / 1e6)");
        until_informd_sessions(&app, &old, 0).await;
        let folded = "SELECT count(*) FROM notifications WHERE event_count > 1";
        assert_eq!(app.count_rows(folded).await > 0, grouped);
        let stat = |column: &str| {
            format!("SELECT {column} FROM pg_stat_user_tables WHERE relname = 'notifications'")
        };
        scans.push(app.count_rows(&stat("seq_scan")).await);
        let updates = app.count_rows(&stat("n_tup_upd")).await;
        assert_eq!(updates > 0, grouped, "folds: {updates}");
        assert_eq!(
            app.count_rows(&stat("n_tup_hot_upd")).await,
            updates,
            "every fold in place"
        );
    }
    assert_eq!(
        scans[1], scans[0],
        "sequential scans of notifications: plain, grouped"
    );
}
