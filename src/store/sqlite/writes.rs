//! The write statements, run inside the writer's transaction.
//!
//! A run of publishes is written set-wise: one statement allocates ids, one upserts every
//! recipient's stream position and badge, one inserts every notification (the rows travel as
//! one JSON array read with `json_each`), and the same for topics and broadcasts. The cost of
//! a group is then a handful of statements however many publishes it holds. Which id, seq and
//! badge each event gets is planned by [`crate::store::plan`], shared with PostgreSQL.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

use super::batch::{Batch, Param};
use crate::model::now_millis;
use crate::preferences::Preferences;
use crate::store::documents;
use crate::store::plan::{PublishPlan, Streams};
use crate::store::{
    Change, PruneReport, PublishOutcome, PublishRequest, ReadSelector, RetentionPolicy, StoreError,
    PRUNE_BATCH,
};

fn to_json<T: Serialize>(rows: &T) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))
}

/// Moves the users' streams forward by the events each gets in the run (`[{"k": user, "n":
/// count}, …]`), and returns `(user, last_seq, unread)` for each: one row per element.
const ADVANCE_USERS: &str = "INSERT INTO user_state (user_id, last_seq, unread) \
     SELECT value ->> 'k', value ->> 'n', value ->> 'n' FROM json_each(?) WHERE true \
     ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq, \
     unread = unread + excluded.unread \
     RETURNING user_id, last_seq, unread";

/// The same for topics, whose rows carry no badge.
const ADVANCE_TOPICS: &str = "INSERT INTO topic_state (topic, last_seq) \
     SELECT value ->> 'k', value ->> 'n' FROM json_each(?) WHERE true \
     ON CONFLICT (topic) DO UPDATE SET last_seq = last_seq + excluded.last_seq \
     RETURNING topic, last_seq, 0";

/// Takes as many ids as it is given (twice) and returns the first: one row.
const TAKE_IDS: &str =
    "UPDATE id_counter SET next_id = next_id + ? WHERE singleton = 1 RETURNING next_id - ?";

/// The recipients' unread notifications of the run's groups (`[[user, group], …]`), as
/// [`crate::store::plan::open_row`] reads them. The one writer holds the database, so nothing
/// changes them before the run commits.
const FIND_OPEN_GROUPS: &str =
    "SELECT n.user_id, n.group_key, n.id, n.event_count, n.actors, n.actor, n.created_at, \
            n.seq \
     FROM json_each(?) AS k JOIN notifications AS n \
       ON n.user_id = k.value ->> 0 AND n.group_key = k.value ->> 1 \
     WHERE n.group_key IS NOT NULL AND n.read = 0";

/// The run's new notifications, once their ids and seqs are planned (the time, then the rows;
/// so for the other writes).
const INSERT_NOTIFICATIONS: &str =
    "INSERT INTO notifications (id, user_id, seq, kind, actor, subject, data, created_at, \
                                group_key, event_count, actors) \
     SELECT value ->> 'i', value ->> 'u', value ->> 's', value ->> 'k', \
            value ->> 'a', value ->> 'b', value ->> 'd', ?, \
            value ->> 'g', value ->> 'c', value ->> 'x' \
     FROM json_each(?)";
/// The unread notifications that events of the run folded into.
const FOLD_NOTIFICATIONS: &str =
    "UPDATE notifications SET seq = value ->> 's', kind = value ->> 'k', \
            actor = value ->> 'a', subject = value ->> 'b', data = value ->> 'd', \
            event_count = value ->> 'c', actors = value ->> 'x', updated_at = ? \
     FROM json_each(?) WHERE notifications.id = value ->> 'i'";
/// The streams moved the badge up by every event; a folded one added no unread.
const CORRECT_FOLDED_BADGES: &str = "UPDATE user_state SET unread = unread - (value ->> 1) \
     FROM json_each(?) WHERE user_state.user_id = value ->> 0";
/// The run's broadcasts.
const INSERT_BROADCASTS: &str = "INSERT INTO broadcasts (id, topic, seq, data, created_at) \
     SELECT value ->> 'i', value ->> 't', value ->> 's', value ->> 'd', ? \
     FROM json_each(?)";
/// Keeps each topic's history bounded: `[[topic, up_to], …]`.
const CUT_HISTORIES: &str = "DELETE FROM broadcasts WHERE id IN ( \
     SELECT b.id FROM json_each(?) AS c JOIN broadcasts AS b \
       ON b.topic = c.value ->> 0 AND b.seq <= c.value ->> 1)";

/// Which of the run's idempotency keys (`[key, …]`) a live record holds.
const TAKEN_KEYS: &str = "SELECT key FROM idempotency_keys \
     WHERE key IN (SELECT value FROM json_each(?)) AND expires_at > ?";

