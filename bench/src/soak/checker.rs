//! The verdict: reads the daemon's SQLite file directly (read-only, after a clean stop) and
//! compares it with the publishers' ledger and with what every client received.
//!
//! - every acknowledged publish is stored, once per recipient, under the ids it was answered
//!   with, and no publish (acknowledged or not) is stored twice;
//! - every user's and topic's seqs run 1, 2, … with no gap, up to the stream's `last_seq`;
//! - every badge (`user_state.unread`) equals the user's unread rows;
//! - every client got every seq of its user, of `global` and of its topic, once, and its last
//!   badge is the stored one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

use super::clients::{ClientLog, StreamLog};
use super::publishers::{Ack, Target};

/// What the database holds, per stream.
#[derive(Debug, Default)]
pub struct Stored {
    /// Seqs per user, ascending.
    pub user_seqs: HashMap<String, Vec<i64>>,
    /// `user_state`: (last_seq, unread) per user.
    pub user_state: HashMap<String, (i64, i64)>,
    /// Unread rows per user.
    pub unread_rows: HashMap<String, i64>,
    /// Seqs per topic, ascending.
    pub topic_seqs: HashMap<String, Vec<i64>>,
    /// `topic_state.last_seq` per topic.
    pub topic_state: HashMap<String, i64>,
    /// (marker, user) → ids of the notification rows carrying it.
    pub notification_marks: HashMap<(String, String), Vec<i64>>,
    /// (marker, topic) → ids of the broadcast rows carrying it.
    pub broadcast_marks: HashMap<(String, String), Vec<i64>>,
    pub notifications: u64,
    pub broadcasts: u64,
}

/// Reads the whole database.
pub async fn read(database: &Path) -> anyhow::Result<Stored> {
    let mut conn: SqliteConnection = SqliteConnectOptions::new()
        .filename(database)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("opening {}", database.display()))?;
    let mut stored = Stored::default();
    let rows = sqlx::query(
        "SELECT id, user_id, seq, read, json_extract(data, '$.soak') AS mark \
         FROM notifications ORDER BY user_id, seq",
    )
    .fetch_all(&mut conn)
    .await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let user: String = row.try_get("user_id")?;
        let seq: i64 = row.try_get("seq")?;
        let read: i64 = row.try_get("read")?;
        let mark: Option<String> = row.try_get("mark")?;
        stored.notifications += 1;
        stored.user_seqs.entry(user.clone()).or_default().push(seq);
        if read == 0 {
            *stored.unread_rows.entry(user.clone()).or_default() += 1;
        }
        stored
            .notification_marks
            .entry((mark.unwrap_or_default(), user))
            .or_default()
            .push(id);
    }
    for row in sqlx::query("SELECT user_id, last_seq, unread FROM user_state")
        .fetch_all(&mut conn)
        .await?
    {
        stored.user_state.insert(
            row.try_get("user_id")?,
            (row.try_get("last_seq")?, row.try_get("unread")?),
        );
    }
    let rows = sqlx::query(
        "SELECT id, topic, seq, json_extract(data, '$.soak') AS mark \
         FROM broadcasts ORDER BY topic, seq",
    )
    .fetch_all(&mut conn)
    .await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let topic: String = row.try_get("topic")?;
        let seq: i64 = row.try_get("seq")?;
        let mark: Option<String> = row.try_get("mark")?;
        stored.broadcasts += 1;
        stored
            .topic_seqs
            .entry(topic.clone())
            .or_default()
            .push(seq);
        stored
            .broadcast_marks
            .entry((mark.unwrap_or_default(), topic))
            .or_default()
            .push(id);
    }
    for row in sqlx::query("SELECT topic, last_seq FROM topic_state")
        .fetch_all(&mut conn)
        .await?
    {
        stored
            .topic_state
            .insert(row.try_get("topic")?, row.try_get("last_seq")?);
    }
    conn.close().await.ok();
    Ok(stored)
}

