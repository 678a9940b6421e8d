//! The operations every interface offers (list the schedule, run a job,
//! enable and disable it, read history and logs), over an open store. The
//! daemon's control socket serves these; with no daemon the CLI calls them
//! directly, so both give the same answers.
//!
//! A job's overlap policy is applied here, where every run starts,
//! whether the scheduler or an operator asked for it.

use crate::clock::SharedClock;
use crate::config::{Config, Job, UnknownJob};
use crate::jobs::Jobs;
use crate::locks::{Unpoisoned, UnpoisonedRw};
use crate::plugins::Registry;
use crate::policy::{MAX_QUEUE, Overlap};
pub use crate::record::ScheduleEntry;
use crate::record::{JobState, Level, LogLine, RunRecord, RunStatus, Source, Trigger};
use crate::runtime::log::{LogEvent, RunLog};
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
    #[error("opsd is stopping; the run was not started")]
    Stopping,
    /// A `--set` the job's config or its plugin's schema refuses.
    #[error("job `{job}`: --set {key}: {message}")]
    BadOverride {
        job: String,
        key: String,
        message: String,
    },
    #[error(
        "job `{job}` is a fleet job for hosts with {on}, and this host ({host}) is not one of them; run it on one that is"
    )]
    NotOnThisHost {
        job: String,
        on: String,
        host: String,
    },
    /// Another host claimed the slot: nothing to record here.
    #[error("job `{job}`: host {host} has slot {slot}")]
    ClaimedElsewhere {
        job: String,
        host: String,
        slot: String,
    },
    #[error(
        "job `{job}` is a fleet job, and it runs only once the fleet's PostgreSQL grants it: {error}"
    )]
    FleetUnreachable { job: String, error: String },
}

mod fleet_runs;

/// How and why a run starts.
#[derive(Debug, Clone)]
pub struct Start {
    pub trigger: Trigger,
    /// The slot the run serves (now, for a manual run).
    pub scheduled: DateTime<Utc>,
    pub attempt: u32,
    pub dry_run: bool,
    /// The `when` condition that started it, described.
    pub condition: Option<String>,
    /// `[job.config]` values for this run only (`opsd run --set`), by
    /// dotted key; checked against the plugin's schema before it starts.
    pub overrides: std::collections::BTreeMap<String, serde_json::Value>,
    /// A fleet slot whose lease ran out on another host: the run takes it
    /// over rather than claiming it afresh.
    pub take_over: Option<crate::fleet::Expired>,
    /// The fleet slot a take-over and its retries serve, when it is not
    /// the one `scheduled` names (a manual run's).
    pub fleet_slot: Option<String>,
}

impl Start {
    /// A first attempt.
    pub fn new(trigger: Trigger, scheduled: DateTime<Utc>) -> Start {
        Start {
            trigger,
            scheduled,
            attempt: 1,
            dry_run: false,
            condition: None,
            overrides: Default::default(),
            take_over: None,
            fleet_slot: None,
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

/// How often the daemon keeps a system sample (for report trends).
pub const SAMPLE_EVERY: chrono::Duration = chrono::Duration::minutes(10);

/// How long system samples are kept.
pub const SAMPLE_KEEP: chrono::Duration = chrono::Duration::days(400);

/// Samples the daemon keeps in memory: an hour, enough for rates.
pub const MONITOR_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Configuration, store, clock and runtime, ready to serve requests.
pub struct Ops {
    /// Replaced whole on SIGHUP; runs keep the snapshot they started with.
    config: std::sync::RwLock<Arc<Config>>,
    /// The one writer of job state and run records; reads go to its
    /// store.
    jobs: Jobs,
    clock: SharedClock,
    registry: Arc<Registry>,
    running: Mutex<HashMap<String, Vec<Running>>>,
    queues: Mutex<HashMap<String, Arc<JobQueue>>>,
    /// Poked when something the scheduler watches changes (enable/disable).
    changed: tokio::sync::Notify,
    /// When the scheduler loop last went round (monotonic time).
    tick: Mutex<Option<Instant>>,
    /// When the last system sample was kept.
    last_sample: Mutex<Option<DateTime<Utc>>>,
    /// Recent samples of the machine and where `when` conditions stand.
    monitor: Arc<crate::monitor::Monitor>,
    /// Run counters for `/metrics`.
    metrics: crate::metrics::Metrics,
    /// Webhooks; set by the daemon.
    notifier: Mutex<crate::notify::Notifier>,
    /// Set once the daemon delivers notifications: a reload then restarts
    /// delivery with the new targets.
    notifying: std::sync::atomic::AtomicBool,
    /// The address the HTTP endpoints were bound to; set by the daemon.
    http_addr: Mutex<Option<std::net::SocketAddr>>,
    /// When the daemon last heard from the fleet's PostgreSQL.
    fleet_contact: Mutex<Option<DateTime<Utc>>>,
    /// Fleet jobs' claims: the way to PostgreSQL, counts, runs to start.
    fleet: Arc<crate::fleet::lease::FleetLink>,
    /// One permit per run allowed to execute at once
    /// (`max_concurrent_runs`), and how many permits that is now.
    run_slots: Arc<tokio::sync::Semaphore>,
    run_slots_size: Mutex<usize>,
}
/// Whether opsd does its work: what `/health` answers 200 or 503 for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Unhealthy,
}

/// What `/health` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    /// Why not, when unhealthy.
    pub reasons: Vec<String>,
    /// Seconds since the scheduler loop last went round; null before it
    /// started (or with no scheduler, in the CLI).
    pub scheduler_tick_age_seconds: Option<f64>,
    pub store_writable: bool,
    /// Where `/health` and `/metrics` are served, when they are.
    pub http: Option<String>,
    pub jobs: usize,
    pub running: usize,
    pub version: String,
    /// The configuration the daemon runs: its file and the sha256 of the
    /// text it loaded, so the CLI can tell when the file changed since.
    /// Only on the control socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<LoadedConfig>,
    /// Jobs the configuration defines that do not run, with why. The
    /// daemon is still healthy: the other jobs run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken_jobs: Vec<BrokenJobView>,
}

/// Which configuration a daemon runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadedConfig {
    pub path: String,
    pub sha256: String,
}

