//! Containment: a plugin that leaves its grants, crashes, loops or hoards
//! memory fails its run with a reason, and the next run still works.

use crate::util::{Env, text};

/// A job running the hostile test guest with `config` as its config table
/// and `extra` appended to the job (grants, timeout).
fn hostile(name: &str, config: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"test-hostile\"\nschedule = \"{}\"\n{extra}\n[job.config]\n{config}\n\n",
        crate::util::far_off()
    )
}

fn env_with(jobs: &[String]) -> Env {
    let env = Env::new(&jobs.concat());
    env.install_guest("opsd-test-hostile");
    env
}

fn failed_with(env: &Env, job: &str, status: &str, needle: &str) -> serde_json::Value {
    ended_with(env, job, status, needle)
}

/// Runs `job` and checks its status and that its error (or, for `ok`,
/// its summary) contains `needle`.
fn ended_with(env: &Env, job: &str, status: &str, needle: &str) -> serde_json::Value {
    let out = env.run(&["run", job, "--json"]);
    let (code, field) = if status == "ok" {
        (0, "summary")
    } else {
        (1, "error")
    };
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], status, "{rec:#}");
    let said = rec[field].as_str().unwrap_or_default();
    assert!(said.contains(needle), "{field} {said:?} lacks {needle:?}");
    rec
}

#[test]
fn writing_outside_the_grant_fails_and_the_next_job_still_runs() {
    let env = env_with(&[
        hostile(
            "escape",
            "action = \"write\"\npath = \"/etc/opsd-escape-test\"",
            "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }]",
        ),
        hostile(
            "traverse",
            "action = \"write\"\npath = \"/data/../opsd-escape-test\"",
            "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }]",
        ),
        hostile(
            "inside",
            "action = \"write\"\npath = \"/data/inside.txt\"",
            "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }]",
        ),
    ]);
    failed_with(
        &env,
        "escape",
        "failed",
        "`/etc/opsd-escape-test` is outside the job's filesystem grants",
    );
    failed_with(
        &env,
        "traverse",
        "failed",
        "`/data/../opsd-escape-test` contains `..`",
    );
    assert!(!std::path::Path::new("/etc/opsd-escape-test").exists());
    assert!(!env.path("opsd-escape-test").exists());
    let ok = env.run_job("inside");
    assert_eq!(ok["status"], "ok", "{ok:#}");
    assert_eq!(
        std::fs::read_to_string(env.path("data/inside.txt")).unwrap(),
        "hostile\n"
    );
}

#[test]
fn exec_off_the_list_fails_even_when_the_plugin_hides_it() {
    let env = env_with(&[
        hostile(
            "sneaky",
            "action = \"exec-swallow\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"id\"]",
            "",
        ),
        hostile(
            "dotdot",
            "action = \"exec-swallow\"\nprogram = \"/usr/bin/../bin/echo\"\nargs = [\"hi\"]",
            "[job.grants]\nexec = [\"echo\"]",
        ),
        hostile("fine", "action = \"ok\"", ""),
    ]);
    failed_with(
        &env,
        "sneaky",
        "failed",
        "program `/bin/sh` is not in the job's exec grant",
    );
    failed_with(
        &env,
        "dotdot",
        "failed",
        "not in the job's exec grant (echo)",
    );
    assert_eq!(env.run_job("fine")["status"], "ok");
}

#[test]
fn granted_programs_get_only_granted_environment() {
    let env = env_with(&[hostile(
        "printenv",
        "action = \"exec\"\nprogram = \"env\"",
        "[job.grants]\nexec = [\"env\"]\nenv = [\"OPSD_TEST_GRANTED\"]",
    )]);
    let out = env
        .cmd(&["run", "printenv", "--json"])
        .env("OPSD_TEST_GRANTED", "yes")
        .env("OPSD_TEST_SECRET", "must-not-leak")
        .output()
        .unwrap();
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(rec["summary"], "OPSD_TEST_GRANTED=yes");
}

