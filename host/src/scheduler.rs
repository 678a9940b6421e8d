//! The loop that fires due jobs.
//!
//! Each enabled job has one pending slot, computed from its schedule in its
//! time zone. The loop sleeps until the earliest slot (the clock wakes it
//! at least once a minute, so a wall-clock jump is noticed), takes every
//! slot that has come, and moves the job to the slot after the last one
//! taken, never to "the next one after now": a late wake-up still sees the
//! slots it slept through.
//!
//! A slot taken within [`MISSED_AFTER`] of its time runs. Older ones were
//! missed (opsd was down, the machine asleep, the clock jumped) and the
//! job's `catch_up` policy decides which run. Taken slots are recorded in
//! the store before anything runs, so a restart, even after `kill -9`,
//! never takes a slot twice.
//!
//! Runs happen in tasks: jitter and retry backoff wait on the same clock,
//! and the overlap policy is applied where every run starts
//! ([`Ops::run_job`]).

use crate::config::Job;
use crate::ops::{Ops, OpsError, Start};
use crate::policy::{CatchUp, MAX_CATCH_UP};
use crate::record::{RunStatus, Trigger};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::policy::MISSED_AFTER;

/// Retention runs this often (and at start).
const RETENTION_EVERY: chrono::Duration = chrono::Duration::hours(1);
/// How far off the next fire must be for idle code to be released: the
/// fire would fault it straight back in (bench/fire_accuracy.py, idle).
const QUIET_BEFORE_RELEASE: chrono::Duration = chrono::Duration::seconds(1);

/// The most slots counted when looking back over a long outage; beyond
/// this the count is a lower bound.
const MAX_LOOKBACK: usize = 1_000_000;

/// The slots that came due for one job at one look.
#[derive(Debug, PartialEq)]
pub struct Due {
    /// What to run, oldest first.
    pub run: Vec<(DateTime<Utc>, Trigger)>,
    /// Slots passed over (catch-up policy, deadline, cap).
    pub missed: u64,
    /// The last slot taken: recorded so it is never taken again.
    pub last: DateTime<Utc>,
    /// The job's next slot.
    pub next: Option<DateTime<Utc>>,
}

/// Takes every slot of `job` from `first` up to `now` and applies the
/// catch-up policy to those that were missed.
pub fn take_due(job: &Job, first: DateTime<Utc>, now: DateTime<Utc>) -> Due {
    let mut recent_missed: VecDeque<DateTime<Utc>> = VecDeque::new();
    let mut fresh = Vec::new();
    let mut missed_total: u64 = 0;
    let mut last = first;
    let mut slot = Some(first);
    let mut seen = 0;
    while let Some(s) = slot.filter(|s| *s <= now) {
        last = s;
        if now - s <= MISSED_AFTER {
            fresh.push(s);
        } else {
            missed_total += 1;
            recent_missed.push_back(s);
            if recent_missed.len() > MAX_CATCH_UP {
                recent_missed.pop_front();
            }
        }
        seen += 1;
        if seen >= MAX_LOOKBACK {
            // Too many to walk; the rest are missed too.
            slot = job.schedule.next_after(now, job.timezone);
            break;
        }
        slot = job.schedule.next_after(s, job.timezone);
    }
    let policy = &job.policy;
    let eligible: Vec<DateTime<Utc>> = recent_missed
        .iter()
        .copied()
        .filter(|s| {
            policy
                .catch_up_deadline
                .is_none_or(|d| (now - *s).to_std().is_ok_and(|age| age <= d))
        })
        .collect();
    let caught_up: Vec<DateTime<Utc>> = match policy.catch_up {
        CatchUp::Skip => Vec::new(),
        // A slot due now is the latest already: no extra run before it.
        CatchUp::Latest if !fresh.is_empty() => Vec::new(),
        CatchUp::Latest => eligible.last().copied().into_iter().collect(),
        CatchUp::All => eligible,
    };
    let mut run: Vec<(DateTime<Utc>, Trigger)> =
        caught_up.iter().map(|s| (*s, Trigger::CatchUp)).collect();
    run.extend(fresh.into_iter().map(|s| (s, Trigger::Schedule)));
    Due {
        missed: missed_total - caught_up.len() as u64,
        run,
        last,
        next: slot,
    }
}

