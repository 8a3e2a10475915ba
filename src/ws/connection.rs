//! One WebSocket over a TCP stream: read frames, write frames, close.
//!
//! Framing is actix-http's [`Codec`]. The read buffer exists only while bytes are arriving, and
//! the write buffer is released when a large frame has passed, so an idle session costs a few
//! hundred bytes here. Reading and writing
//! are cancel-safe: a write that is interrupted (the session is being kicked) leaves its unsent
//! bytes in the write buffer, and [`WsConnection::close`] sends them before the close frame, so
//! the client always sees a well-formed stream.

use std::io;
use std::time::Duration;

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Buffers larger than this are released once empty, so one big frame does not pin memory.
const KEEP_BUFFER: usize = 4096;
/// Bytes read at a time.
const READ_CHUNK: usize = 1024;

/// A frame from the client, as the session sees it.
#[derive(Debug)]
pub enum Inbound {
    Text(ByteString),
    Binary,
    /// A fragmented message: not part of this protocol.
    Fragment,
    Ping(Bytes),
    Pong,
    Close,
}

/// Why reading failed.
#[derive(Debug)]
pub enum ReadError {
    /// A frame larger than the limit (close 1009).
    TooBig,
    /// Not a valid WebSocket frame, or text that is not UTF-8 (close 1002).
    Protocol(String),
    /// The connection broke.
    Io(io::Error),
}

/// A server-side WebSocket on a TCP stream.
pub struct WsConnection {
    io: TcpStream,
    codec: Codec,
    read_buf: BytesMut,
    write_buf: BytesMut,
}

impl WsConnection {
    /// Wraps a stream whose handshake has been answered. `received` holds any bytes the client
    /// sent after its handshake head that were read with it (a client may send its first frames
    /// without waiting for the answer).
    pub fn new(io: TcpStream, max_frame_bytes: usize, received: BytesMut) -> WsConnection {
        WsConnection {
            io,
            codec: Codec::new().max_size(max_frame_bytes),
            read_buf: received,
            write_buf: BytesMut::new(),
        }
    }

    /// The next frame; `None` when the client closed the TCP stream. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Inbound, ReadError>> {
        loop {
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(frame)) => {
                    release_if_large(&mut self.read_buf);
                    return Some(Ok(match frame {
                        Frame::Text(bytes) => match ByteString::try_from(bytes) {
                            Ok(text) => Inbound::Text(text),
                            Err(_) => {
                                return Some(Err(ReadError::Protocol("text is not UTF-8".into())))
                            }
                        },
                        Frame::Binary(_) => Inbound::Binary,
                        Frame::Continuation(_) => Inbound::Fragment,
                        Frame::Ping(bytes) => Inbound::Ping(bytes),
                        Frame::Pong(_) => Inbound::Pong,
                        Frame::Close(_) => Inbound::Close,
                    }));
                }
                Ok(None) => {}
                Err(ProtocolError::Overflow) => return Some(Err(ReadError::TooBig)),
                Err(e) => return Some(Err(ReadError::Protocol(e.to_string()))),
            }
            // Hold no buffer while waiting: most sessions wait almost all the time.
            if self.read_buf.is_empty() {
                self.read_buf = BytesMut::new();
            }
            if let Err(e) = self.io.readable().await {
                return Some(Err(ReadError::Io(e)));
            }
            self.read_buf.reserve(READ_CHUNK);
            match self.io.try_read_buf(&mut self.read_buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(ReadError::Io(e))),
            }
        }
    }

    /// Sends a text frame. Cancel-safe (see the module documentation).
    pub async fn text(&mut self, text: ByteString) -> io::Result<()> {
        self.send(Message::Text(text)).await
    }

    /// Adds a text frame to the write buffer without sending it; [`WsConnection::flush`] sends
    /// everything buffered with as few writes as the socket allows.
    pub fn buffer_text(&mut self, text: ByteString) -> io::Result<()> {
        self.codec
            .encode(Message::Text(text), &mut self.write_buf)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Bytes buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.write_buf.len()
    }

    /// Sends a ping.
    pub async fn ping(&mut self) -> io::Result<()> {
        self.send(Message::Ping(Bytes::new())).await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: Bytes) -> io::Result<()> {
        self.send(Message::Pong(payload)).await
    }

    async fn send(&mut self, message: Message) -> io::Result<()> {
        self.codec
            .encode(message, &mut self.write_buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.flush().await
    }

    /// Writes out whatever is buffered. Cancel-safe: bytes leave the buffer only once written.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.write_buf.is_empty() {
            // `write` is `send(2)`; `write_buf` would be `writev(2)` with one slice, which
            // takes the longer road through the VFS layer for every frame of a fan-out.
            let written = self.io.write(&self.write_buf).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.write_buf.advance(written);
        }
        release_if_large(&mut self.write_buf);
        Ok(())
    }

    /// Finishes any interrupted frame, sends a close frame with `code` and `reason`, and shuts
    /// the stream down. A client that has not taken it all after `wait` (with `wait` zero: after
    /// one attempt) reads nothing: its connection is reset, so the kernel does not go on
    /// holding, and retrying, the bytes it will never read.
    pub async fn close(mut self, code: u16, reason: &str, wait: Duration) {
        let frame = Message::Close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.to_string()),
        }));
        if self.codec.encode(frame, &mut self.write_buf).is_err() {
            return;
        }
        let closing = async {
            self.flush().await?;
            self.io.shutdown().await
        };
        if tokio::time::timeout(wait, closing).await.is_err() {
            // Linger 0: the drop that follows sends RST and frees the socket at once.
            let _ = socket2::SockRef::from(&self.io).set_linger(Some(Duration::ZERO));
        }
    }
}

fn release_if_large(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
        *buf = BytesMut::new();
    }
}
