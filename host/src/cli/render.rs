//! Text for people: tables that fit the terminal, reports, logs.

use crate::escape::{indented, line};
use crate::jobs::JobDetail;
use crate::monitor::SampleSource;
use crate::plugins::{Inspection, PluginEntry};
use crate::record::{LogLine, RunRecord, ScheduleEntry};
use chrono::{DateTime, Local, Utc};
use opsd_report_core::render::bytes;

/// A time as people read it in tables: local, with weekday.
fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%a %Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

pub use crate::diag::human_duration;

/// Lays out rows in aligned columns; the last column is cut to `width`.
pub fn table(header: &[&str], rows: &[Vec<String>], width: Option<usize>) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cols {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        let l = l.trim_end();
        match width {
            Some(w) if l.chars().count() > w => {
                out.extend(l.chars().take(w.saturating_sub(1)));
                out.push('…');
            }
            _ => out.push_str(l),
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `opsd schedule list` as a table.
pub fn schedule_table(
    entries: &[ScheduleEntry],
    now: DateTime<Utc>,
    width: Option<usize>,
) -> String {
    // Soonest first, as `systemctl list-timers` lists; jobs with no next
    // run (disabled, on condition only) last, by name.
    let mut sorted: Vec<&ScheduleEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (a.next.is_none(), a.next, &a.job).cmp(&(b.next.is_none(), b.next, &b.job))
    });
    let entries = sorted;
    // Layouts from richest to leanest; the first that fits the terminal
    // wins, as `systemctl list-timers` narrows on small terminals.
    let layout = |compact: bool, cols: &[&'static str]| -> (Vec<&'static str>, Vec<Vec<String>>) {
        let fmt = |t: DateTime<Utc>| if compact { when_compact(t) } else { when(t) };
        let rows = entries
            .iter()
            .map(|e| {
                cols.iter()
                    .map(|c| match *c {
                        "NEXT" => match e.next {
                            _ if !e.broken.is_empty() => "BROKEN".into(),
                            Some(n) => fmt(n),
                            None if !e.enabled => "disabled".into(),
                            None if !e.when.is_empty() => "on condition".into(),
                            None => "-".into(),
                        },
                        "LEFT" => e.next.map_or("-".into(), |n| {
                            format!("{} left", human_duration((n - now).num_seconds()))
                        }),
                        "LAST" => e.last.map_or("-".into(), fmt),
                        "PASSED" => e.last.map_or("-".into(), |l| {
                            format!("{} ago", human_duration((now - l).num_seconds()))
                        }),
                        "JOB" => e.job.clone(),
                        "PLUGIN" => e.plugin.clone(),
                        _ if !e.broken.is_empty() => "broken".into(),
                        _ => e.last_status.map_or("-".into(), |s| s.to_string()),
                    })
                    .collect()
            })
            .collect();
        (cols.to_vec(), rows)
    };
    const ALL: [&str; 7] = ["NEXT", "LEFT", "LAST", "PASSED", "JOB", "PLUGIN", "STATUS"];
    let candidates = [
        layout(false, &ALL),
        layout(true, &ALL),
        layout(true, &["NEXT", "LEFT", "PASSED", "JOB", "PLUGIN", "STATUS"]),
        layout(true, &["NEXT", "LEFT", "JOB", "STATUS"]),
    ];
    let mut out = fitting_table(&candidates, width);
    out.push_str(&format!(
        "\n{} job{} listed.\n",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    ));
    // Why each broken job does not run, under the table: they are what an
    // operator must act on.
    for e in entries.iter().filter(|e| !e.broken.is_empty()) {
        out.push_str(&format!(
            "{} is broken and does not run: {}\n",
            line(&e.job),
            line(&e.broken.join("; "))
        ));
    }
    out
}

/// The first layout whose widest line fits `width`, else the leanest, cut.
fn fitting_table(candidates: &[(Vec<&str>, Vec<Vec<String>>)], width: Option<usize>) -> String {
    for (header, rows) in candidates {
        let t = table(header, rows, None);
        if width.is_none_or(|w| t.lines().all(|l| l.chars().count() <= w)) {
            return t;
        }
    }
    let (header, rows) = &candidates[candidates.len() - 1];
    table(header, rows, width)
}

/// A time in few characters: `11-28 04:51`.
fn when_compact(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%m-%d %H:%M").to_string()
}

