//! `spawn_app()` and typed helpers: mint a token, publish, open a socket, await the next frame
//! of a type with a timeout. Tests wait for frames; they never sleep and hope.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// A running server on its own thread and actix system.
pub struct TestApp {
    pub port: u16,
    pub config: Config,
    pub db_path: PathBuf,
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
    let db_path = dir.path().join("informd.db");
    let mut config = test_config(&db_path);
    adjust(&mut config);
    start(config, db_path, dir).await
}

/// Starts a second server on the same database file while `first` keeps running: another
/// node, without a broker between the two.
pub async fn second_node(first: &TestApp) -> TestApp {
    let mut config = first.config.clone();
    config.listen = "127.0.0.1:0".into();
    start(config, first.db_path.clone(), first._dir.clone()).await
}

/// Starts a server on the database of `previous` (which must be stopped).
pub async fn restart(previous: TestApp) -> TestApp {
    let (config, db_path, dir) = previous.stop_keep_files();
    start(config, db_path, dir).await
}

async fn start(config: Config, db_path: PathBuf, dir: Arc<TempDir>) -> TestApp {
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
        db_path,
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

    /// Counts rows straight from the database file (read-only).
    pub async fn count_rows(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", self.db_path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open db");
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("count");
        conn.close().await.ok();
        n
    }

    fn shutdown(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }

    fn stop_keep_files(mut self) -> (Config, PathBuf, Arc<TempDir>) {
        self.shutdown();
        (self.config.clone(), self.db_path.clone(), self._dir.clone())
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

    /// Reads frames until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Event::Closed(code) = self.next_event().await {
                return code;
            }
        }
    }

    /// Collects the next `n` notification frames' seqs, asserting nothing else comes between.
    pub async fn notification_seqs(&mut self, n: usize) -> Vec<i64> {
        let mut seqs = Vec::with_capacity(n);
        for _ in 0..n {
            let frame = self.next_of_type("notification").await;
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
