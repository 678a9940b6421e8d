//! Plugins dropped into the plugin directory of a running daemon: picked
//! up live, validated first, never half-written, replaced without
//! disturbing runs, refused with a reason when bad.

use crate::util::{Env, guest, text, wait_for};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The component with a custom section appended: same behaviour, other
/// bytes, so another sha256.
fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"opsd-test";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    let mut n = content.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&content);
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn plugins(env: &Env) -> Vec<Value> {
    env.json(&["plugins", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

fn entry(env: &Env, file: &str) -> Option<Value> {
    let path = env.path(&format!("plugins/{file}")).display().to_string();
    plugins(env)
        .into_iter()
        .find(|p| p["source"] == path.as_str())
}

fn healthy(env: &Env) {
    let (status, body) = env.socket_get("/v1/health");
    assert_eq!(status, 200, "daemon unhealthy: {body}");
}

const JOBS: &str = r#"
[[job]]
name = "quick"
plugin = "test-hostile"
schedule = "@yearly"
enabled = false # run by hand: never fires during a test
[job.config]
action = "ok"

[[job]]
name = "long"
plugin = "test-hostile"
schedule = "@yearly"
enabled = false # run by hand: never fires during a test
[job.config]
action = "sleep"
seconds = 3
"#;

#[test]
fn dropped_plugins_are_picked_up_replaced_and_removed_live() {
    let env = Env::new(JOBS);
    let daemon = env.daemon();
    let bytes = std::fs::read(guest("opsd-test-hostile")).unwrap();
    let dest = env.path("plugins/hostile.wasm");

    // Nothing there yet: the job is set aside as broken, and a run is
    // refused saying where opsd looked.
    let why = refused(&env, "quick");
    assert!(
        why.contains(&format!(
            "no .wasm file in {}",
            env.path("plugins").display()
        )),
        "{why}"
    );

    // Copied in slowly, in chunks: never loaded (or refused) half-written,
    // even with an old mtime on it all along, as `cp -p` or `tar x` may
    // leave it (so only the change time says it is still being written).
    let mut f = std::fs::File::create(&dest).unwrap();
    let chunks: Vec<&[u8]> = bytes.chunks(bytes.len() / 4 + 1).collect();
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for chunk in &chunks {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        f.set_modified(old).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            entry(&env, "hostile.wasm").is_none(),
            "a half-written file was looked at: {:#?}",
            plugins(&env)
        );
    }
    drop(f);
    let written = Instant::now();
    let ready = wait_for(Duration::from_secs(10), || {
        entry(&env, "hostile.wasm").filter(|e| e["status"] == "ready")
    })
    .unwrap_or_else(|| panic!("not picked up: {:#?}\n{}", plugins(&env), daemon.log()));
    println!("picked up {:?} after the last write", written.elapsed());
    assert_eq!(ready["name"], "test-hostile");
    assert_eq!(ready["sha256"], sha256(&bytes).as_str());
    assert!(ready["capabilities"].is_object());
    assert!(!daemon.log().contains("rejected"), "{}", daemon.log());
    assert_eq!(env.run_job("quick")["status"], "ok");

    // Replaced during a long run: the run finishes on the version it
    // started with; the next run uses the new file.
    let long = env
        .cmd(&["run", "long", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), || {
        env.json(&["history", "--json", "--job", "long"])
            .as_array()
            .unwrap()
            .first()
            .filter(|r| r["status"] == "running")
            .cloned()
    })
    .expect("the long run started");
    let new = variant(&bytes, "v2");
    std::fs::write(env.path("plugins/.hostile.tmp"), &new).unwrap();
    std::fs::rename(env.path("plugins/.hostile.tmp"), &dest).unwrap();
    wait_for(Duration::from_secs(10), || {
        entry(&env, "hostile.wasm").filter(|e| e["sha256"] == sha256(&new).as_str())
    })
    .unwrap_or_else(|| panic!("replacement not picked up: {:#?}", plugins(&env)));
    let out = long.wait_with_output().unwrap();
    let long_rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(long_rec["status"], "ok", "{long_rec:#}");
    assert_eq!(
        long_rec["plugin_sha256"],
        sha256(&bytes).as_str(),
        "finished on the old version"
    );
    let next = env.run_job("quick");
    assert_eq!(
        next["plugin_sha256"],
        sha256(&new).as_str(),
        "the next run uses the new file"
    );
    healthy(&env);

    // Removed: its jobs fail, saying where opsd looked.
    std::fs::remove_file(&dest).unwrap();
    wait_for(Duration::from_secs(10), || {
        entry(&env, "hostile.wasm").is_none().then_some(())
    })
    .expect("removal noticed");
    let gone = env.run_job("quick");
    assert_eq!(gone["status"], "failed");
    assert!(
        gone["error"]
            .as_str()
            .unwrap()
            .contains("plugin `test-hostile` not found"),
        "{gone:#}"
    );
    healthy(&env);
    assert!(daemon.stop().success());
}

#[test]
fn bad_files_are_refused_with_the_reason_once() {
    let env = Env::new(JOBS);
    let daemon = env.daemon();
    let bytes = std::fs::read(guest("opsd-test-hostile")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "garbage.wasm",
            b"this is not wasm at all".to_vec(),
            "not a WebAssembly component",
        ),
        (
            "truncated.wasm",
            bytes[..bytes.len() / 2].to_vec(),
            "not a WebAssembly component",
        ),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0".to_vec(),
            "it is a core WebAssembly module",
        ),
        (
            "command.wasm",
            std::fs::read(guest("opsd-test-command")).unwrap(),
            "it does not export `describe`",
        ),
        (
            "stuck.wasm",
            std::fs::read(guest("opsd-test-stuck-describe")).unwrap(),
            "describe() failed: did not answer within 5s",
        ),
        (
            "huge.wasm",
            std::fs::read(guest("opsd-test-huge-describe")).unwrap(),
            "its answer is over 8 MiB, far more than any plugin needs",
        ),
    ];
    for (file, content, reason) in &cases {
        std::fs::write(env.path(&format!("plugins/{file}")), content).unwrap();
        let e = wait_for(Duration::from_secs(10), || entry(&env, file))
            .unwrap_or_else(|| panic!("{file} not listed: {:#?}", plugins(&env)));
        assert_eq!(e["status"], "rejected", "{e:#}");
        assert!(
            e["error"].as_str().unwrap().contains(reason),
            "{file}: {e:#}"
        );
        healthy(&env);
    }
    // Nothing a refused plugin said reaches the terminal raw.
    let listed = text(&env.run(&["plugins", "list"]));
    assert!(!listed.contains('\u{1b}'), "{listed}");
    // The good jobs' plugin is still missing, and the message points at
    // the rejected files.
    let why = refused(&env, "quick");
    assert!(why.contains("rejected there:"), "{why}");
    // Each bad file is reported once, however often the directory is
    // looked at.
    std::fs::write(env.path("plugins/touch.wasm"), b"x").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let log = daemon.log();
    let reports = log
        .lines()
        .filter(|l| l.contains("plugin file rejected") && l.contains("garbage.wasm"))
        .count();
    assert_eq!(reports, 1, "{log}");
    // And the bad files cost no good run: install the real one.
    std::fs::write(env.path("plugins/hostile.wasm"), &bytes).unwrap();
    wait_for(Duration::from_secs(10), || {
        entry(&env, "hostile.wasm").filter(|e| e["status"] == "ready")
    })
    .expect("good file ready");
    assert_eq!(env.run_job("quick")["status"], "ok");
    assert!(daemon.stop().success());
}