/// A broken job as `/health` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokenJobView {
    pub job: String,
    /// Why; only on the control socket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The scheduler loop goes round at least once a minute; past this it is
/// stuck.
const TICK_STALE: std::time::Duration = std::time::Duration::from_secs(150);

impl Ops {
    /// Opens the store of `config`, marks runs a dead process left behind
    /// as interrupted, and starts the plugin runtime.
    pub fn open(config: Config, clock: SharedClock) -> anyhow::Result<Ops> {
        Ops::open_for_daemon(config, clock, false)
    }

    /// [`Ops::open`] for a daemon: run instances come from a pool reserved
    /// once, sized from `max_concurrent_runs`, if `pooled` (a command, which
    /// runs one plugin if any, never pays to reserve it).
    pub fn open_for_daemon(
        config: Config,
        clock: SharedClock,
        pooled: bool,
    ) -> anyhow::Result<Ops> {
        ensure_private_dir(&config.data_dir)?;
        let jobs = Jobs::new(Store::open(&config.data_dir)?);
        if config.fleet.is_some() {
            jobs.store().enable_outbox();
        }
        for rec in jobs.mark_interrupted(clock.now())? {
            tracing::warn!(job = %rec.job, run = %rec.id, "run was left unfinished by a previous process; marked interrupted");
        }
        for job in &config.jobs {
            if let Err(e) = crate::grants::fs::ensure_created(&job.grants.fs) {
                tracing::warn!(job = %job.name, error = %e, "cannot create a granted directory");
            }
        }
        let cache = config.data_dir.join("cache");
        let runtime = Arc::new(if pooled {
            Runtime::with_pool(
                cache,
                crate::runtime::InstancePool::for_runs(config.max_concurrent_runs),
            )?
        } else {
            Runtime::new(cache)?
        });
        let slots = run_slots_within(config.max_concurrent_runs, runtime.run_capacity());
        let registry = Arc::new(Registry::new(
            runtime,
            config.plugin_dir.clone(),
            config.override_builtin.clone(),
        ));
        Ok(Ops {
            config: std::sync::RwLock::new(Arc::new(config)),
            jobs,
            clock,
            registry,
            running: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            tick: Mutex::new(None),
            last_sample: Mutex::new(None),
            monitor: Arc::new(crate::monitor::Monitor::new(MONITOR_WINDOW)),
            metrics: crate::metrics::Metrics::default(),
            notifier: Mutex::new(crate::notify::Notifier::default()),
            notifying: std::sync::atomic::AtomicBool::new(false),
            http_addr: Mutex::new(None),
            fleet_contact: Mutex::new(None),
            fleet: Default::default(),
            run_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            run_slots_size: Mutex::new(slots),
        })
    }

    /// Resizes the run slots to a reloaded `max_concurrent_runs`: more
    /// permits at once, fewer as running runs hand theirs back.
    fn resize_run_slots(&self, want: usize) {
        let mut size = self.run_slots_size.locked();
        let want = run_slots_within(want, self.registry.runtime().run_capacity());
        if want > *size {
            self.run_slots.add_permits(want - *size);
        } else if want < *size {
            let (slots, take) = (self.run_slots.clone(), (*size - want) as u32);
            tokio::spawn(async move {
                if let Ok(p) = slots.acquire_many_owned(take).await {
                    p.forget();
                }
            });
        }
        *size = want;
    }

    /// Job state and run records, and the transitions that change them.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The store, for reading history, logs and state.
    pub fn store(&self) -> &Store {
        self.jobs.store()
    }

    /// Where "now" comes from.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Recent samples of the machine and where `when` conditions stand.
    pub fn monitor(&self) -> &Arc<crate::monitor::Monitor> {
        &self.monitor
    }

    /// Notified when something the scheduler watches changes (a reload,
    /// an enable or disable).
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// Records a round with the fleet's PostgreSQL: when it answered.
    pub fn set_fleet_contact(&self, answered: bool) {
        if answered {
            *self.fleet_contact.locked() = Some(self.clock.now());
        }
    }

    /// Fleet jobs' side of the link with the fleet's PostgreSQL.
    pub fn fleet(&self) -> &Arc<crate::fleet::lease::FleetLink> {
        &self.fleet
    }

    /// When the fleet's PostgreSQL last answered this daemon.
    pub fn fleet_contact(&self) -> Option<DateTime<Utc>> {
        *self.fleet_contact.locked()
    }

    /// Where the daemon bound its HTTP endpoints, for `/health` to say.
    pub fn set_http_addr(&self, addr: std::net::SocketAddr) {
        *self.http_addr.locked() = Some(addr);
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.reading().clone()
    }

