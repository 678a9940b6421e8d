//! The daemon and the CLI: scheduled fires, the control socket, the same
//! answers with or without a daemon, the compile cache across restarts,
//! and config errors that name file and line.

use crate::util::{Env, text, wait_for};
use std::time::Duration;

/// Two jobs run by hand: `rotate` in Berlin's zone, `off` disabled in the
/// config. Their schedule never fires while a test runs.
fn by_hand_jobs() -> String {
    let far = crate::util::far_off();
    format!(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "{far}"
timezone = "Europe/Berlin"
[job.grants]
fs = [{{ host = "logs", guest = "/logs", access = "rw", create = true }}]
[job.config]
paths = ["/logs/*.log"]
missingok = true

[[job]]
name = "off"
plugin = "log-rotate"
schedule = "{far}"
enabled = false
[job.grants]
fs = [{{ host = "logs", guest = "/logs", access = "rw", create = true }}]
[job.config]
paths = ["/logs/*.log"]
"#
    )
}

#[test]
fn the_daemon_fires_a_due_job_and_records_it() {
    let env = Env::new(
        r#"
[[job]]
name = "every-second"
plugin = "log-rotate"
schedule = "* * * * * *"
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "rw", create = true }]
[job.config]
paths = ["/logs/*.log"]
missingok = true
"#,
    );
    let daemon = env.daemon();
    // History is newest first; the newest run may still be going, and on a
    // loaded machine a slot may be skipped while the first run (which
    // compiles the plugin) is still going: wait for a finished ok run.
    let rec = wait_for(Duration::from_secs(30), || {
        let runs = env.json(&["history", "--json"]);
        let runs = runs.as_array().unwrap();
        for r in runs.iter().filter(|r| r["status"] == "skipped") {
            assert!(
                r["summary"]
                    .as_str()
                    .unwrap()
                    .contains("overlap = \"forbid\""),
                "{r:#}"
            );
        }
        runs.iter().find(|r| r["status"] == "ok").cloned()
    })
    .unwrap_or_else(|| panic!("no scheduled runs; daemon log:\n{}", daemon.log()));
    assert_eq!(rec["trigger"], "schedule");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    // A scheduled run serves a whole-second slot.
    assert!(
        rec["scheduled"].as_str().unwrap().ends_with(":00Z")
            || !rec["scheduled"].as_str().unwrap().contains('.')
    );
    assert!(daemon.stop().success());
}

#[test]
fn answers_are_the_same_with_and_without_a_daemon() {
    let env = Env::new(&by_hand_jobs());
    std::fs::create_dir_all(env.path("logs")).unwrap();
    std::fs::write(env.path("logs/x.log"), "x").unwrap();
    let local_run = env.run_job("rotate");
    assert_eq!(local_run["status"], "ok");
    let schedule = env.json(&["schedule", "list", "--json"]);
    let history = env.json(&["history", "--json"]);
    let logs = env.json(&["logs", local_run["id"].as_str().unwrap(), "--json"]);

    let daemon = env.daemon();
    assert_eq!(env.json(&["schedule", "list", "--json"]), schedule);
    assert_eq!(env.json(&["history", "--json"]), history);
    assert_eq!(
        env.json(&["logs", local_run["id"].as_str().unwrap(), "--json"]),
        logs
    );

    // The JSON contract of `schedule list`.
    let rotate = &schedule[0];
    assert_eq!(rotate["job"], "rotate");
    assert_eq!(rotate["plugin"], "log-rotate");
    assert_eq!(rotate["schedule"], crate::util::far_off());
    assert_eq!(rotate["timezone"], "Europe/Berlin");
    assert_eq!(rotate["enabled"], true);
    // 12:00 in Berlin: 11:00 UTC in winter, 10:00 in summer.
    let next = rotate["next"].as_str().unwrap();
    assert!(
        next.contains("-15T11:00:00") || next.contains("-15T10:00:00"),
        "{rotate:#}"
    );
    assert_eq!(rotate["last_status"], "ok");
    assert_eq!(schedule[1]["enabled"], false);
    assert!(schedule[1]["next"].is_null());
    assert!(schedule[1]["last"].is_null());

    // A run through the daemon is recorded like a local one.
    let daemon_run = env.run_job("rotate");
    assert_eq!(daemon_run["status"], "ok");
    let history = env.json(&["history", "--json", "--job", "rotate"]);
    assert_eq!(history[0]["id"], daemon_run["id"]);
    assert_eq!(history[1]["id"], local_run["id"]);
    for field in [
        "id",
        "job",
        "plugin",
        "plugin_version",
        "plugin_sha256",
        "status",
        "scheduled",
        "started",
        "finished",
        "duration_ms",
        "summary",
        "error",
    ] {
        assert!(
            history[0].get(field).is_some(),
            "history record lacks {field}"
        );
    }

    // Errors read the same both ways.
    let via_daemon = env.run(&["run", "nope"]);
    drop(daemon);
    let local = env.run(&["run", "nope"]);
    assert_eq!(via_daemon.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&via_daemon.stderr),
        String::from_utf8_lossy(&local.stderr)
    );
    assert!(
        String::from_utf8_lossy(&local.stderr).contains("no job named `nope`"),
        "{}",
        text(&local)
    );
}

