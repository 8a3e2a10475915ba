//! Which of informd's threads give way when the CPU is short.
//!
//! A broadcast to every session keeps the session threads, the hub shards and the fan-out
//! thread busy for as long as it takes to write every frame. A publish that arrives meanwhile
//! needs an HTTP worker, the store's writer and its database connection in turn: a millisecond
//! or two of CPU in all, but under the default scheduling it waits for a core at each step,
//! among the threads that push frames. Those threads run at a lower priority (a higher nice
//! value), so that the threads that answer requests and commit run first whenever both want
//! a core; whenever nothing else is waiting, frames go out as fast as before.
//! Lowering a thread's priority needs no privilege. Only Linux is handled (there the nice
//! value is a per-thread attribute); elsewhere threads keep the default.
//!
//! A lower priority does not make a woken thread run at once: Linux lets the running thread
//! finish its time slice first, and a publish wakes threads several times. Where that wait
//! matters, `commit_priority = "realtime"` moves the store's writer into the realtime class,
//! which takes a core as soon as it wakes ([`commit_in_realtime`]; docs/DECISIONS.md).

/// The nice value of the threads that deliver frames (sessions, hub shards, fan-out).
/// Each nice step is about 1.25 times less CPU weight, so at 10 a delivery thread gets about a
/// tenth of a core's share against a default thread that wants it.
pub const DELIVERY_NICENESS: i32 = 10;

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

/// How the threads that commit publishes are scheduled (`commit_priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPriority {
    /// The default class, like informd's other request threads.
    Normal,
    /// Linux's `SCHED_FIFO` at its lowest priority: the commit's threads take a core as soon
    /// as they wake, instead of waiting for the running delivery thread's time slice to end.
    Realtime,
}

/// Moves the calling thread into [`CommitPriority::Realtime`]. Threads it starts afterwards
/// (SQLite's connection thread) inherit the class.
///
/// It needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of at least 1; the error says which setting
/// asked for it and what to grant.
pub fn commit_in_realtime() -> Result<(), String> {
    realtime_fifo().map_err(|e| {
        format!(
            "commit_priority = \"realtime\" could not move the store's writer into the realtime \
             class ({e}): run informd with CAP_SYS_NICE (root, or AmbientCapabilities=CAP_SYS_NICE) \
             or an RLIMIT_RTPRIO of at least 1 (`ulimit -r 1`, LimitRTPRIO=1), or set \
             commit_priority (INFORMD_COMMIT_PRIORITY) to \"normal\""
        )
    })
}

#[cfg(target_os = "linux")]
fn realtime_fifo() -> std::io::Result<()> {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        // The lowest realtime priority: above every ordinary thread, below the kernel's own.
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| match e {
        thread_priority::Error::OS(code) => std::io::Error::from_raw_os_error(code),
        other => std::io::Error::other(other.to_string()),
    })
}

#[cfg(not(target_os = "linux"))]
fn realtime_fifo() -> std::io::Result<()> {
    Err(std::io::Error::other("only supported on Linux"))
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
        // Only a panic in the thread above fails the join, and the test should fail then.
        .expect("the thread ran");
        assert_eq!(lowered, DELIVERY_NICENESS.max(before));
        // Only the thread that asked was lowered.
        assert_eq!(current_thread_niceness(), before);
    }
}
