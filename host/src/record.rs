//! The records opsd keeps and shows: runs, their logs and per-job state.
//! They are the JSON of `--json` output and of the control socket, so
//! their field names are part of the interface.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a run stands or how it ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Started and not finished (or the process died; see `interrupted`).
    Running,
    Ok,
    Warning,
    Failed,
    /// Stopped at the job's timeout.
    Timeout,
    /// opsd stopped while it ran.
    Interrupted,
    /// Stopped on purpose: replaced by a newer run (`overlap = "replace"`).
    Cancelled,
    /// Not started: the previous run was still going (`overlap =
    /// "forbid"`, or a full queue).
    Skipped,
}

words!(RunStatus {
    Running => "running",
    Ok => "ok",
    Warning => "warning",
    Failed => "failed",
    Timeout => "timeout",
    Interrupted => "interrupted",
    Cancelled => "cancelled",
    Skipped => "skipped",
});

impl RunStatus {
    /// The ways a run ends: every per-job counter has one series each,
    /// from the start, at 0.
    pub const ENDINGS: [RunStatus; 7] = [
        RunStatus::Ok,
        RunStatus::Warning,
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::Interrupted,
        RunStatus::Cancelled,
        RunStatus::Skipped,
    ];

    /// Whether `opsd run` exits 0 for it.
    pub fn is_success(self) -> bool {
        matches!(self, RunStatus::Ok | RunStatus::Warning)
    }

    /// Whether a retry may help: the run failed or ran out of time.
    pub fn is_retryable(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Timeout)
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Its schedule came due.
    Schedule,
    /// Someone ran `opsd run`.
    Manual,
    /// A slot missed while opsd was down (or the machine asleep).
    #[serde(rename = "catch-up")]
    CatchUp,
    /// Another attempt after a failure.
    Retry,
    /// A `when` condition on the machine held (the record's `condition`
    /// says which).
    Condition,
}

/// A number the plugin reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: Option<String>,
}

/// Something the run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: String,
    pub kind: String,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
}

/// How the plugin's compiled code was obtained for this run; shows that
/// a restart reuses the on-disk compile cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginLoad {
    pub source: LoadSource,
    /// Time spent compiling or loading, in milliseconds.
    pub ms: f64,
}

/// Where a run's compiled plugin code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadSource {
    /// Compiled from the component for this run.
    Compiled,
    /// Read from the on-disk compile cache.
    DiskCache,
    /// Already loaded by this process.
    Memory,
}

words!(LoadSource {
    Compiled => "compiled",
    DiskCache => "disk-cache",
    Memory => "memory",
});

/// One run of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// ULID: unique and time-ordered.
    pub id: String,
    pub job: String,
    pub plugin: String,
    pub plugin_version: String,
    pub plugin_sha256: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    /// For a run a `when` condition started: which, and the figure then
    /// (`disk_used_percent(/var) > 90 for 5m: 93.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The fire time this run serves.
    pub scheduled: DateTime<Utc>,
    /// When the plugin started: after its plugin was loaded, the record
    /// made durable and a run slot free, so `started - scheduled` is the
    /// whole lateness. (While the run waits for those, it is when opsd
    /// took the run up.)
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    /// From `started` to the plugin's answer.
    pub duration_ms: Option<u64>,
    pub attempt: u32,
    pub dry_run: bool,
    pub summary: String,
    pub details: String,
    /// Why it failed, in words an operator can act on.
    pub error: Option<String>,
    pub metrics: Vec<Metric>,
    pub artifacts: Vec<Artifact>,
    pub plugin_load: Option<PluginLoad>,
    /// `[job.config]` keys a manual run set for itself (`opsd run --set
    /// KEY=VALUE`), with the values it ran with: history says the run was
    /// not the configured job.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub overrides: std::collections::BTreeMap<String, serde_json::Value>,
    /// A fleet job's run: the slot it claimed, and what became of the
    /// claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetClaim>,
}

/// How a fleet job's run held its slot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FleetClaim {
    /// The slot's key in the fleet: its time (RFC 3339, UTC), or
    /// `manual RUN` for a run started by hand.
    pub slot: String,
    /// The attempt it took over from a host whose lease ran out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over: Option<TookOver>,
    /// Why the run lost its lease, when it did: its result does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_lost: Option<String>,
}

/// The attempt a run took over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TookOver {
    pub host: String,
    pub run: String,
    pub lease_until: DateTime<Utc>,
}

/// A run's overrides for people: `force=true, rotate=0`.
pub fn overrides_text(overrides: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl RunRecord {
    /// A run that is about to start: `running`, nothing known yet but its
    /// identity and timing.
    pub fn begin(
        id: &str,
        job: &str,
        plugin: &str,
        trigger: Trigger,
        scheduled: DateTime<Utc>,
        started: DateTime<Utc>,
        dry_run: bool,
    ) -> RunRecord {
        RunRecord {
            id: id.to_owned(),
            job: job.to_owned(),
            plugin: plugin.to_owned(),
            plugin_version: String::new(),
            plugin_sha256: String::new(),
            status: RunStatus::Running,
            trigger,
            condition: None,
            scheduled,
            started,
            finished: None,
            duration_ms: None,
            attempt: 1,
            dry_run,
            summary: String::new(),
            details: String::new(),
            error: None,
            metrics: Vec::new(),
            artifacts: Vec::new(),
            plugin_load: None,
            overrides: Default::default(),
            fleet: None,
        }
    }
}

/// One captured log line of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the run started.
    pub ms: u64,
    pub level: Level,
    pub source: Source,
    pub message: String,
}