/// Records each publish's outcome under its idempotency key (`[{"k": key, "h": body hash in
/// hex, "i": ids, "r": recipients, "o": online sessions, "m": muted, "e": expiry}, …]`),
/// replacing an expired record. One statement for any number of keys, so the run's SQL stays
/// one of a few texts, each prepared once.
const REMEMBER: &str = "INSERT OR REPLACE INTO idempotency_keys \
     (key, body_hash, ids, recipients, online_sessions, muted, expires_at) \
     SELECT value ->> 'k', unhex(value ->> 'h'), value ->> 'i', value ->> 'r', value ->> 'o', \
            value ->> 'm', value ->> 'e' \
     FROM json_each(?)";

/// Writes a run of publishes; each gets its outcome, or `IdempotencyConflict` when its key
/// is already taken (that publish then writes nothing).
///
/// `pending` holds statements to send first (the transaction's `BEGIN`, an earlier run's
/// writes); the run sends them with its first query, and leaves its own writes there, for
/// the next query or the group's `COMMIT`. So a run costs one round trip to SQLite's thread
/// (two when it holds idempotency keys): the query that moves the streams, takes the ids and
/// finds the open groups.
pub async fn publish_run(
    conn: &mut SqliteConnection,
    pending: &mut Batch,
    requests: &[&PublishRequest],
    changes: &mut Vec<Change>,
) -> Result<Vec<Result<PublishOutcome, StoreError>>, StoreError> {
    let now = now_millis();
    // Which requests write: those whose idempotency key is free (checked here, inside the
    // one writer's transaction, so nothing can take the key in between).
    let taken = taken_keys(conn, pending, requests, now).await?;
    let mut keys_in_run = HashSet::new();
    let writes = (requests.iter())
        .map(|request| match &request.idempotency {
            None => true,
            Some(record) => keys_in_run.insert(record.key.as_str()) && !taken.contains(&record.key),
        })
        .collect();
    let mut plan = PublishPlan::new(requests, writes);
    let first_id = advance_and_find(conn, pending, &mut plan).await?;

    let assigned = plan.assign(first_id.., now, changes)?;
    let remembered: Vec<Value> = (requests.iter().zip(&assigned.results))
        .filter_map(|(request, result)| {
            Some((request.idempotency.as_ref()?, result.as_ref().ok()?))
        })
        .map(|(record, outcome)| {
            json!({
                "k": record.key,
                "h": hex::encode(&record.body_hash),
                "i": outcome.ids,
                "r": outcome.recipients,
                "o": outcome.online_sessions,
                "m": outcome.muted,
                "e": record.expires_at,
            })
        })
        .collect();
    if !remembered.is_empty() {
        pending.add(
            REMEMBER,
            [Param::Text(Value::Array(remembered).to_string())],
        );
    }
    if !assigned.notifications.is_empty() {
        let rows = to_json(&assigned.notifications)?;
        pending.add(INSERT_NOTIFICATIONS, [Param::Int(now), Param::Text(rows)]);
    }
    if !assigned.updates.is_empty() {
        let rows = to_json(&assigned.updates)?;
        pending.add(FOLD_NOTIFICATIONS, [Param::Int(now), Param::Text(rows)]);
    }
    let folded = plan.folded();
    if !folded.is_empty() {
        pending.add(CORRECT_FOLDED_BADGES, [Param::Text(to_json(&folded)?)]);
    }
    if !assigned.broadcasts.is_empty() {
        let rows = to_json(&assigned.broadcasts)?;
        pending.add(INSERT_BROADCASTS, [Param::Int(now), Param::Text(rows)]);
        let cuts = plan.history_cuts();
        if !cuts.is_empty() {
            pending.add(CUT_HISTORIES, [Param::Text(to_json(&cuts)?)]);
        }
    }
    Ok(assigned.results)
}

