//! How the events of one `group` fold into the unread notification that stands for them (the
//! latest distinct actors, newest first), and how a stored row becomes the [`Notification`]
//! clients see. Shared by every backend, so SQLite and PostgreSQL show a group alike.

use serde_json::value::RawValue;

use crate::model::{rfc3339_millis, Notification, MAX_ACTORS};

/// What makes two actors the same person: their `id` when the actor is an object with one,
/// else the whole JSON text.
fn identity(actor: &RawValue) -> String {
    // An object only: serde would read `[1]` as a struct with `id` 1.
    let parsed = serde_json::from_str::<serde_json::Value>(actor.get());
    match parsed.as_ref().ok().and_then(|v| v.as_object()?.get("id")) {
        Some(id) => format!("id:{id}"),
        None => format!("json:{}", actor.get()),
    }
}

/// `actors` after an event by `newest`: it goes first, any earlier entry of the same person
/// goes, and at most [`MAX_ACTORS`] stay. An event without an actor changes nothing.
pub fn merge_actors(actors: &[Box<RawValue>], newest: Option<&RawValue>) -> Vec<Box<RawValue>> {
    let Some(newest) = newest else {
        return actors.to_vec();
    };
    let who = identity(newest);
    std::iter::once(newest.to_owned())
        .chain(
            actors
                .iter()
                .filter(|a| identity(a) != who)
                .map(|a| a.to_owned()),
        )
        .take(MAX_ACTORS)
        .collect()
}

/// The actors a stored row lists: its `actors` column (JSON array text) once it was grouped,
/// else its one actor. Rows written before grouping have only `actor`.
pub fn stored_actors(actors: Option<&str>, actor: Option<&RawValue>) -> Vec<Box<RawValue>> {
    if let Some(list) = actors.and_then(|text| serde_json::from_str(text).ok()) {
        return list;
    }
    actor.map(|a| vec![a.to_owned()]).unwrap_or_default()
}

/// `actors` as the JSON array text the `actors` column keeps.
pub fn actors_json(actors: &[Box<RawValue>]) -> String {
    serde_json::to_string(actors).unwrap_or_else(|_| "[]".into())
}

fn raw_json(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t).ok())
}

/// A notification row's columns, as every backend reads them (see `NOTIFICATION_COLUMNS`).
pub struct NotificationColumns {
    pub id: i64,
    pub seq: i64,
    pub kind: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub data: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub read: bool,
    pub count: i64,
    pub actors: Option<String>,
    /// Unix milliseconds; `None` until an event of its group updated it.
    pub updated_at: Option<i64>,
    pub group: Option<String>,
}

/// The columns every notification query selects, in the order backends read them.
pub const NOTIFICATION_COLUMNS: &str = "id, seq, kind, actor, subject, data, created_at, read, \
                                        event_count, actors, updated_at, group_key";

/// [`NOTIFICATION_COLUMNS`] on PostgreSQL, where a row an update moved stands at `moved_seq`
/// (migrations/postgres/0005_moved_seq.sql).
pub const MOVED_NOTIFICATION_COLUMNS: &str =
    "id, coalesce(moved_seq, seq), kind, actor, subject, data, created_at, read, \
     event_count, actors, updated_at, group_key";

impl From<NotificationColumns> for Notification {
    fn from(row: NotificationColumns) -> Notification {
        let actor = raw_json(row.actor);
        let actors = stored_actors(row.actors.as_deref(), actor.as_deref());
        Notification {
            id: row.id,
            seq: row.seq,
            kind: row.kind,
            actor,
            subject: raw_json(row.subject),
            data: raw_json(row.data),
            created_at: rfc3339_millis(row.created_at),
            read: row.read,
            count: row.count,
            actors,
            updated_at: rfc3339_millis(row.updated_at.unwrap_or(row.created_at)),
            group: row.group,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap_or_else(|_| panic!("bad JSON {text}"))
    }

    fn texts(actors: &[Box<RawValue>]) -> Vec<&str> {
        actors.iter().map(|a| a.get()).collect()
    }

    #[test]
    fn both_column_lists_read_the_same_columns_but_the_position() {
        let position = |list: &str| list.replacen("coalesce(moved_seq, seq)", "seq", 1);
        let words = |list: &str| list.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            words(&position(MOVED_NOTIFICATION_COLUMNS)),
            words(NOTIFICATION_COLUMNS)
        );
    }

    #[test]
    fn the_newest_actor_goes_first_and_each_person_once() {
        let alice = raw(r#"{"id":"alice","name":"Alice"}"#);
        let bob = raw(r#"{"id":"bob"}"#);
        let alice_renamed = raw(r#"{"id":"alice","name":"Alice M."}"#);
        let list = merge_actors(&[], Some(&alice));
        let list = merge_actors(&list, Some(&bob));
        assert_eq!(texts(&list), vec![bob.get(), alice.get()]);
        let list = merge_actors(&list, Some(&alice_renamed));
        assert_eq!(texts(&list), vec![alice_renamed.get(), bob.get()]);
        let list = merge_actors(&list, None);
        assert_eq!(list.len(), 2, "an event without an actor adds none");
    }

    #[test]
    fn at_most_three_actors_and_ids_compare_by_value() {
        let mut list = Vec::new();
        for actor in [r#""carol""#, r#"{"id":1}"#, r#"{"id":"1"}"#, r#"[1]"#] {
            list = merge_actors(&list, Some(&raw(actor)));
        }
        assert_eq!(texts(&list), vec![r#"[1]"#, r#"{"id":"1"}"#, r#"{"id":1}"#]);
    }

    #[test]
    fn rows_written_before_grouping_list_their_one_actor() {
        let alice = raw(r#"{"id":"alice"}"#);
        assert_eq!(texts(&stored_actors(None, Some(&alice))), vec![alice.get()]);
        assert!(stored_actors(None, None).is_empty());
        let stored = actors_json(std::slice::from_ref(&alice));
        assert_eq!(
            texts(&stored_actors(Some(&stored), None)),
            vec![alice.get()]
        );
    }
}
