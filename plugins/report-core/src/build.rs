//! From [`Input`] to [`Report`]: counting, percentiles, trends and the
//! attention list.

use crate::input::{Input, RunIn, SampleIn};
use crate::model::*;
use std::collections::BTreeMap;

/// The time a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub kind: &'static str,
    pub from: i64,
    pub to: i64,
}

impl Period {
    /// The last day, week (7 days) or month (30 days) up to `now`.
    pub fn named(kind: &str, now: i64) -> Option<Period> {
        let (kind, days) = match kind {
            "daily" => ("daily", 1),
            "weekly" => ("weekly", 7),
            "monthly" => ("monthly", 30),
            _ => return None,
        };
        Some(Period {
            kind,
            from: now - days * 86_400,
            to: now,
        })
    }

    /// The last `seconds` up to `now`, named after the closest kind.
    pub fn last(seconds: i64, now: i64) -> Period {
        let kind = match seconds {
            86_400 => "daily",
            604_800 => "weekly",
            2_592_000 => "monthly",
            _ => "custom",
        };
        Period {
            kind,
            from: now - seconds,
            to: now,
        }
    }

    /// The period of the same length just before.
    pub fn previous(&self) -> Period {
        Period {
            kind: self.kind,
            from: 2 * self.from - self.to,
            to: self.from,
        }
    }

    fn contains(&self, t: i64) -> bool {
        self.from <= t && t <= self.to
    }
}

/// RFC 3339 in UTC, to the second.
pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn durations(runs: &[&RunIn]) -> Option<Durations> {
    let mut d: Vec<u64> = runs.iter().filter_map(|r| r.duration_ms).collect();
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    Some(Durations {
        p50: percentile(&d, 50.0),
        p95: percentile(&d, 95.0),
        max: *d.last().unwrap_or(&0),
    })
}

fn is_ok(status: &str) -> bool {
    status == "ok" || status == "warning"
}

fn is_finished(status: &str) -> bool {
    !matches!(status, "running" | "skipped")
}

fn success_rate(runs: &[&RunIn]) -> Option<f64> {
    let finished: Vec<_> = runs.iter().filter(|r| is_finished(&r.status)).collect();
    if finished.is_empty() {
        return None;
    }
    let good = finished.iter().filter(|r| is_ok(&r.status)).count();
    Some(100.0 * good as f64 / finished.len() as f64)
}

/// The highest level held over `window` seconds in `points` (seconds,
/// value; oldest first): for each run of consecutive samples spanning at
/// least the window, the least of them; the most of those. One busy
/// sample between quiet ones is no peak. None when no run of samples
/// spans the window.
pub fn sustained_peak(points: &[(i64, f64)], window: i64) -> Option<f64> {
    let mut best: Option<f64> = None;
    for (i, &(start, first)) in points.iter().enumerate() {
        let mut low = first;
        for &(t, v) in &points[i + 1..] {
            low = low.min(v);
            if t - start >= window {
                best = Some(best.map_or(low, |b| b.max(low)));
                break;
            }
        }
    }
    best
}

/// Why (seconds, used bytes) points are too few for a trend, or none
/// when they are enough: [`TREND_MIN_SAMPLES`] spanning
/// [`TREND_MIN_SPAN_S`].
pub fn trend_shortfall(points: &[(i64, f64)]) -> Option<String> {
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0,
    };
    if points.len() >= TREND_MIN_SAMPLES && span >= TREND_MIN_SPAN_S {
        return None;
    }
    Some(format!(
        "not enough history for a trend ({:.1} of {} hours, {} of {} samples)",
        span.max(0) as f64 / 3600.0,
        TREND_MIN_SPAN_S / 3600,
        points.len(),
        TREND_MIN_SAMPLES
    ))
}

/// Least-squares slope of (seconds, value), per day.
pub fn slope_per_day(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let t0 = points[0].0 as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), (t, v)| {
        (sx + (*t as f64 - t0), sy + v)
    });
    let (mx, my) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (t, v) in points {
        let dx = *t as f64 - t0 - mx;
        num += dx * (v - my);
        den += dx * dx;
    }
    if den == 0.0 {
        return None;
    }
    Some(num / den * 86_400.0)
}

