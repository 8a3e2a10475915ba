//! Planning a run of publishes, the same for every backend: which requests write (their
//! idempotency key is free), how many events each user and topic stream gets, and, once the
//! backend has moved the streams forward, found the recipients' unread notifications of the
//! run's groups and handed out ids, which id, seq and badge each event gets, in request, event
//! and recipient order. An event of a group the recipient has unread folds into that
//! notification (same id, new seq, badge unchanged) instead of adding a row. The backend only
//! runs the statements.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::model::{rfc3339_millis, Broadcast, EventInput, Notification, NotificationInput};
use crate::store::fold::{actors_json, merge_actors, stored_actors};
use crate::store::{Change, PublishOutcome, PublishRequest, StoreError};

/// What a notification shows of the latest event it stands for. (The short field names are
/// what SQLite's `json_each` reads.)
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Content<'a> {
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

impl<'a> Content<'a> {
    fn of(n: &'a NotificationInput) -> Content<'a> {
        Content {
            kind: &n.kind,
            actor: n.actor.as_ref().map(|v| v.get()),
            subject: n.subject.as_ref().map(|v| v.get()),
            data: n.data.as_ref().map(|v| v.get()),
        }
    }
}

/// A notification row to insert.
#[derive(Debug, Serialize)]
pub struct NotificationRow<'a> {
    #[serde(rename = "i")]
    pub id: i64,
    #[serde(rename = "u")]
    pub user: &'a str,
    #[serde(rename = "s")]
    pub seq: i64,
    #[serde(flatten)]
    pub content: Content<'a>,
    /// The event's `group`, if any.
    #[serde(rename = "g")]
    pub group: Option<&'a str>,
    /// Events it stands for: more than 1 when later events of the run folded into it.
    #[serde(rename = "c")]
    pub count: i64,
    /// The actors as a JSON array, for a grouped row (a plain row lists its one actor).
    #[serde(rename = "x")]
    pub actors: Option<String>,
}

/// The new state of a stored unread notification that events of the run folded into.
#[derive(Debug, Serialize)]
pub struct GroupUpdate<'a> {
    #[serde(rename = "i")]
    pub id: i64,
    #[serde(rename = "s")]
    pub seq: i64,
    /// The seq it had when the run found it: a backend that took the row from memory
    /// updates it only if it is still there, unread.
    #[serde(skip)]
    pub was_seq: i64,
    #[serde(flatten)]
    pub content: Content<'a>,
    #[serde(rename = "c")]
    pub count: i64,
    /// JSON array.
    #[serde(rename = "x")]
    pub actors: String,
}

/// A recipient's unread notification of a group, as the backend found it in the database.
#[derive(Debug, Clone)]
pub struct OpenGroup {
    pub id: i64,
    /// Where it stands in its user's stream.
    pub seq: i64,
    pub count: i64,
    pub actors: Vec<Box<RawValue>>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Where a group's notification is written in this run.
#[derive(Debug, Clone, Copy)]
enum Written {
    /// Not yet: it is only in the database.
    NotYet,
    /// As `Assigned::updates[i]`.
    Update(usize),
    /// As `Assigned::notifications[i]`, a row new in this run.
    Insert(usize),
}

/// One (recipient, group) pair of the run: how many events it gets, and the notification
/// they fold into once known.
#[derive(Debug)]
struct GroupState {
    events: i64,
    open: Option<OpenGroup>,
    written: Written,
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
    /// Events of the run that folded into a notification already unread (no badge change).
    folded: i64,
    /// How many events the backend expected to fold when it moved the badge: it moved it
    /// up by `added - expected_folds` (see [`PublishPlan::expect_folds`]).
    expected_folds: i64,
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