    /// Puts a new configuration in force. Where the store and sockets live
    /// cannot change in a running daemon: those settings keep their old
    /// values and the returned notes say so.
    pub fn reload(&self, mut new: Config) -> Vec<String> {
        let old = self.config();
        let mut notes = Vec::new();
        for (what, before, after) in [
            ("data_dir", &old.data_dir, &mut new.data_dir),
            ("plugin_dir", &old.plugin_dir, &mut new.plugin_dir),
            ("[api] socket", &old.socket, &mut new.socket),
        ] {
            if before != after {
                notes.push(format!(
                    "{what} changed from {} to {}; restart opsd to use the new one",
                    before.display(),
                    after.display()
                ));
                *after = before.clone();
            }
        }
        for job in &new.jobs {
            if let Err(e) = crate::grants::fs::ensure_created(&job.grants.fs) {
                notes.push(format!(
                    "job `{}`: cannot create a granted directory: {e}",
                    job.name
                ));
            }
        }
        self.resize_run_slots(new.max_concurrent_runs);
        let targets_changed = old.notify != new.notify;
        *self.config.writing() = Arc::new(new);
        // New `[[notify]]` targets take over at once; what the old ones
        // had queued is still delivered.
        if targets_changed && self.notifying.load(std::sync::atomic::Ordering::SeqCst) {
            self.start_notifications();
        }
        self.changed.notify_one();
        notes
    }

    /// Starts delivering webhook notifications (the daemon does; CLI
    /// commands do not notify).
    pub fn start_notifications(&self) {
        self.notifying
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let targets = self.config().notify.clone();
        *self.notifier.locked() = crate::notify::Notifier::start(targets);
    }

    /// Queues a notification.
    pub fn notify(
        &self,
        event: crate::notify::Event,
        job: &str,
        run: Option<RunRecord>,
        missed: Option<u64>,
    ) {
        self.notifier.locked().send(event, job, run, missed);
    }

    /// Queues an alert's change for the notify targets.
    pub fn notify_alert(&self, notice: &crate::monitor::alert::Notice) {
        use crate::monitor::alert::Change;
        let event = match notice.change {
            Change::Firing | Change::Reminder => crate::notify::Event::Alert,
            Change::Resolved => crate::notify::Event::Resolved,
        };
        self.notifier.locked().send_alert(
            event,
            crate::notify::AlertPayload {
                name: notice.alert.clone(),
                severity: notice.severity,
                message: notice.message.clone(),
                condition: notice.condition.clone(),
                value: notice.value.filter(|v| v.is_finite()),
                since: notice.active_since,
                reminder: notice.change == Change::Reminder,
                suppressed: notice.suppressed,
            },
        );
    }

    /// Puts `new` in force, saying which jobs broke since `before` (the
    /// jobs broken so far; log and webhook) and which recovered; returns
    /// the notes of [`Ops::reload`].
    pub fn put_in_force(&self, new: Config, before: &[crate::config::BrokenJob]) -> Vec<String> {
        let same = |a: &crate::config::BrokenJob| {
            before
                .iter()
                .any(|b| b.name == a.name && b.problems == a.problems)
        };
        for b in new.broken.iter().filter(|b| !same(b)) {
            self.announce_broken(b);
        }
        for b in before {
            if new.find_job(&b.name).is_some() {
                tracing::info!(job = %b.name, "job recovered: it runs again");
            }
        }
        self.reload(new)
    }

    /// Checks the broken jobs of the configuration in force again (its
    /// text, not the file, which may hold edits not yet applied): one
    /// whose cause went away (the mount appeared, the plugin was dropped
    /// in) is put back, and one broken for another reason now says so.
    /// Whether anything changed.
    pub async fn recheck(&self) -> bool {
        let config = self.config();
        if config.broken.is_empty() {
            return false;
        }
        let again = match Config::parse(&config.path, &config.source) {
            Ok(c) => crate::check::sift(c, &self.registry).await,
            Err(e) => {
                tracing::warn!("checking broken jobs again: {e}");
                return false;
            }
        };
        // The same jobs broken for the same reasons: nothing to say.
        if again.broken == config.broken {
            return false;
        }
        for note in self.put_in_force(again, &config.broken) {
            tracing::warn!("{note}");
        }
        true
    }

    /// Says a job was set aside as broken: in the daemon's log and by
    /// webhook.
    pub fn announce_broken(&self, job: &crate::config::BrokenJob) {
        let reason = job.reasons().join("; ");
        tracing::error!(job = %job.name, "job is broken and does not run: {}", crate::escape::line(&reason));
        self.notifier.locked().send_broken(&job.name, reason);
    }

    /// Called by the scheduler each time round its loop: marks the loop
    /// alive and keeps a system sample every [`SAMPLE_EVERY`].
    pub fn heartbeat(&self, now: DateTime<Utc>) {
        *self.tick.locked() = Some(Instant::now());
        let due = {
            let mut last = self.last_sample.locked();
            let due = last.is_none_or(|l| now - l >= SAMPLE_EVERY || now < l);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            // Reading every disk and the CPU takes milliseconds: never on
            // the scheduler's own turn.
            let store = self.jobs.store().clone();
            // The monitor's samples of the last ten minutes, rolled up; a
            // fresh reading when it has none (no sampler yet).
            let rolled = self.monitor.rollup(now - SAMPLE_EVERY);
            let keep = move || {
                let sample = match rolled {
                    Some(s) => crate::system::stored_sample(&s, now),
                    None => crate::system::sample(now),
                };
                if let Err(e) = store.put_sample(&sample, SAMPLE_KEEP) {
                    tracing::warn!(error = %e, "could not keep a system sample");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn_blocking(keep)),
                Err(_) => keep(),
            }
        }
    }