/// Everything that went wrong, counted, with the first few examples.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Acknowledged publishes missing (or stored under other ids) in the database.
    pub lost: u64,
    /// Publishes stored more than once for one recipient.
    pub doubled_stored: u64,
    /// Streams whose seqs are not 1..=last_seq.
    pub gaps: u64,
    /// Users whose badge is not their count of unread rows.
    pub badge_mismatches: u64,
    /// Stored events a client never got.
    pub client_missed: u64,
    /// Events a client got twice when it should not have (see [`StreamLog::doubled`]).
    pub client_doubled: u64,
    /// Seqs a client got that the database does not hold.
    pub client_phantom: u64,
    /// User-stream or topic frames out of order within a session.
    pub client_out_of_order: u64,
    /// Clients whose last badge differs from the stored one.
    pub client_badge_stale: u64,
    /// `error` frames clients received.
    pub client_errors: u64,
    pub examples: Vec<String>,
}

impl Verdict {
    fn fail(&mut self, example: String) {
        if self.examples.len() < 20 {
            self.examples.push(example);
        }
    }

    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.doubled_stored == 0
            && self.gaps == 0
            && self.badge_mismatches == 0
            && self.client_missed == 0
            && self.client_doubled == 0
            && self.client_phantom == 0
            && self.client_out_of_order == 0
            && self.client_badge_stale == 0
            && self.client_errors == 0
    }

    pub fn to_json(&self) -> Value {
        json!({
            "lost": self.lost,
            "doubled_stored": self.doubled_stored,
            "gaps": self.gaps,
            "badge_mismatches": self.badge_mismatches,
            "client_missed": self.client_missed,
            "client_doubled": self.client_doubled,
            "client_phantom": self.client_phantom,
            "client_out_of_order": self.client_out_of_order,
            "client_badge_stale": self.client_badge_stale,
            "client_errors": self.client_errors,
        })
    }
}

/// Compares the ledger and the clients' logs with what is stored.
pub fn check(stored: &Stored, acks: &[Ack], clients: &[ClientLog]) -> Verdict {
    let mut verdict = Verdict::default();
    check_ledger(stored, acks, &mut verdict);
    check_streams(stored, &mut verdict);
    for client in clients {
        check_client(stored, client, &mut verdict);
    }
    verdict
}

fn check_ledger(stored: &Stored, acks: &[Ack], verdict: &mut Verdict) {
    for ack in acks {
        let (places, marks) = match &ack.target {
            Target::Users(users) => (users.clone(), &stored.notification_marks),
            Target::Topic(topic) => (vec![topic.clone()], &stored.broadcast_marks),
        };
        let mut ids = Vec::new();
        for place in places {
            match marks.get(&(ack.key.clone(), place.clone())) {
                Some(found) => ids.extend_from_slice(found),
                None => {
                    verdict.lost += 1;
                    verdict.fail(format!(
                        "acknowledged publish {} to {place} is not stored",
                        ack.key
                    ));
                }
            }
        }
        ids.sort_unstable();
        let mut answered = ack.ids.clone();
        answered.sort_unstable();
        if !ids.is_empty() && ids != answered {
            verdict.lost += 1;
            verdict.fail(format!(
                "publish {} was answered with ids {answered:?} but stored as {ids:?}",
                ack.key
            ));
        }
    }
    let marks = stored
        .notification_marks
        .iter()
        .chain(stored.broadcast_marks.iter());
    for ((mark, place), ids) in marks {
        if ids.len() > 1 {
            verdict.doubled_stored += ids.len() as u64 - 1;
            verdict.fail(format!(
                "publish {mark} stored {} times for {place}",
                ids.len()
            ));
        }
    }
}

/// Whether `seqs` (ascending) are exactly 1..=last.
fn gapless(seqs: &[i64], last: i64) -> bool {
    seqs.len() as i64 == last && seqs.iter().enumerate().all(|(i, s)| *s == i as i64 + 1)
}

fn check_streams(stored: &Stored, verdict: &mut Verdict) {
    for (user, (last, unread)) in &stored.user_state {
        let seqs = stored.user_seqs.get(user).map(Vec::as_slice).unwrap_or(&[]);
        if !gapless(seqs, *last) {
            verdict.gaps += 1;
            verdict.fail(format!("user {user}: seqs are not 1..={last}"));
        }
        let rows = stored.unread_rows.get(user).copied().unwrap_or(0);
        if rows != *unread {
            verdict.badge_mismatches += 1;
            verdict.fail(format!("user {user}: badge {unread}, unread rows {rows}"));
        }
    }
    for user in stored.user_seqs.keys() {
        if !stored.user_state.contains_key(user) {
            verdict.gaps += 1;
            verdict.fail(format!("user {user} has notifications but no user_state"));
        }
    }
    for (topic, last) in &stored.topic_state {
        let seqs = stored
            .topic_seqs
            .get(topic)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if !gapless(seqs, *last) {
            verdict.gaps += 1;
            verdict.fail(format!("topic {topic}: seqs are not 1..={last}"));
        }
    }
}

