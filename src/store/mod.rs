//! Durable storage of notifications, unread counts, topic history and idempotency keys.
//!
//! Every SQL statement lives below this module, behind the [`Store`] trait, so the rest of
//! informd does not know whether SQLite or PostgreSQL answers. The contract every
//! implementation keeps:
//! - a user's notifications and a topic's broadcasts get `seq` 1, 2, 3, … with no gap, and the
//!   unread count changes in the same transaction as the rows it counts;
//! - [`Store::publish`] returns only after the events are committed;
//! - after each commit the store hands what changed to its [`CommitListener`], in commit
//!   order, before answering the caller: that is how live delivery stays in `seq` order.

mod counted;
mod documents;
pub mod escalation;
mod fold;
mod plan;
mod postgres;
mod replay;
mod sqlite;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::metrics::Metrics;
use crate::model::{Broadcast, EventInput, Notification};
use crate::preferences::Preferences;
use crate::priority::CommitPriority;
use escalation::EscalationStore;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Something that changed in a committed transaction and must reach live sessions.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new notification for `user`, with the user's unread count after it.
    Notified {
        user: String,
        notification: Notification,
        unread: i64,
        /// When the publish that made it was accepted (for the delivery latency).
        published: SystemTime,
    },
    /// `user`'s unread count changed other than by a new notification.
    Unread { user: String, unread: i64 },
    /// A new broadcast.
    Broadcast {
        broadcast: Broadcast,
        /// When the publish that made it was accepted (for the delivery latency).
        published: SystemTime,
    },
}

/// Receives committed changes, in commit order. Called on the store's writer: it must not
/// block (hand the work to a queue).
pub trait CommitListener: Send + Sync + 'static {
    fn committed(&self, changes: Vec<Change>);
}

/// A publish to commit as one unit.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub events: Vec<EventInput>,
    /// Remember the outcome under this key (in the same transaction).
    pub idempotency: Option<IdempotencyRecord>,
    /// Live sessions the publish reached, remembered for a repeated request.
    pub online_sessions: usize,
    /// (event, recipient) pairs left out because the recipient muted them, remembered for a
    /// repeated request.
    pub muted: usize,
    /// Broadcasts kept per topic.
    pub topic_history_max: u64,
    /// When the publish was accepted: its events' delivery latency counts from here.
    pub received: SystemTime,
}

/// An idempotency key and what identifies the request it was first used with.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub body_hash: Vec<u8>,
    /// Unix milliseconds after which the key may be reused.
    pub expires_at: i64,
}

/// What a committed publish produced (also what an idempotent repeat answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// One id per stored notification (per recipient) and per broadcast, in request order.
    pub ids: Vec<i64>,
    /// Notifications stored: the number of (event, recipient) pairs.
    pub recipients: usize,
    pub online_sessions: usize,
    /// (event, recipient) pairs left out because the recipient muted them.
    pub muted: usize,
}

/// A remembered idempotent publish.
#[derive(Debug, Clone)]
pub struct StoredIdempotency {
    pub body_hash: Vec<u8>,
    pub outcome: PublishOutcome,
}

/// Which notifications a read marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadSelector {
    Ids(Vec<i64>),
    UpTo(i64),
    All,
}

/// A user's badge and stream position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserState {
    pub unread: i64,
    /// The latest notification seq (0 before the first).
    pub seq: i64,
}

/// Events after a position, in order; `complete` is false when some were pruned or more were
/// missed than one replay carries.
#[derive(Debug, Clone)]
pub struct Replay<T> {
    pub items: Vec<T>,
    pub complete: bool,
    /// The stream's latest seq when the replay was read; the items end at or before it.
    pub latest: i64,
}

/// What retention removes.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Notifications created before this (unix ms) are deleted.
    pub notifications_before: i64,
    /// Broadcasts created before this (unix ms) are deleted.
    pub broadcasts_before: i64,
    /// Idempotency keys expiring before this (unix ms) are deleted.
    pub idempotency_before: i64,
}

/// What one retention pass (or one batch of it) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub notifications: u64,
    pub broadcasts: u64,
    pub idempotency_keys: u64,
}

