//! Client frames (`src/protocol.rs`, `ClientFrame::parse`): any text a client sends.
//!
//! Beyond "no panic": every refusal is `bad_frame` or `unknown_type` with a message, and a
//! `subscribe` that parses has a `since` of 0 or more (the replay arithmetic relies on it).
#![no_main]

use informd::protocol::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The WebSocket codec only hands over valid UTF-8 as text; binary frames are refused
    // before parsing. Lossy conversion keeps the fuzzer's invalid bytes useful.
    let text = String::from_utf8_lossy(input);
    match ClientFrame::parse(&text) {
        Ok(ClientFrame::Subscribe { topic: _, since }) => {
            assert!(since.unwrap_or(0) >= 0, "since {since:?} accepted");
        }
        Ok(_) => {}
        Err(error) => {
            assert!(
                error.code == "bad_frame" || error.code == "unknown_type",
                "code {}",
                error.code
            );
            assert!(!error.message.is_empty());
        }
    }
});
