//! The publish writer: one task per node takes whatever publishes are queued and commits
//! them as one transaction ([`writes::publish_run`]), as the SQLite writer does. Measured
//! against one pooled transaction per publish (docs/BENCHMARKS.md), it is as fast for single
//! events and twice as fast for batches: a group takes each user's row lock once, where
//! concurrent transactions touching the same users queue behind each other's commits.
//! Mark-read and retention stay pooled transactions; the sequencer orders all of them. A run
//! the database fails is committed again one publish at a time, so that a publish it refuses
//! fails alone.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::open_groups::OpenGroups;
use super::{writes, Shared};
use crate::model::EventInput;
use crate::store::{PublishOutcome, PublishRequest, StoreError};

/// Where a publish's outcome goes.
pub type Reply = oneshot::Sender<Result<PublishOutcome, StoreError>>;

/// Publishes waiting for the writer; more back-pressure the HTTP handlers.
const QUEUE: usize = 4096;
/// Most notifications and broadcasts committed in one group; bounds one commit's latency.
const GROUP_WEIGHT: usize = 5000;

/// Rows a publish writes, roughly.
fn weight(request: &PublishRequest) -> usize {
    request
        .events
        .iter()
        .map(|e| match e {
            EventInput::Notification(n) => n.to.len(),
            EventInput::Broadcast(_) => 1,
        })
        .sum()
}

/// Starts the writer on the current runtime; it ends when every sender is gone.
pub fn start(shared: Arc<Shared>) -> mpsc::Sender<(PublishRequest, Reply)> {
    let (sender, mut queue) = mpsc::channel::<(PublishRequest, Reply)>(QUEUE);
    tokio::spawn(async move {
        let memory = Mutex::new(OpenGroups::default());
        while let Some(first) = queue.recv().await {
            let mut total = weight(&first.0);
            let mut group = vec![first];
            while total < GROUP_WEIGHT {
                match queue.try_recv() {
                    Ok(next) => {
                        total += weight(&next.0);
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            let (requests, replies): (Vec<PublishRequest>, Vec<Reply>) = group.into_iter().unzip();
            let run: Vec<&PublishRequest> = requests.iter().collect();
            match writes::retrying(|| writes::publish_run(&shared, &run, &memory)).await {
                Ok(results) => answer(replies, results),
                Err(e) if run.len() > 1 => {
                    log::warn!(
                        "store: a group of {} publishes failed ({e}); each is committed alone",
                        run.len()
                    );
                    // In queue order, each in a transaction of its own: the publish the
                    // database refused fails alone.
                    for (request, reply) in run.into_iter().zip(replies) {
                        let alone = [request];
                        match writes::retrying(|| writes::publish_run(&shared, &alone, &memory))
                            .await
                        {
                            Ok(results) => answer(vec![reply], results),
                            Err(e) => fail(&e, vec![reply]),
                        }
                    }
                }
                Err(e) => fail(&e, replies),
            }
        }
        log::debug!("store writer stopped");
    });
    sender
}

/// Answers each publish of a committed run.
fn answer(replies: Vec<Reply>, results: Vec<Result<PublishOutcome, StoreError>>) {
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that went away no longer needs the answer.
        let _ = reply.send(result);
    }
}

/// Answers the publishes of a run that did not commit.
fn fail(error: &StoreError, replies: Vec<Reply>) {
    log::error!("store: a publish transaction failed: {error}");
    let message = error.to_string();
    for reply in replies {
        let _ = reply.send(Err(StoreError::GroupFailed(message.clone())));
    }
}
