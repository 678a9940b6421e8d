//! report: a history with known runs gives known numbers, from the plugin
//! (through the history interface) and from `opsd report` (from the store)
//! alike; the HTML page renders in headless Chromium with its charts and
//! no console errors.

use crate::util::{Env, text};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const JOBS: &str = r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
enabled = false # run by hand: never fires during a test
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "rw", create = true }]
[job.config]
paths = ["/logs/*.log"]
missingok = true

[[job]]
name = "broken"
plugin = "log-rotate"
schedule = "@daily"
enabled = false # run by hand: never fires during a test
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "ro", create = true }]
[job.config]
paths = ["/logs/*.log"]
state_file = "/logs/.broken-state"

[[job]]
name = "reports"
plugin = "report"
schedule = "5 0 * * *"
enabled = false
[job.grants]
fs = [{ host = "reports", guest = "/reports", access = "rw", create = true }]
history = "all"
[job.config]
output_dir = "/reports"
period = "weekly"
"#;

fn job<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {report:#}"))
}

fn history_env() -> Env {
    let env = Env::new(JOBS);
    std::fs::create_dir_all(env.path("logs")).unwrap();
    std::fs::create_dir_all(env.path("reports")).unwrap();
    std::fs::write(env.path("logs/app.log"), "x\n").unwrap();
    for _ in 0..3 {
        assert_eq!(env.run_job("rotate")["status"], "ok");
    }
    assert_eq!(env.run_job("broken")["status"], "failed");
    env
}

/// What a report run names its files after: its slot, to the minute, in
/// UTC (the jobs here have no time zone).
fn slot_stamp(rec: &Value) -> String {
    chrono::DateTime::parse_from_rfc3339(rec["scheduled"].as_str().expect("scheduled"))
        .expect("RFC 3339")
        .format("%Y-%m-%dT%H%M")
        .to_string()
}

#[test]
fn known_runs_give_known_numbers_from_the_plugin_and_the_cli() {
    let env = history_env();
    let rec = env.run_job("reports");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let day = slot_stamp(&rec);
    let json_path = env.path(&format!("reports/report-weekly-{day}.json"));
    let report: Value = serde_json::from_slice(
        &std::fs::read(&json_path)
            .unwrap_or_else(|e| panic!("{}: {e}: {rec:#}", json_path.display())),
    )
    .unwrap();
    assert_eq!(report["schema"], "opsd.report/1");
    assert_eq!(report["period"]["kind"], "weekly");
    let rotate = job(&report, "rotate");
    assert_eq!(rotate["runs"], 3);
    assert_eq!(rotate["ok"], 3);
    assert_eq!(rotate["success_rate"], 100.0);
    assert!(rotate["duration_ms"]["p95"].as_u64().is_some());
    let broken = job(&report, "broken");
    assert_eq!(broken["runs"], 1);
    assert_eq!(broken["failed"], 1);
    assert_eq!(broken["success_rate"], 0.0);
    let error = broken["failures"][0]["error"].as_str().unwrap();
    assert!(!error.is_empty() && !error.contains('\n'), "{error}");
    assert!(
        report["attention"].as_array().unwrap().iter().any(|a| a
            .as_str()
            .unwrap()
            .starts_with("job broken: 1 of 1 runs failed")),
        "{report:#}"
    );
    // The report run itself was still running while it gathered.
    assert_eq!(report["totals"]["runs"], 4);
    assert!(
        env.path(&format!("reports/report-weekly-{day}.md"))
            .exists()
    );
    assert!(
        env.path(&format!("reports/report-weekly-{day}.html"))
            .exists()
    );

    // The CLI gives the same numbers from the store (now also counting the
    // finished report run).
    let out = env.run(&["report", "--since", "7d", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["rotate", "broken"] {
        let (a, b) = (job(&report, name), job(&cli, name));
        for key in [
            "runs",
            "ok",
            "warning",
            "failed",
            "missed",
            "success_rate",
            "duration_ms",
        ] {
            assert_eq!(a[key], b[key], "{name}.{key}");
        }
    }
    assert_eq!(cli["totals"]["runs"], 5);
    // And with a daemon, through the control socket.
    let daemon = env.daemon();
    let out = env.run(&["report", "--since", "7d", "--format", "md"]);
    assert!(out.status.success(), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("| broken | log-rotate | 1 | 0 | 0 | 1 |"),
        "{md}"
    );
    assert!(daemon.stop().success());
}

/// The page as Chromium renders it: (serialised DOM, console messages).
fn chromium(html: &Path, png: &Path) -> (String, String) {
    let bin = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is missing: install Debian's chromium package (tests/run does)");
    let profile = tempfile::tempdir().unwrap();
    let common = |c: &mut Command| {
        c.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut shot = Command::new(bin);
    common(&mut shot);
    let out = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium --screenshot: {}",
        text(&out)
    );
    let mut dump = Command::new(bin);
    common(&mut dump);
    let out = dump
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium --dump-dom: {}", text(&out));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Width, height and the share of pixels that are not white, from a PNG.
fn png_ink(path: &Path) -> (u32, u32, f64) {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut w, mut h, mut color) = (0u32, 0u32, 0u8);
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= data.len() {
        let len = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        let kind = &data[i + 4..i + 8];
        let body = &data[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(body[0..4].try_into().unwrap());
                h = u32::from_be_bytes(body[4..8].try_into().unwrap());
                assert_eq!(body[8], 8, "8-bit samples");
                color = body[9];
            }
            b"IDAT" => idat.extend_from_slice(body),
            _ => {}
        }
        i += 12 + len;
    }
    let bpp = match color {
        2 => 3,
        6 => 4,
        other => panic!("PNG colour type {other}"),
    };
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut raw).unwrap();
    // Undo the per-row filters, then count non-white pixels.
    let stride = w as usize * bpp;
    let mut prev = vec![0u8; stride];
    let mut ink = 0u64;
    for row in raw.chunks(stride + 1) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = line.to_vec();
        for x in 0..stride {
            let a = if x >= bpp { cur[x - bpp] as i32 } else { 0 };
            let b = prev[x] as i32;
            let c = if x >= bpp { prev[x - bpp] as i32 } else { 0 };
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[x] = (cur[x] as i32 + add) as u8;
        }
        ink += cur
            .chunks(bpp)
            .filter(|p| p[0] < 240 || p[1] < 240 || p[2] < 240)
            .count() as u64;
        prev = cur;
    }
    (w, h, ink as f64 / (w as f64 * h as f64))
}

