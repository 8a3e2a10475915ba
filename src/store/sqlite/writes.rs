//! The write statements, run inside the writer's transaction.
//!
//! A run of publishes is written set-wise: one statement allocates ids, one upserts every
//! recipient's stream position and badge, one inserts every notification (the rows travel as
//! one JSON array read with `json_each`), and the same for topics and broadcasts. The cost of
//! a group is then a handful of statements however many publishes it holds.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use crate::model::{now_millis, rfc3339_millis, Broadcast, EventInput, Notification};
use crate::store::{
    Change, IdempotencyRecord, PruneReport, PublishOutcome, PublishRequest, ReadSelector,
    RetentionPolicy, StoreError,
};

/// A notification row as it travels to `json_each`; the JSON objects go as strings so that
/// SQLite stores their text exactly as published.
#[derive(Serialize)]
struct NotificationRow<'a> {
    i: i64,
    u: &'a str,
    s: i64,
    k: &'a str,
    a: Option<&'a str>,
    b: Option<&'a str>,
    d: Option<&'a str>,
}

/// A broadcast row as it travels to `json_each`.
#[derive(Serialize)]
struct BroadcastRow<'a> {
    i: i64,
    t: &'a str,
    s: i64,
    d: Option<&'a str>,
}

/// A stream (user or topic) touched by a run: how many events it gets, and where it stood.
#[derive(Default, Clone, Copy)]
struct Stream {
    added: i64,
    /// Seq of the next event to assign (set from the upsert's result).
    next_seq: i64,
    /// Unread count after the next notification (users only).
    next_unread: i64,
}

/// Counts events per stream, in order of first appearance.
fn count<'a>(keys: impl Iterator<Item = &'a str>) -> (Vec<&'a str>, HashMap<&'a str, Stream>) {
    let mut order = Vec::new();
    let mut streams: HashMap<&str, Stream> = HashMap::new();
    for key in keys {
        let stream = streams.entry(key).or_insert_with(|| {
            order.push(key);
            Stream::default()
        });
        stream.added += 1;
    }
    (order, streams)
}

fn to_json<T: Serialize>(rows: &T) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))
}

/// Moves each stream forward by the events it gets in this run, all in one statement, and
/// records where its first new event goes. `sql` reads `[{"k": key, "n": count}, …]` and
/// returns `(key, last_seq, unread)` for each stream.
async fn advance(
    conn: &mut SqliteConnection,
    sql: &str,
    order: &[&str],
    streams: &mut HashMap<&str, Stream>,
) -> Result<(), StoreError> {
    if order.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = order
        .iter()
        .map(|k| json!({"k": k, "n": streams[k].added}))
        .collect();
    let upserted = sqlx::query(sql)
        .bind(Value::Array(rows).to_string())
        .fetch_all(&mut *conn)
        .await?;
    for row in upserted {
        let key: String = row.try_get(0)?;
        let last_seq: i64 = row.try_get(1)?;
        let unread: i64 = row.try_get(2)?;
        if let Some(stream) = streams.get_mut(key.as_str()) {
            stream.next_seq = last_seq - stream.added + 1;
            stream.next_unread = unread - stream.added + 1;
        }
    }
    Ok(())
}

/// Whether `key` is held by a live (unexpired) idempotency record.
async fn key_taken(conn: &mut SqliteConnection, key: &str, now: i64) -> Result<bool, StoreError> {
    let live: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM idempotency_keys WHERE key = ?1 AND expires_at > ?2")
            .bind(key)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(live.is_some())
}

