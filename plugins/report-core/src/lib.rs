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

/// The longest span a report covers: a hundred years (36500 days) is
/// all history, and keeps every time computed from it in range.
pub const MAX_SPAN_SECONDS: i64 = 36_500 * 86_400;

/// Parses a span such as `7d`, `24h`, `90m` or `30d` into seconds; none
/// past [`MAX_SPAN_SECONDS`].
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
    n.checked_mul(mult)
        .filter(|s| (1..=MAX_SPAN_SECONDS).contains(s))
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
            dry_run: false,
            host: None,
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
                last_run: None,
            }],
            current: samples.last().cloned(),
            samples,
            hosts: Vec::new(),
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
        // Daily samples at 10..=17 % CPU: the best level two neighbours
        // both held.
        assert_eq!(r.system.cpu_peak, Some(16.0));
        assert_eq!(r.system.peak_window_s, 300);
        assert_eq!(disk.trend_note, None);
    }

    #[test]
    fn the_newest_good_drill_of_each_set_is_shown() {
        let mut i = input();
        let drill = |id: u32, hours_ago: i64, status: &str, rows: f64| {
            let mut r = run(id, "drill", "restore-drill", hours_ago, status, 9_000);
            if status != "failed" {
                r.metrics = vec![
                    ("shop_drill_rows".into(), rows),
                    ("shop_drill_tables".into(), 2.0),
                    (
                        "shop_drill_dump_time".into(),
                        (NOW - 3600 * (hours_ago + 20)) as f64,
                    ),
                ];
            }
            r
        };
        i.runs.push(drill(90, 100, "ok", 24_000.0));
        i.runs.push(drill(91, 50, "warning", 25_000.0));
        i.runs.push(drill(92, 3, "failed", 0.0));
        let r = build(&i, Period::named("weekly", NOW).unwrap());
        assert_eq!(r.drills.len(), 1, "{:?}", r.drills);
        let d = &r.drills[0];
        assert_eq!(
            (d.set.as_str(), d.job.as_str(), d.rows, d.tables),
            ("shop", "drill", 25_000, 2)
        );
        assert_eq!(
            d.dump_time.as_deref(),
            Some(build::rfc3339(NOW - 3600 * 70).as_str())
        );
        assert_eq!(r.backups.len(), 1, "{:?}", r.backups);
        for f in [Format::Markdown, Format::Html, Format::Text] {
            let out = render(&r, f);
            assert!(out.contains("25000"), "{f:?}: {out}");
        }
    }

    #[test]
    fn a_job_is_never_a_success_only_once_it_was_due() {
        let mut i = input();
        let job = |name: &str, missed_total: u64| JobIn {
            name: name.into(),
            plugin: "vacuum".into(),
            schedule: "0 3 * * 0".into(),
            enabled: true,
            next_fire: Some(NOW + 3600),
            last_success: None,
            missed_total,
            last_run: None,
        };
        // `idle` is new: no run, no slot missed. `missed` lost a slot;
        // `failing` ran and failed, before this period; `old` failed
        // before the report's span, a year ago.
        let mut old = job("old", 0);
        old.last_run = Some(NOW - 365 * 86_400);
        i.jobs = vec![job("idle", 0), job("missed", 1), job("failing", 0), old];
        i.runs
            .push(run(90, "failing", "vacuum", 24 * 8, "failed", 10));
        let r = build(&i, Period::named("weekly", NOW).unwrap());
        let said = |name: &str| {
            r.attention
                .iter()
                .any(|a| a.contains(name) && a.contains("never"))
        };
        assert!(!said("idle"), "{:?}", r.attention);
        assert!(
            said("missed") && said("failing") && said("old"),
            "{:?}",
            r.attention
        );
        let idle = r.jobs.iter().find(|j| j.name == "idle").unwrap();
        assert_eq!(
            idle.first_run_due.as_deref(),
            Some(build::rfc3339(NOW + 3600).as_str())
        );
        assert!(render(&r, Format::Text).contains(&format!(
            "new, first run due at {}",
            build::rfc3339(NOW + 3600)
        )));
        for name in ["missed", "failing", "old"] {
            let j = r.jobs.iter().find(|j| j.name == name).unwrap();
            assert_eq!(j.first_run_due, None, "{name}");
        }
    }

    #[test]
    fn dry_runs_count_in_no_rate_duration_or_backup() {
        let mut i = input();
        let before = build(&i, Period::named("weekly", NOW).unwrap());
        for (n, status) in [(0, "failed"), (1, "ok")] {
            let mut dry = run(95 + n, "rotate", "log-rotate", 2, status, 900_000);
            dry.dry_run = true;
            i.runs.push(dry);
        }
        let mut dry_backup = run(97, "db", "backup", 1, "ok", 5);
        dry_backup.dry_run = true;
        dry_backup.metrics = vec![("bytes_total".into(), 1.0)];
        i.runs.push(dry_backup);
        let r = build(&i, Period::named("weekly", NOW).unwrap());
        let (a, b) = (
            before.jobs.iter().find(|j| j.name == "rotate").unwrap(),
            r.jobs.iter().find(|j| j.name == "rotate").unwrap(),
        );
        assert_eq!((b.runs, b.failed, b.dry_runs), (a.runs, a.failed, 2));
        assert_eq!(b.success_rate, a.success_rate);
        assert_eq!(b.duration_ms, a.duration_ms);
        assert_eq!(r.totals, before.totals);
        assert_eq!(r.backups, before.backups);
    }

    #[test]
    fn a_disk_trend_needs_six_hours_and_six_samples() {
        let gib = 1u64 << 30;
        let sample = |ago_s: i64, free_gib: u64| SampleIn {
            taken: NOW - ago_s,
            cpu_percent: 5.0,
            memory_total: 100,
            memory_used: 10,
            disks: vec![DiskIn {
                mount: "/".into(),
                total: 100 * gib,
                available: free_gib * gib,
            }],
        };
        let mut i = input();
        // A minute of samples losing 1 GiB a minute: no trend, no date.
        i.samples = vec![sample(60, 31), sample(0, 30)];
        i.current = i.samples.last().cloned();
        let r = build(&i, Period::named("daily", NOW).unwrap());
        let d = &r.system.disks[0];
        assert_eq!(
            (d.growth_bytes_per_day, d.projected_full.clone()),
            (None, None)
        );
        assert_eq!(
            d.trend_note.as_deref(),
            Some("not enough history for a trend (0.0 of 6 hours, 3 of 6 samples)")
        );
        assert!(render(&r, Format::Markdown).contains("not enough history for a trend"));
        // Five hours of hourly samples: still short of the span.
        i.samples = (0..6)
            .map(|h| sample((5 - h) * 3600, 40 - h as u64))
            .collect();
        i.current = None;
        let r = build(&i, Period::named("daily", NOW).unwrap());
        assert_eq!(
            r.system.disks[0].trend_note.as_deref(),
            Some("not enough history for a trend (5.0 of 6 hours, 6 of 6 samples)")
        );
        // Seven: a trend, 1 GiB an hour, 35 GiB free: full in 35 hours.
        i.samples = (0..7)
            .map(|h| sample((6 - h) * 3600, 41 - h as u64))
            .collect();
        let r = build(&i, Period::named("daily", NOW).unwrap());
        let d = &r.system.disks[0];
        assert_eq!(d.trend_note, None);
        assert_eq!(
            d.projected_full.as_deref(),
            Some(build::rfc3339(NOW + 35 * 3600).as_str())
        );
    }

    #[test]
    fn a_peak_is_a_level_held_over_five_minutes() {
        use build::sustained_peak;
        // One 80 % sample among quiet ones, 15 s apart: no 80 % peak.
        let mut points: Vec<(i64, f64)> = (0..60).map(|k| (k * 15, 10.0)).collect();
        points[30].1 = 80.0;
        assert_eq!(sustained_peak(&points, 300), Some(10.0));
        // Six minutes at 85 % or more (the least of them 85): that is it.
        for p in points.iter_mut().skip(10).take(25) {
            p.1 = 90.0;
        }
        points[20].1 = 85.0;
        assert_eq!(sustained_peak(&points, 300), Some(85.0));
        // Samples spanning under five minutes hold no peak at all.
        assert_eq!(sustained_peak(&points[..5], 300), None);
        assert_eq!(sustained_peak(&[], 300), None);
        // Ten-minute rollups: two neighbours make a window.
        assert_eq!(sustained_peak(&[(0, 70.0), (600, 95.0)], 300), Some(70.0));
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
        // A span from a URL or a command line: too long a one is refused,
        // not overflowed (`/reports?since=999999999999999d`).
        assert_eq!(parse_span("999999999999999d"), None);
        assert_eq!(parse_span("9223372036854775807s"), None);
        assert_eq!(parse_span("36500d"), Some(MAX_SPAN_SECONDS));
        assert_eq!(parse_span("36501d"), None);
        assert_eq!(Format::parse("md"), Some(Format::Markdown));
        assert_eq!(Period::last(604_800, NOW).kind, "weekly");
    }
}
