//! The real `informd` binary: defaults with no config, graceful SIGTERM, the CLI, and logs
//! that never contain a token or key.

use serde_json::{json, Value};

use std::path::Path;

use crate::daemon::{configured, informd, publish, refused_at_start, token, Daemon};
use crate::helpers::{code, Client, JWT_SECRET, PUBLISH_KEY};

#[tokio::test]
async fn with_no_configuration_it_runs_on_sqlite_and_warns_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(informd(dir.path()));
    let health: Value = reqwest::get(daemon.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready = reqwest::get(daemon.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(dir.path().join("informd.db").exists());
    // The development key works, and says so in the log.
    let response = reqwest::Client::new()
        .post(daemon.url("/publish"))
        .bearer_auth(informd::config::DEV_PUBLISH_KEY)
        .json(&json!({"to": "1", "kind": "like"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    daemon.terminate();
    let (code, log) = daemon.exit_code().await;
    assert_eq!(code, Some(0));
    assert!(log
        .iter()
        .any(|l| l.contains("WARN") && l.contains("DEVELOPMENT secret")));
    assert!(log
        .iter()
        .any(|l| l.contains("WARN") && l.contains("DEVELOPMENT key")));
}

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_finishes_publishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let http = reqwest::Client::new();
    let url = format!("ws://127.0.0.1:{}/inform?token={}", daemon.port, token("9"));
    let mut client = Client::connect(&url, &[]).await.unwrap();
    client.next_of_type("welcome").await;
    for _ in 0..5 {
        assert_eq!(
            publish(&http, &daemon, &json!({"to": "9", "kind": "like"}))
                .await
                .status(),
            200
        );
    }
    assert_eq!(client.notification_seqs(5).await, vec![1, 2, 3, 4, 5]);

    // Publishers keep going while the signal arrives.
    let port = daemon.port;
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let http = http.clone();
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for _ in 0..200 {
                    let sent = http
                        .post(format!("http://127.0.0.1:{port}/publish"))
                        .bearer_auth(PUBLISH_KEY)
                        .json(&json!({"to": "9", "kind": "reply"}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            let body: Value = r.json().await.unwrap();
                            accepted.push(body["ids"][0].as_i64().unwrap());
                        }
                        Ok(r) => assert_eq!(r.status(), 503, "refused while stopping"),
                        Err(_) => break, // the listener is gone
                    }
                }
                accepted
            })
        })
        .collect();
    // Wait until publishing is under way, then signal.
    client.next_of_type("notification").await;
    daemon.terminate();
    assert_eq!(client.closed().await, code(1001));
    let (exit, _) = daemon.exit_code().await;
    assert_eq!(exit, Some(0));
    let mut accepted = Vec::new();
    for p in publishers {
        accepted.extend(p.await.unwrap());
    }
    assert!(!accepted.is_empty());

    // Every accepted publish is in the database, and the client resumes on a new process.
    let daemon = Daemon::start(configured(dir.path()));
    let url = format!(
        "ws://127.0.0.1:{}/inform?token={}&since=5",
        daemon.port,
        token("9")
    );
    let mut client = Client::connect(&url, &[]).await.unwrap();
    let welcome = client.next_of_type("welcome").await;
    let latest = welcome["seq"].as_i64().unwrap();
    assert_eq!(
        latest,
        5 + accepted.len() as i64,
        "accepted publishes all stored"
    );
    let mut ids = Vec::new();
    for seq in 6..=latest {
        let frame = client.next_of_type("notification").await;
        assert_eq!(frame["notification"]["seq"], seq);
        ids.push(frame["notification"]["id"].as_i64().unwrap());
    }
    accepted.sort();
    ids.sort();
    assert_eq!(ids, accepted);
    assert_eq!(client.next_of_type("resumed").await["complete"], true);
}

#[tokio::test]
async fn tokens_and_keys_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let http = reqwest::Client::new();
    let user_token = token("secret-user");
    let url = format!(
        "ws://127.0.0.1:{}/inform?token={user_token}&since=0",
        daemon.port
    );
    let mut client = Client::connect(&url, &[]).await.unwrap();
    client.next_of_type("welcome").await;
    client.next_of_type("resumed").await;
    let forged = format!("{user_token}x");
    let url = format!("ws://127.0.0.1:{}/inform?token={forged}", daemon.port);
    assert_eq!(Client::connect(&url, &[]).await.err().unwrap().status, 401);
    http.get(daemon.url("/api/notifications"))
        .bearer_auth(&user_token)
        .send()
        .await
        .unwrap();
    publish(
        &http,
        &daemon,
        &json!({"to": "secret-user", "kind": "like"}),
    )
    .await;
    http.post(daemon.url("/publish"))
        .bearer_auth("wrong-publisher-key-123")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    client.next_of_type("notification").await;
    daemon.terminate();
    let (_, log) = daemon.exit_code().await;
    let log = log.join("\n");
    assert!(log.contains("/inform"), "the access log is there");
    let signature = user_token.rsplit('.').next().unwrap();
    for secret in [
        signature,
        PUBLISH_KEY,
        JWT_SECRET,
        "wrong-publisher-key-123",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test]