/// Writes a run of publishes; each gets its outcome, or `IdempotencyConflict` when its key
/// is already taken (that publish then writes nothing).
pub async fn publish_run(
    conn: &mut SqliteConnection,
    requests: &[&PublishRequest],
    changes: &mut Vec<Change>,
) -> Result<Vec<Result<PublishOutcome, StoreError>>, StoreError> {
    let now = now_millis();
    let created_at = rfc3339_millis(now);

    // Which requests write: those whose idempotency key is free (checked here, inside the
    // one writer's transaction, so nothing can take the key in between).
    let mut keys_in_run = HashSet::new();
    let mut writes = Vec::with_capacity(requests.len());
    for request in requests {
        let free = match &request.idempotency {
            None => true,
            Some(record) => {
                keys_in_run.insert(record.key.as_str())
                    && !key_taken(conn, &record.key, now).await?
            }
        };
        writes.push(free);
    }
    let included = || {
        requests
            .iter()
            .zip(&writes)
            .filter(|(_, w)| **w)
            .map(|(r, _)| *r)
    };
    let notifications = || {
        included().flat_map(|r| {
            r.events.iter().filter_map(|e| match e {
                EventInput::Notification(n) => Some(n),
                EventInput::Broadcast(_) => None,
            })
        })
    };
    let broadcasts = || {
        included().flat_map(|r| {
            r.events.iter().filter_map(|e| match e {
                EventInput::Broadcast(b) => Some(b),
                EventInput::Notification(_) => None,
            })
        })
    };

    let (user_order, mut users) =
        count(notifications().flat_map(|n| n.to.iter().map(String::as_str)));
    let (topic_order, mut topics) = count(broadcasts().map(|b| b.topic.as_str()));
    let id_count: i64 = users.values().chain(topics.values()).map(|s| s.added).sum();
    let mut next_id: i64 = sqlx::query_scalar(
        "UPDATE id_counter SET next_id = next_id + ?1 WHERE singleton = 1 RETURNING next_id - ?1",
    )
    .bind(id_count)
    .fetch_one(&mut *conn)
    .await?;

    advance(
        conn,
        "INSERT INTO user_state (user_id, last_seq, unread) \
         SELECT value ->> 'k', value ->> 'n', value ->> 'n' FROM json_each(?1) WHERE true \
         ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq, \
         unread = unread + excluded.unread \
         RETURNING user_id, last_seq, unread",
        &user_order,
        &mut users,
    )
    .await?;
    advance(
        conn,
        "INSERT INTO topic_state (topic, last_seq) \
         SELECT value ->> 'k', value ->> 'n' FROM json_each(?1) WHERE true \
         ON CONFLICT (topic) DO UPDATE SET last_seq = last_seq + excluded.last_seq \
         RETURNING topic, last_seq, 0",
        &topic_order,
        &mut topics,
    )
    .await?;

    // Assign ids and seqs in request, event and recipient order; build rows and changes.
    let mut notification_rows = Vec::new();
    let mut broadcast_rows = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for (request, free) in requests.iter().zip(&writes) {
        if !free {
            results.push(Err(StoreError::IdempotencyConflict));
            continue;
        }
        let mut ids = Vec::new();
        let mut recipients = 0;
        for event in &request.events {
            match event {
                EventInput::Notification(n) => {
                    for user in &n.to {
                        let Some(stream) = users.get_mut(user.as_str()) else {
                            continue; // every recipient was counted above
                        };
                        let (id, seq, unread) = (next_id, stream.next_seq, stream.next_unread);
                        next_id += 1;
                        stream.next_seq += 1;
                        stream.next_unread += 1;
                        notification_rows.push(NotificationRow {
                            i: id,
                            u: user,
                            s: seq,
                            k: &n.kind,
                            a: n.actor.as_ref().map(|v| v.get()),
                            b: n.subject.as_ref().map(|v| v.get()),
                            d: n.data.as_ref().map(|v| v.get()),
                        });
                        ids.push(id);
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
                    let Some(stream) = topics.get_mut(b.topic.as_str()) else {
                        continue;
                    };
                    let (id, seq) = (next_id, stream.next_seq);
                    next_id += 1;
                    stream.next_seq += 1;
                    broadcast_rows.push(BroadcastRow {
                        i: id,
                        t: &b.topic,
                        s: seq,
                        d: b.data.as_ref().map(|v| v.get()),
                    });
                    ids.push(id);
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
        let outcome = PublishOutcome {
            ids,
            recipients,
            online_sessions: request.online_sessions,
        };
        if let Some(record) = &request.idempotency {
            remember(conn, record, &outcome).await?;
        }
        results.push(Ok(outcome));
    }

    if !notification_rows.is_empty() {
        sqlx::query(
            "INSERT INTO notifications (id, user_id, seq, kind, actor, subject, data, created_at) \
             SELECT value ->> 'i', value ->> 'u', value ->> 's', value ->> 'k', \
                    value ->> 'a', value ->> 'b', value ->> 'd', ?2 \
             FROM json_each(?1)",
        )
        .bind(to_json(&notification_rows)?)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    if !broadcast_rows.is_empty() {
        sqlx::query(
            "INSERT INTO broadcasts (id, topic, seq, data, created_at) \
             SELECT value ->> 'i', value ->> 't', value ->> 's', value ->> 'd', ?2 \
             FROM json_each(?1)",
        )
        .bind(to_json(&broadcast_rows)?)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        // Keep each topic's history bounded.
        let history = requests
            .iter()
            .map(|r| r.topic_history_max)
            .max()
            .unwrap_or(1) as i64;
        for topic in topic_order {
            let last = topics[topic].next_seq - 1;
            if last > history {
                sqlx::query("DELETE FROM broadcasts WHERE topic = ?1 AND seq <= ?2")
                    .bind(topic)
                    .bind(last - history)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(results)
}

/// Records a publish's outcome under its idempotency key, replacing an expired record.
async fn remember(
    conn: &mut SqliteConnection,
    record: &IdempotencyRecord,
    outcome: &PublishOutcome,
) -> Result<(), StoreError> {
    let ids = serde_json::to_string(&outcome.ids).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT OR REPLACE INTO idempotency_keys \
         (key, body_hash, ids, recipients, online_sessions, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(&record.key)
    .bind(&record.body_hash)
    .bind(ids)
    .bind(outcome.recipients as i64)
    .bind(outcome.online_sessions as i64)
    .bind(record.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks notifications read and returns the user's new unread count.
pub async fn mark_read(
    conn: &mut SqliteConnection,
    user: &str,
    selector: &ReadSelector,
    changes: &mut Vec<Change>,
) -> Result<i64, StoreError> {
    let marked =
        match selector {
            ReadSelector::Ids(ids) => {
                let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
                sqlx::query(
                    "UPDATE notifications SET read = 1 WHERE user_id = ?1 AND read = 0 \
                 AND id IN (SELECT value FROM json_each(?2))",
                )
                .bind(user)
                .bind(ids)
                .execute(&mut *conn)
                .await?
            }
            ReadSelector::UpTo(seq) => sqlx::query(
                "UPDATE notifications SET read = 1 WHERE user_id = ?1 AND read = 0 AND seq <= ?2",
            )
            .bind(user)
            .bind(seq)
            .execute(&mut *conn)
            .await?,
            ReadSelector::All => {
                sqlx::query("UPDATE notifications SET read = 1 WHERE user_id = ?1 AND read = 0")
                    .bind(user)
                    .execute(&mut *conn)
                    .await?
            }
        }
        .rows_affected() as i64;
    let unread: Option<i64> = sqlx::query_scalar(
        "UPDATE user_state SET unread = unread - ?2 WHERE user_id = ?1 RETURNING unread",
    )
    .bind(user)
    .bind(marked)
    .fetch_optional(&mut *conn)
    .await?;
    let unread = unread.unwrap_or(0);
    changes.push(Change::Unread {
        user: user.to_string(),
        unread,
    });
    Ok(unread)
}

/// Removes what retention allows; lowers the badges of users whose unread notifications go.
pub async fn prune(
    conn: &mut SqliteConnection,
    policy: RetentionPolicy,
    changes: &mut Vec<Change>,
) -> Result<PruneReport, StoreError> {
    let rows = sqlx::query(
        "UPDATE user_state SET unread = unread - ( \
             SELECT count(*) FROM notifications n \
             WHERE n.user_id = user_state.user_id AND n.read = 0 AND n.created_at < ?1) \
         WHERE user_id IN ( \
             SELECT DISTINCT user_id FROM notifications WHERE read = 0 AND created_at < ?1) \
         RETURNING user_id, unread",
    )
    .bind(policy.notifications_before)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        changes.push(Change::Unread {
            user: row.try_get(0)?,
            unread: row.try_get(1)?,
        });
    }
    let notifications = sqlx::query("DELETE FROM notifications WHERE created_at < ?1")
        .bind(policy.notifications_before)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let broadcasts = sqlx::query("DELETE FROM broadcasts WHERE created_at < ?1")
        .bind(policy.broadcasts_before)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let idempotency_keys = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < ?1")
        .bind(policy.idempotency_before)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(PruneReport {
        notifications,
        broadcasts,
        idempotency_keys,
    })
}