fn metric(run: &RunIn, name: &str) -> Option<f64> {
    run.metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

/// Builds the report for `period` from `input`.
pub fn build(input: &Input, period: Period) -> Report {
    let prev = period.previous();
    let in_period = |r: &&RunIn| period.contains(r.scheduled);
    let in_prev = |r: &&RunIn| prev.contains(r.scheduled) && !period.contains(r.scheduled);
    // A dry run changed nothing: it is counted apart and nowhere else (no
    // rate, duration, good backup or latest audit).
    let mut runs: Vec<&RunIn> = input.runs.iter().filter(|r| !r.dry_run).collect();
    runs.sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
    let current: Vec<&RunIn> = runs.iter().copied().filter(in_period).collect();
    let previous: Vec<&RunIn> = runs.iter().copied().filter(in_prev).collect();

    let mut by_job: BTreeMap<&str, (Vec<&RunIn>, Vec<&RunIn>)> = BTreeMap::new();
    for j in &input.jobs {
        by_job.entry(&j.name).or_default();
    }
    for r in &current {
        by_job.entry(&r.job).or_default().0.push(r);
    }
    for r in &previous {
        by_job.entry(&r.job).or_default().1.push(r);
    }

    let mut jobs = Vec::new();
    let mut attention = Vec::new();
    let mut totals = Totals::default();
    for (name, (cur, before)) in &by_job {
        let cfg = input.jobs.iter().find(|j| j.name == *name);
        let count = |s: &str| cur.iter().filter(|r| r.status == s).count() as u64;
        let failed_runs: Vec<&&RunIn> = cur
            .iter()
            .filter(|r| is_finished(&r.status) && !is_ok(&r.status))
            .collect();
        let last_success = cur
            .iter()
            .chain(before.iter())
            .filter(|r| r.status == "ok" || r.status == "warning")
            .filter_map(|r| r.finished)
            .max()
            .or(cfg.and_then(|c| c.last_success));
        // A job has been due once a run of it got anywhere (finished or
        // skipped) or a slot of it was missed; until then it is new.
        let ran = |done: bool| {
            input
                .runs
                .iter()
                .any(|r| r.job == *name && !r.dry_run && (!done || r.status != "running"))
        };
        let missed_ever = cfg.is_some_and(|c| c.missed_total > 0);
        let ran_before = cfg.is_some_and(|c| c.last_run.is_some());
        let been_due = ran(true) || missed_ever || ran_before;
        let first_run_due = (!ran(false) && !missed_ever && !ran_before && last_success.is_none())
            .then(|| cfg.and_then(|c| c.next_fire))
            .flatten()
            .map(rfc3339);
        let report = JobReport {
            name: name.to_string(),
            plugin: cfg
                .map(|c| c.plugin.clone())
                .or_else(|| cur.first().map(|r| r.plugin.clone()))
                .unwrap_or_default(),
            schedule: cfg.map(|c| c.schedule.clone()).unwrap_or_default(),
            enabled: cfg.is_some_and(|c| c.enabled),
            runs: cur.iter().filter(|r| is_finished(&r.status)).count() as u64,
            ok: count("ok"),
            warning: count("warning"),
            failed: failed_runs.len() as u64,
            missed: count("skipped"),
            success_rate: success_rate(cur),
            previous_success_rate: success_rate(before),
            failures: failed_runs
                .iter()
                .map(|r| Failure {
                    run: r.id.clone(),
                    at: rfc3339(r.started),
                    status: r.status.clone(),
                    error: first_line(r.error.as_deref().unwrap_or(&r.summary)),
                })
                .collect(),
            duration_ms: durations(cur),
            previous_duration_ms: durations(before),
            last_success: last_success.map(rfc3339),
            since_last_success_s: last_success.map(|t| input.now - t),
            next_fire: cfg.and_then(|c| c.next_fire).map(rfc3339),
            dry_runs: input
                .runs
                .iter()
                .filter(|r| r.job == *name && r.dry_run && period.contains(r.scheduled))
                .count() as u64,
            first_run_due,
        };
        totals.runs += report.runs;
        totals.ok += report.ok;
        totals.warning += report.warning;
        totals.failed += report.failed;
        totals.missed += report.missed;
        if report.failed > 0 {
            attention.push(format!(
                "job {}: {} of {} runs failed; last: {}",
                report.name,
                report.failed,
                report.runs,
                report
                    .failures
                    .last()
                    .map(|f| f.error.as_str())
                    .unwrap_or("")
            ));
        }
        if report.missed > 0 {
            attention.push(format!(
                "job {}: {} scheduled runs were skipped",
                report.name, report.missed
            ));
        }
        if report.enabled
            && report.runs == 0
            && report.missed == 0
            && !report.schedule.starts_with('@')
        {
            let never = report.last_success.is_none();
            if never && been_due {
                attention.push(format!(
                    "job {}: no run in this period and never a success",
                    report.name
                ));
            }
        }
        jobs.push(report);
    }
    let finished = totals.ok + totals.warning + totals.failed;
    totals.success_rate =
        (finished > 0).then(|| 100.0 * (totals.ok + totals.warning) as f64 / finished as f64);

    let backups = backup_reports(&runs, period, input.now, &mut attention);
    let drills = drill_reports(&runs, input.now);
    let certificates = cert_reports(&runs, period, &mut attention);
    let vacuum = vacuum_reports(&runs, period);
    let audit = audit_reports(&runs, period, &mut attention);
    let system = system_report(input, period, &mut attention);
    let hosts = host_reports(input, &current, &mut attention);

    Report {
        schema: SCHEMA.into(),
        generated: rfc3339(input.now),
        host: input.hostname.clone(),
        period: PeriodOut {
            kind: period.kind.into(),
            from: rfc3339(period.from),
            to: rfc3339(period.to),
            previous_from: rfc3339(prev.from),
            previous_to: rfc3339(prev.to),
        },
        totals,
        attention,
        jobs,
        backups,
        drills,
        certificates,
        vacuum,
        audit,
        system,
        hosts,
    }
}

/// A host silent this long is worth someone's attention.
const HOST_SILENT_S: i64 = 600;

/// Each host of a fleet report: what it ran in the period, and whether
/// it still answers.
fn host_reports(input: &Input, current: &[&RunIn], attention: &mut Vec<String>) -> Vec<HostReport> {
    let mut hosts: BTreeMap<&str, HostReport> = BTreeMap::new();
    let blank = |name: &str| HostReport {
        name: name.to_owned(),
        labels: String::new(),
        last_seen: None,
        last_seen_age_s: None,
        outbox: 0,
        runs: 0,
        ok: 0,
        warning: 0,
        failed: 0,
        success_rate: None,
        jobs: Vec::new(),
    };
    for h in &input.hosts {
        let mut r = blank(&h.name);
        r.labels = h.labels.clone();
        r.last_seen = Some(rfc3339(h.last_seen));
        r.last_seen_age_s = Some((input.now - h.last_seen).max(0));
        r.outbox = h.outbox;
        hosts.insert(&h.name, r);
    }
    let mut jobs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for run in current {
        let Some(host) = run.host.as_deref() else {
            continue;
        };
        let h = hosts.entry(host).or_insert_with(|| blank(host));
        match run.status.as_str() {
            "ok" => h.ok += 1,
            "warning" => h.warning += 1,
            "failed" | "timeout" | "interrupted" | "cancelled" => h.failed += 1,
            _ => {}
        }
        if is_finished(&run.status) {
            h.runs += 1;
            *jobs.entry((host, &run.job)).or_default() += 1;
        }
    }
    for ((host, job), n) in jobs {
        if let Some(h) = hosts.get_mut(host) {
            h.jobs.push((job.to_owned(), n));
        }
    }
    for h in hosts.values_mut() {
        let finished = h.ok + h.warning + h.failed;
        h.success_rate =
            (finished > 0).then(|| 100.0 * (h.ok + h.warning) as f64 / finished as f64);
        if let Some(age) = h.last_seen_age_s
            && age > HOST_SILENT_S
        {
            attention.push(format!(
                "host {}: not heard from for {} (is it down, or cut off from the fleet's PostgreSQL?)",
                h.name,
                crate::render::age(age)
            ));
        }
    }
    hosts.into_values().collect()
}

fn latest_of<'a>(runs: &[&'a RunIn], job: &str) -> Option<&'a RunIn> {
    runs.iter()
        .rev()
        .find(|r| r.job == job && is_finished(&r.status))
        .copied()
}

