//! A session's one timer: its next heartbeat or its token's expiry, whichever comes first.
//!
//! One timer rather than two (an interval for the heartbeat and a sleep for the expiry): each
//! timer is an allocation kept for the session's whole life, about 75 bytes of an idle
//! session's 4.6 KiB (docs/DECISIONS.md, entry 117).

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// What came due.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Time to ping the client (and to check it has answered).
    Heartbeat,
    /// The token ran out.
    Expired,
}

/// The next heartbeat and the token's expiry, on one timer.
pub struct Deadlines {
    every: Duration,
    next_heartbeat: Instant,
    /// `None`: an anonymous session, whose token never runs out.
    expires: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl Deadlines {
    /// The first heartbeat one `every` from now.
    pub fn new(every: Duration, expires: Option<Instant>) -> Deadlines {
        let next_heartbeat = Instant::now() + every;
        Deadlines {
            every,
            next_heartbeat,
            expires,
            timer: Box::pin(sleep_until(earlier(next_heartbeat, expires))),
        }
    }

    /// Waits for the earlier deadline. A heartbeat schedules the next one an `every` after
    /// now, so a loop that was held up pings once afterwards, not once per period missed.
    ///
    /// Cancel-safe: dropped before the timer fires, it changes nothing.
    pub async fn due(&mut self) -> Due {
        self.timer.as_mut().await;
        let now = Instant::now();
        if self.expires.is_some_and(|expires| now >= expires) {
            return Due::Expired;
        }
        self.next_heartbeat = now + self.every;
        self.rearm();
        Due::Heartbeat
    }

    /// A refreshed token's expiry.
    pub fn expire_at(&mut self, expires: Option<Instant>) {
        self.expires = expires;
        self.rearm();
    }

    fn rearm(&mut self) {
        let at = earlier(self.next_heartbeat, self.expires);
        self.timer.as_mut().reset(at);
    }
}

/// When the timer must fire: the heartbeat, or the expiry if there is one and it is sooner.
fn earlier(heartbeat: Instant, expires: Option<Instant>) -> Instant {
    expires.map_or(heartbeat, |expires| expires.min(heartbeat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn heartbeats_come_every_period_until_the_token_expires() {
        let start = Instant::now();
        let every = Duration::from_secs(25);
        let mut deadlines = Deadlines::new(every, Some(start + Duration::from_secs(60)));
        assert_eq!(deadlines.due().await, Due::Heartbeat);
        assert_eq!(start.elapsed(), every);
        assert_eq!(deadlines.due().await, Due::Heartbeat);
        assert_eq!(start.elapsed(), every * 2);
        assert_eq!(deadlines.due().await, Due::Expired);
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refreshed_expiry_moves_the_timer_both_ways() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(Duration::from_secs(25), None);
        deadlines.expire_at(Some(start + Duration::from_secs(10)));
        assert_eq!(deadlines.due().await, Due::Expired);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        deadlines.expire_at(Some(start + Duration::from_secs(100)));
        assert_eq!(deadlines.due().await, Due::Heartbeat);
        assert_eq!(start.elapsed(), Duration::from_secs(25));
        // Anonymous (or a token without end): heartbeats only.
        deadlines.expire_at(None);
        assert_eq!(deadlines.due().await, Due::Heartbeat);
        assert_eq!(start.elapsed(), Duration::from_secs(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_held_up_pings_once_afterwards() {
        let start = Instant::now();
        let every = Duration::from_secs(25);
        let mut deadlines = Deadlines::new(every, None);
        tokio::time::sleep(Duration::from_secs(80)).await;
        assert_eq!(deadlines.due().await, Due::Heartbeat);
        assert_eq!(start.elapsed(), Duration::from_secs(80));
        assert_eq!(deadlines.due().await, Due::Heartbeat);
        assert_eq!(start.elapsed(), Duration::from_secs(105));
    }
}
