//! Watching the machine: the daemon samples CPU, load, memory, swap, every
//! filesystem, network error counters and HTTP probes every
//! `[monitor] interval` into a bounded ring in memory, and jobs with a
//! `when` condition run when a figure stays past its threshold (the
//! runbook's monitoring table, automated). The store keeps a rolled-up
//! sample every ten minutes for reports.
//!
//! [`Sampler`] reads the machine; [`Ring`] keeps recent samples;
//! [`condition`] decides when a job fires. Tests feed samples to the ring
//! directly.

pub mod alert;
pub mod condition;
pub mod probe;

use crate::locks::Unpoisoned;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// One reading of the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub taken: DateTime<Utc>,
    /// Logical CPUs.
    #[serde(default)]
    pub cpu_count: u32,
    /// All CPUs, percent busy since the previous sample.
    pub cpu_percent: f64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    /// Every mounted filesystem sysinfo lists.
    pub disks: Vec<DiskUse>,
    /// The paths conditions watch, each on its own filesystem.
    pub watched: Vec<DiskUse>,
    /// Receive and transmit errors of all interfaces since boot.
    pub network_errors: u64,
    /// HTTP probes conditions name.
    pub probes: Vec<Probe>,
}

/// How full one filesystem is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskUse {
    /// The mount point, or for a watched path, the path.
    pub path: String,
    pub filesystem: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// Blocks in use (all blocks less free ones), as `df`'s Used column.
    #[serde(default)]
    pub used_bytes: u64,
    /// Used against used plus available, as `df` shows it (blocks reserved
    /// for root count as neither).
    pub used_percent: Option<f64>,
}

/// One HTTP probe's answer time and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub url: String,
    /// None when it failed or timed out.
    pub seconds: Option<f64>,
    /// The status code answered; none when no answer came.
    #[serde(default)]
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Sample {
    pub fn memory_used_percent(&self) -> Option<f64> {
        (self.memory_total_bytes > 0)
            .then(|| self.memory_used_bytes as f64 * 100.0 / self.memory_total_bytes as f64)
    }

    /// Every filesystem once: the mounted ones, then watched paths on
    /// filesystems not among them.
    pub fn filesystems(&self) -> Vec<&DiskUse> {
        let mut all: Vec<&DiskUse> = self.disks.iter().collect();
        all.extend(
            self.watched
                .iter()
                .filter(|d| !self.disks.iter().any(|m| m.path == d.path)),
        );
        all
    }

    pub fn swap_used_percent(&self) -> Option<f64> {
        (self.swap_total_bytes > 0)
            .then(|| self.swap_used_bytes as f64 * 100.0 / self.swap_total_bytes as f64)
    }
}

/// Network errors in the hour up to `sample`: the growth of the counter
/// since the oldest of `history` (oldest first) within that hour. With
/// less than an hour of samples it is the count so far, not scaled up, so
/// a burst in the first minute does not read as a rate. None without an
/// earlier sample; a counter that went down (a reboot, an interface gone)
/// counts from zero.
pub fn network_errors_per_hour(sample: &Sample, history: &[Sample]) -> Option<f64> {
    let hour = chrono::Duration::hours(1);
    let base = history
        .iter()
        .find(|s| s.taken >= sample.taken - hour && s.taken < sample.taken)?;
    Some(sample.network_errors.saturating_sub(base.network_errors) as f64)
}

/// Recent samples, oldest first, at most `window` old.
#[derive(Debug)]
pub struct Ring {
    samples: VecDeque<Sample>,
    window: chrono::Duration,
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new(Duration::from_secs(3600))
    }
}

impl Ring {
    /// A ring keeping `window` of samples (at least an hour, for rates).
    pub fn new(window: Duration) -> Ring {
        Ring {
            samples: VecDeque::new(),
            window: chrono::Duration::from_std(window.max(Duration::from_secs(3600)))
                .unwrap_or(chrono::Duration::hours(1)),
        }
    }