/// Fires jobs until `shutdown` resolves, then lets runs in progress finish
/// within `grace`; those still going are interrupted and recorded so.
pub async fn run(
    ops: Arc<Ops>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let clock = ops.clock().clone();
    let stopping = CancellationToken::new();
    let now = clock.now();
    // The loop is alive from here: health must not call a daemon that is
    // busy with its first pass (retention, catch-up) unhealthy.
    ops.heartbeat(now);
    if let Err(e) = ops.apply_retention() {
        tracing::error!(error = %e, "retention failed");
    }
    let mut looped = Loop {
        ops: ops.clone(),
        stopping,
        tasks: JoinSet::new(),
        pending: HashMap::new(),
        first_pass: true,
        definitions: (None, Arc::new([])),
        refresh: true,
        queue: Default::default(),
        last_retention: now,
    };
    loop {
        let wake = looped.pass(clock.now()).await?;
        tokio::select! {
            _ = clock.sleep_until(wake) => {}
            _ = ops.changed().notified() => looped.refresh = true,
            _ = ops.monitor().sampled.notified() => {}
            _ = &mut shutdown => break,
        }
    }
    looped.stop(grace).await;
    Ok(())
}

/// The scheduler between passes.
struct Loop {
    ops: Arc<Ops>,
    /// Fired on shutdown: nothing new starts.
    stopping: CancellationToken,
    /// Runs started (with their jitter and retries).
    tasks: JoinSet<()>,
    /// Each job's next slot, and the definition it was computed for: a
    /// job added or changed by a reload starts afresh from now.
    pending: HashMap<String, (String, Option<DateTime<Utc>>)>,
    first_pass: bool,
    /// Each job's definition hash, for the config they were computed from.
    definitions: (Option<Arc<crate::config::Config>>, Arc<[String]>),
    /// Whether every job must be looked at again (start, reload, enable or
    /// disable); otherwise a pass only touches the jobs that are due.
    refresh: bool,
    /// Each job's next slot, earliest first, by its index in the config
    /// the definitions are for: a pass that is not a refresh looks only at
    /// the jobs at its head, so it costs what is due, not every job.
    queue: std::collections::BinaryHeap<std::cmp::Reverse<(DateTime<Utc>, usize)>>,
    last_retention: DateTime<Utc>,
}

