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

/// Issue 23 (12): a quota is a limit. Each way of growing a tree past
/// its 8 MiB quota, by the plugin (fast writes, a sparse length, a write
/// far past the end) and by its programs (one big file, output relayed
/// into a grant), fails the run naming the quota and leaves the tree
/// within it: the write that would pass it never happens. A plugin that
/// writes much more in total but never holds more than its quota is
/// left alone.
#[test]
fn a_quota_is_a_limit_for_the_plugin_and_its_programs() {
    let quota =
        "fs = [{ host = \"q\", guest = \"/q\", access = \"rw\", create = true, quota = \"8M\" }";
    let env = Env::new("");
    let q = env.path("q");
    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        (
            "fast-writer",
            "action = \"fill\"\npath = \"/q/fill.bin\"\nseconds = 64".into(),
            String::new(),
            "failed",
            "quota: grant /q (",
        ),
        (
            "sparse-length",
            "action = \"grow\"\npath = \"/q/grow.bin\"\nseconds = 1024".into(),
            String::new(),
            "failed",
            "quota: grant /q (",
        ),
        (
            "write-far",
            "action = \"write-far\"\npath = \"/q/far.bin\"\nseconds = 1024".into(),
            String::new(),
            "failed",
            "quota: grant /q (",
        ),
        (
            // Renamed from a grant without a quota into /q: its writes
            // are charged where the file is, not where it was opened.
            "rename-in",
            "action = \"rename-then-fill\"\npath = \"/free/r.bin\"\nprogram = \"/q/r.bin\"\nseconds = 64".into(),
            ", { host = \"free\", guest = \"/free\", access = \"rw\", create = true }".into(),
            "failed",
            "quota: grant /q (",
        ),
        (
            "churn",
            "action = \"churn\"\npath = \"/q/churn.bin\"\nseconds = 40".into(),
            String::new(),
            "ok",
            "churned 40 MiB",
        ),
        (
            "child-one-file",
            format!(
                "action = \"exec\"\nprogram = \"dd\"\nargs = [\"if=/dev/zero\", \"of={}/dd.bin\", \"bs=1M\", \"count=64\"]",
                q.display()
            ),
            "]\nexec = [\"dd\"".into(),
            "failed",
            "quota: grant /q (",
        ),
        (
            "child-relayed",
            "action = \"exec\"\nprogram = \"head\"\nargs = [\"-c\", \"67108864\", \"/dev/zero\"]\nstdout = \"/q/head.bin\"".into(),
            "]\nexec = [\"head\"".into(),
            "failed",
            "quota: `head`'s output into /q/head.bin was stopped",
        ),
    ];
    let jobs: Vec<String> = cases
        .iter()
        .map(|(name, config, more, _, _)| {
            hostile(name, config, &format!("[job.grants]\n{quota}{more}]"))
        })
        .collect();
    env.write_config(&jobs.concat());
    env.install_guest("opsd-test-hostile");
    let _daemon = env.daemon();
    let mut wrong = Vec::new();
    for (name, _, _, status, needle) in &cases {
        let out = env.run(&["run", name, "--json"]);
        let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let said = rec["error"]
            .as_str()
            .or(rec["summary"].as_str())
            .unwrap_or_default();
        let held = tree_size(&q);
        eprintln!(
            "{name}: {} {said:?}; the grant holds {held} bytes",
            rec["status"]
        );
        if rec["status"] != *status || !said.contains(needle) {
            wrong.push(format!(
                "{name}: wanted {status} with {needle:?}, got {} {said:?}",
                rec["status"]
            ));
        }
        if held > 8 << 20 {
            wrong.push(format!("{name}: {held} bytes in an 8 MiB quota"));
        }
        for e in std::fs::read_dir(&q).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Issue 23 (12), attacked: ways around the write path's charges (a
/// file moved or linked in whole, a file /proc/self/fd cannot name, a
/// tree the walk cannot measure, a program's cap set by the roomiest
/// grant, two relayed streams each given all the room), each of which
/// left the 8 MiB grant holding 64 MiB or more. Each must fail naming
/// the quota with the tree within it; and legitimate workloads at the
/// quota must not be refused.
#[test]
fn a_quota_holds_against_moves_links_buried_files_and_programs() {
    let q8 = "{ host = \"q\", guest = \"/q\", access = \"rw\", create = true, quota = \"8M\" }";
    let free = "{ host = \"free\", guest = \"/free\", access = \"rw\", create = true }";
    let env = Env::new("");
    let q = env.path("q");
    let mib64 = (64u64 << 20).to_string();
    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        (
            // Written where no quota is, then renamed in whole.
            "move-in",
            "action = \"move-in\"\npath = \"/free/m.bin\"\nprogram = \"/q/m.bin\"\nseconds = 64".into(),
            format!("fs = [{q8}, {free}]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // Written where no quota is, then hard-linked in.
            "link-in",
            "action = \"move-in\"\npath = \"/free/l.bin\"\nprogram = \"/q/l.bin\"\nargs = [\"link\"]\nseconds = 64".into(),
            format!("fs = [{q8}, {free}]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // Linked out of the grant, written through the name outside.
            "link-out-then-fill",
            "action = \"link-then-fill\"\npath = \"/q/x.bin\"\nprogram = \"/free/x.bin\"\nseconds = 64".into(),
            format!("fs = [{q8}, {free}]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // Linked in empty, written through the name outside.
            "link-in-then-fill",
            "action = \"link-then-fill\"\npath = \"/free/y.bin\"\nprogram = \"/q/y.bin\"\nargs = [\"path\"]\nseconds = 64".into(),
            format!("fs = [{q8}, {free}]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // Truncated under an open stream, then written on where the
            // stream was: the file's length is the stream's position.
            "truncate-under",
            "action = \"truncate-under\"\npath = \"/q/t.bin\"\nseconds = 7".into(),
            format!("fs = [{q8}]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // A program's output relayed into a file outside the grant
            // that has a name inside it too.
            "relay-through-link",
            format!(
                "action = \"link-then-exec\"\npath = \"/free/r.bin\"\naddress = \"/q/r.bin\"\nprogram = \"head\"\nargs = [\"-c\", \"{mib64}\", \"/dev/zero\"]\nstdout = \"/free/r.bin\""
            ),
            format!("fs = [{q8}, {free}]\nexec = [\"head\"]"),
            "failed",
            "quota: `head`'s output into /free/r.bin was stopped",
        ),
        (
            // A grant without a quota inside one with: a program writing
            // there writes into the quota's tree.
            "nested-no-quota",
            format!(
                "action = \"exec\"\nprogram = \"dd\"\nargs = [\"if=/dev/zero\", \"of={}/inner/dd.bin\", \"bs=1M\", \"count=64\"]",
                q.display()
            ),
            format!(
                "fs = [{q8}, {{ host = \"q/inner\", guest = \"/inner\", access = \"rw\", create = true }}]\nexec = [\"dd\"]"
            ),
            "failed",
            "quota: grant /q (",
        ),
        (
            // Written through a grant without a quota inside one with.
            "nested-fill",
            "action = \"fill\"\npath = \"/inner/f.bin\"\nseconds = 64".into(),
            format!(
                "fs = [{q8}, {{ host = \"q/inner\", guest = \"/inner\", access = \"rw\", create = true }}]"
            ),
            "failed",
            "quota: grant /q (",
        ),
        (
            // A program (run as root here) raising its own file size cap.
            "raise-fsize",
            format!(
                "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"ulimit -f unlimited && head -c {mib64} /dev/zero > {}/x.bin\"]",
                q.display()
            ),
            format!("fs = [{q8}]\nexec = [\"sh\", \"head\"]"),
            "failed",
            "",
        ),
        (
            // Stream writes in flight, uncharged (no quota where they were
            // handed on), when their directory is renamed into the grant.
            "streams-then-move",
            "action = \"streams-then-move\"\nseconds = 400".into(),
            format!("fs = [{q8}, {free}]\nlimits = {{ handles = 1000 }}"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // A file whose host path is longer than PATH_MAX.
            "bury",
            "action = \"bury-then-fill\"\npath = \"/q/L\"\nseconds = 64".into(),
            format!("fs = [{q8}]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // A tree too deep to measure, then a program: no cap.
            "nest-then-dd",
            format!(
                "action = \"nest-then-exec\"\npath = \"/q/n\"\nseconds = 300\nprogram = \"dd\"\nargs = [\"if=/dev/zero\", \"of={}/dd.bin\", \"bs=1M\", \"count=64\"]",
                q.display()
            ),
            format!("fs = [{q8}]\nexec = [\"dd\"]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // The cap is what the roomiest grant has left.
            "two-grants",
            format!(
                "action = \"exec\"\nprogram = \"dd\"\nargs = [\"if=/dev/zero\", \"of={}/dd.bin\", \"bs=1M\", \"count=64\"]",
                q.display()
            ),
            format!(
                "fs = [{q8}, {{ host = \"big\", guest = \"/big\", access = \"rw\", create = true, quota = \"1G\" }}]\nexec = [\"dd\"]"
            ),
            "failed",
            "quota: grant /q (",
        ),
        (
            // stdout and stderr relayed into the grant, each given all
            // the room there is.
            "two-relays",
            format!(
                "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"head -c {mib64} /dev/zero; head -c {mib64} /dev/zero >&2\"]\nstdout = \"/q/out.bin\"\nstderr = \"/q/err.bin\""
            ),
            format!("fs = [{q8}]\nexec = [\"sh\", \"head\"]"),
            "failed",
            "quota: `sh`'s output into /q/",
        ),
        (
            // Files unlinked while open: the disk holds them, the tree
            // does not show them.
            "hoard-unlinked",
            "action = \"hoard-unlinked\"\npath = \"/q/u\"\nseconds = 32".into(),
            format!("fs = [{q8}]"),
            "failed",
            "quota: grant /q (",
        ),
        (
            // A program moving 7 MiB from one grant with a quota into
            // another holding 7 MiB of its 8 (the test puts them there).
            "mv-across",
            format!(
                "action = \"exec\"\nprogram = \"mv\"\nargs = [\"{}/b.bin\", \"{}/\"]",
                env.path("q2").display(),
                q.display()
            ),
            format!(
                "fs = [{q8}, {{ host = \"q2\", guest = \"/q2\", access = \"rw\", create = true, quota = \"8M\" }}]\nexec = [\"mv\"]"
            ),
            "failed",
            "",
        ),
        (
            // Written elsewhere, renamed over a file of the same size in
            // the grant (5 of its 8 MiB, the test puts it there): the tree
            // does not grow.
            "rename-over",
            "action = \"move-in\"\npath = \"/free/m.bin\"\nprogram = \"/q/m.bin\"\nseconds = 5".into(),
            format!("fs = [{q8}, {free}]"),
            "ok",
            "moved 5 MiB in",
        ),
        (
            // At its quota, not past it: a program run then is fine.
            "full-then-true",
            "action = \"fill-then-exec\"\npath = \"/q/full.bin\"\nseconds = 8\nprogram = \"true\"".into(),
            format!("fs = [{q8}]\nexec = [\"true\"]"),
            "ok",
            "ran true",
        ),
    ];
    let jobs: Vec<String> = cases
        .iter()
        .map(|(name, config, grants, _, _)| {
            hostile(name, config, &format!("[job.grants]\n{grants}"))
        })
        .collect();
    env.write_config(&jobs.concat());
    env.install_guest("opsd-test-hostile");
    let _daemon = env.daemon();
    let mut wrong = Vec::new();
    let put = |rel: &str, mib: usize| {
        let path = env.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![0u8; mib << 20]).unwrap();
    };
    for (name, _, _, status, needle) in &cases {
        match *name {
            "mv-across" => {
                put("q/a.bin", 7);
                put("q2/b.bin", 7);
            }
            "rename-over" => put("q/m.bin", 5),
            _ => {}
        }
        let out = env.run(&["run", name, "--json"]);
        let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let said = rec["error"]
            .as_str()
            .or(rec["summary"].as_str())
            .unwrap_or_default();
        let held = deep_size(&q);
        eprintln!(
            "{name}: {} {said:?}; the grant holds {held} bytes",
            rec["status"]
        );
        if rec["status"] != *status || !said.contains(needle) {
            wrong.push(format!(
                "{name}: wanted {status} with {needle:?}, got {} {said:?}",
                rec["status"]
            ));
        }
        if held > 8 << 20 {
            wrong.push(format!("{name}: {held} bytes in an 8 MiB quota"));
        }
        empty(&q);
        empty(&env.path("free"));
        std::fs::create_dir_all(q.join("inner")).unwrap();
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Two jobs granting the same directory with a quota, filling it at once.
#[test]
fn a_quota_holds_for_two_jobs_sharing_a_grant() {
    let grants = "[job.grants]\nfs = [{ host = \"q\", guest = \"/q\", access = \"rw\", create = true, quota = \"8M\" }]";
    let env = Env::new("");
    let q = env.path("q");
    let jobs: Vec<String> = ["share-a", "share-b"]
        .iter()
        .map(|name| {
            hostile(
                name,
                &format!("action = \"fill\"\npath = \"/q/{name}.bin\"\nseconds = 64"),
                grants,
            )
        })
        .collect();
    env.write_config(&jobs.concat());
    env.install_guest("opsd-test-hostile");
    let _daemon = env.daemon();
    let mut worst = 0;
    for round in 0..3 {
        let runs: Vec<_> = ["share-a", "share-b"]
            .iter()
            .map(|name| {
                let mut cmd = env.cmd(&["run", name, "--json"]);
                cmd.stdout(std::process::Stdio::piped()).spawn().unwrap()
            })
            .collect();
        for r in runs {
            let out = r.wait_with_output().unwrap();
            let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            eprintln!("round {round}: {} {:?}", rec["status"], rec["error"]);
        }
        let held = deep_size(&q);
        eprintln!("round {round}: the grant holds {held} bytes");
        worst = worst.max(held);
        empty(&q);
    }
    assert!(worst <= 8 << 20, "{worst} bytes in an 8 MiB quota");
}

/// Bytes in the regular files below `dir`, at any depth (by find(1): a
/// path may be longer than PATH_MAX).
fn deep_size(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("find")
        .arg(dir)
        .args(["-type", "f", "-printf", "%s\\n"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.parse::<u64>().ok())
        .sum()
}

/// Removes what is in `dir`, however deep.
fn empty(dir: &std::path::Path) {
    if dir.exists() {
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(dir)
            .status();
        std::fs::create_dir_all(dir).unwrap();
    }
}

fn tree_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn a_child_outliving_the_timeout_is_killed_with_its_group() {
    let env = env_with(&[hostile(
        "hang",
        "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"sleep 31.4159 & sleep 31.4159\"]",
        "timeout = \"1s\"\n[job.grants]\nexec = [\"sh\", \"sleep\"]",
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
    // The world first: the cases name its paths (the daemon's store).
    let env = Env::new("");
    let store = env.path("state");
    let socket = env.path("state/opsd.sock");
    let suid = setuid_id(&env);
    // Long enough to outlast the test on a loaded machine: its end must
    // be a kill, not its time running out.
    let outsider = std::process::Command::new("sleep")
        .arg("3600")
        .spawn()
        .expect("sleep");
    let rw = "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }]";
    let ro = "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"ro\", create = true }]";
    let addr = tiny_http_server().to_string();
    let port = addr.rsplit(':').next().unwrap_or("1").to_owned();
    let data = env.path("data").display().to_string();
    // A root-only file no job grants: a program running as root owns it.
    let root_only = env.path("root-only");
    std::fs::write(&root_only, "mine\n").unwrap();
    std::fs::set_permissions(
        &root_only,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let root_only = root_only.display().to_string();
    // A System V shared memory segment on the host.
    let shm = std::process::Command::new("ipcmk")
        .args(["-M", "4096"])
        .output()
        .expect("ipcmk");
    let shm_id = String::from_utf8_lossy(&shm.stdout)
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let python = |code: &str| -> Vec<&'static str> {
        vec!["-c", Box::leak(code.to_owned().into_boxed_str())]
    };
    // A plugin that runs `program args` and pretends all went well: only
    // the host's refusal can fail the run.
    let hides = |program: &str, args: &[&str]| {
        format!("action = \"exec-swallow\"\nprogram = \"{program}\"\nargs = {args:?}")
    };
    let runs = |program: &str, args: &[&str]| {
        format!("action = \"exec\"\nprogram = \"{program}\"\nargs = {args:?}")
    };
    let tcp = format!("action = \"tcp\"\naddress = \"{addr}\"");
    let http = format!("action = \"http\"\naddress = \"{addr}\"");
    let cases: Vec<(&str, String, String, &str, String)> = vec![
        // (job, config, grants and limits, status, the reason must contain)
        (
            "abs-path",
            "action = \"read\"\npath = \"/etc/passwd\"".into(),
            rw.into(),
            "failed",
            "is outside the job's filesystem grants".into(),
        ),
        (
            "dotdot-path",
            "action = \"write\"\npath = \"/data/../escape\"".into(),
            rw.into(),
            "failed",
            // The guest's error number named, not WASI's 63 (EPERM).
            "Operation not permitted (WASI EPERM) (path `/data/../escape` contains `..`)".into(),
        ),
        (
            "host-symlink-out",
            "action = \"read\"\npath = \"/data/hostlink\"".into(),
            rw.into(),
            "failed",
            "denied by the job's grants: fs /data".into(),
        ),
        (
            "plugin-symlink-out",
            "action = \"symlink\"\nprogram = \"../../../../../etc/passwd\"\npath = \"/data/l2\""
                .into(),
            rw.into(),
            "failed",
            "the symlink `l2` -> `../../../../../etc/passwd` was refused: a link a plugin makes must point inside its grant /data".into(),
        ),
        (
            "plugin-symlink-abs",
            "action = \"symlink\"\nprogram = \"/etc/passwd\"\npath = \"/data/l1\"".into(),
            rw.into(),
            "failed",
            "the symlink `l1` -> `/etc/passwd` was refused: a link a plugin makes must point inside its grant /data".into(),
        ),
        (
            // Issue 25 (4): the plugin catches the refusal and says ok;
            // the attempt still fails the run, naming the grant.
            "dotdot-caught",
            "action = \"try-quietly\"\npath = \"/data/../../etc/passwd\"".into(),
            rw.into(),
            "failed",
            "fs: opening `../../etc/passwd` in /data was refused: it leads out of the grant /data (".into(),
        ),
        (
            // An absolute path outside every grant: the guest's WASI
            // library resolves it against `/`, which opsd watches.
            "abs-caught",
            "action = \"try-quietly\"\npath = \"/etc/passwd\"".into(),
            rw.into(),
            "failed",
            "fs: opening `/etc/passwd` was refused: no fs grant gives the plugin that path (it has /data".into(),
        ),
        (
            "relative-caught",
            "action = \"try-quietly\"\npath = \"notes.txt\"".into(),
            rw.into(),
            "failed",
            "fs: opening `/notes.txt` was refused: no fs grant gives the plugin that path".into(),
        ),
        (
            // A symlink the host left in the grant, pointing out.
            "host-symlink-caught",
            "action = \"try-quietly\"\npath = \"/data/hostlink\"".into(),
            rw.into(),
            "failed",
            "fs: opening `/data/hostlink` was refused: a symlink on the way leads out of the grant /data (".into(),
        ),
        (
            "ro-write-caught",
            "action = \"try-quietly\"\npath = \"/data/nothing\"\nprogram = \"/data/new.txt\"".into(),
            ro.into(),
            "failed",
            "fs: opening `/data/new.txt` was refused: the grant /data (".into(),
        ),
        (
            "fill-past-quota",
            "action = \"fill\"\npath = \"/q/big.bin\"\nseconds = 4096".into(),
            "[job.grants]\nfs = [{ host = \"quota\", guest = \"/q\", access = \"rw\", create = true, quota = \"8M\" }]".into(),
            "failed",
            "quota: grant /q (".into(),
        ),
        (
            "write-ro",
            "action = \"write\"\npath = \"/data/x.txt\"".into(),
            ro.into(),
            "failed",
            "(ro); add or widen an `fs` grant".into(),
        ),
        (
            "exec-unlisted",
            "action = \"exec-swallow\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"id\"]".into(),
            String::new(),
            "failed",
            "is not in the job's exec grant".into(),
        ),
        (
            "exec-path-trick",
            "action = \"exec-swallow\"\nprogram = \"/usr/bin/../bin/sh\"".into(),
            "[job.grants]\nexec = [\"echo\"]".into(),
            "failed",
            "not in the job's exec grant (echo)".into(),
        ),
        (
            "tcp-ungranted",
            tcp.clone(),
            String::new(),
            "failed",
            "is not in the job's net grant (none)".into(),
        ),
        (
            "tcp-loopback-other-port",
            "action = \"tcp\"\naddress = \"127.0.0.1:1\"".into(),
            format!("[job.grants]\nnet = [\"{addr}\"]"),
            "failed",
            "is not in the job's net grant".into(),
        ),
        (
            // A granted name admits the addresses it resolves to when the
            // run starts, not whatever the plugin says it resolves to.
            "tcp-name-elsewhere",
            format!("action = \"tcp\"\naddress = \"127.0.0.2:{}\"", addr.rsplit(':').next().unwrap_or("1")),
            format!("[job.grants]\nnet = [\"localhost:{}\"]", addr.rsplit(':').next().unwrap_or("1")),
            "failed",
            "is not in the job's net grant (localhost:".into(),
        ),
        (
            // Each open file is one of the daemon's descriptors.
            "handle-hoard",
            "action = \"hoard\"\npath = \"/data/held\"\nseconds = 20000".into(),
            rw.into(),
            "failed",
            "handle limit: the plugin held more than 1024 open files".into(),
        ),
        (
            "handle-hoard-capped",
            "action = \"hoard\"\npath = \"/data/held2\"\nseconds = 20000".into(),
            format!("{rw}\nlimits = {{ handles = 64 }}"),
            "failed",
            "handle limit: the plugin held more than 64 open files".into(),
        ),
        (
            "handle-modest",
            "action = \"hoard\"\npath = \"/data/held3\"\nseconds = 500".into(),
            rw.into(),
            "ok",
            "holding 500 handles".into(),
        ),
        (
            // A lookup of a name no grant gives would carry data out
            // through the resolver, even if nothing connects.
            "dns-exfiltration",
            "action = \"tcp\"\naddress = \"c2VjcmV0.exfil-7c1e.example:80\"".into(),
            format!("[job.grants]\nnet = [\"localhost:{port}\"]"),
            "failed",
            "looking up `c2VjcmV0.exfil-7c1e.example` is not allowed".into(),
        ),
        (
            // Each lookup holds a resolver thread of the daemon's.
            "dns-flood",
            format!("action = \"lookups\"\naddress = \"localhost:{port}\"\nseconds = 300"),
            format!("[job.grants]\nnet = [\"localhost:{port}\"]"),
            "failed",
            "more than 256 name lookups in a minute".into(),
        ),
        (
            "dns-granted-name",
            format!("action = \"tcp\"\naddress = \"localhost:{port}\""),
            format!("[job.grants]\nnet = [\"localhost:{port}\"]"),
            "ok",
            format!("connected to localhost:{port}"),
        ),
        (
            "tcp-metadata",
            "action = \"tcp\"\naddress = \"169.254.169.254:80\"".into(),
            String::new(),
            "failed",
            "is not in the job's net grant (none)".into(),
        ),
        (
            "http-ungranted",
            http.clone(),
            String::new(),
            "failed",
            "is not in the job's net grant (none)".into(),
        ),
        (
            "infinite-loop",
            "action = \"loop\"".into(),
            "timeout = \"1s\"".into(),
            "timeout",
            "exceeded the job's timeout of 1s".into(),
        ),
        (
            "deep-recursion",
            "action = \"recurse\"".into(),
            String::new(),
            "failed",
            "stack overflow".into(),
        ),
        (
            "memory-bomb",
            "action = \"memory\"".into(),
            "[job.grants]\nlimits = { memory = \"64M\" }".into(),
            "failed",
            "memory limit".into(),
        ),
        (
            "huge-return",
            "action = \"huge-summary\"\nseconds = 32".into(),
            String::new(),
            "failed",
            "outcome limit: the plugin returned a summary of 33554432 bytes".into(),
        ),
        (
            // Past what the host copies out of a guest in one call at all.
            "huge-return-past-the-copy-limit",
            "action = \"huge-summary\"\nseconds = 100".into(),
            String::new(),
            "failed",
            "outcome limit: the plugin passed over 64 MiB to the host in one call".into(),
        ),
        (
            "log-spam",
            "action = \"log-spam\"\nseconds = 100".into(),
            String::new(),
            "failed",
            "log limit".into(),
        ),
        (
            "trap-mid-write",
            "action = \"trap-mid-write\"\npath = \"/data/half.bin\"".into(),
            rw.into(),
            "failed",
            "plugin crashed".into(),
        ),
        (
            "panic",
            "action = \"panic\"".into(),
            String::new(),
            "failed",
            "deliberate panic".into(),
        ),
        (
            // 200 background sleeps against a cap of 16 processes.
            "process-cap",
            "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"for i in $(seq 200); do sleep 27.1828 & done; wait\"]".into(),
            "[job.grants]\nexec = [\"sh\", \"seq\", \"sleep\"]\nlimits = { processes = 16 }".into(),
            "failed",
            "process limit: `sh` and what it started tried to run more than 16 processes".into(),
        ),
        (
            "fork-bomb",
            "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"b(){ b|b& };b; sleep 27.1828\"]\nseconds = 2".into(),
            "[job.grants]\nexec = [\"sh\", \"sleep\"]\nlimits = { processes = 32 }".into(),
            "failed",
            "process limit: `sh` and what it started tried to run more than 32".into(),
        ),
        (
            // A child that leaves a process behind, in a session of its
            // own: the call returns and the leftover is killed, not left
            // to hold the output pipe.
            "orphan",
            "action = \"exec\"\nprogram = \"sh\"\nargs = [\"-c\", \"setsid sleep 27.1828 & echo started\"]".into(),
            "[job.grants]\nexec = [\"sh\", \"setsid\", \"sleep\"]".into(),
            "ok",
            "started".into(),
        ),
        // Programs a plugin starts are held by the same grants.
        (
            "child-reads-shadow",
            hides("cat", &["/etc/shadow"]),
            "[job.grants]\nexec = [\"cat\"]".into(),
            "failed",
            "confined `cat` was refused /etc/shadow".into(),
        ),
        (
            "child-reads-the-store",
            hides("sh", &["-c", &format!("ls {}; cat {}/db", store.display(), store.display())]),
            "[job.grants]\nexec = [\"sh\", \"ls\", \"cat\"]".into(),
            "failed",
            format!("confined `sh` was refused {}", store.display()),
        ),
        (
            "child-writes-outside",
            hides("cp", &["/etc/passwd", "/etc/opsd-escape-cp"]),
            format!("{rw}\nexec = [\"cp\"]"),
            "failed",
            "confined `cp` was refused /etc/opsd-escape-cp".into(),
        ),
        (
            "tar-writes-outside",
            hides("tar", &["-cf", "/etc/opsd-escape.tar", "-C", "/tmp", "."]),
            format!("{rw}\nexec = [\"tar\"]"),
            "failed",
            "confined `tar` was refused /etc/opsd-escape.tar".into(),
        ),
        (
            "find-exec",
            hides("find", &["/usr/bin/id", "-exec", "id", ";"]),
            "[job.grants]\nexec = [\"find\"]".into(),
            "failed",
            "confined `find` tried to run /usr/bin/id".into(),
        ),
        (
            "tar-checkpoint-exec",
            hides("tar", &["-cf", "/dev/null", "--checkpoint=1", "--checkpoint-action=exec=id", "/etc/passwd"]),
            "[job.grants]\nexec = [\"tar\"]".into(),
            "failed",
            "confined `tar` tried to run".into(),
        ),
        (
            "sed-e",
            hides("sed", &["-n", "1e id", "/etc/passwd"]),
            "[job.grants]\nexec = [\"sed\"]".into(),
            "failed",
            "confined `sed` tried to run".into(),
        ),
        (
            "awk-system",
            hides("awk", &["BEGIN { system(\"id\") }"]),
            "[job.grants]\nexec = [\"awk\"]".into(),
            "failed",
            "confined `awk` tried to run".into(),
        ),
        (
            "env-exec",
            hides("env", &["id"]),
            "[job.grants]\nexec = [\"env\"]".into(),
            "failed",
            "confined `env` tried to run /usr/bin/id".into(),
        ),
        (
            "curl-other-port",
            hides("curl", &["-sS", "--max-time", "2", "http://127.0.0.1:1/"]),
            format!("[job.grants]\nexec = [\"curl\"]\nnet = [\"{addr}\"]"),
            "failed",
            "confined `curl` tried to connect to 127.0.0.1:1, which the job's net grant".into(),
        ),
        (
            "bash-dev-tcp-no-net",
            hides("bash", &["-c", &format!("echo hi > /dev/tcp/127.0.0.1/{port}")]),
            "[job.grants]\nexec = [\"bash\"]".into(),
            "failed",
            format!("confined `bash` tried to connect to 127.0.0.1:{port}; the job grants no network"),
        ),
        (
            "curl-control-socket",
            hides("curl", &["-sS", "--unix-socket", &socket.display().to_string(), "-X", "POST", "http://opsd/v1/jobs/heartbeat/run"]),
            "[job.grants]\nexec = [\"curl\"]".into(),
            "failed",
            "confined `curl` tried to open a Unix socket; the job grants none".into(),
        ),
        (
            "signal-the-daemon",
            hides("sh", &["-c", "kill -TERM $PPID; kill -KILL -1; kill -TERM 0; exit 0"]),
            "[job.grants]\nexec = [\"sh\"]".into(),
            "ok",
            "pretended all was well".into(),
        ),
        (
            "signal-an-outsider",
            hides("kill", &["-TERM", &outsider.id().to_string()]),
            "[job.grants]\nexec = [\"kill\"]".into(),
            "failed",
            format!("confined `kill` tried to signal process {}, which is not one it started", outsider.id()),
        ),
        (
            "own-descriptors",
            runs("ls", &["-1", "/proc/self/fd"]),
            "[job.grants]\nexec = [\"ls\"]".into(),
            "ok",
            "0\n1\n2\n3".into(),
        ),
        (
            "no-privileges",
            runs("sh", &["-c", "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\\t' ' '"]),
            "[job.grants]\nexec = [\"sh\", \"grep\", \"tr\"]".into(),
            "ok",
            "CapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nNoNewPrivs: 1".into(),
        ),
        (
            "setuid-gains-nothing",
            runs(&suid.display().to_string(), &[]),
            format!("[job.grants]\nuser = \"nobody\"\nexec = [\"{}\"]", suid.display()),
            "ok",
            "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)".into(),
        ),
        (
            "argv-outside-a-pin",
            hides("sh", &["-c", "id"]),
            "[job.grants]\nexec = [{ program = \"sh\", args = [\"-c\", \"true\"] }]".into(),
            "failed",
            "`sh` with arguments [\"-c\", \"id\"] is not allowed by the job's exec grant, which pins it to args = [\"-c\", \"true\"]".into(),
        ),
        // What a first review broke, each now refused.
        (
            "chmod-as-root",
            hides("chmod", &["0666", &root_only]),
            "[job.grants]\nexec = [\"chmod\"]".into(),
            "failed",
            format!("confined `chmod` was refused {root_only}"),
        ),
        (
            "backdate-as-root",
            hides("touch", &["-c", "-d", "2001-01-01", &root_only]),
            "[job.grants]\nexec = [\"touch\"]".into(),
            "failed",
            format!("confined `touch` was refused {root_only}"),
        ),
        (
            "ld-so-runs-anything",
            hides("sh", &["-c", "/lib64/ld-linux-x86-64.so.2 /usr/bin/id"]),
            "[job.grants]\nexec = [\"sh\"]".into(),
            "failed",
            "ld-linux-x86-64.so.2, which the job's exec grant (sh) does not name".into(),
        ),
        (
            "ld-so-through-proc",
            hides("sh", &["-c", "cd /lib64 && /proc/1/cwd/ld-linux-x86-64.so.2 /usr/bin/id"]),
            "[job.grants]\nexec = [\"sh\"]".into(),
            "failed",
            "which could not be checked".into(),
        ),
        (
            "preload-from-a-grant",
            runs("sh", &["-c", &format!("cp /usr/lib/x86_64-linux-gnu/libm.so.6 {data}/x.so && LD_PRELOAD={data}/x.so id -u 2>&1")]),
            format!("{rw}\nexec = [\"sh\", \"cp\", \"id\"]"),
            "ok",
            "cannot be preloaded".into(),
        ),
        (
            "memfd-exec",
            hides("/usr/bin/python3", &python("import os; fd = os.memfd_create('x'); os.write(fd, open('/usr/bin/id', 'rb').read()); os.execve(fd, ['id'], {})")),
            "[job.grants]\nexec = [\"/usr/bin/python3\"]".into(),
            "failed",
            "confined `/usr/bin/python3` tried to run /memfd:x".into(),
        ),
        (
            "unix-datagrams",
            runs("/usr/bin/python3", &python("import socket, errno\nfor name, make in [('dgram', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)), ('raw', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_RAW)), ('pair', lambda: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM))]:\n    try:\n        make(); print(name, 'allowed')\n    except OSError as e:\n        print(name, errno.errorcode[e.errno])")),
            "[job.grants]\nexec = [\"/usr/bin/python3\"]".into(),
            "ok",
            "dgram EACCES\nraw EACCES\npair EACCES".into(),
        ),
        (
            "vsock",
            hides("/usr/bin/python3", &python("import socket; socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)")),
            "[job.grants]\nexec = [\"/usr/bin/python3\"]".into(),
            "failed",
            "tried to open a socket of address family 40 (vsock, to the hypervisor)".into(),
        ),
        (
            "tcp-fast-open",
            hides("/usr/bin/python3", &python(&format!("import socket; s = socket.socket(); s.sendto(b'x', socket.MSG_FASTOPEN, ('127.0.0.1', {port}))"))),
            "[job.grants]\nexec = [\"/usr/bin/python3\"]\nnet = [\"127.0.0.1:1\"]".into(),
            "failed",
            "tried TCP Fast Open".into(),
        ),
        (
            "listen",
            hides("/usr/bin/python3", &python("import socket; s = socket.socket(); s.listen()")),
            format!("[job.grants]\nexec = [\"/usr/bin/python3\"]\nnet = [\"{addr}\"]"),
            "failed",
            "tried to listen for connections".into(),
        ),
        (
            "host-shared-memory",
            runs("cat", &["/proc/sysvipc/shm"]),
            "[job.grants]\nexec = [\"cat\"]".into(),
            "ok",
            "key".into(),
        ),
        (
            "pinned-argv-overflow",
            hides("sh", &["-c", &format!("ls {data} $(printf %05000d 0) /etc/ssl")]),
            format!("{rw}\nexec = [\"sh\", {{ program = \"ls\", args = [\"{data}\"] }}]"),
            "failed",
            "with arguments too long to check".into(),
        ),
        // What a second review broke, each now refused.
        (
            "preload-from-the-cwd",
            runs("sh", &["-c", "cp /usr/lib/x86_64-linux-gnu/libm.so.6 x.so && LD_PRELOAD=./x.so id -u 2>&1"]),
            format!("{rw}\nexec = [\"sh\", \"cp\", \"id\"]"),
            "ok",
            "cannot be preloaded".into(),
        ),
        (
            "preload-its-own-output",
            format!(
                "{}\nstdout = \"/data/o.so\"",
                runs("sh", &["-c", &format!("cat /usr/lib/x86_64-linux-gnu/libm.so.6; LD_PRELOAD=/proc/self/fd/1 id -u > {data}/preloaded.txt 2>&1")])
            ),
            format!("{rw}\nexec = [\"sh\", \"cat\", \"id\"]"),
            "ok",
            String::new(),
        ),
        (
            "exec-through-a-swappable-link",
            hides("sh", &["-c", &format!("ln -sf /usr/bin/id {data}/l && {data}/l")]),
            format!("{rw}\nexec = [\"sh\", \"ln\", \"id\"]"),
            "failed",
            format!("by a path through {data}, a directory the job may write"),
        ),
        (
            "ip-address-on-a-unix-socket",
            runs("/usr/bin/python3", &python(&format!("import ctypes, socket\ns = socket.socket(socket.AF_UNIX)\nlibc = ctypes.CDLL(None, use_errno=True)\naddr = bytes([2, 0]) + ({port}).to_bytes(2, 'big') + bytes([127, 0, 0, 1]) + bytes(8)\nprint(libc.connect(s.fileno(), addr, 16), ctypes.get_errno())"))),
            format!("[job.grants]\nexec = [\"/usr/bin/python3\"]\nnet = [\"{addr}\", \"unix:/run/opsd-test-no-such.sock\"]"),
            "ok",
            "-1 22".into(),
        ),
        (
            "mptcp",
            runs("/usr/bin/python3", &python("import socket, errno\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262); print('allowed')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])")),
            format!("[job.grants]\nexec = [\"/usr/bin/python3\"]\nnet = [\"{addr}\"]"),
            "ok",
            "EPROTONOSUPPORT".into(),
        ),
        (
            "touch-a-host-file",
            hides("touch", &[&root_only]),
            "[job.grants]\nexec = [\"touch\"]".into(),
            "failed",
            format!("confined `touch` was refused {root_only}"),
        ),
        (
            "inode-flags",
            runs("/usr/bin/python3", &python(&format!("import fcntl, errno, struct\nf = open('{root_only}')\ntry:\n    fcntl.ioctl(f, 0x40086602, struct.pack('l', 0x10)); print('set')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])"))),
            "[job.grants]\nexec = [\"/usr/bin/python3\"]\nsystem_paths = [\"/tmp\"]".into(),
            "ok",
            "EROFS".into(),
        ),
        (
            "fifo-as-output",
            format!("{}\nstdout = \"/data/fifo\"", runs("true", &[])),
            format!("{rw}\nexec = [\"true\"]"),
            "failed",
            "`/data/fifo` is not a regular file".into(),
        ),
        (
            "fexecve-a-fifo",
            hides("/usr/bin/python3", &python(&format!("import os\nos.mkfifo('{data}/p2')\nfd = os.open('{data}/p2', os.O_RDONLY | os.O_NONBLOCK)\nos.execve(fd, ['x'], {{}})"))),
            format!("{rw}\nexec = [\"/usr/bin/python3\"]"),
            "failed",
            format!("confined `/usr/bin/python3` tried to run {data}/p2"),
        ),
        (
            "pinned-argv-flood",
            hides("sh", &["-c", &format!("ls {data} $(seq 1 20000)")]),
            format!("{rw}\nexec = [\"sh\", \"seq\", {{ program = \"ls\", args = [\"{data}\"] }}]"),
            "failed",
            "tried to run /usr/bin/ls with arguments".into(),
        ),
        (
            "pinned-program-with-a-preload",
            hides("env", &["LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libm.so.6", "id", "-u"]),
            "[job.grants]\nexec = [\"env\", { program = \"id\", args = [\"-u\"] }]".into(),
            "failed",
            "with `LD_PRELOAD` in its environment".into(),
        ),
        // What a third review broke: a nested grant swapped for a
        // symlink by a job that may write the directory above it.
        (
            "plant-a-link-for-a-nested-grant",
            hides("sh", &["-c", &format!("rmdir {data}/nested && ln -s /etc {data}/nested")]),
            "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }, { host = \"data/nested\", guest = \"/nested\", access = \"ro\", create = true }]\nexec = [\"sh\", \"rmdir\", \"ln\"]".into(),
            "ok",
            "pretended all was well".into(),
        ),
        (
            "read-through-the-planted-link",
            "action = \"read\"\npath = \"/nested/shadow\"".into(),
            "[job.grants]\nfs = [{ host = \"data/nested\", guest = \"/nested\", access = \"ro\", create = true }]".into(),
            "failed",
            "has a symlink in its path that was not there when the config loaded".into(),
        ),
        (
            "exec-through-the-planted-link",
            runs("cat", &[&format!("{data}/nested/shadow")]),
            "[job.grants]\nfs = [{ host = \"data/nested\", guest = \"/nested\", access = \"ro\", create = true }]\nexec = [\"cat\"]".into(),
            "failed",
            "has a symlink in its path that was not there when the config loaded".into(),
        ),
        // What a fourth review broke.
        (
            "setuid-in-a-grant",
            hides("sh", &["-c", "cp /usr/bin/dash rootsh && chmod 4755 rootsh"]),
            format!("{rw}\nexec = [\"sh\", \"cp\", \"chmod\"]"),
            "failed",
            "the setuid or setgid bit, which a job's programs never may".into(),
        ),
        (
            "setuid-by-creation",
            hides("/usr/bin/python3", &python(&format!("import os\nos.close(os.open('{data}/made', os.O_CREAT | os.O_WRONLY, 0o4755))"))),
            format!("{rw}\nexec = [\"/usr/bin/python3\"]"),
            "failed",
            "the setuid or setgid bit, which a job's programs never may".into(),
        ),
        (
            "unix-address-of-two-bytes",
            hides("/usr/bin/python3", &python("import ctypes, socket\ns = socket.socket(socket.AF_UNIX)\nctypes.CDLL(None).connect(s.fileno(), bytes([1, 0]), 2)\nos = __import__('os'); os.execv('/usr/bin/id', ['id'])")),
            "[job.grants]\nexec = [\"/usr/bin/python3\"]\nnet = [\"unix:/run/opsd-test-no-such.sock\"]".into(),
            "failed",
            "tried to connect to the abstract Unix socket @; programs may reach only Unix sockets the job grants by path (and 1 more denials)".into(),
        ),
        (
            "hide-bytes-below-many-directories",
            hides("sh", &["-c", "for i in $(seq 2000); do mkdir d$i; done; head -c 30000000 /dev/zero > d2000/big; sleep 2"]),
            "[job.grants]\nfs = [{ host = \"wide\", guest = \"/wide\", access = \"rw\", create = true, quota = \"8M\" }]\nexec = [\"sh\", \"seq\", \"mkdir\", \"head\", \"sleep\"]".into(),
            "failed",
            "quota: grant /wide (".into(),
        ),
        (
            // Not an attack: a connect from a thread other than the first
            // is judged like any (its socket found through a thread pidfd).
            "connect-from-a-thread",
            runs("/usr/bin/python3", &python(&format!("import socket, threading\nout = []\ndef go():\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=5); out.append('connected'); s.close()\nt = threading.Thread(target=go); t.start(); t.join()\nprint(out[0] if out else 'failed')"))),
            format!("[job.grants]\nexec = [\"/usr/bin/python3\"]\nnet = [\"{addr}\"]"),
            "ok",
            "connected".into(),
        ),
        (
            "output-flood",
            "action = \"exec-count\"\nprogram = \"head\"\nargs = [\"-c\", \"100000000\", \"/dev/zero\"]".into(),
            "[job.grants]\nexec = [\"head\"]\nlimits = { output = \"1M\" }".into(),
            "ok",
            "kept 1048576 bytes of stdout, truncated true".into(),
        ),
    ];
    let mut jobs: Vec<String> = cases
        .iter()
        .map(|(name, config, extra, _, _)| hostile(name, config, extra))
        .collect();
    jobs.push(
        "[[job]]\nname = \"heartbeat\"\nplugin = \"test-hostile\"\nschedule = \"* * * * * *\"\n[job.config]\naction = \"ok\"\n".into(),
    );
    env.write_config(&jobs.concat());
    env.install_guest("opsd-test-hostile");
    std::fs::create_dir_all(env.path("data")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(env.path("data/fifo"))
        .status()
        .expect("mkfifo");
    assert!(fifo.success());
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
    assert!(!std::path::Path::new("/etc/opsd-escape-cp").exists());
    assert!(!std::path::Path::new("/etc/opsd-escape.tar").exists());
    for planted in ["rootsh", "made"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(env.path(&format!("data/{planted}")))
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o6000, 0, "{planted} is setuid: {mode:o}");
    }
    // The root-only file kept its mode; the host's shared memory was not
    // to be seen.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&root_only).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let shm = env.run_job("host-shared-memory");
    assert_eq!(
        shm["summary"].as_str().unwrap_or_default().lines().count(),
        1,
        "only the header: {shm:#}"
    );
    let _ = std::process::Command::new("ipcrm")
        .args(["-m", &shm_id])
        .status();
    // The process outside every sandbox was not signalled.
    let mut outsider = outsider;
    let status = outsider.try_wait().unwrap();
    assert!(status.is_none(), "the outsider was killed: {status:?}");
    outsider.kill().unwrap();
    let preloaded = std::fs::read_to_string(env.path("data/preloaded.txt")).unwrap_or_default();
    assert!(
        preloaded.contains("cannot be preloaded"),
        "a program's own output file is no code to it: {preloaded}"
    );
    let flood = env.run_job("pinned-argv-flood");
    assert!(
        flood["error"].as_str().unwrap_or_default().len() < 8192,
        "a refusal names a huge argv briefly"
    );
    let fds = env.run_job("own-descriptors");
    assert_eq!(
        fds["summary"], "0\n1\n2\n3",
        "exactly stdio, and ls's own: {fds:#}"
    );
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
    // A beat may be skipped because the one before was still going (a
    // loaded machine: overlap = "forbid" doing its job); none may fail,
    // and the slot is still handled on time.
    let ok = beats.iter().filter(|b| b["status"] == "ok").count();
    assert!(
        ok as i64 >= window / 2,
        "{ok} of {} heartbeats ok",
        beats.len()
    );
    for b in &beats {
        let overlapped = b["status"] == "skipped"
            && b["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("was still going");
        assert!(b["status"] == "ok" || overlapped, "{b:#}");
        // Generous: CI machines are shared; the point is no stall.
        assert!(
            at(b, "started") - at(b, "scheduled") < chrono::Duration::seconds(2),
            "late: {b:#}"
        );
    }
    daemon.stop();
}

/// A copy of `id` owned by root with the setuid bit, where `nobody` can
/// run it: what a job's program might find to raise its privileges.
fn setuid_id(env: &Env) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = env.path("suid");
    std::fs::create_dir_all(&dir).unwrap();
    let id = dir.join("id");
    std::fs::copy("/usr/bin/id", &id).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    for d in [env.path(""), dir] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    id
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
        // The plugin asks to run a program named by it: the refusal
        // quotes the name.
        hostile(
            "refused",
            "action = \"exec-env\"\nprogram = \"OPSD_TEST_TOKEN\"",
            "[job.grants]\nenv = [\"OPSD_TEST_TOKEN\"]",
        ),
        // The plugin itself puts it in every field a run returns.
        hostile(
            "fields",
            "action = \"leak-fields\"\nprogram = \"OPSD_TEST_TOKEN\"",
            "[job.grants]\nenv = [\"OPSD_TEST_TOKEN\"]",
        ),
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
    let refused: serde_json::Value =
        serde_json::from_slice(&env.run(&["run", "refused", "--json"]).stdout).unwrap();
    assert_eq!(refused["status"], "failed", "{refused:#}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("program `[OPSD_TEST_TOKEN]`"),
        "{refused:#}"
    );
    let fields = env.json(&["run", "fields", "--json"]);
    assert_eq!(fields["status"], "ok", "{fields:#}");
    let masked = "[OPSD_TEST_TOKEN]";
    for (what, value) in [
        ("summary", &fields["summary"]),
        ("details", &fields["details"]),
        ("metric name", &fields["metrics"][0]["name"]),
        ("metric unit", &fields["metrics"][0]["unit"]),
        ("artifact path", &fields["artifacts"][0]["path"]),
        ("artifact kind", &fields["artifacts"][0]["kind"]),
        ("artifact sha256", &fields["artifacts"][0]["sha256"]),
    ] {
        assert!(
            value.as_str().is_some_and(|v| v.contains(masked)),
            "{what}: {fields:#}"
        );
    }
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

/// A FIFO in a grant, where a plugin's file calls or a program's database
/// should be: the run ends (at its timeout at worst) and the daemon keeps
/// serving.
#[test]
fn a_fifo_in_a_grant_wedges_nothing() {
    let env = Env::new(
        r#"
[[job]]
name = "fifo-db"
plugin = "vacuum"
schedule = "@weekly"
timeout = "3s"
[job.grants]
exec = ["sqlite3"]
fs = [{ host = "db", guest = "/db", access = "rw", create = true }]
[job.config]
[[job.config.sqlite]]
path = "/db/app.db"

[[job]]
name = "beat"
plugin = "test-hostile"
schedule = "* * * * * *"
[job.config]
action = "ok"
"#,
    );
    env.install_guest("opsd-test-hostile");
    std::fs::create_dir_all(env.path("db")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(env.path("db/app.db"))
        .status()
        .unwrap();
    assert!(made.success());
    let daemon = env.daemon();
    let started = std::time::Instant::now();
    let rec = env.run_job("fifo-db");
    assert_ne!(rec["status"], "ok", "{rec:#}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{rec:#}"
    );
    let (code, body) = env.socket_get("/v1/health");
    assert_eq!(code, 200, "{body}");
    assert_eq!(env.run_job("beat")["status"], "ok");
    assert!(daemon.stop().success());
}

/// History is a grant: a plugin reads its own job's runs, and another
/// job's only with `history = "all"`; asking without it fails the run.
#[test]
fn a_plugin_reads_only_its_own_history_unless_granted_all() {
    let data = "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }]";
    let env = env_with(&[
        hostile("victim", "action = \"ok\"", ""),
        hostile("peek-all", "action = \"history\"", ""),
        hostile("peek-other", "action = \"history\"\npath = \"victim\"", ""),
        hostile(
            "peek-detail",
            "action = \"history-detail\"\npath = \"/data/id\"",
            data,
        ),
        hostile(
            "reporter",
            "action = \"history\"",
            "[job.grants]\nhistory = \"all\"",
        ),
    ]);
    let daemon = env.daemon();
    let victim = env.run_job("victim");
    assert_eq!(victim["status"], "ok", "{victim:#}");
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/id"), victim["id"].as_str().unwrap()).unwrap();
    // "Every job" is every job it may read: its own.
    let own = ended_with(&env, "peek-all", "ok", "jobs listed [peek-all]");
    assert!(
        !own["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("victim"),
        "{own:#}"
    );
    failed_with(
        &env,
        "peek-other",
        "failed",
        "may read only its own runs, and asked for job `victim`'s; add `history = \"all\"`",
    );
    failed_with(
        &env,
        "peek-detail",
        "failed",
        "may read only its own runs, and asked for job `victim`'s",
    );
    let all = ended_with(
        &env,
        "reporter",
        "ok",
        "runs of [peek-all,peek-detail,peek-other,reporter,victim]",
    );
    assert!(
        all["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("jobs listed [victim,peek-all,peek-other,peek-detail,reporter]"),
        "{all:#}"
    );
    let check = text(&env.run(&["check"]));
    assert!(
        check.contains("may read every job's run history (grants.history = \"all\")"),
        "{check}"
    );
    assert!(daemon.stop().success());
}

/// What a plugin says is data: escape sequences, carriage returns,
/// direction overrides and newlines that would forge a host line are
/// shown escaped on every command an operator reads, in the daemon's log
/// and in the report, and kept exact (JSON-escaped) in `--json`.
#[test]
fn plugin_text_is_shown_escaped_everywhere_an_operator_reads_it() {
    const PAYLOAD: &str = "<script>alert(1)</script>\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nERROR opsd::grants: forged\u{202e}gpj";
    let toml_payload = "<script>alert(1)</script>\\u001b]0;pwned\\u0007\\u001b[2J\\r\\nERROR opsd::grants: forged\\u202egpj";
    let env = env_with(&[
        hostile(
            "says",
            &format!("action = \"say\"\npath = \"{toml_payload}\""),
            "",
        ),
        hostile(
            "fails",
            &format!("action = \"say\"\nseconds = 1\npath = \"{toml_payload}\""),
            "",
        ),
    ]);
    let daemon = env.daemon();
    let rec = env.json(&["run", "says", "--json"]);
    assert_eq!(rec["summary"], PAYLOAD, "the record keeps the exact text");
    let failed: serde_json::Value =
        serde_json::from_slice(&env.run(&["run", "fails", "--json"]).stdout).unwrap();
    assert_eq!(failed["error"], PAYLOAD, "{failed:#}");
    let id = rec["id"].as_str().unwrap_or_default().to_owned();
    let mut shown = Vec::new();
    for args in [
        vec!["run", "says"],
        vec!["run", "fails"],
        vec!["run", "says", "--follow"],
        vec!["history"],
        vec!["history", "--json"],
        vec!["logs", id.as_str()],
        vec!["logs", id.as_str(), "--json"],
        vec!["run", "says", "--json"],
        vec!["report", "--since", "1d", "--format", "text"],
        vec!["report", "--since", "1d", "--format", "md"],
        vec!["report", "--since", "1d", "--format", "html"],
    ] {
        let out = env.run(&args);
        shown.push((
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    shown.push(("the daemon's log".into(), daemon.log()));
    assert!(daemon.stop().success());
    for (what, said) in &shown {
        for bad in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
            assert!(!said.contains(bad), "{what} shows {bad:?} raw:\n{said}");
        }
        assert!(
            !said
                .lines()
                .any(|l| l.starts_with("ERROR opsd::grants: forged")),
            "{what} lets the plugin start a line:\n{said}"
        );
        if what.contains("md") || what.contains("html") {
            assert!(
                !said.contains("<script>alert"),
                "{what} passes HTML:\n{said}"
            );
            assert!(said.contains("&lt;script&gt;alert"), "{what}:\n{said}");
        }
    }
    let (_, run_text) = &shown[0];
    assert!(run_text.contains("\\x1b]0;pwned\\x07"), "{run_text}");
    // `opsd run` and `opsd logs` show what the plugin said in `details`,
    // escaped and indented under their label (issue 25, 6).
    for (what, said) in [&shown[0], &shown[5]] {
        assert!(
            said.contains("details:\n  <script>alert(1)</script>\\x1b]0;pwned"),
            "{what}:\n{said}"
        );
    }
}

/// The path gate's review: each job a list of file steps whose errors the
/// plugin swallows, so only a recorded violation fails the run.
#[test]
fn the_path_gate_judges_where_a_path_really_lands() {
    let steps = |s: &[&str]| format!("action = \"fs-steps\"\nargs = {s:?}");
    let rw = "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }]";
    let ups = "../".repeat(12);
    let deep = "deep/".repeat(12);
    let env = env_with(&[
        // A link made through the plugin's own `deep -> .`: by its words
        // `deep/deep/.../l -> ../../..` stays inside; on the host it is
        // `l -> ../../..`, out of the grant.
        hostile(
            "link-through-a-loop",
            &steps(&[
                "symlink /data/deep .",
                &format!("symlink /data/{deep}l {ups}etc/passwd"),
            ]),
            rw,
        ),
        // The same, the loop in the target's own words.
        hostile(
            "target-through-a-loop",
            &steps(&[
                "symlink /data/deep .",
                &format!("symlink /data/l2 {deep}{ups}etc/passwd"),
            ]),
            rw,
        ),
        // Not an attack: a read-only grant nested in a read-write one is
        // writable through the outer one (as for the host's file calls
        // and Landlock), by path or through a descriptor opened there.
        hostile(
            "rw-over-ro",
            &steps(&[
                "mkdir /data/keep/sub",
                "write /data/keep/sub/f",
                "write /data/keep/f2",
                "open-unlink /data/keep f2",
                "rmtree /data/keep/sub",
            ]),
            "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }, { host = \"data/keep\", guest = \"/keep\", access = \"ro\", create = true }]",
        ),
        // A change through a read-only grant, on a directory a read-write
        // grant nested in it also reaches.
        hostile(
            "ro-over-rw",
            &steps(&["write /out/f", "open-unlink /srv/out f"]),
            "[job.grants]\nfs = [{ host = \"srv\", guest = \"/srv\", access = \"ro\", create = true }, { host = \"srv/out\", guest = \"/out\", access = \"rw\", create = true }]",
        ),
        // Two read-write grants, one nested in the other: `..` from the
        // inner one's root leads out of it, from a directory opened there
        // through the outer one it does not.
        hostile(
            "inner-dotdot",
            &steps(&["read /sub/../f3"]),
            "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }, { host = \"data/sub\", guest = \"/sub\", access = \"rw\", create = true }]",
        ),
        hostile(
            "outer-fd-dotdot",
            &steps(&["write /data/f3", "open-unlink /data/sub ../f3"]),
            "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"rw\", create = true }, { host = \"data/sub\", guest = \"/sub\", access = \"rw\", create = true }]",
        ),
        // A link made where the directory's host path is past PATH_MAX
        // (so /proc cannot say where it is).
        hostile(
            "link-past-path-max",
            &steps(&[&format!(
                "deep-link /data/far {}etc/passwd",
                "../".repeat(40)
            )]),
            rw,
        ),
        // A link that points inside where it was made, moved up.
        hostile(
            "link-moved-up",
            &steps(&[
                "mkdir /data/m/m/m/m/m/m",
                "symlink /data/m/m/m/m/m/m/l3 ../../../../../../etc/passwd",
                "rename /data/m/m/m/m/m/m/l3 /data/l3",
            ]),
            rw,
        ),
        // Writing the empty root itself.
        hostile("write-the-root", &steps(&["open-write /"]), rw),
    ]);
    let said = |job: &str| {
        let out = env.run(&["run", job, "--json"]);
        let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        eprintln!("{job}: {rec:#}");
        rec
    };
    let mut wrong = Vec::new();
    let mut check = |job: &str, ok: bool, rec: &serde_json::Value| {
        if !ok {
            wrong.push(format!("{job}: {rec:#}"));
        }
    };
    let error = |rec: &serde_json::Value| rec["error"].as_str().unwrap_or_default().to_owned();
    for (job, link) in [
        ("link-through-a-loop", "data/l"),
        ("target-through-a-loop", "data/l2"),
    ] {
        let rec = said(job);
        let landed = std::fs::canonicalize(env.path(link)).ok();
        check(
            job,
            landed.as_deref() != Some(std::path::Path::new("/etc/passwd"))
                && rec["status"] == "failed"
                && error(&rec).contains("a link a plugin makes must point inside its grant"),
            &rec,
        );
    }
    let rec = said("rw-over-ro");
    check(
        "rw-over-ro",
        rec["status"] == "ok"
            && !rec["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("Permitted"),
        &rec,
    );
    let rec = said("ro-over-rw");
    check(
        "ro-over-rw",
        rec["status"] == "failed" && error(&rec).contains("is read-only"),
        &rec,
    );
    let rec = said("inner-dotdot");
    check(
        "inner-dotdot",
        rec["status"] == "failed" && error(&rec).contains("leads out of the grant /sub"),
        &rec,
    );
    let rec = said("outer-fd-dotdot");
    // No violation: its words stay in /data (cap-std still refuses `..`
    // above the directory a descriptor was opened on).
    check("outer-fd-dotdot", rec["status"] == "ok", &rec);
    let rec = said("link-past-path-max");
    let made = std::process::Command::new("find")
        .args([
            env.path("data/far").as_os_str(),
            "-name".as_ref(),
            "l".as_ref(),
        ])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    check(
        "link-past-path-max",
        made.is_empty() && rec["status"] == "failed" && error(&rec).contains("symlink"),
        &rec,
    );
    let rec = said("link-moved-up");
    let landed = std::fs::canonicalize(env.path("data/l3")).ok();
    check(
        "link-moved-up",
        landed.as_deref() != Some(std::path::Path::new("/etc/passwd")) && rec["status"] == "failed",
        &rec,
    );
    let rec = said("write-the-root");
    check(
        "write-the-root",
        rec["status"] == "failed" && error(&rec).contains("no fs grant gives the plugin that path"),
        &rec,
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `files.sha256` (contract 0.1.3) hashes on the host, so it is a way to
/// read files: it reads only regular files inside the job's grants, a
/// FIFO or a link out of the grant gets nothing, and a run timed out
/// while the host hashes a huge file stops the hashing too.
#[test]
fn the_host_hashes_only_regular_files_inside_the_grants() {
    let grant = "[job.grants]\nfs = [{ host = \"data\", guest = \"/data\", access = \"ro\", create = true }]";
    let job = |name: &str, path: &str, extra: &str| {
        hostile(
            name,
            &format!("action = \"sha256\"\npath = \"{path}\""),
            &format!("{extra}\n{grant}"),
        )
    };
    let env = env_with(&[
        job("dump", "/data/dump", ""),
        job("outside", "/etc/passwd", ""),
        job("traverse", "/data/../opsd.toml", ""),
        job("link-out", "/data/shadow", ""),
        job("fifo", "/data/fifo", "timeout = \"5s\""),
        job("dir", "/data", ""),
        job("huge", "/data/huge", "timeout = \"1s\""),
    ]);
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("dump"), &bytes).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", data.join("shadow")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(data.join("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    // Sparse: 64 GiB the host would take half a minute to hash.
    std::fs::File::create(data.join("huge"))
        .and_then(|f| f.set_len(64 << 30))
        .unwrap();

    // The same hash as sha256sum's, and the size.
    let sum = std::process::Command::new("sha256sum")
        .arg(data.join("dump"))
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    ended_with(&env, "dump", "ok", &format!("sha256 {want} 3000000"));

    failed_with(
        &env,
        "outside",
        "failed",
        "`/etc/passwd` is outside the job's filesystem grants",
    );
    failed_with(&env, "traverse", "failed", "contains `..`");
    failed_with(&env, "link-out", "failed", "leads outside the grant");
    failed_with(&env, "fifo", "failed", "not a regular file");
    failed_with(&env, "dir", "failed", "not a regular file");

    // Timed out while the host hashes: the run ends at its timeout, and
    // the daemon's hashing thread stops with it (no CPU burnt after).
    let daemon = env.daemon();
    let rec = failed_with(&env, "huge", "timeout", "exceeded the job's timeout of 1s");
    assert!(rec["duration_ms"].as_u64().unwrap() < 10_000, "{rec:#}");
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<u64> = after
            .split(' ')
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = cpu();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let used = cpu() - before;
    assert!(
        used < 100,
        "the daemon used {used} clock ticks in 2 s after the run ended: still hashing?"
    );
    assert!(daemon.stop().success());
}
