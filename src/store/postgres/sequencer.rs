//! Hands committed changes to the listener in commit order, although PostgreSQL commits many
//! transactions of this node at once on pooled connections.
//!
//! A transaction takes a ticket once it holds every row lock it will hold, just before its
//! `COMMIT`. Two transactions touching the same user or topic hold that stream's row lock in
//! turn, so the one with the lower seqs always takes its ticket first. Changes go to the
//! listener in ticket order, each once every earlier ticket is finished (committed, or rolled
//! back and so empty): live delivery on this node stays in `seq` order per stream, with no
//! gap for the sessions to fill from the database. A ticket dropped unfinished (a panic)
//! counts as rolled back, so it can never hold the others up for good.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::{Change, CommitListener};

/// Longest a committed transaction waits for earlier ones before its caller is answered.
const HANDOVER_WAIT: Duration = Duration::from_secs(1);

/// The ordering point between this node's transactions and its listener.
pub struct Sequencer {
    listener: Arc<dyn CommitListener>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The ticket the next transaction gets.
    next_ticket: u64,
    /// The ticket whose changes go to the listener next.
    next_out: u64,
    /// Finished tickets waiting for an earlier one: their changes (none if rolled back).
    waiting: BTreeMap<u64, (Option<Vec<Change>>, oneshot::Sender<()>)>,
}

/// A transaction's place in the commit order.
pub struct Ticket {
    sequencer: Arc<Sequencer>,
    number: u64,
    finished: bool,
}

impl Sequencer {
    pub fn new(listener: Arc<dyn CommitListener>) -> Arc<Sequencer> {
        Arc::new(Sequencer {
            listener,
            state: Mutex::new(State::default()),
        })
    }

    /// A ticket for a transaction that holds all its locks and is about to commit.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let number = state.next_ticket;
        state.next_ticket += 1;
        Ticket {
            sequencer: self.clone(),
            number,
            finished: false,
        }
    }

    /// Records ticket `number` as finished; hands over every change now in order. Returns a
    /// receiver that fires once this ticket's changes were handed over.
    fn finish(&self, number: u64, changes: Option<Vec<Change>>) -> oneshot::Receiver<()> {
        let (done, handed) = oneshot::channel();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.waiting.insert(number, (changes, done));
        loop {
            let next = state.next_out;
            let Some((changes, done)) = state.waiting.remove(&next) else {
                break;
            };
            state.next_out += 1;
            if let Some(changes) = changes.filter(|c| !c.is_empty()) {
                // Non-blocking (the listener queues), so holding the lock here is brief.
                self.listener.committed(changes);
            }
            let _ = done.send(());
        }
        handed
    }
}

impl Ticket {
    /// The transaction committed `changes` (or rolled back, with `None`); returns once they
    /// were handed to the listener, after every earlier ticket's, or after [`HANDOVER_WAIT`]
    /// if an earlier transaction is stuck in its commit (a connection gone silent): the
    /// caller is answered then, and the changes still go out in order once it finishes.
    pub async fn finish(mut self, changes: Option<Vec<Change>>) {
        self.finished = true;
        let handed = self.sequencer.finish(self.number, changes);
        // The sender is only dropped unsent if the process is going down.
        let _ = tokio::time::timeout(HANDOVER_WAIT, handed).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            drop(self.sequencer.finish(self.number, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(Mutex<Vec<i64>>);

    impl CommitListener for Recorder {
        fn committed(&self, changes: Vec<Change>) {
            let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            for change in changes {
                if let Change::Unread { unread, .. } = change {
                    seen.push(unread);
                }
            }
        }
    }

    fn change(n: i64) -> Option<Vec<Change>> {
        Some(vec![Change::Unread {
            user: "1".into(),
            unread: n,
        }])
    }

    #[tokio::test]
    async fn changes_go_out_in_ticket_order_whatever_order_commits_finish_in() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        let sequencer = Sequencer::new(recorder.clone());
        let (first, second, third, fourth) = (
            sequencer.ticket(),
            sequencer.ticket(),
            sequencer.ticket(),
            sequencer.ticket(),
        );
        let third_done = tokio::spawn(third.finish(change(3)));
        let second_done = tokio::spawn(second.finish(None));
        tokio::task::yield_now().await;
        assert!(recorder
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty());
        drop(fourth); // a transaction that panicked
        first.finish(change(1)).await;
        third_done.await.ok();
        second_done.await.ok();
        let after = sequencer.ticket();
        after.finish(change(5)).await;
        let seen = recorder
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(seen, vec![1, 3, 5]);
    }
}
