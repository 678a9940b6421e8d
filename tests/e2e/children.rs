//! The programs a plugin starts: what `opsd check` and `schedule show`
//! say they may touch, a job's `user`, the control socket refusing a
//! sandboxed peer, a daemon without root, and a machine without the
//! namespaces strict confinement needs. The hostile cases themselves run
//! in `sandbox::every_hostile_plugin_is_contained_...`.

use crate::util::{Env, text, wait_for};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

/// A job of the hostile test guest running `program args` (its stdout is
/// the run's summary).
fn job(name: &str, program: &str, args: &[&str], grants: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"test-hostile\"\nschedule = \"{}\"\n[job.grants]\n{grants}\n[job.config]\naction = \"exec\"\nprogram = \"{program}\"\nargs = {args:?}\n\n",
        crate::util::far_off()
    )
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn check_and_schedule_show_say_what_programs_may_touch() {
    let env = Env::new(&job(
        "dump",
        "tar",
        &["-cf", "/out/x.tar", "/in"],
        "fs = [\n  { host = \"in\", guest = \"/in\", access = \"ro\", create = true },\n  { host = \"out\", guest = \"/out\", access = \"rw\", create = true },\n]\nexec = [\"tar\", { program = \"sh\", args = [\"-c\", \"gzip\"] }]\nnet = [\"127.0.0.1:5432\"]",
    ));
    env.install_guest("opsd-test-hostile");
    let out = env.run(&["check"]);
    let said = String::from_utf8_lossy(&out.stdout);
    let file = env.path("opsd.toml").display().to_string();
    for want in [
        "job `dump`: note: its programs run as root with no capabilities and no way to gain any (no_new_privs); set grants.user to run them as another user",
        &format!(
            "job `dump`: note: its programs read the system base, {}, {}",
            env.path("in").display(),
            env.path("out").display()
        ),
        &format!(
            "job `dump`: note: its programs write {} only",
            env.path("out").display()
        ),
        "job `dump`: note: its programs run tar, sh (args = [\"-c\", \"gzip\"]) only (and what the kernel needs to start them)",
        "job `dump`: note: its programs connect by TCP only to 127.0.0.1:5432 (UDP stays open, for DNS among others)",
        "job `dump`: note: its programs see and signal only processes they started (own PID namespace)",
    ] {
        assert!(said.contains(want), "missing {want:?} in:\n{said}");
    }
    assert!(said.contains(&format!("{file}: 1 job, 0 errors")), "{said}");
    let show = env.run(&["schedule", "show", "dump"]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("  programs:  run as root with no capabilities")
            && shown.contains("connect by TCP only to 127.0.0.1:5432"),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&env.run(&["schedule", "show", "dump", "--json"]).stdout).unwrap();
    assert!(
        json["grants"]["programs"]
            .as_array()
            .is_some_and(|l| l.len() >= 6),
        "{json:#}"
    );
}

#[test]
fn a_jobs_user_runs_its_programs_and_writes_only_its_grant() {
    let env = Env::new(&job(
        "as-nobody",
        "sh",
        &[
            "-c",
            "id -un; echo hi > mine; echo more > /etc/opsd-nobody-test; chmod 666 ../nobodys; echo exit=$?",
        ],
        "user = \"nobody\"\nfs = [{ host = \"out\", guest = \"/out\", access = \"rw\", create = true }]\nexec = [\"sh\", \"id\", \"chmod\"]",
    ));
    env.install_guest("opsd-test-hostile");
    // The grant belongs to the job's user, as its operator would set it up;
    // so does a file outside it, which stays as it is.
    std::fs::create_dir_all(env.path("out")).unwrap();
    std::fs::write(env.path("nobodys"), "x").unwrap();
    chmod(&env.path("nobodys"), 0o644);
    std::os::unix::fs::chown(env.path("nobodys"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(env.path("out"), Some(65534), Some(65534)).unwrap();
    chmod(&env.path(""), 0o755);
    let rec = env.run_job("as-nobody");
    assert_eq!(
        rec["status"], "failed",
        "the write to /etc is refused: {rec:#}"
    );
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("confined `sh` was refused /etc/opsd-nobody-test"),
        "{rec:#}"
    );
    assert!(!std::path::Path::new("/etc/opsd-nobody-test").exists());
    assert_eq!(
        std::fs::metadata(env.path("nobodys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644,
        "the job's user may not change its files outside the grants"
    );
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::metadata(env.path("out/mine")).unwrap();
    assert_eq!(mine.uid(), 65534, "written as the job's user");
    let log = text(&env.run(&["logs", rec["id"].as_str().unwrap()]));
    assert!(
        log.contains("programs run as user nobody (uid 65534, gid 65534)"),
        "the run's log says what its programs may do: {log}"
    );
}

#[test]
fn the_control_socket_refuses_a_peer_in_another_pid_namespace() {
    let env = Env::new("");
    let daemon = env.daemon();
    let socket = env.path("state/opsd.sock");
    // What a sandboxed program racing its supervisor would look like: a
    // root process, allowed by the file mode, in a PID namespace of its own.
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--unix-socket",
        ])
        .arg(&socket)
        .arg("http://opsd/v1/health")
        .output()
        .unwrap();
    assert!(!out.status.success(), "answered: {}", text(&out));
    let (code, _) = env.socket_get("/v1/health");
    assert_eq!(code, 200, "the daemon still serves its own");
    // A socket whose mode was widened by mistake still serves only root
    // and opsd's own user.
    for p in ["", "state"] {
        chmod(&env.path(p), 0o755);
    }
    chmod(&socket, 0o666);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["curl", "-sS", "--max-time", "5", "--unix-socket"])
        .arg(&socket)
        .arg("http://opsd/v1/health")
        .output()
        .unwrap();
    assert!(!out.status.success(), "answered nobody: {}", text(&out));
    assert!(
        daemon
            .log()
            .contains("refused a control socket connection from a user who may not drive opsd"),
        "{}",
        daemon.log()
    );
    assert!(
        daemon
            .log()
            .contains("refused a control socket connection from a program a job started"),
        "{}",
        daemon.log()
    );
    assert!(daemon.stop().success());
}

