//! The write transactions. Each takes its row locks in one order (the idempotency key, then
//! user state rows sorted by user, then topic state rows sorted by topic, then the event
//! rows), so two transactions never wait for each other in a cycle; should PostgreSQL still
//! report a deadlock or a serialization failure, the transaction is run again ([`retrying`]).
//! Which id, seq and badge each event gets is planned by [`crate::store::plan`], shared with
//! SQLite.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use sqlx::{Postgres, Row, Transaction};

use super::open_groups::{self, Loaded, OpenGroups};
use super::Shared;
use crate::model::{now_millis, EventInput};
use crate::preferences::Preferences;
use crate::store::documents;
use crate::store::plan::{open_row, PublishPlan, Streams};
use crate::store::{
    prune_in_batches, Change, IdempotencyRecord, PruneReport, PublishOutcome, PublishRequest,
    ReadSelector, RetentionPolicy, StoreError, PRUNE_BATCH,
};

/// Times a transaction runs before a deadlock or serialization failure is given up on.
const ATTEMPTS: u32 = 4;

/// Whether PostgreSQL aborted the transaction only because of another one (deadlock
/// detected, serialization failure), so that running it again will do.
fn transient(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(e)) => {
            matches!(e.code().as_deref(), Some("40P01" | "40001"))
        }
        StoreError::OutOfDate => true,
        _ => false,
    }
}

