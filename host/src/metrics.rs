//! Prometheus metrics, so a fleet of opsd hosts is watched by the
//! Prometheus and Grafana it already has.
//!
//! Counters and the duration histogram count runs finished since the
//! daemon started (Prometheus handles resets); the per-job timestamps come
//! from the store, so they survive restarts.

use crate::locks::Unpoisoned;
use crate::monitor::{ConditionState, Sample};
use crate::record::{JobState, RunRecord, RunStatus};
use crate::runtime::LoadedPlugin;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;

/// Upper bounds of the run duration histogram, in seconds: from a quick
/// rotation to a long backup.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What the exposition shows besides the counters, gathered by the
/// caller at scrape time: this module renders, it does not reach into the
/// daemon.
pub struct Figures {
    pub jobs: Vec<JobFigures>,
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// The monitor's samples, oldest first.
    pub history: Vec<Sample>,
    pub conditions: Vec<ConditionState>,
    /// Every `[[alert]]`, active or not.
    pub alerts: Vec<crate::monitor::alert::AlertStatus>,
    /// With a `[fleet]`: how this host stands with its PostgreSQL.
    pub fleet: Option<FleetFigures>,
}

/// A fleet host's link to the fleet's PostgreSQL.
pub struct FleetFigures {
    /// Finished runs not yet copied to PostgreSQL.
    pub outbox: u64,
    /// Seconds since PostgreSQL last answered; none if it never has.
    pub since_contact: Option<f64>,
    /// Fleet-job claims since start, by outcome: `won`, `taken` (another
    /// host had the slot), `refused` (not run: overlap, definition,
    /// clock, PostgreSQL away).
    pub claims: [(&'static str, u64); 3],
    pub lease_renewals: u64,
    pub leases_lost: u64,
    /// Slots taken over from a host whose lease ran out.
    pub taken_over: u64,
    /// Fleet jobs this host defines differently from the fleet.
    pub disagreeing: u64,
}

/// One job's figures for the exposition.
pub struct JobFigures {
    pub name: String,
    pub state: JobState,
    pub enabled: bool,
    /// Runs in progress.
    pub running: usize,
    /// Defined, but set aside: it does not run.
    pub broken: bool,
}

/// Run counters since start.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    runs: BTreeMap<(String, RunStatus), u64>,
    durations: BTreeMap<String, Histogram>,
}

impl Metrics {
    /// Counts a finished (or skipped) run.
    pub fn observe(&self, rec: &RunRecord) {
        let mut inner = self.inner.locked();
        *inner.runs.entry((rec.job.clone(), rec.status)).or_default() += 1;
        if rec.status == RunStatus::Skipped {
            return;
        }
        let secs = rec.duration_ms.unwrap_or(0) as f64 / 1000.0;
        let h = inner.durations.entry(rec.job.clone()).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self, f: &Figures) -> String {
        let mut out = String::new();
        let w = &mut out;
        job_metrics(w, f);
        self.run_metrics(w, f);
        plugin_metrics(w, f);
        system_metrics(w, f);
        alert_metrics(w, f);
        fleet_metrics(w, f);
        process_metrics(w);
        out
    }

    /// Runs counted since start, by outcome, and their durations.
    ///
    /// Every configured job has every series from the start, at 0:
    /// Prometheus' `increase()` sees a counter's first step only from a
    /// series that existed before it.
    fn run_metrics(&self, w: &mut String, f: &Figures) {
        let mut inner = self.inner.locked();
        for job in &f.jobs {
            for status in RunStatus::ENDINGS {
                inner.runs.entry((job.name.clone(), status)).or_default();
            }
            inner.durations.entry(job.name.clone()).or_default();
        }
        header(
            w,
            "opsd_job_runs_total",
            "counter",
            "Runs finished since opsd started, by outcome.",
        );
        for ((job, status), n) in &inner.runs {
            let _ = writeln!(
                w,
                "opsd_job_runs_total{{job=\"{}\",status=\"{status}\"}} {n}",
                escape(job)
            );
        }
        header(
            w,
            "opsd_job_duration_seconds",
            "histogram",
            "How long runs took.",
        );
        for (job, h) in &inner.durations {
            let job = escape(job);
            for (le, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    w,
                    "opsd_job_duration_seconds_bucket{{job=\"{job}\",le=\"{le}\"}} {c}"
                );
            }
            let _ = writeln!(
                w,
                "opsd_job_duration_seconds_bucket{{job=\"{job}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                w,
                "opsd_job_duration_seconds_sum{{job=\"{job}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                w,
                "opsd_job_duration_seconds_count{{job=\"{job}\"}} {}",
                h.count
            );
        }
        drop(inner);
    }
}

