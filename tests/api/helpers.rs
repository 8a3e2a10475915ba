//! `spawn_app()` and typed helpers: mint a token, publish, open a socket, await the next frame
//! of a type with a timeout. Tests wait for frames; they never sleep and hope.
//!
//! The database: a fresh SQLite file per test, or, when `INFORMD_TEST_POSTGRES` names a
//! PostgreSQL server (`postgres://postgres@127.0.0.1:5432`), a fresh database on it per test
//! ([`TestDatabase`]). The whole suite runs once per backend.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use informd::config::Config;
use informd::startup::{Application, Stopper};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const JWT_SECRET: &str = "test-secret-0123456789";
pub const PUBLISH_KEY: &str = "test-publish-key";
/// How long a test waits for a frame that should come.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Names the PostgreSQL server the suite runs on instead of SQLite.
pub const POSTGRES_ENV: &str = "INFORMD_TEST_POSTGRES";

/// The PostgreSQL server the suite runs on, if it runs on PostgreSQL.
pub fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// `server` (a PostgreSQL URL) with its database replaced by `database`.
pub fn postgres_url(server: &str, database: &str) -> String {
    let authority_end = server
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| server[start..].find(['/', '?']).map(|end| start + end))
        .unwrap_or(server.len());
    format!("{}/{database}", &server[..authority_end])
}

/// The machine's PostgreSQL (scripts/deps/postgres.sh starts it).
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// Test databases older than this, or whose test process is gone, are dropped by the next
/// run's sweep (a run that died, and the daemon tests' databases, leave them behind).
const SWEEP_AFTER_SECS: u64 = 3600;

/// Runs `work` against the `postgres` database of `server`, on a thread and runtime of its
/// own, so that it can be called from sync code and from inside a test's runtime alike.
pub fn postgres_admin(server: &str, work: impl FnOnce(&mut Vec<String>) + Send + 'static) {
    let admin = postgres_url(server, "postgres");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| {
                    panic!("{POSTGRES_ENV}: cannot connect to PostgreSQL: {e}; run scripts/deps/postgres.sh")
                });
            let mut statements = Vec::new();
            work(&mut statements);
            for statement in statements {
                sqlx::query(&statement)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            conn.close().await.ok();
        });
    })
    .join()
    .expect("PostgreSQL admin thread");
}

/// Drops the test databases that earlier runs left behind (once per process).
fn sweep(server: &str) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let server = server.to_string();
    SWEPT.call_once(move || {
        let admin = postgres_url(&server, "postgres");
        let old: Vec<String> = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use sqlx::Connection;
                let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
                    return Vec::new();
                };
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'informd\\_test\\_%'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                names
            })
        })
        .join()
        .unwrap_or_default();
        let now = unix_secs();
        let stale: Vec<String> = old
            .into_iter()
            .filter(|name| {
                // informd_test_{created}_{pid}_{n}: stale once its process is gone, or old.
                let mut parts = name.split('_').skip(2).map(|p| p.parse::<u64>().ok());
                let (created, pid) = (parts.next().flatten(), parts.next().flatten());
                let gone = pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                gone || created.is_some_and(|created| created + SWEEP_AFTER_SECS < now)
            })
            .collect();
        if !stale.is_empty() {
            postgres_admin(&server, move |statements| {
                for name in stale {
                    statements.push(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
                }
            });
        }
    });
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The database of one test: a SQLite file in the test's directory, or a fresh PostgreSQL
/// database, dropped when the last app using it goes.
pub struct TestDatabase {
    /// What `database` is set to.
    pub url: String,
    /// The PostgreSQL server and database name, to drop it.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh database for a test whose files go in `dir`.
    pub fn fresh(dir: &Path) -> TestDatabase {
        match postgres_server() {
            None => TestDatabase {
                url: dir.join("informd.db").display().to_string(),
                postgres: None,
            },
            Some(server) => {
                let name = create_postgres_database(&server);
                TestDatabase {
                    url: postgres_url(&server, &name),
                    postgres: Some((server, name)),
                }
            }
        }
    }