fn jobs_of<'a>(runs: &[&'a RunIn], plugin: &str) -> Vec<&'a str> {
    let mut v: Vec<&str> = runs
        .iter()
        .filter(|r| r.plugin == plugin)
        .map(|r| r.job.as_str())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn backup_reports(
    runs: &[&RunIn],
    period: Period,
    now: i64,
    attention: &mut Vec<String>,
) -> Vec<BackupReport> {
    jobs_of(runs, "backup")
        .into_iter()
        .map(|job| {
            let good: Vec<&&RunIn> = runs
                .iter()
                .filter(|r| r.job == job && is_ok(&r.status))
                .collect();
            let series: Vec<(i64, f64)> = good
                .iter()
                .filter(|r| period.contains(r.scheduled))
                .filter_map(|r| metric(r, "bytes_total").map(|b| (r.started, b)))
                .collect();
            let last = good.last();
            let age = last.and_then(|r| r.finished).map(|t| now - t);
            if age.is_none_or(|a| a > 2 * 86_400) {
                attention.push(format!(
                    "backup {job}: {}",
                    match age {
                        Some(a) => format!("the last good backup is {} hours old", a / 3600),
                        None => "no good backup on record".into(),
                    }
                ));
            }
            BackupReport {
                job: job.to_owned(),
                last_ok: last.and_then(|r| r.finished).map(rfc3339),
                age_s: age,
                bytes_last: last.and_then(|r| metric(r, "bytes_total")),
                growth_bytes_per_day: slope_per_day(&series),
                series,
            }
        })
        .collect()
}

