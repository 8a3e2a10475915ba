//! The domain: what a publisher sends ([`EventInput`]), what the store keeps
//! ([`Notification`], [`Broadcast`]), and the rules for user ids, kinds and topic names.
//!
//! Validation lives here so that `POST /publish`, the WebSocket frames and the CLI agree on
//! what a valid id, kind or topic is, and every rejection names the offending field.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The topic every session is subscribed to.
pub const GLOBAL_TOPIC: &str = "global";
/// Longest user id (the JWT `sub`), bytes.
pub const MAX_USER_ID_BYTES: usize = 128;
/// Longest topic name, bytes.
pub const MAX_TOPIC_BYTES: usize = 128;
/// Longest `group` of a notification, in bytes.
pub const MAX_GROUP_BYTES: usize = 128;
/// Most events in one `POST /publish` batch.
pub const MAX_BATCH: usize = 1000;
/// Most recipients of one notification event.
pub const MAX_RECIPIENTS: usize = 1000;
/// Most notifications (event × recipient) one request may store: keeps one transaction, and
/// so one commit's latency for everyone else, bounded.
pub const MAX_NOTIFICATIONS_PER_REQUEST: usize = 10_000;

/// An event as a publisher sent it, validated.
#[derive(Debug, Clone)]
pub enum EventInput {
    /// A notification for one or more users.
    Notification(NotificationInput),
    /// A broadcast to everyone subscribed to a topic.
    Broadcast(BroadcastInput),
}

/// A notification before it is stored; `to` holds distinct, valid user ids.
#[derive(Debug, Clone)]
pub struct NotificationInput {
    pub to: Vec<String>,
    pub kind: String,
    pub actor: Option<Box<RawValue>>,
    pub subject: Option<Box<RawValue>>,
    pub data: Option<Box<RawValue>>,
    /// Events of one group fold into one unread notification (see docs/PROTOCOL.md).
    pub group: Option<String>,
}

/// A broadcast before it is stored.
#[derive(Debug, Clone)]
pub struct BroadcastInput {
    pub topic: String,
    pub data: Option<Box<RawValue>>,
}

/// A stored notification, exactly as clients see it in frames and the REST API. A grouped
/// one stands for several events: it shows the latest event's actor, subject and data.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: i64,
    pub seq: i64,
    pub kind: String,
    /// The latest event's actor (kept beside `actors` for clients written before grouping).
    pub actor: Option<Box<RawValue>>,
    pub subject: Option<Box<RawValue>>,
    pub data: Option<Box<RawValue>>,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    pub read: bool,
    /// How many events it stands for (1 without `group`).
    pub count: i64,
    /// The latest [`MAX_ACTORS`] distinct actors, newest first; empty without actors.
    pub actors: Vec<Box<RawValue>>,
    /// When an event last changed it (RFC 3339, like `created_at`).
    pub updated_at: String,
    /// The `group` its events were published with.
    pub group: Option<String>,
}

/// Distinct actors a grouped notification lists: enough for "carol, bob and alice".
pub const MAX_ACTORS: usize = 3;

/// A stored broadcast.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub id: i64,
    pub topic: String,
    pub seq: i64,
    pub data: Option<Box<RawValue>>,
    pub created_at: String,
}

/// A field that failed validation: `field` is a path such as `[3].to[0]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Formats milliseconds since the epoch as the RFC 3339 string the API uses.
pub fn rfc3339_millis(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Checks a user id (a JWT `sub` or a `to` entry).
pub fn check_user_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_USER_ID_BYTES {
        return Err(format!("must be at most {MAX_USER_ID_BYTES} bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks a notification kind: `[a-z0-9_.-]{1,64}`.
pub fn check_kind(kind: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("must match [a-z0-9_.-]{1,64}".into())
    }
}

/// Checks a topic name: `[A-Za-z0-9_.:-]{1,128}`.
pub fn check_topic(topic: &str) -> Result<(), String> {
    let ok = (1..=MAX_TOPIC_BYTES).contains(&topic.len())
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("must match [A-Za-z0-9_.:-]{{1,{MAX_TOPIC_BYTES}}}"))
    }
}

/// Parses a `POST /publish` body (one event or an array of them) into validated events.
/// Any invalid event rejects the whole body.
pub fn parse_events(body: &Value) -> Result<Vec<EventInput>, FieldError> {
    match body {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(FieldError::new("body", "the batch is empty"));
            }
            if items.len() > MAX_BATCH {
                return Err(FieldError::new(
                    "body",
                    format!("a batch holds at most {MAX_BATCH} events"),
                ));
            }
            let events = items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_event(item, &format!("[{i}].")))
                .collect::<Result<Vec<_>, _>>()?;
            let notifications: usize = events
                .iter()
                .map(|e| match e {
                    EventInput::Notification(n) => n.to.len(),
                    EventInput::Broadcast(_) => 0,
                })
                .sum();
            if notifications > MAX_NOTIFICATIONS_PER_REQUEST {
                return Err(FieldError::new(
                    "body",
                    format!(
                        "a request stores at most {MAX_NOTIFICATIONS_PER_REQUEST} notifications \
                         (events × recipients); this one has {notifications}"
                    ),
                ));
            }
            Ok(events)
        }
        other => Ok(vec![parse_event(other, "")?]),
    }
}

