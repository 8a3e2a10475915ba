//! The single writer: takes whatever is queued, runs it as one transaction, commits (one
//! fsync for all of it), hands the committed changes to the listener in order, then answers
//! each caller.
//!
//! Consecutive publishes in the queue are merged into one run of set-based statements (see
//! [`super::writes`]), so a group of 16 single-event publishes costs about as many statements
//! as one. Reads-marking and pruning keep their place in the queue order, so "mark all read"
//! never covers a notification queued after it. A group the database fails is committed
//! again one work at a time, so that a write it refuses fails alone.

use std::sync::Arc;
use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use super::batch::Batch;
use super::escalation::{self, EscalationOutput, EscalationWrite};
use super::writes;
use crate::metrics::Metrics;
use crate::preferences::Preferences;
use crate::priority::CommitPriority;
use crate::store::{
    Change, CommitListener, PruneReport, PublishOutcome, PublishRequest, ReadSelector,
    RetentionPolicy, StoreError,
};

/// Most notifications and broadcasts committed in one group; bounds one commit's latency.
const GROUP_WEIGHT: usize = 5000;

/// A unit of work for the writer.
pub enum Work {
    Publish(PublishRequest),
    MarkRead(String, ReadSelector),
    Prune(RetentionPolicy),
    /// A user and their new preferences (an empty document removes the row).
    SetPreferences(String, Preferences),
    /// The offline hook's bookkeeping, in a savepoint of its own.
    Escalation(EscalationWrite),
}

/// Where the result of a [`Work`] goes.
pub enum Reply {
    Publish(oneshot::Sender<Result<PublishOutcome, StoreError>>),
    MarkRead(oneshot::Sender<Result<i64, StoreError>>),
    Prune(oneshot::Sender<Result<PruneReport, StoreError>>),
    SetPreferences(oneshot::Sender<Result<(), StoreError>>),
    Escalation(oneshot::Sender<Result<EscalationOutput, StoreError>>),
}

/// The result of a [`Work`], before it is sent.
pub enum Output {
    Publish(Result<PublishOutcome, StoreError>),
    Unread(i64),
    Prune(PruneReport),
    Done,
    Escalation(Result<EscalationOutput, StoreError>),
}

/// Work and where its answer goes.
pub struct WriteOp {
    pub work: Work,
    pub reply: Reply,
}

impl Work {
    /// How much this adds to a group: rows it will write, roughly.
    fn weight(&self) -> usize {
        match self {
            Work::Publish(request) => request
                .events
                .iter()
                .map(|e| match e {
                    crate::model::EventInput::Notification(n) => n.to.len(),
                    crate::model::EventInput::Broadcast(_) => 1,
                })
                .sum(),
            _ => 1,
        }
    }
}

impl Reply {
    /// Sends `result`. Each [`Work`] produces the [`Output`] of its own kind, so the
    /// mismatched arms only guard against a bug here.
    fn send(self, result: Result<Output, StoreError>) {
        // A caller that went away (client disconnected) no longer needs the answer.
        match (self, result) {
            (Reply::Publish(tx), Ok(Output::Publish(r))) => drop(tx.send(r)),
            (Reply::MarkRead(tx), Ok(Output::Unread(u))) => drop(tx.send(Ok(u))),
            (Reply::Prune(tx), Ok(Output::Prune(p))) => drop(tx.send(Ok(p))),
            (Reply::SetPreferences(tx), Ok(Output::Done)) => drop(tx.send(Ok(()))),
            (Reply::Escalation(tx), Ok(Output::Escalation(r))) => drop(tx.send(r)),
            (Reply::Publish(tx), _) => drop(tx.send(Err(StoreError::Closed))),
            (Reply::MarkRead(tx), _) => drop(tx.send(Err(StoreError::Closed))),
            (Reply::Prune(tx), _) => drop(tx.send(Err(StoreError::Closed))),
            (Reply::SetPreferences(tx), _) => drop(tx.send(Err(StoreError::Closed))),
            (Reply::Escalation(tx), _) => drop(tx.send(Err(StoreError::Closed))),
        }
    }
}

