//! What an operator meets when starting, misconfiguring and signalling the real binary: each
//! mistake is refused in one line that names the value and the setting to change, before
//! anything is created on disk.

use std::process::Output;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::daemon::{configured, informd, publish, token, Daemon};
use crate::helpers::{Client, JWT_SECRET};

/// Runs `informd serve ARGS` to its exit (it is expected to refuse to start).
fn serve_refused(dir: &std::path::Path, args: &[&str]) -> (Output, String) {
    let output = configured(dir)
        .arg("serve")
        .args(args)
        .output()
        .expect("run informd");
    assert!(!output.status.success(), "informd started: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

#[tokio::test]
async fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = configured(dir.path());
    command.env("INFORMD_LISTEN", "localhost:0");
    let daemon = Daemon::start(command);
    let health = reqwest::get(daemon.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_port_in_use_names_the_setting_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();

    let (_, stderr) = serve_refused(dir.path(), &["--listen", &address]);
    assert!(
        stderr.contains(&format!("cannot listen on {address}"))
            && stderr.contains("in use")
            && stderr.contains("set listen (INFORMD_LISTEN, or serve --listen)"),
        "{stderr}"
    );
    assert!(!dir.path().join("informd.db").exists(), "{stderr}");

    let mut command = configured(dir.path());
    command.env("INFORMD_METRICS_LISTEN", &address);
    let output = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("set metrics_listen (INFORMD_METRICS_LISTEN)"),
        "{stderr}"
    );
    assert!(!dir.path().join("informd.db").exists(), "{stderr}");
}

#[tokio::test]
async fn a_listen_address_that_is_not_host_and_port_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stderr) = serve_refused(dir.path(), &["--listen", "8080"]);
    assert!(
        stderr.contains("\"8080\" is not host:port") && stderr.contains("set listen"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_missing_database_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("var/lib/informd/informd.db");
    let mut command = configured(dir.path());
    command.env("INFORMD_DATABASE", &database);
    let daemon = Daemon::start(command);
    assert!(database.exists());
    assert!(daemon
        .wait_for_log("created the database directory", Duration::from_secs(1))
        .await
        .is_some());
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "not a directory").unwrap();
    let database = dir.path().join("file/informd.db");
    let mut command = configured(dir.path());
    command.env("INFORMD_DATABASE", &database);
    let output = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("informd: "), "{stderr}");
    assert!(last.contains(&dir.path().join("file").display().to_string()));
    // The cause is said once, not once per layer of the error.
    assert!(last.contains("not a directory"), "{last}");
    let parts: Vec<&str> = last.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(part), "said twice: {last}");
    }
}

#[tokio::test]
async fn origins_without_a_scheme_or_mixed_with_a_wildcard_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (origins, says) in [
        ("blog.example", "\"blog.example\" can never match"),
        ("https://blog.example/app", "an origin has no path"),
        ("*,https://blog.example", "mixes * with origins"),
    ] {
        let mut command = configured(dir.path());
        command.env("INFORMD_ALLOWED_ORIGINS", origins);
        let output = command.arg("serve").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{origins}: started");
        assert!(
            stderr.contains(says) && stderr.contains("INFORMD_ALLOWED_ORIGINS"),
            "{origins}: {stderr}"
        );
    }
    assert!(!dir.path().join("informd.db").exists());
}

