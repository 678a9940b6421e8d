//! log-rotate through `opsd run`, on real files.

use crate::util::Env;
use flate2::read::GzDecoder;
use std::io::Read;

fn gunzip(path: &std::path::Path) -> String {
    let mut s = String::new();
    GzDecoder::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .read_to_string(&mut s)
        .unwrap_or_else(|e| panic!("{} is not gzip: {e}", path.display()));
    s
}

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn rotates_compresses_and_drops_the_oldest_generation() {
    let env = Env::new(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "rw", create = true }]
[job.config]
paths = ["/logs/*.log"]
rotate = 3
compress = true
delaycompress = true
"#,
    );
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("other.txt"), "not a log").unwrap();
    for round in 1..=5 {
        std::fs::write(
            logs.join("app.log"),
            format!("line from round {round}\n").repeat(100),
        )
        .unwrap();
        let rec = env.run_job("rotate");
        assert_eq!(rec["status"], "ok", "round {round}: {rec:#}");
        assert_eq!(
            rec["summary"].as_str().unwrap().split(" (").next().unwrap(),
            "rotated 1 of 1 logs"
        );
        assert_eq!(rec["plugin"], "log-rotate");
        assert_eq!(rec["plugin_sha256"].as_str().unwrap().len(), 64);
    }
    // rotate 3 with delaycompress: .1 plain, .2 and .3 gzipped, older gone.
    assert_eq!(
        listing(&logs),
        [
            ".opsd-logrotate.rotate.status",
            "app.log.1",
            "app.log.2.gz",
            "app.log.3.gz",
            "other.txt"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(logs.join("app.log.1")).unwrap(),
        "line from round 5\n".repeat(100)
    );
    assert_eq!(
        gunzip(&logs.join("app.log.2.gz")),
        "line from round 4\n".repeat(100)
    );
    assert_eq!(
        gunzip(&logs.join("app.log.3.gz")),
        "line from round 3\n".repeat(100)
    );
    let state = std::fs::read_to_string(logs.join(".opsd-logrotate.rotate.status")).unwrap();
    assert!(
        state.starts_with("logrotate state -- version 2\n\"/logs/app.log\" "),
        "{state}"
    );
}

#[test]
fn dry_run_reports_and_touches_nothing() {
    let env = Env::new(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "rw", create = true }]
[job.config]
paths = ["/logs/*.log"]
compress = true
"#,
    );
    std::fs::create_dir_all(env.path("logs")).unwrap();
    std::fs::write(env.path("logs/a.log"), "a").unwrap();
    let out = env.run(&["run", "rotate", "--dry-run", "--json"]);
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["dry_run"], true);
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .starts_with("would rotate 1 of 1"),
        "{rec:#}"
    );
    assert_eq!(listing(&env.path("logs")), ["a.log"]);
}

#[test]
fn a_read_only_grant_cannot_be_rotated() {
    let env = Env::new(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "ro", create = true }]
[job.config]
paths = ["/logs/*.log"]
state_file = "/logs/.state"
"#,
    );
    std::fs::create_dir_all(env.path("logs")).unwrap();
    std::fs::write(env.path("logs/a.log"), "keep me").unwrap();
    let out = env.run(&["run", "rotate", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", crate::util::text(&out));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "failed");
    assert_eq!(
        std::fs::read_to_string(env.path("logs/a.log")).unwrap(),
        "keep me"
    );
    assert_eq!(listing(&env.path("logs")), ["a.log"]);
}

#[test]
fn toml_directives_dateext_create_and_an_argv_postrotate() {
    // Guest paths equal host paths here, so the postrotate program (which
    // runs on the host) sees the same path the plugin does.
    let dir = tempfile::Builder::new()
        .prefix("opsd-lr-toml")
        .tempdir()
        .unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "x".repeat(2000)).unwrap();
    let logs_s = logs.display().to_string();
    let env = Env::new(&format!(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{{ host = "{logs_s}", guest = "{logs_s}", access = "rw" }}]
exec = ["touch"]
[job.config]
paths = ["{logs_s}/*.log"]
dateext = true
compress = true
create = {{ mode = "0600" }}
postrotate = ["touch", "{logs_s}/reloaded"]
"#
    ));
    let rec = env.run_job("rotate");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    // The plugin names the rotation by its own clock during the run: the
    // day the run started or, across midnight, the day it finished.
    let day_of = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(rec[field].as_str().unwrap())
            .unwrap()
            .to_utc()
            .format("%Y%m%d")
            .to_string()
    };
    let names = listing(&logs);
    let today = [day_of("started"), day_of("finished")]
        .into_iter()
        .find(|d| names.contains(&format!("app.log-{d}.gz")))
        .unwrap_or_else(|| panic!("no app.log-DATE.gz for the run's days: {names:?}"));
    assert!(names.contains(&"reloaded".to_owned()), "{names:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(logs.join("app.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        gunzip(&logs.join(format!("app.log-{today}.gz"))),
        "x".repeat(2000)
    );
    assert_eq!(
        rec["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "scripts_run")
            .unwrap()["value"],
        1.0
    );
}

#[test]
fn a_script_that_needs_a_shell_fails_clearly_without_the_sh_grant() {
    let env = Env::new(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "rw", create = true }]
