//! The escalation tables on SQLite ([`crate::store::escalation`]). Every write goes through
//! the single writer, as one savepoint of its group: the scan and the leases need no other
//! lock, and a failure here never rolls back the publishes committed beside it.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;
use tokio::sync::mpsc;

use super::writer::{Reply, Work, WriteOp};
use super::{notification_from_row, submit, NOTIFICATION_COLUMNS};
use crate::store::escalation::{next_cursor, DueScan, EscalationStore, Finish, Leased};
use crate::store::StoreError;

/// A write for the escalation tables, run by the writer.
pub enum EscalationWrite {
    Seen(Vec<(String, i64)>),
    Scan(DueScan),
    Lease {
        now: i64,
        lease_until: i64,
        limit: i64,
    },
    Finish {
        notification_id: i64,
        lease_until: i64,
        finish: Finish,
    },
}

/// What an [`EscalationWrite`] produced.
pub enum EscalationOutput {
    Queued(u64),
    Leased(Vec<Leased>),
    Nothing,
}

/// The SQLite implementation of [`EscalationStore`].
pub struct SqliteEscalations {
    /// Every operation here writes (the lease's reads too, so they see its own rows).
    writer: mpsc::Sender<WriteOp>,
}

impl SqliteEscalations {
    pub fn new(writer: mpsc::Sender<WriteOp>) -> Arc<SqliteEscalations> {
        Arc::new(SqliteEscalations { writer })
    }

    async fn run(&self, write: EscalationWrite) -> Result<EscalationOutput, StoreError> {
        submit(&self.writer, Work::Escalation(write), Reply::Escalation).await
    }
}

#[async_trait]
impl EscalationStore for SqliteEscalations {
    async fn record_seen(&self, seen: Vec<(String, i64)>) -> Result<(), StoreError> {
        self.run(EscalationWrite::Seen(seen)).await.map(drop)
    }

    async fn enqueue_due(&self, scan: DueScan) -> Result<u64, StoreError> {
        match self.run(EscalationWrite::Scan(scan)).await? {
            EscalationOutput::Queued(n) => Ok(n),
            _ => Ok(0),
        }
    }

    async fn lease(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Leased>, StoreError> {
        let write = EscalationWrite::Lease {
            now,
            lease_until,
            limit,
        };
        match self.run(write).await? {
            EscalationOutput::Leased(rows) => Ok(rows),
            _ => Ok(Vec::new()),
        }
    }

    async fn finish(&self, leased: &Leased, finish: Finish) -> Result<(), StoreError> {
        let write = EscalationWrite::Finish {
            notification_id: leased.notification_id,
            lease_until: leased.lease_until,
            finish,
        };
        self.run(write).await.map(drop)
    }
}

/// Runs `write` on the writer's connection (inside its savepoint).
pub async fn write(
    conn: &mut SqliteConnection,
    write: &EscalationWrite,
) -> Result<EscalationOutput, StoreError> {
    match write {
        EscalationWrite::Seen(seen) => {
            for (user, at) in seen {
                sqlx::query(
                    "INSERT INTO user_last_seen (user_id, seen_at) VALUES (?1, ?2) \
                     ON CONFLICT (user_id) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)",
                )
                .bind(user)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            Ok(EscalationOutput::Nothing)
        }
        EscalationWrite::Scan(scan) => scan_due(conn, scan).await.map(EscalationOutput::Queued),
        EscalationWrite::Lease {
            now,
            lease_until,
            limit,
        } => lease(conn, *now, *lease_until, *limit)
            .await
            .map(EscalationOutput::Leased),
        EscalationWrite::Finish {
            notification_id,
            lease_until,
            finish,
        } => {
            let (attempts, next_attempt_at) = finish.retry_columns();
            // Done: `done` set, the other columns kept; Retry: rescheduled, still pending.
            sqlx::query(
                "UPDATE escalations SET done = (?3 IS NULL), \
                   attempts = coalesce(?3, attempts), \
                   next_attempt_at = coalesce(?4, next_attempt_at), lease_until = 0 \
                 WHERE notification_id = ?1 AND lease_until = ?2",
            )
            .bind(*notification_id)
            .bind(*lease_until)
            .bind(attempts)
            .bind(next_attempt_at)
            .execute(&mut *conn)
            .await?;
            Ok(EscalationOutput::Nothing)
        }
    }
}

/// Queues what became due (see [`EscalationStore::enqueue_due`]) and forgets finished rows
/// the look-back no longer reaches.
async fn scan_due(conn: &mut SqliteConnection, scan: &DueScan) -> Result<u64, StoreError> {
    let cursor: Option<i64> =
        sqlx::query_scalar("SELECT scanned_to FROM escalation_cursor WHERE singleton = 1")
            .fetch_one(&mut *conn)
            .await?;
    let Some(cursor) = cursor else {
        // The first pass with a webhook: what was published before is not escalated.
        sqlx::query("UPDATE escalation_cursor SET scanned_to = ?1 WHERE singleton = 1")
            .bind(scan.cutoff)
            .execute(&mut *conn)
            .await?;
        return Ok(0);
    };
    let from = scan.from(cursor);
    let queued: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO escalations (notification_id, user_id, published_at, next_attempt_at) \
         SELECT n.id, n.user_id, n.created_at, ?4 FROM notifications n \
         WHERE n.created_at > ?1 AND n.created_at <= ?2 AND n.read = 0 \
           AND NOT EXISTS (SELECT 1 FROM user_last_seen s \
                           WHERE s.user_id = n.user_id AND s.seen_at >= n.created_at) \
           AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.notification_id = n.id) \
         ORDER BY n.created_at LIMIT ?3 \
         RETURNING published_at",
    )
    .bind(from)
    .bind(scan.cutoff)
    .bind(scan.limit)
    .bind(scan.now)
    .fetch_all(&mut *conn)
    .await?;
    let count = queued.len() as i64;
    let next = next_cursor(cursor, scan, count, queued.iter().copied().max());
    sqlx::query("UPDATE escalation_cursor SET scanned_to = ?1 WHERE singleton = 1")
        .bind(next)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM escalations WHERE done = 1 AND published_at <= ?1")
        .bind(from)
        .execute(&mut *conn)
        .await?;
    Ok(queued.len() as u64)
}

/// Leases due rows and reads what deciding on each needs.
async fn lease(
    conn: &mut SqliteConnection,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Leased>, StoreError> {
    let rows = sqlx::query(
        "UPDATE escalations SET lease_until = ?2 WHERE notification_id IN \
           (SELECT notification_id FROM escalations \
            WHERE done = 0 AND next_attempt_at <= ?1 AND lease_until <= ?1 \
            ORDER BY next_attempt_at LIMIT ?3) \
         RETURNING notification_id, user_id, published_at, attempts",
    )
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = Vec::with_capacity(rows.len());
    for row in rows {
        let notification_id: i64 = row.try_get(0)?;
        let user: String = row.try_get(1)?;
        let notification = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?1"
        ))
        .bind(notification_id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| notification_from_row(&row))
        .transpose()?;
        let last_seen: Option<i64> =
            sqlx::query_scalar("SELECT seen_at FROM user_last_seen WHERE user_id = ?1")
                .bind(&user)
                .fetch_optional(&mut *conn)
                .await?;
        leased.push(Leased {
            notification_id,
            user,
            published_at: row.try_get(2)?,
            attempts: row.try_get(3)?,
            lease_until,
            notification,
            last_seen,
        });
    }
    Ok(leased)
}