fn parse_event(value: &Value, path: &str) -> Result<EventInput, FieldError> {
    let field = |name: &str| format!("{path}{name}");
    let Value::Object(object) = value else {
        let name = if path.is_empty() {
            "body"
        } else {
            path.trim_end_matches('.')
        };
        return Err(FieldError::new(name, "an event must be a JSON object"));
    };
    let known = ["to", "kind", "actor", "subject", "data", "topic", "group"];
    if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(FieldError::new(field(unknown), "unknown field"));
    }
    let data = optional_object(object, "data", &field("data"))?;
    match (object.get("to"), object.get("topic")) {
        (Some(_), Some(_)) => Err(FieldError::new(
            field("topic"),
            "an event has either `to` (a notification) or `topic` (a broadcast), not both",
        )),
        (None, None) => Err(FieldError::new(
            field("to"),
            "missing: a notification needs `to`, a broadcast needs `topic`",
        )),
        (None, Some(topic)) => {
            for name in ["kind", "actor", "subject", "group"] {
                if object.contains_key(name) {
                    return Err(FieldError::new(field(name), "not allowed on a broadcast"));
                }
            }
            let topic = topic
                .as_str()
                .ok_or_else(|| FieldError::new(field("topic"), "must be a string"))?;
            check_topic(topic).map_err(|m| FieldError::new(field("topic"), m))?;
            Ok(EventInput::Broadcast(BroadcastInput {
                topic: topic.to_string(),
                data,
            }))
        }
        (Some(to), None) => {
            let to = parse_recipients(to, &field("to"))?;
            let kind = object
                .get("kind")
                .ok_or_else(|| FieldError::new(field("kind"), "missing"))?
                .as_str()
                .ok_or_else(|| FieldError::new(field("kind"), "must be a string"))?;
            check_kind(kind).map_err(|m| FieldError::new(field("kind"), m))?;
            Ok(EventInput::Notification(NotificationInput {
                to,
                kind: kind.to_string(),
                actor: optional_object(object, "actor", &field("actor"))?,
                subject: optional_object(object, "subject", &field("subject"))?,
                data,
                group: optional_group(object, &field("group"))?,
            }))
        }
    }
}

/// Checks a group (a notification's `group`, or a muted one): 1 to [`MAX_GROUP_BYTES`] bytes
/// without control characters.
pub fn check_group(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > MAX_GROUP_BYTES {
        return Err(format!(
            "must be 1 to {MAX_GROUP_BYTES} bytes long, got {}",
            group.len()
        ));
    }
    if group.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// `group`: absent or null, else a string that [`check_group`] accepts.
fn optional_group(object: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match object.get("group") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(group)) => {
            check_group(group).map_err(|m| FieldError::new(field, m))?;
            Ok(Some(group.clone()))
        }
        Some(other) => Err(FieldError::new(
            field,
            format!("must be a string, got {}", json_kind(other)),
        )),
    }
}

fn parse_recipients(to: &Value, field: &str) -> Result<Vec<String>, FieldError> {
    let raw: Vec<(String, &Value)> = match to {
        Value::String(_) => vec![(field.to_string(), to)],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{field}[{i}]"), v))
            .collect(),
        other => {
            return Err(FieldError::new(
                field,
                format!(
                    "must be a user id string{} or an array of them, got {}",
                    string_like(other),
                    json_kind(other)
                ),
            ))
        }
    };
    if raw.is_empty() {
        return Err(FieldError::new(field, "must name at least one user"));
    }
    if raw.len() > MAX_RECIPIENTS {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_RECIPIENTS} recipients per event"),
        ));
    }
    let mut users: Vec<String> = Vec::with_capacity(raw.len());
    for (path, value) in raw {
        let id = value.as_str().ok_or_else(|| {
            FieldError::new(
                &path,
                format!(
                    "must be a string{}, got {}",
                    string_like(value),
                    json_kind(value)
                ),
            )
        })?;
        check_user_id(id).map_err(|m| FieldError::new(&path, m))?;
        if !users.iter().any(|u| u == id) {
            users.push(id.to_string());
        }
    }
    Ok(users)
}

