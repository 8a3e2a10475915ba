//! The preferences document of `GET`/`PUT /api/preferences`, and the checks a `PUT` body
//! passes before it replaces a user's document.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{check_group, check_kind, check_topic, json_kind, FieldError, GLOBAL_TOPIC};

/// Most entries in each list: enough for any person's mutes, and a bound on what every node
/// keeps in memory per user.
pub const MAX_MUTED: usize = 256;

/// What a user has muted. Each list is free of duplicates, in the order first given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// Notification kinds never stored for this user (`"follow"`).
    #[serde(default)]
    pub muted_kinds: Vec<String>,
    /// Notification groups never stored for this user (`"like:article:99"`).
    #[serde(default)]
    pub muted_groups: Vec<String>,
    /// Topics whose broadcasts never reach this user's sessions (`"article:7"`).
    #[serde(default)]
    pub muted_topics: Vec<String>,
}

impl Preferences {
    /// Whether nothing is muted (the same as having no document).
    pub fn is_empty(&self) -> bool {
        self.muted_kinds.is_empty() && self.muted_groups.is_empty() && self.muted_topics.is_empty()
    }
}

/// Checks one entry of a list; the error says what is wrong with it.
type EntryCheck = fn(&str) -> Result<(), String>;

/// The three lists, each with the check its entries pass.
const LISTS: [(&str, EntryCheck); 3] = [
    ("muted_kinds", check_kind),
    ("muted_groups", check_group),
    ("muted_topics", check_mutable_topic),
];

/// A topic a user may mute: any valid topic but `global`, which carries the site's
/// announcements to everyone (docs/DECISIONS.md).
fn check_mutable_topic(topic: &str) -> Result<(), String> {
    check_topic(topic)?;
    if topic == GLOBAL_TOPIC {
        return Err("global carries announcements to everyone and cannot be muted".into());
    }
    Ok(())
}

/// Checks a `PUT /api/preferences` body: an object with at most the three lists, each missing
/// (empty), null (empty) or an array of at most [`MAX_MUTED`] valid strings. The error names
/// the field (`muted_topics[2]`).
pub fn parse_preferences(body: &Value) -> Result<Preferences, FieldError> {
    let Value::Object(object) = body else {
        return Err(field_error(
            "body",
            format!("must be an object, got {}", json_kind(body)),
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !LISTS.iter().any(|(n, _)| n == k)) {
        return Err(field_error(
            unknown,
            "is not a preference; use muted_kinds, muted_groups and muted_topics",
        ));
    }
    let [kinds, groups, topics] = LISTS.map(|(name, check)| parse_list(object, name, check));
    Ok(Preferences {
        muted_kinds: kinds?,
        muted_groups: groups?,
        muted_topics: topics?,
    })
}

fn parse_list(
    object: &Map<String, Value>,
    name: &str,
    check: EntryCheck,
) -> Result<Vec<String>, FieldError> {
    let entries = match object.get(name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            let message = format!("must be an array of strings, got {}", json_kind(other));
            return Err(field_error(name, message));
        }
    };
    if entries.len() > MAX_MUTED {
        let message = format!("at most {MAX_MUTED} entries, got {}", entries.len());
        return Err(field_error(name, message));
    }
    let mut list: Vec<String> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let field = format!("{name}[{index}]");
        let Value::String(entry) = entry else {
            let message = format!("must be a string, got {}", json_kind(entry));
            return Err(field_error(&field, message));
        };
        check(entry).map_err(|m| field_error(&field, m))?;
        if !list.contains(entry) {
            list.push(entry.clone());
        }
    }
    Ok(list)
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(body: Value) -> String {
        parse_preferences(&body)
            .err()
            .map(|e| e.field)
            .unwrap_or_default()
    }

    #[test]
    fn missing_and_null_lists_are_empty_and_duplicates_go() -> Result<(), FieldError> {
        let parsed = parse_preferences(&json!({
            "muted_kinds": ["follow", "like", "follow"],
            "muted_topics": null
        }))?;
        assert_eq!(parsed.muted_kinds, ["follow", "like"]);
        assert!(parsed.muted_groups.is_empty() && parsed.muted_topics.is_empty());
        assert!(parse_preferences(&json!({}))?.is_empty());
        Ok(())
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(json!([])), "body");
        assert_eq!(field_of(json!({"muted_users": []})), "muted_users");
        assert_eq!(field_of(json!({"muted_kinds": "follow"})), "muted_kinds");
        assert_eq!(
            field_of(json!({"muted_kinds": ["ok", "Not OK"]})),
            "muted_kinds[1]"
        );
        assert_eq!(field_of(json!({"muted_groups": [""]})), "muted_groups[0]");
        assert_eq!(field_of(json!({"muted_groups": [7]})), "muted_groups[0]");
        assert_eq!(
            field_of(json!({"muted_topics": ["a", "b", "global"]})),
            "muted_topics[2]"
        );
        assert_eq!(
            field_of(json!({"muted_topics": ["bad topic"]})),
            "muted_topics[0]"
        );
        let many: Vec<String> = (0..=MAX_MUTED).map(|i| format!("k{i}")).collect();
        assert_eq!(field_of(json!({ "muted_kinds": many })), "muted_kinds");
    }
}