    /// How many streams the run touches.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Each stream and the number of events it gets, in order of first appearance.
    pub fn counts(&self) -> impl Iterator<Item = (&'a str, i64)> + '_ {
        self.order.iter().map(|k| (*k, self.streams[k].added))
    }

    /// Records where the backend moved `key` to: its `last_seq` and `unread` count after
    /// this run's events were added.
    pub fn moved_to(&mut self, key: &str, last_seq: i64, unread: i64) {
        if let Some(stream) = self.streams.get_mut(key) {
            stream.next_seq = last_seq - stream.added + 1;
            stream.next_unread = unread - (stream.added - stream.expected_folds) + 1;
        }
    }

    /// Each stream with how far its seq and its badge move, sorted by key: the order in
    /// which a backend with row locks takes them, so that two transactions never wait for
    /// each other in a cycle.
    pub fn sorted_increments(&self) -> Vec<(&'a str, i64, i64)> {
        let mut increments: Vec<_> = self
            .streams
            .iter()
            .map(|(k, s)| (*k, s.added, s.added - s.expected_folds))
            .collect();
        increments.sort_unstable_by(|a, b| a.0.cmp(b.0));
        increments
    }

    /// Where each stream stands, `(key, last_seq, unread)`: before the run once the backend
    /// recorded where it moved them ([`Streams::moved_to`]); after it once
    /// [`PublishPlan::assign`] ran and the backend applied [`PublishPlan::folded`].
    pub fn positions(&self) -> impl Iterator<Item = (&'a str, i64, i64)> + '_ {
        self.order.iter().map(|k| {
            let stream = &self.streams[k];
            (*k, stream.next_seq - 1, stream.next_unread - 1)
        })
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
    /// The (recipient, group) pairs of the writing requests' grouped notifications.
    groups: HashMap<(String, String), GroupState>,
}

/// What [`PublishPlan::assign`] produced: the rows to insert or update, and per request its
/// outcome (or `IdempotencyConflict` when its key was taken).
pub struct Assigned<'a> {
    pub notifications: Vec<NotificationRow<'a>>,
    /// Unread notifications already stored that events folded into.
    pub updates: Vec<GroupUpdate<'a>>,
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
        let mut groups = HashMap::new();
        for event in included() {
            let EventInput::Notification(
                n @ NotificationInput {
                    group: Some(group), ..
                },
            ) = event
            else {
                continue;
            };
            for user in &n.to {
                groups
                    .entry((user.clone(), group.clone()))
                    .or_insert(GroupState {
                        events: 0,
                        open: None,
                        written: Written::NotYet,
                    })
                    .events += 1;
            }
        }
        PublishPlan {
            requests,
            writes,
            users,
            topics,
            groups,
        }
    }

    /// The (recipient, group) pairs whose unread notification the backend must look up, once
    /// it holds the recipients' stream rows (so that no other transaction changes them), in
    /// recipient order.
    pub fn group_keys(&self) -> Vec<(&str, &str)> {
        let mut keys: Vec<(&str, &str)> = self
            .groups
            .keys()
            .map(|(user, group)| (user.as_str(), group.as_str()))
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Records the recipients' unread notifications of the run's groups, as the backend
    /// found them: rows as [`open_row`] reads them.
    pub fn found_open_rows<R>(&mut self, rows: &[R]) -> Result<(), sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        for row in rows {
            let (key, open) = open_row(row)?;
            if let Some(state) = self.groups.get_mut(&key) {
                state.open = Some(open);
            }
        }
        Ok(())
    }

    /// Sets what `user`'s unread notification of `group` is (`None`: there is none), when
    /// the backend knows it before it looks (see [`PublishPlan::found_open_rows`]).
    pub fn set_open(&mut self, user: &str, group: &str, open: Option<OpenGroup>) {
        if let Some(state) = self.groups.get_mut(&(user.to_string(), group.to_string())) {
            state.open = open;
        }
    }

    /// Forgets what was set of the open groups of `users`: the backend looks them up.
    pub fn forget_open(&mut self, users: &HashSet<&str>) {
        for ((user, _), state) in self.groups.iter_mut() {
            if users.contains(user.as_str()) {
                state.open = None;
            }
        }
    }

    /// Before the streams are moved: how many events of each recipient will fold, as far as
    /// the open groups set so far tell (a pair with none folds all its events but the
    /// first). The backend then moves each badge up by the rest, and corrects it by
    /// [`PublishPlan::folded`] if what it found differs.
    pub fn expect_folds(&mut self) {
        for stream in self.users.streams.values_mut() {
            stream.expected_folds = 0;
        }
        for ((user, _), group) in &self.groups {
            if let Some(stream) = self.users.streams.get_mut(user.as_str()) {
                stream.expected_folds += group.events - i64::from(group.open.is_none());
            }
        }
    }

    /// After [`PublishPlan::assign`]: each (recipient, group) pair of the run and the unread
    /// notification that now stands for it.
    pub fn open_groups(&self) -> impl Iterator<Item = (&str, &str, &OpenGroup)> + '_ {
        self.groups.iter().filter_map(|((user, group), state)| {
            Some((user.as_str(), group.as_str(), state.open.as_ref()?))
        })
    }

    /// How many ids the run needs: one per new notification row and per broadcast (an event
    /// that folds into a notification keeps that one's id).
    pub fn id_count(&self) -> i64 {
        let users: i64 = self.users.counts().map(|(_, n)| n).sum();
        let topics: i64 = self.topics.counts().map(|(_, n)| n).sum();
        let folding: i64 = self
            .groups
            .values()
            .map(|g| g.events - i64::from(g.open.is_none()))
            .sum();
        users + topics - folding
    }

