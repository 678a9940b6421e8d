//! A job's state and its run records: what the store remembers between
//! runs and restarts, and the only module that writes it. Each write is a
//! named transition (a definition seen, slots taken, a run recorded,
//! started, finished or skipped, the job enabled or disabled), so the
//! scheduler decides only *when*, `ops` only *whether*, and a count such
//! as `missed_total` has one place that moves it.
//!
//! The layering test in `lib.rs` fails if another module calls the
//! store's writers.

use crate::config::{BrokenJob, Config, Job};
use crate::record::{ConditionMemory, JobState, LogLine, RunRecord, RunStatus, ScheduleEntry};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, StoreError>;

/// Whether the scheduler fires a job: `opsd schedule enable/disable` wins
/// over the config.
pub fn enabled(job: &Job, state: &JobState) -> bool {
    state.enabled_override.unwrap_or(job.enabled)
}

/// A job's next fire time after `now`, never at or before a slot already
/// fired; none while it is disabled.
pub fn next_fire(job: &Job, state: &JobState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !enabled(job, state) {
        return None;
    }
    let after = state.last_fire.map_or(now, |l| l.max(now));
    job.schedule.next_after(after, job.timezone)
}

/// The writer of job state and run records over one store.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
}

impl Jobs {
    pub fn new(store: Store) -> Jobs {
        Jobs { store }
    }

    /// The store, for reading.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A job's state; the default for a job never seen.
    pub fn state(&self, job: &str) -> Result<JobState> {
        Ok(self.store.job_state(job)?.unwrap_or_default())
    }

    /// One job with its next and last run.
    pub fn entry(&self, job: &Job, now: DateTime<Utc>) -> Result<ScheduleEntry> {
        let state = self.state(&job.name)?;
        Ok(ScheduleEntry {
            job: job.name.clone(),
            plugin: job.plugin.clone(),
            schedule: job.schedule.as_str().to_owned(),
            timezone: job.timezone.name().to_owned(),
            enabled: enabled(job, &state),
            next: next_fire(job, &state, now),
            when: job.when.iter().map(|c| c.describe()).collect(),
            last: state.last_started,
            last_status: state.last_status,
            last_run: state.last_run.clone(),
            broken: Vec::new(),
        })
    }

    /// A broken job, with why, and its last run from before it broke.
    pub fn broken_entry(&self, job: &BrokenJob) -> Result<ScheduleEntry> {
        let state = self.state(&job.name)?;
        Ok(ScheduleEntry {
            job: job.name.clone(),
            plugin: job.plugin.clone().unwrap_or_default(),
            schedule: String::new(),
            timezone: String::new(),
            enabled: false,
            next: None,
            when: Vec::new(),
            last: state.last_started,
            last_status: state.last_status,
            last_run: state.last_run,
            broken: job.reasons(),
        })
    }

    /// Every job of `config` with its next and last run, the broken ones
    /// with why.
    pub fn entries(&self, config: &Config, now: DateTime<Utc>) -> Result<Vec<ScheduleEntry>> {
        let mut out: Vec<ScheduleEntry> = config
            .jobs
            .iter()
            .map(|job| self.entry(job, now))
            .collect::<Result<_>>()?;
        for job in &config.broken {
            out.push(self.broken_entry(job)?);
        }
        Ok(out)
    }

