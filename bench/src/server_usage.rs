//! What a process uses, read from /proc (Linux): the server's memory for `idle` and CPU time
//! for `fanout` (given its `--pid`), and the generator's own CPU time beside it. The server's
//! own figures, so a change to informd shows in them even when the generator shares the
//! machine and its load moves the latencies; the generator's, because on one box the two
//! share the cores, and because both slow down together when the machine does.

use std::time::Duration;

/// Clock ticks per second in /proc/<pid>/stat: Linux's `USER_HZ`, which is 100 on every
/// architecture these benchmarks run on (it is part of the kernel's user-space ABI).
const USER_HZ: f64 = 100.0;

/// Reads the resident set size of a process, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time a process has used so far, in user space and in the kernel.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    /// Reads it from /proc/<pid>/stat; `None` when the process is gone or the file unreadable.
    pub fn of(pid: u32) -> Option<CpuTime> {
        CpuTime::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// The times in a /proc/<pid>/stat line.
    fn parse(stat: &str) -> Option<CpuTime> {
        // The command name (field 2) may hold spaces and parentheses; the fields after its
        // last `)` are plain numbers. utime and stime are fields 14 and 15, the 12th and 13th
        // after the name.
        let mut fields = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .skip(11);
        let mut ticks = || -> Option<Duration> {
            let ticks: u64 = fields.next()?.parse().ok()?;
            Some(Duration::from_secs_f64(ticks as f64 / USER_HZ))
        };
        Some(CpuTime {
            user: ticks()?,
            system: ticks()?,
        })
    }

    /// What was used between `earlier` and this reading.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// What process `pid` has used since `earlier` was read; `None` when a reading is missing.
    pub fn used_since(pid: u32, earlier: Option<CpuTime>) -> Option<CpuTime> {
        Some(CpuTime::of(pid)?.since(earlier?))
    }

    /// Microseconds of `time` per delivery.
    fn per_delivery_us(time: Duration, deliveries: u64) -> f64 {
        time.as_secs_f64() * 1e6 / deliveries.max(1) as f64
    }

    /// The times, and the time per delivery, as the bench prints them.
    pub fn line(self, deliveries: u64) -> String {
        format!(
            "{:.2} s user, {:.2} s system; {:.2} µs per delivery ({:.2} µs user)",
            self.user.as_secs_f64(),
            self.system.as_secs_f64(),
            Self::per_delivery_us(self.user + self.system, deliveries),
            Self::per_delivery_us(self.user, deliveries)
        )
    }

    /// The same, for the JSON summary.
    pub fn to_json(self, deliveries: u64) -> serde_json::Value {
        serde_json::json!({
            "user_seconds": self.user.as_secs_f64(),
            "system_seconds": self.system.as_secs_f64(),
            "us_per_delivery": Self::per_delivery_us(self.user + self.system, deliveries),
            "user_us_per_delivery": Self::per_delivery_us(self.user, deliveries),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (informd (x) y) S 1 4242 4242 0 -1 4194560 9 0 0 0 250 37 0 0 20 0";
        let cpu = CpuTime::parse(stat).expect("a well-formed line");
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(370));
        assert!(CpuTime::parse("4242 (informd) S 1 2").is_none());
    }

    #[test]
    fn spreads_the_time_over_the_deliveries() {
        let cpu = CpuTime {
            user: Duration::from_millis(300),
            system: Duration::from_millis(900),
        };
        assert_eq!(
            cpu.line(100_000),
            "0.30 s user, 0.90 s system; 12.00 µs per delivery (3.00 µs user)"
        );
        assert_eq!(cpu.to_json(100_000)["us_per_delivery"], 12.0);
        assert_eq!(cpu.to_json(100_000)["user_us_per_delivery"], 3.0);
    }

    #[test]
    fn reads_this_process() {
        assert!(CpuTime::of(std::process::id()).is_some());
        assert!(rss_bytes(std::process::id()).is_some_and(|bytes| bytes > 0));
    }
}