#[test]
fn a_looping_plugin_is_interrupted_at_its_timeout() {
    let env = env_with(&[
        hostile("spin", "action = \"loop\"", "timeout = \"1s\""),
        hostile(
            "nap",
            "action = \"sleep\"\nseconds = 60",
            "timeout = \"1s\"",
        ),
        hostile("fine", "action = \"ok\"", ""),
    ]);
    let rec = failed_with(&env, "spin", "timeout", "exceeded the job's timeout of 1s");
    assert!(rec["duration_ms"].as_u64().unwrap() < 10_000, "{rec:#}");
    failed_with(&env, "nap", "timeout", "exceeded the job's timeout of 1s");
    assert_eq!(env.run_job("fine")["status"], "ok");
}

#[test]
fn a_panic_and_a_memory_bomb_are_contained() {
    let env = env_with(&[
        hostile("panics", "action = \"panic\"", ""),
        hostile(
            "hoards",
            "action = \"memory\"",
            "[job.grants]\nlimits = { memory = \"64M\" }",
        ),
    ]);
    failed_with(
        &env,
        "panics",
        "failed",
        "deliberate panic for a containment test",
    );
    failed_with(&env, "hoards", "failed", "memory limit");
}

/// Answers every connection with a 200 and closes it.
fn tiny_http_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    addr
}

#[test]
fn sockets_and_http_are_both_denied_unless_granted() {
    let addr = tiny_http_server();
    let a = addr.to_string();
    let env = env_with(&[
        hostile(
            "tcp-denied",
            &format!("action = \"tcp\"\naddress = \"{a}\""),
            "",
        ),
        hostile(
            "http-denied",
            &format!("action = \"http\"\naddress = \"{a}\""),
            "",
        ),
        // A socket grant for another port does not open this one.
        hostile(
            "tcp-wrong-port",
            &format!("action = \"tcp\"\naddress = \"{a}\""),
            &format!(
                "[job.grants]\nnet = [\"127.0.0.1:{}\"]",
                addr.port().wrapping_add(1).max(1)
            ),
        ),
        hostile(
            "tcp-granted",
            &format!("action = \"tcp\"\naddress = \"{a}\""),
            &format!("[job.grants]\nnet = [\"{a}\"]"),
        ),
        hostile(
            "http-granted",
            &format!("action = \"http\"\naddress = \"{a}\""),
            &format!("[job.grants]\nnet = [\"http://{a}\"]"),
        ),
    ]);
    failed_with(
        &env,
        "tcp-denied",
        "failed",
        "is not in the job's net grant (none)",
    );
    failed_with(
        &env,
        "http-denied",
        "failed",
        &format!("HTTP request to http://{a} is not in the job's net grant (none)"),
    );
    failed_with(
        &env,
        "tcp-wrong-port",
        "failed",
        "is not in the job's net grant",
    );
    let ok = env.run_job("tcp-granted");
    assert_eq!(ok["status"], "ok", "{ok:#}");
    let ok = env.run_job("http-granted");
    assert_eq!(ok["status"], "ok", "{ok:#}");
    assert_eq!(ok["summary"], "HTTP 200");
}

#[test]
fn child_output_goes_straight_to_a_granted_file() {
    let env = env_with(&[
        hostile(
            "dump",
            "action = \"exec\"\nprogram = \"seq\"\nargs = [\"1\", \"200000\"]\nstdout = \"/out/numbers.txt\"",
            "[job.grants]\nexec = [\"seq\"]\nfs = [{ host = \"out\", guest = \"/out\", access = \"rw\", create = true }]",
        ),
        hostile(
            "dump-ro",
            "action = \"exec\"\nprogram = \"seq\"\nargs = [\"1\", \"3\"]\nstdout = \"/out/numbers.txt\"",
            "[job.grants]\nexec = [\"seq\"]\nfs = [{ host = \"out\", guest = \"/out\", access = \"ro\", create = true }]",
        ),
    ]);
    let rec = env.run_job("dump");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let text = std::fs::read_to_string(env.path("out/numbers.txt")).unwrap();
    assert_eq!(text.lines().count(), 200_000);
    assert_eq!(text.lines().last(), Some("200000"));
    failed_with(&env, "dump-ro", "failed", "is in the read-only grant /out");
}