/// Rows of each kind that retention removes per transaction. In one transaction, a pass
/// held the SQLite writer, and every publish with it, or the state rows of every user
/// concerned on PostgreSQL, for as long as the whole delete took: 35 s for a backlog of 4
/// million notifications. In batches, publishes go on between them, waiting for one batch
/// (about 0.1 s) at most; fewer rows per batch cost more commits (DECISIONS 105).
pub const PRUNE_BATCH: u64 = 5000;

impl PruneReport {
    /// Whether a batch removed as many rows of some kind as it may: more may be left.
    pub fn full(&self) -> bool {
        [self.notifications, self.broadcasts, self.idempotency_keys]
            .iter()
            .any(|&n| n >= PRUNE_BATCH)
    }
}

/// Runs retention `batch` after `batch` until one comes back short, pausing as long as each
/// took before the next, so publishes have the database to themselves for half the pass
/// (DECISIONS 105). Returns what the whole pass removed.
pub async fn prune_in_batches<F, Fut>(mut batch: F) -> Result<PruneReport, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<PruneReport, StoreError>>,
{
    let mut total = PruneReport::default();
    loop {
        let started = std::time::Instant::now();
        let removed = batch().await?;
        total += removed;
        if !removed.full() {
            return Ok(total);
        }
        tokio::time::sleep(started.elapsed()).await;
    }
}

impl std::ops::AddAssign for PruneReport {
    fn add_assign(&mut self, batch: PruneReport) {
        self.notifications += batch.notifications;
        self.broadcasts += batch.broadcasts;
        self.idempotency_keys += batch.idempotency_keys;
    }
}

/// Why a store call failed. The message of `Database` is for the log only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key was taken by a concurrent request (on this or another node).
    #[error("idempotency key already used")]
    IdempotencyConflict,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("the store is shut down")]
    Closed,
    /// A transaction shared by several operations failed; each of them gets its message.
    #[error("{0}")]
    GroupFailed(String),
    /// What a writer remembered of a user's open groups was no longer true; its run is
    /// retried without it.
    #[error("the database changed under the open groups this node remembered")]
    OutOfDate,
    /// The `database` setting names a kind of database informd does not speak.
    #[error(
        "database URL scheme {0}:// is not supported; use a sqlite: URL or a file path \
         (SQLite), or a postgres:// or postgresql:// URL (PostgreSQL)"
    )]
    UnsupportedScheme(String),
    /// The writer could not be given the scheduling `commit_priority` asks for; the message
    /// says what to grant or change.
    #[error("{0}")]
    Priority(String),
    /// The database file's directory is missing and cannot be made.
    #[error("cannot create the database directory {}: {source}", path.display())]
    Directory {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The storage contract. See the module documentation for the guarantees.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores the events (all or none) and returns their ids.
    async fn publish(&self, request: PublishRequest) -> Result<PublishOutcome, StoreError>;
    /// Marks notifications read and returns the user's new unread count.
    async fn mark_read(&self, user: &str, selector: ReadSelector) -> Result<i64, StoreError>;
    /// The user's unread count and latest seq.
    async fn user_state(&self, user: &str) -> Result<UserState, StoreError>;
    /// The user's notifications with seq greater than `after`, oldest first, at most `limit`
    /// (the newest `limit` when more were missed).
    async fn notifications_after(
        &self,
        user: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Notification>, StoreError>;
    /// The same for a topic's broadcasts.
    async fn broadcasts_after(
        &self,
        topic: &str,
        after: i64,
        limit: u64,
    ) -> Result<Replay<Broadcast>, StoreError>;
    /// The topic's latest seq (0 before the first broadcast).
    async fn topic_seq(&self, topic: &str) -> Result<i64, StoreError>;
    /// A page of the inbox, newest first: seq below `before`, only unread when asked.
    async fn list_notifications(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u64,
        unread_only: bool,
    ) -> Result<Vec<Notification>, StoreError>;
    /// The remembered outcome of an idempotency key, unless expired.
    async fn idempotency(&self, key: &str) -> Result<Option<StoredIdempotency>, StoreError>;
    /// Removes what retention allows, keeping unread counts right.
    async fn prune(&self, policy: RetentionPolicy) -> Result<PruneReport, StoreError>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The newest schema migration applied to the database, when this build does not know
    /// it: a newer informd has migrated the database (see [`crate::schema_guard`]).
    async fn newer_schema(&self) -> Result<Option<i64>, StoreError>;
    /// Every user's preferences (users without any are left out).
    async fn all_preferences(&self) -> Result<Vec<(String, Preferences)>, StoreError>;
    /// One user's preferences, if they have any.
    async fn preferences(&self, user: &str) -> Result<Option<Preferences>, StoreError>;
    /// Replaces one user's preferences (an empty document removes them).
    async fn set_preferences(
        &self,
        user: &str,
        preferences: &Preferences,
    ) -> Result<(), StoreError>;

    /// The offline hook's tables, on the same database.
    fn escalations(&self) -> Arc<dyn EscalationStore>;
}

/// Which database a `database` setting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A `sqlite:` URL or a plain file path.
    Sqlite,
    /// A `postgres://` or `postgresql://` URL.
    Postgres,
}

