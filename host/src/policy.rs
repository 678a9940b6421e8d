//! What a job does when things do not go to plan: missed slots after
//! downtime, a run still going when the next is due, failures, thundering
//! herds, and history that would grow forever. Set per job, with defaults
//! under `[defaults]`.
//!
//! The anchors are anacron and systemd's `Persistent=` (catch-up),
//! Kubernetes CronJob's `concurrencyPolicy`, `startingDeadlineSeconds` and
//! history limits (overlap, deadline, retention), and systemd's
//! `RandomizedDelaySec`/`FixedRandomDelay` (jitter).

use serde::Deserialize;
use std::time::Duration;

/// Missed slots (the daemon was down, the machine asleep, the clock
/// jumped): what to run for them once opsd notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run none of them; wait for the next slot (cron).
    Skip,
    /// Run the most recent one, once (anacron, `Persistent=true`).
    Latest,
    /// Run each of them, oldest first (capped at [`MAX_CATCH_UP`]).
    All,
}

words!(CatchUp {
    Skip => "skip",
    Latest => "latest",
    All => "all",
});

/// A slot comes due while the job's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Start another run alongside.
    Allow,
    /// Skip this slot, and record the skip.
    Forbid,
    /// Cancel the running one and start anew.
    Replace,
    /// Start when the running one finishes (at most [`MAX_QUEUE`] waiting).
    Queue,
}

words!(Overlap {
    Allow => "allow",
    Forbid => "forbid",
    Replace => "replace",
    Queue => "queue",
});

/// The most missed slots `catch_up = "all"` runs; older ones are skipped
/// and logged, so a long outage never becomes an endless backlog.
pub const MAX_CATCH_UP: usize = 100;

/// A slot taken later than this after its time counts as missed (and
/// goes to the catch-up policy).
pub const MISSED_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// The most runs `overlap = "queue"` keeps waiting per job.
pub const MAX_QUEUE: usize = 10;

/// A job's policies, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub catch_up: CatchUp,
    /// Missed slots older than this are not run.
    pub catch_up_deadline: Option<Duration>,
    pub overlap: Overlap,
    /// Further attempts after a failed or timed-out run.
    pub retries: u32,
    /// Wait before the first retry; doubles each attempt.
    pub retry_backoff: Duration,
    /// Cap on the wait between attempts.
    pub retry_backoff_max: Duration,
    /// Random delay of each start, up to this much.
    pub jitter: Duration,
    /// Use the same delay every time (derived from the job name).
    pub jitter_fixed: bool,
    /// Runs kept per job.
    pub keep_runs: usize,
    /// Days runs are kept.
    pub keep_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            catch_up: CatchUp::Latest,
            catch_up_deadline: None,
            overlap: Overlap::Forbid,
            retries: 0,
            retry_backoff: Duration::from_secs(60),
            retry_backoff_max: Duration::from_secs(3600),
            jitter: Duration::ZERO,
            jitter_fixed: false,
            keep_runs: 1000,
            keep_days: 90,
        }
    }
}

impl Policy {
    /// How long to wait after failed attempt `attempt` (1-based) before
    /// the next: `retry_backoff * 2^(attempt-1)`, at most
    /// `retry_backoff_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.retry_backoff
            .checked_mul(factor)
            .unwrap_or(self.retry_backoff_max)
            .min(self.retry_backoff_max)
    }

    /// The delay before starting a run of `job`: none without jitter, a
    /// stable per-job offset with `jitter_fixed`, random otherwise.
    pub fn jitter_delay(&self, job: &str) -> Duration {
        let span = self.jitter.as_millis() as u64;
        if span == 0 {
            return Duration::ZERO;
        }
        let ms = if self.jitter_fixed {
            // FNV-1a of the name: stable across restarts and builds.
            let hash = job.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            hash % span
        } else {
            fastrand::u64(0..span)
        };
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Policy {
            retry_backoff: Duration::from_secs(60),
            retry_backoff_max: Duration::from_secs(180),
            ..Policy::default()
        };
        let waits: Vec<u64> = (1..=5).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(waits, [60, 120, 180, 180, 180]);
        assert_eq!(p.backoff(80).as_secs(), 180);
    }

    #[test]
    fn jitter_stays_in_bounds_and_fixed_jitter_is_stable() {
        let p = Policy {
            jitter: Duration::from_secs(30),
            ..Policy::default()
        };
        for _ in 0..1000 {
            assert!(p.jitter_delay("a") < Duration::from_secs(30));
        }
        let fixed = Policy {
            jitter_fixed: true,
            ..p.clone()
        };
        let d = fixed.jitter_delay("nightly-backup");
        assert!(d < Duration::from_secs(30));
        assert_eq!(d, fixed.jitter_delay("nightly-backup"));
        assert_ne!(d, fixed.jitter_delay("weekly-report"));
        assert_eq!(Policy::default().jitter_delay("x"), Duration::ZERO);
    }
}
