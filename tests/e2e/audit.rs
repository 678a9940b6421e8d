//! audit on a planted tree: a world-readable `.env` and backup, a
//! world-writable directory, a SUID file that appears after the baseline,
//! a log with auth failures that is rotated between runs, and a fake
//! `npm audit --json`. Findings, IDs, and what is new and resolved.

use crate::util::{Env, metric, text};
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn append(p: &Path, line: &str, times: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    for i in 0..times {
        writeln!(f, "2026-11-28T06:00:{i:02}Z {line} #{i}").unwrap();
    }
}

/// The `[Pn] id key` lines of a details section.
fn section(rec: &Value, title: &str) -> Vec<String> {
    let details = rec["details"].as_str().unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in details.lines() {
        if !line.starts_with("  ") {
            inside = line == format!("{title}:");
            continue;
        }
        if inside {
            let l = line.trim();
            out.push(l.split(':').next().unwrap_or(l).to_owned());
        }
    }
    out
}

#[test]
fn findings_are_diffed_between_runs_and_logs_are_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let npm = dir.path().join("npm");
    std::fs::write(
        &npm,
        "#!/bin/sh\n[ \"$1 $2\" = 'audit --json' ] || exit 2\ncat <<'EOF'\n{\"auditReportVersion\":2,\"vulnerabilities\":{\"lodash\":{\"name\":\"lodash\",\"severity\":\"high\",\"via\":[{\"title\":\"Prototype Pollution in lodash\"}],\"range\":\"<4.17.21\",\"fixAvailable\":true}},\"metadata\":{\"vulnerabilities\":{\"high\":1,\"total\":1}}}\nEOF\nexit 1\n",
    )
    .unwrap();
    chmod(&npm, 0o755);
    let env = Env::new(&format!(
        r#"
[[job]]
name = "audit"
plugin = "audit"
schedule = "30 6 * * *"
[job.grants]
fs = [
  {{ host = "srv", guest = "/srv", access = "ro", create = true }},
  {{ host = "backups", guest = "/backups", access = "ro", create = true }},
  {{ host = "log", guest = "/var/log/app", access = "ro", create = true }},
  {{ host = "audit-state", guest = "/state", access = "rw", create = true }},
]
exec = ["{npm}", "cat"]
[job.config]
state_file = "/state/audit.json"
secrets = {{ paths = ["/srv/app"] }}
backups = {{ paths = ["/backups"] }}
world_writable = {{ paths = ["/srv"] }}
suid = {{ paths = ["/srv/bin"] }}
npm_audit = {{ dirs = ["/srv/app"], program = "{npm}" }}
[[job.config.logs]]
path = "/var/log/app/agent.log"
"#,
        npm = npm.display()
    ));
    let srv = env.path("srv");
    std::fs::create_dir_all(srv.join("app")).unwrap();
    std::fs::create_dir_all(srv.join("bin")).unwrap();
    std::fs::create_dir_all(srv.join("uploads")).unwrap();
    std::fs::create_dir_all(env.path("backups")).unwrap();
    std::fs::create_dir_all(env.path("log")).unwrap();
    std::fs::write(srv.join("app/.env"), "SECRET=1\n").unwrap();
    chmod(&srv.join("app/.env"), 0o644);
    std::fs::write(srv.join("app/package-lock.json"), "{}").unwrap();
    // Five backups anyone can read: one finding listing them, not five.
    for name in ["db.dump", "a.dump", "b.dump", "c.dump", "d.dump"] {
        std::fs::write(env.path(&format!("backups/{name}")), "data").unwrap();
        chmod(&env.path(&format!("backups/{name}")), 0o644);
    }
    chmod(&srv.join("uploads"), 0o777);
    std::fs::write(srv.join("bin/tool"), "#!/bin/sh\n").unwrap();
    chmod(&srv.join("bin/tool"), 0o4755);
    let log = env.path("log/agent.log");
    append(&log, "agent started, listening on :8080", 1);
    append(&log, "Authentication failed for user bob", 12);
    append(&log, "blocked SQL Injection attempt in /search", 1);

    // First run: everything is new; the SUID file is the baseline.
    let rec = env.run_job("audit");
    assert_eq!(rec["status"], "failed", "P1 findings fail the run: {rec:#}");
    let new = section(&rec, "new");
    assert_eq!(
        new,
        [
            "[P1] backup-readable 5 paths under /backups",
            "[P1] log-pattern /var/log/app/agent.log",
            "[P1] npm-advisory /srv/app",
            "[P1] secret-readable /srv/app/.env",
            "[P1] world-writable-dir /srv/uploads",
            "[P2] log-pattern /var/log/app/agent.log",
        ],
        "{rec:#}"
    );
    assert!(
        rec["details"]
            .as_str()
            .unwrap()
            .contains("Fix: chmod 600 /srv/app/.env"),
        "{rec:#}"
    );
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains(
            "[P1] backup-readable 5 paths under /backups: /backups/a.dump, /backups/b.dump, /backups/c.dump and 2 more; "
        ),
        "{details}"
    );
    // Every one of them is listed once, in full, further down.
    for name in ["db.dump", "a.dump", "b.dump", "c.dump", "d.dump"] {
        assert_eq!(
            details
                .matches(&format!("[P1] backup-readable /backups/{name}: "))
                .count(),
            1,
            "{details}"
        );
    }
    assert!(section(&rec, "each finding").len() == 10, "{details}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .starts_with("6 findings (P0 0, P1 5, P2 1, P3 0) in 10 places; 6 new"),
        "{rec:#}"
    );
    assert_eq!(metric(&rec, "log_matches_auth_failures"), 12.0);
    assert_eq!(metric(&rec, "log_matches_attack_signs"), 1.0);
    assert_eq!(metric(&rec, "findings_new"), 6.0);
    assert_eq!(metric(&rec, "findings_p1"), 5.0);
    assert_eq!(metric(&rec, "findings_instances"), 10.0);
    assert_eq!(metric(&rec, "suid_files"), 1.0);

    // Between runs: the .env is fixed, a new SUID file appears, the log
    // gets three more failures and is rotated, and the new log has nine.
    chmod(&srv.join("app/.env"), 0o600);
    std::fs::write(srv.join("bin/newtool"), "#!/bin/sh\n").unwrap();
    chmod(&srv.join("bin/newtool"), 0o2755);
    append(&log, "Authentication failed for user eve", 3);
    std::fs::rename(&log, env.path("log/agent.log.1")).unwrap();
    append(&log, "agent restarted after rotation", 1);
    append(&log, "Authentication failed for user mallory", 9);

    let rec = env.run_job("audit");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert_eq!(
        section(&rec, "new"),
        ["[P1] suid-new /srv/bin/newtool"],
        "{rec:#}"
    );
    assert_eq!(
        section(&rec, "resolved"),
        [
            "[P1] log-pattern /var/log/app/agent.log",
            "[P1] secret-readable /srv/app/.env"
        ],
        "{rec:#}"
    );
    // 3 from the rotated file, 9 from the new one; none twice.
    assert_eq!(metric(&rec, "log_matches_auth_failures"), 12.0, "{rec:#}");
    assert_eq!(metric(&rec, "log_matches_attack_signs"), 0.0);

    // Nothing written since: the log pattern resolves, the rest stays.
    let rec = env.run_job("audit");
    assert_eq!(metric(&rec, "log_matches_auth_failures"), 0.0);
    assert_eq!(
        section(&rec, "resolved"),
        ["[P2] log-pattern /var/log/app/agent.log"],
        "{rec:#}"
    );
    assert!(section(&rec, "new").is_empty(), "{rec:#}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(env.path("audit-state/audit.json")).unwrap())
            .unwrap();
    assert_eq!(state["version"], 1, "{}", text(&env.run(&["history"])));
}

