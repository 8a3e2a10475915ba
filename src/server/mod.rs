//! The front door: one listener, one port, two kinds of connection.
//!
//! Each new connection's first request head is read ([`head`]) into a buffer of its own. A
//! WebSocket handshake for `/inform` is served directly on the TCP stream by
//! [`crate::http::inform::accept`], which keeps a waiting session down to a few kilobytes;
//! anything else is handed, with the bytes already read put back in front ([`prefixed`]), to the
//! actix-web application through actix-http's HTTP service. Workers, graceful shutdown and the
//! accept loop (which backs off when accepting fails, as on EMFILE) are actix-server's.

pub(crate) mod head;
mod prefixed;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::{h1, HttpMessage, HttpService, Protocol};
use actix_server::Server;
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
};
use actix_web::dev::AppConfig;
use actix_web::middleware::Logger;
use actix_web::{web, App};
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use head::Head;
pub use head::{HEAD_TIMEOUT, MAX_HEAD};
use prefixed::Prefixed;

use crate::error::ApiError;
use crate::http;
use crate::state::AppState;
use crate::ws::handshake::{recognise_later, refusal, Handshake, Opening};

/// Connections waiting to be accepted.
const BACKLOG: i32 = 4096;
/// Connections, per worker, that may be sending their first request head at once. Beyond it a
/// new connection gets 503 at once: reconnecting browsers retry, and a flood of slow or
/// half-sent heads cannot hold more than this many sockets and buffers.
pub const HEAD_SLOTS: usize = 512;
/// How long writing a refusal to a connection that is being turned away may take.
const TURN_AWAY_WAIT: Duration = Duration::from_secs(1);

/// Binds `address` (`host:port`; a name such as `localhost` is resolved, IPv4 first) with a
/// backlog deep enough for thousands of browsers reconnecting at once.
pub fn bind(address: &str) -> io::Result<TcpListener> {
    let address = resolve(address)?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The address `host:port` names: itself when it is an IP address, else the first IPv4
/// address the name resolves to (or the first address at all).
fn resolve(address: &str) -> io::Result<SocketAddr> {
    if let Ok(address) = address.parse() {
        return Ok(address);
    }
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address:?} is not host:port ({why}); for example 127.0.0.1:8080"),
        )
    };
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(address)
        .map_err(|e| invalid(&e.to_string()))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| invalid("the name resolves to no address"))
}

/// The access log: client, method, path without the query string (it may hold a token),
/// status, the error code of a refusal (`-` for none), size, time. Health probes, which a load
/// balancer sends every few seconds, are logged by their handlers at debug instead.
fn access_log() -> Logger {
    Logger::new(r#"%{client}xi "%{method}xi %U" %s %{error}xo %b %Dms"#)
        .exclude("/healthz")
        .exclude("/readyz")
        .custom_request_replace("client", |req| {
            let client = req
                .app_data::<web::Data<AppState>>()
                .and_then(|state| state.proxies.client(req.peer_addr(), req.headers()));
            http::peer::display(client.or(req.peer_addr().map(|p| p.ip())))
        })
        .custom_request_replace("method", |req| req.method().to_string())
        .custom_response_replace("error", |res| {
            res.response()
                .error()
                .and_then(|e| e.as_error::<ApiError>())
                .map_or_else(|| "-".to_string(), |e| e.code().to_string())
        })
}

/// Builds the server on `listener` (and `GET /metrics` alone on `metrics_listener`, when
/// given); it starts serving when the returned future is polled.
pub fn build(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    workers: usize,
    shutdown_grace_secs: u64,
    state: AppState,
) -> io::Result<Server> {
    let builder = Server::build();
    // Fires when a graceful stop begins, so idle keep-alive HTTP connections close at once
    // instead of holding the shutdown until their timeout.
    let stopping = builder.graceful_shutdown_signal();
    let mut builder = match metrics_listener {
        Some(metrics_listener) => {
            let state = state.clone();
            builder.listen("metrics", metrics_listener, move || {
                let data = web::Data::new(state.clone());
                let app = App::new().app_data(data).configure(http::metrics_routes);
                HttpService::build()
                    .finish(map_config(app.into_factory(), |_| AppConfig::default()))
                    .tcp()
            })?
        }
        None => builder,
    };
    builder = builder
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_grace_secs)
        .listen("informd", listener, move || {
            let state = state.clone();
            let stopping = stopping.clone();
            fn_factory(move || {
                let state = state.clone();
                let stopping = stopping.clone();
                async move {
                    let data = web::Data::new(state.clone());
                    let routes_state = state.clone();
                    let app = App::new()
                        .app_data(data)
                        .wrap(access_log())
                        .configure(move |cfg| http::routes(cfg, &routes_state))
                        .into_factory();
                    let upgrade_state = state.clone();
                    let http = HttpService::<Prefixed, _, _, _, _>::build()
                        .graceful_shutdown_signal(move || {
                            let stopping = stopping.clone();
                            async move { stopping.notified().await }
                        })
                        .upgrade(fn_service(
                            move |(request, framed): (actix_http::Request, _)| {
                                upgrade_later_request(request, framed, upgrade_state.clone())
                            },
                        ))
                        .finish(map_config(app, |_| AppConfig::default()))
                        .new_service(())
                        .await
                        .map_err(|e| log::error!("cannot start the HTTP service: {e:?}"))?;
                    let http = Rc::new(http);
                    let head_slots = Rc::new(Semaphore::new(HEAD_SLOTS));
                    Ok::<_, ()>(fn_service(move |io: TcpStream| {
                        let http = http.clone();
                        let head_slots = head_slots.clone();
                        let state = state.clone();
                        async move { route(io, http, head_slots, state).await }
                    }))
                }
            })
        })?;
    Ok(builder.run())
}

