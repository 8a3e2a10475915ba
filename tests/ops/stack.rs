//! One deployment, as the README describes it, in a temporary directory: supervisord running
//! informd from `supervisor/informd.conf` with its environment from
//! `supervisor/informd.env.example`, and nginx from `nginx/informd.conf` in front, each on
//! random ports and run as the current user. Only paths, ports, the binary, the user and
//! supervisord's `minfds` (the machine's hard limit may be lower than production's) are
//! substituted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::helpers::{Client, Refused, JWT_SECRET, PUBLISH_KEY};
use crate::render::{self, shipped, substitute, substitute_all};

pub const BINARY: &str = env!("CARGO_BIN_EXE_informd");
/// How long the stack may take to come up (supervisord starting informd, nginx reaching it).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running supervisord + informd + nginx.
pub struct Stack {
    pub dir: TempDir,
    /// Where informd listens (nginx's upstream).
    pub informd_port: u16,
    /// Where nginx listens: the address browsers and publishers use.
    pub port: u16,
    /// The `minfds` the rendered supervisor config asks for.
    pub minfds: u64,
    pub http: reqwest::Client,
    /// supervisord's process id.
    pub supervisord_pid: u32,
    supervisord: Option<Child>,
    nginx: Option<Child>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

impl Stack {
    /// Renders the shipped files, starts supervisord and nginx, and waits until informd
    /// answers `/readyz` through nginx.
    pub async fn start() -> Stack {
        let supervisord = render::program("supervisord", "supervisor");
        let nginx = render::program("nginx", "nginx");
        let dir = TempDir::new().expect("temp dir");
        let informd_port = free_port();
        let port = free_port();
        let minfds = render::hard_file_limit().min(131072);
        for sub in ["state", "log", "nginx"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("create directory");
        }
        render_env(dir.path(), informd_port);
        render_supervisor(dir.path(), minfds);
        render_nginx(dir.path(), port, informd_port);

        // Started with the soft open-file limit of a fresh login (1024), so that raising it
        // to minfds is supervisord's doing. prlimit execs supervisord: same process.
        let mut supervisord_command = Command::new(render::program("prlimit", "util-linux"));
        supervisord_command.arg("--nofile=1024:").arg(supervisord);
        let mut supervisord = supervisord_command;
        // informd's settings come from the rendered env file only, not from the test's
        // environment.
        for (key, _) in std::env::vars() {
            if key.starts_with("INFORMD_") || key == "RUST_LOG" {
                supervisord.env_remove(key);
            }
        }
        let supervisord = supervisord
            .args(["--nodaemon", "--configuration"])
            .arg(dir.path().join("supervisord.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn supervisord");
        let nginx = Command::new(nginx)
            .arg("-c")
            .arg(dir.path().join("nginx/nginx.conf"))
            .arg("-p")
            .arg(dir.path().join("nginx"))
            .arg("-e")
            .arg(dir.path().join("nginx/startup.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let stack = Stack {
            dir,
            informd_port,
            port,
            minfds,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("http client"),
            supervisord_pid: supervisord.id(),
            supervisord: Some(supervisord),
            nginx: Some(nginx),
        };
        stack.wait_ready().await;
        stack
    }

    /// Waits until `/readyz` through nginx answers 200 (informd up, nginx reaching it).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = self.http.get(self.url("/readyz")).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "informd did not become ready through nginx within {START_TIMEOUT:?}.\n\
                 supervisord log:\n{}\ninformd log:\n{}\nnginx error log:\n{}{}",
                self.supervisord_log(),
                self.informd_log(),
                self.read("nginx/startup.log"),
                self.nginx_error_log(),
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// A file of the deployment, or "" if it does not exist (yet).
    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap_or_default()
    }

    pub fn informd_log(&self) -> String {
        self.read("log/informd.log")
    }

    pub fn supervisord_log(&self) -> String {
        self.read("supervisord.log")
    }

    pub fn nginx_access_log(&self) -> String {
        self.read("nginx/log/informd.access.log")
    }

    pub fn nginx_error_log(&self) -> String {
        self.read("nginx/log/error.log")
    }

    /// `http://127.0.0.1:PORT/path` through nginx.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The Origin a page served by this nginx sends.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A user token, signed with the secret the rendered environment gives informd.
    pub fn token(&self, user: &str) -> String {
        let config = crate::helpers::test_config(Path::new("unused.db"));
        informd::auth::mint(&config, user, 3600, vec![], None).expect("mint")
    }

    /// A browser-like handshake through nginx: the token in the query string, this site's
    /// Origin, `query` appended.
    pub async fn browser(&self, token: &str, query: &str) -> Result<Client, Refused> {
        let url = format!("ws://127.0.0.1:{}/inform?token={token}{query}", self.port);
        Client::connect(&url, &[("Origin", &self.origin())]).await
    }

    /// [`Stack::browser`] for `user`, returned after its `welcome` frame.
    pub async fn connect(&self, user: &str, query: &str) -> (Client, serde_json::Value) {
        let mut client = match self.browser(&self.token(user), query).await {
            Ok(client) => client,
            Err(refused) => panic!("handshake through nginx refused: {refused:?}"),
        };
        let welcome = client.next_of_type("welcome").await;
        (client, welcome)
    }

    /// `POST /publish` through nginx, from 127.0.0.1 (the backend network).
    pub async fn publish(&self, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/publish"))
            .bearer_auth(PUBLISH_KEY)
            .json(body)
            .send()
            .await
            .expect("publish through nginx")
    }

    /// Runs `supervisorctl` against this stack's supervisord; returns its stdout.
    pub fn supervisorctl(&self, args: &[&str]) -> String {
        let output = Command::new(render::program("supervisorctl", "supervisor"))
            .arg("--configuration")
            .arg(self.path("supervisord.conf"))
            .args(args)
            .output()
            .expect("run supervisorctl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// informd's process id, as supervisor knows it (None when it is not running).
    pub fn informd_pid(&self) -> Option<i32> {
        self.supervisorctl(&["pid", "informd"])
            .trim()
            .parse()
            .ok()
            .filter(|pid| *pid > 0)
    }

    /// Waits until supervisor reports informd RUNNING with a pid other than `old`.
    pub async fn wait_restarted(&self, old: i32) -> i32 {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(pid) = self.informd_pid().filter(|pid| *pid != old) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "supervisor did not restart informd.\nsupervisord log:\n{}",
                self.supervisord_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Stops a child: SIGTERM, then SIGKILL if it has not exited within `patience`.
fn stop(child: &mut Child, patience: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut nginx) = self.nginx.take() {
            stop(&mut nginx, Duration::from_secs(5));
        }
        // supervisord stops informd (SIGTERM, up to stopwaitsecs) before it exits itself.
        if let Some(mut supervisord) = self.supervisord.take() {
            stop(&mut supervisord, Duration::from_secs(25));
        }
    }
}

/// /etc/informd/env from the shipped example, with the tests' secrets and paths.
fn render_env(dir: &Path, informd_port: u16) {
    let name = "supervisor/informd.env.example";
    let text = shipped(name);
    let text = substitute(
        name,
        &text,
        &[
            (
                "INFORMD_LISTEN=127.0.0.1:8080",
                format!("INFORMD_LISTEN=127.0.0.1:{informd_port}"),
            ),
            ("CHANGE-ME-jwt-secret", JWT_SECRET.to_string()),
            ("CHANGE-ME-publish-key", PUBLISH_KEY.to_string()),
        ],
    );
    let text = substitute_all(
        name,
        &text,
        "/var/lib/informd/",
        &format!("{}/", dir.join("state").display()),
    );
    render::write(&dir.join("env"), &text);
}

/// The main supervisord.conf is the part the supervisor package ships (Debian's
/// /etc/supervisor/supervisord.conf, with this directory's paths); it includes the shipped
/// supervisor/informd.conf, as Debian's includes conf.d/*.conf.
fn render_supervisor(dir: &Path, minfds: u64) {
    let d = dir.display();
    let main = format!(
        "[unix_http_server]\nfile={d}/supervisor.sock\nchmod=0700\n\n\
         [supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
         childlogdir={d}/log\n\n\
         [rpcinterface:supervisor]\n\
         supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
         [include]\nfiles = {d}/conf.d/*.conf\n"
    );
    render::write(&dir.join("supervisord.conf"), &main);

    let name = "supervisor/informd.conf";
    let text = shipped(name);
    let text = substitute(
        name,
        &text,
        &[
            ("minfds=131072", format!("minfds={minfds}")),
            (". /etc/informd/env ", format!(". {d}/env ")),
            ("exec /usr/local/bin/informd ", format!("exec {BINARY} ")),
            ("user=informd", format!("user={}", render::current_user())),
            ("directory=/var/lib/informd", format!("directory={d}/state")),
        ],
    );
    let text = substitute_all(name, &text, "/var/log/informd/", &format!("{d}/log/"));
    render::write(&dir.join("conf.d/informd.conf"), &text);
}

/// nginx/informd.conf with this directory's paths and the random ports. The temporary-file
/// paths are added because Debian's built-in ones (/var/lib/nginx) are root's.
fn render_nginx(dir: &Path, port: u16, informd_port: u16) {
    let n = dir.join("nginx");
    let n = n.display();
    let name = "nginx/informd.conf";
    let text = shipped(name);
    let text = substitute(
        name,
        &text,
        &[
            ("\nuser www-data;", format!("\nuser {};", render::current_user())),
            ("pid /run/nginx.pid;", format!("pid {n}/nginx.pid;")),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            (
                "server 127.0.0.1:8080 ",
                format!("server 127.0.0.1:{informd_port} "),
            ),
            (
                "\nhttp {\n",
                format!(
                    "\nhttp {{\n    client_body_temp_path {n}/body;\n    proxy_temp_path {n}/proxy;\n    \
                     fastcgi_temp_path {n}/fastcgi;\n    uwsgi_temp_path {n}/uwsgi;\n    \
                     scgi_temp_path {n}/scgi;\n"
                ),
            ),
        ],
    );
    let text = substitute_all(name, &text, "/var/log/nginx/", &format!("{n}/log/"));
    std::fs::create_dir_all(dir.join("nginx/log")).expect("create nginx log directory");
    render::write(&dir.join("nginx/nginx.conf"), &text);
}