/// The idempotency keys of `requests` that a live record holds, in one query (none when no
/// request has a key).
async fn taken_keys(
    conn: &mut SqliteConnection,
    pending: &mut Batch,
    requests: &[&PublishRequest],
    now: i64,
) -> Result<HashSet<String>, StoreError> {
    let keys: Vec<&str> = (requests.iter())
        .filter_map(|r| Some(r.idempotency.as_ref()?.key.as_str()))
        .collect();
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    pending.add(TAKEN_KEYS, [Param::Text(to_json(&keys)?), Param::Int(now)]);
    let rows = pending.fetch_all(conn).await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Moves every stream of the run forward, takes its ids and finds its open groups, in one
/// query (with whatever `pending` holds before it); returns the first id. Ids are taken before
/// the groups are known, one per event as if none folded into a notification already there:
/// ids need only be unique, and the ones a fold leaves unused are a gap, as a rolled-back run
/// leaves.
async fn advance_and_find(
    conn: &mut SqliteConnection,
    pending: &mut Batch,
    plan: &mut PublishPlan<'_>,
) -> Result<i64, StoreError> {
    let counts = |streams: &Streams<'_>| -> Param {
        let rows: Vec<Value> = (streams.counts())
            .map(|(k, n)| json!({"k": k, "n": n}))
            .collect();
        Param::Text(Value::Array(rows).to_string())
    };
    if !plan.users.is_empty() {
        pending.add(ADVANCE_USERS, [counts(&plan.users)]);
    }
    if !plan.topics.is_empty() {
        pending.add(ADVANCE_TOPICS, [counts(&plan.topics)]);
    }
    let ids = plan.id_count();
    pending.add(TAKE_IDS, [Param::Int(ids), Param::Int(ids)]);
    let keys = plan.group_keys();
    if !keys.is_empty() {
        pending.add(FIND_OPEN_GROUPS, [Param::Text(to_json(&keys)?)]);
    }
    // What was pending returns no rows (`BEGIN`, writes without `RETURNING`); these statements
    // return theirs in turn: one per user and one per topic (each is upserted), one for the
    // ids, then the open groups.
    let rows = pending.fetch_all(conn).await?;
    let (users, topics) = (plan.users.len(), plan.topics.len());
    let (advanced, rest) = rows.split_at((users + topics).min(rows.len()));
    let Some((ids, open_groups)) = rest.split_first() else {
        return Err(StoreError::Database(sqlx::Error::RowNotFound));
    };
    for (index, row) in advanced.iter().enumerate() {
        let key: String = row.try_get(0)?;
        let streams = if index < users {
            &mut plan.users
        } else {
            &mut plan.topics
        };
        streams.moved_to(&key, row.try_get(1)?, row.try_get(2)?);
    }
    plan.found_open_rows(open_groups)?;
    Ok(ids.try_get(0)?)
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

/// Removes one batch of what retention allows (at most [`PRUNE_BATCH`] rows of each kind,
/// oldest first); lowers the badges of users whose unread notifications go.
pub async fn prune(
    conn: &mut SqliteConnection,
    policy: RetentionPolicy,
    changes: &mut Vec<Change>,
) -> Result<PruneReport, StoreError> {
    let gone = sqlx::query(
        "DELETE FROM notifications WHERE id IN ( \
             SELECT id FROM notifications WHERE created_at < ?1 ORDER BY created_at LIMIT ?2) \
         RETURNING user_id, seq, read",
    )
    .bind(policy.notifications_before)
    .bind(PRUNE_BATCH as i64)
    .fetch_all(&mut *conn)
    .await?;
    // Per user: unread notifications gone, and the highest seq gone (a replay after it is
    // incomplete, see `SparseWindow`).
    let mut per_user: HashMap<String, (i64, i64)> = HashMap::new();
    for row in &gone {
        let (unread, last) = per_user.entry(row.try_get(0)?).or_default();
        *unread += i64::from(!row.try_get::<bool, _>(2)?);
        *last = (*last).max(row.try_get(1)?);
    }
    if !per_user.is_empty() {
        let rows = sqlx::query(
            "UPDATE user_state SET unread = unread - (g.value ->> 1), \
                    pruned_seq = max(pruned_seq, g.value ->> 2) \
             FROM json_each(?1) AS g WHERE user_state.user_id = g.value ->> 0 \
             RETURNING user_id, unread",
        )
        .bind(to_json(
            &per_user
                .iter()
                .map(|(u, (n, s))| (u, n, s))
                .collect::<Vec<_>>(),
        )?)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let user: String = row.try_get(0)?;
            // (RETURNING may not name the json_each table.)
            if per_user.get(&user).is_some_and(|(unread, _)| *unread > 0) {
                changes.push(Change::Unread {
                    user,
                    unread: row.try_get(1)?,
                });
            }
        }
    }
    let broadcasts = delete_batch(
        conn,
        "DELETE FROM broadcasts WHERE id IN ( \
             SELECT id FROM broadcasts WHERE created_at < ?1 LIMIT ?2)",
        policy.broadcasts_before,
    )
    .await?;
    let idempotency_keys = delete_batch(
        conn,
        "DELETE FROM idempotency_keys WHERE key IN ( \
             SELECT key FROM idempotency_keys WHERE expires_at < ?1 LIMIT ?2)",
        policy.idempotency_before,
    )
    .await?;
    Ok(PruneReport {
        notifications: gone.len() as u64,
        broadcasts,
        idempotency_keys,
    })
}

/// Runs `sql`, which deletes at most `?2` rows older than `?1`, and returns how many went.
async fn delete_batch(
    conn: &mut SqliteConnection,
    sql: &str,
    before: i64,
) -> Result<u64, StoreError> {
    let deleted = (sqlx::query(sql).bind(before).bind(PRUNE_BATCH as i64))
        .execute(&mut *conn)
        .await?;
    Ok(deleted.rows_affected())
}

/// Replaces a user's preferences; an empty document removes the row.
pub async fn set_preferences(
    conn: &mut SqliteConnection,
    user: &str,
    preferences: &Preferences,
) -> Result<(), StoreError> {
    if preferences.is_empty() {
        sqlx::query("DELETE FROM preferences WHERE user_id = ?1")
            .bind(user)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO preferences (user_id, document, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id) DO UPDATE SET document = excluded.document, \
         updated_at = excluded.updated_at",
    )
    .bind(user)
    .bind(documents::encode(preferences)?)
    .bind(now_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