#[test]
fn name_clashes_are_refused_and_builtins_are_only_replaced_on_request() {
    let hostile = std::fs::read(guest("opsd-test-hostile")).unwrap();
    let log_rotate = opsd::builtins::builtins()
        .iter()
        .find(|b| b.name == "log-rotate")
        .expect("log-rotate is built in")
        .bytes
        .to_vec();
    let jobs = format!(
        "{JOBS}\n[[job]]\nname = \"rotate\"\nplugin = \"log-rotate\"\nschedule = \"@yearly\"\nenabled = false\n[job.grants]\nfs = [{{ host = \"logs\", guest = \"/logs\", access = \"rw\", create = true }}]\n[job.config]\npaths = [\"/logs/*.log\"]\nmissingok = true\n"
    );
    let env = Env::new(&jobs);
    std::fs::write(env.path("plugins/a.wasm"), &hostile).unwrap();
    std::fs::write(env.path("plugins/b.wasm"), variant(&hostile, "b")).unwrap();
    let mine = variant(&log_rotate, "mine");
    std::fs::write(env.path("plugins/my-log-rotate.wasm"), &mine).unwrap();

    // No daemon: the CLI scans the directory itself.
    let rec = env.run_job("quick");
    assert_eq!(rec["status"], "failed");
    let err = rec["error"].as_str().unwrap();
    assert!(
        err.contains("plugin `test-hostile` is claimed by more than one file")
            && err.contains("a.wasm")
            && err.contains("b.wasm"),
        "{err}"
    );
    let a = entry(&env, "a.wasm").unwrap();
    assert_eq!(a["status"], "rejected");
    assert!(
        a["error"].as_str().unwrap().contains("also claimed by"),
        "{a:#}"
    );
    let shadowed = entry(&env, "my-log-rotate.wasm").unwrap();
    assert_eq!(shadowed["status"], "shadowed", "{shadowed:#}");
    assert_eq!(
        env.run_job("rotate")["plugin_sha256"],
        sha256(&log_rotate).as_str(),
        "the built-in runs"
    );

    // With override_builtin the file replaces the built-in.
    env.write_config(&format!(
        "[plugins]\noverride_builtin = [\"log-rotate\"]\n\n{jobs}"
    ));
    assert_eq!(
        entry(&env, "my-log-rotate.wasm").unwrap()["status"],
        "ready"
    );
    let builtin = plugins(&env)
        .into_iter()
        .find(|p| p["source"] == "builtin" && p["name"] == "log-rotate")
        .unwrap();
    assert_eq!(builtin["status"], "shadowed");
    assert_eq!(
        env.run_job("rotate")["plugin_sha256"],
        sha256(&mine).as_str(),
        "the file runs"
    );
    let out = env.run(&["check"]);
    assert!(out.status.code().is_some(), "{}", text(&out));
}