    /// A fresh database on the PostgreSQL server of `INFORMD_TEST_POSTGRES`, or on the
    /// machine's (`postgres://postgres@127.0.0.1:5432`) when the suite runs on SQLite: for
    /// the tests that are about PostgreSQL itself.
    pub fn postgres() -> TestDatabase {
        let server = postgres_server().unwrap_or_else(|| DEFAULT_POSTGRES.to_string());
        let name = create_postgres_database(&server);
        TestDatabase {
            url: postgres_url(&server, &name),
            postgres: Some((server, name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

/// Creates a uniquely named empty database on `server` and returns its name.
pub fn create_postgres_database(server: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    sweep(server);
    let name = format!(
        "informd_test_{}_{}_{}",
        unix_secs(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let created = name.clone();
    postgres_admin(server, move |statements| {
        statements.push(format!("CREATE DATABASE \"{created}\""));
    });
    name
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, name)) = self.postgres.take() {
            // FORCE: the app may still be closing its connections.
            postgres_admin(&server, move |statements| {
                statements.push(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            });
        }
    }
}

/// The database `daemon::configured` gives the process started in `dir`: every command of
/// one test (mint, serve, publish, restart) shares it. PostgreSQL ones are left to the sweep.
pub fn database_for_dir(dir: &Path) -> String {
    static BY_DIR: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    let Some(server) = postgres_server() else {
        return dir.join("informd.db").display().to_string();
    };
    let mut known = BY_DIR.lock().unwrap_or_else(|e| e.into_inner());
    known
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_path_buf())
        .or_insert_with(|| postgres_url(&server, &create_postgres_database(&server)))
        .clone()
}

/// A running server on its own thread and actix system.
pub struct TestApp {
    pub port: u16,
    pub config: Config,
    pub database: Arc<TestDatabase>,
    pub http: reqwest::Client,
    stopper: Stopper,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Arc<TempDir>,
}

/// The configuration every test starts from.
pub fn test_config(db_path: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        database: db_path.display().to_string(),
        jwt_secret: Some(JWT_SECRET.to_string().into()),
        publish_keys: vec![PUBLISH_KEY.to_string().into()],
        workers: 2,
        hub_shards: 2,
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(TempDir::new().expect("temp dir"));
    let database = Arc::new(
        tokio::task::spawn_blocking({
            let path = dir.path().to_path_buf();
            move || TestDatabase::fresh(&path)
        })
        .await
        .expect("test database"),
    );
    let mut config = test_config(Path::new(&database.url));
    adjust(&mut config);
    start(config, database, dir).await
}

/// Starts a server on `database` (shared with other nodes, if they use it too).
pub async fn spawn_on(database: Arc<TestDatabase>, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = Arc::new(TempDir::new().expect("temp dir"));
    let mut config = test_config(Path::new(&database.url));
    adjust(&mut config);
    start(config, database, dir).await
}

/// Starts a second server on the same database while `first` keeps running: another node,
/// without a broker between the two.
pub async fn second_node(first: &TestApp) -> TestApp {
    let mut config = first.config.clone();
    config.listen = "127.0.0.1:0".into();
    start(config, first.database.clone(), first._dir.clone()).await
}

/// Starts a server on the database of `previous` (which must be stopped).
pub async fn restart(previous: TestApp) -> TestApp {
    let (config, database, dir) = previous.stop_keep_files();
    start(config, database, dir).await
}

async fn start(config: Config, database: Arc<TestDatabase>, dir: Arc<TempDir>) -> TestApp {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let app_config = config.clone();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let app = Application::build(app_config).await.expect("app builds");
            ready_tx
                .send((app.port(), app.stopper()))
                .expect("test waits");
            app.run_until_stopped().await.expect("app runs");
        })
    });
    let (port, stopper) = tokio::task::spawn_blocking(move || ready_rx.recv().expect("app starts"))
        .await
        .expect("join");
    TestApp {
        port,
        config,
        database,
        http: reqwest::Client::new(),
        stopper,
        thread: Some(thread),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/inform{query}", self.port)
    }

    pub fn token(&self, sub: &str) -> String {
        informd::auth::mint(&self.config, sub, 3600, vec![], None).expect("mint")
    }

    pub fn token_with(&self, sub: &str, ttl: u64, topics: &[&str]) -> String {
        let topics = topics.iter().map(|t| t.to_string()).collect();
        informd::auth::mint(&self.config, sub, ttl, topics, None).expect("mint")
    }

    /// `POST /publish` with the test key.
    pub async fn publish(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/publish"))
            .bearer_auth(PUBLISH_KEY)
            .json(body)
            .send()
            .await
            .expect("publish request")
    }

    /// Publishes and asserts a 200; returns the body.
    pub async fn publish_ok(&self, body: &Value) -> Value {
        let response = self.publish(body).await;
        let status = response.status();
        let body: Value = response.json().await.expect("json body");
        assert_eq!(status, 200, "publish failed: {body}");
        body
    }

    /// Publishes one notification of `kind` to `user`.
    pub async fn notify(&self, user: &str, kind: &str) -> Value {
        self.publish_ok(&json!({"to": user, "kind": kind})).await
    }

    /// Opens a socket for `user` (query `extra` appended) and returns it after `welcome`.
    pub async fn connect_user(&self, user: &str, extra: &str) -> (Client, Value) {
        let url = self.ws_url(&format!("?token={}{extra}", self.token(user)));
        let mut client = Client::connect(&url, &[]).await.expect("handshake");
        let welcome = client.next_of_type("welcome").await;
        (client, welcome)
    }

    /// A session for `user` whose socket has a 4 KiB receive buffer, so that the server's
    /// buffers fill soon once it stops reading: a slow consumer. Its `welcome` is read.
    pub async fn connect_slow_reader(&self, user: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer");
        let stream = socket
            .connect(([127, 0, 0, 1], self.port).into())
            .await
            .expect("connect");
        let url = self.ws_url(&format!("?token={}", self.token(user)));
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
        let mut client = Client { ws };
        client.next_of_type("welcome").await;
        client
    }