#[test]
fn a_daemon_without_root_confines_its_programs_in_a_user_namespace() {
    let env = Env::new(
        &[
            job("who", "id", &["-u"], "exec = [\"id\"]"),
            // From its working directory, DATA_DIR/idle.
            job("peek", "cat", &["../../secret"], "exec = [\"cat\"]"),
            job(
                "call",
                "curl",
                &["-sS", "--max-time", "2", "http://127.0.0.1:9/"],
                "exec = [\"curl\"]",
            ),
            // Without a cgroup, a program that clears its parent-death
            // signal and leaves its session still ends with its call.
            job(
                "linger",
                "/usr/bin/python3",
                &[
                    "-c",
                    "import ctypes, os, time; ctypes.CDLL(None).prctl(1, 0); os.setsid(); time.sleep(31.2345)",
                ],
                "exec = [\"/usr/bin/python3\"]",
            )
            .replace("[job.grants]", "timeout = \"2s\"\n[job.grants]"),
        ]
        .concat(),
    );
    env.install_guest("opsd-test-hostile");
    // A world-readable file nobody granted, beside the store.
    std::fs::write(env.path("secret"), "not yours\n").unwrap();
    chmod(&env.path("secret"), 0o644);
    std::fs::create_dir_all(env.path("state")).unwrap();
    for p in [
        "",
        "state",
        "plugins",
        "plugins/opsd-test-hostile.wasm",
        "opsd.toml",
    ] {
        std::os::unix::fs::chown(env.path(p), Some(65534), Some(65534)).unwrap();
    }
    let as_nobody = |job: &str| -> serde_json::Value {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(crate::util::opsd_bin())
            .arg("--config")
            .arg(env.path("opsd.toml"))
            .args(["run", job, "--json"]);
        let out = c.output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{job}: not JSON ({e}): {}", text(&out)))
    };
    let who = as_nobody("who");
    assert_eq!(who["status"], "ok", "{who:#}");
    assert_eq!(who["summary"], "65534");
    let peek = as_nobody("peek");
    assert_eq!(peek["status"], "failed", "{peek:#}");
    assert!(
        peek["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!(
                "confined `cat` was refused {}",
                env.path("secret").display()
            )),
        "{peek:#}"
    );
    let linger = as_nobody("linger");
    assert_eq!(linger["status"], "timeout", "{linger:#}");
    let left = Command::new("pgrep")
        .args(["-f", "time.sleep.31.2345"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "outlived its call: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let call = as_nobody("call");
    assert_eq!(call["status"], "failed", "{call:#}");
    assert!(
        call["error"]
            .as_str()
            .unwrap_or_default()
            .contains("the job grants no network"),
        "{call:#}"
    );
}

#[test]
fn without_namespaces_strict_jobs_refuse_to_start_programs_and_best_effort_ones_say_what_they_lack()
{
    let env = Env::new(
        &[
            job("strict", "id", &["-u"], "exec = [\"id\"]"),
            job("lax", "id", &["-u"], "exec = [\"id\"]").replace(
                "[job.config]",
                "[job.sandbox]\nexec = \"best-effort\"\n[job.config]",
            ),
        ]
        .concat(),
    );
    env.install_guest("opsd-test-hostile");
    // A container that forbids network namespaces, as some do: a user
    // namespace whose limit of them is 0.
    let contained = |args: &[&str]| {
        let script = format!(
            "echo 0 > /proc/sys/user/max_net_namespaces && exec \"$0\" --config '{}' \"$@\"",
            env.path("opsd.toml").display()
        );
        Command::new("unshare")
            .args(["--user", "--map-root-user", "sh", "-c", &script])
            .arg(crate::util::opsd_bin())
            .args(args)
            .output()
            .unwrap()
    };
    let out = contained(&["run", "strict", "--json"]);
    let strict: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(strict["status"], "failed", "{strict:#}");
    let error = strict["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("this machine cannot confine programs as the job's sandbox requires: it lacks namespaces")
            && error.contains("[sandbox] exec = \"best-effort\""),
        "{strict:#}"
    );
    let out = contained(&["run", "lax", "--json"]);
    let lax: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(lax["status"], "ok", "{lax:#}");
    let log = text(&contained(&["logs", lax["id"].as_str().unwrap()]));
    assert!(log.contains("`id` runs without namespaces"), "{log}");
    let check = String::from_utf8_lossy(&contained(&["check"]).stdout).into_owned();
    assert!(
        check.contains("job `strict`: error: this machine cannot fully confine the programs the job runs: it lacks namespaces")
            && check.contains("job `lax`: warning: this machine cannot fully confine"),
        "{check}"
    );
}

#[test]
fn a_killed_daemon_takes_its_programs_with_it_and_the_next_one_clears_their_cgroups() {
    let env = Env::new(&format!(
        "shutdown_grace = \"1s\"\n\n{}",
        job(
            "long",
            "sh",
            &["-c", "sleep 31.6228 & sleep 31.6228"],
            "exec = [\"sh\", \"sleep\"]",
        )
    ));
    env.install_guest("opsd-test-hostile");
    let daemon = env.daemon();
    let client = env
        .cmd(&["run", "long", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = || {
        let out = Command::new("pgrep")
            .args(["-f", "sleep 31.6228"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    wait_for(Duration::from_secs(10), || (running() >= 2).then_some(()))
        .expect("the program started");
    let cgroups = |pid: u32| {
        std::fs::read_dir("/sys/fs/cgroup/pids")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("opsd-{pid}-"))
            })
            .count()
    };
    let pid = daemon.pid();
    daemon.kill9();
    let mut client = client;
    let _ = client.wait();
    wait_for(Duration::from_secs(10), || (running() == 0).then_some(()))
        .unwrap_or_else(|| panic!("{} programs outlived the daemon", running()));
    // What the killed daemon left in the pids hierarchy goes when the next
    // one first confines a program.
    let next = env.daemon();
    let mut run = env
        .cmd(&["run", "long", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || (running() >= 2).then_some(()))
        .expect("the program started again");
    if std::path::Path::new("/sys/fs/cgroup/pids").exists() {
        wait_for(Duration::from_secs(10), || {
            (cgroups(pid) == 0).then_some(())
        })
        .unwrap_or_else(|| panic!("cgroups of pid {pid} stay"));
    }
    assert!(next.stop().success());
    let _ = run.wait();
    wait_for(Duration::from_secs(10), || (running() == 0).then_some(()))
        .expect("stopping the daemon ended its programs");
}

#[test]
fn a_granted_tmp_is_private_to_each_call_and_apt_audits_confined() {
    // Outside /tmp: the private one would hide it (and a checkout may
    // itself be under /tmp, as a CI clone is).
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let parent = if target.starts_with("/tmp") {
        std::path::Path::new("/var/tmp")
    } else {
        target
    };
    let env = Env::new_in(
        parent,
        &[
            job(
                "scratch",
                "sh",
                &["-c", "ls -A /tmp | wc -l; echo hi > /tmp/x && cat /tmp/x"],
                "exec = [\"sh\", \"ls\", \"wc\", \"cat\"]\ntmp = \"1M\"",
            ),
            // The audit plugin's apt check, as the README grants it.
            "[[job]]\nname = \"apt\"\nplugin = \"audit\"\nschedule = \"@yearly\"\nenabled = false\n[job.grants]\nfs = [{ host = \"audit-state\", guest = \"/state\", access = \"rw\", create = true }]\nexec = [\"apt\", \"dpkg\"]\ntmp = \"16M\"\nsystem_paths = [\"/etc/apt\", \"/var/lib/apt\", \"/var/lib/dpkg\", \"/var/cache/apt\"]\n[job.config]\nstate_file = \"/state/audit.json\"\napt = {}\n".to_owned(),
        ]
        .concat(),
    );
    env.install_guest("opsd-test-hostile");
    for _ in 0..2 {
        let rec = env.run_job("scratch");
        assert_eq!(rec["status"], "ok", "{rec:#}");
        assert_eq!(rec["summary"], "0\nhi", "an empty /tmp each time: {rec:#}");
    }
    assert!(
        !std::path::Path::new("/tmp/x").exists(),
        "not the host's /tmp"
    );
    if Command::new("apt").arg("--version").output().is_ok() {
        let rec = env.run_job("apt");
        assert!(
            rec["status"] == "ok" || rec["status"] == "warning",
            "apt ran confined: {rec:#}"
        );
        assert!(
            !rec["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("could not check"),
            "{rec:#}"
        );
    }
    // A private /tmp would hide a grant there: the job is refused (set
    // aside as broken) when the config loads.
    let there = Env::new(&job(
        "t",
        "true",
        &[],
        "fs = [{ host = \"g\", guest = \"/g\", access = \"rw\", create = true }]\nexec = [\"true\"]\ntmp = \"1M\"",
    ));
    let out = there.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("grants.tmp gives the job's programs a /tmp of their own, which would hide"),
        "{}",
        text(&out)
    );
}
