//! What the bench reads out of a frame: the probe it put in the event's `data` when
//! publishing (`i`: the event's index, `t`: publish time in µs since the epoch).

use serde::{Deserialize, Serialize};

/// The bench's marker inside an event's `data`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    pub i: u32,
    pub t: u64,
}

#[derive(Deserialize)]
struct Frame {
    /// Broadcast frames carry `data` at the top.
    data: Option<Probe>,
    /// Notification frames carry it inside the notification.
    notification: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    data: Option<Probe>,
}

/// The probe in a broadcast or notification frame; `None` for every other frame.
pub fn parse(text: &str) -> Option<Probe> {
    let frame: Frame = serde_json::from_str(text).ok()?;
    frame.data.or(frame.notification.and_then(|n| n.data))
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_come_out_of_both_frame_kinds() {
        let broadcast = r#"{"type":"broadcast","topic":"global","id":1,"seq":1,"data":{"i":3,"t":9},"created_at":"x"}"#;
        assert_eq!(parse(broadcast), Some(Probe { i: 3, t: 9 }));
        let notification = r#"{"type":"notification","notification":{"id":1,"seq":1,"kind":"k","actor":null,"subject":null,"data":{"i":4,"t":1},"created_at":"x","read":false},"unread":1}"#;
        assert_eq!(parse(notification), Some(Probe { i: 4, t: 1 }));
        assert_eq!(parse(r#"{"type":"pong"}"#), None);
    }
}
