//! Run-history reports, shared by the `report` plugin and `opsd report`
//! so both give the same numbers: [`input::Input`] in, [`model::Report`]
//! out (JSON, schema `opsd.report/1`), rendered as Markdown, text or one
//! self-contained HTML page.

pub mod build;
pub mod html;
pub mod input;
pub mod model;
pub mod render;

pub use build::{Period, build};
pub use model::Report;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Markdown,
    Html,
    Text,
}

impl Format {
    /// Parses `json`, `md`/`markdown`, `html`, `text`.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "json" => Format::Json,
            "md" | "markdown" => Format::Markdown,
            "html" => Format::Html,
            "text" | "txt" => Format::Text,
            _ => return None,
        })
    }

    /// The file extension.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Text => "txt",
        }
    }
}

/// The report rendered in a format.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise the report: {e}\"}}"));
            s.push('\n');
            s
        }
        Format::Markdown => render::markdown(report),
        Format::Html => html::page(report),
        Format::Text => render::text(report),
    }
}

/// Parses a span such as `7d`, `24h`, `90m` or `30d` into seconds.
pub fn parse_span(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    (n > 0).then_some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use input::*;

    const NOW: i64 = 1_800_000_000;

    fn run(id: u32, job: &str, plugin: &str, ago_h: i64, status: &str, ms: u64) -> RunIn {
        let started = NOW - ago_h * 3600;
        RunIn {
            id: format!("r{id:03}"),
            job: job.into(),
            plugin: plugin.into(),
            scheduled: started,
            started,
            finished: (status != "running" && status != "skipped")
                .then_some(started + (ms / 1000) as i64),
            status: status.into(),
            summary: format!("{status} run"),
            error: (status == "failed").then(|| format!("exit 1 at step {id}\nmore detail")),
            duration_ms: (status != "skipped").then_some(ms),
            metrics: Vec::new(),
            details: String::new(),
        }
    }

    fn input() -> Input {
        let mut runs = Vec::new();
        // This week: 20 runs of `rotate`, 18 ok, 1 warning, 1 failed, with
        // durations 100..=2000 ms; one slot skipped.
        for i in 0..20u32 {
            let status = match i {
                5 => "failed",
                9 => "warning",
                _ => "ok",
            };
            runs.push(run(
                i,
                "rotate",
                "log-rotate",
                1 + i as i64 * 8,
                status,
                100 * (i as u64 + 1),
            ));
        }
        runs.push(run(50, "rotate", "log-rotate", 3, "skipped", 0));
        // The week before: 4 runs, all ok, 1000 ms each.
        for i in 0..4u32 {
            runs.push(run(
                60 + i,
                "rotate",
                "log-rotate",
                200 + i as i64 * 10,
                "ok",
                1000,
            ));
        }
        // Backups growing 1 GiB a day.
        for d in 0..5i64 {
            let mut r = run(70 + d as u32, "db", "backup", 24 * d + 2, "ok", 60_000);
            r.metrics = vec![("bytes_total".into(), ((10 - d) as f64) * 1073741824.0)];
            runs.push(r);
        }
        let mut audit = run(80, "audit", "audit", 5, "failed", 900);
        audit.metrics = vec![
            ("findings_p1".into(), 2.0),
            ("findings_p2".into(), 1.0),
            ("findings_new".into(), 1.0),
        ];
        audit.details = "new:\n  [P1] secret-readable /srv/app/.env: readable. Fix: chmod 600 /srv/app/.env\nfindings:\n  x\n".into();
        runs.push(audit);
        // Disk: 100 GiB, used from 50 GiB growing 1 GiB/day.
        let gib = 1u64 << 30;
        let samples = (0..8)
            .map(|d| SampleIn {
                taken: NOW - (7 - d) * 86_400,
                cpu_percent: 10.0 + d as f64,
                memory_total: 100,
                memory_used: 50,
                disks: vec![DiskIn {
                    mount: "/".into(),
                    total: 100 * gib,
                    available: (50 - d as u64) * gib,
                }],
            })
            .collect::<Vec<_>>();
        Input {
            hostname: "box".into(),
            now: NOW,
            runs,
            jobs: vec![JobIn {
                name: "idle".into(),
                plugin: "vacuum".into(),
                schedule: "0 3 * * 0".into(),
                enabled: true,
                next_fire: Some(NOW + 3600),
                last_success: None,
                missed_total: 0,
            }],
            current: samples.last().cloned(),
            samples,
        }
    }

    #[test]
    fn known_runs_give_known_numbers() {
        let r = build(&input(), Period::named("weekly", NOW).unwrap());
        let j = r.jobs.iter().find(|j| j.name == "rotate").unwrap();
        assert_eq!(
            (j.runs, j.ok, j.warning, j.failed, j.missed),
            (20, 18, 1, 1, 1)
        );
        assert_eq!(j.success_rate, Some(95.0));
        assert_eq!(j.previous_success_rate, Some(100.0));
        let d = j.duration_ms.unwrap();
        // 100, 200, ..., 2000 ms: nearest-rank p50 = 1000, p95 = 1900.
        assert_eq!((d.p50, d.p95, d.max), (1000, 1900, 2000));
        assert_eq!(j.previous_duration_ms.unwrap().p95, 1000);
        assert_eq!(
            render::change(j.duration_ms, j.previous_duration_ms),
            "+90 %"
        );
        assert_eq!(j.failures.len(), 1);
        assert_eq!(j.failures[0].error, "exit 1 at step 5");
        assert_eq!(j.since_last_success_s, Some(3600));
        let idle = r.jobs.iter().find(|j| j.name == "idle").unwrap();
        assert_eq!(idle.runs, 0);
        assert!(
            r.attention
                .iter()
                .any(|a| a.contains("idle") && a.contains("never"))
        );
        assert_eq!(r.totals.runs, 26);
    }

    #[test]
    fn trends_backups_disk_and_audit() {
        let r = build(&input(), Period::named("weekly", NOW).unwrap());
        let b = &r.backups[0];
        assert_eq!(b.series.len(), 5);
        let g = b.growth_bytes_per_day.unwrap();
        assert!((g - 1073741824.0).abs() < 1.0, "{g}");
        let disk = &r.system.disks[0];
        assert!((disk.used_percent - 57.0).abs() < 1e-9);
        assert!((disk.growth_bytes_per_day.unwrap() - 1073741824.0).abs() < 1.0);
        // 43 GiB free at 1 GiB/day.
        assert_eq!(
            disk.projected_full.as_deref(),
            Some(build::rfc3339(NOW + 43 * 86_400).as_str())
        );
        let a = &r.audit[0];
        assert_eq!(a.by_severity, [0, 2, 1, 0]);
        assert_eq!(a.new_lines.len(), 1);
        assert!(r.attention.iter().any(|x| x.contains("2 P1")));
        assert_eq!(r.system.cpu_peak, Some(17.0));
    }

    #[test]
    fn renders_are_self_contained() {
        let r = build(&input(), Period::named("daily", NOW).unwrap());
        let html = render(&r, Format::Html);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<svg"));
        // The only URL is the SVG namespace; nothing is fetched.
        let urls = html.matches("http").count();
        assert_eq!(urls, html.matches("http://www.w3.org/2000/svg").count());
        assert!(!html.contains("<script"), "no scripts");
        let md = render(&r, Format::Markdown);
        assert!(md.contains("| rotate | log-rotate |"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&render(&r, Format::Json)).unwrap();
        assert_eq!(json["schema"], "opsd.report/1");
    }

    #[test]
    fn spans_and_formats() {
        assert_eq!(parse_span("7d"), Some(604_800));
        assert_eq!(parse_span("36h"), Some(129_600));
        assert_eq!(parse_span("soon"), None);
        assert_eq!(Format::parse("md"), Some(Format::Markdown));
        assert_eq!(Period::last(604_800, NOW).kind, "weekly");
    }
}
