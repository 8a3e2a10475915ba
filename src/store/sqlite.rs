//! The SQLite store: one file in WAL mode, one writer, a small pool of readers.
//!
//! SQLite takes one writer at a time, so all writes go through a single writer task that
//! commits whatever is queued as one transaction (group commit: one fsync for many publishes,
//! each publish in its own savepoint so a failed one does not take the others down). Because
//! that one task commits in order, it also hands committed changes to the listener in order.
//! Reads (replay, inbox pages, badges) use separate read-only connections and never wait for
//! the writer.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteExecutor};
use tokio::sync::{mpsc, oneshot};

use super::{
    Change, CommitListener, IdempotencyRecord, PruneReport, PublishOutcome, PublishRequest,
    ReadSelector, Replay, RetentionPolicy, Store, StoreError, StoredIdempotency, UserState,
};
use crate::model::{now_millis, rfc3339_millis, Broadcast, EventInput, Notification};

/// Operations waiting for the writer; more than this many queued publishes back-pressure the
/// HTTP handlers (they await a slot) instead of growing memory without bound.
const WRITE_QUEUE: usize = 4096;
/// Most events committed in one group transaction; keeps one commit's latency bounded.
const GROUP_EVENTS: usize = 5000;
/// Most read connections.
const READERS: u32 = 4;

/// Columns of a notification row, in the order [`notification_from_row`] reads them.
const NOTIFICATION_COLUMNS: &str = "id, seq, kind, actor, subject, data, created_at, read";

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    readers: SqlitePool,
    writer: mpsc::Sender<WriteOp>,
}

/// A unit of work for the writer, with where to send its result.
enum WriteOp {
    Publish(
        PublishRequest,
        oneshot::Sender<Result<PublishOutcome, StoreError>>,
    ),
    MarkRead(
        String,
        ReadSelector,
        oneshot::Sender<Result<i64, StoreError>>,
    ),
    Prune(
        RetentionPolicy,
        oneshot::Sender<Result<PruneReport, StoreError>>,
    ),
}

impl WriteOp {
    fn events(&self) -> usize {
        match self {
            WriteOp::Publish(request, _) => request.events.len(),
            _ => 1,
        }
    }
}

/// A finished op's result, held until the group commits.
enum Done {
    Publish(
        Result<PublishOutcome, StoreError>,
        oneshot::Sender<Result<PublishOutcome, StoreError>>,
    ),
    MarkRead(
        Result<i64, StoreError>,
        oneshot::Sender<Result<i64, StoreError>>,
    ),
    Prune(
        Result<PruneReport, StoreError>,
        oneshot::Sender<Result<PruneReport, StoreError>>,
    ),
}

impl Done {
    /// Replaces a success with `error` (the group's commit failed).
    fn fail(self, error: impl Fn() -> StoreError) -> Done {
        match self {
            Done::Publish(Ok(_), tx) => Done::Publish(Err(error()), tx),
            Done::MarkRead(Ok(_), tx) => Done::MarkRead(Err(error()), tx),
            Done::Prune(Ok(_), tx) => Done::Prune(Err(error()), tx),
            failed => failed,
        }
    }

    fn succeeded(&self) -> bool {
        match self {
            Done::Publish(r, _) => r.is_ok(),
            Done::MarkRead(r, _) => r.is_ok(),
            Done::Prune(r, _) => r.is_ok(),
        }
    }

    fn send(self) {
        // A caller that went away (client disconnected) no longer needs the answer.
        match self {
            Done::Publish(result, tx) => drop(tx.send(result)),
            Done::MarkRead(result, tx) => drop(tx.send(result)),
            Done::Prune(result, tx) => drop(tx.send(result)),
        }
    }
}