#[test]
fn the_html_report_renders_its_charts_in_headless_chromium() {
    let env = history_env();
    let html = env.path("report.html");
    let out = env.run(&["report", "--since", "7d", "--format", "html", "--output"]);
    assert!(!out.status.success(), "--output needs a file");
    let out = Command::new(crate::util::opsd_bin())
        .arg("--config")
        .arg(env.path("opsd.toml"))
        .args(["report", "--since", "7d", "--format", "html", "--output"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && !page.contains("<script"),
        "inline SVG, no scripts"
    );
    let png = env.path("report.png");
    let (dom, console) = chromium(&html, &png);
    assert!(
        dom.contains("aria-label=\"Runs per job by outcome\""),
        "the runs chart is in the rendered DOM"
    );
    assert!(
        dom.contains("<rect") && dom.contains("fill=\"#c62828\""),
        "a failed bar is drawn"
    );
    let errors: Vec<&str> = console
        .lines()
        .filter(|l| {
            l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("ERR_FILE_NOT_FOUND")
        })
        .collect();
    assert!(errors.is_empty(), "console: {errors:#?}");
    let (w, h, ink) = png_ink(&png);
    assert!(w >= 1000 && h >= 1000, "{w}x{h}");
    // Text, tables and bars: a few percent of the page is not white.
    assert!(ink > 0.01, "the screenshot is blank ({:.4} inked)", ink);
}

/// The README's quick start: the shipped demo config passes `opsd check`,
/// and its two jobs run, the report job writing its page.
#[test]
fn the_demo_config_checks_and_its_jobs_run() {
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("examples");
    std::fs::create_dir_all(&examples).unwrap();
    let config = examples.join("opsd.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/opsd.toml"),
        &config,
    )
    .unwrap();
    let opsd = |args: &[&str]| {
        Command::new(crate::util::opsd_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = opsd(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let demo = dir.path().join("target/opsd-demo");
    std::fs::create_dir_all(demo.join("logs")).unwrap();
    std::fs::write(demo.join("logs/app.log"), "hello\n").unwrap();
    let mut rec = Value::Null;
    for job in ["demo-rotate", "demo-report"] {
        let out = opsd(&["run", job, "--json"]);
        assert!(out.status.success(), "{job}: {}", text(&out));
        rec = serde_json::from_slice(&out.stdout).unwrap();
    }
    assert!(demo.join("logs/app.log.1.gz").exists());
    let day = slot_stamp(&rec);
    let page = std::fs::read_to_string(demo.join(format!("reports/report-daily-{day}.html")))
        .expect("the demo report page");
    assert!(page.contains("demo-rotate"), "{page}");
}

#[test]
#[cfg_attr(
    not(opsd_privileged),
    ignore = "needs root or password-less sudo (mounts a small tmpfs)"
)]
fn a_full_report_grant_fails_cleanly_and_leaves_no_partial_file() {
    let env = Env::new(JOBS);
    let _disk = crate::util::SmallDisk::mount(env.path("reports"), "256k");
    // Leave two pages free: less than the HTML page needs.
    std::fs::write(env.path("reports/filler"), vec![1u8; 248 << 10]).unwrap();
    let daemon = env.daemon();
    let rec = env.run_job("reports");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap_or_default();
    eprintln!("report grant full: {error}");
    assert!(
        error.contains("writing /reports/report-")
            && error.contains("the disk of grant /reports (")
            && error.contains("is full"),
        "{rec:#}"
    );
    let names: Vec<String> = std::fs::read_dir(env.path("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // Room again: the next run writes every format, and the daemon never
    // stopped answering.
    std::fs::remove_file(env.path("reports/filler")).unwrap();
    let (code, body) = env.socket_get("/v1/health");
    assert_eq!(code, 200, "{body}");
    let rec = env.run_job("reports");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    for ext in [".json", ".md", ".html"] {
        let found = std::fs::read_dir(env.path("reports"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(ext));
        assert!(found, "no {ext} report");
    }
    assert!(daemon.stop().success());
}

/// Issue 23, item 6: what a report says about the machine and the jobs is
/// what `opsd status` and the schedule say, through a live daemon.
fn truth_env() -> Env {
    let env = Env::new(&format!(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "{far}"
enabled = false # run by hand
[job.grants]
fs = [{{ host = "logs", guest = "/logs", access = "rw", create = true }}]
[job.config]
paths = ["/logs/*.log"]
missingok = true

[[job]]
name = "fresh"
plugin = "log-rotate"
schedule = "{far}"
[job.grants]
fs = [{{ host = "logs", guest = "/logs", access = "rw", create = true }}]
[job.config]
paths = ["/logs/*.log"]
missingok = true

[[job]]
name = "reports"
plugin = "report"
schedule = "5 0 * * *"
enabled = false
[job.grants]
fs = [{{ host = "reports", guest = "/reports", access = "rw", create = true }}]
history = "all"
[job.config]
output_dir = "/reports"
period = "weekly"
"#,
        far = crate::util::far_off()
    ));
    std::fs::create_dir_all(env.path("logs")).unwrap();
    std::fs::create_dir_all(env.path("reports")).unwrap();
    env
}

/// The report a run wrote, in JSON, found through its artifacts.
fn written_report(env: &Env, rec: &Value) -> Value {
    let path = rec["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter_map(|a| a["path"].as_str())
        .find(|p| p.ends_with(".json"))
        .unwrap_or_else(|| panic!("no JSON report among the artifacts: {rec:#}"));
    let host = env
        .path("reports")
        .join(Path::new(path).file_name().expect("a file name"));
    serde_json::from_slice(
        &std::fs::read(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display())),
    )
    .expect("report JSON")
}

/// The mount holding `path`, among `opsd status`'s filesystems.
fn mount_of<'a>(status: &'a Value, path: &Path) -> &'a Value {
    status["sample"]["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .filter(|d| d["total_bytes"].as_u64() > Some(0))
        .filter(|d| d["path"].as_str().is_some_and(|m| path.starts_with(m)))
        .max_by_key(|d| d["path"].as_str().map_or(0, str::len))
        .unwrap_or_else(|| panic!("no mount holds {}: {status:#}", path.display()))
}

#[test]
fn the_reports_disk_figure_is_opsd_statuss() {
    let env = truth_env();
    let daemon = env.daemon();
    // The daemon has sampled once it is up.
    let before = crate::util::wait_for(std::time::Duration::from_secs(10), || {
        let s = env.json(&["status", "--json"]);
        s["sample"]["taken"].is_string().then_some(s)
    })
    .expect("a first sample");
    let rec = env.run_job("reports");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let status = env.json(&["status", "--json"]);
    // CPU and memory now are the daemon's sample's, as opsd status shows
    // them (when no new sample came meanwhile), not a reading of its own.
    if before["sample"]["taken"] == status["sample"]["taken"] {
        let report = written_report(&env, &rec);
        let sample = &status["sample"];
        let cpu = sample["cpu_percent"].as_f64().unwrap();
        assert!(
            (report["system"]["cpu_percent"].as_f64().unwrap() - cpu).abs() < 0.01,
            "{:#} vs {sample:#}",
            report["system"]
        );
        let memory = sample["memory_used_bytes"].as_f64().unwrap() * 100.0
            / sample["memory_total_bytes"].as_f64().unwrap();
        assert!(
            (report["system"]["memory_percent"].as_f64().unwrap() - memory).abs() < 0.01,
            "{:#} vs {sample:#}",
            report["system"]
        );
    }
    let report = written_report(&env, &rec);
    let mount = mount_of(&status, env.dir.path());
    let name = mount["path"].as_str().unwrap();
    let said = mount["used_percent"]
        .as_f64()
        .expect("status has a used_percent");
    for (from, report) in [
        ("the plugin", report),
        (
            "opsd report",
            env.json(&["report", "--since", "7d", "--format", "json"]),
        ),
    ] {
        let disk = report["system"]["disks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["mount"] == name)
            .unwrap_or_else(|| panic!("{from}: no disk {name}: {report:#}"));
        let used = disk["used_percent"].as_f64().unwrap();
        // Sampled moments apart on a machine others use: within a tenth
        // of a percent of the whole disk.
        assert!(
            (used - said).abs() < 0.1,
            "{from} says {name} is {used:.1} % used, opsd status {said:.1} %"
        );
    }
    assert!(daemon.stop().success());
}

#[test]
fn a_young_history_gives_no_trend_and_no_one_sample_peak() {
    let env = truth_env();
    let daemon = env.daemon();
    let rec = env.run_job("reports");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let report = written_report(&env, &rec);
    let system = &report["system"];
    let disks = system["disks"].as_array().unwrap();
    assert!(!disks.is_empty(), "{report:#}");
    for d in disks {
        assert!(d["projected_full"].is_null(), "{d:#}");
        assert!(d["growth_bytes_per_day"].is_null(), "{d:#}");
        let note = d["trend_note"].as_str().unwrap_or_default();
        assert!(
            note.starts_with("not enough history for a trend (") && note.contains("of 6 hours"),
            "{d:#}"
        );
    }
    // Seconds of samples hold no five-minute window: no peak to speak of.
    assert_eq!(system["peak_window_s"], 300, "{system:#}");
    assert!(system["cpu_peak"].is_null(), "{system:#}");
    assert!(system["memory_peak"].is_null(), "{system:#}");
    let out = env.run(&["report", "--since", "7d", "--format", "md"]);
    assert!(out.status.success(), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("not enough history for a trend"), "{md}");
    assert!(md.contains("sustained over 5 min"), "{md}");
    assert!(!md.contains("peaked at"), "{md}");
    assert!(daemon.stop().success());
}

#[test]
fn a_job_not_yet_due_is_new_not_never_a_success() {
    let env = truth_env();
    let daemon = env.daemon();
    let rec = env.run_job("reports");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let schedule = env.json(&["schedule", "list", "--json"]);
    let next = schedule
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["job"] == "fresh")
        .and_then(|e| e["next"].as_str())
        .expect("fresh fires")
        .to_owned();
    let next = chrono::DateTime::parse_from_rfc3339(&next)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for report in [
        written_report(&env, &rec),
        env.json(&["report", "--since", "7d", "--format", "json"]),
    ] {
        let fresh = job(&report, "fresh");
        assert_eq!(fresh["first_run_due"], next.as_str(), "{fresh:#}");
        let attention = report["attention"].as_array().unwrap();
        assert!(
            !attention
                .iter()
                .any(|a| a.as_str().unwrap().contains("fresh")),
            "{attention:#?}"
        );
    }
    let out = env.run(&["report", "--since", "7d", "--format", "text"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("new, first run due at {next}")),
        "{shown}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn dry_runs_count_in_no_rate_or_duration() {
    let env = truth_env();
    std::fs::write(env.path("logs/app.log"), "x\n").unwrap();
    let daemon = env.daemon();
    for _ in 0..2 {
        assert_eq!(env.run_job("rotate")["status"], "ok");
    }
    let out = env.run(&["run", "rotate", "--dry-run", "--json"]);
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    let report = env.json(&["report", "--since", "7d", "--format", "json"]);
    let rotate = job(&report, "rotate");
    assert_eq!(rotate["runs"], 2, "{rotate:#}");
    assert_eq!(rotate["ok"], 2, "{rotate:#}");
    assert_eq!(rotate["dry_runs"], 1, "{rotate:#}");
    assert_eq!(report["totals"]["runs"], 2, "{report:#}");
    // The scheduled report plugin: the history interface gives plugins
    // the runs that happened, never the dry runs.
    let rec = env.run_job("reports");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let json = rec["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["path"].as_str())
        .find(|p| p.ends_with(".json"))
        .unwrap_or_else(|| panic!("{rec:#}"))
        .trim_start_matches("/reports/")
        .to_owned();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("reports").join(json)).unwrap())
            .unwrap();
    let rotate = job(&written, "rotate");
    assert_eq!(rotate["runs"], 2, "{rotate:#}");
    assert_eq!(rotate["ok"], 2, "{rotate:#}");
    assert!(daemon.stop().success());
}

#[test]
fn each_report_run_writes_its_own_files() {
    let env = truth_env();
    let daemon = env.daemon();
    let first = env.run_job("reports");
    let second = env.run_job("reports");
    let html = |rec: &Value| -> String {
        assert_eq!(rec["status"], "ok", "{rec:#}");
        rec["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["path"].as_str())
            .find(|p| p.ends_with(".html"))
            .unwrap_or_else(|| panic!("{rec:#}"))
            .to_owned()
    };
    let (a, b) = (html(&first), html(&second));
    assert_ne!(a, b, "two runs, two pages");
    // Named after the slot, to the minute, in the job's zone (UTC here).
    let slot = chrono::DateTime::parse_from_rfc3339(first["scheduled"].as_str().unwrap())
        .unwrap()
        .format("%Y-%m-%dT%H%M")
        .to_string();
    assert!(
        a.starts_with(&format!("/reports/report-weekly-{slot}")),
        "{a}"
    );
    let pages: Vec<String> = std::fs::read_dir(env.path("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".html"))
        .collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    for p in [&a, &b] {
        let name = p.trim_start_matches("/reports/");
        assert!(pages.iter().any(|n| n == name), "{name} in {pages:?}");
    }
    assert!(daemon.stop().success());
}

/// Issue 23 (6): one file per report run must not fill the disk: a run
/// removes this period's reports past `keep`, every format of each.
#[test]
fn reports_past_keep_are_removed() {
    let env = Env::new(&format!(
        r#"
[[job]]
name = "reports"
plugin = "report"
schedule = "{}"
[job.grants]
fs = [{{ host = "reports", guest = "/reports", access = "rw", create = true }}]
history = "all"
[job.config]
output_dir = "/reports"
keep = 2
"#,
        crate::util::far_off()
    ));
    std::fs::create_dir_all(env.path("reports")).unwrap();
    std::fs::write(env.path("reports/notes.html"), "mine").unwrap();
    let daemon = env.daemon();
    let mut summaries = Vec::new();
    for _ in 0..3 {
        let rec = env.run_job("reports");
        assert_eq!(rec["status"], "ok", "{rec:#}");
        summaries.push(rec["summary"].as_str().unwrap_or_default().to_owned());
    }
    let mut names: Vec<String> = std::fs::read_dir(env.path("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        7,
        "two reports of three files, and notes.html: {names:?}"
    );
    assert!(names.contains(&"notes.html".to_owned()));
    assert!(
        summaries[2].contains("removed 3 older report files (keep = 2)"),
        "{summaries:#?}"
    );
    assert!(daemon.stop().success());
}