    /// The machine against the runbook's thresholds and the jobs' `when`
    /// conditions: the daemon's samples, or a reading taken now when
    /// there are none (no daemon; blocks for a quarter second, the least
    /// time CPU usage can be measured over).
    pub fn status(&self) -> crate::monitor::MachineStatus {
        use crate::monitor::{MachineStatus, SampleSource, Sampler};
        let config = self.config();
        let jobs = config.conditions();
        let interval = config.monitor_interval;
        if let Some(mut s) = MachineStatus::from_history(
            SampleSource::Daemon,
            interval,
            &self.monitor.history(),
            self.monitor.states(&jobs),
        ) {
            s.alerts = self.monitor.alert_states(&config.alerts);
            return s;
        }
        let (watched, _) = config.watched();
        let mut sampler = Sampler::new();
        std::thread::sleep(std::time::Duration::from_millis(250));
        let sample = sampler.sample(self.clock.now(), &watched, Vec::new());
        let probe = crate::monitor::Monitor::new(MONITOR_WINDOW);
        probe.push(sample.clone());
        // No daemon: alerts as the store last had them.
        for alert in &config.alerts {
            if let Ok(Some(memory)) = self.jobs.alert_memory(&alert.name) {
                probe.restore_alert(alert, &memory);
            }
        }
        let mut st = MachineStatus::from_history(
            SampleSource::Now,
            interval,
            &[sample],
            probe.states(&jobs),
        )
        .expect("one sample was just taken");
        st.alerts = probe.alert_states(&config.alerts);
        st
    }

    /// Whether the scheduler loop is alive and the store takes writes.
    pub fn health(&self, expect_scheduler: bool) -> Health {
        let age = self.tick.locked().map(|t| t.elapsed());
        let mut reasons = Vec::new();
        if expect_scheduler {
            match age {
                None => reasons.push("the scheduler loop has not started".to_owned()),
                Some(a) if a > TICK_STALE => reasons.push(format!(
                    "the scheduler loop last went round {}s ago (it should at least every 60s)",
                    a.as_secs()
                )),
                Some(_) => {}
            }
        }
        let store_writable = match self.jobs.store().probe_write() {
            Ok(()) => true,
            Err(e) => {
                reasons.push(format!("the store does not take writes: {e}"));
                false
            }
        };
        Health {
            status: if reasons.is_empty() {
                HealthStatus::Ok
            } else {
                HealthStatus::Unhealthy
            },
            reasons,
            scheduler_tick_age_seconds: age.map(|a| a.as_secs_f64()),
            store_writable,
            http: self.http_addr.locked().map(|a| a.to_string()),
            jobs: self.config().jobs.len(),
            running: self.running().values().map(Vec::len).sum(),
            version: env!("CARGO_PKG_VERSION").into(),
            config: Some(LoadedConfig {
                path: self.config().path.display().to_string(),
                sha256: self.config().source_sha256.clone(),
            }),
            broken_jobs: self
                .config()
                .broken
                .iter()
                .map(|b| BrokenJobView {
                    job: b.name.clone(),
                    reasons: b.reasons(),
                })
                .collect(),
        }
    }

    /// The registry plugins are found through.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Whether the job fires: `opsd schedule enable|disable` wins over the
    /// config's `enabled`.
    pub fn is_enabled(&self, job: &Job, state: &JobState) -> bool {
        crate::jobs::enabled(job, state)
    }

    /// The next fire time of a job after `now`, never at or before a slot
    /// already fired.
    pub fn next_fire(
        &self,
        job: &Job,
        state: &JobState,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        crate::jobs::next_fire(job, state, now)
    }

    /// Every job with its next and last run.
    pub fn schedule(&self) -> Result<Vec<ScheduleEntry>, OpsError> {
        Ok(self.jobs.entries(&self.config(), self.clock.now())?)
    }

    /// `opsd schedule show`: the job as the configuration in force defines
    /// it, its next fires, and its recent runs.
    pub fn job_detail(&self, name: &str) -> Result<crate::jobs::JobDetail, OpsError> {
        let config = self.config();
        let job = config.job(name)?;
        let now = self.clock.now();
        let entry = self.jobs.entry(job, now)?;
        let recent = self.jobs.store().history(&HistoryQuery {
            job: Some(job.name.clone()),
            limit: Some(5),
            ..Default::default()
        })?;
        let after = entry
            .next
            .map_or(now, |n| n - chrono::Duration::milliseconds(1));
        let upcoming = if entry.enabled {
            job.schedule.upcoming(after, job.timezone, 5)
        } else {
            Vec::new()
        };
        Ok(crate::jobs::JobDetail::new(job, &entry, &upcoming, &recent))
    }