#[test]
fn a_child_outliving_the_timeout_is_killed_with_its_group() {
    let env = env_with(&[hostile(
        "hang",
        "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"sleep 31.4159 & sleep 31.4159\"]",
        "timeout = \"1s\"\n[job.grants]\nexec = [\"sh\"]",
    )]);
    let rec = failed_with(&env, "hang", "timeout", "timeout");
    assert!(rec["duration_ms"].as_u64().unwrap() < 10_000, "{rec:#}");
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 31.4159"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "children survived: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// Every hostile case, each with the words its failure must carry, run
/// through a live daemon while a job fires every second beside them.
#[test]
fn every_hostile_plugin_is_contained_and_the_daemon_keeps_its_schedule() {
    let rw = "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }]";
    let ro = "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"ro\", create = true }]";
    let addr = tiny_http_server().to_string();
    let tcp = format!("action = \"tcp\"\naddress = \"{addr}\"");
    let http = format!("action = \"http\"\naddress = \"{addr}\"");
    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        // (job, config, grants and limits, status, the reason must contain)
        (
            "abs-path",
            "action = \"read\"\npath = \"/etc/passwd\"".into(),
            rw.into(),
            "failed",
            "is outside the job's filesystem grants",
        ),
        (
            "dotdot-path",
            "action = \"write\"\npath = \"/data/../escape\"".into(),
            rw.into(),
            "failed",
            "contains `..`",
        ),
        (
            "host-symlink-out",
            "action = \"read\"\npath = \"/data/hostlink\"".into(),
            rw.into(),
            "failed",
            "denied by the job's grants: fs /data",
        ),
        (
            "plugin-symlink-out",
            "action = \"symlink\"\nprogram = \"../../../../../etc/passwd\"\npath = \"/data/l2\""
                .into(),
            rw.into(),
            "failed",
            "denied by the job's grants: fs /data",
        ),
        (
            "plugin-symlink-abs",
            "action = \"symlink\"\nprogram = \"/etc/passwd\"\npath = \"/data/l1\"".into(),
            rw.into(),
            "failed",
            "not-permitted",
        ),
        (
            "fill-past-quota",
            "action = \"fill\"\npath = \"/q/big.bin\"\nseconds = 4096".into(),
            "[job.grants]\nfs = [{ host = \"quota\", guest = \"/q\", access = \"rw\", create = true, quota = \"8M\" }]".into(),
            "failed",
            "quota: grant /q (",
        ),
        (
            "write-ro",
            "action = \"write\"\npath = \"/data/x.txt\"".into(),
            ro.into(),
            "failed",
            "(ro); add or widen an `fs` grant",
        ),
        (
            "exec-unlisted",
            "action = \"exec-swallow\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"id\"]".into(),
            String::new(),
            "failed",
            "is not in the job's exec grant",
        ),
        (
            "exec-path-trick",
            "action = \"exec-swallow\"\nprogram = \"/usr/bin/../bin/sh\"".into(),
            "[job.grants]\nexec = [\"echo\"]".into(),
            "failed",
            "not in the job's exec grant (echo)",
        ),
        (
            "tcp-ungranted",
            tcp.clone(),
            String::new(),
            "failed",
            "is not in the job's net grant (none)",
        ),
        (
            "tcp-loopback-other-port",
            "action = \"tcp\"\naddress = \"127.0.0.1:1\"".into(),
            format!("[job.grants]\nnet = [\"{addr}\"]"),
            "failed",
            "is not in the job's net grant",
        ),
        (
            // A granted name admits the addresses it resolves to when the
            // run starts, not whatever the plugin says it resolves to.
            "tcp-name-elsewhere",
            format!("action = \"tcp\"\naddress = \"127.0.0.2:{}\"", addr.rsplit(':').next().unwrap_or("1")),
            format!("[job.grants]\nnet = [\"localhost:{}\"]", addr.rsplit(':').next().unwrap_or("1")),
            "failed",
            "is not in the job's net grant (localhost:",
        ),
        (
            "tcp-metadata",
            "action = \"tcp\"\naddress = \"169.254.169.254:80\"".into(),
            String::new(),
            "failed",
            "is not in the job's net grant (none)",
        ),
        (
            "http-ungranted",
            http.clone(),
            String::new(),
            "failed",
            "is not in the job's net grant (none)",
        ),
        (
            "infinite-loop",
            "action = \"loop\"".into(),
            "timeout = \"1s\"".into(),
            "timeout",
            "exceeded the job's timeout of 1s",
        ),
        (
            "deep-recursion",
            "action = \"recurse\"".into(),
            String::new(),
            "failed",
            "stack overflow",
        ),
        (
            "memory-bomb",
            "action = \"memory\"".into(),
            "[job.grants]\nlimits = { memory = \"64M\" }".into(),
            "failed",
            "memory limit",
        ),
        (
            "huge-return",
            "action = \"huge-summary\"\nseconds = 32".into(),
            String::new(),
            "failed",
            "outcome limit: the plugin returned a summary of 33554432 bytes",
        ),
        (
            "log-spam",
            "action = \"log-spam\"\nseconds = 100".into(),
            String::new(),
            "failed",
            "log limit",
        ),
        (
            "trap-mid-write",
            "action = \"trap-mid-write\"\npath = \"/data/half.bin\"".into(),
            rw.into(),
            "failed",
            "plugin crashed",
        ),
        (
            "panic",
            "action = \"panic\"".into(),
            String::new(),
            "failed",
            "deliberate panic",
        ),
        (
            // 200 background sleeps against a cap of 16 processes.
            "process-cap",
            "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"for i in $(seq 200); do sleep 27.1828 & done; wait\"]".into(),
            "[job.grants]\nexec = [\"sh\"]\nlimits = { processes = 16 }".into(),
            "failed",
            "process limit: `sh` and what it started tried to run more than 16 processes",
        ),
        (
            "fork-bomb",
            "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"b(){ b|b& };b; sleep 27.1828\"]\nseconds = 2".into(),
            "[job.grants]\nexec = [\"sh\"]\nlimits = { processes = 32 }".into(),
            "failed",
            "process limit: `sh` and what it started tried to run more than 32",
        ),
        (
            // A child that leaves a process behind: the call returns and
            // the leftover is killed, not left to hold the output pipe.
            "orphan",
            "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"sleep 27.1828 & echo started\"]".into(),
            "[job.grants]\nexec = [\"sh\"]".into(),
            "ok",
            "started",
        ),
        (
            "output-flood",
            "action = \"exec-count\"\nprogram = \"head\"\nargs = [\"-c\", \"100000000\", \"/dev/zero\"]".into(),
            "[job.grants]\nexec = [\"head\"]\nlimits = { output = \"1M\" }".into(),
            "ok",
            "kept 1048576 bytes of stdout, truncated true",
        ),
    ];
    let mut jobs: Vec<String> = cases
        .iter()
        .map(|(name, config, extra, _, _)| hostile(name, config, extra))
        .collect();
    jobs.push(
        "[[job]]\nname = \"heartbeat\"\nplugin = \"test-hostile\"\nschedule = \"* * * * * *\"\n[job.config]\naction = \"ok\"\n".into(),
    );
    let env = env_with(&jobs);
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", env.path("data/hostlink")).unwrap();
    let daemon = env.daemon();
    let began = chrono::Utc::now();
    for (name, _, _, status, needle) in &cases {
        let rec = ended_with(&env, name, status, needle);
        let said = rec["error"].as_str().or(rec["summary"].as_str());
        eprintln!("{name}: {}", said.unwrap_or_default());
    }
    let ended = chrono::Utc::now();
    eprintln!(
        "{} hostile cases tried, {} contained",
        cases.len(),
        cases.len()
    );
    assert!(!std::path::Path::new("/etc/opsd-escape-test").exists());
    assert!(!env.path("escape").exists());
    // No process a plugin started outlived its call.
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 27.1828"])
        .output()
        .expect("pgrep runs");
    assert!(
        left.stdout.is_empty(),
        "processes survived: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let (code, body) = env.socket_get("/v1/health");
    assert_eq!(code, 200, "{body}");
    // The heartbeat fired every second of the window, on time.
    let beats: Vec<serde_json::Value> = env
        .json(&[
            "history",
            "--job",
            "heartbeat",
            "--json",
            "--limit",
            "100000",
        ])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            let at = r["scheduled"].as_str().unwrap_or_default();
            chrono::DateTime::parse_from_rfc3339(at)
                .is_ok_and(|t| t > began + chrono::Duration::seconds(1) && t < ended)
        })
        .collect();
    let window = (ended - began).num_seconds();
    assert!(
        beats.len() as i64 >= window - 2,
        "{} heartbeats in {window} s",
        beats.len()
    );
    let at = |r: &serde_json::Value, k: &str| {
        chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap_or_default()).expect("a time")
    };
    for b in &beats {
        assert_eq!(b["status"], "ok", "{b:#}");
        // Generous: CI machines are shared; the point is no stall.
        assert!(
            at(b, "started") - at(b, "scheduled") < chrono::Duration::seconds(2),
            "late: {b:#}"
        );
    }
    daemon.stop();
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_granted_secret_never_reaches_logs_records_or_reports() {
    const SECRET: &str = "s3cr3t-planted-7c1e9";
    let grant = "[job.grants]\nexec = [\"sh\", \"env\"]\nenv = [\"OPSD_TEST_TOKEN\"]";
    let env = env_with(&[
        // The child prints it to stdout (the summary) and stderr (the log).
        hostile(
            "leaky",
            "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"echo token=$OPSD_TEST_TOKEN; echo token=$OPSD_TEST_TOKEN >&2; exit 3\"]",
            grant,
        ),
        hostile("printenv", "action = \"exec\"\nprogram = \"env\"", grant),
    ]);
    let daemon = env.daemon_with_env(&[("OPSD_TEST_TOKEN", SECRET)]);
    let out = env.run(&["run", "leaky", "--json"]);
    let leaky: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a run record");
    assert_eq!(leaky["status"], "failed", "{leaky:#}");
    // The child did get it; what it said is masked.
    assert!(
        leaky["error"]
            .as_str()
            .unwrap_or_default()
            .contains("token=[OPSD_TEST_TOKEN]"),
        "{leaky:#}"
    );
    let printenv = env.json(&["run", "printenv", "--json"]);
    assert_eq!(
        printenv["summary"], "OPSD_TEST_TOKEN=[OPSD_TEST_TOKEN]",
        "{printenv:#}"
    );
    let run_id = leaky["id"].as_str().unwrap_or_default().to_owned();
    let mut said = String::new();
    for args in [
        vec!["logs", run_id.as_str()],
        vec!["history", "--json"],
        vec!["report", "--since", "1d", "--format", "md"],
        vec!["report", "--since", "1d", "--format", "json"],
    ] {
        said.push_str(&text(&env.run(&args)));
    }
    assert!(said.contains("[OPSD_TEST_TOKEN]"), "{said}");
    daemon.stop();
    assert!(!said.contains(SECRET), "{said}");
    // Nor anywhere on disk: the store, the daemon's log, the config dir.
    assert_eq!(
        files_containing(env.path("").as_path(), SECRET.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
}