/// `opsd schedule next` for people: each fire time in the zone, in UTC,
/// and how far away it is.
pub fn next_fires_text(
    expr: &str,
    tz: chrono_tz::Tz,
    fires: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> String {
    let mut out = format!("{expr} in {}:\n", tz.name());
    if fires.is_empty() {
        out.push_str("  never fires\n");
    }
    for f in fires {
        let left = (*f - now).num_seconds();
        out.push_str(&format!(
            "  {}  {}  {}\n",
            f.with_timezone(&tz).format("%a %Y-%m-%d %H:%M:%S %:z"),
            f.format("%Y-%m-%dT%H:%M:%SZ"),
            if left >= 0 {
                format!("in {}", human_duration(left))
            } else {
                format!("{} ago", human_duration(-left))
            }
        ));
    }
    out
}

/// `opsd history` as a table.
pub fn history_table(runs: &[RunRecord], width: Option<usize>) -> String {
    if runs.is_empty() {
        return "No runs recorded.\n".into();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                when(r.started),
                r.job.clone(),
                r.status.to_string(),
                r.duration_ms.map_or("-".into(), format_ms),
                summary_cell(r),
            ]
        })
        .collect();
    table(
        &["RUN", "STARTED", "JOB", "STATUS", "TOOK", "SUMMARY"],
        &rows,
        width,
    )
}

/// A run's summary (its error when it has none) on one line, after the
/// `--set` keys of a run that was not the configured job.
fn summary_cell(r: &RunRecord) -> String {
    let summary = line(match &r.error {
        Some(e) if r.summary.is_empty() => e,
        _ => &r.summary,
    });
    if r.overrides.is_empty() {
        summary.into_owned()
    } else {
        let keys: Vec<&str> = r.overrides.keys().map(String::as_str).collect();
        format!("[--set {}] {summary}", line(&keys.join(",")))
    }
}

/// `opsd history --fleet`: the history table with the host each ran on.
pub fn fleet_history_table(runs: &[crate::fleet::FleetRun], width: Option<usize>) -> String {
    if runs.is_empty() {
        return "No runs in the fleet's history.\n".into();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|f| {
            let r = &f.record;
            vec![
                line(&f.host).into_owned(),
                when(r.started),
                line(&r.job).into_owned(),
                r.status.to_string(),
                r.duration_ms.map_or("-".into(), format_ms),
                summary_cell(r),
            ]
        })
        .collect();
    table(
        &["HOST", "STARTED", "JOB", "STATUS", "TOOK", "SUMMARY"],
        &rows,
        width,
    )
}

/// `opsd fleet status`: each host, when PostgreSQL last heard from it.
pub fn fleet_hosts_table(hosts: &[crate::fleet::FleetHost], now: DateTime<Utc>) -> String {
    if hosts.is_empty() {
        return "No host has reached the fleet's PostgreSQL yet.\n".into();
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let labels: Vec<String> = h
                .labels
                .iter()
                .map(|(k, v)| format!("{}={}", line(k), line(v)))
                .collect();
            let ago = (now - h.last_seen).num_seconds().max(0);
            vec![
                line(&h.name).into_owned(),
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels.join(",")
                },
                line(&h.version).into_owned(),
                format!("{} ({ago}s ago)", when(h.last_seen)),
                h.outbox.to_string(),
            ]
        })
        .collect();
    table(
        &["HOST", "LABELS", "VERSION", "LAST SEEN", "OUTBOX"],
        &rows,
        None,
    )
}

/// `opsd schedule list --fleet` and the jobs of `opsd fleet status`:
/// each fleet job's next slot, where its last slot ran, who may run it.
pub fn fleet_jobs_table(jobs: &[crate::fleet::FleetJob]) -> String {
    if jobs.is_empty() {
        return "No fleet job has been claimed or defined yet.\n".into();
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.iter()
                .map(|h| line(h).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                line(&j.name).into_owned(),
                j.next_slot.map_or("-".into(), when),
                match (&j.last_host, j.last_slot) {
                    (Some(h), Some(s)) => format!(
                        "{} on {} ({})",
                        when(s),
                        line(h),
                        line(j.last_status.as_deref().unwrap_or("-"))
                    ),
                    _ => "-".into(),
                },
                list(&j.hosts),
                list(&j.disagreeing),
            ]
        })
        .collect();
    table(
        &[
            "FLEET JOB",
            "NEXT",
            "LAST",
            "MAY RUN",
            "DEFINED DIFFERENTLY",
        ],
        &rows,
        None,
    )
}

fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        human_duration((ms / 1000) as i64)
    }
}