    /// Enables or disables a job; persists across restarts and wins over
    /// the config's `enabled`. Returns the job's schedule entry.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<ScheduleEntry, OpsError> {
        let config = self.config();
        let job = config.job(name)?;
        let now = self.clock.now();
        self.jobs.set_enabled(job, enabled, now)?;
        self.changed.notify_one();
        tracing::info!(job = %job.name, enabled, "job {}", if enabled { "enabled" } else { "disabled" });
        Ok(self.jobs.entry(job, self.clock.now())?)
    }

    /// The Prometheus exposition: the counters and what they do not
    /// count (job state, loaded plugins, the monitor's figures).
    pub fn metrics_text(&self) -> String {
        let config = self.config();
        let running = self.running();
        let jobs = config
            .jobs
            .iter()
            .map(|j| {
                let state = self.jobs.state(&j.name).unwrap_or_default();
                crate::metrics::JobFigures {
                    name: j.name.clone(),
                    enabled: self.is_enabled(j, &state),
                    running: running.get(&j.name).map_or(0, Vec::len),
                    broken: false,
                    state,
                }
            })
            .chain(config.broken.iter().map(|b| crate::metrics::JobFigures {
                name: b.name.clone(),
                enabled: false,
                running: 0,
                broken: true,
                state: self.jobs.state(&b.name).unwrap_or_default(),
            }))
            .collect();
        let conditions = config.conditions();
        self.metrics.render(&crate::metrics::Figures {
            jobs,
            plugins: self.registry().runtime().loaded(),
            history: self.monitor.history(),
            conditions: if conditions.is_empty() {
                Vec::new()
            } else {
                self.monitor.states(&conditions)
            },
            alerts: self.monitor.alert_states(&config.alerts),
            fleet: config.fleet.as_ref().map(|_| {
                use crate::fleet::lease::ClaimCounts as C;
                let c = &self.fleet.counts;
                crate::metrics::FleetFigures {
                    outbox: self.store().outbox_len() as u64,
                    since_contact: self
                        .fleet_contact()
                        .map(|t| (self.clock.now() - t).num_milliseconds() as f64 / 1000.0),
                    claims: [
                        ("won", C::get(&c.won)),
                        ("taken", C::get(&c.taken)),
                        ("refused", C::get(&c.refused)),
                    ],
                    lease_renewals: C::get(&c.renewals),
                    leases_lost: C::get(&c.leases_lost),
                    taken_over: C::get(&c.taken_over),
                    disagreeing: self.fleet.disagreeing() as u64,
                }
            }),
        })
    }

    /// Runs in progress, by job.
    pub fn running(&self) -> HashMap<String, Vec<Running>> {
        self.running.locked().clone()
    }

    /// Whether any run is in progress: the scheduler hands idle memory
    /// back only when none is.
    pub fn any_running(&self) -> bool {
        self.running.locked().values().any(|runs| !runs.is_empty())
    }

    /// The runs in progress of one job; a run start looks here, and copying
    /// every job's list would make each start cost O(jobs).
    pub fn running_of(&self, job: &str) -> Vec<Running> {
        self.running.locked().get(job).cloned().unwrap_or_default()
    }

    /// Asks every run in progress to stop, recording `status` and `why`.
    pub fn cancel_all(&self, status: RunStatus, why: &str) {
        for r in self.running().into_values().flatten() {
            r.cancel.cancel(status, why.to_owned());
        }
    }

    fn queue(&self, job: &str) -> Arc<JobQueue> {
        self.queues
            .locked()
            .entry(job.to_owned())
            .or_default()
            .clone()
    }

    /// Runs a job now, as its overlap policy allows, and returns the
    /// finished record (a `skipped` record when the policy said no).
    pub async fn run_job(&self, name: &str, start: Start) -> Result<RunRecord, OpsError> {
        self.run_job_following(name, start, None).await
    }

    /// Like [`Ops::run_job`], also sending the run's log lines and
    /// progress to `follow` as they happen.
    pub async fn run_job_following(
        &self,
        name: &str,
        start: Start,
        follow: Option<tokio::sync::mpsc::UnboundedSender<LogEvent>>,
    ) -> Result<RunRecord, OpsError> {
        let mut config = self.config();
        // Asked for by hand, a broken job is checked again first: the
        // plugin may have just been dropped in.
        if start.trigger == Trigger::Manual
            && config.broken.iter().any(|b| b.name == name)
            && self.recheck().await
        {
            config = self.config();
        }
        let mut job = config.job(name)?;
        let overridden;
        if !start.overrides.is_empty() {
            overridden = self.overridden(job, &start.overrides).await?;
            job = &overridden;
        }
        let _queued = match self.overlap(job, &start).await {
            Ok(queued) => queued,
            Err(Refused::Skip(why)) => return self.skip(job, start, &why),
            Err(Refused::Error(e)) => return Err(e),
        };
        let run_id = store::new_run_id();
        let claimed = match self.claim(&config, job, &start, &run_id).await? {
            fleet_runs::Claimed::Recorded(rec) => return Ok(rec),
            fleet_runs::Claimed::Run(claimed) => claimed,
        };
        let log = RunLog::new(&job.name, &run_id, job.grants.limits.log_bytes);
        let forwarder = follow.map(|tx| forward(&log, tx));
        let cancel = Cancel::default();
        let held = self.keep_lease(claimed, &cancel);
        self.running
            .locked()
            .entry(job.name.clone())
            .or_default()
            .push(Running {
                run_id: run_id.clone(),
                log: log.clone(),
                cancel: cancel.clone(),
            });
        let result = self.execute(job, &run_id, log, cancel, start, held).await;
        {
            let mut running = self.running.locked();
            if let Some(v) = running.get_mut(&job.name) {
                v.retain(|r| r.run_id != run_id);
                if v.is_empty() {
                    running.remove(&job.name);
                }
            }
        }
        // Every copy of the log is gone now; let the follower drain it, so
        // the last line arrives before the caller reports the end.
        if let Some(f) = forwarder {
            let _ = f.await;
        }
        result
    }
    /// The job with `overrides` set in its `[job.config]`, for one run:
    /// only keys its plugin's schema names (or its config has), and the
    /// result must pass the schema, so `--set` never reaches grants or
    /// job settings and never runs a config `opsd check` would refuse.
    async fn overridden(
        &self,
        job: &Job,
        overrides: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Job, OpsError> {
        let bad = |key: &str, message: String| OpsError::BadOverride {
            job: job.name.clone(),
            key: key.to_owned(),
            message,
        };
        let found = self
            .registry
            .find(&job.plugin)
            .await
            .map_err(|e| bad(overrides.keys().next().map_or("", |k| k), e.to_string()))?;
        let info = &found.plugin.info;
        let schema: serde_json::Value =
            serde_json::from_str(&info.config_schema).unwrap_or_default();
        let known: Vec<String> = schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut config = job.config.clone();
        for (key, value) in overrides {
            crate::check::set_config_key(&mut config, key, value.clone(), &known)
                .map_err(|m| bad(key, m))?;
        }
        if let Some((key, message)) = crate::check::config_findings(&config, info)
            .into_iter()
            .next()
        {
            let key = overrides
                .keys()
                .find(|k| {
                    key.as_deref()
                        .is_some_and(|top| k.split('.').next() == Some(top))
                })
                .or_else(|| overrides.keys().next())
                .map_or(String::new(), Clone::clone);
            return Err(bad(
                &key,
                format!(
                    "plugin {}'s config schema refuses the result: {message}",
                    info.name
                ),
            ));
        }
        let mut job = job.clone();
        job.config = config;
        Ok(job)
    }

    /// Applies the job's overlap policy to a run about to start: a guard
    /// to hold while it runs (its turn in a queue), or why it does not
    /// run.
    async fn overlap(
        &self,
        job: &Job,
        start: &Start,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, Refused> {
        let busy = || self.running_of(&job.name).first().map(|r| r.run_id.clone());
        Ok(match job.policy.overlap {
            Overlap::Allow => None,
            Overlap::Forbid => {
                if let Some(run) = busy() {
                    if start.trigger == Trigger::Manual {
                        return Err(Refused::Error(OpsError::AlreadyRunning {
                            job: job.name.clone(),
                            run,
                        }));
                    }
                    let again = if start.trigger == Trigger::Condition {
                        "; the condition starts the job once this run has ended, if it still holds"
                    } else {
                        ""
                    };
                    return Err(Refused::Skip(format!(
                        "run {run} was still going (overlap = \"forbid\"){again}"
                    )));
                }
                None
            }
            Overlap::Replace => {
                for r in self.running_of(&job.name) {
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
                    return Err(Refused::Skip(format!(
                        "{MAX_QUEUE} runs already waiting (overlap = \"queue\")"
                    )));
                }
                let guard = q.lock.clone().lock_owned().await;
                q.waiting.fetch_sub(1, Ordering::SeqCst);
                Some(guard)
            }
        })
    }

    /// Records a slot that was not run, and why.
    fn skip(&self, job: &Job, start: Start, why: &str) -> Result<RunRecord, OpsError> {
        self.not_run(job, &start, RunStatus::Skipped, why)
    }

    /// Records a run that never started its plugin, with its status and
    /// why.
    fn not_run(
        &self,
        job: &Job,
        start: &Start,
        status: RunStatus,
        why: &str,
    ) -> Result<RunRecord, OpsError> {
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
        rec.condition = start.condition.clone();
        rec.status = status;
        rec.finished = Some(now);
        rec.duration_ms = Some(0);
        if status == RunStatus::Skipped {
            rec.summary = format!("skipped: {why}");
        } else {
            rec.summary = crate::runtime::first_line(why).to_owned();
            rec.error = Some(why.to_owned());
        }
        self.jobs.skipped(&rec)?;
        tracing::warn!(job = %job.name, slot = %start.scheduled, "slot not run: {why}");
        Ok(rec)
    }

    /// Runs the job's plugin and records the run from start to end.
    async fn execute(
        &self,
        job: &Job,
        run_id: &str,
        log: RunLog,
        cancel: Cancel,
        start: Start,
        mut held: Option<fleet_runs::Held>,
    ) -> Result<RunRecord, OpsError> {
        // No retry follows a manual run or the last attempt: its failure
        // is the one to tell people about.
        let final_attempt = start.trigger == Trigger::Manual || start.attempt > job.policy.retries;
        // Until the run gets a slot, `started` is when it was taken up;
        // then it becomes when the plugin starts.
        let mut rec = RunRecord::begin(
            run_id,
            &job.name,
            &job.plugin,
            start.trigger,
            start.scheduled,
            self.clock.now(),
            start.dry_run,
        );
        rec.attempt = start.attempt;
        rec.condition = start.condition.clone();
        rec.overrides = start.overrides.clone();
        if !rec.overrides.is_empty() {
            log.push(
                Level::Info,
                Source::Host,
                &format!(
                    "this run's [job.config] differs from the file's (opsd run --set): {}",
                    crate::record::overrides_text(&rec.overrides)
                ),
            );
        }
        let mut clock_start = Instant::now();
        let found = match held.as_mut().and_then(|h| h.found.take()) {
            Some(found) => Ok(found),
            None => self.find_plugin(job).await,
        };
        let exec = match found {
            Err(e) => Execution::failed(RunStatus::Failed, e),
            Ok(found) => {
                let (exec, began) = self
                    .run_plugin(job, &mut rec, found, &log, cancel, &start)
                    .await?;
                clock_start = began;
                exec
            }
        };
        let exec = match held {
            Some(h) => self.end_claim(&mut rec, exec, h).await,
            None => exec,
        };
        self.finish(job, rec, exec, clock_start.elapsed(), &log, final_attempt)
            .await
    }

    /// The plugin the job names, as long as it is the one the job pins.
    async fn find_plugin(&self, job: &Job) -> Result<crate::plugins::Found, String> {
        let found = self
            .registry
            .find(&job.plugin)
            .await
            .map_err(|e| e.to_string())?;
        match &job.plugin_sha256 {
            Some(pin) if *pin != found.plugin.sha256 => Err(format!(
                "plugin `{}` from {} has sha256 {}, but the job pins plugin_sha256 = \"{pin}\"; update the pin, or restore the file it names",
                job.plugin, found.source, found.plugin.sha256
            )),
            _ => Ok(found),
        }
    }

    /// Records the run durably, waits for a run slot, and runs the
    /// plugin; returns what it did and when (monotonic) it started.
    async fn run_plugin(
        &self,
        job: &Job,
        rec: &mut RunRecord,
        found: crate::plugins::Found,
        log: &RunLog,
        cancel: Cancel,
        start: &Start,
    ) -> Result<(Execution, Instant), OpsError> {
        let crate::plugins::Found { plugin, load, .. } = found;
        rec.plugin_version = plugin.info.version.clone();
        rec.plugin_sha256 = plugin.sha256.clone();
        // A compile is worth saying (seconds for a Python or JavaScript
        // plugin); code from memory or the disk cache is not.
        let compiled = load.source == crate::record::LoadSource::Compiled;
        log.push(
            if compiled { Level::Info } else { Level::Debug },
            Source::Host,
            &if compiled {
                format!(
                    "plugin {} {} was compiled for this machine in {}, before the run (once per plugin file; later runs load it from the cache)",
                    plugin.info.name,
                    plugin.info.version,
                    crate::diag::human_ms(load.ms)
                )
            } else {
                format!(
                    "plugin {} {} ({}, {:.1} ms)",
                    plugin.info.name, plugin.info.version, load.source, load.ms
                )
            },
        );
        rec.plugin_load = Some(load);
        // The record exists, durably, before the plugin starts (runs
        // started together share the fsync).
        self.jobs.recorded(rec).await?;
        // Then the plugin starts once a slot is free; the record's
        // `started` says when, so a wait shows as lateness.
        let slot = match self.run_slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return Err(OpsError::Stopping),
        };
        rec.started = self.clock.now();
        let began = Instant::now();
        self.jobs.started(&job.name, &rec.id, rec.started)?;
        let req = RunRequest {
            jobs: {
                let (config, jobs, clock) = (self.config(), self.jobs.clone(), self.clock.clone());
                Arc::new(move |only: Option<&str>| {
                    match only {
                        Some(name) => jobs.entries_of(&config, name, clock.now()),
                        None => jobs.entries(&config, clock.now()),
                    }
                    .unwrap_or_default()
                })
            },
            job,
            run_id: &rec.id,
            scheduled: start.scheduled,
            attempt: start.attempt,
            dry_run: start.dry_run,
            log: log.clone(),
            store: Some(self.jobs.store().clone()),
            monitor: Some(self.monitor.clone()),
            cancel,
        };
        let exec = self.registry.runtime().run(&plugin, req).await;
        // The instance is gone: the slot's next run need not wait for
        // this one's record to reach the disk.
        drop(slot);
        Ok((exec, began))
    }

    /// Records how the run ended, counts it, and tells whoever is to be
    /// told (a final failure, a recovery).
    async fn finish(
        &self,
        job: &Job,
        mut rec: RunRecord,
        exec: Execution,
        elapsed: std::time::Duration,
        log: &RunLog,
        final_attempt: bool,
    ) -> Result<RunRecord, OpsError> {
        rec.status = exec.status;
        rec.summary = exec.summary;
        rec.details = exec.details;
        rec.error = exec.error;
        rec.metrics = exec.metrics;
        rec.artifacts = exec.artifacts;
        rec.finished = Some(rec.started + chrono::Duration::from_std(elapsed).unwrap_or_default());
        rec.duration_ms = Some(elapsed.as_millis() as u64);
        if let Some(e) = &rec.error {
            log.push(Level::Error, Source::Host, e);
        }
        let previous = self
            .jobs
            .finished(&rec, &log.lines(), final_attempt)
            .await?;
        self.metrics.observe(&rec);
        if final_attempt && rec.status.is_retryable() {
            self.notify(
                crate::notify::Event::Failure,
                &job.name,
                Some(rec.clone()),
                None,
            );
        }
        if rec.status.is_success() && previous.is_some_and(RunStatus::is_retryable) {
            self.notify(
                crate::notify::Event::Recovered,
                &job.name,
                Some(rec.clone()),
                None,
            );
        }
        tracing::info!(
            job = %rec.job, run = %rec.id, status = %rec.status, attempt = rec.attempt, ms = rec.duration_ms.unwrap_or(0),
            "run finished: {}", crate::escape::line(&rec.summary)
        );
        Ok(rec)
    }

    /// Deletes runs beyond each job's `keep_runs` and older than its
    /// `keep_days`; jobs no longer configured keep the defaults' limits.
    pub fn apply_retention(&self) -> Result<usize, OpsError> {
        let now = self.clock.now();
        let mut removed = 0;
        let config = self.config();
        // By name once, not a search of every job per job.
        let policies: HashMap<&str, &crate::policy::Policy> = config
            .jobs
            .iter()
            .map(|j| (j.name.as_str(), &j.policy))
            .collect();
        for name in self.jobs.store().job_names()? {
            let policy = policies
                .get(name.as_str())
                .map(|p| (*p).clone())
                .unwrap_or_default();
            let cutoff = now - chrono::Duration::days(i64::from(policy.keep_days));
            removed += self.jobs.forget_old_runs(&name, policy.keep_runs, cutoff)?;
        }
        if removed > 0 {
            self.jobs.store().flush()?;
            tracing::info!(removed, "retention removed old runs");
        }
        Ok(removed)
    }

    /// Run history, newest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<RunRecord>, OpsError> {
        Ok(self.jobs.store().history(q)?)
    }

    /// What a report over the last `span` needs (that period and the one
    /// before): runs with their metrics, jobs, system samples and the
    /// machine now. `opsd report` builds from this, as the report plugin
    /// builds from the history interface.
    pub fn report_input(
        &self,
        span: chrono::Duration,
    ) -> Result<opsd_report_core::input::Input, OpsError> {
        use opsd_report_core::input::{DiskIn, Input, JobIn, SampleIn};
        let now = self.clock.now();
        let since = now - span * 2;
        let runs = self
            .jobs
            .store()
            .runs_since(since, 10_000, |r: &ReportRun| r.started)?
            .into_iter()
            .map(ReportRun::into_input)
            .collect();
        let mut jobs = Vec::new();
        for e in self.schedule()? {
            let state = self.jobs.store().job_state(&e.job)?.unwrap_or_default();
            // The newest run ever, before the report's span too: a job
            // that ran long ago is not new.
            let last_run = self
                .jobs
                .store()
                .history(&HistoryQuery {
                    job: Some(e.job.clone()),
                    status: None,
                    since: None,
                    limit: Some(1),
                    real_only: false,
                })?
                .first()
                .map(|r| r.started.timestamp());
            jobs.push(JobIn {
                name: e.job,
                plugin: e.plugin,
                schedule: e.schedule,
                enabled: e.enabled,
                next_fire: e.next.map(|t| t.timestamp()),
                last_success: state.last_success.map(|t| t.timestamp()),
                missed_total: state.missed_total,
                last_run,
            });
        }
        let sample = |s: crate::record::SystemSample| SampleIn {
            taken: s.taken.timestamp(),
            cpu_percent: f64::from(s.cpu_percent),
            memory_total: s.memory_total_bytes,
            memory_used: s.memory_used_bytes,
            disks: s
                .disks
                .into_iter()
                .map(|d| DiskIn {
                    mount: d.mount_point,
                    total: d.total_bytes,
                    available: d.available_bytes,
                })
                .collect(),
        };
        Ok(Input {
            // Only the name: a whole snapshot would read the machine a
            // second time (every mount's statvfs) for nothing.
            hostname: crate::system::hostname(),
            now: now.timestamp(),
            runs,
            jobs,
            samples: self
                .jobs
                .store()
                .samples(since)?
                .into_iter()
                .map(sample)
                .collect(),
            // The daemon's newest sample, the one `opsd status` shows; a
            // reading taken now without a daemon.
            current: Some(sample(match self.monitor.latest() {
                Some(s) => crate::system::stored_sample(&s, s.taken),
                None => crate::system::sample(now),
            })),
            hosts: Vec::new(),
        })
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
        match self.jobs.store().log(id)? {
            Some(lines) => Ok(lines),
            None if self.jobs.store().run(id)?.is_some() => Ok(Vec::new()),
            None => Err(OpsError::UnknownRun(id.to_owned())),
        }
    }

    /// One run record.
    pub fn run_record(&self, id: &str) -> Result<RunRecord, OpsError> {
        self.jobs
            .store()
            .run(id)?
            .ok_or_else(|| OpsError::UnknownRun(id.to_owned()))
    }
}

