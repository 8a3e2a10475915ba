//! The PostgreSQL store, for several informd nodes on one database.
//!
//! Publishes go through one writer per node that commits whatever is queued as one
//! transaction ([`writer`], group commit); mark-read and retention are transactions of their
//! own on the pool ([`writes`]). Concurrent transactions, from this node or any other, are
//! ordered by the row locks their upserts take on the user's and topic's state rows, which is
//! what keeps `seq` gapless and the badge exact. Reads go to the same pool and take no locks.
//! Committed changes reach the listener in commit order through the [`sequencer`].
//!
//! The store runs on a small runtime of its own, so its connections are driven by threads
//! that do nothing else, whichever HTTP worker asked. The pool gives up on a connection after
//! [`ACQUIRE_TIMEOUT`]: while PostgreSQL is unreachable a publish answers 503 within that time
//! instead of hanging, and the pool reconnects by itself once it is back.

mod escalation;
mod open_groups;
mod sequencer;
mod writer;
mod writes;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::documents;
// Every query here reads a moved row at its position (see `MOVED`).
use super::fold::{NotificationColumns, MOVED_NOTIFICATION_COLUMNS as NOTIFICATION_COLUMNS};
use super::replay::{ReplayWindow, SparseWindow};
use super::{
    unknown_migration, CommitListener, PruneReport, PublishOutcome, PublishRequest, ReadSelector,
    Replay, RetentionPolicy, Store, StoreError, StoredIdempotency, UserState,
    NEWEST_APPLIED_MIGRATION,
};
use crate::metrics::Metrics;
use crate::model::{now_millis, rfc3339_millis, Broadcast, Notification};
use crate::preferences::Preferences;
use crate::store::escalation::EscalationStore;
use sequencer::Sequencer;

/// Connections per node: enough for 16 concurrent publishers plus reads.
const POOL_SIZE: u32 = 24;
/// How long an operation waits for a connection (including connecting) before it fails.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the first connection at start may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Threads driving the store's connections.
const THREADS: usize = 2;
/// How long PostgreSQL lets one of informd's transactions sit idle before it ends the session
/// (`idle_in_transaction_session_timeout`). informd never waits between the statements of a
/// transaction on anything but the database, so a transaction idle this long belongs to a
/// node that froze mid-commit (stopped, swapped out, cut off with its TCP connection still
/// open). Its locks on users' state rows would otherwise stall every publish to those users
/// on every node until the connection died, which can take hours.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "10s";
/// How the sessions that run grouped publishes plan their statements: one plan per
/// connection, made to look rows up through their unique indexes whatever the table's size.
/// Each grouped statement finds at most one row per key (an open group by
/// `notifications_open_group`, a folded row by its id, a state row by its user), so a nested
/// loop of index probes is the right plan at any size. Left to PostgreSQL, a plan cached while
/// `notifications` was small (a new database) scans the whole table on every later run, and
/// planning each run anew cost a fifth of the database's time in a grouped run. The settings
/// only discourage the other paths: a statement with no usable index still runs. They are
/// given when the session starts, so a run sends nothing for them; only the writer's grouped
/// runs use such sessions (a pool of their own), and everything else keeps PostgreSQL's
/// defaults. DECISIONS 99 and 107.
const GROUPED_PLANNING: [(&str, &str); 4] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];
/// Connections of the grouped pool: the writer runs one transaction at a time.
const GROUPED_POOL_SIZE: u32 = 2;

/// What every write needs.
pub struct Shared {
    pub pool: PgPool,
    /// The writer's connections for runs with grouped events, whose sessions plan as
    /// [`GROUPED_PLANNING`] says.
    pub grouped_pool: PgPool,
    pub sequencer: Arc<Sequencer>,
    pub metrics: Arc<Metrics>,
}

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    shared: Arc<Shared>,
    /// The store's own runtime (its handle runs the work).
    runtime: StoreRuntime,
    /// The publish writer's queue.
    writer: mpsc::Sender<(PublishRequest, writer::Reply)>,
}

