//! The SQLite store: one file in WAL mode, one writer, a small pool of readers.
//!
//! SQLite takes one writer at a time, so every write goes through a single writer task
//! ([`writer`]) that commits whatever is queued as one transaction: group commit, one fsync for
//! many publishes. Because that one task commits in order, it also hands committed changes to
//! the listener in order. Reads (replay, inbox pages, badges) use separate read-only
//! connections and never wait for the writer.

mod batch;
mod escalation;
mod writer;
mod writes;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::documents;
use super::fold::{NotificationColumns, NOTIFICATION_COLUMNS};
use super::replay::{ReplayWindow, SparseWindow};
use super::{
    prune_in_batches, unknown_migration, CommitListener, PruneReport, PublishOutcome,
    PublishRequest, ReadSelector, Replay, RetentionPolicy, Store, StoreError, StoredIdempotency,
    UserState, NEWEST_APPLIED_MIGRATION,
};
use crate::metrics::Metrics;
use crate::model::{now_millis, rfc3339_millis, Broadcast, Notification};
use crate::preferences::Preferences;
use crate::priority::CommitPriority;
use crate::store::escalation::EscalationStore;
use writer::{Reply, Work, WriteOp};

/// Operations waiting for the writer; more than this many queued publishes back-pressure the
/// HTTP handlers (they await a slot) instead of growing memory without bound.
const WRITE_QUEUE: usize = 4096;
/// Most read connections.
const READERS: u32 = 4;

/// How often the background checkpoint copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copies committed WAL frames into the database file on its own connection, in parallel with
/// the writer (PASSIVE: it never blocks the writer or readers), so that most of the copying is
/// off the commit path.
async fn checkpoint(mut conn: SqliteConnection) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        ticks.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            log::warn!("store: checkpoint failed: {e}");
        }
    }
}

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    readers: SqlitePool,
    writer: mpsc::Sender<WriteOp>,
}

fn connect_options(database: &str) -> Result<SqliteConnectOptions, StoreError> {
    let options = if database.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(database)?
    } else {
        SqliteConnectOptions::new().filename(database)
    };
    Ok(options
        // Small pages: a publish dirties a few random pages (a user's badge row, the user's
        // index leaf), and every dirty page is written whole to the WAL. Takes effect for new
        // database files only.
        .page_size(1024)
        // Statement journals (multi-row statements) in memory, not in temp files.
        .pragma("temp_store", "memory")
        // A background connection copies the WAL into the database as it grows (see
        // `checkpoint`); the writer's own checkpoint, after every 4 MiB of WAL, then finds
        // little left to copy and lets the WAL start over, keeping it bounded.
        .pragma("wal_autocheckpoint", "4096")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk before a publish is answered.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10)))
}

/// Creates the directory the database file goes in, as an operator who names
/// `/var/lib/informd/informd.db` expects; an in-memory database has none.
fn create_parent_directory(file: &std::path::Path) -> Result<(), StoreError> {
    let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if file.as_os_str() == ":memory:" || parent.is_dir() {
        return Ok(());
    }
    if parent.exists() {
        return Err(StoreError::Directory {
            path: parent.to_path_buf(),
            source: std::io::Error::other("it exists and is not a directory"),
        });
    }
    std::fs::create_dir_all(parent).map_err(|source| StoreError::Directory {
        path: parent.to_path_buf(),
        source,
    })?;
    log::info!("created the database directory {}", parent.display());
    Ok(())
}

/// The schema migrations, built into the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqliteStore {
    /// Opens (creating and migrating) the database and starts the writer, on a thread of its
    /// own scheduled as `priority` says.
    pub async fn open(
        database: &str,
        listener: Arc<dyn CommitListener>,
        metrics: Arc<Metrics>,
        priority: CommitPriority,
    ) -> Result<SqliteStore, StoreError> {
        let options = connect_options(database)?;
        create_parent_directory(options.get_filename())?;
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        writer::start(options.clone(), priority, queue, listener, metrics).await?;
        let checkpointer = SqliteConnection::connect_with(&options).await?;
        tokio::spawn(checkpoint(checkpointer));
        // Every read connection is opened here, now, and kept: each has a thread of its own
        // that inherits the priority of the thread that opens it, and one opened later by a
        // session's replay would run at the delivery threads' lower priority
        // (`crate::priority`) for every reader after it.
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(READERS)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { readers, writer })
    }

    /// Creates the database if needed and applies migrations.
    pub async fn migrate_only(database: &str) -> Result<(), StoreError> {
        let mut conn = SqliteConnection::connect_with(&connect_options(database)?).await?;
        MIGRATOR.run(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    /// Queues `work` for the writer and waits for its result.
    async fn submit<T>(
        &self,
        work: Work,
        reply: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Reply,
    ) -> Result<T, StoreError> {
        submit(&self.writer, work, reply).await
    }
}

/// Queues `work` for `writer` and waits for its result.
async fn submit<T>(
    writer: &mpsc::Sender<WriteOp>,
    work: Work,
    reply: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Reply,
) -> Result<T, StoreError> {
    let (tx, rx) = oneshot::channel();
    let op = WriteOp {
        work,
        reply: reply(tx),
    };
    writer.send(op).await.map_err(|_| StoreError::Closed)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

fn raw_json(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t).ok())
}