/// A run as a report reads it: metrics and details only for the plugins
/// whose sections need them.
pub fn run_in(r: RunRecord) -> opsd_report_core::input::RunIn {
    ReportRun {
        id: r.id,
        job: r.job,
        plugin: r.plugin,
        status: r.status,
        scheduled: r.scheduled,
        started: r.started,
        finished: r.finished,
        duration_ms: r.duration_ms,
        dry_run: r.dry_run,
        summary: r.summary,
        details: r.details,
        error: r.error,
        metrics: r
            .metrics
            .into_iter()
            .map(|m| MetricValue {
                name: m.name,
                value: m.value,
            })
            .collect(),
    }
    .into_input()
}

/// The fields of a stored [`RunRecord`] a report reads, decoded straight
/// from the store: the rest of each record (artifacts, hashes, the load)
/// is skipped, not built, for the 10,000 runs a report reads.
#[derive(Deserialize)]
struct ReportRun {
    id: String,
    job: String,
    plugin: String,
    status: RunStatus,
    scheduled: DateTime<Utc>,
    started: DateTime<Utc>,
    finished: Option<DateTime<Utc>>,
    duration_ms: Option<u64>,
    dry_run: bool,
    summary: String,
    details: String,
    error: Option<String>,
    metrics: Vec<MetricValue>,
}