    /// Adds a sample and forgets those older than the window (or newer
    /// than it, after the clock stepped back).
    pub fn push(&mut self, s: Sample) {
        let (from, to) = (s.taken - self.window, s.taken);
        self.samples.retain(|o| o.taken >= from && o.taken < to);
        self.samples.push_back(s);
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Every sample, oldest first.
    pub fn all(&self) -> Vec<Sample> {
        self.samples.iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples taken at or after `since`, oldest first.
    pub fn since(&self, since: DateTime<Utc>) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.taken >= since)
    }
}

/// One job's conditions as [`Monitor::check`] weighs them.
pub struct ConditionsOf<'a> {
    pub job: &'a str,
    pub enabled: bool,
    /// Running, and may not start another run (`overlap = "forbid"`).
    pub busy: bool,
    pub conditions: &'a [condition::Condition],
}

/// A job's condition that holds and should run the job now.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub job: String,
    /// Which of the job's conditions.
    pub index: usize,
    /// The condition described, with the figure that fired it.
    pub reason: String,
    /// When the sample that fired it was taken.
    pub at: DateTime<Utc>,
    /// When it ran the job before this, to go back to if this run does
    /// not start (see [`Monitor::not_run`]).
    pub previous: Option<DateTime<Utc>>,
}

/// Where one job's condition stands, for `opsd status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionState {
    pub job: String,
    /// As `schedule list` shows it: `disk_used_percent(/var) > 90 for 5m`.
    pub condition: String,
    pub metric: String,
    pub threshold: f64,
    pub above: bool,
    /// The latest figure; none when it could not be read.
    pub value: Option<f64>,
    /// Since when it has held, sample after sample.
    pub holding_since: Option<DateTime<Utc>>,
    /// When it last ran the job.
    pub last_fired: Option<DateTime<Utc>>,
}

impl ConditionState {
    /// Whether the latest figure is past the threshold (whether or not
    /// for long enough).
    pub fn past_threshold(&self) -> bool {
        self.value.is_some_and(|v| {
            if self.above {
                v > self.threshold
            } else {
                v < self.threshold
            }
        })
    }
}

