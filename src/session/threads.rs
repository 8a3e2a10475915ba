//! The threads WebSocket sessions run on, apart from the workers that serve HTTP.
//!
//! A broadcast to every session wakes thousands of session tasks at once, and each of them
//! writes to its socket. When sessions ran on the HTTP workers, a `POST /publish` that arrived
//! meanwhile waited its turn behind all of them on the same event loop, twice (to be read, and
//! to be answered after the commit): about 100 ms per publish while a `global` broadcast
//! reached 19,500 sessions, though the commit itself took a millisecond. So the workers read
//! first heads and serve HTTP, and hand the socket of each WebSocket handshake to one of these
//! threads, where the handshake is answered and the session lives until it ends. A busy
//! fan-out then keeps these threads busy, and requests are still read and answered at once.
//! What a session keeps for its whole life is allocated here too, next to the session: made
//! on the worker, it pinned the worker's heap pages after the handshake's buffers there were
//! freed (measured: about 120 bytes more per idle session than before, against 65 now).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::ArbiterHandle;
use tokio::net::TcpStream;

/// The session threads of this node, given sessions in turn.
pub struct SessionThreads {
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
}

impl SessionThreads {
    /// Starts `threads` session threads (at least one). Must run inside an actix system.
    pub fn start(threads: usize) -> SessionThreads {
        let arbiters = (0..threads.max(1))
            .map(|_| crate::priority::delivery_arbiter().handle())
            .collect();
        SessionThreads {
            arbiters,
            next: AtomicUsize::new(0),
        }
    }

    /// Moves `io` to the next session thread and runs the session that `session` makes of it
    /// there, as a task of its own. The session's future is built on that thread, so it need
    /// not be `Send`; only what builds it crosses over.
    pub fn spawn<Make, Run>(&self, io: TcpStream, session: Make)
    where
        Make: FnOnce(TcpStream) -> Run + Send + 'static,
        Run: Future<Output = ()> + 'static,
    {
        // The socket leaves this thread's reactor and joins the session thread's.
        let io = match io.into_std() {
            Ok(io) => io,
            Err(e) => {
                log::warn!("cannot hand a session's socket to a session thread: {e}");
                return;
            }
        };
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        let started = self.arbiters[turn].spawn_fn(move || match TcpStream::from_std(io) {
            Ok(io) => {
                actix_web::rt::spawn(session(io));
            }
            Err(e) => log::warn!("a session thread cannot take a socket: {e}"),
        });
        if !started {
            log::warn!("the session threads have stopped; the session is not started");
        }
    }

    /// Stops the session threads; sessions still running there end with their sockets
    /// (shutdown, once the grace period allowed them to close).
    pub fn stop(&self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
