//! The attacks that once held informd's resources, run against the real binary: clients that
//! never read, heads cut short, slow bodies without credentials, absurd token lifetimes. Each
//! checks that the server stays responsive, gives its file descriptors back, and still serves
//! a legitimate user.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::daemon::{
    configured, legitimate_user_gets_through, publish, token, with_file_limit, Daemon,
};
use crate::helpers::{Client, JWT_SECRET};

/// Polls `condition` every 50 ms until it holds or `limit` passes; returns whether it held.
/// (The server is another process: there is no event to wait for.)
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sockets the daemon holds once it has served one request of each kind and its clients
/// have gone.
async fn warmed_baseline(daemon: &Daemon) -> usize {
    let http = reqwest::Client::new();
    assert_eq!(
        publish(&http, daemon, &json!({"to": "warm", "kind": "like"}))
            .await
            .status(),
        200
    );
    legitimate_user_gets_through(daemon, "warm").await;
    drop(http);
    // Let the client connections above finish closing on the server's side: the count must
    // hold still for half a second.
    let mut readings = Vec::new();
    eventually(Duration::from_secs(10), || {
        readings.push(daemon.open_sockets());
        readings.len() >= 10
            && readings[readings.len() - 10..]
                .windows(2)
                .all(|w| w[0] == w[1])
    })
    .await;
    daemon.open_sockets()
}

/// Asserts that the daemon's sockets come back to `baseline` within `limit`.
async fn assert_fds_return(daemon: &Daemon, baseline: usize, limit: Duration, what: &str) {
    let back = eventually(limit, || daemon.open_sockets() <= baseline).await;
    assert!(
        back,
        "{what}: the daemon holds {} sockets, {baseline} before",
        daemon.open_sockets()
    );
}

/// `/healthz` answers promptly.
async fn assert_responsive(daemon: &Daemon) {
    let answer = tokio::time::timeout(Duration::from_secs(2), reqwest::get(daemon.url("/healthz")))
        .await
        .expect("/healthz answered within 2 s")
        .expect("/healthz request");
    assert_eq!(answer.status(), 200);
}

/// A TCP connection to the daemon whose receive buffer is tiny, so that what the server sends
/// backs up at once.
async fn tiny_window_connection(port: u16) -> TcpStream {
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    socket.connect(address).await.unwrap()
}

/// Opens a WebSocket by hand (the handshake read byte by byte up to the blank line, so no frame
/// is read by mistake) and returns the raw stream.
async fn raw_websocket(mut io: TcpStream, port: u16, user: &str) -> TcpStream {
    let head = format!(
        "GET /inform?token={} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        token(user)
    );
    io.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await.unwrap();
        answer.push(byte[0]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    io
}

/// A masked ping frame with a 125-byte payload (the largest control frame): each one makes the
/// server write a 127-byte pong.
fn ping_frame() -> Vec<u8> {
    let mut frame = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    frame.extend_from_slice(&[b'p'; 125]);
    frame
}

/// Floods pings and never reads, until the server resets the connection or `limit` passes.
/// Returns whether the server cut the connection.
async fn flood_pings_never_read(mut io: TcpStream, limit: Duration) -> bool {
    let frames: Vec<u8> = ping_frame().repeat(64);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, io.write_all(&frames)).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return true, // reset by the server
            Err(_) => {
                // Our writes are stuck too (the server stopped reading while its own writes
                // back up). Has the server closed? A read would see the reset, or EOF.
                let mut byte = [0u8; 1];
                let peeked =
                    tokio::time::timeout(Duration::from_millis(10), io.peek(&mut byte)).await;
                return matches!(peeked, Ok(Ok(0)) | Ok(Err(_)));
            }
        }
    }
}

#[tokio::test]
async fn clients_that_never_read_are_cut_off_and_do_not_hold_a_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = configured(dir.path());
    command
        .env("INFORMD_HEARTBEAT_SECS", "2")
        .env("INFORMD_WRITE_TIMEOUT_SECS", "2")
        .env("INFORMD_SHUTDOWN_GRACE_SECS", "10");
    let daemon = Daemon::start(command);
    let baseline = warmed_baseline(&daemon).await;

    // Twenty clients flood pings and read nothing. Each session's pongs back up; the write
    // deadline (2 s) closes it, and the heartbeat goes on meanwhile.
    let floods: Vec<_> = (0..20)
        .map(|i| {
            let port = daemon.port;
            tokio::spawn(async move {
                let io =
                    raw_websocket(tiny_window_connection(port).await, port, &format!("r{i}")).await;
                flood_pings_never_read(io, Duration::from_secs(20)).await
            })
        })
        .collect();
    assert_responsive(&daemon).await;
    legitimate_user_gets_through(&daemon, "alice").await;
    for flood in floods {
        assert!(flood.await.unwrap(), "the server never cut a client off");
    }
    assert_fds_return(
        &daemon,
        baseline,
        Duration::from_secs(5),
        "never-reading clients",
    )
    .await;

    // The same clients again, stuck when SIGTERM arrives: the shutdown does not wait for them.
    let upgraded = Arc::new(AtomicUsize::new(0));
    let floods: Vec<_> = (0..20)
        .map(|i| {
            let port = daemon.port;
            let upgraded = upgraded.clone();
            tokio::spawn(async move {
                let io =
                    raw_websocket(tiny_window_connection(port).await, port, &format!("s{i}")).await;
                upgraded.fetch_add(1, Ordering::SeqCst);
                flood_pings_never_read(io, Duration::from_secs(20)).await
            })
        })
        .collect();
    // Wait until every flooding client is a session (its handshake answered): a handshake
    // still in flight when SIGTERM arrives is rightly refused with 503.
    assert!(
        eventually(Duration::from_secs(10), || upgraded.load(Ordering::SeqCst)
            == 20)
        .await,
        "the flooding clients did not all become sessions"
    );
    let signalled = Instant::now();
    daemon.terminate();
    let (exit, _) = daemon.exit_code().await;
    let took = signalled.elapsed();
    assert_eq!(exit, Some(0));
    assert!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with a 10 s grace: it waited on clients that do not read"
    );
    for flood in floods {
        assert!(flood.await.unwrap());
    }
}