#[test]
fn a_pinned_job_refuses_other_content() {
    let hostile = std::fs::read(guest("opsd-test-hostile")).unwrap();
    let right = sha256(&hostile);
    let wrong = "0".repeat(64);
    let env = Env::new(&format!(
        "[[job]]\nname = \"pinned\"\nplugin = \"test-hostile\"\nschedule = \"@yearly\"\nplugin_sha256 = \"{wrong}\"\n[job.config]\naction = \"ok\"\n\n[[job]]\nname = \"right\"\nplugin = \"test-hostile\"\nschedule = \"@yearly\"\nplugin_sha256 = \"{right}\"\n[job.config]\naction = \"ok\"\n"
    ));
    env.install_guest("opsd-test-hostile");
    let rec = env.run_job("pinned");
    assert_eq!(rec["status"], "failed");
    let err = rec["error"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "{}",
            env.path("plugins/opsd-test-hostile.wasm").display()
        )),
        "names the file: {err}"
    );
    assert!(
        err.contains(&right) && err.contains(&wrong),
        "names both hashes: {err}"
    );
    assert_eq!(env.run_job("right")["status"], "ok");
}

#[test]
fn a_plugin_built_for_contract_0_1_0_still_runs() {
    let env = Env::new(
        r#"
[[job]]
name = "old"
plugin = "contract-0-1-0"
schedule = "@daily"
"#,
    );
    env.install_guest("opsd-test-contract-010");
    let first = env.run_job("old");
    assert_eq!(first["status"], "ok", "{first:#}");
    let second = env.run_job("old");
    assert_eq!(second["status"], "ok", "{second:#}");
    // History reaches it through the 0.1.0 import; it includes the run in
    // progress.
    assert_eq!(
        second["summary"], "history has 2 runs of this job",
        "{second:#}"
    );
    let list = env.json(&["plugins", "list", "--json"]);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "contract-0-1-0")
        .unwrap_or_else(|| panic!("{list:#}"));
    assert_eq!(entry["status"], "ready", "{entry:#}");
}