/// Starts the writer on a thread of its own, `informd-writer`, and waits until it has opened
/// and migrated the database.
///
/// A thread of its own so that `commit_priority` can schedule the commit's threads apart from
/// everything else: the connection's thread, which SQLite's driver starts when the connection
/// opens, inherits the class of the thread that opens it, and that is this one.
pub async fn start(
    options: SqliteConnectOptions,
    priority: CommitPriority,
    queue: mpsc::Receiver<WriteOp>,
    listener: Arc<dyn CommitListener>,
    metrics: Arc<Metrics>,
) -> Result<(), StoreError> {
    let (opened, opening) = oneshot::channel();
    std::thread::Builder::new()
        .name("informd-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = opened.send(Err(StoreError::Database(sqlx::Error::Io(e))));
                    return;
                }
            };
            runtime.block_on(async move {
                match open(&options, priority).await {
                    Ok(conn) => {
                        let _ = opened.send(Ok(()));
                        run(conn, queue, listener, metrics).await;
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    // The thread answers once its connection is open and migrated, or could not be; no
    // answer means it died.
    opening.await.unwrap_or(Err(StoreError::Closed))
}

/// On the writer's thread: takes the scheduling `priority` asks for, then opens and migrates
/// the writer's connection.
async fn open(
    options: &SqliteConnectOptions,
    priority: CommitPriority,
) -> Result<SqliteConnection, StoreError> {
    if priority == CommitPriority::Realtime {
        crate::priority::commit_in_realtime().map_err(StoreError::Priority)?;
    }
    let mut conn = SqliteConnection::connect_with(options).await?;
    super::MIGRATOR.run(&mut conn).await?;
    Ok(conn)
}

/// The writer loop; ends when every sender is gone.
async fn run(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<WriteOp>,
    listener: Arc<dyn CommitListener>,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = queue.recv().await {
        let mut weight = first.work.weight();
        let mut ops = vec![first];
        while weight < GROUP_WEIGHT {
            match queue.try_recv() {
                Ok(op) => {
                    weight += op.work.weight();
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        let (works, replies): (Vec<Work>, Vec<Reply>) =
            ops.into_iter().map(|op| (op.work, op.reply)).unzip();
        let mut changes = Vec::new();
        metrics.commit_batch.observe(works.len() as f64);
        let started = Instant::now();
        let committed = commit_group(&mut conn, &works, &mut changes).await;
        metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        match committed {
            Ok(outputs) => answer(listener.as_ref(), changes, replies, outputs),
            Err(e) if works.len() > 1 => {
                log::warn!(
                    "store: a group of {} writes failed ({e}); each is committed alone",
                    works.len()
                );
                // In queue order, each in a transaction of its own: the write the database
                // refused fails alone.
                for (work, reply) in works.iter().zip(replies) {
                    let mut changes = Vec::new();
                    match commit_group(&mut conn, std::slice::from_ref(work), &mut changes).await {
                        Ok(outputs) => answer(listener.as_ref(), changes, vec![reply], outputs),
                        Err(e) => fail(&e, vec![reply]),
                    }
                }
            }
            Err(e) => fail(&e, replies),
        }
    }
    log::debug!("store writer stopped");
}

/// Hands a committed group's changes to the listener, then answers each caller.
fn answer(
    listener: &dyn CommitListener,
    changes: Vec<Change>,
    replies: Vec<Reply>,
    outputs: Vec<Output>,
) {
    if !changes.is_empty() {
        listener.committed(changes);
    }
    for (reply, output) in replies.into_iter().zip(outputs) {
        reply.send(Ok(output));
    }
}

/// Answers the callers of a group that did not commit.
fn fail(error: &StoreError, replies: Vec<Reply>) {
    log::error!("store: a write transaction failed: {error}");
    for reply in replies {
        reply.send(Err(StoreError::Closed));
    }
}

/// Runs the works in one transaction, in queue order, merging consecutive publishes.
/// Any database error rolls the whole group back (and [`run`] then commits each alone).
///
/// The transaction is opened and closed here with plain statements, not sqlx's
/// `Transaction`, so that `BEGIN` travels with the group's first query and `COMMIT` with its
/// last writes (see [`Batch`]): a group of publishes costs two round trips to SQLite's
/// thread, where it cost one per statement.
async fn commit_group(
    conn: &mut SqliteConnection,
    works: &[Work],
    changes: &mut Vec<Change>,
) -> Result<Vec<Output>, StoreError> {
    let mut pending = Batch::default();
    pending.add("BEGIN", []);
    let outputs = match run_group(conn, &mut pending, works, changes).await {
        Ok(outputs) => outputs,
        Err(e) => {
            roll_back(conn).await;
            return Err(e);
        }
    };
    pending.add("COMMIT", []);
    if let Err(e) = pending.flush(conn).await {
        // A failed `COMMIT` (the database busy, say) leaves the transaction open.
        roll_back(conn).await;
        return Err(e.into());
    }
    Ok(outputs)
}

/// Undoes the group's transaction, if it was opened.
async fn roll_back(conn: &mut SqliteConnection) {
    if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
        // Also what SQLite answers when the error came before `BEGIN` was sent.
        log::debug!("store: rollback: {e}");
    }
}

/// The works of [`commit_group`], inside its transaction; what they write last is left in
/// `pending`, to be sent with the `COMMIT`.
async fn run_group(
    conn: &mut SqliteConnection,
    pending: &mut Batch,
    works: &[Work],
    changes: &mut Vec<Change>,
) -> Result<Vec<Output>, StoreError> {
    let mut outputs = Vec::with_capacity(works.len());
    let mut index = 0;
    while index < works.len() {
        if !matches!(works[index], Work::Publish(_)) {
            // The other works run their statements one by one, after what is pending.
            pending.flush(conn).await?;
        }
        match &works[index] {
            Work::Publish(_) => {
                // This publish and every publish queued right after it: one run.
                let run: Vec<&PublishRequest> = works[index..]
                    .iter()
                    .map_while(|w| match w {
                        Work::Publish(request) => Some(request),
                        _ => None,
                    })
                    .collect();
                index += run.len();
                let results = writes::publish_run(conn, pending, &run, changes).await?;
                outputs.extend(results.into_iter().map(Output::Publish));
            }
            Work::MarkRead(user, selector) => {
                index += 1;
                let unread = writes::mark_read(conn, user, selector, changes).await?;
                outputs.push(Output::Unread(unread));
            }
            Work::Prune(policy) => {
                index += 1;
                let report = writes::prune(conn, *policy, changes).await?;
                outputs.push(Output::Prune(report));
            }
            Work::SetPreferences(user, preferences) => {
                index += 1;
                writes::set_preferences(conn, user, preferences).await?;
                outputs.push(Output::Done);
            }
            Work::Escalation(write) => {
                index += 1;
                // A savepoint: its failure is its caller's alone, not the group's.
                sqlx::query("SAVEPOINT escalation")
                    .execute(&mut *conn)
                    .await?;
                let result = escalation::write(conn, write).await;
                if result.is_err() {
                    pending.add("ROLLBACK TO escalation", []);
                }
                pending.add("RELEASE escalation", []);
                outputs.push(Output::Escalation(result));
            }
        }
    }
    Ok(outputs)
}
