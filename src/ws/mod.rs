//! WebSocket connections served without the HTTP dispatcher.
//!
//! A session lives for hours and mostly waits, so what it holds while waiting is what limits
//! how many fit on a box. Behind actix-web's HTTP/1 dispatcher every socket kept two 8 KiB
//! buffers plus two channels (about 19 KiB per session). Here the [`front door`](crate::server)
//! recognises a WebSocket handshake for `/inform`, and the socket is served directly:
//! actix-http's WebSocket codec for the framing, buffers that exist only while a frame is in
//! flight, and the session's own queue as the only queue.

pub mod connection;
pub mod handshake;

pub use connection::{Inbound, WsConnection};
