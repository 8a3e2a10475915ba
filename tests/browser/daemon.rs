//! The real `informd` binary for browser tests: started on a random port (or a given one, to
//! restart on the same address), its log collected, killed on drop. A trimmed cousin of
//! tests/api/daemon.rs, which always takes a random port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const JWT_SECRET: &str = "browser-test-secret-0123456789abcdef";
pub const PUBLISH_KEY: &str = "browser-test-publish-key";
const BINARY: &str = env!("CARGO_BIN_EXE_informd");

pub struct Daemon {
    child: Child,
    pub port: u16,
    demo: bool,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `informd serve` on `dir/informd.db`. `demo`: nothing configured (the development
    /// secret and key, so the demo is on), as a first-time user runs it. `port` 0: any.
    pub fn start(dir: &Path, demo: bool, port: u16) -> Daemon {
        Daemon::start_with(dir, demo, port, &[])
    }

    /// [`Daemon::start`] with more settings, as `INFORMD_*` variables.
    pub fn start_with(dir: &Path, demo: bool, port: u16, settings: &[(&str, String)]) -> Daemon {
        let mut command = Command::new(BINARY);
        command.current_dir(dir);
        for (key, _) in std::env::vars() {
            if key.starts_with("INFORMD_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        if !demo {
            command
                .env("INFORMD_JWT_SECRET", JWT_SECRET)
                .env("INFORMD_PUBLISH_KEYS", PUBLISH_KEY)
                .env("INFORMD_JWT_LEEWAY_SECS", "0");
        }
        command.envs(settings.iter().map(|(key, value)| (key, value)));
        let mut child = command
            .arg("serve")
            .env("INFORMD_DATABASE", dir.join("informd.db"))
            .env("INFORMD_LISTEN", format!("127.0.0.1:{port}"))
            .env("INFORMD_SHUTDOWN_GRACE_SECS", "2")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn informd");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("informd listening on 127.0.0.1:").nth(1) {
                    if let Some(Ok(port)) = rest.split(' ').next().map(str::parse::<u16>) {
                        let _ = port_tx.send(port);
                    }
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
            demo,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn is_demo(&self) -> bool {
        self.demo
    }

    pub fn jwt_secret(&self) -> &'static str {
        if self.demo {
            informd::config::DEV_JWT_SECRET
        } else {
            JWT_SECRET
        }
    }

    pub fn publish_key(&self) -> &'static str {
        if self.demo {
            informd::config::DEV_PUBLISH_KEY
        } else {
            PUBLISH_KEY
        }
    }

    /// SIGKILL, as a crash: no close frames, the clients find out by themselves.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
