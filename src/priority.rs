//! Which of informd's threads give way when the CPU is short.
//!
//! A broadcast to every session keeps the session threads, the hub shards and the fan-out
//! thread busy for as long as it takes to write every frame. A publish that arrives meanwhile
//! needs an HTTP worker, the store's writer and its database connection in turn: a millisecond
//! or two of CPU in all, but under the default scheduling it waits for a core at each step,
//! among the threads that push frames. Those threads run at a lower priority (a higher nice
//! value), so that the threads that answer requests and commit run first whenever both want
//! a core; whenever nothing else is waiting, frames go out as fast as before.
//! The nice value alone still lets a running delivery thread finish its slice before a woken
//! request thread gets the core, so in a burst of writes a delivery thread also yields every
//! few writes ([`give_way`]).
//! Lowering a thread's priority needs no privilege. Only Linux is handled (there the nice
//! value is a per-thread attribute); elsewhere threads keep the default.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The nice value of the threads that deliver frames (sessions, hub shards, fan-out).
/// Each nice step is about 1.25 times less CPU weight, so at 10 a delivery thread gets about a
/// tenth of a core's share against a default thread that wants it.
pub const DELIVERY_NICENESS: i32 = 10;

/// How long a delivery thread counts its socket writes to tell a burst.
const WINDOW: Duration = Duration::from_millis(1);
/// Socket writes in one [`WINDOW`] that make a burst: a broadcast to every session writes
/// tens a millisecond on each thread, and so do batched publishes. Single-event publishes,
/// even at 10,000 a second, stay below it, and their frames are never held back.
const BURST_WRITES: u32 = 16;
/// In a burst, socket writes between two offers of the core.
const WRITES_PER_TURN: u32 = 8;

/// A delivery thread's count of its writes.
#[derive(Clone, Copy)]
struct Pace {
    window_start: Instant,
    writes: u32,
    /// Whether the thread is in a burst: the last full window had [`BURST_WRITES`], or this
    /// one has.
    burst: bool,
}

impl Pace {
    fn new(now: Instant) -> Pace {
        Pace {
            window_start: now,
            writes: 0,
            burst: false,
        }
    }

    /// Counts a write made at `now`; true when the thread should offer its core.
    fn wrote(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) > WINDOW {
            self.burst = self.writes >= BURST_WRITES;
            self.window_start = now;
            self.writes = 0;
        }
        self.writes += 1;
        self.burst |= self.writes >= BURST_WRITES;
        self.burst && self.writes % WRITES_PER_TURN == 0
    }
}

thread_local! {
    static PACE: Cell<Option<Pace>> = const { Cell::new(None) };
}

/// Called by a delivery thread after each socket write. In a burst it yields every
/// [`WRITES_PER_TURN`] writes, so that a thread answering a publish, woken meanwhile, gets a
/// core now rather than after the slice the kernel lets a running thread finish (1.4 ms
/// here), which a publish would meet at each of its several hops. With nothing else waiting,
/// the yield returns at once. DECISIONS 100.
pub fn give_way() {
    let offer = PACE.with(|cell| {
        let now = Instant::now();
        let mut pace = cell.get().unwrap_or(Pace::new(now));
        let offer = pace.wrote(now);
        cell.set(Some(pace));
        offer
    });
    if offer {
        std::thread::yield_now();
    }
}

/// Starts a thread (an actix arbiter) that delivers frames, at [`DELIVERY_NICENESS`]: the
/// priority is lowered before anything else runs on it. Must run inside an actix system.
pub fn delivery_arbiter() -> actix::Arbiter {
    let arbiter = actix::Arbiter::new();
    arbiter.spawn_fn(deliver_at_lower_priority);
    arbiter
}

/// Lowers the calling thread's priority to [`DELIVERY_NICENESS`] (never raises it); a failure
/// is logged and otherwise ignored, as the thread works the same, only with the default
/// priority.
fn deliver_at_lower_priority() {
    if let Err(e) = set_current_thread_niceness(DELIVERY_NICENESS) {
        log::warn!("cannot lower a delivery thread's priority (nice {DELIVERY_NICENESS}): {e}");
    }
}

#[cfg(target_os = "linux")]
fn set_current_thread_niceness(niceness: i32) -> std::io::Result<()> {
    // On Linux the nice value belongs to each thread, and a thread id names one.
    let thread = Some(rustix::thread::gettid());
    // Never raise it: informd started under `nice` keeps what it was given.
    if rustix::process::getpriority_process(thread)? >= niceness {
        return Ok(());
    }
    rustix::process::setpriority_process(thread, niceness).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn set_current_thread_niceness(_niceness: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn current_thread_niceness() -> i32 {
        // A thread may always read its own nice value; a test may panic if it cannot.
        rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            .expect("a thread can read its own priority")
    }

    #[test]
    fn a_delivery_thread_runs_below_the_others() {
        let before = current_thread_niceness();
        let lowered = std::thread::spawn(|| {
            deliver_at_lower_priority();
            current_thread_niceness()
        })
        .join()
        .expect("the thread ran");
        assert_eq!(lowered, DELIVERY_NICENESS.max(before));
        // Only the thread that asked was lowered.
        assert_eq!(current_thread_niceness(), before);
    }

    #[test]
    fn a_thread_gives_way_in_a_burst_of_writes_only() {
        let start = Instant::now();
        let mut pace = Pace::new(start);
        // A targeted publish's pace: a write every 200 µs, 5 a millisecond.
        let slow = (1..=100).filter(|i| pace.wrote(start + Duration::from_micros(200 * i)));
        assert_eq!(
            slow.count(),
            0,
            "a thread writing a few frames never yields"
        );

        // A broadcast's pace: a write every 10 µs, from the same thread later on.
        let later = start + Duration::from_secs(1);
        let mut pace = Pace::new(later);
        let offers: Vec<u32> = (1..=64)
            .filter(|&i| pace.wrote(later + Duration::from_micros(10 * u64::from(i))))
            .collect();
        // Once BURST_WRITES writes fell in one window, every WRITES_PER_TURN-th yields.
        assert_eq!(offers, vec![16, 24, 32, 40, 48, 56, 64]);

        // A burst lasts into the next window, and ends with a quiet one.
        let next = later + Duration::from_millis(2);
        assert!(!pace.wrote(next));
        assert!(
            (2..=WRITES_PER_TURN).any(|i| pace.wrote(next + Duration::from_micros(u64::from(i))))
        );
        let quiet = next + Duration::from_millis(2);
        assert!(!pace.wrote(quiet));
        let after_quiet = quiet + Duration::from_millis(2);
        assert!(!(1..=WRITES_PER_TURN)
            .any(|i| pace.wrote(after_quiet + Duration::from_micros(u64::from(i)))));
    }
}
