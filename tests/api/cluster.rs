//! Three real informd processes on one PostgreSQL database with one Redis between them, with
//! publishers and clients on every node: every client gets every notification once, in seq
//! order, with the badge the database holds; and when a node is killed with SIGKILL, its
//! clients resume on another node with nothing lost or doubled.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::daemon::{configured, token, Daemon};
use crate::helpers::{Client, Event, TestDatabase, PUBLISH_KEY};
use crate::redis::RedisServer;

const USERS: [&str; 3] = ["ua", "ub", "uc"];

/// A node of the cluster: the real binary on the shared database and Redis.
fn node(dir: &std::path::Path, database: &str, redis: &RedisServer) -> Daemon {
    let mut command = configured(dir);
    command
        .env("INFORMD_DATABASE", database)
        .env("INFORMD_BROKER", redis.url())
        .env("RUST_LOG", "info");
    Daemon::start(command)
}

async fn fresh_postgres() -> Arc<TestDatabase> {
    Arc::new(
        tokio::task::spawn_blocking(TestDatabase::postgres)
            .await
            .expect("database"),
    )
}

async fn wait_ready(daemon: &Daemon) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while reqwest::get(daemon.url("/readyz"))
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(std::time::Instant::now() < deadline, "node never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that remembers what it got, and can move to another node with `since`.
struct Tracked {
    user: &'static str,
    client: Client,
    seqs: Vec<i64>,
    unread: i64,
}

impl Tracked {
    async fn connect(port: u16, user: &'static str, since: Option<i64>) -> Client {
        let since = since.map_or(String::new(), |s| format!("&since={s}"));
        let url = format!("ws://127.0.0.1:{port}/inform?token={}{since}", token(user));
        Client::connect(&url, &[]).await.expect("handshake")
    }

    async fn open(port: u16, user: &'static str) -> Tracked {
        let mut client = Tracked::connect(port, user, None).await;
        let welcome = client.next_of_type("welcome").await;
        Tracked {
            user,
            client,
            seqs: Vec::new(),
            unread: welcome["unread"].as_i64().unwrap_or(-1),
        }
    }

    fn take(&mut self, frame: &Value) {
        match frame["type"].as_str() {
            Some("notification") => {
                self.seqs
                    .push(frame["notification"]["seq"].as_i64().expect("seq"));
                self.unread = frame["unread"].as_i64().expect("unread");
            }
            Some("unread") => self.unread = frame["unread"].as_i64().expect("unread"),
            _ => {}
        }
    }

    /// Reads frames, for up to 3 s, while the badge shown differs from `unread`. A gap filled
    /// from the database carries the count read before it, and a live frame the fill already
    /// sent is dropped; an `unread` frame then brings the badge up to date, a moment after
    /// the last notification.
    async fn settle_on(&mut self, unread: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.unread != unread {
            match tokio::time::timeout_at(deadline, self.client.next_event()).await {
                Ok(Event::Frame(frame)) => self.take(&frame),
                Ok(Event::Closed(_)) | Err(_) => return,
            }
        }
    }

    /// Reads until `n` notifications have arrived. When the node goes away, reconnects to
    /// `fallback` with `since` the last seq it got.
    async fn until(&mut self, n: usize, fallback: u16) {
        while self.seqs.len() < n {
            match self.client.next_event().await {
                Event::Frame(frame) => self.take(&frame),
                Event::Closed(_) => {
                    let since = self.seqs.last().copied().unwrap_or(0);
                    self.client = Tracked::connect(fallback, self.user, Some(since)).await;
                }
            }
        }
    }
}

/// Publishes `count` notifications to every user through `port`, each with its own
/// idempotency key, retrying through `fallback` when the node does not answer; returns how
/// many attempts failed.
async fn publish_all(port: u16, fallback: u16, tag: &'static str, count: usize) -> usize {
    let http = reqwest::Client::new();
    let mut failed = 0;
    for i in 0..count {
        let body = json!({"to": USERS, "kind": "like", "data": {"tag": tag, "i": i}});
        let key = format!("{tag}-{i}");
        let mut target = port;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "publish {key} never acknowledged"
            );
            let sent = http
                .post(format!("http://127.0.0.1:{target}/publish"))
                .bearer_auth(PUBLISH_KEY)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status() == 200 => break,
                _ => {
                    failed += 1;
                    target = fallback;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    failed
}

/// The user's badge and latest seq as the database holds them.
async fn badge(port: u16, user: &str) -> (i64, i64) {
    let answer: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/notifications/unread"))
        .bearer_auth(token(user))
        .send()
        .await
        .expect("unread")
        .json()
        .await
        .expect("json");
    (
        answer["unread"].as_i64().unwrap_or(-1),
        answer["seq"].as_i64().unwrap_or(-1),
    )
}

/// Three nodes, ready, with a client for every user on every node.
struct Cluster {
    nodes: Vec<Daemon>,
    ports: Vec<u16>,
    clients: Vec<Tracked>,
    _redis: RedisServer,
    _database: Arc<TestDatabase>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let database = fresh_postgres().await;
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Daemon> = (0..3)
            .map(|_| node(dir.path(), &database.url, &redis))
            .collect();
        for n in &nodes {
            wait_ready(n).await;
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let mut clients = Vec::new();
        for &port in &ports {
            for user in USERS {
                clients.push(Tracked::open(port, user).await);
            }
        }
        Cluster {
            nodes,
            ports,
            clients,
            _redis: redis,
            _database: database,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn three_nodes_deliver_every_notification_once_in_order() {
    const PER_NODE: usize = 30;
    let mut cluster = Cluster::start().await;
    let ports = cluster.ports.clone();
    let publishers: Vec<_> = ports
        .iter()
        .zip(["n0", "n1", "n2"])
        .map(|(&port, tag)| tokio::spawn(publish_all(port, port, tag, PER_NODE)))
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let total = 3 * PER_NODE;
    for client in &mut cluster.clients {
        client.until(total, ports[0]).await;
        let expected: Vec<i64> = (1..=total as i64).collect();
        assert_eq!(client.seqs, expected, "{} missed or doubled", client.user);
        let (unread, seq) = badge(ports[0], client.user).await;
        assert_eq!((unread, seq), (total as i64, total as i64));
        client.settle_on(unread).await;
        assert_eq!(client.unread, unread, "{}'s badge", client.user);
    }
}

#[tokio::test]
async fn a_node_killed_mid_stream_loses_its_clients_nothing() {
    const PER_NODE: usize = 100;
    let mut cluster = Cluster::start().await;
    let ports = cluster.ports.clone();
    // Publishers on every node; the one on the node that dies moves to the first.
    let publishers: Vec<_> = ports
        .iter()
        .zip(["k0", "k1", "k2"])
        .map(|(&port, tag)| tokio::spawn(publish_all(port, ports[0], tag, PER_NODE)))
        .collect();
    // Mid-stream: the first notifications are arriving.
    cluster.clients[0].until(15, ports[0]).await;
    cluster.nodes[2].child.kill().expect("SIGKILL");
    let mut failed = Vec::new();
    for publisher in publishers {
        failed.push(publisher.await.unwrap());
    }
    assert!(
        failed[2] > 0,
        "the killed node's publisher never saw it die"
    );
    let total = 3 * PER_NODE;
    let (unread, seq) = badge(ports[0], "ua").await;
    assert_eq!(
        (unread, seq),
        (total as i64, total as i64),
        "stored once each"
    );
    for client in &mut cluster.clients {
        client.until(total, ports[0]).await;
        let expected: Vec<i64> = (1..=total as i64).collect();
        assert_eq!(client.seqs, expected, "{} missed or doubled", client.user);
    }
}