/// The runbook's "error rate > 5 %": a pattern judged as a share of the
/// lines read since the last run, over an hour of runs, and per minute,
/// on a real log written between runs, through a live daemon.
#[test]
fn error_rates_are_judged_over_lines_windows_and_minutes() {
    let far = crate::util::far_off();
    let env = Env::new(&format!(
        r#"
[[job]]
name = "rates"
plugin = "audit"
schedule = "{far}"
[job.grants]
fs = [
  {{ host = "log", guest = "/var/log/app", access = "ro", create = true }},
  {{ host = "audit-state", guest = "/state", access = "rw", create = true }},
]
[job.config]
state_file = "/state/audit.json"
[[job.config.logs]]
path = "/var/log/app/api.log"
patterns = [
  {{ name = "errors", regex = " ERROR ", severity = "P2", rate = {{ above = "5%", of = "lines" }} }},
  {{ name = "errors-1h", regex = " ERROR ", severity = "P3", rate = {{ above = "5%", window = "1h" }} }},
  {{ name = "errors-per-min", regex = " ERROR ", severity = "P3", rate = {{ above = 100, per = "minute" }} }},
]

[[job]]
name = "bad-rate"
plugin = "audit"
schedule = "{far}"
[job.grants]
fs = [
  {{ host = "log", guest = "/var/log/app", access = "ro", create = true }},
  {{ host = "audit-state", guest = "/state", access = "rw", create = true }},
]
[job.config]
state_file = "/state/bad.json"
[[job.config.logs]]
path = "/var/log/app/api.log"
patterns = [{{ name = "errors", regex = " ERROR ", rate = {{ above = "5" }} }}]
"#
    ));
    std::fs::create_dir_all(env.path("log")).unwrap();
    let log = env.path("log/api.log");
    let _daemon = env.daemon();

    // 200 lines, 15 errors: 7.5 % since the last run (the first: the
    // whole log), and over the hour; per minute needs a span of time.
    append(&log, "INFO GET /api/items 200", 185);
    append(&log, "ERROR GET /api/items 500 upstream timed out", 15);
    let rec = env.run_job("rates");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert_eq!(
        section(&rec, "new"),
        [
            "[P2] log-rate /var/log/app/api.log",
            "[P3] log-rate /var/log/app/api.log"
        ],
        "{rec:#}"
    );
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains(
            "[P2] log-rate /var/log/app/api.log:errors: errors (/ ERROR /) at 7.5 % (15 of 200 lines) since the last run, above 5 %"
        ),
        "{details}"
    );
    assert!(
        details.contains("rate of errors-per-min not judged: no span of time yet"),
        "{details}"
    );
    assert_eq!(metric(&rec, "log_rate_errors"), 7.5);
    assert_eq!(metric(&rec, "log_rate_errors_1h"), 7.5);

    // 1000 more lines, 20 errors: 2 % since the last run, 35 of 1200 over
    // the hour (2.92 %), but 20 errors within seconds is over 100 a minute.
    append(&log, "INFO GET /api/items 200", 980);
    append(&log, "ERROR GET /api/items 500 upstream timed out", 20);
    let rec = env.run_job("rates");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert_eq!(metric(&rec, "log_rate_errors"), 2.0);
    assert_eq!(metric(&rec, "log_rate_errors_1h"), 2.92);
    assert!(metric(&rec, "log_rate_errors_per_min") > 100.0, "{rec:#}");
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains(
            "[P3] log-rate /var/log/app/api.log:errors-per-min: errors-per-min (/ ERROR /) at "
        ),
        "{details}"
    );
    assert_eq!(
        section(&rec, "resolved"),
        [
            "[P2] log-rate /var/log/app/api.log",
            "[P3] log-rate /var/log/app/api.log"
        ],
        "{rec:#}"
    );

    // Five quiet lines: too few for a percentage since the last run (said
    // so), the hour still judged, nothing per minute: all clear.
    append(&log, "INFO GET /api/items 200", 5);
    let rec = env.run_job("rates");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains("rate of errors not judged: 5 lines read, fewer than min_lines (20)"),
        "{details}"
    );
    assert_eq!(metric(&rec, "log_rate_errors_per_min"), 0.0);
    let state: Value =
        serde_json::from_slice(&std::fs::read(env.path("audit-state/audit.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["log_samples"]["/var/log/app/api.log"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "the hour's samples are kept: {state:#}"
    );

    // A rule that cannot be read fails its run, naming the pattern and
    // what to write.
    let rec = env.run_job("bad-rate");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("job `bad-rate`")
            && error.contains("pattern `errors`: rate.above `5`: write a percentage"),
        "{rec:#}"
    );
}