    /// `GET` with the user's token.
    pub async fn get_as(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(self.token(user))
            .send()
            .await
            .expect("get")
    }

    /// `POST` JSON with the user's token.
    pub async fn post_as(&self, user: &str, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(self.token(user))
            .json(body)
            .send()
            .await
            .expect("post")
    }

    /// Runs a query that answers one integer straight on the database (not through informd).
    /// Write it portably: it runs on SQLite and on PostgreSQL (`NOT read`, not `read = 0`).
    pub async fn count_rows(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        if self.database.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.database.url)
                .await
                .expect("open db");
            let n: Option<i64> = sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .expect("count");
            conn.close().await.ok();
            return n.unwrap_or(0);
        }
        let url = format!("sqlite://{}?mode=ro", self.database.url);
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open db");
        let n: Option<i64> = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("count");
        conn.close().await.ok();
        n.unwrap_or(0)
    }

    /// Runs a statement straight on the database, as an operator or a crash would.
    pub async fn execute(&self, sql: &str) {
        use sqlx::Connection;
        if self.database.is_postgres() {
            let mut conn = sqlx::PgConnection::connect(&self.database.url)
                .await
                .expect("open db");
            sqlx::query(sql).execute(&mut conn).await.expect(sql);
            conn.close().await.ok();
            return;
        }
        let url = format!("sqlite://{}", self.database.url);
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open db");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
        conn.close().await.ok();
    }

    fn shutdown(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }

    fn stop_keep_files(mut self) -> (Config, Arc<TestDatabase>, Arc<TempDir>) {
        self.shutdown();
        (
            self.config.clone(),
            self.database.clone(),
            self._dir.clone(),
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stopper.stop();
    }
}

/// A WebSocket client that reads JSON frames.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a handshake was refused: status and JSON body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

impl Client {
    /// Connects with extra request headers; a refused handshake returns its status and body.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, Refused> {
        let mut request = url.into_client_request().expect("request");
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err(Refused { status, body })
            }
            Err(e) => panic!("handshake failed unexpectedly: {e}"),
        }
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.ws
            .send(Message::Text(value.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string()))
            .await
            .expect("send");
    }

    /// The next JSON text frame (pings and pongs are skipped). Panics on close or timeout.
    pub async fn next(&mut self) -> Value {
        match self.next_event().await {
            Event::Frame(v) => v,
            Event::Closed(code) => panic!("socket closed ({code:?}) while a frame was expected"),
        }
    }

    /// The next frame or the close.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Event::Frame(serde_json::from_str(&text).expect("frame is JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Event::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Event::Closed(None),
            }
        }
    }

    /// The next frame, asserting its type.
    pub async fn next_of_type(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "expected a {kind} frame, got {frame}");
        frame
    }

    /// The next `notification` frame, past any `unread` frames. A notification published
    /// just before the connect may reach the session live after its `welcome` counted it;
    /// the session drops that frame and sends the current badge in an `unread` frame
    /// instead, which may already count a later notification (docs/PROTOCOL.md, `unread`).
    pub async fn next_notification(&mut self) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] != "unread" {
                assert_eq!(frame["type"], "notification", "got {frame}");
                return frame;
            }
        }
    }

    /// Reads frames until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Event::Closed(code) = self.next_event().await {
                return code;
            }
        }
    }

    /// Collects the next `n` notification frames' seqs, asserting nothing else comes between.
    /// The seqs of the next `n` notifications. Badge updates (`unread`) between them are
    /// skipped: a session may send one after a replay.
    pub async fn notification_seqs(&mut self, n: usize) -> Vec<i64> {
        let mut seqs = Vec::with_capacity(n);
        while seqs.len() < n {
            let frame = self.next().await;
            if frame["type"] == "unread" {
                continue;
            }
            assert_eq!(frame["type"], "notification", "got {frame}");
            seqs.push(frame["notification"]["seq"].as_i64().expect("seq"));
        }
        seqs
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// What a socket yielded.
#[derive(Debug)]
pub enum Event {
    Frame(Value),
    Closed(Option<u16>),
}

/// Close code as tungstenite reports it, for comparisons.
pub fn code(c: u16) -> Option<u16> {
    Some(u16::from(CloseCode::from(c)))
}

/// Sends raw bytes on a fresh connection and returns what the server answers first.
pub async fn raw_exchange(port: u16, parts: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A head that arrives in pieces, as over a slow network.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stream.write_all(part).await.unwrap();
    }
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(crate::helpers::FRAME_TIMEOUT, stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// The one id a publish to one recipient answers.
pub fn only_id(answer: &Value) -> i64 {
    assert_eq!(answer["ids"].as_array().map(Vec::len), Some(1), "{answer}");
    answer["ids"][0].as_i64().expect("an id")
}
