//! The report as data: what `--format json` prints and what the Markdown,
//! text and HTML renderings show. Versioned by `schema`; fields are only
//! added within a version.

use serde::{Deserialize, Serialize};

/// The schema name and version of [`Report`].
pub const SCHEMA: &str = "opsd.report/1";

/// The runbook's resource thresholds, in percent.
pub const CPU_LIMIT: f64 = 80.0;
pub const MEMORY_LIMIT: f64 = 85.0;
pub const DISK_LIMIT: f64 = 90.0;

/// How long a level must hold to count as a peak: the runbook's CPU
/// limit is "80 % for 5 minutes".
pub const PEAK_WINDOW_S: i64 = 300;

/// The least history a disk trend (growth, a projected full date) is
/// drawn from: samples spanning six hours, six of them at least. Less,
/// and a minute of noise reads as "full by tomorrow".
pub const TREND_MIN_SPAN_S: i64 = 6 * 3600;
pub const TREND_MIN_SAMPLES: usize = 6;

/// The time covered and the one before it, for comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodOut {
    /// `daily`, `weekly`, `monthly` or `custom`.
    pub kind: String,
    pub from: String,
    pub to: String,
    pub previous_from: String,
    pub previous_to: String,
}

/// Run counts over all jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub runs: u64,
    pub ok: u64,
    pub warning: u64,
    pub failed: u64,
    /// Slots skipped by overlap or catch-up policy.
    pub missed: u64,
    /// ok + warning over finished runs, percent; none without runs.
    pub success_rate: Option<f64>,
}

/// Duration percentiles of finished runs, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    pub p50: u64,
    pub p95: u64,
    pub max: u64,
}

/// A failed run, with the first line of its error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub run: String,
    pub at: String,
    pub status: String,
    pub error: String,
}

/// One job over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub name: String,
    pub plugin: String,
    pub schedule: String,
    pub enabled: bool,
    pub runs: u64,
    pub ok: u64,
    pub warning: u64,
    pub failed: u64,
    pub missed: u64,
    pub success_rate: Option<f64>,
    pub previous_success_rate: Option<f64>,
    pub failures: Vec<Failure>,
    pub duration_ms: Option<Durations>,
    pub previous_duration_ms: Option<Durations>,
    pub last_success: Option<String>,
    /// Seconds from the last success to the report's time.
    pub since_last_success_s: Option<i64>,
    pub next_fire: Option<String>,
    /// Dry runs in the period, counted in nothing else: they change
    /// nothing, so they say nothing of how the job does.
    #[serde(default)]
    pub dry_runs: u64,
    /// For a job whose first slot has not come yet (no run finished, no
    /// slot missed): when it is due. Such a job is new, not failing.
    #[serde(default)]
    pub first_run_due: Option<String>,
}

/// A backup job's latest good backup and size trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    pub job: String,
    pub last_ok: Option<String>,
    pub age_s: Option<i64>,
    pub bytes_last: Option<f64>,
    /// (Unix seconds, bytes) of each good backup, oldest first.
    pub series: Vec<(i64, f64)>,
    /// Growth of the backup size, bytes per day (least squares).
    pub growth_bytes_per_day: Option<f64>,
}

/// A backup set's newest good restore drill (by a `restore-drill` job, or
/// a backup job with `verify = "restore"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The source name the set's files are named after.
    pub set: String,
    /// The job that ran the drill.
    pub job: String,
    /// When the drill finished.
    pub at: String,
    pub age_s: i64,
    /// When the dump it restored was made.
    pub dump_time: Option<String>,
    pub tables: u64,
    pub rows: u64,
}

/// A cert-renew job's view of its certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertReport {
    pub job: String,
    pub at: String,
    pub min_days_left: Option<f64>,
    pub renewed_in_period: u64,
    pub summary: String,
}

/// The effect of a vacuum job's latest run: each `X_before`/`X_after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VacuumReport {
    pub job: String,
    pub at: String,
    /// (name, before, after).
    pub effects: Vec<(String, f64, f64)>,
}

/// An audit job's latest findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub job: String,
    pub at: String,
    /// Findings by severity, P0..P3.
    pub by_severity: [u64; 4],
    /// New and resolved across the period's audit runs.
    pub new: u64,
    pub resolved: u64,
    /// The latest run's "new" lines.
    pub new_lines: Vec<String>,
}

/// One file system now, and where it is heading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskReport {
    pub mount: String,
    pub total_bytes: u64,
    pub used_percent: f64,
    /// Growth of used bytes per day over the period's samples.
    pub growth_bytes_per_day: Option<f64>,
    /// When it fills at that rate; none when not growing or without
    /// history enough for a trend.
    pub projected_full: Option<String>,
    /// Why there is no trend: `not enough history for a trend (X of 6
    /// hours, N of 6 samples)`.
    #[serde(default)]
    pub trend_note: Option<String>,
    /// (Unix seconds, used percent) over the period.
    pub series: Vec<(i64, f64)>,
}

/// The machine against the runbook's thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemReport {
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Highest level held over `peak_window_s` (the least of the samples
    /// in a window that long, at its highest), so one busy sample is no
    /// peak; none when no window of samples spans that long.
    pub cpu_peak: Option<f64>,
    pub memory_peak: Option<f64>,
    /// The window peaks are held over, seconds.
    #[serde(default)]
    pub peak_window_s: u64,
    pub disks: Vec<DiskReport>,
    /// (Unix seconds, cpu percent, memory percent) over the period.
    pub series: Vec<(i64, f64, f64)>,
    pub thresholds: Thresholds,
}

/// The limits the report measures against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub disk_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cpu_percent: CPU_LIMIT,
            memory_percent: MEMORY_LIMIT,
            disk_percent: DISK_LIMIT,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub generated: String,
    pub host: String,
    pub period: PeriodOut,
    pub totals: Totals,
    /// What needs someone's attention, most urgent first.
    pub attention: Vec<String>,
    pub jobs: Vec<JobReport>,
    pub backups: Vec<BackupReport>,
    /// The newest good restore drill of each backup set in the report's span.
    #[serde(default)]
    pub drills: Vec<DrillReport>,
    pub certificates: Vec<CertReport>,
    pub vacuum: Vec<VacuumReport>,
    pub audit: Vec<AuditReport>,
    pub system: SystemReport,
    /// A fleet report's hosts, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostReport>,
}

/// One host of the fleet over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub name: String,
    pub labels: String,
    pub last_seen: Option<String>,
    /// Seconds from its last heartbeat to the report's time.
    pub last_seen_age_s: Option<i64>,
    pub outbox: u64,
    pub runs: u64,
    pub ok: u64,
    pub warning: u64,
    pub failed: u64,
    pub success_rate: Option<f64>,
    /// The jobs it ran in the period, with how many runs each.
    pub jobs: Vec<(String, u64)>,
}