/// How much a log line matters, as the plugin's `log` interface and
/// tracing grade it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

words!(Level {
    Trace => "trace",
    Debug => "debug",
    Info => "info",
    Warn => "warn",
    Error => "error",
});

/// Who wrote a log line: the plugin through its `log` interface, its
/// stdout or stderr, or opsd itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Plugin,
    Stdout,
    Stderr,
    Host,
}

words!(Source {
    Plugin => "plugin",
    Stdout => "stdout",
    Stderr => "stderr",
    Host => "host",
});

/// What the store remembers about a job between runs and restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Digest of the definition last seen, to notice changes.
    pub definition: Option<String>,
    /// Set by `opsd schedule enable|disable`; wins over the config.
    pub enabled_override: Option<bool>,
    /// The last slot the scheduler fired (so no slot fires twice).
    pub last_fire: Option<DateTime<Utc>>,
    pub next_fire: Option<DateTime<Utc>>,
    pub last_run: Option<String>,
    pub last_status: Option<RunStatus>,
    pub last_started: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// Slots not run: skipped by overlap or catch-up policy, or past
    /// their deadline.
    #[serde(default)]
    pub missed_total: u64,
    /// How the last run with no retry after it ended; a success after a
    /// failure here is a recovery.
    #[serde(default)]
    pub last_final_status: Option<RunStatus>,
    /// How long the last finished run took: a daily job's duration, which
    /// a rate over an hour of a histogram never shows.
    #[serde(default)]
    pub last_duration_ms: Option<u64>,
    /// Where each `when` condition stood, so a restart neither runs a
    /// remediation inside its cooldown nor twice in one episode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionMemory>,
}

/// What a job's condition remembers across restarts: the condition as
/// written (a changed one starts afresh), whether its current episode ran
/// the job, and when it last did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConditionMemory {
    pub condition: String,
    pub fired: bool,
    pub last_fired: Option<DateTime<Utc>>,
}

/// How urgent an alert is: the runbook's incident levels, P0 (everything
/// is down, wake someone) to P3 (look at it this week). Notify targets
/// choose alerts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

words!(Severity {
    P0 => "P0",
    P1 => "P1",
    P2 => "P2",
    P3 => "P3",
});

impl Severity {
    /// Every level, most urgent first.
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];

    /// Reads `P0` to `P3` (any case), or says what is accepted.
    pub fn parse(text: &str) -> Result<Severity, String> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| format!("unknown severity `{text}`; use P0, P1, P2 or P3"))
    }
}

/// What an alert remembers across restarts, so one active before a
/// restart is not sent again as new, and its clearing after the restart
/// is still sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertMemory {
    /// The condition as written: a changed one starts afresh.
    pub condition: String,
    /// Since when it has been active (notified); none when clear.
    pub active_since: Option<DateTime<Utc>>,
    /// When the last notification (the first or a reminder) was sent.
    pub last_sent: Option<DateTime<Utc>>,
    /// Samples it held in since then without a notification.
    #[serde(default)]
    pub suppressed: u64,
}

/// The machine at one moment, kept so reports can show trends (disk
/// growth, a projected disk-full date) and compare periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemSample {
    pub taken: DateTime<Utc>,
    pub cpu_percent: f32,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub disks: Vec<DiskSample>,
}

/// One file system in a [`SystemSample`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSample {
    pub mount_point: String,
    /// Used plus available, as `df` reckons Use% (see `system`).
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// Whether `total_bytes` is on that basis; samples kept before it was
    /// held the raw size, and are left out of trends (see
    /// `Store::samples`).
    #[serde(default)]
    pub df_basis: bool,
}

/// One row of `opsd schedule list`: a job as the schedule and its last
/// run show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleEntry {
    pub job: String,
    pub plugin: String,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    /// Next fire time; null when disabled or never (`@reboot`, or only
    /// `when` conditions).
    pub next: Option<DateTime<Utc>>,
    /// The job's `when` conditions, described.
    #[serde(default)]
    pub when: Vec<String>,
    /// When the last run started.
    pub last: Option<DateTime<Utc>>,
    pub last_status: Option<RunStatus>,
    pub last_run: Option<String>,
    /// Why the job cannot run, when the configuration defines it but it
    /// is broken (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words shown are the words stored: `as_str` agrees with serde.
    #[test]
    fn shown_words_are_the_stored_words() {
        fn same<T: Serialize + std::fmt::Display>(all: &[T]) {
            for v in all {
                assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{v}\""));
            }
        }
        use RunStatus as R;
        same(&[
            R::Running,
            R::Ok,
            R::Warning,
            R::Failed,
            R::Timeout,
            R::Interrupted,
            R::Cancelled,
            R::Skipped,
        ]);
        use Level as L;
        same(&[L::Trace, L::Debug, L::Info, L::Warn, L::Error]);
        same(&[Source::Plugin, Source::Stdout, Source::Stderr, Source::Host]);
        same(&[
            LoadSource::Compiled,
            LoadSource::DiskCache,
            LoadSource::Memory,
        ]);
    }
}
