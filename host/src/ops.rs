//! The operations every interface offers (list the schedule, run a job,
//! read history and logs), over an open store. The daemon's control
//! socket serves these; with no daemon the CLI calls them directly, so
//! both give the same answers.

use crate::config::{Config, Job, UnknownJob};
use crate::plugins::Registry;
use crate::record::{JobState, LogLine, RunRecord, RunStatus, Trigger};
use crate::runtime::log::RunLog;
use crate::runtime::{Execution, RunRequest, Runtime};
use crate::store::{self, HistoryQuery, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Failures a caller (and the HTTP layer) must tell apart.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    UnknownJob(#[from] UnknownJob),
    #[error("no run with id `{0}`; `opsd history` lists run ids")]
    UnknownRun(String),
    #[error("job `{job}` is already running (run {run}); wait for it, or see `opsd logs {run}`")]
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

/// A run in progress, for overlap checks and live logs.
#[derive(Clone)]
pub struct Running {
    pub run_id: String,
    pub log: RunLog,
}

/// Configuration, store and runtime, ready to serve requests.
pub struct Ops {
    pub config: Config,
    pub store: Store,
    registry: Registry,
    running: Mutex<HashMap<String, Running>>,
}

impl Ops {
    /// Opens the store of `config`, marks runs a dead process left behind
    /// as interrupted, and starts the plugin runtime.
    pub fn open(config: Config) -> anyhow::Result<Ops> {
        ensure_private_dir(&config.data_dir)?;
        let store = Store::open(&config.data_dir)?;
        for rec in store.recover_interrupted(Utc::now())? {
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
            registry,
            running: Mutex::new(HashMap::new()),
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
    pub fn schedule(&self, now: DateTime<Utc>) -> Result<Vec<ScheduleEntry>, OpsError> {
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

    /// Runs in progress, by job.
    pub fn running(&self) -> HashMap<String, Running> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs a job now and returns its finished record.
    pub async fn run_job(
        &self,
        name: &str,
        trigger: Trigger,
        scheduled: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<RunRecord, OpsError> {
        let job = self.config.job(name)?;
        let run_id = store::new_run_id();
        let log = RunLog::new(&job.name, &run_id, job.grants.limits.log_bytes);
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = running.get(&job.name) {
                return Err(OpsError::AlreadyRunning {
                    job: job.name.clone(),
                    run: r.run_id.clone(),
                });
            }
            running.insert(
                job.name.clone(),
                Running {
                    run_id: run_id.clone(),
                    log: log.clone(),
                },
            );
        }
        let result = self
            .run_job_inner(job, &run_id, log, trigger, scheduled, dry_run)
            .await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.name);
        result
    }

    async fn run_job_inner(
        &self,
        job: &Job,
        run_id: &str,
        log: RunLog,
        trigger: Trigger,
        scheduled: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<RunRecord, OpsError> {
        let started = Utc::now();
        let mut rec = RunRecord::begin(
            run_id,
            &job.name,
            &job.plugin,
            trigger,
            scheduled,
            started,
            dry_run,
        );
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
                    scheduled,
                    attempt: 1,
                    dry_run,
                    log: log.clone(),
                    store: Some(self.store.clone()),
                };
                self.registry.runtime().run(&plugin, req).await
            }
        };
        let finished = Utc::now();
        rec.status = exec.status;
        rec.summary = exec.summary;
        rec.details = exec.details;
        rec.error = exec.error;
        rec.metrics = exec.metrics;
        rec.artifacts = exec.artifacts;
        rec.finished = Some(finished);
        rec.duration_ms = Some((finished - started).num_milliseconds().max(0) as u64);
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
                s.last_success = Some(finished);
            }
        })?;
        self.store.flush()?;
        tracing::info!(
            job = %rec.job, run = %rec.id, status = %rec.status, ms = rec.duration_ms.unwrap_or(0),
            "run finished: {}", rec.summary
        );
        Ok(rec)
    }

    /// Run history, newest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<RunRecord>, OpsError> {
        Ok(self.store.history(q)?)
    }

    /// The captured log of one run; live lines for a run in progress.
    pub fn run_log(&self, id: &str) -> Result<Vec<LogLine>, OpsError> {
        if let Some(r) = self.running().into_values().find(|r| r.run_id == id) {
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