/// What opsd is, and each job's state.
fn job_metrics(w: &mut String, f: &Figures) {
    header(
        w,
        "opsd_build_info",
        "gauge",
        "opsd version and the wasmtime it embeds.",
    );
    let _ = writeln!(
        w,
        "opsd_build_info{{version=\"{}\",wasmtime=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        crate::runtime::WASMTIME_VERSION
    );

    header(w, "opsd_jobs", "gauge", "Jobs in the configuration.");
    let _ = writeln!(w, "opsd_jobs {}", f.jobs.len());

    let gauge =
        |w: &mut String, name: &str, help: &str, pick: &dyn Fn(&JobFigures) -> Option<f64>| {
            header(w, name, "gauge", help);
            for job in &f.jobs {
                if let Some(v) = pick(job) {
                    let _ = writeln!(w, "{name}{{job=\"{}\"}} {v}", escape(&job.name));
                }
            }
        };
    gauge(
        w,
        "opsd_job_last_success_timestamp_seconds",
        "When the job last finished ok or with a warning.",
        &|j| j.state.last_success.map(|t| t.timestamp() as f64),
    );
    gauge(
        w,
        "opsd_job_last_run_timestamp_seconds",
        "When the job's last run started.",
        &|j| j.state.last_started.map(|t| t.timestamp() as f64),
    );
    gauge(
        w,
        "opsd_job_next_run_timestamp_seconds",
        "When the job fires next (absent when disabled).",
        &|j| j.state.next_fire.map(|t| t.timestamp() as f64),
    );
    gauge(
        w,
        "opsd_job_enabled",
        "1 when the scheduler fires the job.",
        &|j| Some(f64::from(u8::from(j.enabled))),
    );
    header(
        w,
        "opsd_job_missed_slots_total",
        "counter",
        "Slots not run: skipped by overlap or catch-up policy.",
    );
    for job in &f.jobs {
        let _ = writeln!(
            w,
            "opsd_job_missed_slots_total{{job=\"{}\"}} {}",
            escape(&job.name),
            job.state.missed_total
        );
    }
    gauge(
        w,
        "opsd_job_broken",
        "1 when the job is set aside as broken and does not run (opsd schedule list says why).",
        &|j| Some(f64::from(u8::from(j.broken))),
    );
    gauge(
        w,
        "opsd_job_last_duration_seconds",
        "How long the job's last finished run took.",
        &|j| j.state.last_duration_ms.map(|ms| ms as f64 / 1000.0),
    );
    gauge(
        w,
        "opsd_job_running",
        "Runs of the job in progress.",
        &|j| Some(j.running as f64),
    );
}

/// The plugins loaded.
fn plugin_metrics(w: &mut String, f: &Figures) {
    header(
        w,
        "opsd_plugin_info",
        "gauge",
        "Plugins loaded, with version and content hash.",
    );
    for p in &f.plugins {
        let _ = writeln!(
            w,
            "opsd_plugin_info{{name=\"{}\",version=\"{}\",sha256=\"{}\"}} 1",
            escape(&p.info.name),
            escape(&p.info.version),
            p.sha256
        );
    }
}

/// The monitor's newest sample and where `when` conditions stand.
fn system_metrics(w: &mut String, f: &Figures) {
    let Some((s, before)) = f.history.split_last() else {
        return;
    };
    machine_metrics(w, s, before);
    disk_metrics(w, s);
    probe_metrics(w, s);
    condition_metrics(w, f);
}

/// CPU, memory, swap, network errors and load.
fn machine_metrics(w: &mut String, s: &Sample, before: &[Sample]) {
    let mut one = |name: &str, kind: &str, help: &str, value: f64| {
        header(w, name, kind, help);
        let _ = writeln!(w, "{name} {value}");
    };
    one(
        "opsd_system_cpu_percent",
        "gauge",
        "CPU busy, all CPUs, since the previous sample.",
        s.cpu_percent,
    );
    one(
        "opsd_system_memory_used_bytes",
        "gauge",
        "Memory in use.",
        s.memory_used_bytes as f64,
    );
    one(
        "opsd_system_memory_total_bytes",
        "gauge",
        "Memory installed.",
        s.memory_total_bytes as f64,
    );
    one(
        "opsd_system_swap_used_bytes",
        "gauge",
        "Swap in use.",
        s.swap_used_bytes as f64,
    );
    one(
        "opsd_system_swap_total_bytes",
        "gauge",
        "Swap configured.",
        s.swap_total_bytes as f64,
    );
    one(
        "opsd_system_network_errors_total",
        "counter",
        "Receive and transmit errors of all interfaces since boot.",
        s.network_errors as f64,
    );
    if let Some(rate) = crate::monitor::network_errors_per_hour(s, before) {
        one(
            "opsd_system_network_errors_per_hour",
            "gauge",
            "Network errors over the last hour of samples.",
            rate,
        );
    }
    header(
        w,
        "opsd_system_load_average",
        "gauge",
        "Load average over 1, 5 and 15 minutes.",
    );
    for (period, v) in ["1m", "5m", "15m"].iter().zip(s.load) {
        let _ = writeln!(w, "opsd_system_load_average{{period=\"{period}\"}} {v}");
    }
}

