//! `POST /publish` bodies (`src/model.rs`, `parse_events`), parsed from raw bytes as the
//! handler does.
//!
//! Beyond "no panic": an accepted body holds 1 to `MAX_BATCH` events whose recipients are
//! distinct valid ids, kinds, groups and topics are valid, at most `MAX_NOTIFICATIONS_PER_REQUEST`
//! notifications in all; and every accepted event becomes a frame that is valid JSON.
#![no_main]

use informd::model::{
    check_group, check_kind, check_topic, check_user_id, parse_events, Broadcast, EventInput,
    Notification, MAX_BATCH, MAX_NOTIFICATIONS_PER_REQUEST, MAX_RECIPIENTS,
};
use informd::protocol;
use libfuzzer_sys::fuzz_target;

fn valid_json(frame: &str) {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(frame) {
        panic!("frame is not JSON ({e}): {frame}");
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(input) else {
        return;
    };
    let Ok(events) = parse_events(&body) else {
        return;
    };
    assert!((1..=MAX_BATCH).contains(&events.len()));
    let mut notifications = 0;
    for event in events {
        match event {
            EventInput::Notification(n) => {
                assert!((1..=MAX_RECIPIENTS).contains(&n.to.len()));
                let mut to = n.to.clone();
                to.sort();
                to.dedup();
                assert_eq!(to.len(), n.to.len(), "recipients are distinct");
                for user in &n.to {
                    assert!(check_user_id(user).is_ok(), "user {user:?}");
                }
                assert!(check_kind(&n.kind).is_ok(), "kind {:?}", n.kind);
                if let Some(group) = &n.group {
                    assert!(check_group(group).is_ok(), "group {group:?}");
                }
                notifications += n.to.len();
                let stored = Notification {
                    id: 1,
                    seq: 1,
                    kind: n.kind,
                    actors: n.actor.iter().cloned().collect(),
                    actor: n.actor,
                    subject: n.subject,
                    data: n.data,
                    created_at: informd::model::rfc3339_millis(0),
                    updated_at: informd::model::rfc3339_millis(0),
                    read: false,
                    count: 1,
                    group: n.group,
                };
                valid_json(&protocol::notification(&stored, 1));
            }
            EventInput::Broadcast(b) => {
                assert!(check_topic(&b.topic).is_ok(), "topic {:?}", b.topic);
                let stored = Broadcast {
                    id: 1,
                    topic: b.topic,
                    seq: 1,
                    data: b.data,
                    created_at: informd::model::rfc3339_millis(0),
                };
                valid_json(&protocol::broadcast(&stored));
            }
        }
    }
    assert!(notifications <= MAX_NOTIFICATIONS_PER_REQUEST);
});
