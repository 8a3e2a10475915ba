//! The escalation tables on PostgreSQL ([`crate::store::escalation`]), shared by every node.
//! One node scans at a time: the scan takes the cursor row `FOR UPDATE SKIP LOCKED`, so a
//! node that finds it locked skips its turn instead of waiting. Outbox rows are leased
//! `FOR UPDATE SKIP LOCKED` too, so two nodes never lease the same row.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;

use super::{notification_from_row, writes, Shared, NOTIFICATION_COLUMNS};
use crate::store::escalation::{next_cursor, DueScan, EscalationStore, Finish, Leased};
use crate::store::StoreError;

/// The PostgreSQL implementation of [`EscalationStore`].
pub struct PgEscalations {
    shared: Arc<Shared>,
    /// The store's runtime, which drives its connections.
    runtime: tokio::runtime::Handle,
}

impl PgEscalations {
    pub fn new(shared: Arc<Shared>, runtime: tokio::runtime::Handle) -> Arc<PgEscalations> {
        Arc::new(PgEscalations { shared, runtime })
    }

    /// Runs `work` on the store's runtime, to its end even if the caller goes away.
    async fn run<T, F>(&self, work: impl FnOnce(Arc<Shared>) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime
            .spawn(work(self.shared.clone()))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl EscalationStore for PgEscalations {
    async fn record_seen(&self, mut seen: Vec<(String, i64)>) -> Result<(), StoreError> {
        // In user order, so two nodes' batches lock the rows in one order.
        seen.sort_unstable();
        let (users, times): (Vec<String>, Vec<i64>) = seen.into_iter().unzip();
        self.run(|shared| async move {
            writes::retrying(|| async {
                sqlx::query(
                    "INSERT INTO user_last_seen (user_id, seen_at) \
                     SELECT * FROM unnest($1::text[], $2::bigint[]) \
                     ON CONFLICT (user_id) DO UPDATE \
                     SET seen_at = GREATEST(user_last_seen.seen_at, excluded.seen_at)",
                )
                .bind(&users)
                .bind(&times)
                .execute(&shared.pool)
                .await?;
                Ok(())
            })
            .await
        })
        .await
    }

    async fn enqueue_due(&self, scan: DueScan) -> Result<u64, StoreError> {
        self.run(|shared| async move { scan_due(&shared, scan).await })
            .await
    }

    async fn lease(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Leased>, StoreError> {
        self.run(move |shared| async move { lease(&shared, now, lease_until, limit).await })
            .await
    }

    async fn finish(&self, leased: &Leased, finish: Finish) -> Result<(), StoreError> {
        let (id, lease_until) = (leased.notification_id, leased.lease_until);
        let (attempts, next_attempt_at) = finish.retry_columns();
        self.run(move |shared| async move {
            // Done: `done` set, the other columns kept; Retry: rescheduled, still pending.
            sqlx::query(
                "UPDATE escalations SET done = ($3::integer IS NULL), \
                   attempts = coalesce($3::integer, attempts), \
                   next_attempt_at = coalesce($4::bigint, next_attempt_at), lease_until = 0 \
                 WHERE notification_id = $1 AND lease_until = $2",
            )
            .bind(id)
            .bind(lease_until)
            .bind(attempts.map(|a| i32::try_from(a).unwrap_or(i32::MAX)))
            .bind(next_attempt_at)
            .execute(&shared.pool)
            .await?;
            Ok(())
        })
        .await
    }
}

/// Queues what became due, if no other node is scanning; see
/// [`EscalationStore::enqueue_due`].
async fn scan_due(shared: &Shared, scan: DueScan) -> Result<u64, StoreError> {
    let mut tx = shared.pool.begin().await?;
    let cursor: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT scanned_to FROM escalation_cursor WHERE singleton = 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(cursor) = cursor else {
        // Another node is scanning right now.
        return Ok(0);
    };
    let Some(cursor) = cursor else {
        // The first pass with a webhook: what was published before is not escalated.
        sqlx::query("UPDATE escalation_cursor SET scanned_to = $1 WHERE singleton = 1")
            .bind(scan.cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(0);
    };
    let from = scan.from(cursor);
    let queued: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO escalations (notification_id, user_id, published_at, next_attempt_at) \
         SELECT n.id, n.user_id, n.created_at, $4 FROM notifications n \
         WHERE n.created_at > $1 AND n.created_at <= $2 AND NOT n.read \
           AND NOT EXISTS (SELECT 1 FROM user_last_seen s \
                           WHERE s.user_id = n.user_id AND s.seen_at >= n.created_at) \
           AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.notification_id = n.id) \
         ORDER BY n.created_at LIMIT $3 \
         ON CONFLICT (notification_id) DO NOTHING \
         RETURNING published_at",
    )
    .bind(from)
    .bind(scan.cutoff)
    .bind(scan.limit)
    .bind(scan.now)
    .fetch_all(&mut *tx)
    .await?;
    let count = queued.len() as i64;
    let next = next_cursor(cursor, &scan, count, queued.iter().copied().max());
    sqlx::query("UPDATE escalation_cursor SET scanned_to = $1 WHERE singleton = 1")
        .bind(next)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM escalations WHERE done AND published_at <= $1")
        .bind(from)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(queued.len() as u64)
}

/// Leases due rows (skipping those another node is leasing) and reads what deciding on each
/// needs.
async fn lease(
    shared: &Shared,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Leased>, StoreError> {
    let pool = &shared.pool;
    let rows = sqlx::query(
        "UPDATE escalations SET lease_until = $2 WHERE notification_id IN \
           (SELECT notification_id FROM escalations \
            WHERE NOT done AND next_attempt_at <= $1 AND lease_until <= $1 \
            ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING notification_id, user_id, published_at, attempts",
    )
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut leased = Vec::with_capacity(rows.len());
    for row in rows {
        let notification_id: i64 = row.try_get(0)?;
        let user: String = row.try_get(1)?;
        let notification = sqlx::query(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"
        ))
        .bind(notification_id)
        .fetch_optional(pool)
        .await?
        .map(|row| notification_from_row(&row))
        .transpose()?;
        let last_seen: Option<i64> =
            sqlx::query_scalar("SELECT seen_at FROM user_last_seen WHERE user_id = $1")
                .bind(&user)
                .fetch_optional(pool)
                .await?;
        leased.push(Leased {
            notification_id,
            user,
            published_at: row.try_get(2)?,
            attempts: i64::from(row.try_get::<i32, _>(3)?),
            lease_until,
            notification,
            last_seen,
        });
    }
    Ok(leased)
}
