//! What a report is built from, independent of where it came from: the
//! report plugin fills it through the host's history interface, `opsd
//! report` from the store directly. Times are Unix seconds.

use serde::{Deserialize, Serialize};

/// One run, as history lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIn {
    pub id: String,
    pub job: String,
    pub plugin: String,
    pub scheduled: i64,
    pub started: i64,
    pub finished: Option<i64>,
    /// `ok`, `warning`, `failed`, `timeout`, `skipped`, `running`, ...
    pub status: String,
    pub summary: String,
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
    /// The run's metrics, when the gatherer fetched them.
    #[serde(default)]
    pub metrics: Vec<(String, f64)>,
    /// The run's details, when the gatherer fetched them.
    #[serde(default)]
    pub details: String,
    /// A dry run changed nothing: it counts in no rate or duration.
    #[serde(default)]
    pub dry_run: bool,
    /// The host it ran on, in a fleet report.
    #[serde(default)]
    pub host: Option<String>,
}

/// A host of the fleet, for `opsd report --fleet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostIn {
    pub name: String,
    /// `role=db, region=eu`.
    pub labels: String,
    pub last_seen: i64,
    /// Finished runs it had not yet copied to the fleet.
    pub outbox: u64,
}

/// A configured job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobIn {
    pub name: String,
    pub plugin: String,
    pub schedule: String,
    pub enabled: bool,
    pub next_fire: Option<i64>,
    pub last_success: Option<i64>,
    pub missed_total: u64,
    /// When the job's newest run on record started, however long ago: a
    /// job that ran before the report's span is not new.
    #[serde(default)]
    pub last_run: Option<i64>,
}

/// One file system in a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskIn {
    pub mount: String,
    pub total: u64,
    pub available: u64,
}

/// The machine at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleIn {
    pub taken: i64,
    pub cpu_percent: f64,
    pub memory_total: u64,
    pub memory_used: u64,
    pub disks: Vec<DiskIn>,
}

/// Everything a report needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub hostname: String,
    pub now: i64,
    /// Runs from the start of the previous period on (any order).
    pub runs: Vec<RunIn>,
    pub jobs: Vec<JobIn>,
    /// Samples from the start of the previous period on.
    pub samples: Vec<SampleIn>,
    /// The machine as the report is made.
    pub current: Option<SampleIn>,
    /// The fleet's hosts, for a fleet report: each gets its own section.
    #[serde(default)]
    pub hosts: Vec<HostIn>,
}

/// Which plugins' runs need metrics and details for the report.
pub fn wants_detail(plugin: &str) -> bool {
    matches!(
        plugin,
        "backup" | "restore-drill" | "cert-renew" | "vacuum" | "audit"
    )
}
