//! Containment: a plugin that leaves its grants, crashes, loops or hoards
//! memory fails its run with a reason, and the next run still works.

use crate::util::{Env, text};

/// A job running the hostile test guest with `config` as its config table
/// and `extra` appended to the job (grants, timeout).
fn hostile(name: &str, config: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"test-hostile\"\nschedule = \"@yearly\"\n{extra}\n[job.config]\n{config}\n\n"
    )
}

fn env_with(jobs: &[String]) -> Env {
    let env = Env::new(&jobs.concat());
    env.install_guest("opsd-test-hostile");
    env
}

fn failed_with(env: &Env, job: &str, status: &str, needle: &str) -> serde_json::Value {
    let out = env.run(&["run", job, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], status, "{rec:#}");
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "error {error:?} lacks {needle:?}");
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