    /// After [`PublishPlan::assign`]: per recipient whose events folded other than expected,
    /// how many more than expected. The backend moved the badge up by every event it did not
    /// expect to fold (all of them, unless it called [`PublishPlan::expect_folds`]); it takes
    /// these back off (or puts them back on, when negative).
    pub fn folded(&self) -> Vec<(&'a str, i64)> {
        let mut folded: Vec<(&'a str, i64)> = self
            .users
            .order
            .iter()
            .map(|k| {
                let stream = &self.users.streams[k];
                (*k, stream.folded - stream.expected_folds)
            })
            .filter(|(_, n)| *n != 0)
            .collect();
        folded.sort_unstable();
        folded
    }

    /// Gives every event its id (from `ids`, in order), seq and badge, once every stream was
    /// moved forward ([`Streams::moved_to`]) and the open groups were found
    /// ([`PublishPlan::found_open`]); appends the changes to deliver to `changes`.
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
            updates: Vec::new(),
            broadcasts: Vec::new(),
            results: Vec::with_capacity(self.requests.len()),
        };
        let requests = self.requests;
        for (request, free) in requests.iter().zip(&self.writes) {
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
                            let seq = stream.next_seq;
                            stream.next_seq += 1;
                            let group = n
                                .group
                                .as_ref()
                                .and_then(|g| self.groups.get_mut(&(user.clone(), g.clone())));
                            let notification = match group {
                                Some(GroupState {
                                    open: Some(open),
                                    written,
                                    ..
                                }) => {
                                    stream.folded += 1;
                                    fold((open, written), n, seq, now, &mut assigned)
                                }
                                group => {
                                    stream.next_unread += 1;
                                    let id = next_id()?;
                                    insert(group, n, user, (id, seq), now, &mut assigned)
                                }
                            };
                            event_ids.push(notification.id);
                            recipients += 1;
                            changes.push(Change::Notified {
                                user: user.clone(),
                                notification,
                                unread: stream.next_unread - 1,
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

/// A stored unread notification of a group and its (user, group) pair, from a row of
/// `user_id, group_key, id, event_count, actors, actor, created_at, seq`.
pub fn open_row<R>(row: &R) -> Result<((String, String), OpenGroup), sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
    let actors: Option<String> = row.try_get(4)?;
    let actor: Option<String> = row.try_get(5)?;
    let actor = actor.and_then(|a| RawValue::from_string(a).ok());
    let open = OpenGroup {
        id: row.try_get(2)?,
        seq: row.try_get(7)?,
        count: row.try_get(3)?,
        actors: stored_actors(actors.as_deref(), actor.as_deref()),
        created_at: row.try_get(6)?,
    };
    Ok((key, open))
}

/// A notification as clients see it right after event `n` made or changed it.
fn shown(n: &NotificationInput, (id, seq): (i64, i64), group: &Grouped, now: i64) -> Notification {
    Notification {
        id,
        seq,
        kind: n.kind.clone(),
        actor: n.actor.clone(),
        subject: n.subject.clone(),
        data: n.data.clone(),
        created_at: rfc3339_millis(group.created_at),
        read: false,
        count: group.count,
        actors: group.actors.clone(),
        updated_at: rfc3339_millis(now),
        group: n.group.clone(),
    }
}

/// What a notification stands for after an event.
struct Grouped {
    count: i64,
    actors: Vec<Box<RawValue>>,
    created_at: i64,
}

/// A new row for event `n` to `user`; when grouped, later events of the run fold into it.
fn insert<'a>(
    group: Option<&mut GroupState>,
    n: &'a NotificationInput,
    user: &'a str,
    (id, seq): (i64, i64),
    now: i64,
    assigned: &mut Assigned<'a>,
) -> Notification {
    let actors = merge_actors(&[], n.actor.as_deref());
    let stored_actors = group.is_some().then(|| actors_json(&actors));
    if let Some(group) = group {
        group.open = Some(OpenGroup {
            id,
            seq,
            count: 1,
            actors: actors.clone(),
            created_at: now,
        });
        group.written = Written::Insert(assigned.notifications.len());
    }
    assigned.notifications.push(NotificationRow {
        id,
        user,
        seq,
        content: Content::of(n),
        group: n.group.as_deref(),
        count: 1,
        actors: stored_actors,
    });
    let grouped = Grouped {
        count: 1,
        actors,
        created_at: now,
    };
    shown(n, (id, seq), &grouped, now)
}

/// Folds event `n` into the group's unread notification (stored, or new in this run): it
/// gets `seq`, one more event, the actor and the event's content.
fn fold<'a>(
    (open, written): (&mut OpenGroup, &mut Written),
    n: &'a NotificationInput,
    seq: i64,
    now: i64,
    assigned: &mut Assigned<'a>,
) -> Notification {
    let was_seq = open.seq;
    open.seq = seq;
    open.count += 1;
    open.actors = merge_actors(&open.actors, n.actor.as_deref());
    let (content, actors) = (Content::of(n), actors_json(&open.actors));
    match *written {
        Written::Insert(i) => {
            let row = &mut assigned.notifications[i];
            (row.seq, row.content, row.count) = (seq, content, open.count);
            row.actors = Some(actors);
        }
        Written::Update(i) => {
            let row = &mut assigned.updates[i];
            (row.seq, row.content, row.count, row.actors) = (seq, content, open.count, actors);
        }
        Written::NotYet => {
            *written = Written::Update(assigned.updates.len());
            assigned.updates.push(GroupUpdate {
                id: open.id,
                seq,
                was_seq,
                content,
                count: open.count,
                actors,
            });
        }
    }
    let grouped = Grouped {
        count: open.count,
        actors: open.actors.clone(),
        created_at: open.created_at,
    };
    shown(n, (open.id, seq), &grouped, now)
}
