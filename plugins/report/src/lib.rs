//! report: builds the daily, weekly or monthly report from the run history
//! and the daemon's system samples (through the host's history interface)
//! and writes it into the report grant as JSON, Markdown and one
//! self-contained HTML page, each written atomically.
//!
//! Each run writes files of its own, named after its slot
//! (`report-daily-2026-11-30T0900.html`) or, with `file_per = "period"`,
//! after its day (`report-daily-2026-11-30.html`); a name another run
//! already wrote gets a suffix (`-2`, `-3`, ...), so no run's report is
//! ever replaced by another's, and a run that cannot write every format
//! removes what it wrote.

use opsd_report_core::input::{DiskIn, Input, JobIn, RunIn, SampleIn, wants_detail};
use opsd_report_core::{Format, Period};
use opsd_sdk::{
    Artifact, Context, ContextExt, Description, IoContext, Outcome, Plugin, PluginError, history,
    system,
};
use serde::Deserialize;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["output_dir"],
  "additionalProperties": false,
  "properties": {
    "output_dir": {"type": "string", "description": "guest path (read-write grant) the reports are written to"},
    "period": {"enum": ["daily", "weekly", "monthly"], "default": "daily"},
    "formats": {"type": "array", "items": {"enum": ["json", "md", "html", "text"]}},
    "file_per": {"enum": ["run", "period"], "default": "run", "description": "name files after the run's slot (to the minute) or after its day; never replacing another run's files either way"},
    "keep": {"type": "integer", "minimum": 0, "default": 100, "description": "newest reports of this period to keep in output_dir (older ones are removed after a report is written); 0 keeps all"}
  }
}"#;

/// Most runs read from history per report.
const MAX_RUNS: u32 = 10_000;
/// Most run details fetched per report.
const MAX_DETAILS: usize = 2_000;

/// `[job.config]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub output_dir: String,
    #[serde(default = "daily")]
    pub period: String,
    #[serde(default = "all_formats")]
    pub formats: Vec<String>,
    #[serde(default)]
    pub file_per: FilePer,
    #[serde(default = "keep_default")]
    pub keep: u64,
}

fn keep_default() -> u64 {
    100
}

/// The stems (path without extension) of this period's reports in
/// `names` (file names in the output directory) past the newest `keep`,
/// oldest first: what a run removes. Names sort as their slots do.
pub fn beyond_keep(names: &[String], kind: &str, exts: &[&str], keep: u64) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    let prefix = format!("report-{kind}-");
    let mut stems: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .filter_map(|n| {
            let (stem, ext) = n.rsplit_once('.')?;
            exts.contains(&ext).then(|| stem.to_owned())
        })
        .collect();
    stems.sort();
    stems.dedup();
    let excess = stems.len().saturating_sub(keep as usize);
    stems.truncate(excess);
    stems
}

/// What a report file is named after.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilePer {
    /// The run's slot, to the minute: a 09:00 and an 18:00 report of one
    /// day are two files.
    #[default]
    Run,
    /// The slot's day, as before: one name a day, later runs suffixed.
    Period,
}

/// Most suffixes tried for a free name before the run gives up.
const MAX_SUFFIX: u32 = 1000;