/// What `opsd run` prints for people.
pub fn run_report(r: &RunRecord) -> String {
    let mut out = format!(
        "{} {} ({} {}) in {}: {}\n",
        r.job,
        r.status,
        line(&r.plugin),
        line(&r.plugin_version),
        r.duration_ms.map_or("-".into(), format_ms),
        line(&r.summary)
    );
    if let Some(e) = &r.error
        && *e != r.summary
    {
        out.push_str(&format!("error: {}\n", indented(e, "       ")));
    }
    if let Some(c) = &r.condition {
        out.push_str(&format!("started because {c}\n"));
    }
    if let Some(load) = r
        .plugin_load
        .as_ref()
        .filter(|l| l.source == crate::record::LoadSource::Compiled)
    {
        out.push_str(&format!(
            "the plugin was compiled for this machine first, in {} (not counted in the run's time; later runs load it from the cache)\n",
            crate::diag::human_ms(load.ms)
        ));
    }
    if !r.overrides.is_empty() {
        out.push_str(&format!(
            "ran with --set {} (not the configured [job.config])\n",
            line(&crate::record::overrides_text(&r.overrides))
        ));
    }
    for m in &r.metrics {
        out.push_str(&format!(
            "  {} = {}{}\n",
            line(&m.name),
            m.value,
            m.unit
                .as_deref()
                .map(|u| format!(" {}", line(u)))
                .unwrap_or_default()
        ));
    }
    if !r.details.trim().is_empty() {
        out.push_str(&details_text(&r.details));
    }
    out.push_str(&format!("run {} (opsd logs {})\n", r.id, r.id));
    out
}

/// A run's `details` under a label, each line indented (plugin text, so
/// escaped, and none passes for a line of opsd's own).
pub fn details_text(details: &str) -> String {
    format!(
        "details:\n  {}\n",
        crate::escape::indented(details.trim_end(), "  ")
    )
}

/// `opsd logs` for people.
pub fn log_text(lines: &[LogLine]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&format!(
            "{:>8.3}s {:<5} {:<6} {}\n",
            l.ms as f64 / 1000.0,
            l.level.as_str(),
            l.source.as_str(),
            line(&l.message)
        ));
    }
    out
}