/// Metric suffix a backup run names a drilled set with.
const DRILL_ROWS: &str = "_drill_rows";

/// The newest good drill of each backup set.
fn drill_reports(runs: &[&RunIn], now: i64) -> Vec<DrillReport> {
    let mut newest: std::collections::BTreeMap<String, DrillReport> = Default::default();
    for r in runs.iter().filter(|r| {
        matches!(r.plugin.as_str(), "backup" | "restore-drill") && is_ok(&r.status) && !r.dry_run
    }) {
        let Some(at) = r.finished else { continue };
        for (name, rows) in &r.metrics {
            let Some(set) = name.strip_suffix(DRILL_ROWS) else {
                continue;
            };
            if newest.get(set).is_some_and(|d| d.age_s <= now - at) {
                continue;
            }
            newest.insert(
                set.to_owned(),
                DrillReport {
                    set: set.to_owned(),
                    job: r.job.clone(),
                    at: rfc3339(at),
                    age_s: now - at,
                    dump_time: metric(r, &format!("{set}_drill_dump_time"))
                        .map(|t| rfc3339(t as i64)),
                    tables: metric(r, &format!("{set}_drill_tables")).unwrap_or(0.0) as u64,
                    rows: *rows as u64,
                },
            );
        }
    }
    newest.into_values().collect()
}

fn cert_reports(runs: &[&RunIn], period: Period, attention: &mut Vec<String>) -> Vec<CertReport> {
    jobs_of(runs, "cert-renew")
        .into_iter()
        .filter_map(|job| {
            let last = latest_of(runs, job)?;
            let min_days = metric(last, "min_days_left");
            if let Some(d) = min_days
                && d < 14.0
            {
                attention.push(format!("certificates ({job}): one expires in {d:.0} days"));
            }
            Some(CertReport {
                job: job.to_owned(),
                at: rfc3339(last.started),
                min_days_left: min_days,
                renewed_in_period: runs
                    .iter()
                    .filter(|r| r.job == job && period.contains(r.scheduled))
                    .filter_map(|r| metric(r, "certificates_renewed"))
                    .sum::<f64>() as u64,
                summary: last.summary.clone(),
            })
        })
        .collect()
}

fn vacuum_reports(runs: &[&RunIn], _period: Period) -> Vec<VacuumReport> {
    jobs_of(runs, "vacuum")
        .into_iter()
        .filter_map(|job| {
            let last = latest_of(runs, job)?;
            let mut effects = Vec::new();
            for (name, before) in &last.metrics {
                if let Some(base) = name.strip_suffix("_before")
                    && let Some(after) = metric(last, &format!("{base}_after"))
                {
                    effects.push((base.to_owned(), *before, after));
                }
            }
            Some(VacuumReport {
                job: job.to_owned(),
                at: rfc3339(last.started),
                effects,
            })
        })
        .collect()
}