/// As cron and sshd do, a plugin file is loaded only when it and every
/// directory above it are owned by root or opsd's user and writable by no
/// one else: whoever may write it chooses the code a job's grants run.
#[test]
#[cfg_attr(
    not(opsd_privileged),
    ignore = "needs root (gives a file to another user)"
)]
fn a_plugin_file_others_may_write_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(JOBS);
    let daemon = env.daemon();
    let dest = env.path("plugins/hostile.wasm");
    std::fs::write(&dest, std::fs::read(guest("opsd-test-hostile")).unwrap()).unwrap();
    let ready = |env: &Env| {
        wait_for(Duration::from_secs(10), || {
            entry(env, "hostile.wasm").filter(|e| e["status"] == "ready")
        })
        .unwrap_or_else(|| panic!("not ready: {:#?}", plugins(env)))
    };
    let refused = |env: &Env, reason: &str| {
        wait_for(Duration::from_secs(20), || {
            entry(env, "hostile.wasm").filter(|e| {
                e["status"] == "rejected"
                    && e["error"].as_str().unwrap_or_default().contains(reason)
            })
        })
        .unwrap_or_else(|| panic!("not refused for {reason:?}: {:#?}", plugins(env)));
        let run = env.run_job("quick");
        assert_eq!(run["status"], "failed", "{run:#}");
    };
    ready(&env);
    assert_eq!(env.run_job("quick")["status"], "ok");
    // Owned by nobody.
    std::os::unix::fs::chown(&dest, Some(65534), None).unwrap();
    refused(&env, "is owned by uid 65534, not root or opsd's user");
    std::os::unix::fs::chown(&dest, Some(0), None).unwrap();
    ready(&env);
    // Writable by others.
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o666)).unwrap();
    refused(&env, "may be written by its group and others (mode 666)");
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
    ready(&env);
    // In a directory anyone may write (no file changed).
    let dir = env.path("plugins");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(&env, "`chmod go-w");
    let check = text(&env.run(&["check"]));
    assert!(check.contains("may be written by"), "{check}");
    // Sticky, like /tmp, is no better: anyone may still add a plugin.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    refused(&env, "anyone who can add a file there chooses a plugin");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    ready(&env);
    assert_eq!(env.run_job("quick")["status"], "ok");
    // A configuration others may write is not reloaded either.
    let config = env.path("opsd.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    daemon.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), || {
        daemon
            .log()
            .contains("configuration reload failed")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("reload not refused:\n{}", daemon.log()));
    assert!(
        daemon.log().contains("not reading the configuration"),
        "{}",
        daemon.log()
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    healthy(&env);
    assert!(daemon.stop().success());
}

/// `just build-plugins` names its crates by hand; it once named two of
/// six. Every built-in must be among them.
#[test]
fn just_build_plugins_builds_every_builtin() {
    let justfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../justfile"))
            .expect("justfile");
    let recipe = justfile
        .split("\nbuild-plugins:\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("a build-plugins recipe");
    for b in opsd::builtins::builtins() {
        assert!(
            recipe
                .split_whitespace()
                .any(|w| w == format!("opsd-{}", b.name)),
            "just build-plugins does not build opsd-{}: {recipe}",
            b.name
        );
    }
}

/// `opsd run JOB` refused (exit 2) because the job is broken; its stderr.
fn refused(env: &Env, job: &str) -> String {
    let out = env.run(&["run", job, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains(&format!("job `{job}` is broken and does not run")),
        "{err}"
    );
    err
}

/// A plugin file's name is printed while it compiles: one named to hold
/// terminal control sequences reaches the terminal with them escaped.
#[test]
fn a_plugin_file_named_to_drive_the_terminal_is_printed_escaped() {
    let env = Env::new("");
    let evil = env.path("plugins/evil\u{1b}]0;owned\u{7}\u{1b}[2J.wasm");
    std::fs::copy(crate::util::guest("opsd-test-hostile"), &evil).unwrap();
    let out = env.run(&["plugins", "list"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("opsd: compiling "), "{said}");
    assert!(
        !said.contains('\u{1b}') && !said.contains('\u{7}'),
        "{said:?}"
    );
    assert!(!text(&out).contains('\u{1b}'), "{:?}", text(&out));
}
