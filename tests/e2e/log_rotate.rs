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
            ".opsd-logrotate.status",
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
    let state = std::fs::read_to_string(logs.join(".opsd-logrotate.status")).unwrap();
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