impl Loop {
    /// One look at the jobs at `now`: takes the slots that have come,
    /// fires the conditions that hold, and says when to look again.
    async fn pass(&mut self, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
        let config = self.ops.config();
        if self
            .definitions
            .0
            .as_ref()
            .is_none_or(|c| !Arc::ptr_eq(c, &config))
        {
            self.definitions = (
                Some(config.clone()),
                config.jobs.iter().map(|j| j.definition_hash()).collect(),
            );
            self.refresh = true;
        }
        let mut wake = now + chrono::Duration::minutes(1);
        // Whether the pass took a slot that started no run.
        let mut unflushed = false;
        let definitions = self.definitions.1.clone();
        let mut look = |looped: &mut Self, index: usize| -> anyhow::Result<()> {
            let job = &config.jobs[index];
            let (next, took_without_run) = looped.look_at(job, &definitions[index], now)?;
            unflushed |= took_without_run;
            if let Some(n) = next {
                looped.queue.push(std::cmp::Reverse((n, index)));
            }
            Ok(())
        };
        if self.refresh {
            self.queue.clear();
            for index in 0..config.jobs.len() {
                look(self, index)?;
            }
        } else {
            // Only the jobs that are due: the rest keep their slots.
            while let Some(std::cmp::Reverse((slot, index))) = self.queue.peek().copied()
                && slot <= now
            {
                self.queue.pop();
                look(self, index)?;
            }
        }
        if let Some(std::cmp::Reverse((next, _))) = self.queue.peek() {
            wake = wake.min(*next);
        }
        self.start_released(&config);
        // Jobs whose `when` condition has held long enough.
        if self.first_pass {
            restore_conditions(&self.ops, &config)?;
        }
        for fired in check_conditions(&self.ops, &config)? {
            if let Some(job) = config.find_job(&fired.job) {
                tracing::info!(job = %job.name, condition = %fired.reason, "condition holds; running the job");
                self.spawn(job, vec![(fired.at, Trigger::Condition)], Some(fired));
            }
        }
        save_conditions(&self.ops, &config)?;
        // Alerts: sent when they start holding, every `repeat` while they
        // do, and when they clear.
        if self.first_pass {
            restore_alerts(&self.ops, &config)?;
        }
        check_alerts(&self.ops, &config)?;
        // Slots that started no run have no run's flush to cover them.
        if self.first_pass || unflushed {
            self.ops.jobs().flush().await?;
        }
        if self.first_pass {
            tracing::info!(jobs = config.jobs.len(), "scheduler started");
            self.first_pass = false;
            // What starting touched (the configuration, the checks, the
            // store's recovery, this first look at every job) is not what
            // a waiting daemon runs.
            tokio::task::spawn_blocking(crate::idle_memory::release_all);
        }
        if self.refresh {
            // Forget jobs a reload removed (only then can there be any).
            let names: std::collections::HashSet<&str> =
                config.jobs.iter().map(|j| j.name.as_str()).collect();
            self.pending.retain(|name, _| names.contains(name.as_str()));
        }
        self.refresh = false;
        self.housekeeping(&config, now, wake);
        Ok(wake)
    }

