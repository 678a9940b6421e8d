//! Wall-clock time for the scheduler, injectable so that policies
//! (catch-up after three days of downtime, retries with backoff, jitter,
//! DST nights) are tested by moving a clock, not by waiting.

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where "now" comes from, and how to wait for a later "now".
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves at or after `deadline`. May resolve early (the system
    /// clock wakes at least once a minute so that wall-clock jumps are
    /// noticed); callers re-check `now()`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
pub struct SystemClock;

/// Longest single sleep of the system clock: the wall clock can jump
/// (NTP, suspend, an operator) while tokio's timers follow the monotonic
/// clock.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let left = |deadline: DateTime<Utc>| (deadline - Utc::now()).to_std().unwrap_or_default();
        let wait = left(deadline).min(MAX_SLEEP);
        Box::pin(async move {
            // tokio's timers tick in whole milliseconds and fire up to one
            // late: sleep coarsely to just short of the deadline, then
            // finely on a blocking thread, so a fire is not a tick late.
            if wait > FINE_SLEEP {
                tokio::time::sleep(wait - FINE_SLEEP).await;
            }
            if wait < MAX_SLEEP {
                let rest = left(deadline).min(FINE_SLEEP);
                if !rest.is_zero() {
                    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
                }
            }
        })
    }
}

/// How much of a sleep is left to a precise thread sleep rather than
/// tokio's millisecond timer.
const FINE_SLEEP: Duration = Duration::from_millis(2);

/// A clock that moves only when told to; for tests.
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: watch::channel(start).0,
        })
    }

    /// Moves the clock to `t` (backwards too), waking sleepers that are due.
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: chrono::Duration) {
        let t = *self.now.borrow() + d;
        self.set(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_passes_them() {
        let start = Utc::now();
        let clock = ManualClock::new(start);
        let c = clock.clone();
        let sleeper =
            tokio::spawn(async move { c.sleep_until(start + chrono::Duration::hours(1)).await });
        tokio::task::yield_now().await;
        clock.advance(chrono::Duration::minutes(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(chrono::Duration::minutes(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
    }
}