impl Backend {
    /// The backend for `database`; any other `scheme://` is refused, so that a typo or a
    /// MySQL URL is not taken for a file name.
    pub fn of(database: &str) -> Result<Backend, StoreError> {
        let scheme = database
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            Some("sqlite") | None => Ok(Backend::Sqlite),
            // Only the scheme is repeated: the rest may hold a password.
            Some(scheme) => Err(StoreError::UnsupportedScheme(scheme.to_string())),
        }
    }
}

/// Opens the store named by `database` (a `sqlite:` URL, a file path, or a `postgres://` URL)
/// and migrates it; its operations are counted into `metrics`, and SQLite's writer is
/// scheduled as `priority` says.
pub async fn open(
    database: &str,
    listener: Arc<dyn CommitListener>,
    metrics: Arc<Metrics>,
    priority: CommitPriority,
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = match Backend::of(database)? {
        Backend::Sqlite => {
            Arc::new(SqliteStore::open(database, listener, metrics.clone(), priority).await?)
        }
        // `Config::validate` refuses a realtime `commit_priority` with PostgreSQL.
        Backend::Postgres => Arc::new(PgStore::open(database, listener, metrics.clone()).await?),
    };
    Ok(Arc::new(counted::Counted::new(store, metrics)))
}

/// The newest migration sqlx has recorded as applied to a database.
const NEWEST_APPLIED_MIGRATION: &str = "SELECT max(version) FROM _sqlx_migrations";

/// `applied` (the newest migration applied to a database), if `migrator` does not know it.
fn unknown_migration(migrator: &sqlx::migrate::Migrator, applied: Option<i64>) -> Option<i64> {
    applied.filter(|version| !migrator.iter().any(|m| m.version == *version))
}

/// Applies the schema migrations without starting anything else (`informd migrate`).
pub async fn migrate(database: &str) -> Result<(), StoreError> {
    match Backend::of(database)? {
        Backend::Sqlite => SqliteStore::migrate_only(database).await,
        Backend::Postgres => PgStore::migrate_only(database).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_described() {
        let cases = [
            (
                "postgres://informd:s3cret@db.example:5432/informd",
                "postgres://informd:***@db.example:5432/informd",
            ),
            ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=s3cret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            ("postgres://u:s3cret@h", "postgres://u:***@h"),
            ("sqlite://informd.db", "sqlite://informd.db"),
            ("data/informd.db", "data/informd.db"),
        ];
        for (database, shown) in cases {
            assert_eq!(crate::config::redact_url(database), shown);
        }
    }

    #[test]
    fn unknown_schemes_are_refused_naming_the_supported_ones() {
        assert_eq!(Backend::of("postgres://h/db").ok(), Some(Backend::Postgres));
        assert_eq!(
            Backend::of("PostgreSQL://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::of("sqlite:x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of("/var/lib/informd.db").ok(),
            Some(Backend::Sqlite)
        );
        let refused = Backend::of("mysql://root:hunter2@h/db")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("mysql://"), "{refused}");
        assert!(!refused.contains("hunter2"), "{refused}");
        assert!(
            refused.contains("postgres://") && refused.contains("sqlite:"),
            "{refused}"
        );
        assert!(!refused.contains('\n'));
    }
}