/// The path stem (no extension) this run writes: `base`, or `base-N` for
/// the first N that no file of any of `exts` holds yet, so another run's
/// report is never replaced.
pub fn free_stem(base: &str, exts: &[&str], exists: impl Fn(&str) -> bool) -> Option<String> {
    (1..=MAX_SUFFIX)
        .map(|n| {
            if n == 1 {
                base.to_owned()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|stem| !exts.iter().any(|e| exists(&format!("{stem}.{e}"))))
}

fn daily() -> String {
    "daily".into()
}

fn all_formats() -> Vec<String> {
    vec!["json".into(), "md".into(), "html".into()]
}

fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn sample(s: system::SystemSnapshot) -> SampleIn {
    SampleIn {
        taken: s.taken_at as i64,
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
    }
}

/// Everything the report needs, through the history interface.
fn gather(period: Period) -> Input {
    let since = opsd_report_core::build::rfc3339(period.previous().from);
    let summaries = history::runs(None, Some(&since), MAX_RUNS);
    let mut details = 0;
    let runs = summaries
        .into_iter()
        .map(|r| {
            let mut run = RunIn {
                scheduled: unix(&r.scheduled),
                started: unix(&r.started),
                finished: r.finished.as_deref().map(unix),
                id: r.id,
                job: r.job,
                plugin: r.plugin,
                status: r.status,
                summary: r.summary,
                error: r.error,
                duration_ms: r.duration_ms,
                metrics: Vec::new(),
                details: String::new(),
                // The history interface gives plugins no dry runs.
                dry_run: false,
                host: None,
            };
            if wants_detail(&run.plugin) && details < MAX_DETAILS {
                details += 1;
                if let Some(d) = history::detail(&run.id) {
                    run.metrics = d.metrics.into_iter().map(|m| (m.name, m.value)).collect();
                    run.details = d.details;
                }
            }
            run
        })
        .collect();
    let jobs = history::jobs()
        .into_iter()
        .map(|j| JobIn {
            // The newest run ever (the history answers newest first).
            last_run: history::runs(Some(&j.name), None, 1)
                .first()
                .map(|r| unix(&r.started)),
            name: j.name,
            plugin: j.plugin,
            schedule: j.schedule,
            enabled: j.enabled,
            next_fire: j.next_fire.as_deref().map(unix),
            last_success: j.last_success.as_deref().map(unix),
            missed_total: j.missed_total,
        })
        .collect();
    let now = system::snapshot();
    Input {
        hostname: now.hostname.clone(),
        now: period.to,
        runs,
        jobs,
        samples: history::samples(Some(&since))
            .into_iter()
            .map(sample)
            .collect(),
        current: Some(sample(now)),
        hosts: Vec::new(),
    }
}

struct Report;

impl Plugin for Report {
    fn describe() -> Description {
        Description::new(
            "report",
            env!("CARGO_PKG_VERSION"),
            "Daily, weekly and monthly reports from run history (JSON, Markdown, HTML)",
        )
        .wants_dir("/reports", true, "where reports are written")
        .config_schema(SCHEMA)
        .suggested_schedule("5 0 * * *")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        if !cfg.output_dir.starts_with('/') {
            return Err(ctx.bad_config(format!(
                "output_dir `{}` is relative: write the guest path, such as \"/reports\"",
                cfg.output_dir
            )));
        }
        let formats = cfg
            .formats
            .iter()
            .map(|f| {
                Format::parse(f).ok_or_else(|| {
                    ctx.bad_config(format!("format `{f}`: use json, md, html or text"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The report stands for its slot: the period ends at the scheduled
        // time and the file is named after that day in the job's zone, so a
        // catch-up run at 00:01 still writes yesterday's report.
        let slot = ctx.scheduled_time()?;
        let now = slot.timestamp();
        let period = Period::named(&cfg.period, now).ok_or_else(|| {
            ctx.bad_config(format!(
                "period `{}`: use daily, weekly or monthly",
                cfg.period
            ))
        })?;
        let report = opsd_report_core::build(&gather(period), period);
        let when = match cfg.file_per {
            FilePer::Run => slot.format("%Y-%m-%dT%H%M").to_string(),
            FilePer::Period => slot.format("%Y-%m-%d").to_string(),
        };
        let base = format!(
            "{}/report-{}-{when}",
            cfg.output_dir.trim_end_matches('/'),
            report.period.kind
        );
        let exts: Vec<&str> = formats.iter().map(|f| f.ext()).collect();
        let stem = free_stem(&base, &exts, |p| {
            std::fs::symlink_metadata(p).is_ok()
        })
        .ok_or_else(|| {
            PluginError::other(
                "io",
                format!(
                    "{base}.* and {MAX_SUFFIX} suffixed names are taken by other runs' reports; clear some out"
                ),
            )
        })?;
        let mut written: Vec<(String, u64)> = Vec::new();
        for f in formats {
            let path = format!("{stem}.{}", f.ext());
            let text = opsd_report_core::render(&report, f);
            if !ctx.dry_run
                && let Err(e) = write_atomic(&path, text.as_bytes())
            {
                // All formats or none: a retry starts from a clean slate.
                for (done, _) in &written {
                    let _ = std::fs::remove_file(done);
                }
                return Err(e).at(format!("writing {path}"));
            }
            written.push((path, text.len() as u64));
        }
        // Older reports of this period past `keep`, every format of each.
        let all_exts = ["json", "md", "html", "txt"];
        let names: Vec<String> = std::fs::read_dir(&cfg.output_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let dir = cfg.output_dir.trim_end_matches('/');
        let mut pruned = 0u64;
        for stem in beyond_keep(&names, &report.period.kind, &all_exts, cfg.keep) {
            for ext in all_exts {
                let path = format!("{dir}/{stem}.{ext}");
                if !names.iter().any(|n| *n == format!("{stem}.{ext}")) {
                    continue;
                }
                if ctx.dry_run {
                    opsd_sdk::info!("would remove {path} (keep = {})", cfg.keep);
                } else if let Err(e) = std::fs::remove_file(&path) {
                    opsd_sdk::warn!("could not remove {path}: {e}");
                    continue;
                }
                pruned += 1;
            }
        }
        let t = &report.totals;
        let mut summary = format!(
            "{} report: {} runs, {} failed, success {}; {} need attention",
            report.period.kind,
            t.runs,
            t.failed,
            opsd_report_core::render::rate(t.success_rate),
            report.attention.len()
        );
        if let Some((first, _)) = written
            .iter()
            .find(|(p, _)| p.ends_with(".html"))
            .or(written.first())
        {
            summary.push_str(&format!(
                "; {} {first}",
                if ctx.dry_run { "would write" } else { "wrote" }
            ));
        }
        if pruned > 0 {
            summary.push_str(&format!(
                "; {} {pruned} older report files (keep = {})",
                if ctx.dry_run {
                    "would remove"
                } else {
                    "removed"
                },
                cfg.keep
            ));
        }
        let mut out = Outcome::ok(summary)
            .details(report.attention.join("\n"))
            .metric("runs", t.runs as f64, None)
            .metric("failed", t.failed as f64, None)
            .metric("attention", report.attention.len() as f64, None)
            .metric("pruned_files", pruned as f64, None);
        if let Some(r) = t.success_rate {
            out = out.metric("success_rate", r, Some("percent"));
        }
        if !ctx.dry_run {
            for (path, size) in written {
                out = out.artifact(Artifact {
                    path,
                    kind: "report".into(),
                    size_bytes: Some(size),
                    sha256: None,
                });
            }
        }
        Ok(out)
    }
}

/// Writes a file through a temp file and a rename, so a reader never sees
/// half a report; a write that fails (a full disk) leaves nothing behind.
fn write_atomic(path: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = format!("{path}.tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

opsd_sdk::export_plugin!(Report);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({"output_dir": "/reports", "period": "weekly", "formats": ["json", "html"], "file_per": "period", "keep": 30}),
        );
    }

    #[test]
    fn only_this_periods_oldest_reports_past_keep_go() {
        let names: Vec<String> = [
            "report-daily-2026-11-29T0900.html",
            "report-daily-2026-11-29T0900.json",
            "report-daily-2026-11-30T0900.html",
            "report-daily-2026-11-30T0900-2.html",
            "report-daily-2026-11-30T1800.html",
            "report-weekly-2026-11-23T0000.html",
            "report-daily-notes.pdf",
            "unrelated.html",
        ]
        .map(String::from)
        .to_vec();
        let exts = ["json", "md", "html"];
        assert_eq!(
            beyond_keep(&names, "daily", &exts, 2),
            [
                "report-daily-2026-11-29T0900",
                "report-daily-2026-11-30T0900"
            ]
        );
        assert!(beyond_keep(&names, "daily", &exts, 0).is_empty());
        assert!(beyond_keep(&names, "weekly", &exts, 1).is_empty());
    }

    #[test]
    fn a_taken_name_gets_a_suffix_for_every_format() {
        let taken = [
            "/r/report-daily-2026-11-30T0900.html",
            "/r/report-daily-2026-11-30T0900-2.json",
        ];
        let exists = |p: &str| taken.contains(&p);
        let base = "/r/report-daily-2026-11-30T0900";
        // The HTML of the first name and the JSON of the second are
        // another run's: this run's JSON and HTML go to the third.
        assert_eq!(
            free_stem(base, &["json", "html"], exists).as_deref(),
            Some("/r/report-daily-2026-11-30T0900-3")
        );
        assert_eq!(free_stem(base, &["md"], exists).as_deref(), Some(base));
        assert_eq!(free_stem(base, &["html"], |_| true), None);
    }
}