fn check_client(stored: &Stored, client: &ClientLog, verdict: &mut Verdict) {
    let who = client.user.clone().unwrap_or_else(|| "anonymous".into());
    if let Some(user) = &client.user {
        let want = stored.user_seqs.get(user).map(Vec::as_slice).unwrap_or(&[]);
        compare(&who, "user", want, &client.notifications, verdict);
        let badge = stored.user_state.get(user).map(|s| s.1).unwrap_or(0);
        if client.badge != Some(badge) {
            verdict.client_badge_stale += 1;
            verdict.fail(format!(
                "{who}: last badge {:?}, stored {badge}",
                client.badge
            ));
        }
    }
    let global = stored
        .topic_seqs
        .get("global")
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    compare(&who, "global", global, &client.global, verdict);
    if let Some(topic) = &client.topic {
        let want = stored
            .topic_seqs
            .get(topic)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        compare(&who, topic, want, &client.topic_log, verdict);
    }
    verdict.client_errors += client.errors.len() as u64;
    for error in client.errors.iter().take(2) {
        verdict.fail(format!("{who}: {error}"));
    }
}

/// One stream of one client against the stored seqs.
fn compare(who: &str, stream: &str, want: &[i64], log: &StreamLog, verdict: &mut Verdict) {
    let seen: BTreeMap<i64, u32> = log.seen.iter().map(|(k, v)| (*k, *v)).collect();
    let missed: Vec<i64> = want
        .iter()
        .filter(|s| !seen.contains_key(s))
        .copied()
        .collect();
    let phantom: Vec<i64> = seen
        .keys()
        .filter(|s| want.binary_search(s).is_err())
        .copied()
        .collect();
    if !missed.is_empty() {
        verdict.client_missed += missed.len() as u64;
        verdict.fail(format!("{who} {stream}: never got {}", preview(&missed)));
    }
    if !phantom.is_empty() {
        verdict.client_phantom += phantom.len() as u64;
        verdict.fail(format!(
            "{who} {stream}: got unstored {}",
            preview(&phantom)
        ));
    }
    if !log.doubled.is_empty() {
        verdict.client_doubled += log.doubled.len() as u64;
        verdict.fail(format!(
            "{who} {stream}: got twice {}",
            preview(&log.doubled)
        ));
    }
    if !log.out_of_order.is_empty() {
        verdict.client_out_of_order += log.out_of_order.len() as u64;
        verdict.fail(format!(
            "{who} {stream}: out of order (after, got) {:?}",
            &log.out_of_order[..log.out_of_order.len().min(5)]
        ));
    }
}

fn preview(seqs: &[i64]) -> String {
    let shown: Vec<String> = seqs.iter().take(8).map(i64::to_string).collect();
    let more = if seqs.len() > 8 {
        format!(" and {} more", seqs.len() - 8)
    } else {
        String::new()
    };
    format!("[{}]{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gapless_means_exactly_one_to_last() {
        assert!(gapless(&[], 0));
        assert!(gapless(&[1, 2, 3], 3));
        assert!(!gapless(&[1, 3], 3));
        assert!(!gapless(&[1, 2], 3));
        assert!(!gapless(&[2, 3], 2));
    }

    #[test]
    fn an_acknowledged_publish_missing_or_stored_twice_fails() {
        let mut stored = Stored::default();
        stored
            .notification_marks
            .insert(("p0-1".into(), "soak-0".into()), vec![7, 8]);
        let acks = [
            Ack {
                key: "p0-1".into(),
                target: Target::Users(vec!["soak-0".into()]),
                ids: vec![7],
                duplicate: false,
            },
            Ack {
                key: "p0-2".into(),
                target: Target::Topic("global".into()),
                ids: vec![9],
                duplicate: false,
            },
        ];
        let verdict = check(&stored, &acks, &[]);
        assert_eq!((verdict.lost, verdict.doubled_stored), (2, 1));
        assert!(!verdict.clean());
    }
}