[job.config]
paths = ["/logs/*.log"]
prerotate = "kill -HUP $(cat /run/app.pid)"
"#,
    );
    std::fs::create_dir_all(env.path("logs")).unwrap();
    std::fs::write(env.path("logs/a.log"), "keep me").unwrap();
    let rec = env.run_job("rotate");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    // The host names the grant; the plugin's details name the script.
    let error = rec["error"].as_str().unwrap();
    assert!(error.contains("`sh`") && error.contains("exec"), "{error}");
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains("prerotate script ([job.config] prerotate) could not run")
            && details.contains(r#"grant exec = ["sh"]"#),
        "{details}"
    );
    // A failed prerotate stops that log's rotation, as in logrotate.
    assert_eq!(
        std::fs::read_to_string(env.path("logs/a.log")).unwrap(),
        "keep me"
    );
}

#[test]
fn a_logrotate_config_error_names_file_and_line_and_the_rest_still_rotates() {
    let env = Env::new(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [
  { host = "logs", guest = "/logs", access = "rw", create = true },
  { host = "etc", guest = "/etc/logrotate.d", access = "ro", create = true },
]
[job.config]
logrotate_conf = "/etc/logrotate.d"
state_file = "/logs/status"
"#,
    );
    std::fs::create_dir_all(env.path("logs")).unwrap();
    std::fs::create_dir_all(env.path("etc")).unwrap();
    std::fs::write(env.path("logs/a.log"), "a").unwrap();
    std::fs::write(env.path("logs/b.log"), "b").unwrap();
    std::fs::write(
        env.path("etc/app"),
        "/logs/a.log {\n  size 1\n  rotate 2\n  compres\n}\n/logs/b.log {\n  rotate two\n}\n",
    )
    .unwrap();
    let rec = env.run_job("rotate");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains("/etc/logrotate.d/app:4 unknown option 'compres' -- ignoring line"),
        "{details}"
    );
    assert!(
        details.contains("/etc/logrotate.d/app:7 bad rotation count 'two'"),
        "{details}"
    );
    assert_eq!(listing(&env.path("logs")), ["a.log.1", "b.log", "status"]);
}

/// Jobs over one directory, due at one instant (a DST night can move
/// `0 2` and `30 2` onto `0 3`), each keep their own state; jobs given one
/// `state_file` take turns on it. Six runs at once: all ok, every
/// rotation recorded, no temporary or lock file left.
#[test]
fn jobs_that_share_a_directory_or_a_state_file_do_not_collide() {
    let job = |name: &str, extra: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\nplugin = \"log-rotate\"\nschedule = \"0 3 1 1 *\"\n[job.grants]\nfs = [{{ host = \"logs\", guest = \"/logs\", access = \"rw\", create = true }}]\n[job.config]\npaths = [\"/logs/{name}.log\"]\nrotate = 2\n{extra}\n"
        )
    };
    let shared = "state_file = \"/logs/shared.status\"";
    let env = Env::new(
        &[
            job("a", ""),
            job("b", ""),
            job("c", ""),
            job("x", shared),
            job("y", shared),
            job("z", shared),
        ]
        .concat(),
    );
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let names = ["a", "b", "c", "x", "y", "z"];
    for n in names {
        std::fs::write(logs.join(format!("{n}.log")), format!("{n}\n")).unwrap();
    }
    let daemon = env.daemon();
    let runs: Vec<_> = names
        .iter()
        .map(|n| {
            env.cmd(&["run", n, "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (n, run) in names.iter().zip(runs) {
        let out = run.wait_with_output().unwrap();
        let rec: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{n}: {e}: {}", crate::util::text(&out)));
        assert_eq!(rec["status"], "ok", "{n}: {rec:#}");
        assert!(logs.join(format!("{n}.log.1")).exists(), "{n} rotated");
    }
    for n in ["a", "b", "c"] {
        let state =
            std::fs::read_to_string(logs.join(format!(".opsd-logrotate.{n}.status"))).unwrap();
        assert!(
            state.contains(&format!("\"/logs/{n}.log\"")),
            "{n}: {state}"
        );
    }
    let state = std::fs::read_to_string(logs.join("shared.status")).unwrap();
    for n in ["x", "y", "z"] {
        assert!(
            state.contains(&format!("\"/logs/{n}.log\"")),
            "every run that shares the file kept its entry: {state}"
        );
    }
    let left: Vec<String> = listing(&logs)
        .into_iter()
        .filter(|f| f.ends_with(".tmp") || f.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(daemon.stop().success());
}

/// `logrotate -f` as opsd does it: `opsd run JOB --set force=true`, through
/// the daemon, rotates a log its criteria say is not due; the record says
/// so, and the next plain run goes by the criteria again.
#[test]
fn a_manual_run_with_set_force_rotates_what_is_not_due() {
    let env = Env::new(&format!(
        r#"
[[job]]
name = "weekly"
plugin = "log-rotate"
schedule = "{}"
[job.grants]
fs = [{{ host = "logs", guest = "/logs", access = "rw", create = true }}]
[job.config]
paths = ["/logs/*.log"]
frequency = "weekly"
rotate = 2
"#,
        crate::util::far_off()
    ));
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "line\n".repeat(10)).unwrap();
    let _daemon = env.daemon();
    // First sight, then not due.
    for _ in 0..2 {
        let rec = env.run_job("weekly");
        assert_eq!(rec["status"], "ok", "{rec:#}");
        assert!(!logs.join("app.log.1").exists(), "{rec:#}");
    }
    let out = env.run(&["run", "weekly", "--set", "force=true", "--json"]);
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(rec["overrides"]["force"], true, "{rec:#}");
    assert!(logs.join("app.log.1").exists(), "{rec:#}");
    std::fs::write(logs.join("app.log"), "line\n".repeat(10)).unwrap();
    let rec = env.run_job("weekly");
    assert!(!logs.join("app.log.2").exists(), "{rec:#}");
    // A value the schema refuses names the key.
    let out = env.run(&["run", "weekly", "--set", "force=yes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--set force:"), "{err}");
}