/// How full each filesystem is.
fn disk_metrics(w: &mut String, s: &Sample) {
    let disks = s.filesystems();
    header(
        w,
        "opsd_system_disk_used_percent",
        "gauge",
        "How full each filesystem is, as df shows it.",
    );
    for d in &disks {
        if let Some(p) = d.used_percent {
            let _ = writeln!(
                w,
                "opsd_system_disk_used_percent{{mount=\"{}\"}} {p}",
                escape(&d.path)
            );
        }
    }
    header(
        w,
        "opsd_system_disk_available_bytes",
        "gauge",
        "Bytes free to unprivileged users on each filesystem.",
    );
    for d in &disks {
        let _ = writeln!(
            w,
            "opsd_system_disk_available_bytes{{mount=\"{}\"}} {}",
            escape(&d.path),
            d.available_bytes
        );
    }
}

/// The outbox backlog and the time since PostgreSQL last answered: what
/// a rule watches to learn that a host's history is not reaching the
/// fleet.
fn fleet_metrics(w: &mut String, f: &Figures) {
    let Some(fleet) = &f.fleet else {
        return;
    };
    header(
        w,
        "opsd_fleet_outbox_runs",
        "gauge",
        "Finished runs waiting in this host's outbox to be copied to the fleet's PostgreSQL.",
    );
    let _ = writeln!(w, "opsd_fleet_outbox_runs {}", fleet.outbox);
    if let Some(s) = fleet.since_contact {
        header(
            w,
            "opsd_fleet_seconds_since_contact",
            "gauge",
            "Seconds since the fleet's PostgreSQL last answered this host.",
        );
        let _ = writeln!(w, "opsd_fleet_seconds_since_contact {s:.3}");
    }
    header(
        w,
        "opsd_fleet_claims_total",
        "counter",
        "Fleet-job slots this host tried to claim, by outcome (won; taken by another host; refused: overlap, a differing definition, a skewed clock or PostgreSQL away).",
    );
    for (outcome, n) in fleet.claims {
        let _ = writeln!(w, "opsd_fleet_claims_total{{outcome=\"{outcome}\"}} {n}");
    }
    for (name, help, value) in [
        (
            "opsd_fleet_lease_renewals_total",
            "Leases on running fleet-job slots renewed in PostgreSQL.",
            fleet.lease_renewals,
        ),
        (
            "opsd_fleet_leases_lost_total",
            "Runs stopped or discounted because their fleet lease was lost.",
            fleet.leases_lost,
        ),
        (
            "opsd_fleet_takeovers_total",
            "Fleet-job slots this host took over from a host whose lease ran out.",
            fleet.taken_over,
        ),
    ] {
        header(w, name, "counter", help);
        let _ = writeln!(w, "{name} {value}");
    }
    header(
        w,
        "opsd_fleet_jobs_disagreeing",
        "gauge",
        "Fleet jobs this host defines differently from the fleet (it does not run them).",
    );
    let _ = writeln!(w, "opsd_fleet_jobs_disagreeing {}", fleet.disagreeing);
}

/// `opsd_alert_active{alert,severity}`: 1 while an alert is active, for
/// every alert configured (0 from the start, so a rule sees it change).
fn alert_metrics(w: &mut String, f: &Figures) {
    if f.alerts.is_empty() {
        return;
    }
    header(
        w,
        "opsd_alert_active",
        "gauge",
        "1 while an [[alert]] is active (held for its `for` and sent), 0 otherwise.",
    );
    for a in &f.alerts {
        let _ = writeln!(
            w,
            "opsd_alert_active{{alert=\"{}\",severity=\"{}\"}} {}",
            escape(&a.alert),
            a.severity,
            u8::from(a.active)
        );
    }
}

/// Each HTTP probe's answer time and status.
fn probe_metrics(w: &mut String, s: &Sample) {
    if !s.probes.is_empty() {
        header(
            w,
            "opsd_probe_latency_seconds",
            "gauge",
            "Answer time of each HTTP probe; +Inf when it failed.",
        );
        for p in &s.probes {
            let v = p.seconds.map_or("+Inf".to_string(), |v| v.to_string());
            let _ = writeln!(
                w,
                "opsd_probe_latency_seconds{{url=\"{}\"}} {v}",
                escape(&p.url)
            );
        }
        header(
            w,
            "opsd_probe_status",
            "gauge",
            "Status code each HTTP probe got; 0 when no answer came.",
        );
        for p in &s.probes {
            let _ = writeln!(
                w,
                "opsd_probe_status{{url=\"{}\"}} {}",
                escape(&p.url),
                p.status.unwrap_or(0)
            );
        }
    }
}