/// A runtime that may be dropped anywhere: it shuts down without waiting for its tasks
/// (dropping a tokio runtime as usual panics inside another runtime).
struct StoreRuntime(Option<tokio::runtime::Runtime>, tokio::runtime::Handle);

impl StoreRuntime {
    fn start() -> Result<StoreRuntime, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(THREADS)
            .thread_name("informd-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let handle = runtime.handle().clone();
        Ok(StoreRuntime(Some(runtime), handle))
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn connect_options(database: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(database)?
        .application_name("informd")
        .options([(
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        )])
        // Statements are logged at debug only: at info every publish would log four lines.
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1)))
}

/// A pool of at most `size` connections, lazily opened.
fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection is checked when it goes back to the pool; checking it again on the way
        // out would cost a round trip per operation.
        .test_before_acquire(false)
}

/// Runs the embedded migrations on `pool`. sqlx's migrator holds a PostgreSQL advisory lock
/// (`pg_advisory_lock`, keyed by the database name) while it checks and applies them, so
/// nodes starting at once apply each migration once, one after the other.
async fn run_migrations<'a>(
    conn: impl sqlx::Acquire<'a, Database = sqlx::Postgres>,
) -> Result<(), StoreError> {
    debug_assert!(MIGRATOR.locking, "the migrator must take its advisory lock");
    MIGRATOR.run(conn).await?;
    Ok(())
}