impl JobDetail {
    /// The detail as people read it.
    ///
    /// Long on purpose: a line per setting, in the order they are shown.
    pub fn text(&self, now: DateTime<Utc>) -> String {
        let secs =
            |s: u64| humantime::format_duration(std::time::Duration::from_secs(s)).to_string();
        let mut o = format!(
            "{} ({})\n",
            self.job,
            if self.enabled { "enabled" } else { "disabled" }
        );
        o.push_str(&format!("  plugin:    {}\n", self.plugin));
        if !self.schedule.is_empty() {
            o.push_str(&format!(
                "  schedule:  {} in {}\n",
                self.schedule, self.timezone
            ));
        }
        for (i, w) in self.when.iter().enumerate() {
            let label = if i == 0 {
                "  when:      "
            } else {
                "             "
            };
            o.push_str(&format!("{label}{w}\n"));
        }
        for (i, n) in self.next.iter().enumerate() {
            let label = if i == 0 {
                "  next:      "
            } else {
                "             "
            };
            o.push_str(&format!(
                "{label}{}  (in {})\n",
                when(*n),
                human_duration((*n - now).num_seconds())
            ));
        }
        if let Some(l) = self.last {
            o.push_str(&format!(
                "  last:      {}  {}\n",
                when(l),
                self.last_status.map_or("-".into(), |s| s.to_string())
            ));
        }
        o.push_str(&format!(
            "  timeout:   {}\n  catch-up:  {}{}\n  overlap:   {}\n",
            secs(self.timeout_seconds),
            self.catch_up,
            self.catch_up_deadline_seconds
                .map(|d| format!(" within {}", secs(d)))
                .unwrap_or_default(),
            self.overlap
        ));
        if self.retries > 0 {
            o.push_str(&format!(
                "  retries:   {} (backoff {} doubling, at most {})\n",
                self.retries,
                secs(self.retry_backoff_seconds),
                secs(self.retry_backoff_max_seconds)
            ));
        }
        if self.jitter_seconds > 0 {
            o.push_str(&format!(
                "  jitter:    up to {}{}\n",
                secs(self.jitter_seconds),
                if self.jitter_fixed { ", fixed" } else { "" }
            ));
        }
        o.push_str(&format!(
            "  history:   {} runs, {} days\n",
            self.keep_runs, self.keep_days
        ));
        for (i, (key, explained)) in self.grants.kinds.iter().enumerate() {
            let label = if i == 0 {
                "  grants:    "
            } else {
                "             "
            };
            o.push_str(&format!("{label}{key} {explained}\n"));
        }
        for (i, line) in self.grants.programs.iter().enumerate() {
            let label = if i == 0 {
                "  programs:  "
            } else {
                "             "
            };
            o.push_str(&format!("{label}{line}\n"));
        }
        if !self.recent.is_empty() {
            o.push_str("\nRecent runs:\n");
            o.push_str(&history_table(&self.recent, None));
        }
        o
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `opsd plugins list` as a table.
pub fn plugins_table(list: &[PluginEntry], width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                if p.name.is_empty() {
                    "?".into()
                } else {
                    line(&p.name).into_owned()
                },
                if p.version.is_empty() {
                    "-".into()
                } else {
                    line(&p.version).into_owned()
                },
                p.status.as_str().to_owned(),
                p.sha256.get(..12).unwrap_or("").to_owned(),
                line(&p.source).into_owned(),
                line(p.error.as_deref().unwrap_or(&p.description)).into_owned(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "VERSION",
            "STATUS",
            "SHA256",
            "SOURCE",
            "DESCRIPTION",
        ],
        &rows,
        width,
    )
}

/// `opsd plugins inspect` for people.
pub fn inspection_text(r: &Inspection) -> String {
    let mut o = format!(
        "{}: {}\n",
        r.source,
        if r.accepted { "accepted" } else { "refused" }
    );
    if let Some(e) = &r.error {
        o.push_str(&format!("  reason:    {}\n", indented(e, "             ")));
    }
    if r.size > 0 {
        o.push_str(&format!(
            "  size:      {} bytes\n  sha256:    {}\n",
            r.size, r.sha256
        ));
    }
    if let Some(c) = &r.contract {
        o.push_str(&format!(
            "  contract:  opsd:plugin@{c} (this opsd: {})\n",
            crate::runtime::CONTRACT_VERSION
        ));
    }
    if let Some(i) = &r.info {
        o.push_str(&format!(
            "  name:      {} {}\n  about:     {}\n",
            line(&i.name),
            line(&i.version),
            line(&i.description)
        ));
        if let Some(s) = &i.suggested_schedule {
            o.push_str(&format!("  schedule:  {} (suggested)\n", line(s)));
        }
        let fs: Vec<String> = i
            .capabilities
            .fs
            .iter()
            .map(|f| {
                format!(
                    "{} ({}, {})",
                    line(&f.guest),
                    if f.write { "rw" } else { "ro" },
                    line(&f.reason)
                )
            })
            .collect();
        o.push_str(&format!(
            "  wants:     fs {}\n             exec {}\n             net {}\n",
            list_or_none(&fs),
            list_or_none(
                &i.capabilities
                    .exec
                    .iter()
                    .map(|e| line(e).into_owned())
                    .collect::<Vec<_>>()
            ),
            if i.capabilities.net { "yes" } else { "no" }
        ));
        o.push_str(&format!(
            "  config schema: {}\n",
            line(
                &i.config_schema
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        ));
    }
    if !r.imports.is_empty() {
        o.push_str(&format!("  imports:   {}\n", line(&r.imports.join(", "))));
    }
    o
}

/// Terminal width of stdout, when it is a terminal.
pub fn terminal_width() -> Option<usize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass, which
    // points to a live, properly aligned local.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// How a figure stands against its limit, coloured on a terminal.
#[derive(Clone, Copy, PartialEq)]
enum Standing {
    Ok,
    /// Past the limit, not yet for as long as the limit asks.
    High,
    Over,
    /// An alert that is active.
    Active,
    NoLimit,
}

fn standing_text(s: Standing, colour: bool, note: &str) -> String {
    let (word, code) = match s {
        Standing::Ok => ("ok", "32"),
        Standing::High => ("high", "33"),
        Standing::Over => ("OVER", "31;1"),
        Standing::Active => ("ACTIVE", "31;1"),
        Standing::NoLimit => ("", ""),
    };
    let text = if note.is_empty() {
        word.to_string()
    } else {
        format!("{word} {note}")
    };
    if colour && !code.is_empty() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text
    }
}

/// `opsd status`: each figure against the runbook's limit, then the jobs'
/// `when` conditions and how far each is from running its job.
pub fn status_table(st: &crate::monitor::MachineStatus, colour: bool) -> String {
    let s = &st.sample;
    let source = match st.source {
        SampleSource::Daemon => format!(
            "the daemon's sample of {} (every {}s)",
            when(s.taken),
            st.interval_seconds
        ),
        SampleSource::Now => format!("read now, {} (no daemon is running)", when(s.taken)),
    };
    let mut out = format!("Machine: {source}\n\n");
    out.push_str(&table(
        &["METRIC", "NOW", "LIMIT", "STATE"],
        &machine_rows(st, colour),
        None,
    ));
    if !st.conditions.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["JOB", "WHEN", "NOW", "STATE"],
            &condition_rows(st, colour),
            None,
        ));
    }
    if !st.alerts.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &["ALERT", "SEVERITY", "WHEN", "NOW", "STATE"],
            &alert_rows(st, colour),
            None,
        ));
    }
    out
}

