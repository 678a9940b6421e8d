//! Command-line arguments and the text people read: tables in the style
//! of `systemctl list-timers`, and `--json` for scripts (the same records
//! the control socket returns).

use crate::ops::ScheduleEntry;
use crate::record::{LogLine, RunRecord, RunStatus};
use chrono::{DateTime, Local, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// opsd: a maintenance scheduler that runs sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "opsd", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: /etc/opsd/opsd.toml for root,
    /// ~/.config/opsd/opsd.toml otherwise]
    #[arg(long, global = true, env = "OPSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How the daemon's own log lines are written to stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For a terminal
    Human,
    /// One JSON object a line, for journald and collectors
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler until SIGINT or SIGTERM
    Daemon,
    /// Show the schedule
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Run a job now and wait for it (exit 1 if it fails)
    Run {
        /// Job name from the configuration
        job: String,
        /// Ask the plugin to report what it would do, changing nothing
        #[arg(long)]
        dry_run: bool,
        /// Print the run record as JSON
        #[arg(long)]
        json: bool,
    },
    /// Show past runs, newest first
    History {
        /// Only this job's runs
        #[arg(long)]
        job: Option<String>,
        /// Only runs that ended this way
        #[arg(long, value_enum)]
        status: Option<RunStatus>,
        /// Only runs started within this long ago (`7d`, `12h`)
        #[arg(long, value_name = "AGE")]
        since: Option<String>,
        /// At most this many runs
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print records as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Show the captured log of one run
    Logs {
        /// Run id, as `opsd history` shows it
        run_id: String,
        /// Print lines as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and exit
    Check,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Every job with its next and last run
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Let the scheduler fire a job again (persists across restarts)
    Enable {
        /// Job name from the configuration
        job: String,
    },
    /// Stop the scheduler firing a job (persists across restarts; `opsd run` still works)
    Disable {
        /// Job name from the configuration
        job: String,
    },
    /// When an expression fires, like `systemd-analyze calendar`
    Next {
        /// A crontab expression or @nickname, e.g. "0 2 * * sun"
        expr: String,
        /// IANA time zone the expression is read in
        #[arg(long, default_value = "UTC", value_name = "ZONE")]
        tz: String,
        /// List fire times strictly after this instant [default: now]
        #[arg(long, value_name = "RFC3339")]
        after: Option<String>,
        /// How many fire times
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Print a JSON array of RFC 3339 times with the zone's offset
        #[arg(long)]
        json: bool,
    },
}

/// Where the configuration is when `--config` is not given.
pub fn default_config_path() -> PathBuf {
    crate::config::system_or_user_path(
        "/etc/opsd/opsd.toml",
        "XDG_CONFIG_HOME",
        ".config",
        "opsd/opsd.toml",
    )
}

/// A time as people read it in tables: local, with weekday.
fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%a %Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `3h 12min`, `45s`, `2 days 3h`: the largest two units.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}min {s}s"),
        (0, _, _) => format!("{h}h {m}min"),
        (1, _, _) => format!("1 day {h}h"),
        _ => format!("{d} days {h}h"),
    }
}

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
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let (next, left) = match e.next {
                Some(n) => (
                    when(n),
                    format!("{} left", human_duration((n - now).num_seconds())),
                ),
                None if !e.enabled => ("disabled".into(), "-".into()),
                None => ("-".into(), "-".into()),
            };
            let (last, passed) = match e.last {
                Some(l) => (
                    when(l),
                    format!("{} ago", human_duration((now - l).num_seconds())),
                ),
                None => ("-".into(), "-".into()),
            };
            vec![
                next,
                left,
                last,
                passed,
                e.job.clone(),
                e.plugin.clone(),
                e.last_status.map_or("-".into(), |s| s.to_string()),
            ]
        })
        .collect();
    let mut out = table(
        &["NEXT", "LEFT", "LAST", "PASSED", "JOB", "PLUGIN", "STATUS"],
        &rows,
        width,
    );
    out.push_str(&format!(
        "\n{} job{} listed.\n",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    ));
    out
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
                match &r.error {
                    Some(e) if r.summary.is_empty() => e.clone(),
                    _ => r.summary.clone(),
                },
            ]
        })
        .collect();
    table(
        &["RUN", "STARTED", "JOB", "STATUS", "TOOK", "SUMMARY"],
        &rows,
        width,
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
        r.plugin,
        r.plugin_version,
        r.duration_ms.map_or("-".into(), format_ms),
        r.summary
    );
    if let Some(e) = &r.error
        && *e != r.summary
    {
        out.push_str(&format!("error: {e}\n"));
    }
    for m in &r.metrics {
        out.push_str(&format!(
            "  {} = {}{}\n",
            m.name,
            m.value,
            m.unit
                .as_deref()
                .map(|u| format!(" {u}"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!("run {} (opsd logs {})\n", r.id, r.id));
    out
}

/// `opsd logs` for people.
pub fn log_text(lines: &[LogLine]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&format!(
            "{:>8.3}s {:<5} {:<6} {}\n",
            l.ms as f64 / 1000.0,
            l.level,
            l.source,
            l.message
        ));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_systemctl() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(125), "2min 5s");
        assert_eq!(human_duration(3 * 3600 + 720), "3h 12min");
        assert_eq!(human_duration(86_400 + 3600), "1 day 1h");
        assert_eq!(human_duration(-5), "0s");
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