#[tokio::test]
async fn heads_cut_short_are_released_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let baseline = warmed_baseline(&daemon).await;
    let head = b"GET /inform?token=abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg";
    let mut connections = Vec::new();
    for _ in 0..300 {
        let mut io = TcpStream::connect(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        io.write_all(head).await.unwrap();
        connections.push(io);
    }
    assert_responsive(&daemon).await;
    drop(connections); // EOF on every one
                       // Well before any head timeout: the server notices EOF itself.
    assert_fds_return(&daemon, baseline, Duration::from_secs(3), "partial heads").await;
    assert_responsive(&daemon).await;
    legitimate_user_gets_through(&daemon, "alice").await;
}

#[tokio::test]
async fn running_out_of_file_descriptors_is_over_once_the_heads_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(with_file_limit(dir.path(), 128));
    let baseline = warmed_baseline(&daemon).await;
    // More half-sent heads than the server has descriptors: accepting fails (EMFILE) for the
    // last of them, and actix-server backs off instead of spinning.
    let mut connections = Vec::new();
    for _ in 0..200 {
        let mut io = TcpStream::connect(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        io.write_all(b"GET /inform?token=abc HTTP/1.1\r\nHost: 1")
            .await
            .unwrap();
        connections.push(io);
    }
    drop(connections);
    // Well before any head timeout, the descriptors are back and the server answers.
    assert_fds_return(
        &daemon,
        baseline,
        Duration::from_secs(3),
        "heads past EMFILE",
    )
    .await;
    assert_responsive(&daemon).await;
    legitimate_user_gets_through(&daemon, "alice").await;
    daemon.terminate();
    let (_, log) = daemon.exit_code().await;
    let refused = log
        .iter()
        .filter(|line| line.contains("Too many open files"))
        .count();
    assert!(
        refused > 0,
        "the test never ran the server out of descriptors"
    );
    assert!(refused < 50, "accepting spun on EMFILE: {refused} errors");
}

#[tokio::test]
async fn slow_bodies_without_credentials_are_refused_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let baseline = warmed_baseline(&daemon).await;
    let requests: Vec<_> = (0..100)
        .map(|i| {
            let port = daemon.port;
            let path = if i % 2 == 0 {
                "/api/notifications/read"
            } else {
                "/publish"
            };
            tokio::spawn(async move {
                let mut io = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                     Content-Length: 200000\r\n\r\n{{\"all\":"
                );
                io.write_all(head.as_bytes()).await.unwrap();
                // The answer comes without the rest of the body.
                let mut answer = vec![0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(3), io.read(&mut answer))
                    .await
                    .expect("answered without waiting for the body")
                    .unwrap();
                String::from_utf8_lossy(&answer[..n]).to_string()
            })
        })
        .collect();
    for request in requests {
        let answer = request.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains(r#""code":"#), "a JSON error: {answer}");
    }
    assert_fds_return(&daemon, baseline, Duration::from_secs(3), "slow bodies").await;
    assert_responsive(&daemon).await;
    legitimate_user_gets_through(&daemon, "alice").await;
}

/// A token signed with the right secret, whose `exp` is as late as a JSON number allows.
fn token_until_the_end_of_time(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": u64::MAX});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn absurd_token_lifetimes_neither_crash_sessions_nor_lock_users_out() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    let http = reqwest::Client::new();
    let url = format!(
        "ws://127.0.0.1:{}/inform?token={}",
        daemon.port,
        token_until_the_end_of_time("mallory")
    );
    // Three rounds of the per-user limit (16): sessions that end must give their place back.
    // (Unregistering is asynchronous, so a handshake refused with 429 right after a round is
    // tried again for a while; a leaked registration would be refused for good.)
    for round in 0..3 {
        let mut clients = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while clients.len() < 16 {
            match Client::connect(&url, &[]).await {
                Ok(mut client) => {
                    client.next_of_type("welcome").await;
                    clients.push(client);
                }
                Err(refused) => {
                    assert_eq!(refused.status, 429);
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: {} sessions admitted, then 429 for good",
                        clients.len()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let refused = Client::connect(&url, &[])
            .await
            .err()
            .expect("the 17th is refused");
        assert_eq!(refused.status, 429);
        let answer: Value = publish(&http, &daemon, &json!({"to": "mallory", "kind": "like"}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer["online_sessions"], 16, "round {round}");
        for client in clients.iter_mut() {
            let frame = client.next_of_type("notification").await;
            assert_eq!(frame["notification"]["seq"], round + 1);
        }
        for client in clients {
            client.close().await;
        }
    }
    // The last round's sessions give their places back asynchronously too: once one
    // handshake is admitted again, a legitimate user of the same id gets through.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect(&url, &[]).await {
            Ok(client) => break client.close().await,
            Err(refused) => {
                assert_eq!(refused.status, 429);
                assert!(
                    Instant::now() < deadline,
                    "mallory refused with 429 for good"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_responsive(&daemon).await;
    legitimate_user_gets_through(&daemon, "mallory").await;
}