/// Where each `[[alert]]` stands: active since when, when it was last
/// sent and will be again, and how many repeats were held back.
fn alert_rows(st: &crate::monitor::MachineStatus, colour: bool) -> Vec<Vec<String>> {
    let now = st.sample.taken;
    let ago = |t: DateTime<Utc>| human_duration((now - t).num_seconds());
    st.alerts
        .iter()
        .map(|a| {
            let state = match a.active_since {
                Some(since) => {
                    let mut note = format!("since {}", ago(since));
                    if let Some(l) = a.last_sent {
                        note.push_str(&format!("; sent {} ago", ago(l)));
                    }
                    if let Some(n) = a.next_reminder {
                        note.push_str(&format!(
                            ", again in {}",
                            human_duration((n - now).num_seconds())
                        ));
                    }
                    if a.suppressed > 0 {
                        note.push_str(&format!("; {} repeats held back", a.suppressed));
                    }
                    standing_text(Standing::Active, colour, &note)
                }
                None => standing_text(Standing::Ok, colour, ""),
            };
            vec![
                a.alert.clone(),
                a.severity.to_string(),
                a.condition.clone(),
                a.value.map_or("-".into(), |v| format!("{v:.1}")),
                state,
            ]
        })
        .collect()
}

/// Each figure of the machine against the runbook's limit.
///
/// Long on purpose: a row per figure, in the order the table shows them.
fn machine_rows(st: &crate::monitor::MachineStatus, colour: bool) -> Vec<Vec<String>> {
    use crate::monitor::{
        CPU_LIMIT, CPU_LIMIT_FOR, DISK_LIMIT, MEMORY_LIMIT, NETWORK_ERRORS_LIMIT,
    };
    let s = &st.sample;
    let over = |v: Option<f64>, limit: f64| match v {
        Some(v) if v > limit => Standing::Over,
        Some(_) => Standing::Ok,
        None => Standing::NoLimit,
    };
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} %"));
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |metric: String, now: String, limit: String, standing: Standing, note: &str| {
        rows.push(vec![
            metric,
            now,
            limit,
            standing_text(standing, colour, note),
        ]);
    };
    let busy = st.cpu_above_limit_for_seconds;
    let (cpu_standing, cpu_note) = match busy {
        Some(secs) if secs >= CPU_LIMIT_FOR.as_secs() => (
            Standing::Over,
            format!("for {}", human_duration(secs as i64)),
        ),
        Some(secs) => (
            Standing::High,
            format!("for {}", human_duration(secs as i64)),
        ),
        None => (Standing::Ok, String::new()),
    };
    row(
        "cpu".into(),
        format!("{:.1} %", s.cpu_percent),
        format!(
            "{CPU_LIMIT} % for {}",
            humantime::format_duration(CPU_LIMIT_FOR)
        ),
        cpu_standing,
        &cpu_note,
    );
    row(
        "load".into(),
        format!(
            "{:.2} {:.2} {:.2} ({} CPUs)",
            s.load[0], s.load[1], s.load[2], s.cpu_count
        ),
        "-".into(),
        Standing::NoLimit,
        "",
    );
    let memory = s.memory_used_percent();
    row(
        "memory".into(),
        format!("{} of {}", pct(memory), bytes(s.memory_total_bytes as f64)),
        format!("{MEMORY_LIMIT} %"),
        over(memory, MEMORY_LIMIT),
        "",
    );
    row(
        "swap".into(),
        format!(
            "{} of {}",
            pct(s.swap_used_percent().or(Some(0.0))),
            bytes(s.swap_total_bytes as f64)
        ),
        "-".into(),
        Standing::NoLimit,
        "",
    );
    // Mounted filesystems of no size are pseudo ones; a watched path that
    // cannot be read still shows, so a mistyped mount is seen.
    let mounted = |d: &crate::monitor::DiskUse| s.disks.iter().any(|m| std::ptr::eq(m, d));
    for d in s
        .filesystems()
        .into_iter()
        .filter(|d| d.total_bytes > 0 || !mounted(d))
    {
        row(
            format!("disk {}", line(&d.path)),
            format!(
                "{} ({} free)",
                pct(d.used_percent),
                bytes(d.available_bytes as f64)
            ),
            format!("{DISK_LIMIT} %"),
            over(d.used_percent, DISK_LIMIT),
            "",
        );
    }
    row(
        "network errors".into(),
        st.network_errors_per_hour
            .map_or("- (no hour of samples yet)".into(), |r| {
                format!("{r:.0} /h")
            }),
        format!("{NETWORK_ERRORS_LIMIT} /h"),
        over(st.network_errors_per_hour, NETWORK_ERRORS_LIMIT),
        "",
    );
    for p in &s.probes {
        row(
            format!("probe {}", line(&p.url)),
            match (p.seconds, &p.error) {
                (Some(v), _) => format!("{v:.3} s"),
                (None, Some(e)) => format!("failed: {}", line(e)),
                (None, None) => "failed".into(),
            },
            "-".into(),
            Standing::NoLimit,
            "",
        );
    }
    rows
}