#[test]
fn the_control_socket_is_private_and_speaks_http() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(&by_hand_jobs());
    let daemon = env.daemon();
    let socket = env.path("state/opsd.sock");
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (status, body) = env.socket_get("/v1/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(health["store_writable"], true);
    // A second daemon refuses to start.
    let second = env.run(&["daemon"]);
    assert_eq!(second.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        text(&second)
    );
    assert!(daemon.stop().success());
    assert!(!socket.exists(), "socket left behind after a clean stop");
}

#[test]
fn a_restart_reuses_the_compiled_component_cache() {
    let env = Env::new(&by_hand_jobs());
    let first = env.run_job("rotate");
    assert_eq!(first["plugin_load"]["source"], "compiled", "{first:#}");
    let second = env.run_job("rotate");
    assert_eq!(second["plugin_load"]["source"], "disk-cache", "{second:#}");
    // And a daemon starting on the same data dir loads from disk too (when
    // it checks its jobs at start), so its runs find the code in memory.
    let daemon = env.daemon();
    let third = env.run_job("rotate");
    assert_eq!(third["plugin_load"]["source"], "memory", "{third:#}");
    let fourth = env.run_job("rotate");
    assert_eq!(fourth["plugin_load"]["source"], "memory", "{fourth:#}");
    assert!(daemon.stop().success());
    let cached: Vec<_> = std::fs::read_dir(env.path("state/cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "one compiled entry for one plugin");
}

#[test]
fn config_errors_name_file_line_and_job() {
    let env = Env::new(
        r#"
[[job]]
name = "bad"
plugin = "log-rotate"
schedule = "0 25 * * *"
timezone = "Mars/Base"
"#,
    );
    // The job is set aside as broken, with why; the rest of the
    // configuration (here none) would run.
    let out = env.run(&["schedule", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("bad is broken and does not run: line 8: schedule `0 25 * * *` is not valid")
            && list.contains("line 9: unknown time zone `Mars/Base`"),
        "{list}"
    );
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    let file = env.path("opsd.toml").display().to_string();
    assert!(
        report.contains(&format!(
            "{file}:8: job `bad`: error: schedule `0 25 * * *` is not valid"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{file}:9: job `bad`: error: unknown time zone `Mars/Base`"
        )),
        "{report}"
    );
    let out = env.run(&["run", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("job `bad` is broken and does not run: line 8:"),
        "{}",
        text(&out)
    );

    env.write_config(
        "[[job]]\nname = \"x\"\nplugin = \"log-rotate\"\nschedule = \"@daily\"\nretry = 3\n",
    );
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!("{file}:8: job `x`: error:"))
            && report.contains("unknown field `retry`"),
        "{report}"
    );
    // A file broken as a whole is refused, and check says so with exit 1.
    env.write_config("max_concurrent_runs = 0\n");
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_concurrent_runs = 0"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_missing_plugin_fails_its_run_saying_where_opsd_looked() {
    let env =
        Env::new("[[job]]\nname = \"ghost\"\nplugin = \"no-such-plugin\"\nschedule = \"@daily\"\n");
    let out = env.run(&["run", "ghost", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "failed");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains("plugin `no-such-plugin` not found"),
        "{error}"
    );
    assert!(
        error.contains(&env.path("plugins").display().to_string()),
        "{error}"
    );
    // And the failure is in the history.
    assert_eq!(env.json(&["history", "--json"])[0]["status"], "failed");
}

/// A command stuck writing its output (to a pager nobody scrolls) no
/// longer has the store open: the next command, and a daemon, can open
/// it. The output pipe is one page, so `history --json` of a few runs
/// fills it and blocks.
#[test]
fn a_command_blocked_on_its_output_leaves_the_store_to_others() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let env = Env::new(&by_hand_jobs());
    for _ in 0..6 {
        assert_eq!(env.run_job("rotate")["status"], "ok");
    }
    let whole = env.run(&["history", "--json"]).stdout.len();
    let (mut read, write) = std::io::pipe().expect("pipe");
    // SAFETY: fcntl on a descriptor this test owns.
    let page = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(
        page >= 4096,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    assert!(
        whole > page as usize,
        "history is {whole} bytes: too short to fill a {page}-byte pipe"
    );
    let mut child = env
        .cmd(&["history", "--json"])
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn opsd history");
    // Wait until the pipe is full: the command is blocked writing.
    let queued = || {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int, on a descriptor this test owns.
        unsafe { libc::ioctl(read.as_raw_fd(), libc::FIONREAD, &mut n) };
        n
    };
    let filled = wait_for(Duration::from_secs(30), || {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("opsd history ended ({status}) before filling the pipe: {err}");
        }
        (queued() >= page).then_some(())
    });
    assert!(
        filled.is_some(),
        "opsd history never filled a {page}-byte pipe ({} bytes queued)",
        queued()
    );

    // The store is closed on a thread of its own, which may take a few
    // milliseconds more; it used to stay open until the command exited.
    let listed = wait_for(Duration::from_secs(10), || {
        env.run(&["schedule", "list", "--json"])
            .status
            .success()
            .then_some(())
    });
    assert!(
        listed.is_some(),
        "the blocked command still holds the store: {}",
        text(&env.run(&["schedule", "list", "--json"]))
    );

    // The first command, read at last, still answers in full.
    let mut stdout = Vec::new();
    read.read_to_end(&mut stdout).expect("read history");
    let status = child.wait().expect("wait opsd history");
    assert!(status.success());
    let runs: serde_json::Value = serde_json::from_slice(&stdout).expect("history is JSON");
    assert_eq!(runs.as_array().map(Vec::len), Some(6));
}

#[test]
fn enable_and_disable_persist_across_restarts() {
    let env = Env::new(&by_hand_jobs());
    let entry = |list: &serde_json::Value, job: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["job"] == job)
            .cloned()
            .unwrap()
    };
    // No daemon: the CLI writes the store itself.
    let out = env.run(&["schedule", "disable", "rotate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "rotate: disabled\n");
    let list = env.json(&["schedule", "list", "--json"]);
    assert_eq!(entry(&list, "rotate")["enabled"], false);
    assert!(entry(&list, "rotate")["next"].is_null());

    // The daemon sees it, and a disabled job still runs on demand.
    let daemon = env.daemon();
    assert_eq!(
        entry(&env.json(&["schedule", "list", "--json"]), "rotate")["enabled"],
        false
    );
    assert_eq!(env.run_job("rotate")["status"], "ok");
    // Enabling through the daemon; `off` is disabled in the config and
    // enabled here.
    let out = env.run(&["schedule", "enable", "off"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("off: enabled; next run "),
        "{}",
        text(&out)
    );
    assert!(daemon.stop().success());

    let list = env.json(&["schedule", "list", "--json"]);
    assert_eq!(
        entry(&list, "rotate")["enabled"],
        false,
        "disable survived the restart"
    );
    assert_eq!(
        entry(&list, "off")["enabled"],
        true,
        "enable wins over the config"
    );
    assert!(entry(&list, "off")["next"].is_string());
    let out = env.run(&["schedule", "enable", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job named `nope`"));
}

#[test]
fn check_compares_jobs_with_what_their_plugins_ask_for() {
    let env = Env::new(
        r#"
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "ro", create = true }]
exec = ["sh"]
[job.config]
paths = ["/logs/*.log"]
rotat = 3
compress = "yes"

[[job]]
name = "ghost"
plugin = "no-such-plugin"
schedule = "@daily"
"#,
    );
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    let file = env.path("opsd.toml").display().to_string();
    for want in [
        format!(
            "{file}:5: job `rotate`: error: plugin log-rotate writes under /logs (the logs to rotate, and the state file), but the grant /logs -> "
        ),
        format!(
            "{file}:5: job `rotate`: warning: the job grants `sh`, which plugin log-rotate does not list among the programs it may run ("
        ),
        format!(
            "{file}:14: job `rotate`: error: config key `rotat` is not known to plugin log-rotate (it knows "
        ),
        format!(
            "{file}:15: job `rotate`: error: config key `compress` is a string, plugin log-rotate wants boolean"
        ),
        format!("{file}:17: job `ghost`: error: plugin `no-such-plugin` not found"),
        format!("{file}: 2 jobs, 4 errors, 1 warning"),
    ] {
        assert!(report.contains(&want), "missing {want:?} in:\n{report}");
    }
    let ok = Env::new(&by_hand_jobs());
    let out = ok.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn completions_and_man_page() {
    let env = Env::new("");
    let out = env.run(&["completions", "bash"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("complete -F _opsd")
    );
    let out = env.run(&["man"]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && page.contains(".TH opsd 1") && page.contains("schedule"),
        "{page}"
    );
    // One page: every command in it, no page cited that is never installed.
    assert!(page.contains("\\fBopsd schedule list\\fR"), "{page}");
    assert!(!page.contains("opsd-schedule("), "{page}");
    // A reader that stops early (`| head -1`) is no error, every time.
    for _ in 0..5 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opsd"))
            .args(["completions", "bash"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_takes_a_config_pointing_into_the_grants_and_programs_it_names() {
    let env = Env::new(
        r#"
[[job]]
name = "own-path"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/var/log/app", access = "rw", create = true }]
[job.config]
paths = ["/var/log/app/*.log"]

[[job]]
name = "elsewhere"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/var/log/app", access = "rw", create = true }]
[job.config]
paths = ["/srv/*.log"]

[[job]]
name = "db-ping"
plugin = "command"
schedule = "@daily"
[job.grants]
exec = ["psql"]
net = ["127.0.0.1:5432"]
[job.config]
program = "psql"
args = ["-c", "SELECT 1"]

[[job]]
name = "rotate-net"
plugin = "log-rotate"
schedule = "@daily"
[job.grants]
fs = [{ host = "logs", guest = "/logs", access = "rw", create = true }]
net = ["127.0.0.1:5432"]
[job.config]
paths = ["/logs/*.log"]

[[job]]
name = "restart"
plugin = "service"
schedule = "@daily"
[job.grants]
exec = ["curl", "sh"]
net = ["http://127.0.0.1:3000"]
[job.config]
command = ["curl", "-sf", "-X", "POST", "http://127.0.0.1:3000/restart"]
health = { url = "http://127.0.0.1:3000/health" }
"#,
    );
    let out = env.run(&["check"]);
    let report = String::from_utf8_lossy(&out.stdout);
    let warnings: Vec<&str> = report
        .lines()
        .filter(|l| l.contains(": warning:"))
        .collect();
    // A config naming paths in the grant, psql's own network and a
    // restart command's program are no warnings; a config pointing
    // elsewhere, a net grant no program uses and a program nothing names
    // still are.
    assert_eq!(warnings.len(), 3, "{report}");
    assert!(
        warnings[0].contains("job `elsewhere`: warning: plugin log-rotate expects /logs"),
        "{report}"
    );
    assert!(
        warnings[1].contains("job `rotate-net`: warning: the job grants network access"),
        "{report}"
    );
    assert!(
        warnings[2].contains("job `restart`: warning: the job grants `sh`"),
        "{report}"
    );
}
