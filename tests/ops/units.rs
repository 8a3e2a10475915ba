//! The shipped files beyond a live run: the systemd unit passes `systemd-analyze verify`, the
//! Procfile's command serves on `$PORT`, and the numbers that must agree with informd's
//! defaults (stop timeouts above the drain grace, proxy timeout above the heartbeat, file
//! limits for tens of thousands of sockets) do.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use informd::config::Config;

use crate::render::{self, seconds, setting, shipped, substitute};
use crate::stack::{free_port, BINARY};

/// Open files a node must be allowed: tens of thousands of sockets.
const PRODUCTION_FILES: u64 = 65536;

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let analyze = render::program("systemd-analyze", "systemd");
    let name = "systemd/informd.service";
    // `verify` checks that ExecStart's program exists: point it at the built binary.
    let unit = substitute(
        name,
        &shipped(name),
        &[(
            "ExecStart=/usr/local/bin/informd ",
            format!("ExecStart={BINARY} "),
        )],
    );
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("informd.service");
    render::write(&path, &unit);
    let output = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // verify exits 0 on settings it ignores; any line about the unit is a mistake in it.
    assert!(
        output.status.success() && !stderr.contains("informd.service"),
        "systemd-analyze verify: {:?}\n{stderr}",
        output.status
    );
}

#[test]
fn stop_timeouts_outlast_the_drain_grace() {
    let grace = Config::default().shutdown_grace_secs;
    let env = shipped("supervisor/informd.env.example");
    let configured: u64 = setting(&env, "INFORMD_SHUTDOWN_GRACE_SECS", '=')
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(configured, grace, "the env example shows the default grace");

    let supervisor = shipped("supervisor/informd.conf");
    let stopwait = seconds(setting(&supervisor, "stopwaitsecs", '=').unwrap());
    assert!(stopwait > grace, "stopwaitsecs {stopwait} <= grace {grace}");
    assert_eq!(setting(&supervisor, "stopsignal", '='), Some("TERM"));
    assert_eq!(setting(&supervisor, "autorestart", '='), Some("true"));

    let unit = shipped("systemd/informd.service");
    let timeout = seconds(setting(&unit, "TimeoutStopSec", '=').unwrap());
    assert!(timeout > grace, "TimeoutStopSec {timeout} <= grace {grace}");
    assert_eq!(setting(&unit, "KillSignal", '='), Some("SIGTERM"));
    assert_eq!(
        setting(&unit, "EnvironmentFile", '='),
        Some("/etc/informd/env")
    );
}

/// informd logs to stderr; supervisor keeps it in one rotated file.
#[test]
fn supervisor_keeps_informd_logs_rotated() {
    let supervisor = shipped("supervisor/informd.conf");
    assert_eq!(setting(&supervisor, "redirect_stderr", '='), Some("true"));
    let max = setting(&supervisor, "stdout_logfile_maxbytes", '=').unwrap();
    assert!(max.ends_with("MB") && max != "0MB", "rotation at {max}");
    let backups: u32 = setting(&supervisor, "stdout_logfile_backups", '=')
        .unwrap()
        .parse()
        .unwrap();
    assert!(backups > 0);
}

#[test]
fn limits_are_sized_for_tens_of_thousands_of_sockets() {
    let supervisor = shipped("supervisor/informd.conf");
    let minfds: u64 = setting(&supervisor, "minfds", '=')
        .unwrap()
        .parse()
        .unwrap();
    assert!(minfds >= PRODUCTION_FILES, "minfds {minfds}");
    let unit = shipped("systemd/informd.service");
    let nofile: u64 = setting(&unit, "LimitNOFILE", '=').unwrap().parse().unwrap();
    assert!(nofile >= PRODUCTION_FILES, "LimitNOFILE {nofile}");

    let nginx = shipped("nginx/informd.conf");
    let rlimit: u64 = setting(&nginx, "worker_rlimit_nofile", ' ')
        .unwrap()
        .parse()
        .unwrap();
    let connections: u64 = setting(&nginx, "worker_connections", ' ')
        .unwrap()
        .parse()
        .unwrap();
    // A proxied WebSocket holds two connections in nginx: the browser's and informd's.
    assert!(connections / 2 >= 20000, "worker_connections {connections}");
    assert!(
        rlimit >= connections,
        "worker_rlimit_nofile {rlimit} < worker_connections {connections}"
    );
}

#[test]
fn nginx_keeps_websockets_open_longer_than_the_heartbeat() {
    let nginx = shipped("nginx/informd.conf");
    let read = seconds(setting(&nginx, "proxy_read_timeout", ' ').unwrap());
    let heartbeat = Config::default().heartbeat_secs;
    // informd pings every heartbeat; nginx must not call a quiet socket dead before a few
    // pings are missed.
    assert!(
        read >= 2 * heartbeat,
        "proxy_read_timeout {read}s vs heartbeat {heartbeat}s"
    );
}

/// Heroku runs the Procfile's `web` command with $PORT set; it must serve there.
#[tokio::test]
async fn the_procfile_web_command_serves_on_port() {
    let procfile = shipped("Procfile");
    let command = procfile
        .lines()
        .find_map(|line| line.strip_prefix("web:"))
        .expect("a web process")
        .trim()
        .to_string();
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let bin = std::path::Path::new(BINARY).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("sh");
    for (key, _) in std::env::vars() {
        if key.starts_with("INFORMD_") {
            shell.env_remove(key);
        }
    }
    let mut child = shell
        .arg("-c")
        .arg(&command)
        .env("PORT", port.to_string())
        .env("PATH", path)
        .env("INFORMD_DATABASE", dir.path().join("informd.db"))
        .current_dir(dir.path())
        // Its own process group, so that the stop below reaches informd as well as the shell.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the Procfile command");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = false;
    while Instant::now() < deadline {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            answered = response.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // As Heroku stops a dyno: SIGTERM to every process of it.
    let group = nix::unistd::Pid::from_raw(-i32::try_from(child.id()).unwrap());
    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
    assert!(
        answered,
        "`{command}` did not serve /healthz on $PORT={port}"
    );
}