/// Where each job's `when` condition stands.
fn condition_rows(st: &crate::monitor::MachineStatus, colour: bool) -> Vec<Vec<String>> {
    let s = &st.sample;
    st.conditions
        .iter()
        .map(|c| {
            let holds = c.past_threshold();
            let state = match (c.holding_since, holds) {
                (Some(since), _) => standing_text(
                    Standing::Over,
                    colour,
                    &format!("since {}", human_duration((s.taken - since).num_seconds())),
                ),
                (None, true) => standing_text(Standing::High, colour, ""),
                (None, false) => standing_text(Standing::Ok, colour, ""),
            };
            let last = c.last_fired.map_or(String::new(), |t| {
                format!(
                    " (last ran the job {} ago)",
                    human_duration((s.taken - t).num_seconds())
                )
            });
            vec![
                c.job.clone(),
                c.condition.clone(),
                c.value.map_or("-".into(), |v| format!("{v:.1}")),
                format!("{state}{last}"),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RunStatus, Trigger};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_plugins_own_words_cannot_drive_the_terminal_or_start_a_line() {
        let entry = PluginEntry {
            name: "evil\u{1b}]0;title\u{7}".into(),
            version: "1\r\n".into(),
            source: "/plugins/evil.wasm".into(),
            sha256: "ab".repeat(32),
            status: crate::plugins::PluginStatus::Ready,
            error: None,
            description: "fine\ndenied: forged".into(),
            capabilities: None,
            size: 1,
        };
        let shown = plugins_table(&[entry], None);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\r'),
            "{shown}"
        );
        assert!(!shown.lines().any(|l| l.starts_with("denied")), "{shown}");
        assert!(shown.contains("fine\\ndenied: forged"), "{shown}");
        let mut r = record(
            "job",
            RunStatus::Failed,
            "ok\u{9b}2J",
            Some("first\ndenied: forged"),
        );
        r.metrics.push(crate::record::Metric {
            name: "m\u{1b}[31m".into(),
            value: 1.0,
            unit: Some("u\n".into()),
        });
        let shown = run_report(&r);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{9b}'),
            "{shown}"
        );
        assert!(!shown.lines().any(|l| l.starts_with("denied")), "{shown}");
    }

    /// Local times depend on the machine's zone; snapshots see a token.
    macro_rules! snapshot {
        ($name:expr, $value:expr) => {
            insta::with_settings!({filters => vec![
                (r"\w{3} \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S+", "[local time]"),
                (r"\d{2}-\d{2} \d{2}:\d{2}", "[mm-dd hh:mm]"),
            ]}, {
                insta::assert_snapshot!($name, $value);
            });
        };
    }

    fn entries() -> Vec<ScheduleEntry> {
        vec![
            ScheduleEntry {
                job: "nightly-backup".into(),
                plugin: "backup".into(),
                schedule: "0 2 * * *".into(),
                timezone: "Europe/Berlin".into(),
                enabled: true,
                next: Some(t("2026-11-29T01:00:00Z")),
                last: Some(t("2026-11-28T01:00:04Z")),
                last_status: Some(RunStatus::Ok),
                last_run: None,
                broken: Vec::new(),
                when: Vec::new(),
            },
            ScheduleEntry {
                job: "rotate-app-logs".into(),
                plugin: "log-rotate".into(),
                schedule: "*/15 * * * *".into(),
                timezone: "UTC".into(),
                enabled: true,
                next: Some(t("2026-11-28T12:15:00Z")),
                last: Some(t("2026-11-28T12:00:00Z")),
                last_status: Some(RunStatus::Failed),
                last_run: None,
                broken: Vec::new(),
                when: Vec::new(),
            },
            ScheduleEntry {
                job: "monthly-report".into(),
                plugin: "report".into(),
                schedule: "@monthly".into(),
                timezone: "UTC".into(),
                enabled: false,
                next: None,
                last: None,
                last_status: None,
                last_run: None,
                broken: Vec::new(),
                when: Vec::new(),
            },
            ScheduleEntry {
                job: "disk-cleanup".into(),
                plugin: "log-rotate".into(),
                schedule: String::new(),
                timezone: "UTC".into(),
                enabled: true,
                next: None,
                last: Some(t("2026-11-27T22:41:10Z")),
                last_status: Some(RunStatus::Ok),
                last_run: None,
                broken: Vec::new(),
                when: vec!["disk_used_percent(/var) > 90 for 5m".into()],
            },
        ]
    }

    #[test]
    fn a_broken_job_is_listed_last_with_why() {
        let now = t("2026-11-28T12:03:30Z");
        let mut all = entries();
        all.push(ScheduleEntry {
            job: "nfs-backup".into(),
            plugin: "backup".into(),
            schedule: String::new(),
            timezone: String::new(),
            enabled: false,
            next: None,
            when: Vec::new(),
            last: None,
            last_status: None,
            last_run: None,
            broken: vec!["line 12: fs grant host directory /mnt/nfs does not exist".into()],
        });
        let out = schedule_table(&all, now, Some(100));
        let rows: Vec<&str> = out.lines().collect();
        assert!(
            rows[5].starts_with("BROKEN") && rows[5].contains("nfs-backup"),
            "{out}"
        );
        assert!(
            out.contains("nfs-backup is broken and does not run: line 12: fs grant host directory /mnt/nfs does not exist\n"),
            "{out}"
        );
    }

    #[test]
    fn schedule_list_reads_like_list_timers_and_narrows_to_fit() {
        let now = t("2026-11-28T12:03:30Z");
        snapshot!("schedule_list_wide", schedule_table(&entries(), now, None));
        snapshot!(
            "schedule_list_100_columns",
            schedule_table(&entries(), now, Some(100))
        );
        snapshot!(
            "schedule_list_60_columns",
            schedule_table(&entries(), now, Some(60))
        );
        for width in [100, 60] {
            let out = schedule_table(&entries(), now, Some(width));
            assert!(out.lines().all(|l| l.chars().count() <= width), "{out}");
        }
    }

    fn record(job: &str, status: RunStatus, summary: &str, error: Option<&str>) -> RunRecord {
        let mut r = RunRecord::begin(
            "01M8G7VFZT3YGV1TJK7GK2X11G",
            job,
            "log-rotate",
            Trigger::Schedule,
            t("2026-11-28T12:00:00Z"),
            t("2026-11-28T12:00:00Z"),
            false,
        );
        r.status = status;
        r.summary = summary.into();
        r.error = error.map(str::to_owned);
        r.duration_ms = Some(1234);
        r.plugin_version = "0.1.0".into();
        r
    }

    #[test]
    fn history_and_run_reports() {
        let runs = vec![
            record(
                "rotate",
                RunStatus::Ok,
                "rotated 3 of 4 logs (1.2 MiB compressed to 140.0 KiB)",
                None,
            ),
            record(
                "rotate",
                RunStatus::Failed,
                "grant violation: program `/bin/sh` is not in the job's exec grant (empty); add it to `exec = [...]`",
                Some(
                    "grant violation: program `/bin/sh` is not in the job's exec grant (empty); add it to `exec = [...]`",
                ),
            ),
            record(
                "backup",
                RunStatus::Timeout,
                "timeout: the run exceeded the job's timeout of 30m and was interrupted",
                Some("timeout: the run exceeded the job's timeout of 30m and was interrupted"),
            ),
        ];
        snapshot!("history", history_table(&runs, None));
        let mut r = runs[0].clone();
        r.metrics.push(crate::record::Metric {
            name: "logs_rotated".into(),
            value: 3.0,
            unit: None,
        });
        r.metrics.push(crate::record::Metric {
            name: "bytes_rotated".into(),
            value: 1258291.0,
            unit: Some("bytes".into()),
        });
        r.details = "rotated app.log\nrotated db.log".into();
        r.plugin_load = Some(crate::record::PluginLoad {
            source: crate::record::LoadSource::Compiled,
            ms: 15463.0,
        });
        snapshot!("run_report_ok", run_report(&r));
        snapshot!("run_report_failed", run_report(&runs[1]));
        assert_eq!(history_table(&[], None), "No runs recorded.\n");
    }

    #[test]
    fn durations_read_like_systemctl() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(125), "2min 5s");
        assert_eq!(human_duration(3 * 3600 + 720), "3h 12min");
        assert_eq!(human_duration(86_400 + 3600), "1 day 1h");
        assert_eq!(human_duration(-5), "0s");
    }

    #[test]
    fn status_holds_figures_against_the_runbook_and_colours_only_a_terminal() {
        use crate::monitor::{ConditionState, DiskUse, MachineStatus, Sample};
        let taken = t("2026-11-28T12:00:00Z");
        let disk = |path: &str, used: f64| DiskUse {
            path: path.into(),
            filesystem: "ext4".into(),
            total_bytes: 100 << 30,
            available_bytes: ((100.0 - used) * (1u64 << 30) as f64) as u64,
            used_bytes: (used * (1u64 << 30) as f64) as u64,
            used_percent: Some(used),
        };
        let st = MachineStatus {
            source: crate::monitor::SampleSource::Daemon,
            interval_seconds: 15,
            sample: Sample {
                taken,
                cpu_count: 2,
                cpu_percent: 93.0,
                load: [1.5, 1.0, 0.5],
                memory_total_bytes: 8 << 30,
                memory_used_bytes: 2 << 30,
                disks: vec![disk("/", 40.0), disk("/var", 96.5)],
                ..Sample::default()
            },
            network_errors_per_hour: Some(3.0),
            cpu_above_limit_for_seconds: Some(120),
            conditions: vec![ConditionState {
                job: "clean-var".into(),
                condition: "disk_used_percent(/var) > 90 for 5m".into(),
                metric: "disk_used_percent(/var)".into(),
                threshold: 90.0,
                above: true,
                value: Some(96.5),
                holding_since: Some(taken - chrono::Duration::minutes(2)),
                last_fired: None,
            }],
            alerts: vec![crate::monitor::alert::AlertStatus {
                alert: "mem".into(),
                severity: crate::record::Severity::P1,
                message: "memory is short".into(),
                condition: "memory_used_percent > 85 for 5m".into(),
                value: Some(91.0),
                active: true,
                active_since: Some(taken - chrono::Duration::minutes(30)),
                last_sent: Some(taken - chrono::Duration::minutes(30)),
                next_reminder: Some(taken + chrono::Duration::minutes(30)),
                suppressed: 120,
            }],
        };
        let plain = status_table(&st, false);
        let line = |start: &str| {
            plain
                .lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start} line:\n{plain}"))
                .to_string()
        };
        assert!(line("cpu ").ends_with("high for 2min 0s"), "{plain}");
        assert!(line("memory ").ends_with("ok"), "{plain}");
        assert!(
            line("disk /var ").contains("96.5 %") && line("disk /var ").ends_with("OVER"),
            "{plain}"
        );
        assert!(
            line("clean-var ").ends_with("OVER since 2min 0s"),
            "{plain}"
        );
        assert!(
            line("mem ").ends_with(
                "ACTIVE since 30min 0s; sent 30min 0s ago, again in 30min 0s; 120 repeats held back"
            ),
            "{plain}"
        );
        assert!(!plain.contains('\x1b'), "{plain}");
        let coloured = status_table(&st, true);
        assert!(coloured.contains("\x1b[31;1mOVER\x1b[0m"), "{coloured}");
        assert!(
            coloured.contains("\x1b[33mhigh for 2min 0s\x1b[0m"),
            "{coloured}"
        );
        assert!(coloured.contains("\x1b[32mok\x1b[0m"), "{coloured}");
    }

    #[test]
    fn tables_align_and_cut() {
        let t = table(&["A", "LONGER"], &[vec!["xxxx".into(), "y".into()]], None);
        assert_eq!(t, "A     LONGER\nxxxx  y\n");
        let t = table(
            &["A", "B"],
            &[vec!["1".into(), "a very long summary".into()]],
            Some(10),
        );
        assert_eq!(t.lines().nth(1).unwrap(), "1  a very…");
    }
}