    /// One job at `now`: its next slot after this look, and whether a
    /// slot was taken that started no run.
    fn look_at(
        &mut self,
        job: &Job,
        definition: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(Option<DateTime<Utc>>, bool)> {
        if !self.refresh
            && let Some((d, slot)) = self.pending.get(&job.name)
            && d == definition
            && slot.is_none_or(|s| s > now)
        {
            return Ok((*slot, false));
        }
        let state = self.ops.jobs().state(&job.name)?;
        let enabled = self.ops.is_enabled(job, &state);
        if self
            .pending
            .get(&job.name)
            .is_none_or(|(d, _)| d != definition)
        {
            self.first_sight(job, &state, enabled, definition.to_owned(), now)?;
        }
        let Some((_, slot)) = self.pending.get_mut(&job.name) else {
            return Ok((None, false));
        };
        if !enabled {
            if slot.take().is_some() {
                self.ops.jobs().next_slot(&job.name, None)?;
            }
            return Ok((None, false));
        }
        if slot.is_none() {
            *slot = self.ops.next_fire(job, &state, now);
            let next = *slot;
            self.ops.jobs().next_slot(&job.name, next)?;
        }
        let Some(first) = *slot else {
            return Ok((None, false));
        };
        if first > now {
            return Ok((Some(first), false));
        }
        let due = take_due(job, first, now);
        let next = due.next;
        *slot = next;
        let took_without_run = self.take(job, due)?;
        Ok((next, took_without_run))
    }

    /// A job met for the first time, or changed by a reload: its first
    /// slot (`@reboot` runs now, on the first pass only).
    fn first_sight(
        &mut self,
        job: &Job,
        state: &crate::record::JobState,
        enabled: bool,
        definition: String,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if self.first_pass && job.schedule.is_reboot() && enabled {
            self.spawn(job, vec![(now, Trigger::Schedule)], None);
        }
        // Missed slots are looked for only when the job is the one that
        // fired before; a new or changed schedule starts now.
        let first = match state.last_fire {
            Some(last) if state.definition.as_deref() == Some(definition.as_str()) && enabled => {
                job.schedule.next_after(last, job.timezone)
            }
            _ => self.ops.next_fire(job, state, now),
        };
        if !self.first_pass {
            tracing::info!(job = %job.name, next = ?first, "job added or changed by a reload");
        }
        let first = first.filter(|_| enabled);
        self.ops
            .jobs()
            .definition_seen(&job.name, &definition, first)?;
        self.pending.insert(job.name.clone(), (definition, first));
        Ok(())
    }

    /// Takes the slots that came due: records them, tells of missed ones,
    /// starts what runs. Returns whether nothing was started.
    fn take(&mut self, job: &Job, due: Due) -> anyhow::Result<bool> {
        let config = self.ops.config();
        let fleet_job = job.fleet.is_some();
        if let (Some(scope), Some(fleet)) = (&job.fleet, &config.fleet)
            && !scope.admits(&fleet.labels)
        {
            // Other hosts run it; this one only keeps its place.
            self.ops
                .jobs()
                .slots_taken(&job.name, due.last, due.next, 0)?;
            return Ok(true);
        }
        if due.missed > 0 && fleet_job {
            // Other hosts may well have run them: each catch-up run
            // claims its slot, and one that was run is not run again.
            tracing::info!(job = %job.name, missed = due.missed, "fleet job: slots passed while this host was not running; their claims say whether another host ran them");
        } else if due.missed > 0 {
            tracing::warn!(
                job = %job.name, missed = due.missed, catch_up = ?job.policy.catch_up,
                running = due.run.iter().filter(|r| r.1 == Trigger::CatchUp).count(),
                "slots were missed while opsd was not running or the clock jumped"
            );
            self.ops.notify(
                crate::notify::Event::Missed,
                &job.name,
                None,
                Some(due.missed),
            );
        }
        self.ops
            .jobs()
            .slots_taken(&job.name, due.last, due.next, due.missed)?;
        // Started at once: a run makes its start record durable before
        // its plugin starts, and that flush covers the slot just written
        // (a flush covers every earlier write), so a crash never runs a
        // slot twice.
        let nothing_started = due.run.is_empty();
        if due.run.iter().any(|r| r.1 == Trigger::CatchUp) {
            // Catch-up runs one after another, oldest first, then the
            // slots due now: none is skipped as an overlap of its own
            // catch-up.
            self.spawn(job, due.run, None);
        } else {
            for r in due.run {
                self.spawn(job, vec![r], None);
            }
        }
        Ok(nothing_started)
    }

    fn spawn(
        &mut self,
        job: &Job,
        slots: Vec<(DateTime<Utc>, Trigger)>,
        condition: Option<crate::monitor::Fired>,
    ) {
        self.spawn_taking_over(job, slots, condition, None);
    }

    fn spawn_taking_over(
        &mut self,
        job: &Job,
        slots: Vec<(DateTime<Utc>, Trigger)>,
        condition: Option<crate::monitor::Fired>,
        take_over: Option<crate::fleet::Expired>,
    ) {
        spawn_runs(
            &self.ops,
            &mut self.tasks,
            &self.stopping,
            job,
            slots,
            condition,
            take_over,
        );
    }

    /// Starts the fleet runs the fleet loop handed over: slots held while
    /// PostgreSQL was away, and slots whose lease ran out elsewhere.
    fn start_released(&mut self, config: &crate::config::Config) {
        for (name, slots, take_over) in self.ops.fleet().take_released() {
            let Some(job) = config.find_job(&name) else {
                continue;
            };
            self.spawn_taking_over(job, slots, None, take_over);
        }
    }

    /// What the loop does each time round besides firing: says it is
    /// alive, hands back idle plugins' code, applies retention hourly,
    /// reaps finished run tasks.
    fn housekeeping(
        &mut self,
        config: &crate::config::Config,
        now: DateTime<Utc>,
        wake: DateTime<Utc>,
    ) {
        self.ops.heartbeat(now);
        while self.tasks.try_join_next().is_some() {}
        // No run of the loop's still going or about to start (a task just
        // spawned has not registered its run yet), none an operator
        // started, and no fire close.
        if wake - now >= QUIET_BEFORE_RELEASE && self.tasks.is_empty() && !self.ops.any_running() {
            self.release_idle_code(config);
        }
        if now - self.last_retention >= RETENTION_EVERY {
            self.last_retention = now;
            if let Err(e) = self.ops.apply_retention() {
                tracing::error!(error = %e, "retention failed");
            }
        }
    }

    /// Hands back the code of plugins idle for `release_idle_code_after`
    /// and, once the last one goes, what opsd itself touched while busy.
    /// Only called with no run in progress and no fire close: paging code
    /// out under a run that is starting makes it fault it straight back.
    fn release_idle_code(&self, config: &crate::config::Config) {
        let runtime = self.ops.registry().runtime();
        let released = runtime.release_idle_code(config.release_idle_code_after);
        if released > 0 {
            tracing::debug!(
                plugins = released,
                "released the compiled code of idle plugins"
            );
            if runtime.all_code_released() {
                tokio::task::spawn_blocking(crate::idle_memory::release_all);
            }
        }
    }

    /// Every run counts, scheduled or started by an operator: all get the
    /// grace period, then those still going are interrupted and recorded.
    async fn stop(mut self, grace: Duration) {
        self.stopping.cancel();
        let ops = self.ops.clone();
        let in_progress = || ops.running().values().map(Vec::len).sum::<usize>();
        tracing::info!(running = in_progress(), grace = ?grace, "scheduler stopping; waiting for runs in progress");
        let wait_all = |limit: Duration| {
            let ops = ops.clone();
            async move {
                let until = std::time::Instant::now() + limit;
                while ops.running().values().any(|v| !v.is_empty())
                    && std::time::Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        wait_all(grace).await;
        if in_progress() > 0 {
            tracing::warn!(
                running = in_progress(),
                "runs still going after the grace period; interrupting them"
            );
            ops.cancel_all(
                RunStatus::Interrupted,
                &format!(
                    "opsd was asked to stop and the run did not finish within the {} grace period",
                    humantime::format_duration(grace)
                ),
            );
            wait_all(Duration::from_secs(10)).await;
        }
        // What is left only waits (jitter, retry backoff) and starts
        // nothing.
        self.tasks.shutdown().await;
    }
}

/// Checks every job's `when` conditions against the samples not checked
/// yet.
fn check_conditions(
    ops: &Ops,
    config: &crate::config::Config,
) -> anyhow::Result<Vec<crate::monitor::Fired>> {
    // Most passes come with no new sample: then there is nothing to read.
    if !ops.monitor().has_unchecked() {
        return Ok(Vec::new());
    }
    let mut jobs = Vec::new();
    for job in config.jobs.iter().filter(|j| !j.when.is_empty()) {
        let state = ops.jobs().state(&job.name)?;
        jobs.push(crate::monitor::ConditionsOf {
            job: job.name.as_str(),
            enabled: ops.is_enabled(job, &state),
            busy: job.policy.overlap == crate::policy::Overlap::Forbid
                && !ops.running_of(&job.name).is_empty(),
            conditions: job.when.as_slice(),
        });
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(ops.monitor().check(&jobs))
}

/// Gives each job's conditions back what they remembered before the
/// daemon (re)started: which episode ran the job, and when (the cooldown).
fn restore_conditions(ops: &Ops, config: &crate::config::Config) -> anyhow::Result<()> {
    for job in config.jobs.iter().filter(|j| !j.when.is_empty()) {
        let state = ops.jobs().state(&job.name)?;
        ops.monitor()
            .restore(&job.name, &job.when, &state.conditions);
    }
    Ok(())
}

/// Keeps what changed in the jobs' conditions (an episode ran the job,
/// ended, or its run did not start) for the next start.
fn save_conditions(ops: &Ops, config: &crate::config::Config) -> anyhow::Result<()> {
    for name in ops.monitor().take_changed() {
        if let Some(job) = config.find_job(&name) {
            let memory = ops.monitor().memory_of(&job.name, &job.when);
            ops.jobs().conditions_changed(&job.name, memory)?;
        }
    }
    Ok(())
}

/// Gives each alert back what it remembered before the daemon started:
/// whether it was active (so it is not sent again as new) and when it
/// was last sent.
fn restore_alerts(ops: &Ops, config: &crate::config::Config) -> anyhow::Result<()> {
    for alert in &config.alerts {
        if let Some(memory) = ops.jobs().alert_memory(&alert.name)? {
            ops.monitor().restore_alert(alert, &memory);
        }
    }
    Ok(())
}

/// Checks the alerts against new samples, sends what changed and keeps
/// it for the next start.
fn check_alerts(ops: &Ops, config: &crate::config::Config) -> anyhow::Result<()> {
    if config.alerts.is_empty() {
        return Ok(());
    }
    for notice in ops.monitor().check_alerts(&config.alerts) {
        tracing::warn!(
            alert = %notice.alert, severity = %notice.severity, change = ?notice.change,
            condition = %notice.condition, "alert {}", match notice.change {
                crate::monitor::alert::Change::Resolved => "resolved",
                crate::monitor::alert::Change::Firing => "active",
                crate::monitor::alert::Change::Reminder => "still active",
            }
        );
        ops.notify_alert(&notice);
    }
    for (name, memory) in ops.monitor().take_alerts_changed(&config.alerts) {
        ops.jobs().alert_changed(&name, &memory)?;
    }
    Ok(())
}

/// Runs `slots` of `job` one after another in a task: jitter first, then
/// retries with backoff while the policy allows. Nothing new starts once
/// `stopping` fires.
fn spawn_runs(
    ops: &Arc<Ops>,
    tasks: &mut JoinSet<()>,
    stopping: &CancellationToken,
    job: &Job,
    slots: Vec<(DateTime<Utc>, Trigger)>,
    condition: Option<crate::monitor::Fired>,
    take_over: Option<crate::fleet::Expired>,
) {
    let ops = ops.clone();
    let stopping = stopping.clone();
    let name = job.name.clone();
    let policy = job.policy.clone();
    tasks.spawn(async move {
        let clock = ops.clock().clone();
        for (slot, trigger) in slots {
            let delay = policy.jitter_delay(&name);
            if !delay.is_zero() {
                let at = slot + chrono::Duration::from_std(delay).unwrap_or_default();
                tokio::select! {
                    _ = wait_until(&*clock, at) => {}
                    _ = stopping.cancelled() => return,
                }
            }
            let mut start = Start::new(trigger, slot);
            start.condition = condition.as_ref().map(|c| c.reason.clone());
            if let Some(t) = &take_over {
                start.attempt = t.attempt + 1;
                start.fleet_slot = Some(t.slot.clone());
                start.take_over = Some(t.clone());
            }
            loop {
                if stopping.is_cancelled() {
                    return;
                }
                let rec = match ops.run_job(&name, start.clone()).await {
                    Ok(rec) => rec,
                    Err(OpsError::AlreadyRunning { run, .. }) => {
                        tracing::warn!(job = %name, running = %run, "slot skipped: the previous run is still going");
                        break;
                    }
                    Err(OpsError::ClaimedElsewhere { host, slot, .. }) => {
                        tracing::debug!(job = %name, slot = %slot, host = %host, "fleet slot claimed by another host");
                        break;
                    }
                    Err(e) => {
                        tracing::error!(job = %name, error = %e, "could not run job");
                        break;
                    }
                };
                if rec.status == RunStatus::Skipped
                    && let Some(fired) = &condition
                {
                    // Recorded as skipped, with why; the condition fires
                    // again while it holds.
                    ops.monitor().not_run(fired);
                }
                if !rec.status.is_retryable() || start.attempt > policy.retries {
                    break;
                }
                let wait = policy.backoff(start.attempt);
                tracing::info!(
                    job = %name, attempt = start.attempt + 1, of = policy.retries + 1, wait = %humantime::format_duration(wait),
                    "retrying after {}", rec.status
                );
                let at = clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                tokio::select! {
                    _ = wait_until(&*clock, at) => {}
                    _ = stopping.cancelled() => return,
                }
                start.attempt += 1;
                start.trigger = Trigger::Retry;
                start.take_over = None;
            }
        }
    });
}

/// Sleeps until the clock reads `at` (the clock may wake early).
async fn wait_until(clock: &dyn crate::clock::Clock, at: DateTime<Utc>) {
    while clock.now() < at {
        clock.sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn job(extra: &str) -> Job {
        let text = format!(
            "data_dir = \"/tmp/x\"\n[[job]]\nname = \"j\"\nplugin = \"p\"\nschedule = \"0 * * * *\"\n{extra}\n"
        );
        Config::parse(std::path::Path::new("/tmp/opsd.toml"), &text)
            .unwrap()
            .jobs
            .remove(0)
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_slot_on_time_runs() {
        let d = take_due(
            &job(""),
            t("2026-11-28T10:00:00Z"),
            t("2026-11-28T10:00:00.005Z"),
        );
        assert_eq!(d.run, [(t("2026-11-28T10:00:00Z"), Trigger::Schedule)]);
        assert_eq!(
            (d.missed, d.last, d.next),
            (
                0,
                t("2026-11-28T10:00:00Z"),
                Some(t("2026-11-28T11:00:00Z"))
            )
        );
    }

    #[test]
    fn three_days_down_under_each_catch_up_policy() {
        let first = t("2026-11-25T11:00:00Z");
        let now = t("2026-11-28T10:30:00Z");
        // 72 hourly slots from 11:00 on the 25th to 10:00 on the 28th.
        let skip = take_due(&job("catch_up = \"skip\""), first, now);
        assert_eq!((skip.run.len(), skip.missed), (0, 72));
        assert_eq!(skip.last, t("2026-11-28T10:00:00Z"));
        assert_eq!(skip.next, Some(t("2026-11-28T11:00:00Z")));
        let latest = take_due(&job("catch_up = \"latest\""), first, now);
        assert_eq!(latest.run, [(t("2026-11-28T10:00:00Z"), Trigger::CatchUp)]);
        assert_eq!(latest.missed, 71);
        // With a slot due now (11:00 at 11:00:20), that slot is the
        // latest: no catch-up run comes before it.
        let latest_now = take_due(
            &job("catch_up = \"latest\""),
            first,
            t("2026-11-28T11:00:20Z"),
        );
        assert_eq!(
            latest_now.run,
            [(t("2026-11-28T11:00:00Z"), Trigger::Schedule)]
        );
        assert_eq!(latest_now.missed, 72);
        let all = take_due(&job("catch_up = \"all\""), first, now);
        assert_eq!(all.run.len(), 72);
        assert_eq!(all.run[0], (first, Trigger::CatchUp));
        assert_eq!(all.missed, 0);
        let deadline = take_due(
            &job("catch_up = \"all\"\ncatch_up_deadline = \"3h\""),
            first,
            now,
        );
        assert_eq!(
            deadline.run.iter().map(|r| r.0).collect::<Vec<_>>(),
            [
                t("2026-11-28T08:00:00Z"),
                t("2026-11-28T09:00:00Z"),
                t("2026-11-28T10:00:00Z")
            ]
        );
        assert_eq!(deadline.missed, 69);
        let late = take_due(
            &job("catch_up = \"latest\"\ncatch_up_deadline = \"10m\""),
            first,
            now,
        );
        assert!(late.run.is_empty());
    }

    #[test]
    fn a_huge_backlog_is_capped() {
        let every_second = {
            let text = "data_dir = \"/tmp/x\"\n[[job]]\nname = \"j\"\nplugin = \"p\"\nschedule = \"* * * * * *\"\ncatch_up = \"all\"\n";
            Config::parse(std::path::Path::new("/tmp/opsd.toml"), text)
                .unwrap()
                .jobs
                .remove(0)
        };
        let d = take_due(
            &every_second,
            t("2026-11-25T00:00:01Z"),
            t("2026-11-28T00:00:00Z"),
        );
        // The last minute's 61 slots are on time; of the rest, the newest
        // MAX_CATCH_UP run.
        assert_eq!(d.run.len(), MAX_CATCH_UP + 61);
        assert_eq!(d.missed, 3 * 86_400 - 61 - MAX_CATCH_UP as u64);
        assert_eq!(d.next, Some(t("2026-11-28T00:00:01Z")));
    }
}
