//! The front door: one listener, one port, two kinds of connection.
//!
//! Each new connection's first bytes are peeked (not consumed). A WebSocket handshake for
//! `/inform` is served directly on the TCP stream by [`crate::http::inform::accept`], which keeps
//! a waiting session down to a few kilobytes; anything else is handed, untouched, to the
//! actix-web application through actix-http's HTTP service. Workers, graceful shutdown and the
//! accept loop are actix-server's.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
};
use actix_web::dev::AppConfig;
use actix_web::middleware::Logger;
use actix_web::{web, App};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::http;
use crate::state::AppState;
use crate::ws::handshake::{recognise, Opening};

/// The most of a request head looked at to tell a handshake apart (browsers with many cookies
/// send large heads).
const PEEK_LIMIT: usize = 32 * 1024;
/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between looks at a request head that has not fully arrived.
const PEEK_RETRY: Duration = Duration::from_millis(5);
/// Connections waiting to be accepted.
const BACKLOG: i32 = 4096;

/// Binds `address` with a backlog deep enough for thousands of browsers reconnecting at once.
pub fn bind(address: &str) -> io::Result<TcpListener> {
    let address: SocketAddr = address
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{address}: {e}")))?;
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

/// The access log: method, path without the query string (it may hold a token), status.
fn access_log() -> Logger {
    Logger::new(r#"%a "%{method}xi %U" %s %b %Dms"#)
        .custom_request_replace("method", |req| req.method().to_string())
}

/// Builds the server on `listener`; it starts serving when the returned future is polled.
pub fn build(
    listener: TcpListener,
    workers: usize,
    shutdown_grace_secs: u64,
    state: AppState,
) -> io::Result<Server> {
    let builder = Server::build();
    // Fires when a graceful stop begins, so idle keep-alive HTTP connections close at once
    // instead of holding the shutdown until their timeout.
    let stopping = builder.graceful_shutdown_signal();
    let server = builder
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
                    let http = HttpService::build()
                        .graceful_shutdown_signal(move || {
                            let stopping = stopping.clone();
                            async move { stopping.notified().await }
                        })
                        .finish(map_config(app, |_| AppConfig::default()))
                        .tcp()
                        .new_service(())
                        .await
                        .map_err(|e| log::error!("cannot start the HTTP service: {e:?}"))?;
                    let http = Rc::new(http);
                    Ok::<_, ()>(fn_service(move |io: TcpStream| {
                        let http = http.clone();
                        let state = state.clone();
                        async move { route(io, http, state).await }
                    }))
                }
            })
        })?
        .run();
    Ok(server)
}

/// Serves one connection: a WebSocket session or HTTP.
async fn route<S>(mut io: TcpStream, http: Rc<S>, state: AppState) -> Result<(), ()>
where
    S: Service<TcpStream, Response = ()>,
    S::Error: std::fmt::Debug,
{
    match tokio::time::timeout(HEAD_TIMEOUT, opening(&io)).await {
        Ok(Opening::WebSocket(handshake)) => {
            let mut head = vec![0; handshake.head_len];
            if io.read_exact(&mut head).await.is_err() {
                return Ok(());
            }
            drop(head);
            http::inform::accept(io, handshake, state).await;
            Ok(())
        }
        // Anything else, including a head that never completes, is for the HTTP server (which
        // has its own timeouts and error answers). Boxed: the HTTP dispatcher's future is
        // several kilobytes, and unboxed it would size every WebSocket session's task too.
        _ => Box::pin(http.call(io))
            .await
            .map(|_| ())
            .map_err(|e| log::debug!("HTTP connection ended: {e:?}")),
    }
}

/// Peeks at the request head until it is complete (or clearly not a handshake).
async fn opening(io: &TcpStream) -> Opening {
    let mut buf = vec![0; PEEK_LIMIT];
    loop {
        let n = match io.peek(&mut buf).await {
            Ok(0) | Err(_) => return Opening::Http,
            Ok(n) => n,
        };
        match recognise(&buf[..n]) {
            Opening::Incomplete if n < buf.len() => tokio::time::sleep(PEEK_RETRY).await,
            Opening::Incomplete => return Opening::Http,
            decided => return decided,
        }
    }
}