    /// What `entries` says of the job named, without reading every job's
    /// state: a plugin that may see only its own job asks for it on every
    /// `jobs()` call. A broken job comes with why; an unknown one is none.
    pub fn entries_of(
        &self,
        config: &Config,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduleEntry>> {
        if let Some(job) = config.find_job(name) {
            return Ok(vec![self.entry(job, now)?]);
        }
        (config.broken.iter().filter(|b| b.name == name))
            .map(|b| self.broken_entry(b))
            .collect()
    }

    /// Runs a dead process left `running`, now marked interrupted.
    pub fn mark_interrupted(&self, now: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        self.store.recover_interrupted(now)
    }

    /// The scheduler met a job's definition for the first time (start, or
    /// a reload that added or changed it): it fires next at `next`.
    pub fn definition_seen(
        &self,
        job: &str,
        definition: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.store.update_job_state(job, |s| {
            s.definition = Some(definition.to_owned());
            s.next_fire = next;
        })?;
        Ok(())
    }

    /// Where the job's conditions stand now (an episode ran the job, or
    /// ended), kept for the next start.
    pub fn conditions_changed(&self, job: &str, memory: Vec<ConditionMemory>) -> Result<()> {
        self.store
            .update_job_state(job, |s| s.conditions = memory)?;
        Ok(())
    }

    /// Keeps what an `[[alert]]` remembers (whether it is active, when it
    /// was last sent) for the next start. Alerts are not jobs, but their
    /// memory is state like a job's, written in one place.
    pub fn alert_changed(&self, alert: &str, memory: &crate::record::AlertMemory) -> Result<()> {
        self.store.put_alert_memory(alert, memory)?;
        Ok(())
    }

    /// What an `[[alert]]` remembered when last saved.
    pub fn alert_memory(&self, alert: &str) -> Result<Option<crate::record::AlertMemory>> {
        self.store.alert_memory(alert)
    }

    /// The job's next slot, as the scheduler now sees it (none while
    /// disabled).
    pub fn next_slot(&self, job: &str, next: Option<DateTime<Utc>>) -> Result<()> {
        self.store.update_job_state(job, |s| s.next_fire = next)?;
        Ok(())
    }

    /// Slots up to `last` were taken by the scheduler, `missed` of them
    /// not run (catch-up policy); the job fires next at `next`.
    pub fn slots_taken(
        &self,
        job: &str,
        last: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        missed: u64,
    ) -> Result<()> {
        self.store.update_job_state(job, |s| {
            s.last_fire = Some(last);
            s.next_fire = next;
            s.missed_total += missed;
        })?;
        Ok(())
    }

    /// An operator enabled or disabled the job at `now`; slots passed
    /// while it was disabled were meant not to run. Durable on return.
    pub fn set_enabled(&self, job: &Job, on: bool, now: DateTime<Utc>) -> Result<()> {
        self.store.update_job_state(&job.name, |s| {
            let was = s.enabled_override.unwrap_or(job.enabled);
            s.enabled_override = Some(on);
            if on && !was {
                s.last_fire = Some(s.last_fire.map_or(now, |l| l.max(now)));
            }
        })?;
        self.store.flush()
    }

    /// A slot that did not run (overlap policy): its record, and one more
    /// missed slot. Durable on return.
    pub fn skipped(&self, rec: &RunRecord) -> Result<()> {
        self.store.put_run(rec)?;
        self.store
            .update_job_state(&rec.job, |s| s.missed_total += 1)?;
        self.store.flush()
    }

    /// A run's record, written before its plugin starts, so a crash
    /// leaves a trace; durable on return (runs started together share the
    /// fsync).
    pub async fn recorded(&self, rec: &RunRecord) -> Result<()> {
        self.store.put_run(rec)?;
        self.store.flush_async().await
    }

    /// The run's plugin started at `at`.
    pub fn started(&self, job: &str, run: &str, at: DateTime<Utc>) -> Result<()> {
        self.store.update_job_state(job, |s| {
            s.last_run = Some(run.to_owned());
            s.last_started = Some(at);
            s.last_status = Some(RunStatus::Running);
        })?;
        Ok(())
    }

    /// The run ended: its log, its record and the job's state, durable on
    /// return. `last_final_status` moves only on a run no retry follows.
    /// Returns the job's previous final status, to tell a recovery.
    pub async fn finished(
        &self,
        rec: &RunRecord,
        log: &[LogLine],
        final_attempt: bool,
    ) -> Result<Option<RunStatus>> {
        self.store.put_log(&rec.id, log)?;
        self.store.put_run(rec)?;
        let mut previous = None;
        self.store.update_job_state(&rec.job, |s| {
            previous = s.last_final_status;
            s.last_run = Some(rec.id.clone());
            s.last_started = Some(rec.started);
            s.last_status = Some(rec.status);
            if rec.status.is_success() {
                s.last_success = rec.finished;
            }
            s.last_duration_ms = rec.duration_ms;
            if final_attempt {
                s.last_final_status = Some(rec.status);
            }
        })?;
        self.store.flush_async().await?;
        Ok(previous)
    }

    /// Deletes a job's runs beyond `keep` and older than `cutoff`.
    pub fn forget_old_runs(&self, job: &str, keep: usize, cutoff: DateTime<Utc>) -> Result<usize> {
        self.store.prune(job, keep, cutoff)
    }

    /// Makes the transitions so far durable (slots taken that started no
    /// run have no run's flush to cover them).
    pub async fn flush(&self) -> Result<()> {
        self.store.flush_async().await
    }
}

/// `opsd schedule show`: one job, everything an operator asks about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobDetail {
    pub job: String,
    pub plugin: String,
    pub schedule: String,
    /// `when` conditions, described.
    pub when: Vec<String>,
    pub timezone: String,
    pub enabled: bool,
    pub next: Vec<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    pub last_status: Option<RunStatus>,
    pub timeout_seconds: u64,
    pub catch_up: String,
    pub catch_up_deadline_seconds: Option<u64>,
    pub overlap: String,
    pub retries: u32,
    pub retry_backoff_seconds: u64,
    pub retry_backoff_max_seconds: u64,
    pub jitter_seconds: u64,
    pub jitter_fixed: bool,
    pub keep_runs: usize,
    pub keep_days: u32,
    pub grants: GrantsView,
    pub config: serde_json::Value,
    pub recent: Vec<RunRecord>,
}