/// Serves one connection: a WebSocket session or HTTP.
async fn route<S>(
    mut io: TcpStream,
    http: Rc<S>,
    head_slots: Rc<Semaphore>,
    state: AppState,
) -> Result<(), ()>
where
    S: Service<(Prefixed, Protocol, Option<SocketAddr>), Response = ()>,
    S::Error: std::fmt::Debug,
{
    let Ok(slot) = head_slots.try_acquire() else {
        turn_away(io, ApiError::Busy).await;
        return Ok(());
    };
    let head = head::read(&mut io).await;
    drop(slot);
    match head {
        Head::Read(Opening::WebSocket(handshake), mut received) => {
            let frames = if received.len() > handshake.head_len {
                received.split_off(handshake.head_len)
            } else {
                BytesMut::new()
            };
            drop(received);
            start_session(io, handshake, frames, state);
            Ok(())
        }
        Head::Read(Opening::Refused(error), _) => {
            http::inform::refuse(io, error, None, &state).await;
            Ok(())
        }
        Head::Refused(error) => {
            turn_away(io, error).await;
            Ok(())
        }
        Head::Read(Opening::Http | Opening::Incomplete, received) => {
            let peer = io.peer_addr().ok();
            let stream = Prefixed::new(received.freeze(), io);
            // Boxed: the HTTP dispatcher's future is several kilobytes, and unboxed it would
            // size every WebSocket session's task too.
            Box::pin(http.call((stream, Protocol::Http1, peer)))
                .await
                .map_err(|e| log::debug!("HTTP connection ended: {e:?}"))
        }
        Head::Gone => Ok(()),
    }
}

/// Serves a request that asked to upgrade after an earlier request on the same connection:
/// the HTTP server reads those (only a connection's first head passes the front door), and
/// hands them over here with the connection. A WebSocket handshake for `/inform` becomes a
/// session exactly as a first one would; anything else asking for a WebSocket or a tunnel
/// (`CONNECT`) is refused.
async fn upgrade_later_request(
    request: actix_http::Request,
    framed: Framed<Prefixed, h1::Codec>,
    state: AppState,
) -> Result<(), actix_web::Error> {
    let parts = framed.into_parts();
    let (unread_prefix, mut io) = parts.io.into_parts();
    // The earlier response, if the HTTP server had not written all of it yet.
    if !parts.write_buf.is_empty() {
        let written = tokio::time::timeout(TURN_AWAY_WAIT, io.write_all(&parts.write_buf)).await;
        if !matches!(written, Ok(Ok(()))) {
            log::debug!("connection gone before a later handshake could be answered");
            return Ok(());
        }
    }
    // What the client sent after the head: the HTTP server's buffer, then any bytes of the
    // first read it had not taken yet.
    let mut frames = parts.read_buf;
    frames.extend_from_slice(&unread_prefix);
    match recognise_later(&request) {
        Opening::WebSocket(handshake) => start_session(io, handshake, frames, state),
        Opening::Refused(error) => {
            http::inform::refuse(io, error, Some(request.headers()), &state).await;
        }
        Opening::Http | Opening::Incomplete => {
            let error = ApiError::InvalidHandshake("a WebSocket is served at /inform only");
            http::inform::refuse(io, error, Some(request.headers()), &state).await;
        }
    }
    Ok(())
}

/// Hands a WebSocket handshake to a session thread, where it is answered and its session
/// runs: what lives as long as the session is allocated there, next to the session, and the
/// worker goes back to serving requests at once.
fn start_session(io: TcpStream, handshake: Handshake, frames: BytesMut, state: AppState) {
    let threads = state.session_threads.clone();
    threads.spawn(io, move |io| {
        http::inform::accept(io, handshake, frames, state)
    });
}

/// Answers a connection that will not be served with `error`'s JSON response, and closes it.
async fn turn_away(mut io: TcpStream, error: ApiError) {
    log::debug!("connection turned away: {}", error.code());
    let answer = refusal(&error);
    let written = tokio::time::timeout(TURN_AWAY_WAIT, async {
        io.write_all(&answer).await?;
        io.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        // Linger 0: the drop sends RST, so the kernel does not go on holding unread bytes.
        let _ = socket2::SockRef::from(&io).set_linger(Some(Duration::ZERO));
    }
}
