//! Reading a connection's first request head, to tell a WebSocket handshake for `/inform` from
//! everything else.
//!
//! The bytes go into a buffer this connection owns, read as the socket becomes readable: a
//! client that closes is noticed at once, one that stalls costs nothing until the head deadline,
//! and the buffer grows only as far as the head does. Whatever was read is handed on with the
//! verdict, so neither the session nor the HTTP server misses a byte.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::error::ApiError;
use crate::ws::handshake::{recognise, Opening};

/// The largest request head read (browsers with many cookies send large heads).
pub const MAX_HEAD: usize = 32 * 1024;
/// How long a connection may take to send its first request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The buffer a head is first read into; most heads fit.
pub(crate) const FIRST_READ: usize = 2048;

/// How a connection's first request head turned out.
#[derive(Debug)]
pub enum Head {
    /// Complete, or clearly not a handshake: what it is, and every byte read so far.
    Read(Opening, BytesMut),
    /// The client closed, or the connection broke, before the head was complete.
    Gone,
    /// Too slow or too large: answered with this error, and the connection closed.
    Refused(ApiError),
}

/// Reads from `io` until its first request head is complete, or the connection has to go.
pub async fn read(io: &mut TcpStream) -> Head {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    match tokio::time::timeout(HEAD_TIMEOUT, read_until_decided(io, &mut buf)).await {
        Ok(Ok(opening)) => Head::Read(opening, buf),
        Ok(Err(head)) => head,
        Err(_) => Head::Refused(ApiError::RequestTimeout("the request head")),
    }
}

/// What the head is, or why there is none. Generic over the byte source so that the fuzz
/// targets can drive it from memory, a chunk at a time.
pub(crate) async fn read_until_decided<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
) -> Result<Opening, Head> {
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_HEAD {
                return Err(Head::Refused(ApiError::HeadersTooLarge { limit: MAX_HEAD }));
            }
            buf.reserve(buf.len().min(MAX_HEAD - buf.len()));
        }
        let before = buf.len();
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Head::Gone),
            Ok(_) => {}
        }
        // A head ends with a blank line, so until a line ends there is nothing new to parse:
        // a head sent a byte at a time is parsed once per line, not once per byte.
        if before > 0 && !buf[before..].contains(&b'\n') {
            continue;
        }
        match recognise(buf) {
            Opening::Incomplete => continue,
            decided => return Ok(decided),
        }
    }
}