/// The daemon's view of the machine: recent samples and where each job
/// condition stands. Samples come from the daemon's sampler, or from a
/// test that pushes its own.
#[derive(Default)]
pub struct Monitor {
    ring: std::sync::Mutex<Ring>,
    /// Per (job, index of its condition).
    episodes: std::sync::Mutex<std::collections::HashMap<(String, usize), condition::Episode>>,
    /// Jobs whose conditions' memory changed since the caller last saved
    /// it (an episode ran the job, or ended).
    changed: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The newest sample conditions were checked against.
    checked: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Woken each time a sample arrives.
    pub sampled: tokio::sync::Notify,
    /// Set by tests that feed samples: the daemon's sampler then stays off.
    external: std::sync::atomic::AtomicBool,
    /// Per `[[alert]]` name.
    alerts: std::sync::Mutex<std::collections::HashMap<String, alert::AlertState>>,
    /// The newest sample alerts were checked against.
    alerts_checked: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Alerts whose memory changed since the caller last saved it.
    alerts_changed: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Monitor {
    /// A monitor keeping `window` of samples in memory.
    pub fn new(window: Duration) -> Monitor {
        Monitor {
            ring: std::sync::Mutex::new(Ring::new(window)),
            ..Monitor::default()
        }
    }

    /// Adds a sample and wakes whoever checks conditions.
    pub fn push(&self, s: Sample) {
        self.ring.locked().push(s);
        self.sampled.notify_one();
    }

    /// Samples come from the caller from now on, not the daemon's sampler.
    pub fn feed_externally(&self) {
        self.external
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the daemon should sample the machine itself.
    pub fn samples_itself(&self) -> bool {
        !self.external.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn latest(&self) -> Option<Sample> {
        self.ring.locked().latest().cloned()
    }

    /// Every sample in memory, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.ring.locked().all()
    }

    /// Mean CPU and the latest of everything else over samples since
    /// `since`: what the store keeps every ten minutes.
    pub fn rollup(&self, since: DateTime<Utc>) -> Option<Sample> {
        let ring = self.ring.locked();
        let recent: Vec<&Sample> = ring.since(since).collect();
        let mut out = (*recent.last()?).clone();
        out.cpu_percent = recent.iter().map(|s| s.cpu_percent).sum::<f64>() / recent.len() as f64;
        Some(out)
    }

    /// Whether a sample has arrived that conditions were not checked
    /// against yet.
    pub fn has_unchecked(&self) -> bool {
        let latest = self.latest().map(|s| s.taken);
        latest.is_some() && *self.checked.locked() != latest
    }

    /// Checks the conditions of `jobs` (name, enabled, conditions) against
    /// every sample not checked yet, oldest first (a condition must hold
    /// in each sample of its window, not only in the newest), and says
    /// which should run now.
    ///
    /// `busy` jobs are running and may not start another run (`overlap =
    /// "forbid"`): a condition whose run was refused for it waits.
    pub fn check(&self, jobs: &[ConditionsOf<'_>]) -> Vec<Fired> {
        let history = self.history();
        let Some(newest) = history.last() else {
            return Vec::new();
        };
        let first_new = {
            let mut checked = self.checked.locked();
            let first = match *checked {
                Some(c) if c == newest.taken => return Vec::new(),
                Some(c) => history.partition_point(|s| s.taken <= c),
                None => history.len() - 1,
            };
            *checked = Some(newest.taken);
            first
        };
        let mut episodes = self.episodes.locked();
        // Conditions of jobs gone or changed by a reload start afresh.
        episodes.retain(|(job, i), _| jobs.iter().any(|j| j.job == job && *i < j.conditions.len()));
        let mut changed = self.changed.locked();
        let mut fired = Vec::new();
        for at in first_new..history.len() {
            let (sample, before) = (&history[at], &history[..at]);
            for ConditionsOf {
                job,
                enabled,
                busy,
                conditions,
            } in jobs
            {
                for (i, cond) in conditions.iter().enumerate() {
                    let episode = episodes.entry((job.to_string(), i)).or_default();
                    let value = cond.metric.value(sample, before);
                    let was = (episode.fired, episode.last_fired);
                    if !enabled {
                        *episode = condition::Episode {
                            value,
                            last_fired: episode.last_fired,
                            ..Default::default()
                        };
                    } else if episode.observe(cond, sample.taken, value, *busy) {
                        fired.push(Fired {
                            job: job.to_string(),
                            index: i,
                            reason: format!(
                                "{}: {}",
                                cond.describe(),
                                value.map_or("-".into(), |v| format!("{v:.1}"))
                            ),
                            at: sample.taken,
                            previous: was.1,
                        });
                    }
                    if (episode.fired, episode.last_fired) != was {
                        changed.insert(job.to_string());
                    }
                }
            }
        }
        fired
    }

    /// A fire whose run did not start (the job was still running under
    /// `overlap = "forbid"`): its episode has not run the job, so the
    /// condition fires again with the next sample it holds in, and the
    /// cooldown counts from the run before.
    pub fn not_run(&self, fired: &Fired) {
        let mut episodes = self.episodes.locked();
        if let Some(e) = episodes.get_mut(&(fired.job.clone(), fired.index))
            && e.last_fired == Some(fired.at)
        {
            e.fired = false;
            e.waiting = true;
            e.last_fired = fired.previous;
            self.changed.locked().insert(fired.job.clone());
        }
    }

    /// Jobs whose conditions' memory changed since the last call.
    pub fn take_changed(&self) -> Vec<String> {
        std::mem::take(&mut *self.changed.locked())
            .into_iter()
            .collect()
    }

    /// What `job`'s conditions remember, to keep across restarts.
    pub fn memory_of(
        &self,
        job: &str,
        conditions: &[condition::Condition],
    ) -> Vec<crate::record::ConditionMemory> {
        let episodes = self.episodes.locked();
        conditions
            .iter()
            .enumerate()
            .map(|(i, cond)| {
                let e = episodes.get(&(job.to_string(), i));
                crate::record::ConditionMemory {
                    condition: cond.describe(),
                    fired: e.is_some_and(|e| e.fired),
                    last_fired: e.and_then(|e| e.last_fired),
                }
            })
            .collect()
    }

    /// Takes back what `job`'s conditions remembered before a restart;
    /// a condition written differently now starts afresh. How long one
    /// has held is not kept: the count starts again with the first sample
    /// (nobody saw the machine while opsd was down).
    pub fn restore(
        &self,
        job: &str,
        conditions: &[condition::Condition],
        memory: &[crate::record::ConditionMemory],
    ) {
        let mut episodes = self.episodes.locked();
        for (i, cond) in conditions.iter().enumerate() {
            if let Some(m) = memory.get(i).filter(|m| m.condition == cond.describe()) {
                episodes.insert(
                    (job.to_string(), i),
                    condition::Episode {
                        fired: m.fired,
                        last_fired: m.last_fired,
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// Checks `alerts` against every sample not checked for them yet,
    /// oldest first, and says what to send.
    pub fn check_alerts(&self, alerts: &[alert::Alert]) -> Vec<alert::Notice> {
        let history = self.history();
        let Some(newest) = history.last() else {
            return Vec::new();
        };
        let first_new = {
            let mut checked = self.alerts_checked.locked();
            let first = match *checked {
                Some(c) if c == newest.taken => return Vec::new(),
                Some(c) => history.partition_point(|s| s.taken <= c),
                None => history.len() - 1,
            };
            *checked = Some(newest.taken);
            first
        };
        let mut states = self.alerts.locked();
        // Alerts a reload removed are forgotten; changed ones start afresh.
        states.retain(|name, _| alerts.iter().any(|a| a.name == *name));
        let mut changed = self.alerts_changed.locked();
        let mut out = Vec::new();
        for at in first_new..history.len() {
            let (sample, before) = (&history[at], &history[..at]);
            for a in alerts {
                let state = states.entry(a.name.clone()).or_default();
                let was = (state.active_since, state.last_sent);
                let held_back = state.suppressed;
                let value = a.condition.metric.value(sample, before);
                if let Some(change) = state.observe(a, sample.taken, value) {
                    out.push(alert::Notice {
                        alert: a.name.clone(),
                        severity: a.severity,
                        message: a.message.clone(),
                        condition: a.condition.describe_shown(),
                        change,
                        value,
                        active_since: state.active_since.or(was.0),
                        at: sample.taken,
                        suppressed: if change == alert::Change::Reminder {
                            held_back
                        } else {
                            0
                        },
                    });
                }
                if (state.active_since, state.last_sent) != was {
                    changed.insert(a.name.clone());
                }
            }
        }
        out
    }

    /// Takes back what an alert remembered before a restart.
    pub fn restore_alert(&self, alert: &alert::Alert, memory: &crate::record::AlertMemory) {
        if let Some(state) = alert::AlertState::restored(alert, memory) {
            self.alerts.locked().insert(alert.name.clone(), state);
        }
    }

    /// Alerts whose memory changed since the last call, with it.
    pub fn take_alerts_changed(
        &self,
        alerts: &[alert::Alert],
    ) -> Vec<(String, crate::record::AlertMemory)> {
        let names = std::mem::take(&mut *self.alerts_changed.locked());
        let states = self.alerts.locked();
        names
            .into_iter()
            .filter_map(|n| {
                let a = alerts.iter().find(|a| a.name == n)?;
                Some((
                    n,
                    states.get(&a.name).cloned().unwrap_or_default().memory(a),
                ))
            })
            .collect()
    }

    /// Where every alert stands.
    pub fn alert_states(&self, alerts: &[alert::Alert]) -> Vec<alert::AlertStatus> {
        let history = self.history();
        let states = self.alerts.locked();
        alerts
            .iter()
            .map(|a| {
                let mut state = states.get(&a.name).cloned().unwrap_or_default();
                if state.value.is_none()
                    && let Some((last, before)) = history.split_last()
                {
                    state.value = a.condition.metric.value(last, before);
                }
                alert::AlertStatus::of(a, &state)
            })
            .collect()
    }

    /// Where every condition of `jobs` stands.
    pub fn states(&self, jobs: &[(&str, &[condition::Condition])]) -> Vec<ConditionState> {
        let history = self.history();
        let episodes = self.episodes.locked();
        let mut out = Vec::new();
        for (job, conditions) in jobs {
            for (i, cond) in conditions.iter().enumerate() {
                let episode = episodes
                    .get(&(job.to_string(), i))
                    .cloned()
                    .unwrap_or_default();
                let value = episode.value.or_else(|| {
                    let (last, before) = history.split_last()?;
                    cond.metric.value(last, before)
                });
                let (threshold, above) = match cond.bound {
                    condition::Bound::Above(t) => (t, true),
                    condition::Bound::Below(t) => (t, false),
                };
                out.push(ConditionState {
                    job: job.to_string(),
                    condition: cond.describe(),
                    metric: cond.metric.label(),
                    threshold,
                    above,
                    value,
                    holding_since: episode.since,
                    last_fired: episode.last_fired,
                });
            }
        }
        out
    }
}

/// The runbook's monitoring table, in percent (CPU for five minutes), and
/// its network errors an hour: what `opsd status` holds figures against.
pub const CPU_LIMIT: f64 = opsd_report_core::model::CPU_LIMIT;
pub const CPU_LIMIT_FOR: Duration = Duration::from_secs(300);
pub const MEMORY_LIMIT: f64 = opsd_report_core::model::MEMORY_LIMIT;
pub const DISK_LIMIT: f64 = opsd_report_core::model::DISK_LIMIT;
pub const NETWORK_ERRORS_LIMIT: f64 = 100.0;

/// Where `opsd status` got its figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleSource {
    /// The running daemon's newest sample.
    Daemon,
    /// Read by the command itself, when no daemon runs.
    Now,
}

/// The machine against its thresholds: what `opsd status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineStatus {
    pub source: SampleSource,
    pub interval_seconds: u64,
    pub sample: Sample,
    pub network_errors_per_hour: Option<f64>,
    /// How long CPU has stayed above the runbook's limit, sample after
    /// sample.
    pub cpu_above_limit_for_seconds: Option<u64>,
    pub conditions: Vec<ConditionState>,
    /// Every `[[alert]]`: active or not, when last sent, repeats held back.
    #[serde(default)]
    pub alerts: Vec<alert::AlertStatus>,
}

impl MachineStatus {
    /// Figures from `history` (oldest first; the newest is the sample).
    pub fn from_history(
        source: SampleSource,
        interval: Duration,
        history: &[Sample],
        conditions: Vec<ConditionState>,
    ) -> Option<MachineStatus> {
        let (sample, before) = history.split_last()?;
        let busy_since = history
            .iter()
            .rev()
            .take_while(|s| s.cpu_percent > CPU_LIMIT)
            .last()
            .map(|s| s.taken);
        Some(MachineStatus {
            source,
            interval_seconds: interval.as_secs(),
            sample: sample.clone(),
            network_errors_per_hour: network_errors_per_hour(sample, before),
            cpu_above_limit_for_seconds: busy_since
                .map(|t| (sample.taken - t).num_seconds().max(0) as u64),
            conditions,
            alerts: Vec::new(),
        })
    }
}

/// Reads the machine through sysinfo. CPU usage is a difference between
/// two readings, so one sampler lives as long as the daemon.
pub struct Sampler {
    system: Option<sysinfo::System>,
    networks: Option<sysinfo::Networks>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// Takes the first CPU reading, the baseline of the first sample.
    pub fn new() -> Sampler {
        let system = sysinfo::System::new().ok().map(|mut s| {
            s.refresh_cpu_usage();
            s
        });
        Sampler {
            system,
            networks: sysinfo::Networks::new_with_refreshed_list().ok(),
        }
    }

    /// The machine now, with the `watched` paths' filesystems and the
    /// `probes` already measured. Blocking: reads /proc and every mount.
    pub fn sample(
        &mut self,
        taken: DateTime<Utc>,
        watched: &[String],
        probes: Vec<Probe>,
    ) -> Sample {
        let mut s = Sample {
            taken,
            probes,
            ..Sample::default()
        };
        if let Some(sys) = self.system.as_mut() {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            s.cpu_percent = f64::from(sys.global_cpu_usage());
            s.cpu_count = sys.cpus().len() as u32;
            s.memory_total_bytes = sys.total_memory();
            s.memory_used_bytes = sys.used_memory();
            s.swap_total_bytes = sys.total_swap();
            s.swap_used_bytes = sys.used_swap();
        }
        if let Ok(l) = sysinfo::System::load_average() {
            s.load = [l.one, l.five, l.fifteen];
        }
        if let Some(n) = self.networks.as_mut() {
            n.refresh(true);
            s.network_errors = n
                .values()
                .map(|d| d.total_errors_on_received() + d.total_errors_on_transmitted())
                .sum();
        }
        if let Ok(disks) = sysinfo::Disks::new_with_refreshed_list() {
            s.disks = disks
                .iter()
                .map(|d| {
                    let path = d.mount_point().to_string_lossy().into_owned();
                    let mut u = disk_use(d.mount_point()).unwrap_or_default();
                    u.path = path;
                    u.filesystem = d.file_system().to_string_lossy().into_owned();
                    if u.total_bytes == 0 {
                        u.total_bytes = d.total_space();
                        u.available_bytes = d.available_space();
                        u.used_bytes = u.total_bytes.saturating_sub(u.available_bytes);
                    }
                    u
                })
                .collect();
        }
        s.watched = watched
            .iter()
            .map(|p| {
                disk_use(std::path::Path::new(p)).unwrap_or_else(|| DiskUse {
                    path: p.clone(),
                    ..DiskUse::default()
                })
            })
            .collect();
        s
    }
}

/// How full the filesystem holding `path` is, read with statvfs(3).
pub fn disk_use(path: &std::path::Path) -> Option<DiskUse> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is NUL-terminated and `st` is read only after statvfs(3)
    // returned 0, having written it.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    let unit = st.f_frsize;
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    let usable = used + st.f_bavail;
    Some(DiskUse {
        path: path.to_string_lossy().into_owned(),
        filesystem: String::new(),
        total_bytes: st.f_blocks.saturating_mul(unit),
        available_bytes: st.f_bavail.saturating_mul(unit),
        used_bytes: used.saturating_mul(unit),
        used_percent: (usable > 0).then(|| used as f64 * 100.0 / usable as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    #[test]
    fn network_errors_are_a_rate_over_the_last_hour() {
        let s = |t: i64, errors: u64| Sample {
            taken: at(t),
            network_errors: errors,
            ..Sample::default()
        };
        let history = vec![s(-7200, 0), s(-3600, 100), s(-1800, 150), s(0, 250)];
        // From the sample an hour ago: 150 errors in one hour.
        assert_eq!(network_errors_per_hour(&history[3], &history), Some(150.0));
        // Half an hour of history: the count so far, not scaled up.
        assert_eq!(
            network_errors_per_hour(&history[3], &history[2..]),
            Some(100.0)
        );
        // No history: no rate. A reset counter counts from zero.
        assert_eq!(network_errors_per_hour(&history[3], &history[3..]), None);
        assert_eq!(network_errors_per_hour(&s(600, 5), &[s(0, 250)]), Some(0.0));
    }

    #[test]
    fn the_ring_keeps_its_window() {
        let mut r = Ring::new(Duration::from_secs(3600));
        for t in (0..=7200).step_by(600) {
            r.push(Sample {
                taken: at(t),
                ..Sample::default()
            });
        }
        assert_eq!(r.len(), 7, "an hour of ten-minute samples, both ends");
        // The clock stepped back: later samples are dropped.
        r.push(Sample {
            taken: at(3000),
            ..Sample::default()
        });
        assert_eq!(r.len(), 1);
    }

    fn cpu(t: i64, percent: f64) -> Sample {
        Sample {
            taken: at(t),
            cpu_percent: percent,
            ..Sample::default()
        }
    }

    fn conditions(text: &str) -> Vec<condition::Condition> {
        let raw: condition::RawCondition = toml::from_str(text).expect("condition");
        vec![condition::Condition::from_raw(&raw).expect("valid")]
    }

    fn job<'a>(conds: &'a [condition::Condition], busy: bool) -> [ConditionsOf<'a>; 1] {
        [ConditionsOf {
            job: "j",
            enabled: true,
            busy,
            conditions: conds,
        }]
    }

    #[test]
    fn a_condition_holds_over_every_sample_not_only_the_newest() {
        let c = conditions("metric = \"cpu_percent\"\nabove = 80\nfor = \"2m\"\ncooldown = \"0s\"");
        let m = Monitor::new(Duration::from_secs(3600));
        m.push(cpu(0, 95.0));
        assert!(m.check(&job(&c, false)).is_empty());
        // Two samples arrive before the next check; the first dips.
        m.push(cpu(60, 50.0));
        m.push(cpu(120, 95.0));
        assert!(
            m.check(&job(&c, false)).is_empty(),
            "the dip at 60 s ended the episode"
        );
        m.push(cpu(240, 95.0));
        let fired = m.check(&job(&c, false));
        assert_eq!(fired.len(), 1, "held from 120 s to 240 s");
        assert_eq!(fired[0].at, at(240));
    }

    #[test]
    fn what_a_condition_remembers_survives_a_restart() {
        let c = conditions("metric = \"cpu_percent\"\nabove = 80\ncooldown = \"1h\"");
        let m = Monitor::new(Duration::from_secs(3600));
        m.push(cpu(0, 95.0));
        assert_eq!(m.check(&job(&c, false)).len(), 1);
        assert_eq!(m.take_changed(), ["j"]);
        let memory = m.memory_of("j", &c);
        assert!(memory[0].fired && memory[0].last_fired == Some(at(0)));
        // A new daemon: the same episode does not fire again...
        let again = Monitor::new(Duration::from_secs(3600));
        again.restore("j", &c, &memory);
        again.push(cpu(60, 95.0));
        assert!(again.check(&job(&c, false)).is_empty());
        // ...nor a new one inside the cooldown...
        again.push(cpu(120, 10.0));
        again.push(cpu(180, 95.0));
        assert!(again.check(&job(&c, false)).is_empty());
        // ...but a condition written differently starts afresh.
        let other = conditions("metric = \"cpu_percent\"\nabove = 70\ncooldown = \"1h\"");
        let fresh = Monitor::new(Duration::from_secs(3600));
        fresh.restore("j", &other, &memory);
        fresh.push(cpu(60, 95.0));
        assert_eq!(fresh.check(&job(&other, false)).len(), 1);
    }

    #[test]
    fn a_fire_that_did_not_start_waits_for_the_job_to_be_idle() {
        let c = conditions("metric = \"cpu_percent\"\nabove = 80\ncooldown = \"10m\"");
        let m = Monitor::new(Duration::from_secs(3600));
        m.push(cpu(0, 95.0));
        let fired = m.check(&job(&c, true));
        assert_eq!(fired.len(), 1, "nothing waits yet: the fire is tried");
        m.not_run(&fired[0]);
        // While the job runs, no fire (and no skipped run each sample).
        m.push(cpu(60, 95.0));
        assert!(m.check(&job(&c, true)).is_empty());
        // Idle again and still holding: it fires, its cooldown untouched
        // by the fire that did not run.
        m.push(cpu(120, 95.0));
        let fired = m.check(&job(&c, false));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].previous, None);
    }

    #[test]
    fn a_real_sample_reads_this_machine() {
        let mut sampler = Sampler::new();
        let s = sampler.sample(Utc::now(), &["/".into()], Vec::new());
        assert!(s.memory_total_bytes > 0);
        let root = &s.watched[0];
        assert!(
            root.total_bytes > 0 && root.used_percent.is_some(),
            "{root:?}"
        );
    }
}
