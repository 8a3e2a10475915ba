//! A session's outbound queue: flume's bounded queue, with one waker slot for the session in
//! place of flume's own async receive.
//!
//! flume's `recv_async` puts a freshly allocated hook in the channel's list of waiting
//! receivers for every wait, and takes it out again, under the channel's lock, when the wait
//! ends. A session waits between every two frames of a fan-out, so that was an allocation and
//! two more trips through the lock per frame: with the send, about a tenth of a node's CPU in
//! `perf` during a broadcast (DECISIONS 113). A waker registered in place costs a couple of
//! atomic operations. flume still holds the frames: its buffer is allocated as frames arrive,
//! so an idle session's queue stays a few dozen bytes.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use flume::{TryRecvError, TrySendError};
use futures_util::task::AtomicWaker;

use super::Outbound;

/// A queue holding at most `capacity` frames.
pub fn bounded(capacity: usize) -> (QueueSender, QueueReceiver) {
    let (tx, rx) = flume::bounded(capacity);
    let waker = Arc::new(AtomicWaker::new());
    (
        QueueSender {
            tx: Some(tx),
            waker: waker.clone(),
        },
        QueueReceiver { rx, waker },
    )
}

/// The hub's end. Dropping the last one ends the session's queue, and wakes the session so
/// that it sees the end (a kick).
#[derive(Debug, Clone)]
pub struct QueueSender {
    /// Always `Some` until dropped: taken in `drop` so the channel is closed before the wake.
    tx: Option<flume::Sender<Outbound>>,
    waker: Arc<AtomicWaker>,
}

impl QueueSender {
    /// Queues `item` without waiting, and wakes the session if it waits.
    pub fn try_send(&self, item: Outbound) -> Result<(), TrySendError<Outbound>> {
        match &self.tx {
            Some(tx) => tx.try_send(item)?,
            None => return Err(TrySendError::Disconnected(item)),
        }
        self.waker.wake();
        Ok(())
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        // Closed first: woken before that, the session could find the queue empty but open,
        // and wait for a frame that never comes.
        drop(self.tx.take());
        self.waker.wake();
    }
}

/// The session's end.
#[derive(Debug)]
pub struct QueueReceiver {
    rx: flume::Receiver<Outbound>,
    waker: Arc<AtomicWaker>,
}

impl QueueReceiver {
    /// The next frame if one is queued.
    pub fn try_recv(&self) -> Result<Outbound, TryRecvError> {
        self.rx.try_recv()
    }

    /// Waits for the next frame; `None` once the hub has dropped the queue and it is empty.
    pub async fn recv(&self) -> Option<Outbound> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Outbound>> {
        // Registered before looking, so a frame queued after the look wakes this task.
        self.waker.register(cx.waker());
        match self.rx.try_recv() {
            Ok(item) => Poll::Ready(Some(item)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_session_is_woken_by_a_frame_and_then_by_the_end() {
        let (tx, rx) = bounded(4);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            let then = rx.recv().await;
            (first.is_some(), then.is_none())
        });
        // The session is waiting on an empty queue when the frame comes, and again when the
        // hub drops its end.
        tokio::task::yield_now().await;
        assert!(tx.try_send(Outbound::Resync).is_ok());
        tokio::task::yield_now().await;
        drop(tx);
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(waited, Ok(Ok((true, true)))), "{waited:?}");
    }

    #[test]
    fn a_full_queue_refuses_and_a_dropped_session_disconnects() {
        let (tx, rx) = bounded(1);
        assert!(tx.try_send(Outbound::Resync).is_ok());
        assert!(matches!(
            tx.try_send(Outbound::Resync),
            Err(TrySendError::Full(_))
        ));
        drop(rx);
        assert!(matches!(
            tx.try_send(Outbound::Resync),
            Err(TrySendError::Disconnected(_))
        ));
    }
}