/// Runs `transaction` until it commits, fails for good, or ran [`ATTEMPTS`] times.
pub async fn retrying<T, F, Fut>(mut transaction: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match transaction().await {
            Err(e) if transient(&e) && attempt < ATTEMPTS => {
                log::debug!("store: transaction retried after: {e}");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Commits `tx` (begun at `started`, holding `batch` operations) and hands `changes` to the
/// listener in this node's commit order.
async fn commit(
    shared: &Shared,
    tx: Transaction<'_, Postgres>,
    (started, batch): (Instant, usize),
    changes: Vec<Change>,
) -> Result<(), StoreError> {
    // Every lock is held now: this transaction's place in the order is fixed.
    let ticket = shared.sequencer.ticket();
    let committed = tx.commit().await;
    let metrics = &shared.metrics;
    metrics.commit_batch.observe(batch as f64);
    metrics
        .commit_duration
        .observe(started.elapsed().as_secs_f64());
    match committed {
        Ok(()) => {
            ticket.finish(Some(changes)).await;
            Ok(())
        }
        Err(e) => {
            ticket.finish(None).await;
            Err(e.into())
        }
    }
}

/// Moves each stream forward by its count, taking the rows' locks in key order. `sql` reads
/// keys (`$1`), how far each seq moves (`$2`) and how far each badge moves (`$3`), and
/// returns `(key, last_seq, unread)`.
async fn advance(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    streams: &mut Streams<'_>,
) -> Result<(), StoreError> {
    if streams.is_empty() {
        return Ok(());
    }
    let increments = streams.sorted_increments();
    let rows = sqlx::query(sql)
        .bind(increments.iter().map(|i| i.0).collect::<Vec<_>>())
        .bind(increments.iter().map(|i| i.1).collect::<Vec<_>>())
        .bind(increments.iter().map(|i| i.2).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await?;
    for row in rows {
        let key: String = row.try_get(0)?;
        streams.moved_to(&key, row.try_get(1)?, row.try_get(2)?);
    }
    Ok(())
}

/// Claims `record`'s key in `tx`, or replaces an expired record of it; false when the key is
/// live. A publish with the same key on any node waits here until this one commits, then
/// finds the key taken.
async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    record: &IdempotencyRecord,
    now: i64,
) -> Result<bool, StoreError> {
    let claimed: Option<i32> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys \
         (key, body_hash, ids, recipients, online_sessions, expires_at) \
         VALUES ($1, $2, '[]', 0, 0, $3) \
         ON CONFLICT (key) DO UPDATE SET body_hash = excluded.body_hash, ids = '[]', \
         recipients = 0, online_sessions = 0, expires_at = excluded.expires_at \
         WHERE idempotency_keys.expires_at <= $4 \
         RETURNING 1",
    )
    .bind(&record.key)
    .bind(&record.body_hash)
    .bind(record.expires_at)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(claimed.is_some())
}

/// Looks up the unread grouped notifications of `users` (those the writer did not remember
/// right, see [`OpenGroups`]) and takes the run's ids, in one statement. Called once the run
/// holds the recipients' state rows: every transaction that adds, folds or marks read a
/// user's notifications takes that row first, so what is found stays true until the run
/// commits, whichever node publishes. (The unique index on open groups would refuse a second
/// one.) Each user's open groups are read whole, up to one more than
/// [`open_groups::GROUPS_PER_USER`], for the writer to remember; the run's own pairs of those
/// users are also looked up by key, for a user who has more. How many ids the run needs
/// depends on what is found, so it takes one per event of these users, as if nothing folded:
/// ids need only be unique, and the unused ones are a gap, where a statement of their own
/// would cost a round trip.
async fn find_open_groups_and_ids(
    tx: &mut Transaction<'_, Postgres>,
    plan: &mut PublishPlan<'_>,
    users: &HashSet<&str>,
) -> Result<(Vec<i64>, Loaded), StoreError> {
    if users.is_empty() {
        return Ok((take_ids(tx, plan.id_count()).await?, Loaded::new()));
    }
    let (key_users, key_groups): (Vec<&str>, Vec<&str>) = (plan.group_keys().into_iter())
        .filter(|(user, _)| users.contains(user))
        .unzip();
    let rows = sqlx::query(
        "SELECT n.user_id, n.group_key, n.id, n.event_count, n.actors, n.actor, n.created_at, \
                coalesce(n.moved_seq, n.seq), true \
         FROM unnest($1::text[]) AS k(u) CROSS JOIN LATERAL ( \
             SELECT * FROM notifications WHERE user_id = k.u AND group_key IS NOT NULL \
             AND NOT read LIMIT $4) AS n \
         UNION ALL \
         SELECT n.user_id, n.group_key, n.id, n.event_count, n.actors, n.actor, n.created_at, \
                coalesce(n.moved_seq, n.seq), false \
         FROM unnest($2::text[], $3::text[]) AS k(u, g) \
         JOIN notifications AS n ON n.user_id = k.u AND n.group_key = k.g \
         WHERE n.group_key IS NOT NULL AND NOT n.read \
         UNION ALL \
         SELECT NULL, NULL, nextval('event_ids'), NULL, NULL, NULL, NULL, NULL, NULL \
         FROM generate_series(1, $5)",
    )
    // Planned to probe the index for each key (see `GROUPED_PLANNING`), as are the update and
    // the correction below.
    .bind(users.iter().collect::<Vec<_>>())
    .bind(key_users)
    .bind(key_groups)
    .bind(open_groups::GROUPS_PER_USER as i64 + 1)
    .bind(plan.id_count())
    .fetch_all(&mut **tx)
    .await?;
    let mut found = Vec::new();
    let mut ids = Vec::new();
    let mut loaded: Loaded = users
        .iter()
        .map(|u| (u.to_string(), Some(Vec::new())))
        .collect();
    for row in rows {
        let Some(user) = row.try_get::<Option<String>, _>(0)? else {
            ids.push(row.try_get(2)?);
            continue;
        };
        if row.try_get::<bool, _>(8)? {
            if let Some(Some(groups)) = loaded.get_mut(&user) {
                let ((_, group), open) = open_row(&row)?;
                groups.push((group, open));
            }
        }
        found.push(row);
    }
    for groups in loaded.values_mut() {
        if groups
            .as_ref()
            .is_some_and(|g| g.len() > open_groups::GROUPS_PER_USER)
        {
            *groups = None;
        }
    }
    plan.found_open_rows(&found)?;
    Ok((ids, loaded))
}

/// `count` new ids.
async fn take_ids(tx: &mut Transaction<'_, Postgres>, count: i64) -> Result<Vec<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT nextval('event_ids') FROM generate_series(1, $1)")
            .bind(count)
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// Whether any event of the run carries a `group` (its lookup may then run).
fn grouped(requests: &[&PublishRequest]) -> bool {
    requests.iter().any(|r| {
        r.events.iter().any(|e| match e {
            EventInput::Notification(n) => n.group.is_some(),
            EventInput::Broadcast(_) => false,
        })
    })
}

/// Stores a run of publishes in one transaction; each gets its outcome, or
/// `IdempotencyConflict` when its key is taken (that publish then writes nothing). `memory`
/// is the writer's: what it remembers of open groups is used, checked, and brought up to
/// date once the run commits.
pub async fn publish_run(
    shared: &Shared,
    requests: &[&PublishRequest],
    memory: &Mutex<OpenGroups>,
) -> Result<Vec<Result<PublishOutcome, StoreError>>, StoreError> {
    let result = write_run(shared, requests, memory).await;
    if matches!(result, Err(StoreError::OutOfDate)) {
        log::warn!(
            "store: the database disagreed with the open groups this node remembered \
             (changed by other means?); the run is retried without them"
        );
        lock(memory).forget_all();
    }
    result
}

/// The writer's memory; a panic elsewhere while it was held leaves nothing half-changed that
/// matters (every entry is checked before use), so a poisoned lock is taken as it is.
fn lock(memory: &Mutex<OpenGroups>) -> std::sync::MutexGuard<'_, OpenGroups> {
    memory
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`publish_run`] itself.
async fn write_run(
    shared: &Shared,
    requests: &[&PublishRequest],
    memory: &Mutex<OpenGroups>,
) -> Result<Vec<Result<PublishOutcome, StoreError>>, StoreError> {
    let now = now_millis();
    let started = Instant::now();
    let mut tx = if grouped(requests) {
        shared.grouped_pool.begin().await?
    } else {
        shared.pool.begin().await?
    };
    // Keys first, in key order (the lock order), each at most once per run.
    let mut keyed: Vec<(usize, &IdempotencyRecord)> = requests
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.idempotency.as_ref().map(|k| (i, k)))
        .collect();
    keyed.sort_by(|a, b| a.1.key.cmp(&b.1.key).then(a.0.cmp(&b.0)));
    let mut writes = vec![true; requests.len()];
    let mut previous: Option<&str> = None;
    for (index, record) in keyed {
        let repeated = previous == Some(record.key.as_str());
        previous = Some(record.key.as_str());
        writes[index] = !repeated && claim(&mut tx, record, now).await?;
    }
    if !writes.contains(&true) {
        // Nothing to write: dropping `tx` rolls back.
        return Ok(writes
            .iter()
            .map(|_| Err(StoreError::IdempotencyConflict))
            .collect());
    }
    let mut plan = PublishPlan::new(requests, writes);
    let expected = lock(memory).recall(&mut plan);
    plan.expect_folds();
    advance(
        &mut tx,
        "INSERT INTO user_state (user_id, last_seq, unread) \
         SELECT k, n, u FROM unnest($1::text[], $2::int8[], $3::int8[]) AS s(k, n, u) \
         ORDER BY k \
         ON CONFLICT (user_id) DO UPDATE SET last_seq = user_state.last_seq + excluded.last_seq, \
         unread = user_state.unread + excluded.unread \
         RETURNING user_id, last_seq, unread",
        &mut plan.users,
    )
    .await?;
    // (A topic has no badge: `u` is read and left.)
    advance(
        &mut tx,
        "INSERT INTO topic_state (topic, last_seq) \
         SELECT k, n FROM unnest($1::text[], $2::int8[], $3::int8[]) AS s(k, n, u) \
         ORDER BY k \
         ON CONFLICT (topic) DO UPDATE SET last_seq = topic_state.last_seq + excluded.last_seq \
         RETURNING topic, last_seq, 0::int8",
        &mut plan.topics,
    )
    .await?;
    // Whose remembered open groups are still true: their streams stand where they were left.
    let held: HashSet<&str> = (plan.users.positions())
        .filter(|(user, last_seq, unread)| expected.get(*user) == Some(&(*last_seq, *unread)))
        .map(|(user, _, _)| user)
        .collect();
    let grouped: HashSet<String> = (plan.group_keys().into_iter())
        .map(|(user, _)| user.to_string())
        .collect();
    let unknown: HashSet<&str> = (plan.users.counts())
        .map(|(user, _)| user)
        .filter(|user| grouped.contains(*user) && !held.contains(user))
        .collect();
    plan.forget_open(&unknown);
    let (ids, loaded) = find_open_groups_and_ids(&mut tx, &mut plan, &unknown).await?;
    let mut changes = Vec::new();
    let assigned = plan.assign(ids.into_iter(), now, &mut changes)?;
    let notifications = &assigned.notifications;
    if !notifications.is_empty() {
        sqlx::query(
            "INSERT INTO notifications (id, user_id, seq, kind, actor, subject, data, created_at, \
                                        group_key, event_count, actors) \
             SELECT i, u, s, k, a, b, d, $8, g, c, x \
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $9::text[], $10::int8[], $11::text[]) \
                  AS r(i, u, s, k, a, b, d, g, c, x)",
        )
        .bind(notifications.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(notifications.iter().map(|r| r.user).collect::<Vec<_>>())
        .bind(notifications.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(
            notifications
                .iter()
                .map(|r| r.content.kind)
                .collect::<Vec<_>>(),
        )
        .bind(
            notifications
                .iter()
                .map(|r| r.content.actor)
                .collect::<Vec<_>>(),
        )
        .bind(
            notifications
                .iter()
                .map(|r| r.content.subject)
                .collect::<Vec<_>>(),
        )
        .bind(
            notifications
                .iter()
                .map(|r| r.content.data)
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .bind(notifications.iter().map(|r| r.group).collect::<Vec<_>>())
        .bind(notifications.iter().map(|r| r.count).collect::<Vec<_>>())
        .bind(
            notifications
                .iter()
                .map(|r| r.actors.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .map_err(open_group_taken)?;
    }
    let updates = &assigned.updates;
    if !updates.is_empty() {
        // Only a row still where the run found it, unread, is folded into. It moves by
        // `moved_seq`, which no index holds, so the update stays on its page (HOT).
        let folded = sqlx::query(
            "UPDATE notifications SET moved_seq = r.s, kind = r.k, actor = r.a, subject = r.b, \
                    data = r.d, event_count = r.c, actors = r.x, updated_at = $9 \
             FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::int8[], $8::text[], $10::int8[]) \
                  AS r(i, s, k, a, b, d, c, x, o) \
             WHERE notifications.id = r.i AND NOT notifications.read \
               AND coalesce(notifications.moved_seq, notifications.seq) = r.o",
        )
        .bind(updates.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(updates.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(updates.iter().map(|r| r.content.kind).collect::<Vec<_>>())
        .bind(updates.iter().map(|r| r.content.actor).collect::<Vec<_>>())
        .bind(
            updates
                .iter()
                .map(|r| r.content.subject)
                .collect::<Vec<_>>(),
        )
        .bind(updates.iter().map(|r| r.content.data).collect::<Vec<_>>())
        .bind(updates.iter().map(|r| r.count).collect::<Vec<_>>())
        .bind(
            updates
                .iter()
                .map(|r| r.actors.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .bind(updates.iter().map(|r| r.was_seq).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        if folded.rows_affected() != updates.len() as u64 {
            return Err(StoreError::OutOfDate);
        }
    }
    let (users, folded): (Vec<&str>, Vec<i64>) = plan.folded().into_iter().unzip();
    if !users.is_empty() {
        // The upsert moved each badge by what was expected not to fold; what the lookup found
        // folded otherwise. (The rows are locked by this transaction already.)
        sqlx::query(
            "UPDATE user_state SET unread = user_state.unread - f.n \
             FROM unnest($1::text[], $2::int8[]) AS f(u, n) WHERE user_state.user_id = f.u",
        )
        .bind(users)
        .bind(folded)
        .execute(&mut *tx)
        .await?;
    }
    let broadcasts = &assigned.broadcasts;
    if !broadcasts.is_empty() {
        sqlx::query(
            "INSERT INTO broadcasts (id, topic, seq, data, created_at) \
             SELECT i, t, s, d, $5 \
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[]) AS r(i, t, s, d)",
        )
        .bind(broadcasts.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(broadcasts.iter().map(|r| r.topic).collect::<Vec<_>>())
        .bind(broadcasts.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(broadcasts.iter().map(|r| r.data).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Keep each topic's history bounded (its state row is locked by this transaction).
        for (topic, up_to) in plan.history_cuts() {
            sqlx::query("DELETE FROM broadcasts WHERE topic = $1 AND seq <= $2")
                .bind(topic)
                .bind(up_to)
                .execute(&mut *tx)
                .await?;
        }
    }
    for (request, result) in requests.iter().zip(&assigned.results) {
        let (Some(record), Ok(outcome)) = (&request.idempotency, result) else {
            continue;
        };
        let ids = serde_json::to_string(&outcome.ids).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE idempotency_keys SET ids = $2, recipients = $3, online_sessions = $4, \
             muted = $5 WHERE key = $1",
        )
        .bind(&record.key)
        .bind(ids)
        .bind(outcome.recipients as i64)
        .bind(outcome.online_sessions as i64)
        .bind(outcome.muted as i64)
        .execute(&mut *tx)
        .await?;
    }
    commit(shared, tx, (started, requests.len()), changes).await?;
    lock(memory).remember(&plan, &held, loaded);
    Ok(assigned.results)
}

/// A new grouped row that the unique index of open groups refused: the group was open after
/// all, which only a remembered entry that was out of date can make happen.
fn open_group_taken(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(e) if e.constraint() == Some("notifications_open_group") => {
            StoreError::OutOfDate
        }
        _ => error.into(),
    }
}

/// Marks notifications read and returns the user's new unread count.
pub async fn mark_read(
    shared: &Shared,
    user: &str,
    selector: &ReadSelector,
) -> Result<i64, StoreError> {
    let started = Instant::now();
    let mut tx = shared.pool.begin().await?;
    // The badge row first, as a publish takes it: then the notification rows.
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT unread FROM user_state WHERE user_id = $1 FOR UPDATE")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    let marked = if locked.is_none() {
        0 // no state row: the user never received anything
    } else {
        // A moved row takes its position back into `seq` (no longer moving, it leaves the
        // reads of moved rows; see `MOVED`).
        let update = "UPDATE notifications SET read = true, \
                      seq = coalesce(moved_seq, seq), moved_seq = NULL \
                      WHERE user_id = $1 AND NOT read";
        match selector {
            ReadSelector::Ids(ids) => {
                sqlx::query(&format!("{update} AND id = ANY($2::int8[])"))
                    .bind(user)
                    .bind(ids)
                    .execute(&mut *tx)
                    .await?
            }
            ReadSelector::UpTo(seq) => {
                // (A row stands at or after its `seq`: the first test narrows by the index.)
                sqlx::query(&format!(
                    "{update} AND seq <= $2 AND coalesce(moved_seq, seq) <= $2"
                ))
                .bind(user)
                .bind(seq)
                .execute(&mut *tx)
                .await?
            }
            ReadSelector::All => sqlx::query(update).bind(user).execute(&mut *tx).await?,
        }
        .rows_affected() as i64
    };
    let unread: Option<i64> = sqlx::query_scalar(
        "UPDATE user_state SET unread = unread - $2 WHERE user_id = $1 RETURNING unread",
    )
    .bind(user)
    .bind(marked)
    .fetch_optional(&mut *tx)
    .await?;
    let unread = unread.unwrap_or(0);
    let change = Change::Unread {
        user: user.to_string(),
        unread,
    };
    commit(shared, tx, (started, 1), vec![change]).await?;
    Ok(unread)
}

/// Removes what retention allows, in batches of at most [`PRUNE_BATCH`] rows of each kind
/// per transaction with a pause as long as each batch between them (DECISIONS 105); lowers
/// the badges of users whose unread notifications go.
pub async fn prune(shared: &Shared, policy: RetentionPolicy) -> Result<PruneReport, StoreError> {
    prune_in_batches(|| async move {
        Ok(PruneReport {
            notifications: retrying(|| prune_notifications(shared, policy.notifications_before))
                .await?,
            broadcasts: delete_batch(
                shared,
                "DELETE FROM broadcasts WHERE id IN ( \
                     SELECT id FROM broadcasts WHERE created_at < $1 LIMIT $2)",
                policy.broadcasts_before,
            )
            .await?,
            idempotency_keys: delete_batch(
                shared,
                "DELETE FROM idempotency_keys WHERE key IN ( \
                     SELECT key FROM idempotency_keys WHERE expires_at < $1 LIMIT $2)",
                policy.idempotency_before,
            )
            .await?,
        })
    })
    .await
}

/// Runs `sql`, which deletes at most `$2` rows older than `$1`, and returns how many went.
async fn delete_batch(shared: &Shared, sql: &str, before: i64) -> Result<u64, StoreError> {
    let deleted = (sqlx::query(sql).bind(before).bind(PRUNE_BATCH as i64))
        .execute(&shared.pool)
        .await?;
    Ok(deleted.rows_affected())
}

/// Removes the oldest notifications created before `cutoff`, at most [`PRUNE_BATCH`], in one
/// transaction that holds only their users' state rows, and returns how many went.
async fn prune_notifications(shared: &Shared, cutoff: i64) -> Result<u64, StoreError> {
    let started = Instant::now();
    let mut tx = shared.pool.begin().await?;
    let picked: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, user_id FROM notifications WHERE created_at < $1 \
         ORDER BY created_at LIMIT $2",
    )
    .bind(cutoff)
    .bind(PRUNE_BATCH as i64)
    .fetch_all(&mut *tx)
    .await?;
    if picked.is_empty() {
        return Ok(0); // dropping `tx` rolls back
    }
    let (ids, mut users): (Vec<i64>, Vec<String>) = picked.into_iter().unzip();
    users.sort_unstable();
    users.dedup();
    // The state rows first, in user order, as publishes take them.
    sqlx::query("SELECT 1 FROM user_state WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE")
        .bind(&users)
        .execute(&mut *tx)
        .await?;
    // What another node's retention removed meanwhile is not there to delete or count. A
    // replay after the highest seq that goes is incomplete (see `SparseWindow`).
    let rows = sqlx::query(
        "WITH gone AS ( \
             DELETE FROM notifications WHERE id = ANY($1) AND created_at < $2 \
             RETURNING user_id, coalesce(moved_seq, seq) AS seq, read), \
         per_user AS ( \
             SELECT user_id, count(*) FILTER (WHERE NOT read) AS unread, max(seq) AS last \
             FROM gone GROUP BY user_id), \
         lowered AS ( \
             UPDATE user_state SET unread = user_state.unread - p.unread, \
                    pruned_seq = greatest(user_state.pruned_seq, p.last) \
             FROM per_user AS p WHERE user_state.user_id = p.user_id \
             RETURNING user_state.user_id, user_state.unread, p.unread AS lowered) \
         SELECT NULL::text, NULL::int8, NULL::int8, count(*) FROM gone \
         UNION ALL \
         SELECT user_id, unread, lowered, NULL FROM lowered",
    )
    .bind(&ids)
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await?;
    let mut removed = 0;
    let mut changes = Vec::new();
    for row in rows {
        match row.try_get::<Option<String>, _>(0)? {
            None => removed = row.try_get::<i64, _>(3)?,
            Some(user) if row.try_get::<i64, _>(2)? > 0 => changes.push(Change::Unread {
                user,
                unread: row.try_get(1)?,
            }),
            Some(_) => {}
        }
    }
    commit(shared, tx, (started, 1), changes).await?;
    Ok(u64::try_from(removed).unwrap_or(0))
}

/// Replaces a user's preferences; an empty document removes the row.
pub async fn set_preferences(
    shared: &Shared,
    user: &str,
    preferences: &Preferences,
) -> Result<(), StoreError> {
    if preferences.is_empty() {
        sqlx::query("DELETE FROM preferences WHERE user_id = $1")
            .bind(user)
            .execute(&shared.pool)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO preferences (user_id, document, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET document = excluded.document, \
         updated_at = excluded.updated_at",
    )
    .bind(user)
    .bind(documents::encode(preferences)?)
    .bind(now_millis())
    .execute(&shared.pool)
    .await?;
    Ok(())
}