/// A row of [`NOTIFICATION_COLUMNS`].
fn notification_from_row(row: &SqliteRow) -> Result<Notification, sqlx::Error> {
    Ok(NotificationColumns {
        id: row.try_get(0)?,
        seq: row.try_get(1)?,
        kind: row.try_get(2)?,
        actor: row.try_get(3)?,
        subject: row.try_get(4)?,
        data: row.try_get(5)?,
        created_at: row.try_get(6)?,
        read: row.try_get::<i64, _>(7)? != 0,
        count: row.try_get(8)?,
        actors: row.try_get(9)?,
        updated_at: row.try_get(10)?,
        group: row.try_get(11)?,
    }
    .into())
}

/// How to read one kind of stream for a replay.
struct StreamQuery {
    /// The stream's latest seq, by key.
    latest: &'static str,
    /// Its rows with `?2 < seq <= ?3`, oldest first, by key.
    rows: &'static str,
}

const TOPIC_STREAM: StreamQuery = StreamQuery {
    latest: "SELECT last_seq FROM topic_state WHERE topic = ?1",
    rows: "SELECT id, seq, data, created_at FROM broadcasts \
           WHERE topic = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
};

impl SqliteStore {
    /// The rows a replay after `after` sends, from one read snapshot, and the window they were
    /// read from (which tells whether they are complete).
    async fn replay_rows(
        &self,
        stream: &StreamQuery,
        key: &str,
        after: i64,
        limit: u64,
    ) -> Result<(Vec<SqliteRow>, ReplayWindow), StoreError> {
        // One read transaction: the latest seq and the rows come from the same snapshot.
        let mut tx = self.readers.begin().await?;
        let latest: i64 = sqlx::query_scalar(stream.latest)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
        let window = ReplayWindow::new(after, latest, limit);
        let rows = if window.is_empty() {
            Vec::new()
        } else {
            sqlx::query(stream.rows)
                .bind(key)
                .bind(window.after)
                .bind(latest)
                .fetch_all(&mut *tx)
                .await?
        };
        Ok((rows, window))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, StoreError> {
        self.submit(Work::Publish(request), Reply::Publish).await
    }

    async fn mark_read(&self, user: &str, selector: ReadSelector) -> Result<i64, StoreError> {
        let work = Work::MarkRead(user.to_string(), selector);
        self.submit(work, Reply::MarkRead).await
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
        // One read transaction: the stream's state and its rows from the same snapshot.
        let mut tx = self.readers.begin().await?;
        let state =
            sqlx::query_as("SELECT last_seq, pruned_seq FROM user_state WHERE user_id = ?1")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let window = SparseWindow::of(after, state);
        let rows = if window.is_empty() {
            Vec::new()
        } else {
            sqlx::query(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
                 WHERE user_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT ?4"
            ))
            .bind(user)
            .bind(after)
            .bind(window.latest)
            .bind(SparseWindow::rows_to_read(limit))
            .fetch_all(&mut *tx)
            .await?
        };
        let newest_first = rows
            .iter()
            .map(notification_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(window.finish(newest_first, limit))
    }

    async fn broadcasts_after(
        &self,
        topic: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Broadcast>, StoreError> {
        let (rows, window) = self.replay_rows(&TOPIC_STREAM, topic, after, limit).await?;
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
        Ok(Replay {
            complete: window.complete(items.len()),
            items,
            latest: window.latest,
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
            "SELECT body_hash, ids, recipients, online_sessions, muted FROM idempotency_keys \
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
                muted: row.try_get::<i64, _>(4)? as usize,
            },
        }))
    }

    async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError> {
        // One batch per writer job: the publishes queued meanwhile go in between.
        prune_in_batches(|| self.submit(Work::Prune(policy), Reply::Prune)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn newer_schema(&self) -> Result<Option<i64>, StoreError> {
        let applied = sqlx::query_scalar(NEWEST_APPLIED_MIGRATION)
            .fetch_one(&self.readers)
            .await?;
        Ok(unknown_migration(&MIGRATOR, applied))
    }

    async fn all_preferences(&self) -> Result<Vec<(String, Preferences)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT user_id, document FROM preferences")
                .fetch_all(&self.readers)
                .await?;
        documents::decode_all(rows)
    }

    async fn preferences(&self, user: &str) -> Result<Option<Preferences>, StoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT document FROM preferences WHERE user_id = ?1")
                .bind(user)
                .fetch_optional(&self.readers)
                .await?;
        text.map(|t| documents::decode(&t)).transpose()
    }

    async fn set_preferences(
        &self,
        user: &str,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        let work = Work::SetPreferences(user.to_string(), preferences.clone());
        self.submit(work, Reply::SetPreferences).await
    }

    fn escalations(&self) -> Arc<dyn EscalationStore> {
        escalation::SqliteEscalations::new(self.writer.clone())
    }
}
