//! Planning a run of publishes, the same for every backend: which requests write (their
//! idempotency key is free), how many events each user and topic stream gets, and, once the
//! backend has moved the streams forward and handed out ids, which id, seq and badge each
//! event gets, in request, event and recipient order. The backend only runs the statements.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::{rfc3339_millis, Broadcast, EventInput, Notification};
use crate::store::{Change, PublishOutcome, PublishRequest, StoreError};

/// A notification row to insert. (The short field names are what SQLite's `json_each` reads.)
#[derive(Debug, Serialize)]
pub struct NotificationRow<'a> {
    #[serde(rename = "i")]
    pub id: i64,
    #[serde(rename = "u")]
    pub user: &'a str,
    #[serde(rename = "s")]
    pub seq: i64,
    #[serde(rename = "k")]
    pub kind: &'a str,
    /// JSON text, exactly as published.
    #[serde(rename = "a")]
    pub actor: Option<&'a str>,
    #[serde(rename = "b")]
    pub subject: Option<&'a str>,
    #[serde(rename = "d")]
    pub data: Option<&'a str>,
}

/// A broadcast row to insert.
#[derive(Debug, Serialize)]
pub struct BroadcastRow<'a> {
    #[serde(rename = "i")]
    pub id: i64,
    #[serde(rename = "t")]
    pub topic: &'a str,
    #[serde(rename = "s")]
    pub seq: i64,
    #[serde(rename = "d")]
    pub data: Option<&'a str>,
}

/// A stream (user or topic) touched by a run: how many events it gets, and where it stands.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    added: i64,
    /// Seq of the next event to assign (set from where the backend moved the stream to).
    next_seq: i64,
    /// Unread count after the next notification (users only).
    next_unread: i64,
}

/// The streams of one kind a run touches, in order of first appearance.
#[derive(Debug, Default)]
pub struct Streams<'a> {
    order: Vec<&'a str>,
    streams: HashMap<&'a str, Stream>,
}

