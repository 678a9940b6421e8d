//! report: builds the daily, weekly or monthly report from the run history
//! and the daemon's system samples (through the host's history interface)
//! and writes it into the report grant as JSON, Markdown and one
//! self-contained HTML page, each replaced atomically.

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
    "formats": {"type": "array", "items": {"enum": ["json", "md", "html", "text"]}}
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
        let day = slot.format("%Y-%m-%d").to_string();
        let mut written = Vec::new();
        for f in formats {
            let path = format!(
                "{}/report-{}-{day}.{}",
                cfg.output_dir.trim_end_matches('/'),
                report.period.kind,
                f.ext()
            );
            let text = opsd_report_core::render(&report, f);
            if !ctx.dry_run {
                write_atomic(&path, text.as_bytes()).at(format!("writing {path}"))?;
            }
            written.push((path, text.len() as u64));
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
        let mut out = Outcome::ok(summary)
            .details(report.attention.join("\n"))
            .metric("runs", t.runs as f64, None)
            .metric("failed", t.failed as f64, None)
            .metric("attention", report.attention.len() as f64, None);
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
            &serde_json::json!({"output_dir": "/reports", "period": "weekly", "formats": ["json", "html"]}),
        );
    }
}