fn audit_reports(runs: &[&RunIn], period: Period, attention: &mut Vec<String>) -> Vec<AuditReport> {
    jobs_of(runs, "audit")
        .into_iter()
        .filter_map(|job| {
            let last = latest_of(runs, job)?;
            let sev = ["findings_p0", "findings_p1", "findings_p2", "findings_p3"]
                .map(|m| metric(last, m).unwrap_or(0.0) as u64);
            let sum = |m: &str| {
                runs.iter()
                    .filter(|r| r.job == job && period.contains(r.scheduled))
                    .filter_map(|r| metric(r, m))
                    .sum::<f64>() as u64
            };
            let mut new_lines = Vec::new();
            let mut inside = false;
            for line in last.details.lines() {
                if !line.starts_with("  ") {
                    inside = line == "new:";
                } else if inside {
                    new_lines.push(line.trim().to_owned());
                }
            }
            if sev[0] + sev[1] > 0 {
                attention.push(format!(
                    "audit {job}: {} P0 and {} P1 findings",
                    sev[0], sev[1]
                ));
            }
            Some(AuditReport {
                job: job.to_owned(),
                at: rfc3339(last.started),
                by_severity: sev,
                new: sum("findings_new"),
                resolved: sum("findings_resolved"),
                new_lines,
            })
        })
        .collect()
}

fn pct(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * used as f64 / total as f64
    }
}

fn system_report(input: &Input, period: Period, attention: &mut Vec<String>) -> SystemReport {
    let samples: Vec<&SampleIn> = input
        .samples
        .iter()
        .filter(|s| period.contains(s.taken))
        .chain(input.current.iter())
        .collect();
    let mut series: Vec<(i64, f64, f64)> = samples
        .iter()
        .map(|s| (s.taken, s.cpu_percent, pct(s.memory_used, s.memory_total)))
        .collect();
    series.sort_by_key(|s| s.0);
    let peak = |pick: fn(&(i64, f64, f64)) -> f64| {
        let points: Vec<(i64, f64)> = series.iter().map(|s| (s.0, pick(s))).collect();
        sustained_peak(&points, PEAK_WINDOW_S)
    };
    let cpu_peak = peak(|s| s.1);
    let memory_peak = peak(|s| s.2);
    let now = input.current.as_ref().or(samples.last().copied());
    let mut disks = Vec::new();
    if let Some(now) = now {
        for d in &now.disks {
            if d.total == 0 {
                continue;
            }
            let points: Vec<(i64, f64)> = samples
                .iter()
                .filter_map(|s| {
                    s.disks
                        .iter()
                        .find(|x| x.mount == d.mount)
                        .map(|x| (s.taken, (x.total - x.available.min(x.total)) as f64))
                })
                .collect();
            let mut points = points;
            points.sort_by_key(|p| p.0);
            let trend_note = trend_shortfall(&points);
            let growth = slope_per_day(&points).filter(|_| trend_note.is_none());
            let used = d.total - d.available.min(d.total);
            let projected_full = growth.filter(|g| *g > 0.0).map(|g| {
                let days = d.available as f64 / g;
                rfc3339(input.now + (days * 86_400.0).min(3.0e9) as i64)
            });
            let used_percent = pct(used, d.total);
            if used_percent > DISK_LIMIT {
                attention.push(format!(
                    "disk {}: {used_percent:.0} % used (limit {DISK_LIMIT:.0} %)",
                    d.mount
                ));
            }
            disks.push(DiskReport {
                mount: d.mount.clone(),
                total_bytes: d.total,
                used_percent,
                growth_bytes_per_day: growth,
                projected_full,
                trend_note,
                series: points
                    .iter()
                    .map(|(t, u)| (*t, 100.0 * u / d.total as f64))
                    .collect(),
            });
        }
    }
    if let Some(p) = cpu_peak
        && p > CPU_LIMIT
    {
        attention.push(format!(
            "CPU held {p:.0} % over {} min (limit {CPU_LIMIT:.0} %)",
            PEAK_WINDOW_S / 60
        ));
    }
    if let Some(p) = memory_peak
        && p > MEMORY_LIMIT
    {
        attention.push(format!(
            "memory held {p:.0} % over {} min (limit {MEMORY_LIMIT:.0} %)",
            PEAK_WINDOW_S / 60
        ));
    }
    SystemReport {
        cpu_percent: now.map(|s| s.cpu_percent),
        memory_percent: now.map(|s| pct(s.memory_used, s.memory_total)),
        cpu_peak,
        memory_peak,
        peak_window_s: PEAK_WINDOW_S as u64,
        disks,
        series,
        thresholds: Thresholds::default(),
    }
}