/// Grants as written, for display: each kind's own words, in the order
/// [`crate::grants::Grants::kinds`] gives them.
#[derive(Debug, Clone)]
pub struct GrantsView {
    pub kinds: Vec<(String, crate::grants::Explained)>,
    /// What the programs the job starts may do (empty without an exec
    /// grant).
    pub programs: Vec<String>,
}

/// An object with a key per kind, then `programs`.
impl Serialize for GrantsView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.kinds.len() + 1))?;
        for (key, explained) in &self.kinds {
            map.serialize_entry(key, explained)?;
        }
        map.serialize_entry("programs", &self.programs)?;
        map.end()
    }
}

/// The object back, kinds in the order they came.
impl<'de> Deserialize<'de> for GrantsView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<GrantsView, D::Error> {
        struct Kinds;
        impl<'de> serde::de::Visitor<'de> for Kinds {
            type Value = GrantsView;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a grant kind per key, and `programs`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<GrantsView, A::Error> {
                let mut view = GrantsView {
                    kinds: Vec::new(),
                    programs: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "programs" {
                        view.programs = map.next_value()?;
                    } else {
                        view.kinds.push((key, map.next_value()?));
                    }
                }
                Ok(view)
            }
        }
        d.deserialize_map(Kinds)
    }
}

impl JobDetail {
    pub fn new(
        job: &Job,
        entry: &ScheduleEntry,
        next: &[DateTime<Utc>],
        recent: &[RunRecord],
    ) -> JobDetail {
        let p = &job.policy;
        JobDetail {
            job: job.name.clone(),
            plugin: job.plugin.clone(),
            schedule: job.schedule.as_str().to_owned(),
            when: entry.when.clone(),
            timezone: job.timezone.name().to_owned(),
            enabled: entry.enabled,
            next: next.to_vec(),
            last: entry.last,
            last_status: entry.last_status,
            timeout_seconds: job.timeout.as_secs(),
            catch_up: p.catch_up.as_str().to_owned(),
            catch_up_deadline_seconds: p.catch_up_deadline.map(|d| d.as_secs()),
            overlap: p.overlap.as_str().to_owned(),
            retries: p.retries,
            retry_backoff_seconds: p.retry_backoff.as_secs(),
            retry_backoff_max_seconds: p.retry_backoff_max.as_secs(),
            jitter_seconds: p.jitter.as_secs(),
            jitter_fixed: p.jitter_fixed,
            keep_runs: p.keep_runs,
            keep_days: p.keep_days,
            grants: GrantsView {
                kinds: job
                    .grants
                    .kinds()
                    .iter()
                    .map(|k| (k.key().to_owned(), k.explain()))
                    .collect(),
                programs: if job.grants.exec.programs.is_empty() {
                    Vec::new()
                } else {
                    job.grants.child_sandbox()
                },
            },
            config: job.config.clone(),
            recent: recent.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn one_jobs_entry_is_what_every_jobs_entries_say_of_it() {
        let text = "data_dir = \"/tmp/x\"\n\
            [[job]]\nname = \"a\"\nplugin = \"p\"\nschedule = \"@daily\"\n\
            [[job]]\nname = \"broken\"\nplugin = \"p\"\nschedule = \"nope\"\n\
            [[job]]\nname = \"b\"\nplugin = \"p\"\nschedule = \"@hourly\"\n";
        let config = Config::parse(Path::new("/etc/opsd/opsd.toml"), text).unwrap();
        assert_eq!(config.broken.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(Store::open(dir.path()).unwrap());
        let now = Utc::now();
        let b = config.find_job("b").unwrap();
        jobs.set_enabled(b, false, now).unwrap();
        let all = jobs.entries(&config, now).unwrap();
        for name in ["a", "b", "broken", "gone"] {
            let of: Vec<ScheduleEntry> = all.iter().filter(|e| e.job == name).cloned().collect();
            assert_eq!(jobs.entries_of(&config, name, now).unwrap(), of, "{name}");
        }
    }
}