async fn the_cli_migrates_mints_and_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let migrate = informd(dir.path())
        .args(["migrate", "--database"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    assert!(db.exists());

    let minted = configured(dir.path())
        .args(["token", "--sub", "42", "--ttl", "10m"])
        .output()
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_string();
    let config = crate::helpers::test_config(&db);
    let identity = informd::auth::Verifier::from_config(&config)
        .unwrap()
        .verify(&token)
        .expect("minted token verifies");
    assert_eq!(identity.user, "42");
    assert!(identity.expires_at <= informd::auth::now_secs() + 600 + config.jwt_leeway_secs);

    let daemon = Daemon::start(configured(dir.path()));
    let url = format!("ws://127.0.0.1:{}/inform?token={token}", daemon.port);
    let mut client = Client::connect(&url, &[]).await.unwrap();
    client.next_of_type("welcome").await;
    let base = format!("http://127.0.0.1:{}", daemon.port);
    // `informd publish` to user 42 of the daemon, with the publisher key and `extra`.
    let publish_to_42 = |extra: &[&str]| {
        configured(dir.path())
            .args([
                "publish",
                "--url",
                &base,
                "--key",
                PUBLISH_KEY,
                "--to",
                "42",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let published = publish_to_42(&[
        "--kind",
        "follow",
        "--actor",
        r#"{"id":"7","name":"alice"}"#,
    ]);
    assert!(published.status.success(), "{published:?}");
    let answer: Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(answer["recipients"], 1);
    let frame = client.next_of_type("notification").await;
    assert_eq!(frame["notification"]["actor"]["name"], "alice");
    // `--group`: two of one group make one notification of count 2.
    for _ in 0..2 {
        let grouped = publish_to_42(&["--kind", "like", "--group", "like:article:1"]);
        assert!(grouped.status.success(), "{grouped:?}");
    }
    client.next_of_type("notification").await;
    let frame = client.next_of_type("notification").await;
    assert_eq!(
        (
            &frame["notification"]["group"],
            &frame["notification"]["count"]
        ),
        (&json!("like:article:1"), &json!(2))
    );

    let bad = configured(dir.path())
        .args([
            "publish", "--url", &base, "--to", "42", "--data", "not json",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--data"));
    let refused = configured(dir.path())
        .args(["publish", "--url", &base, "--key", "bad", "--to", "42"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("unauthorized"));
}

#[tokio::test]
async fn configuration_layers_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("informd.toml");
    std::fs::write(
        &file,
        format!(
            "database = {:?}\npublish_keys = [\"file-key\"]\nheartbeat_secs = 7\n\
             jwt_secret = \"from-the-file\"\n",
            dir.path().join("layered.db").display().to_string()
        ),
    )
    .unwrap();
    let mut command = informd(dir.path());
    command
        .arg("--config")
        .arg(&file)
        .env("INFORMD_HEARTBEAT_SECS", "9")
        // A secret that looks like a number is still a secret, leading zero and all.
        .env("INFORMD_JWT_SECRET", "01234567890");
    let daemon = Daemon::start(command);
    let response = reqwest::Client::new()
        .post(daemon.url("/publish"))
        .bearer_auth("file-key")
        .json(&json!({"to": "1", "kind": "like"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the file's key works");
    assert!(dir.path().join("layered.db").exists());
    let mut config = crate::helpers::test_config(Path::new("unused.db"));
    config.jwt_secret = Some("01234567890".to_string().into());
    let token = informd::auth::mint(&config, "1", 60, vec![], None).unwrap();
    let url = format!("ws://127.0.0.1:{}/inform?token={token}", daemon.port);
    let mut client = Client::connect(&url, &[]).await.expect("env secret wins");
    let welcome = client.next_of_type("welcome").await;
    assert_eq!(
        (welcome["heartbeat"].as_i64(), welcome["unread"].as_i64()),
        (Some(9), Some(1))
    );
    daemon.terminate();
    assert_eq!(daemon.exit_code().await.0, Some(0));

    // Mistakes stop the start with a message naming the key.
    std::fs::write(&file, "hartbeat_secs = 7\n").unwrap();
    let typo = informd(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("hartbeat_secs"));
    let bad = informd(dir.path())
        .arg("serve")
        .env("INFORMD_HEARTBEAT_SECS", "soon")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HEARTBEAT_SECS"));
    let zero = informd(dir.path())
        .arg("serve")
        .env("INFORMD_OUTBOUND_QUEUE", "0")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&zero.stderr).contains("outbound_queue"));
}

/// Records in the database of `dir`'s daemon a migration no build of informd has, as a newer
/// version's `informd migrate` would.
async fn migrate_past_this_build(dir: &Path) {
    use sqlx::Connection;
    let database = crate::helpers::database_for_dir(dir);
    let record = "INSERT INTO _sqlx_migrations \
                  (version, description, success, checksum, execution_time) \
                  VALUES (99990101000000, 'from a newer informd', true, ";
    if crate::helpers::postgres_server().is_some() {
        let mut conn = sqlx::PgConnection::connect(&database).await.unwrap();
        let sql = format!("{record} '\\x00'::bytea, 0)");
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    } else {
        let url = format!("sqlite://{database}");
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let sql = format!("{record} X'00', 0)");
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
}

#[tokio::test]
async fn a_node_stops_when_a_newer_version_migrates_its_database_and_will_not_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(configured(dir.path()));
    let http = reqwest::Client::new();
    let body = json!({"to": "7", "kind": "like"});
    assert_eq!(publish(&http, &daemon, &body).await.status(), 200);

    migrate_past_this_build(dir.path()).await;
    let limit = informd::schema_guard::CHECK_EVERY * 3;
    let deadline = tokio::time::Instant::now() + limit;
    while daemon.child.try_wait().unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not stop by itself"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (code, log) = daemon.exit_code().await;
    assert_eq!(code, Some(1), "{log:#?}");
    let refusal = |l: &String| l.contains("migration 99990101000000") && l.contains("not know");
    assert!(log.iter().any(refusal), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("informd stopped")),
        "graceful: {log:#?}"
    );

    // Restarted by its supervisor, the same build refuses the database at once.
    let output = refused_at_start(configured(dir.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("99990101000000"), "{stderr}");
}
