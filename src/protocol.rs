//! The WebSocket wire protocol: server frames (serialised once, shared by every session that
//! receives them), client frames (parsed and checked), and the close codes.
//!
//! Frames are built as [`ByteString`]s: a clone is a reference-count increment, so a broadcast
//! to 100,000 sessions is serialised once and each session's queue holds a pointer to it.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{Broadcast, Notification};

/// Close codes, each telling the client what to do next.
pub mod close {
    /// The client said goodbye (answering its close frame).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down: reconnect (elsewhere) with `since`.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke a rule (kept sending bad frames, refreshed with another user's
    /// token): do not reconnect as-is.
    pub const POLICY: u16 = 1008;
    /// An inbound frame was larger than `max_frame_bytes`: do not reconnect as-is.
    pub const TOO_BIG: u16 = 1009;
    /// The client could not keep up with its outbound queue: reconnect with `since`.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The session's token expired without a `refresh`: get a new token, then reconnect.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The client sent something that is not valid WebSocket (or text that is not UTF-8).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The client stopped answering pings.
    pub const IDLE: u16 = 4002;
    /// Never sent: what a client sees when the connection ends without a close frame (it went
    /// away first, or the server gave up on it). Counted under this code in the metrics.
    pub const ABNORMAL: u16 = 1006;
}

fn to_frame<T: Serialize>(value: &T) -> ByteString {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no
    // user-defined Serialize impls that error.
    ByteString::from(serde_json::to_string(value).unwrap_or_default())
}

/// `welcome`: always the first frame of a session.
pub fn welcome(user: Option<&str>, unread: i64, seq: i64, heartbeat: u64) -> ByteString {
    #[derive(Serialize)]
    struct Welcome<'a> {
        r#type: &'static str,
        user: Option<&'a str>,
        unread: i64,
        seq: i64,
        heartbeat: u64,
    }
    to_frame(&Welcome {
        r#type: "welcome",
        user,
        unread,
        seq,
        heartbeat,
    })
}

/// `notification`: a new notification and the user's unread count after it.
pub fn notification(notification: &Notification, unread: i64) -> ByteString {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        notification: &'a Notification,
        unread: i64,
    }
    to_frame(&Frame {
        r#type: "notification",
        notification,
        unread,
    })
}

/// `broadcast`: an event on a topic.
pub fn broadcast(broadcast: &Broadcast) -> ByteString {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        topic: &'a str,
        id: i64,
        seq: i64,
        data: &'a Option<Box<RawValue>>,
        created_at: &'a str,
    }
    to_frame(&Frame {
        r#type: "broadcast",
        topic: &broadcast.topic,
        id: broadcast.id,
        seq: broadcast.seq,
        data: &broadcast.data,
        created_at: &broadcast.created_at,
    })
}

/// `unread`: the badge changed other than by a new notification.
pub fn unread(unread: i64) -> ByteString {
    ByteString::from(format!(r#"{{"type":"unread","unread":{unread}}}"#))
}

/// `resumed`: a replay of `stream` (`user` or `topic:NAME`) is done.
pub fn resumed(stream: &str, replayed: usize, complete: bool) -> ByteString {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        stream: &'a str,
        replayed: usize,
        complete: bool,
    }
    to_frame(&Frame {
        r#type: "resumed",
        stream,
        replayed,
        complete,
    })
}

/// `subscribed`: the session now receives `topic`; `seq` is the topic's latest.
pub fn subscribed(topic: &str, seq: i64) -> ByteString {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        topic: &'a str,
        seq: i64,
    }
    to_frame(&Frame {
        r#type: "subscribed",
        topic,
        seq,
    })
}

/// `unsubscribed`: the session no longer receives `topic`.
pub fn unsubscribed(topic: &str) -> ByteString {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        topic: &'a str,
    }
    to_frame(&Frame {
        r#type: "unsubscribed",
        topic,
    })
}