impl<'a> Streams<'a> {
    fn count(keys: impl Iterator<Item = &'a str>) -> Streams<'a> {
        let mut counted = Streams::default();
        for key in keys {
            let stream = counted.streams.entry(key).or_insert_with(|| {
                counted.order.push(key);
                Stream::default()
            });
            stream.added += 1;
        }
        counted
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Each stream and the number of events it gets, in order of first appearance.
    pub fn counts(&self) -> impl Iterator<Item = (&'a str, i64)> + '_ {
        self.order.iter().map(|k| (*k, self.streams[k].added))
    }

    /// The same, sorted by key: the order in which a backend with row locks takes them, so
    /// that two transactions never wait for each other in a cycle.
    pub fn sorted_counts(&self) -> Vec<(&'a str, i64)> {
        let mut counts: Vec<_> = self.counts().collect();
        counts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        counts
    }

    /// Records where the backend moved `key` to: its `last_seq` and `unread` count after
    /// this run's events were added.
    pub fn moved_to(&mut self, key: &str, last_seq: i64, unread: i64) {
        if let Some(stream) = self.streams.get_mut(key) {
            stream.next_seq = last_seq - stream.added + 1;
            stream.next_unread = unread - stream.added + 1;
        }
    }

    /// Each stream's last seq once [`PublishPlan::assign`] has run.
    fn last_seqs(&self) -> impl Iterator<Item = (&'a str, i64)> + '_ {
        self.order
            .iter()
            .map(|k| (*k, self.streams[k].next_seq - 1))
    }
}

/// A run of publishes to write as one unit.
pub struct PublishPlan<'a> {
    requests: &'a [&'a PublishRequest],
    /// Per request: whether it writes (its idempotency key is free).
    writes: Vec<bool>,
    /// The user streams the writing requests touch.
    pub users: Streams<'a>,
    /// The topic streams the writing requests touch.
    pub topics: Streams<'a>,
}

/// What [`PublishPlan::assign`] produced: the rows to insert, and per request its outcome
/// (or `IdempotencyConflict` when its key was taken).
pub struct Assigned<'a> {
    pub notifications: Vec<NotificationRow<'a>>,
    pub broadcasts: Vec<BroadcastRow<'a>>,
    pub results: Vec<Result<PublishOutcome, StoreError>>,
}

impl<'a> PublishPlan<'a> {
    /// Plans `requests`; `writes[i]` says whether request `i` writes.
    pub fn new(requests: &'a [&'a PublishRequest], writes: Vec<bool>) -> PublishPlan<'a> {
        let included = || {
            requests
                .iter()
                .zip(&writes)
                .filter(|(_, w)| **w)
                .flat_map(|(r, _)| r.events.iter())
        };
        let users = Streams::count(included().flat_map(|e| match e {
            EventInput::Notification(n) => n.to.iter().map(String::as_str).collect(),
            EventInput::Broadcast(_) => Vec::new(),
        }));
        let topics = Streams::count(included().filter_map(|e| match e {
            EventInput::Broadcast(b) => Some(b.topic.as_str()),
            EventInput::Notification(_) => None,
        }));
        PublishPlan {
            requests,
            writes,
            users,
            topics,
        }
    }

    /// How many ids the run needs: one per notification row and per broadcast.
    pub fn id_count(&self) -> i64 {
        let users: i64 = self.users.counts().map(|(_, n)| n).sum();
        let topics: i64 = self.topics.counts().map(|(_, n)| n).sum();
        users + topics
    }

    /// Gives every event its id (from `ids`, in order), seq and badge, once every stream was
    /// moved forward ([`Streams::moved_to`]); appends the changes to deliver to `changes`.
    pub fn assign(
        &mut self,
        mut ids: impl Iterator<Item = i64>,
        now: i64,
        changes: &mut Vec<Change>,
    ) -> Result<Assigned<'a>, StoreError> {
        let created_at = rfc3339_millis(now);
        let mut next_id = || {
            ids.next().ok_or_else(|| {
                StoreError::Database(sqlx::Error::Protocol("fewer ids than events".into()))
            })
        };
        let mut assigned = Assigned {
            notifications: Vec::new(),
            broadcasts: Vec::new(),
            results: Vec::with_capacity(self.requests.len()),
        };
        for (request, free) in self.requests.iter().zip(&self.writes) {
            if !free {
                assigned.results.push(Err(StoreError::IdempotencyConflict));
                continue;
            }
            let mut event_ids = Vec::new();
            let mut recipients = 0;
            for event in &request.events {
                match event {
                    EventInput::Notification(n) => {
                        for user in &n.to {
                            let Some(stream) = self.users.streams.get_mut(user.as_str()) else {
                                continue; // every recipient was counted in `new`
                            };
                            let (id, seq, unread) =
                                (next_id()?, stream.next_seq, stream.next_unread);
                            stream.next_seq += 1;
                            stream.next_unread += 1;
                            assigned.notifications.push(NotificationRow {
                                id,
                                user,
                                seq,
                                kind: &n.kind,
                                actor: n.actor.as_ref().map(|v| v.get()),
                                subject: n.subject.as_ref().map(|v| v.get()),
                                data: n.data.as_ref().map(|v| v.get()),
                            });
                            event_ids.push(id);
                            recipients += 1;
                            changes.push(Change::Notified {
                                user: user.clone(),
                                notification: Notification {
                                    id,
                                    seq,
                                    kind: n.kind.clone(),
                                    actor: n.actor.clone(),
                                    subject: n.subject.clone(),
                                    data: n.data.clone(),
                                    created_at: created_at.clone(),
                                    read: false,
                                },
                                unread,
                                published: request.received,
                            });
                        }
                    }
                    EventInput::Broadcast(b) => {
                        let Some(stream) = self.topics.streams.get_mut(b.topic.as_str()) else {
                            continue;
                        };
                        let (id, seq) = (next_id()?, stream.next_seq);
                        stream.next_seq += 1;
                        assigned.broadcasts.push(BroadcastRow {
                            id,
                            topic: &b.topic,
                            seq,
                            data: b.data.as_ref().map(|v| v.get()),
                        });
                        event_ids.push(id);
                        changes.push(Change::Broadcast {
                            broadcast: Broadcast {
                                id,
                                topic: b.topic.clone(),
                                seq,
                                data: b.data.clone(),
                                created_at: created_at.clone(),
                            },
                            published: request.received,
                        });
                    }
                }
            }
            assigned.results.push(Ok(PublishOutcome {
                ids: event_ids,
                recipients,
                online_sessions: request.online_sessions,
                muted: request.muted,
            }));
        }
        Ok(assigned)
    }

    /// After [`PublishPlan::assign`]: per topic whose history outgrew the longest
    /// `topic_history_max` of the run, the seq up to which its broadcasts go.
    pub fn history_cuts(&self) -> Vec<(&'a str, i64)> {
        let history = self
            .requests
            .iter()
            .map(|r| r.topic_history_max)
            .max()
            .unwrap_or(1);
        let history = i64::try_from(history).unwrap_or(i64::MAX);
        self.topics
            .last_seqs()
            .filter(|(_, last)| *last > history)
            .map(|(topic, last)| (topic, last - history))
            .collect()
    }
}
