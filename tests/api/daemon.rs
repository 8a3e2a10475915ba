//! The real `informd` binary as a child process: start it with a configuration, find its port
//! in its log, signal it, count its file descriptors, and read its log to the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{Client, JWT_SECRET, PUBLISH_KEY};

pub const BINARY: &str = env!("CARGO_BIN_EXE_informd");

/// A running `informd serve` child process.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads stderr to its end (the process exiting).
    reader: Option<std::thread::JoinHandle<()>>,
}

/// The sockets (as `socket:[inode]`) of `pid`'s TCP connections to the PostgreSQL server
/// the suite runs on; none on SQLite.
fn database_sockets(pid: u32) -> std::collections::HashSet<String> {
    let Some(server) = crate::helpers::postgres_server() else {
        return Default::default();
    };
    let port = server
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit('@').next())
        .and_then(|host| host.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .unwrap_or(5432);
    let remote_port = format!(":{port:04X}");
    let mut sockets = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[2].ends_with(&remote_port) {
                sockets.insert(format!("socket:[{}]", fields[9]));
            }
        }
    }
    sockets
}

pub fn informd(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("INFORMD_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
}

pub fn configured(dir: &Path) -> Command {
    let mut command = informd(dir);
    command
        .env("INFORMD_DATABASE", crate::helpers::database_for_dir(dir))
        .env("INFORMD_JWT_SECRET", JWT_SECRET)
        .env("INFORMD_PUBLISH_KEYS", format!("other-key,{PUBLISH_KEY}"));
    command
}

/// [`configured`], run under `prlimit` with at most `files` open file descriptors (soft and hard).
pub fn with_file_limit(dir: &Path, files: u32) -> Command {
    configured_under(dir, "prlimit", &[&format!("--nofile={files}:{files}")])
}

/// [`configured`], run by `wrapper` (`prlimit`, `setpriv`) given `args` and then informd's path.
pub fn configured_under(dir: &Path, wrapper: &str, args: &[&str]) -> Command {
    let configured = configured(dir);
    let mut command = Command::new(wrapper);
    command.args(args).arg(BINARY).current_dir(dir);
    for (key, value) in configured.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
}

/// Runs `informd serve` with `command`'s configuration, which must make it refuse to start,
/// and returns its output. A server that starts anyway is killed after 30 s and the test
/// fails, rather than waiting for it forever.
pub fn refused_at_start(mut command: Command) -> std::process::Output {
    if !command.get_envs().any(|(key, _)| key == "INFORMD_LISTEN") {
        command.env("INFORMD_LISTEN", "127.0.0.1:0");
    }
    let mut child = command
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn informd");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("informd started where it should have refused to");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

impl Daemon {
    pub fn start(mut command: Command) -> Daemon {
        for (key, default) in [
            ("INFORMD_SHUTDOWN_GRACE_SECS", "5"),
            ("INFORMD_LISTEN", "127.0.0.1:0"),
        ] {
            if !command
                .get_envs()
                .any(|(set, value)| set == key && value.is_some())
            {
                command.env(key, default);
            }
        }
        let mut child = command
            .arg("serve")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn informd");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("informd listening on 127.0.0.1:").nth(1) {
                    let port: u16 = rest.split(' ').next().unwrap().parse().unwrap();
                    let _ = port_tx.send(port);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("informd did not start: {:?}", log.lock().unwrap()));
        Daemon {
            child,
            port,
            log,
            reader: Some(reader),
        }
    }

    /// Sockets the process holds now: its listener and its connections. (Its other
    /// descriptors, the database files above all, come and go with the connection pool; so
    /// do its connections to PostgreSQL, which are not counted either.)
    pub fn open_sockets(&self) -> usize {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())) else {
            return 0;
        };
        let database = database_sockets(self.child.id());
        dir.filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_link(entry.path()).ok())
            .map(|target| target.to_string_lossy().into_owned())
            .filter(|target| target.starts_with("socket:"))
            .filter(|target| !database.contains(target))
            .count()
    }

    /// The first log line containing `needle`, waiting up to `limit` for it.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.contains(needle))
                .cloned();
            if found.is_some() || std::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn terminate(&self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
    }

    /// Waits for the process to exit and for its log to be read to the end; returns the exit
    /// code and every log line.
    pub async fn exit_code(mut self) -> (Option<i32>, Vec<String>) {
        let log = self.log.clone();
        let reader = self.reader.take();
        let status = tokio::task::spawn_blocking(move || {
            let status = self.child.wait().expect("wait");
            if let Some(reader) = reader {
                reader.join().expect("log reader");
            }
            status
        })
        .await
        .unwrap();
        let lines = log.lock().unwrap().clone();
        (status.code(), lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn token(sub: &str) -> String {
    let config = crate::helpers::test_config(Path::new("unused.db"));
    informd::auth::mint(&config, sub, 3600, vec![], None).unwrap()
}

pub async fn publish(http: &reqwest::Client, daemon: &Daemon, body: &Value) -> reqwest::Response {
    http.post(daemon.url("/publish"))
        .bearer_auth(PUBLISH_KEY)
        .json(body)
        .send()
        .await
        .expect("publish")
}

/// A user connects, and a notification published to them arrives.
pub async fn legitimate_user_gets_through(daemon: &Daemon, user: &str) {
    let url = format!(
        "ws://127.0.0.1:{}/inform?token={}",
        daemon.port,
        token(user)
    );
    let mut client = Client::connect(&url, &[]).await.expect("handshake");
    let welcome = client.next_of_type("welcome").await;
    let http = reqwest::Client::new();
    let answer: Value = publish(&http, daemon, &json!({"to": user, "kind": "reply"}))
        .await
        .json()
        .await
        .expect("publish answer");
    // A notification published just before connecting may be announced as an `unread`
    // frame first: see `next_notification`.
    let frame = client.next_notification().await;
    assert_eq!(frame["notification"]["id"], answer["ids"][0]);
    assert_eq!(
        frame["notification"]["seq"].as_i64(),
        welcome["seq"].as_i64().map(|s| s + 1)
    );
    client.close().await;
}