/// The schema migrations, built into the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl PgStore {
    /// Connects, migrates, and starts the store's runtime.
    pub async fn open(
        database: &str,
        listener: Arc<dyn CommitListener>,
        metrics: Arc<Metrics>,
    ) -> Result<PgStore, StoreError> {
        let options = connect_options(database)?;
        let runtime = StoreRuntime::start()?;
        let (pool, grouped_pool) = runtime
            .1
            .spawn(async move {
                // One connection first: a database that cannot be reached or does not exist
                // is reported as such (the pool would only say it timed out).
                let connecting = options.connect();
                let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| {
                        sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                        ))
                    })??;
                conn.close().await?;
                let grouped_pool = pool_options(GROUPED_POOL_SIZE)
                    .connect_lazy_with(options.clone().options(GROUPED_PLANNING));
                let pool = pool_options(POOL_SIZE).connect_lazy_with(options);
                run_migrations(&pool).await?;
                Ok::<_, StoreError>((pool, grouped_pool))
            })
            .await
            .map_err(|_| StoreError::Closed)??;
        let shared = Arc::new(Shared {
            pool,
            grouped_pool,
            sequencer: Sequencer::new(listener),
            metrics,
        });
        let writer = {
            let _on_the_store_runtime = runtime.1.enter();
            writer::start(shared.clone())
        };
        Ok(PgStore {
            shared,
            runtime,
            writer,
        })
    }

    /// Applies migrations (`informd migrate`).
    pub async fn migrate_only(database: &str) -> Result<(), StoreError> {
        let mut conn = connect_options(database)?.connect().await?;
        run_migrations(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    /// Runs `work` on the store's runtime. It runs to its end even if the caller goes away
    /// (a client that hangs up mid-publish), so no transaction is cut between statements.
    async fn run<T, F>(&self, work: impl FnOnce(Arc<Shared>) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let task = work(self.shared.clone());
        self.runtime
            .1
            .spawn(task)
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// The rows an update moved (`moved_seq` set, see migrations/postgres/0005_moved_seq.sql):
/// only unread grouped ones, so a read of them goes through `notifications_open_group`.
/// Every read by position takes them from here, and the rest by `seq`: a moved row's
/// `seq` is where it was inserted, not where it stands. A user has few unread groups as a
/// rule; one with many costs each such read a probe of each (DECISIONS 108).
const MOVED: &str = "group_key IS NOT NULL AND NOT read AND moved_seq IS NOT NULL";

fn raw_json(text: Option<String>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t).ok())
}

/// A row of [`NOTIFICATION_COLUMNS`].
fn notification_from_row(row: &PgRow) -> Result<Notification, sqlx::Error> {
    Ok(NotificationColumns {
        id: row.try_get(0)?,
        seq: row.try_get(1)?,
        kind: row.try_get(2)?,
        actor: row.try_get(3)?,
        subject: row.try_get(4)?,
        data: row.try_get(5)?,
        created_at: row.try_get(6)?,
        read: row.try_get(7)?,
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
    /// Its rows with `$2 < seq <= $3`, oldest first, by key.
    rows: &'static str,
}

const TOPIC_STREAM: StreamQuery = StreamQuery {
    latest: "SELECT last_seq FROM topic_state WHERE topic = $1",
    rows: "SELECT id, seq, data, created_at FROM broadcasts \
           WHERE topic = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
};

/// The rows a replay after `after` sends, and the window they were read from. Two
/// statements need no common snapshot here: a stream's state row commits together with its
/// rows, so every row up to the latest seq read first is visible to the second statement
/// (unless retention removed it meanwhile, which the window then reports as incomplete).
async fn replay_rows(
    pool: &PgPool,
    stream: &StreamQuery,
    key: &str,
    after: i64,
    limit: u64,
) -> Result<(Vec<PgRow>, ReplayWindow), StoreError> {
    let latest: i64 = sqlx::query_scalar(stream.latest)
        .bind(key)
        .fetch_optional(pool)
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
            .fetch_all(pool)
            .await?
    };
    Ok((rows, window))
}

#[async_trait]
impl Store for PgStore {
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.writer
            .send((request, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    async fn mark_read(&self, user: &str, selector: ReadSelector) -> Result<i64, StoreError> {
        let user = user.to_string();
        self.run(|shared| async move {
            writes::retrying(|| writes::mark_read(&shared, &user, &selector)).await
        })
        .await
    }

    async fn user_state(&self, user: &str) -> Result<UserState, StoreError> {
        let user = user.to_string();
        self.run(|shared| async move {
            let pool = &shared.pool;
            let row = sqlx::query("SELECT unread, last_seq FROM user_state WHERE user_id = $1")
                .bind(user)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(row) => UserState {
                    unread: row.try_get(0)?,
                    seq: row.try_get(1)?,
                },
                None => UserState::default(),
            })
        })
        .await
    }

    async fn notifications_after(
        &self,
        user: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Notification>, StoreError> {
        let user = user.to_string();
        self.run(|shared| async move {
            let pool = &shared.pool;
            // Two statements, as in `replay_rows`: a notification an update moves past
            // `latest` meanwhile is not read here, and reaches the session live.
            let state =
                sqlx::query_as("SELECT last_seq, pruned_seq FROM user_state WHERE user_id = $1")
                    .bind(&user)
                    .fetch_optional(pool)
                    .await?;
            let window = SparseWindow::of(after, state);
            let rows = if window.is_empty() {
                Vec::new()
            } else {
                sqlx::query(&format!(
                    "SELECT * FROM ( \
                         (SELECT {NOTIFICATION_COLUMNS} FROM notifications \
                          WHERE user_id = $1 AND seq > $2 AND seq <= $3 AND moved_seq IS NULL \
                          ORDER BY seq DESC LIMIT $4) \
                         UNION ALL \
                         SELECT {NOTIFICATION_COLUMNS} FROM notifications \
                         WHERE user_id = $1 AND {MOVED} AND moved_seq > $2 AND moved_seq <= $3 \
                     ) AS n ORDER BY 2 DESC LIMIT $4" // (column 2: the position)
                ))
                .bind(&user)
                .bind(after)
                .bind(window.latest)
                .bind(SparseWindow::rows_to_read(limit))
                .fetch_all(pool)
                .await?
            };
            let newest_first = rows
                .iter()
                .map(notification_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(window.finish(newest_first, limit))
        })
        .await
    }

    async fn broadcasts_after(
        &self,
        topic: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Broadcast>, StoreError> {
        let topic = topic.to_string();
        self.run(|shared| async move {
            let pool = &shared.pool;
            let (rows, window) = replay_rows(pool, &TOPIC_STREAM, &topic, after, limit).await?;
            let items = rows
                .iter()
                .map(|row| {
                    Ok(Broadcast {
                        id: row.try_get(0)?,
                        topic: topic.clone(),
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
        })
        .await
    }

    async fn topic_seq(&self, topic: &str) -> Result<i64, StoreError> {
        let topic = topic.to_string();
        self.run(|shared| async move {
            let pool = &shared.pool;
            Ok(
                sqlx::query_scalar("SELECT last_seq FROM topic_state WHERE topic = $1")
                    .bind(topic)
                    .fetch_optional(pool)
                    .await?
                    .unwrap_or(0),
            )
        })
        .await
    }

    async fn list_notifications(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u64,
        unread_only: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let user = user.to_string();
        self.run(|shared| async move {
            let pool = &shared.pool;
            let unread_clause = if unread_only { "AND NOT read" } else { "" };
            let rows = sqlx::query(&format!(
                "SELECT * FROM ( \
                     (SELECT {NOTIFICATION_COLUMNS} FROM notifications \
                      WHERE user_id = $1 AND seq < $2 AND moved_seq IS NULL {unread_clause} \
                      ORDER BY seq DESC LIMIT $3) \
                     UNION ALL \
                     SELECT {NOTIFICATION_COLUMNS} FROM notifications \
                     WHERE user_id = $1 AND {MOVED} AND moved_seq < $2 \
                 ) AS n ORDER BY 2 DESC LIMIT $3" // (column 2: the position)
            ))
            .bind(user)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(notification_from_row)
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError> {
        let key = key.to_string();
        self.run(|shared| async move {
            let pool = &shared.pool;
            let row = sqlx::query(
                "SELECT body_hash, ids, recipients, online_sessions, muted FROM idempotency_keys \
                 WHERE key = $1 AND expires_at > $2",
            )
            .bind(key)
            .bind(now_millis())
            .fetch_optional(pool)
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
        })
        .await
    }

    async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError> {
        self.run(|shared| async move { writes::retrying(|| writes::prune(&shared, policy)).await })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|shared| async move {
            let pool = &shared.pool;
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
        .await
    }

    async fn newer_schema(&self) -> Result<Option<i64>, StoreError> {
        self.run(|shared| async move {
            let applied = sqlx::query_scalar(NEWEST_APPLIED_MIGRATION)
                .fetch_one(&shared.pool)
                .await?;
            Ok(unknown_migration(&MIGRATOR, applied))
        })
        .await
    }

    async fn all_preferences(&self) -> Result<Vec<(String, Preferences)>, StoreError> {
        self.run(|shared| async move {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT user_id, document FROM preferences")
                    .fetch_all(&shared.pool)
                    .await?;
            documents::decode_all(rows)
        })
        .await
    }

    async fn preferences(&self, user: &str) -> Result<Option<Preferences>, StoreError> {
        let user = user.to_string();
        self.run(|shared| async move {
            let text: Option<String> =
                sqlx::query_scalar("SELECT document FROM preferences WHERE user_id = $1")
                    .bind(user)
                    .fetch_optional(&shared.pool)
                    .await?;
            text.map(|t| documents::decode(&t)).transpose()
        })
        .await
    }

    async fn set_preferences(
        &self,
        user: &str,
        preferences: &Preferences,
    ) -> Result<(), StoreError> {
        let user = user.to_string();
        let preferences = preferences.clone();
        self.run(|shared| async move {
            writes::retrying(|| writes::set_preferences(&shared, &user, &preferences)).await
        })
        .await
    }

    fn escalations(&self) -> Arc<dyn EscalationStore> {
        escalation::PgEscalations::new(self.shared.clone(), self.runtime.1.clone())
    }
}
