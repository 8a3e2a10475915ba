//! What an operator meets when starting, misconfiguring and signalling the real binary: each
//! mistake is refused in one line that names the value and the setting to change, before
//! anything is created on disk.

use std::process::Output;

use crate::daemon::{configured, Daemon};

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