/// `error`: the client's last frame was refused; the session stays open.
pub fn error(code: &str, message: &str) -> ByteString {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        code: &'a str,
        message: &'a str,
    }
    to_frame(&Frame {
        r#type: "error",
        code,
        message,
    })
}

/// `pong`: the answer to a client `ping`.
pub fn pong() -> ByteString {
    ByteString::from_static(r#"{"type":"pong"}"#)
}

/// A frame a client may send.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientFrame {
    /// Mark notifications read: by `ids`, everything `up_to` a seq, or `all`.
    Read {
        #[serde(default)]
        ids: Option<Vec<i64>>,
        #[serde(default)]
        up_to: Option<i64>,
        #[serde(default)]
        all: Option<bool>,
    },
    /// Receive a topic, replaying what was missed after `since`.
    Subscribe {
        topic: String,
        #[serde(default)]
        since: Option<i64>,
    },
    /// Stop receiving a topic.
    Unsubscribe { topic: String },
    /// Application-level keep-alive; answered with `pong`.
    Ping,
    /// A fresh token for the same `sub`, extending the session.
    Refresh { token: String },
}

/// Why a client frame was refused: the `code` and `message` of the `error` frame.
#[derive(Debug, PartialEq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

impl ClientFrame {
    /// Parses a text frame, telling unknown types apart from malformed ones.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| FrameError {
            code: "bad_frame",
            message: format!("not valid JSON: {e}"),
        })?;
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or(FrameError {
                code: "bad_frame",
                message: "a frame is a JSON object with a string `type`".into(),
            })?;
        if !["read", "subscribe", "unsubscribe", "ping", "refresh"].contains(&kind) {
            return Err(FrameError {
                code: "unknown_type",
                message: format!("unknown frame type {kind:?}"),
            });
        }
        let frame = serde_json::from_value(value).map_err(|e| FrameError {
            code: "bad_frame",
            message: e.to_string(),
        })?;
        match frame {
            ClientFrame::Subscribe {
                since: Some(since), ..
            } if since < 0 => Err(FrameError {
                code: "bad_frame",
                message: format!("`since` must be a seq (0 or more), got {since}"),
            }),
            frame => Ok(frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"subscribe","topic":"article:1","since":3}"#),
            Ok(ClientFrame::Subscribe {
                topic: "article:1".into(),
                since: Some(3)
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"read","all":true}"#),
            Ok(ClientFrame::Read {
                ids: None,
                up_to: None,
                all: Some(true)
            })
        );
    }

    #[test]
    fn bad_client_frames_say_why() {
        assert_eq!(ClientFrame::parse("nope").unwrap_err().code, "bad_frame");
        assert_eq!(ClientFrame::parse("[1]").unwrap_err().code, "bad_frame");
        assert_eq!(
            ClientFrame::parse(r#"{"type":"dance"}"#).unwrap_err().code,
            "unknown_type"
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"subscribe"}"#)
                .unwrap_err()
                .code,
            "bad_frame"
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"subscribe","topic":"global","since":-1}"#)
                .unwrap_err()
                .code,
            "bad_frame"
        );
        let min = format!(
            r#"{{"type":"subscribe","topic":"global","since":{}}}"#,
            i64::MIN
        );
        assert_eq!(ClientFrame::parse(&min).unwrap_err().code, "bad_frame");
        assert_eq!(
            ClientFrame::parse(r#"{"type":"read","all":true,"x":1}"#)
                .unwrap_err()
                .code,
            "bad_frame"
        );
    }

    #[test]
    fn frames_are_the_documented_json() {
        assert_eq!(
            &*welcome(Some("42"), 3, 57, 25),
            r#"{"type":"welcome","user":"42","unread":3,"seq":57,"heartbeat":25}"#
        );
        assert_eq!(&*unread(0), r#"{"type":"unread","unread":0}"#);
        assert_eq!(
            &*resumed("topic:global", 2, false),
            r#"{"type":"resumed","stream":"topic:global","replayed":2,"complete":false}"#
        );
    }
}
