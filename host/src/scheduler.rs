//! The loop that fires due jobs.
//!
//! Each enabled job has one pending slot, computed from its schedule in its
//! time zone. The loop sleeps until the earliest slot (never more than a
//! minute, so a wall-clock jump is noticed), fires every job whose slot
//! has come, and moves that job to the slot after the one it fired, never
//! to "the next one after now": a late wake-up fires the slot it woke for
//! instead of skipping it. Fired slots are recorded in the store, so a
//! restart never fires the same slot twice.

use crate::ops::{Ops, OpsError};
use crate::record::Trigger;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Longest sleep between checks of the wall clock.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Fires jobs until `shutdown` resolves, then waits up to `grace` for
/// runs in progress; runs still going after that are abandoned and
/// recorded as interrupted.
pub async fn run(
    ops: Arc<Ops>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut runs = JoinSet::new();
    let now = Utc::now();
    let mut pending: HashMap<String, Option<DateTime<Utc>>> = HashMap::new();
    for job in &ops.config.jobs {
        let state = ops.store.job_state(&job.name)?.unwrap_or_default();
        if job.schedule.is_reboot() && ops.is_enabled(job, &state) {
            fire(&ops, &mut runs, &job.name, now);
        }
        let next = ops.next_fire(job, &state, now);
        ops.store.update_job_state(&job.name, |s| {
            s.next_fire = next;
            s.definition = Some(job.definition_hash());
        })?;
        pending.insert(job.name.clone(), next);
    }
    tracing::info!(jobs = ops.config.jobs.len(), "scheduler started");

    loop {
        let now = Utc::now();
        let mut wake = now + chrono::Duration::from_std(MAX_SLEEP)?;
        for job in &ops.config.jobs {
            let state = ops.store.job_state(&job.name)?.unwrap_or_default();
            let slot = pending.entry(job.name.clone()).or_insert(None);
            if !ops.is_enabled(job, &state) {
                *slot = None;
                continue;
            }
            if slot.is_none() {
                *slot = ops.next_fire(job, &state, now);
            }
            let Some(due) = *slot else { continue };
            if due <= now {
                fire(&ops, &mut runs, &job.name, due);
                let next = job.schedule.next_after(due, job.timezone);
                ops.store.update_job_state(&job.name, |s| {
                    s.last_fire = Some(due);
                    s.next_fire = next;
                })?;
                *slot = next;
            }
            if let Some(n) = *slot {
                wake = wake.min(n);
            }
        }
        while runs.try_join_next().is_some() {}
        let sleep = (wake - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = &mut shutdown => break,
        }
    }

    while runs.try_join_next().is_some() {}
    tracing::info!(running = runs.len(), grace = ?grace, "scheduler stopping; waiting for runs in progress");
    let drained =
        tokio::time::timeout(grace, async { while runs.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            running = runs.len(),
            "runs still going after the grace period; interrupting them"
        );
        runs.shutdown().await;
        for rec in ops.store.recover_interrupted(Utc::now())? {
            tracing::warn!(job = %rec.job, run = %rec.id, "run interrupted by shutdown");
        }
    }
    Ok(())
}

fn fire(ops: &Arc<Ops>, runs: &mut JoinSet<()>, job: &str, slot: DateTime<Utc>) {
    let ops = ops.clone();
    let job = job.to_owned();
    runs.spawn(async move {
        match ops.run_job(&job, Trigger::Schedule, slot, false).await {
            Ok(_) => {}
            Err(OpsError::AlreadyRunning { run, .. }) => {
                tracing::warn!(job = %job, running = %run, slot = %slot, "slot skipped: the previous run is still going");
            }
            Err(e) => tracing::error!(job = %job, error = %e, "could not run job"),
        }
    });
}