#[tokio::test]
async fn a_refused_origin_is_logged_with_what_it_takes_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = configured(dir.path());
    command.env("INFORMD_ALLOWED_ORIGINS", "https://blog.example");
    let daemon = Daemon::start(command);
    assert!(daemon
        .wait_for_log(
            "browser origins: only https://blog.example",
            Duration::from_secs(1)
        )
        .await
        .is_some());
    let url = format!("ws://127.0.0.1:{}/inform?token={}", daemon.port, token("7"));
    let refused = Client::connect(&url, &[("Origin", "https://evil.example")])
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 403);
    let line = daemon
        .wait_for_log("origin refused", Duration::from_secs(2))
        .await
        .expect("a log line for the refused origin");
    let host = format!("Host \"127.0.0.1:{}\"", daemon.port);
    for part in [
        "Origin [\"https://evil.example\"]",
        host.as_str(),
        "allowed origins: only https://blog.example",
        "client 127.0.0.1",
        "allowed_origins (INFORMD_ALLOWED_ORIGINS)",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    // The REST API logs the same.
    let response = reqwest::Client::new()
        .get(daemon.url("/api/notifications/unread"))
        .header("Origin", "https://other.example")
        .bearer_auth(token("7"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(daemon
        .wait_for_log("Origin [\"https://other.example\"]", Duration::from_secs(2))
        .await
        .is_some());
}

#[tokio::test]
async fn refusals_carry_their_error_code_in_the_access_log_and_probes_log_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let http = reqwest::Client::new();
    let unauthorized = http
        .get(daemon.url("/api/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let bad = publish(&http, &daemon, &json!({"to": 42, "kind": "like"})).await;
    assert_eq!(bad.status(), 400);
    let handshake = Client::connect(
        &format!("ws://127.0.0.1:{}/inform?token=forged", daemon.port),
        &[],
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(handshake.status, 401);
    assert_eq!(
        http.get(daemon.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for needle in [
        "\"GET /api/notifications\" 401 unauthorized",
        "\"POST /publish\" 400 invalid_field",
        "\"GET /inform\" 401 invalid_token",
        "GET /healthz 200",
    ] {
        let line = daemon
            .wait_for_log(needle, Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("no log line with {needle}"));
        let level = if needle.contains("healthz") {
            "DEBUG"
        } else {
            "INFO"
        };
        assert!(line.contains(level), "{line}");
    }
    daemon.terminate();
    let (_, log) = daemon.exit_code().await;
    assert!(
        !log.iter()
            .any(|l| l.contains("INFO") && l.contains("/healthz")),
        "a probe at info: {log:?}"
    );
}

#[tokio::test]
async fn trusted_proxies_name_the_real_client_and_nobody_else_can() {
    let dir = tempfile::tempdir().unwrap();
    let forwarded = |daemon: &Daemon| {
        reqwest::Client::new()
            .get(daemon.url("/api/notifications/unread"))
            .header("X-Forwarded-For", "203.0.113.50, 198.51.100.7")
    };
    let mut command = configured(dir.path());
    command.env("INFORMD_TRUSTED_PROXIES", "127.0.0.0/8");
    let behind_proxy = Daemon::start(command);
    forwarded(&behind_proxy).send().await.unwrap();
    let line = behind_proxy
        .wait_for_log("\"GET /api/notifications/unread\"", Duration::from_secs(2))
        .await
        .unwrap();
    assert!(line.contains("] 198.51.100.7 \"GET"), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let direct = Daemon::start(configured(dir.path()));
    forwarded(&direct).send().await.unwrap();
    let line = direct
        .wait_for_log("\"GET /api/notifications/unread\"", Duration::from_secs(2))
        .await
        .unwrap();
    assert!(line.contains("] 127.0.0.1 \"GET"), "{line}");

    let mut command = configured(dir.path());
    command.env("INFORMD_TRUSTED_PROXIES", "0.0.0.0/0");
    let output = command.arg("serve").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("trusts every address"));
}

#[tokio::test]
async fn sighup_is_logged_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let http = reqwest::Client::new();
    let url = format!("ws://127.0.0.1:{}/inform?token={}", daemon.port, token("5"));
    let mut client = Client::connect(&url, &[]).await.unwrap();
    client.next_of_type("welcome").await;
    let pid = Pid::from_raw(i32::try_from(daemon.child.id()).unwrap());
    kill(pid, Signal::SIGHUP).unwrap();
    assert!(daemon
        .wait_for_log("SIGHUP ignored", Duration::from_secs(2))
        .await
        .is_some());
    let published = publish(&http, &daemon, &json!({"to": "5", "kind": "like"})).await;
    assert_eq!(published.status(), 200);
    let frame = client.next_of_type("notification").await;
    assert_eq!(frame["notification"]["kind"], "like");
}

#[tokio::test]
async fn numbers_where_user_ids_belong_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let http = reqwest::Client::new();
    let answer: Value = publish(&http, &daemon, &json!({"to": 42, "kind": "like"}))
        .await
        .json()
        .await
        .unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("string like \"42\"") && message.contains("got a number"),
        "{answer}"
    );
    let answer: Value = publish(&http, &daemon, &json!({"to": ["1", 7], "kind": "like"}))
        .await
        .json()
        .await
        .unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("like \"7\", got a number"), "{answer}");

    // A token whose `sub` is a number, signed with the right secret.
    let claims = json!({"sub": 42, "exp": informd::auth::now_secs() + 600});
    let numeric = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let response = http
        .get(daemon.url("/api/notifications/unread"))
        .bearer_auth(numeric)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let answer: Value = response.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("sub must be a string like \"42\""),
        "{answer}"
    );
}

#[tokio::test]
async fn minting_with_the_development_secret_warns() {
    let dir = tempfile::tempdir().unwrap();
    let development = informd(dir.path())
        .args(["token", "--sub", "1"])
        .output()
        .unwrap();
    assert!(development.status.success());
    assert!(String::from_utf8_lossy(&development.stderr).contains("DEVELOPMENT secret"));
    let configured = configured(dir.path())
        .args(["token", "--sub", "1"])
        .output()
        .unwrap();
    assert!(configured.status.success());
    assert!(configured.stderr.is_empty(), "{configured:?}");
}
