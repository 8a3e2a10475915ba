//! The front door's first request head, from raw bytes: the reader in `src/server/head.rs`
//! (fed in chunks of fuzzer-chosen sizes, as a socket would) and the handshake rules in
//! `src/ws/handshake.rs`.
//!
//! Beyond "no panic": the buffer never outgrows `MAX_HEAD`; the reader's verdict, reached a
//! line at a time, is the one `recognise` gives on the whole input; an accepted handshake is
//! recognised again from exactly `head_len` bytes; every answer written back (the 101 or a
//! refusal) is a complete HTTP response whose body is as long as its `content-length`.
#![no_main]

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use informd::error::ApiError;
use informd::server::MAX_HEAD;
use informd::ws::handshake::{recognise, refusal, Opening};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// A byte source that hands out `data` a chunk at a time, then ends.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Checks that `bytes` is one complete HTTP response with `status`, and returns its status.
fn check_response(bytes: &[u8]) -> u16 {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(bytes) else {
        panic!(
            "not a complete response: {:?}",
            String::from_utf8_lossy(bytes)
        );
    };
    let status = response.code.unwrap_or(0);
    if let Some(length) = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let length: usize = std::str::from_utf8(length.value)
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("content-length is a number");
        assert_eq!(
            length,
            bytes.len() - head_len,
            "content-length is the body's"
        );
    }
    status
}

fn check_refusal(error: &ApiError) {
    let status = check_response(&refusal(error));
    assert!(
        (400..600).contains(&status),
        "a refusal is an error: {status}"
    );
}

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, data)) = input.split_first() else {
        return;
    };
    let mut source = Chunked {
        data,
        chunk: usize::from(chunk).max(1) * 64,
    };
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    let (verdict, buf) = runtime.block_on(informd::fuzzing::read_head(&mut source));
    assert!(
        buf.len() <= MAX_HEAD,
        "the head buffer grew to {}",
        buf.len()
    );
    assert_eq!(
        &buf[..],
        &data[..buf.len()],
        "the bytes read are the bytes sent"
    );
    let opening = match verdict {
        Ok(opening) => opening,
        Err(Some(error)) => {
            assert!(buf.len() == MAX_HEAD, "refused before the limit: {error:?}");
            check_refusal(&error);
            return;
        }
        Err(None) => return,
    };
    match (&opening, recognise(data)) {
        (Opening::WebSocket(seen), Opening::WebSocket(whole)) => {
            assert_eq!(seen.head_len, whole.head_len);
            assert_eq!(seen.query, whole.query);
            assert!(seen.head_len <= buf.len());
            let Opening::WebSocket(again) = recognise(&data[..seen.head_len]) else {
                panic!("the head alone is not the same handshake");
            };
            assert_eq!(again.head_len, seen.head_len);
            assert_eq!(check_response(&seen.accept()), 101);
        }
        (Opening::Refused(seen), Opening::Refused(whole)) => {
            assert_eq!(seen.code(), whole.code());
            check_refusal(seen);
        }
        (Opening::Http, Opening::Http) => {}
        (seen, whole) => panic!("read a line at a time: {seen:?}; whole: {whole:?}"),
    }
});