/// What kind of JSON value `value` is, for an error message ("got a number").
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// ` like "42"` for a number sent where its text was meant (user ids are strings, as in the
/// JWT `sub`), else nothing.
fn string_like(value: &Value) -> String {
    match value {
        Value::Number(n) => format!(" like \"{n}\""),
        _ => String::new(),
    }
}

fn optional_object(
    object: &Map<String, Value>,
    name: &str,
    field: &str,
) -> Result<Option<Box<RawValue>>, FieldError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Object(_)) => serde_json::value::to_raw_value(value)
            .map(Some)
            .map_err(|e| FieldError::new(field, e.to_string())),
        Some(_) => Err(FieldError::new(field, "must be a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_single_notification_with_a_string_recipient() -> Result<(), Box<dyn std::error::Error>> {
        let events = parse_events(&json!({"to": "42", "kind": "like", "actor": {"id": "7"}}))?;
        let [EventInput::Notification(n)] = events.as_slice() else {
            panic!("expected one notification");
        };
        assert_eq!(n.to, vec!["42"]);
        assert_eq!(n.actor.as_ref().map(|a| a.get()), Some(r#"{"id":"7"}"#));
        Ok(())
    }

    #[test]
    fn recipients_are_deduplicated() -> Result<(), Box<dyn std::error::Error>> {
        let events = parse_events(&json!({"to": ["1", "2", "1"], "kind": "x"}))?;
        let EventInput::Notification(n) = &events[0] else {
            panic!()
        };
        assert_eq!(n.to, vec!["1", "2"]);
        Ok(())
    }

    #[test]
    fn errors_name_the_field_inside_a_batch() {
        let body = json!([
            {"topic": "global", "data": {}},
            {"to": ["1", 5], "kind": "like"}
        ]);
        let err = parse_events(&body).unwrap_err();
        assert_eq!(err.field, "[1].to[1]");
        let err = parse_events(&json!({"to": "1", "kind": "Bad Kind"})).unwrap_err();
        assert_eq!(err.field, "kind");
        let err = parse_events(&json!({"topic": "a b"})).unwrap_err();
        assert_eq!(err.field, "topic");
        let err = parse_events(&json!({"to": "1", "kind": "x", "data": [1]})).unwrap_err();
        assert_eq!(err.field, "data");
        let err = parse_events(&json!({"to": "1", "kind": "x", "colour": 1})).unwrap_err();
        assert_eq!(err.field, "colour");
        let err = parse_events(&json!([])).unwrap_err();
        assert_eq!(err.field, "body");
        let many: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let batch: Vec<Value> = (0..11).map(|_| json!({"to": many, "kind": "x"})).collect();
        let err = parse_events(&Value::Array(batch)).unwrap_err();
        assert_eq!(err.field, "body");
        assert!(err.message.contains("11000"));
    }

    #[test]
    fn a_group_is_an_optional_bounded_string() -> Result<(), Box<dyn std::error::Error>> {
        let events = parse_events(&json!({"to": "1", "kind": "like", "group": "like:article:99"}))?;
        let EventInput::Notification(n) = &events[0] else {
            panic!("expected a notification")
        };
        assert_eq!(n.group.as_deref(), Some("like:article:99"));
        let events = parse_events(&json!({"to": "1", "kind": "like", "group": null}))?;
        let EventInput::Notification(n) = &events[0] else {
            panic!("expected a notification")
        };
        assert_eq!(n.group, None);
        for bad in [json!(""), json!("x".repeat(129)), json!(7), json!("a\nb")] {
            let err = parse_events(&json!({"to": "1", "kind": "x", "group": bad})).unwrap_err();
            assert_eq!(err.field, "group", "{bad}");
        }
        let err = parse_events(&json!({"topic": "global", "group": "g"})).unwrap_err();
        assert_eq!(err.field, "group");
        Ok(())
    }

    #[test]
    fn names_are_checked() {
        assert!(check_kind("mention.v2").is_ok());
        assert!(check_kind("").is_err());
        assert!(check_topic("article:42").is_ok());
        assert!(check_topic("article 42").is_err());
        assert!(check_user_id(&"x".repeat(129)).is_err());
        assert!(check_user_id("\u{7}").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_with_millis() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