/// Where each job's `when` conditions stand.
fn condition_metrics(w: &mut String, f: &Figures) {
    let states = &f.conditions;
    if states.is_empty() {
        return;
    }
    header(
        w,
        "opsd_condition_value",
        "gauge",
        "The figure each job condition watches.",
    );
    for c in states {
        if let Some(v) = c.value {
            let _ = writeln!(
                w,
                "opsd_condition_value{{job=\"{}\",condition=\"{}\"}} {v}",
                escape(&c.job),
                escape(&c.condition)
            );
        }
    }
    header(
        w,
        "opsd_condition_holding",
        "gauge",
        "1 while a job condition is past its threshold.",
    );
    for c in states {
        let _ = writeln!(
            w,
            "opsd_condition_holding{{job=\"{}\",condition=\"{}\"}} {}",
            escape(&c.job),
            escape(&c.condition),
            u8::from(c.holding_since.is_some())
        );
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value: backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The standard `process_*` metrics, from /proc.
fn process_metrics(w: &mut String) {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may
    // contain spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime: fields 14, 15 (1-based); starttime 22; rss 24.
    let cpu = (num(11) + num(12)) / ticks.max(1) as f64;
    let rss = num(21) * page.max(1) as f64;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0);
    let start = boot + num(19) / ticks.max(1) as f64;
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    header(
        w,
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, in seconds.",
    );
    let _ = writeln!(w, "process_cpu_seconds_total {cpu}");
    header(
        w,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    let _ = writeln!(w, "process_resident_memory_bytes {rss}");
    header(
        w,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let _ = writeln!(w, "process_start_time_seconds {start}");
    header(w, "process_open_fds", "gauge", "Open file descriptors.");
    let _ = writeln!(w, "process_open_fds {fds}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        let now = chrono::Utc::now();
        let mut rec = RunRecord::begin(
            "01M8G7VG743S67F6199B02CNNP",
            "j",
            "p",
            crate::record::Trigger::Manual,
            now,
            now,
            false,
        );
        rec.status = RunStatus::Ok;
        rec.duration_ms = Some(700);
        m.observe(&rec);
        rec.duration_ms = Some(40);
        m.observe(&rec);
        let inner = m.inner.lock().unwrap();
        let h = &inner.durations["j"];
        assert_eq!(h.counts[0], 1, "0.04s <= 0.05");
        assert_eq!(h.counts[4], 2, "both <= 1s");
        assert_eq!(inner.runs[&("j".to_string(), RunStatus::Ok)], 2);
    }

    /// A job that never ran has every outcome's series at 0, so the first
    /// failure is a step Prometheus sees.
    #[test]
    fn every_series_exists_from_the_start() {
        let m = Metrics::default();
        let text = m.render(&Figures {
            jobs: vec![JobFigures {
                name: "nightly".into(),
                state: JobState::default(),
                enabled: true,
                running: 0,
                broken: false,
            }],
            plugins: Vec::new(),
            history: Vec::new(),
            conditions: Vec::new(),
            alerts: vec![crate::monitor::alert::AlertStatus {
                alert: "disk \"full\"".into(),
                severity: crate::record::Severity::P0,
                message: "m".into(),
                condition: "c".into(),
                value: None,
                active: false,
                active_since: None,
                last_sent: None,
                next_reminder: None,
                suppressed: 0,
            }],
            fleet: Some(FleetFigures {
                outbox: 3,
                since_contact: None,
                claims: [("won", 4), ("taken", 7), ("refused", 1)],
                lease_renewals: 2,
                leases_lost: 0,
                taken_over: 1,
                disagreeing: 0,
            }),
        });
        assert!(text.contains("opsd_fleet_outbox_runs 3\n"), "{text}");
        assert!(
            text.contains("opsd_fleet_claims_total{outcome=\"taken\"} 7\n"),
            "{text}"
        );
        assert!(text.contains("opsd_fleet_takeovers_total 1\n"), "{text}");
        assert!(!text.contains("opsd_fleet_seconds_since_contact"), "{text}");
        assert!(
            text.contains("opsd_alert_active{alert=\"disk \\\"full\\\"\",severity=\"P0\"} 0\n"),
            "{text}"
        );
        for status in RunStatus::ENDINGS {
            let line = format!("opsd_job_runs_total{{job=\"nightly\",status=\"{status}\"}} 0\n");
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        assert!(text.contains("opsd_job_duration_seconds_count{job=\"nightly\"} 0\n"));
    }
}
