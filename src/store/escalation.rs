//! The durable side of the offline hook ([`crate::escalation`]): when users were last seen,
//! the scan that queues due notifications, and the outbox that the nodes deliver from.
//!
//! Every operation is one transaction, safe to run on every node at once: the scan is done by
//! one node at a time (SQLite: its single writer; PostgreSQL: the lock on the cursor row), and
//! each outbox row is leased to one node by a conditional update before it is sent.

use async_trait::async_trait;

use super::StoreError;
use crate::model::Notification;

/// One pass of the scan for due notifications. Times are unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct DueScan {
    /// Notifications created at or before this are due (now − `escalation_after_secs`).
    pub cutoff: i64,
    /// How far before the cursor the scan looks again, for notifications committed after
    /// later ones were scanned (a slow transaction, another node's clock).
    pub lookback: i64,
    /// Notifications created before this are never queued, however far behind the cursor is
    /// (a webhook turned on again after a long while, a long outage): old news is not mailed.
    pub oldest: i64,
    /// Most notifications queued by one pass.
    pub limit: i64,
    /// When the queued ones are first tried.
    pub now: i64,
}

/// An outbox row leased to this node, with what its sending depends on.
#[derive(Debug, Clone)]
pub struct Leased {
    pub notification_id: i64,
    pub user: String,
    /// The notification's `created_at`, unix ms.
    pub published_at: i64,
    /// POSTs already tried.
    pub attempts: i64,
    /// The lease (its expiry, unix ms): finishing the row requires it to be still ours.
    pub lease_until: i64,
    /// The notification as it is now; `None` when it is gone (pruned).
    pub notification: Option<Notification>,
    /// When the user last had a live session (unix ms), if ever.
    pub last_seen: Option<i64>,
}

/// What became of a leased row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Sent (a 2xx), or no longer to be sent (read, user seen, gone): never again.
    Done,
    /// Try again at `next_attempt_at` (unix ms), after `attempts` tries.
    Retry { attempts: i64, next_attempt_at: i64 },
}

impl Finish {
    /// The row's new `attempts` and `next_attempt_at`: `None` for [`Finish::Done`], which
    /// keeps them (the update sets `done` exactly when they are `None`).
    pub fn retry_columns(self) -> (Option<i64>, Option<i64>) {
        match self {
            Finish::Done => (None, None),
            Finish::Retry {
                attempts,
                next_attempt_at,
            } => (Some(attempts), Some(next_attempt_at)),
        }
    }
}

/// The escalation tables; see the module documentation.
#[async_trait]
pub trait EscalationStore: Send + Sync + 'static {
    /// Records that each user had a live session at the given time (unix ms); a later time
    /// already recorded is kept.
    async fn record_seen(&self, seen: Vec<(String, i64)>) -> Result<(), StoreError>;
    /// Queues the notifications that became due since the last pass and are still unread,
    /// their user not seen since; moves the cursor. Returns how many were queued (0 as well
    /// when another node is scanning).
    async fn enqueue_due(&self, scan: DueScan) -> Result<u64, StoreError>;
    /// Leases up to `limit` pending rows due at `now` and not leased, until `lease_until`.
    async fn lease(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Leased>, StoreError>;
    /// Ends or reschedules a leased row, if the lease is still this node's.
    async fn finish(&self, leased: &Leased, finish: Finish) -> Result<(), StoreError>;
}

impl DueScan {
    /// Where a pass from `cursor` starts: the look-back before it, but never before `oldest`.
    pub fn from(&self, cursor: i64) -> i64 {
        cursor.saturating_sub(self.lookback).max(self.oldest)
    }
}

/// The cursor after a pass over `(from, cutoff]` that queued `queued` rows, the newest
/// created at `newest`: at the cutoff when the pass took everything, else at the newest queued
/// (the next pass, which looks back, finds the rest). Never backwards.
pub fn next_cursor(previous: i64, scan: &DueScan, queued: i64, newest: Option<i64>) -> i64 {
    let reached = match newest {
        Some(newest) if queued >= scan.limit => newest,
        _ => scan.cutoff,
    };
    previous.max(reached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_stops_at_the_newest_queued_when_a_pass_was_full() {
        let scan = DueScan {
            cutoff: 1_000,
            lookback: 100,
            oldest: 0,
            limit: 2,
            now: 2_000,
        };
        assert_eq!(next_cursor(500, &scan, 2, Some(700)), 700);
        assert_eq!(next_cursor(500, &scan, 1, Some(700)), 1_000);
        assert_eq!(next_cursor(500, &scan, 0, None), 1_000);
        assert_eq!(next_cursor(1_200, &scan, 0, None), 1_200);
    }
}