/// A metric without its unit, which no report shows.
#[derive(Deserialize)]
struct MetricValue {
    name: String,
    value: f64,
}

impl ReportRun {
    fn into_input(self) -> opsd_report_core::input::RunIn {
        let detailed = opsd_report_core::input::wants_detail(&self.plugin);
        opsd_report_core::input::RunIn {
            scheduled: self.scheduled.timestamp(),
            started: self.started.timestamp(),
            finished: self.finished.map(|t| t.timestamp()),
            status: self.status.as_str().to_owned(),
            duration_ms: self.duration_ms,
            metrics: if detailed {
                self.metrics
                    .into_iter()
                    .map(|m| (m.name, m.value))
                    .collect()
            } else {
                Vec::new()
            },
            details: if detailed {
                self.details
            } else {
                String::new()
            },
            dry_run: self.dry_run,
            id: self.id,
            job: self.job,
            plugin: self.plugin,
            summary: self.summary,
            error: self.error,
            host: None,
        }
    }
}

/// Creates the data directory readable by its owner only: it holds run
/// logs and the control socket.
fn ensure_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "data_dir {} is not a directory; point data_dir at a directory",
            dir.display()
        );
    }
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data_dir {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Why a run did not start: a skip to record, or an error for the caller.
enum Refused {
    Skip(String),
    Error(OpsError),
}

/// Forwards a run's log to a follower until the run ends; a follower that
/// falls behind is told how many lines it missed.
fn forward(
    log: &RunLog,
    tx: tokio::sync::mpsc::UnboundedSender<LogEvent>,
) -> tokio::task::JoinHandle<()> {
    let mut rx = log.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let _ = tx.send(LogEvent::Line(LogLine {
                        ms: 0,
                        level: Level::Warn,
                        source: Source::Host,
                        message: format!("{n} lines not shown: the follower fell behind"),
                    }));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// `max_concurrent_runs` within what the instance pool reserved at start
/// leaves room for, said when it is cut: a run past it would wait for an
/// instance with its timeout running.
fn run_slots_within(want: usize, capacity: usize) -> usize {
    if want > capacity {
        tracing::warn!(
            max_concurrent_runs = want,
            runs = capacity,
            "max_concurrent_runs is above what the instance pool reserved at start holds: {capacity} runs at once until opsd restarts"
        );
        return capacity;
    }
    want
}