fn connect_options(database: &str) -> Result<SqliteConnectOptions, StoreError> {
    let options = if database.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(database)?
    } else {
        SqliteConnectOptions::new().filename(database)
    };
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk before a publish is answered.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10)))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database and starts the writer.
    pub async fn open(
        database: &str,
        listener: Arc<dyn CommitListener>,
    ) -> Result<SqliteStore, StoreError> {
        let options = connect_options(database)?;
        let mut writer_conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut writer_conn)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(run_writer(writer_conn, queue, listener));
        Ok(SqliteStore { readers, writer })
    }

    /// Creates the database if needed and applies migrations.
    pub async fn migrate_only(database: &str) -> Result<(), StoreError> {
        let mut conn = SqliteConnection::connect_with(&connect_options(database)?).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    async fn submit<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(op(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// The writer loop: take everything queued (up to [`GROUP_EVENTS`]), run it in one
/// transaction with a savepoint per op, commit, tell the listener, answer the callers.
async fn run_writer(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<WriteOp>,
    listener: Arc<dyn CommitListener>,
) {
    while let Some(first) = queue.recv().await {
        let mut ops = vec![first];
        let mut events = ops[0].events();
        while events < GROUP_EVENTS {
            match queue.try_recv() {
                Ok(op) => {
                    events += op.events();
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        let (done, changes) = commit_group(&mut conn, ops).await;
        if !changes.is_empty() {
            listener.committed(changes);
        }
        for d in done {
            d.send();
        }
    }
    log::debug!("store writer stopped");
}

async fn commit_group(conn: &mut SqliteConnection, ops: Vec<WriteOp>) -> (Vec<Done>, Vec<Change>) {
    let mut done = Vec::with_capacity(ops.len());
    let mut changes = Vec::new();
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            log::error!("store: cannot begin a transaction: {e}");
            let done = ops
                .into_iter()
                .map(|op| op_failed(op, || StoreError::Closed))
                .collect();
            return (done, changes);
        }
    };
    for op in ops {
        let mut op_changes = Vec::new();
        let mut savepoint = match tx.begin().await {
            Ok(savepoint) => savepoint,
            Err(e) => {
                done.push(op_failed(op, || {
                    StoreError::Database(sqlx::Error::WorkerCrashed)
                }));
                log::error!("store: cannot open a savepoint: {e}");
                continue;
            }
        };
        let finished = match op {
            WriteOp::Publish(request, reply) => {
                let result = publish_events(&mut savepoint, &request, &mut op_changes).await;
                Done::Publish(close_savepoint(savepoint, result).await, reply)
            }
            WriteOp::MarkRead(user, selector, reply) => {
                let result = mark_read(&mut savepoint, &user, &selector, &mut op_changes).await;
                Done::MarkRead(close_savepoint(savepoint, result).await, reply)
            }
            WriteOp::Prune(policy, reply) => {
                let result = prune(&mut savepoint, policy, &mut op_changes).await;
                Done::Prune(close_savepoint(savepoint, result).await, reply)
            }
        };
        if finished.succeeded() {
            changes.append(&mut op_changes);
        }
        done.push(finished);
    }
    if let Err(e) = tx.commit().await {
        log::error!("store: commit failed: {e}");
        let done = done
            .into_iter()
            .map(|d| d.fail(|| StoreError::Closed))
            .collect();
        return (done, Vec::new());
    }
    (done, changes)
}

fn op_failed(op: WriteOp, error: impl Fn() -> StoreError) -> Done {
    match op {
        WriteOp::Publish(_, tx) => Done::Publish(Err(error()), tx),
        WriteOp::MarkRead(_, _, tx) => Done::MarkRead(Err(error()), tx),
        WriteOp::Prune(_, tx) => Done::Prune(Err(error()), tx),
    }
}

/// Releases the savepoint when the op succeeded, rolls it back when it failed.
async fn close_savepoint<T>(
    savepoint: sqlx::Transaction<'_, sqlx::Sqlite>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            savepoint.commit().await?;
            Ok(value)
        }
        Err(e) => {
            savepoint.rollback().await?;
            Err(e)
        }
    }
}

async fn publish_events(
    conn: &mut SqliteConnection,
    request: &PublishRequest,
    changes: &mut Vec<Change>,
) -> Result<PublishOutcome, StoreError> {
    let now = now_millis();
    let created_at = rfc3339_millis(now);
    let id_count: i64 = request
        .events
        .iter()
        .map(|e| match e {
            EventInput::Notification(n) => n.to.len() as i64,
            EventInput::Broadcast(_) => 1,
        })
        .sum();
    let first_id: i64 = sqlx::query_scalar(
        "UPDATE id_counter SET next_id = next_id + ?1 WHERE singleton = 1 RETURNING next_id - ?1",
    )
    .bind(id_count)
    .fetch_one(&mut *conn)
    .await?;
    let mut ids = Vec::with_capacity(id_count as usize);
    let mut recipients = 0;
    for event in &request.events {
        match event {
            EventInput::Notification(n) => {
                let actor = n.actor.as_ref().map(|v| v.get());
                let subject = n.subject.as_ref().map(|v| v.get());
                let data = n.data.as_ref().map(|v| v.get());
                for user in &n.to {
                    let id = first_id + ids.len() as i64;
                    let row = sqlx::query(
                        "INSERT INTO user_state (user_id, last_seq, unread) VALUES (?1, 1, 1) \
                         ON CONFLICT (user_id) DO UPDATE \
                         SET last_seq = last_seq + 1, unread = unread + 1 \
                         RETURNING last_seq, unread",
                    )
                    .bind(user)
                    .fetch_one(&mut *conn)
                    .await?;
                    let seq: i64 = row.try_get(0)?;
                    let unread: i64 = row.try_get(1)?;
                    sqlx::query(
                        "INSERT INTO notifications \
                         (id, user_id, seq, kind, actor, subject, data, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .bind(id)
                    .bind(user)
                    .bind(seq)
                    .bind(&n.kind)
                    .bind(actor)
                    .bind(subject)
                    .bind(data)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
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
                    });
                }
            }
            EventInput::Broadcast(b) => {
                let id = first_id + ids.len() as i64;
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO topic_state (topic, last_seq) VALUES (?1, 1) \
                     ON CONFLICT (topic) DO UPDATE SET last_seq = last_seq + 1 \
                     RETURNING last_seq",
                )
                .bind(&b.topic)
                .fetch_one(&mut *conn)
                .await?;
                sqlx::query(
                    "INSERT INTO broadcasts (id, topic, seq, data, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(id)
                .bind(&b.topic)
                .bind(seq)
                .bind(b.data.as_ref().map(|v| v.get()))
                .bind(now)
                .execute(&mut *conn)
                .await?;
                let history = request.topic_history_max as i64;
                if seq > history {
                    sqlx::query("DELETE FROM broadcasts WHERE topic = ?1 AND seq <= ?2")
                        .bind(&b.topic)
                        .bind(seq - history)
                        .execute(&mut *conn)
                        .await?;
                }
                ids.push(id);
                changes.push(Change::Broadcast(Broadcast {
                    id,
                    topic: b.topic.clone(),
                    seq,
                    data: b.data.clone(),
                    created_at: created_at.clone(),
                }));
            }
        }
    }
    let outcome = PublishOutcome {
        ids,
        recipients,
        online_sessions: request.online_sessions,
    };
    if let Some(record) = &request.idempotency {
        remember(&mut *conn, record, &outcome, now).await?;
    }
    Ok(outcome)
}

/// Records the outcome under the idempotency key; a live key held by another request is a
/// conflict (the whole publish then rolls back).
async fn remember(
    conn: impl SqliteExecutor<'_>,
    record: &IdempotencyRecord,
    outcome: &PublishOutcome,
    now: i64,
) -> Result<(), StoreError> {
    let ids = serde_json::to_string(&outcome.ids).unwrap_or_else(|_| "[]".into());
    let written = sqlx::query(
        "INSERT INTO idempotency_keys \
         (key, body_hash, ids, recipients, online_sessions, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (key) DO UPDATE SET body_hash = excluded.body_hash, ids = excluded.ids, \
         recipients = excluded.recipients, online_sessions = excluded.online_sessions, \
         expires_at = excluded.expires_at \
         WHERE idempotency_keys.expires_at <= ?7",
    )
    .bind(&record.key)
    .bind(&record.body_hash)
    .bind(ids)
    .bind(outcome.recipients as i64)
    .bind(outcome.online_sessions as i64)
    .bind(record.expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    if written.rows_affected() == 0 {
        return Err(StoreError::IdempotencyConflict);
    }
    Ok(())
}

async fn mark_read(
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

async fn prune(
    conn: &mut SqliteConnection,
    policy: RetentionPolicy,
    changes: &mut Vec<Change>,
) -> Result<PruneReport, StoreError> {
    // Unread notifications about to go stop counting: lower the badges first, in the same
    // transaction, and tell the users' sessions.
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

fn raw_json(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t).ok())
}

fn notification_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Notification, sqlx::Error> {
    Ok(Notification {
        id: row.try_get(0)?,
        seq: row.try_get(1)?,
        kind: row.try_get(2)?,
        actor: raw_json(row.try_get(3)?),
        subject: raw_json(row.try_get(4)?),
        data: raw_json(row.try_get(5)?),
        created_at: rfc3339_millis(row.try_get(6)?),
        read: row.try_get::<i64, _>(7)? != 0,
    })
}

/// Which part of a stream a replay reads, given the stream's latest seq.
struct ReplayWindow {
    /// Read seqs greater than this.
    after: i64,
    /// Whether every missed event fits in the window.
    whole: bool,
}

fn replay_window(after: i64, latest: i64, limit: u64) -> ReplayWindow {
    let limit = limit as i64;
    if latest - after > limit {
        ReplayWindow {
            after: latest - limit,
            whole: false,
        }
    } else {
        ReplayWindow { after, whole: true }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, StoreError> {
        self.submit(|tx| WriteOp::Publish(request, tx)).await
    }

    async fn mark_read(&self, user: &str, selector: ReadSelector) -> Result<i64, StoreError> {
        let user = user.to_string();
        self.submit(|tx| WriteOp::MarkRead(user, selector, tx))
            .await
    }

    async fn user_state(&self, user: &str) -> Result<UserState, StoreError> {
        let row = sqlx::query("SELECT unread, last_seq FROM user_state WHERE user_id = ?1")
            .bind(user)
            .fetch_optional(&self.readers)
            .await?;
        Ok(match row {
            Some(row) => UserState {
                unread: row.try_get(0)?,
                seq: row.try_get(1)?,
            },
            None => UserState::default(),
        })
    }

    async fn notifications_after(
        &self,
        user: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Notification>, StoreError> {
        // One read transaction: the latest seq and the rows come from the same snapshot.
        let mut tx = self.readers.begin().await?;
        let latest: i64 = sqlx::query_scalar("SELECT last_seq FROM user_state WHERE user_id = ?1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        if after >= latest {
            return Ok(Replay {
                items: Vec::new(),
                complete: after == latest,
                latest,
            });
        }
        let window = replay_window(after, latest, limit);
        let rows = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
             WHERE user_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq"
        ))
        .bind(user)
        .bind(window.after)
        .bind(latest)
        .fetch_all(&mut *tx)
        .await?;
        let items = rows
            .iter()
            .map(notification_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let complete = window.whole && items.len() as i64 == latest - after;
        Ok(Replay {
            items,
            complete,
            latest,
        })
    }

    async fn broadcasts_after(
        &self,
        topic: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Broadcast>, StoreError> {
        let mut tx = self.readers.begin().await?;
        let latest: i64 = sqlx::query_scalar("SELECT last_seq FROM topic_state WHERE topic = ?1")
            .bind(topic)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        if after >= latest {
            return Ok(Replay {
                items: Vec::new(),
                complete: after == latest,
                latest,
            });
        }
        let window = replay_window(after, latest, limit);
        let rows = sqlx::query(
            "SELECT id, seq, data, created_at FROM broadcasts \
             WHERE topic = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
        )
        .bind(topic)
        .bind(window.after)
        .bind(latest)
        .fetch_all(&mut *tx)
        .await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(Broadcast {
                    id: row.try_get(0)?,
                    topic: topic.to_string(),
                    seq: row.try_get(1)?,
                    data: raw_json(row.try_get(2)?),
                    created_at: rfc3339_millis(row.try_get(3)?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let complete = window.whole && items.len() as i64 == latest - after;
        Ok(Replay {
            items,
            complete,
            latest,
        })
    }

    async fn topic_seq(&self, topic: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT last_seq FROM topic_state WHERE topic = ?1")
                .bind(topic)
                .fetch_optional(&self.readers)
                .await?
                .unwrap_or(0),
        )
    }

    async fn list_notifications(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u64,
        unread_only: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let unread_clause = if unread_only { "AND read = 0" } else { "" };
        let rows = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
             WHERE user_id = ?1 AND seq < ?2 {unread_clause} ORDER BY seq DESC LIMIT ?3"
        ))
        .bind(user)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .iter()
            .map(notification_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        let row = sqlx::query(
            "SELECT body_hash, ids, recipients, online_sessions FROM idempotency_keys \
             WHERE key = ?1 AND expires_at > ?2",
        )
        .bind(key)
        .bind(now_millis())
        .fetch_optional(&self.readers)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let ids: String = row.try_get(1)?;
        Ok(Some(StoredIdempotency {
            body_hash: row.try_get(0)?,
            outcome: PublishOutcome {
                ids: serde_json::from_str(&ids).unwrap_or_default(),
                recipients: row.try_get::<i64, _>(2)? as usize,
                online_sessions: row.try_get::<i64, _>(3)? as usize,
            },
        }))
    }

    async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError> {
        self.submit(|tx| WriteOp::Prune(policy, tx)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_keeps_the_newest_when_too_much_was_missed() {
        let w = replay_window(10, 15, 100);
        assert_eq!((w.after, w.whole), (10, true));
        let w = replay_window(0, 5000, 1000);
        assert_eq!((w.after, w.whole), (4000, false));
    }
}
