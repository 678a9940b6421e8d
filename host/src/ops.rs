//! The operations every interface offers (list the schedule, run a job,
//! enable and disable it, read history and logs), over an open store. The
//! daemon's control socket serves these; with no daemon the CLI calls them
//! directly, so both give the same answers.
//!
//! A job's overlap policy is applied here, where every run starts,
//! whether the scheduler or an operator asked for it.

use crate::clock::SharedClock;
use crate::config::{Config, Job, UnknownJob};
use crate::plugins::Registry;
use crate::policy::{MAX_QUEUE, Overlap};
use crate::record::{JobState, LogLine, RunRecord, RunStatus, Trigger};
use crate::runtime::log::RunLog;
use crate::runtime::{Cancel, Execution, RunRequest, Runtime};
use crate::store::{self, HistoryQuery, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Failures a caller (and the HTTP layer) must tell apart.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    UnknownJob(#[from] UnknownJob),
    #[error("no run with id `{0}`; `opsd history` lists run ids")]
    UnknownRun(String),
    #[error(
        "job `{job}` is already running (run {run}) and its overlap policy is forbid; wait for it, or see `opsd logs {run}`"
    )]
    AlreadyRunning { job: String, run: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One row of `opsd schedule list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleEntry {
    pub job: String,
    pub plugin: String,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    /// Next fire time; null when disabled or never (`@reboot`).
    pub next: Option<DateTime<Utc>>,
    /// When the last run started.
    pub last: Option<DateTime<Utc>>,
    pub last_status: Option<RunStatus>,
    pub last_run: Option<String>,
}

/// How and why a run starts.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub trigger: Trigger,
    /// The slot the run serves (now, for a manual run).
    pub scheduled: DateTime<Utc>,
    pub attempt: u32,
    pub dry_run: bool,
}

impl Start {
    /// A first attempt.
    pub fn new(trigger: Trigger, scheduled: DateTime<Utc>) -> Start {
        Start {
            trigger,
            scheduled,
            attempt: 1,
            dry_run: false,
        }
    }
}

/// A run in progress, for overlap decisions and live logs.
#[derive(Clone)]
pub struct Running {
    pub run_id: String,
    pub log: RunLog,
    pub cancel: Cancel,
}

/// Per-job serialisation for `overlap = "queue"`: a fair lock, and how
/// many runs wait on it.
#[derive(Default)]
struct JobQueue {
    lock: Arc<tokio::sync::Mutex<()>>,
    waiting: AtomicUsize,
}

/// Configuration, store, clock and runtime, ready to serve requests.
pub struct Ops {
    pub config: Config,
    pub store: Store,
    pub clock: SharedClock,
    registry: Registry,
    running: Mutex<HashMap<String, Vec<Running>>>,
    queues: Mutex<HashMap<String, Arc<JobQueue>>>,
    /// Poked when something the scheduler watches changes (enable/disable).
    pub changed: tokio::sync::Notify,
}

impl Ops {
    /// Opens the store of `config`, marks runs a dead process left behind
    /// as interrupted, and starts the plugin runtime.
    pub fn open(config: Config, clock: SharedClock) -> anyhow::Result<Ops> {
        ensure_private_dir(&config.data_dir)?;
        let store = Store::open(&config.data_dir)?;
        for rec in store.recover_interrupted(clock.now())? {
            tracing::warn!(job = %rec.job, run = %rec.id, "run was left unfinished by a previous process; marked interrupted");
        }
        for job in &config.jobs {
            if let Err(e) = crate::grants::fs::ensure_created(&job.grants.fs) {
                tracing::warn!(job = %job.name, error = %e, "cannot create a granted directory");
            }
        }
        let runtime = Arc::new(Runtime::new(config.data_dir.join("cache"))?);
        let registry = Registry::new(runtime, config.plugin_dir.clone());
        Ok(Ops {
            config,
            store,
            clock,
            registry,
            running: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The registry plugins are found through.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether the job fires: `opsd schedule enable|disable` wins over the
    /// config's `enabled`.
    pub fn is_enabled(&self, job: &Job, state: &JobState) -> bool {
        state.enabled_override.unwrap_or(job.enabled)
    }

    /// The next fire time of a job after `now`, never at or before a slot
    /// already fired.
    pub fn next_fire(
        &self,
        job: &Job,
        state: &JobState,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !self.is_enabled(job, state) {
            return None;
        }
        let after = state.last_fire.map_or(now, |l| l.max(now));
        job.schedule.next_after(after, job.timezone)
    }

    /// Every job with its next and last run.
    pub fn schedule(&self) -> Result<Vec<ScheduleEntry>, OpsError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for job in &self.config.jobs {
            let state = self.store.job_state(&job.name)?.unwrap_or_default();
            out.push(ScheduleEntry {
                job: job.name.clone(),
                plugin: job.plugin.clone(),
                schedule: job.schedule.as_str().to_owned(),
                timezone: job.timezone.name().to_owned(),
                enabled: self.is_enabled(job, &state),
                next: self.next_fire(job, &state, now),
                last: state.last_started,
                last_status: state.last_status,
                last_run: state.last_run.clone(),
            });
        }
        Ok(out)
    }

    /// Enables or disables a job; persists across restarts and wins over
    /// the config's `enabled`. Returns the job's schedule entry.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<ScheduleEntry, OpsError> {
        let job = self.config.job(name)?;
        let now = self.clock.now();
        self.store.update_job_state(&job.name, |s| {
            let was = s.enabled_override.unwrap_or(job.enabled);
            s.enabled_override = Some(enabled);
            if enabled && !was {
                // Slots passed while disabled were meant not to run.
                s.last_fire = Some(s.last_fire.map_or(now, |l| l.max(now)));
            }
        })?;
        self.store.flush()?;
        self.changed.notify_one();
        tracing::info!(job = %job.name, enabled, "job {}", if enabled { "enabled" } else { "disabled" });
        let entries = self.schedule()?;
        Ok(entries
            .into_iter()
            .find(|e| e.job == job.name)
            .expect("job listed"))
    }

    /// Runs in progress, by job.
    pub fn running(&self) -> HashMap<String, Vec<Running>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks every run in progress to stop, recording `status` and `why`.
    pub fn cancel_all(&self, status: RunStatus, why: &str) {
        for r in self.running().into_values().flatten() {
            r.cancel.cancel(status, why.to_owned());
        }
    }

    fn queue(&self, job: &str) -> Arc<JobQueue> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job.to_owned())
            .or_default()
            .clone()
    }

    /// Runs a job now, as its overlap policy allows, and returns the
    /// finished record (a `skipped` record when the policy said no).
    pub async fn run_job(&self, name: &str, start: Start) -> Result<RunRecord, OpsError> {
        let job = self.config.job(name)?;
        let busy = || {
            self.running()
                .get(&job.name)
                .and_then(|v| v.first().map(|r| r.run_id.clone()))
        };
        let _queued = match job.policy.overlap {
            Overlap::Allow => None,
            Overlap::Forbid => {
                if let Some(run) = busy() {
                    if start.trigger == Trigger::Manual {
                        return Err(OpsError::AlreadyRunning {
                            job: job.name.clone(),
                            run,
                        });
                    }
                    return self.skip(
                        job,
                        start,
                        &format!("run {run} was still going (overlap = \"forbid\")"),
                    );
                }
                None
            }
            Overlap::Replace => {
                for r in self.running().get(&job.name).into_iter().flatten() {
                    r.cancel.cancel(
                        RunStatus::Cancelled,
                        "replaced by a newer run (overlap = \"replace\")".into(),
                    );
                }
                None
            }
            Overlap::Queue => {
                let q = self.queue(&job.name);
                if q.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUE {
                    q.waiting.fetch_sub(1, Ordering::SeqCst);
                    return self.skip(
                        job,
                        start,
                        &format!("{MAX_QUEUE} runs already waiting (overlap = \"queue\")"),
                    );
                }
                let guard = q.lock.clone().lock_owned().await;
                q.waiting.fetch_sub(1, Ordering::SeqCst);
                Some(guard)
            }
        };
        let run_id = store::new_run_id();
        let log = RunLog::new(&job.name, &run_id, job.grants.limits.log_bytes);
        let cancel = Cancel::default();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(job.name.clone())
            .or_default()
            .push(Running {
                run_id: run_id.clone(),
                log: log.clone(),
                cancel: cancel.clone(),
            });
        let result = self.execute(job, &run_id, log, cancel, start).await;
        if let Some(v) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&job.name)
        {
            v.retain(|r| r.run_id != run_id);
        }
        result
    }

    /// Records a slot that was not run, and why.
    fn skip(&self, job: &Job, start: Start, why: &str) -> Result<RunRecord, OpsError> {
        let now = self.clock.now();
        let mut rec = RunRecord::begin(
            &store::new_run_id(),
            &job.name,
            &job.plugin,
            start.trigger,
            start.scheduled,
            now,
            start.dry_run,
        );
        rec.attempt = start.attempt;
        rec.status = RunStatus::Skipped;
        rec.finished = Some(now);
        rec.duration_ms = Some(0);
        rec.summary = format!("skipped: {why}");
        self.store.put_run(&rec)?;
        self.store
            .update_job_state(&job.name, |s| s.missed_total += 1)?;
        self.store.flush()?;
        tracing::warn!(job = %job.name, slot = %start.scheduled, "slot skipped: {why}");
        Ok(rec)
    }

    async fn execute(
        &self,
        job: &Job,
        run_id: &str,
        log: RunLog,
        cancel: Cancel,
        start: Start,
    ) -> Result<RunRecord, OpsError> {
        let started = self.clock.now();
        let clock_start = Instant::now();
        let mut rec = RunRecord::begin(
            run_id,
            &job.name,
            &job.plugin,
            start.trigger,
            start.scheduled,
            started,
            start.dry_run,
        );
        rec.attempt = start.attempt;
        let exec = match self.registry.find(&job.plugin).await {
            Err(e) => Execution::failed(RunStatus::Failed, e.to_string()),
            Ok((plugin, load)) => {
                rec.plugin_version = plugin.info.version.clone();
                rec.plugin_sha256 = plugin.sha256.clone();
                log.push(
                    "debug",
                    "host",
                    &format!(
                        "plugin {} {} ({}, {:.1} ms)",
                        plugin.info.name, plugin.info.version, load.source, load.ms
                    ),
                );
                rec.plugin_load = Some(load);
                // The record exists, durably, before the plugin starts.
                self.store.put_run(&rec)?;
                self.store.flush()?;
                self.store.update_job_state(&job.name, |s| {
                    s.last_run = Some(run_id.to_owned());
                    s.last_started = Some(started);
                    s.last_status = Some(RunStatus::Running);
                })?;
                let req = RunRequest {
                    job,
                    run_id,
                    scheduled: start.scheduled,
                    attempt: start.attempt,
                    dry_run: start.dry_run,
                    log: log.clone(),
                    store: Some(self.store.clone()),
                    cancel,
                };
                self.registry.runtime().run(&plugin, req).await
            }
        };
        let elapsed = clock_start.elapsed();
        rec.status = exec.status;
        rec.summary = exec.summary;
        rec.details = exec.details;
        rec.error = exec.error;
        rec.metrics = exec.metrics;
        rec.artifacts = exec.artifacts;
        rec.finished = Some(started + chrono::Duration::from_std(elapsed).unwrap_or_default());
        rec.duration_ms = Some(elapsed.as_millis() as u64);
        if let Some(e) = &rec.error {
            log.push("error", "host", e);
        }
        self.store.put_log(&rec.id, &log.lines())?;
        self.store.put_run(&rec)?;
        self.store.update_job_state(&job.name, |s| {
            s.last_run = Some(rec.id.clone());
            s.last_started = Some(started);
            s.last_status = Some(rec.status);
            if rec.status.is_success() {
                s.last_success = rec.finished;
            }
        })?;
        self.store.flush()?;
        tracing::info!(
            job = %rec.job, run = %rec.id, status = %rec.status, attempt = rec.attempt, ms = rec.duration_ms.unwrap_or(0),
            "run finished: {}", rec.summary
        );
        Ok(rec)
    }

    /// Deletes runs beyond each job's `keep_runs` and older than its
    /// `keep_days`; jobs no longer configured keep the defaults' limits.
    pub fn apply_retention(&self) -> Result<usize, OpsError> {
        let now = self.clock.now();
        let mut removed = 0;
        for name in self.store.job_names()? {
            let policy = self
                .config
                .job(&name)
                .map(|j| j.policy.clone())
                .unwrap_or_default();
            let cutoff = now - chrono::Duration::days(i64::from(policy.keep_days));
            removed += self.store.prune(&name, policy.keep_runs, cutoff)?;
        }
        if removed > 0 {
            self.store.flush()?;
            tracing::info!(removed, "retention removed old runs");
        }
        Ok(removed)
    }

    /// Run history, newest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<RunRecord>, OpsError> {
        Ok(self.store.history(q)?)
    }

    /// The captured log of one run; live lines for a run in progress.
    pub fn run_log(&self, id: &str) -> Result<Vec<LogLine>, OpsError> {
        if let Some(r) = self
            .running()
            .into_values()
            .flatten()
            .find(|r| r.run_id == id)
        {
            return Ok(r.log.lines());
        }
        match self.store.log(id)? {
            Some(lines) => Ok(lines),
            None if self.store.run(id)?.is_some() => Ok(Vec::new()),
            None => Err(OpsError::UnknownRun(id.to_owned())),
        }
    }

    /// One run record.
    pub fn run_record(&self, id: &str) -> Result<RunRecord, OpsError> {
        self.store
            .run(id)?
            .ok_or_else(|| OpsError::UnknownRun(id.to_owned()))
    }
}

/// Creates the data directory readable by its owner only: it holds run
/// logs and the control socket.
fn ensure_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data_dir {}: {e}", dir.display()))?;
    }
    Ok(())
}
