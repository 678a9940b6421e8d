//! Plugins in other languages: the Python (componentize-py) and JavaScript
//! (ComponentizeJS) examples and the Rust one are built from source with
//! the registries' tools, dropped into a running daemon's plugin directory
//! and run through opsd with real grants; `opsd plugin new` projects in
//! all three languages pass their own tests, build and run.

use crate::util::{Env, copy_tree, metric, node_modules_with, python_with, text, wait_for};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Pinned so a build today is the build the guide measured.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
pub const NODE_TOOLS: &[&str] = &["@bytecodealliance/componentize-js@0.23.0", "rolldown@1.3.2"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(out.status.success(), "{what} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// componentize-py from PyPI.
fn componentize_py() -> PathBuf {
    python_with(&[COMPONENTIZE_PY])
        .parent()
        .unwrap()
        .join("componentize-py")
}

/// The examples as CI builds them: each one's `build.sh` (its unit tests,
/// then the component), with componentize-py from PyPI and the npm tools
/// on hand. Returns (http-check, cache-clean, disk-guard) components.
fn build_examples(work: &Path) -> [PathBuf; 3] {
    let src = work.join("examples/plugins");
    copy_tree(&repo().join("examples/plugins"), &src);
    std::os::unix::fs::symlink(
        node_modules_with(NODE_TOOLS),
        src.join("cache-clean/node_modules"),
    )
    .unwrap();
    let venv_bin = componentize_py().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    ["http-check", "cache-clean", "disk-guard"].map(|name| {
        let out = work.join(format!("{name}.wasm"));
        // disk-guard builds in the repository's workspace, the others in
        // the copy.
        let script = if name == "disk-guard" {
            repo().join("examples/plugins/disk-guard/build.sh")
        } else {
            src.join(name).join("build.sh")
        };
        run_ok(
            Command::new("sh").arg(script).arg(&out).env("PATH", &path),
            &format!("examples/plugins/{name}/build.sh"),
        );
        out
    })
}

/// A tiny HTTP server: `/health` answers 200 at once, `/slow` after
/// 400 ms, anything else 503. Returns its origin.
fn health_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/health" => ("200 OK", r#"{"status":"ok"}"#),
                    "/slow" => {
                        std::thread::sleep(Duration::from_millis(400));
                        ("200 OK", r#"{"status":"ok"}"#)
                    }
                    _ => ("503 Service Unavailable", r#"{"status":"down"}"#),
                };
                let mut s = &stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    format!("http://{addr}")
}

/// Sets a file's mtime to `days` ago.
fn age(path: &Path, days: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn jobs(origin: &str) -> String {
    let other = "http://127.0.0.1:9";
    let far = crate::util::far_off();
    format!(
        r#"
[[job]]
name = "health"
plugin = "py-http-check"
schedule = "{far}"
[job.grants]
net = ["{origin}"]
[job.config]
url = "{origin}/health"
expect_body = "ok"

[[job]]
name = "health-slow"
plugin = "py-http-check"
schedule = "{far}"
[job.grants]
net = ["{origin}"]
[job.config]
url = "{origin}/slow"
warn_ms = 100

[[job]]
name = "health-down"
plugin = "py-http-check"
schedule = "{far}"
[job.grants]
net = ["{origin}"]
[job.config]
url = "{origin}/down"

[[job]]
name = "health-elsewhere"
plugin = "py-http-check"
schedule = "{far}"
[job.grants]
net = ["{origin}"]
[job.config]
url = "{other}/health"

[[job]]
name = "clean-cache"
plugin = "cache-clean"
schedule = "{far}"
[job.grants]
fs = [{{ host = "cache", guest = "/cache", access = "rw", create = true }}]
[job.config]
dir = "/cache"
max_age = "7d"
max_bytes = "3k"

[[job]]
name = "disks-fine"
plugin = "disk-guard"
schedule = "{far}"
[job.config]
warn_percent = 100
fail_percent = 100

[[job]]
name = "disks-full"
plugin = "disk-guard"
schedule = "{far}"
[job.grants]
fs = [{{ host = "logs", guest = "/var/log", access = "rw", create = true }}]
[job.config]
warn_percent = 0.001
fail_percent = 100
clean = {{ dirs = ["/var/log"], older_than_days = 7 }}
"#
    )
}

#[test]
fn python_javascript_and_rust_examples_run_in_a_daemon() {
    let origin = health_server();
    let env = Env::new(&jobs(&origin));
    let [py, js, rust] = build_examples(&env.path("build"));

    // The cache: two old files, three new ones (1 KiB each), one nested.
    let cache = env.path("cache");
    std::fs::create_dir_all(cache.join("thumbs")).unwrap();
    for name in ["old1", "thumbs/old2", "new1", "new2", "new3", "thumbs/new4"] {
        std::fs::write(cache.join(name), vec![b'x'; 1024]).unwrap();
    }
    age(&cache.join("old1"), 30);
    age(&cache.join("thumbs/old2"), 9);
    age(&cache.join("new1"), 3);
    age(&cache.join("new2"), 2);
    // Rotated logs: two old, one recent; the live log stays whatever its age.
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for name in [
        "app.log",
        "app.log.1",
        "app.log.2.gz",
        "app.log-20260101",
        "notes.txt",
    ] {
        std::fs::write(logs.join(name), b"line\n").unwrap();
    }
    for name in ["app.log", "app.log.2.gz", "app.log-20260101", "notes.txt"] {
        age(&logs.join(name), 30);
    }

    let daemon = env.daemon();
    for (from, to) in [
        (py.clone(), "http-check.wasm"),
        (js.clone(), "cache-clean.wasm"),
        (rust.clone(), "disk-guard.wasm"),
    ] {
        std::fs::copy(&from, env.path(&format!("plugins/{to}"))).unwrap();
    }
    let ready = wait_for(Duration::from_secs(300), || {
        let list = env.json(&["plugins", "list", "--json"]);
        let names = ["py-http-check", "cache-clean", "disk-guard"];
        names
            .iter()
            .all(|n| {
                list.as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == *n && p["status"] == "ready")
            })
            .then_some(list)
    });
    assert!(ready.is_some(), "plugins not ready: {}", daemon.log());

    // The guide's jobs for these plugins pass `opsd check` against them.
    let guide = env.path("guide");
    std::fs::create_dir_all(&guide).unwrap();
    let jobs_toml = std::fs::read_to_string(repo().join("examples/plugins/jobs.toml"))
        .unwrap()
        .replace(
            "../../target/opsd-examples/plugins",
            &env.path("plugins").display().to_string(),
        )
        .replace("../../target/opsd-examples", &guide.display().to_string());
    std::fs::write(guide.join("jobs.toml"), jobs_toml).unwrap();
    let out = Command::new(crate::util::opsd_bin())
        .arg("--config")
        .arg(guide.join("jobs.toml"))
        .arg("check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "examples/plugins/jobs.toml: {}",
        text(&out)
    );
    assert!(text(&out).contains("3 jobs, 0 errors"), "{}", text(&out));

    // http-check: up, slow, down, and an origin the job does not grant.
    let rec = env.run_job("health");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(metric(&rec, "status_code"), 200.0);
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains("/health answered 200"),
        "{rec:#}"
    );
    let rec = env.run_job("health-slow");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    // The daemon loaded the file once; this run found it in memory.
    assert_eq!(rec["plugin_load"]["source"], "memory", "{rec:#}");
    assert!(metric(&rec, "latency_ms") >= 400.0, "{rec:#}");
    let rec = env.run_job("health-down");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["summary"].as_str().unwrap().ends_with("; expected 200"),
        "{rec:#}"
    );
    let rec = env.run_job("health-elsewhere");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains("not in the job's net grant") && error.contains("127.0.0.1:9"),
        "{rec:#}"
    );

    // cache-clean: a dry run changes nothing, then the old files go, then
    // the oldest of the rest until 3 KiB remain.
    let out = env.run(&["run", "clean-cache", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        dry["summary"]
            .as_str()
            .unwrap()
            .starts_with("would free 3.0 KiB in 3 files"),
        "{dry:#}"
    );
    assert!(cache.join("old1").exists());
    let rec = env.run_job("clean-cache");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(metric(&rec, "bytes_freed"), 3072.0, "{rec:#}");
    assert_eq!(metric(&rec, "files_removed"), 3.0);
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains("removed /cache/old1 (1.0 KiB, older than max_age)"),
        "{details}"
    );
    assert!(
        details.contains("removed /cache/new1 (1.0 KiB, over max_bytes)"),
        "{details}"
    );
    for gone in ["old1", "thumbs/old2", "new1"] {
        assert!(!cache.join(gone).exists(), "{gone}");
    }
    for kept in ["new2", "new3", "thumbs/new4"] {
        assert!(cache.join(kept).exists(), "{kept}");
    }

    // disk-guard: under a 100 % threshold all is well and nothing is
    // touched; over a tiny one it cleans old rotated logs, never live ones.
    let rec = env.run_job("disks-fine");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(metric(&rec, "max_used_percent") > 0.0, "{rec:#}");
    let rec = env.run_job("disks-full");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert_eq!(metric(&rec, "logs_removed"), 2.0, "{rec:#}");
    assert!(!logs.join("app.log.2.gz").exists() && !logs.join("app.log-20260101").exists());
    for kept in ["app.log", "app.log.1", "notes.txt"] {
        assert!(logs.join(kept).exists(), "{kept}");
    }

    // Every run went through the daemon, and it is still healthy.
    let history = env.json(&["history", "--json", "--limit", "50"]);
    let runs_of = |job: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["job"] == job)
            .count()
    };
    assert_eq!(runs_of("clean-cache"), 2, "the dry run is recorded too");
    assert_eq!(runs_of("disks-full"), 1);
    assert!(daemon.stop().success());
}

/// `opsd plugin test` then `opsd plugin build` in a project; returns
/// the component `build` names.
fn test_and_build(project: &Path, name: &str, lang: &str) -> PathBuf {
    let out = run_ok(
        Command::new(crate::util::opsd_bin())
            .current_dir(project)
            .args(["plugin", "test"]),
        &format!("opsd plugin test ({lang})"),
    );
    assert!(
        out.contains(&format!("{name} (")) && out.contains("tests passed"),
        "{out}"
    );
    let out = run_ok(
        Command::new(crate::util::opsd_bin())
            .current_dir(project)
            .args(["plugin", "build"]),
        &format!("opsd plugin build ({lang})"),
    );
    assert!(
        out.contains(&format!("accepted as plugin {name} 0.1.0 (opsd:plugin@")),
        "{out}"
    );
    let path = out
        .lines()
        .find_map(|l| l.strip_prefix("  cp "))
        .and_then(|l| l.strip_suffix(" DATA_DIR/plugins/"))
        .unwrap_or_else(|| panic!("no install line: {out}"));
    project.join(path)
}

#[test]
fn plugin_new_projects_test_build_and_run_with_two_commands() {
    let mut jobs = String::new();
    for lang in ["rust", "python", "js"] {
        for (job, dir) in [
            (format!("size-{lang}"), "/data"),
            (format!("size-{lang}-denied"), "/etc"),
        ] {
            jobs.push_str(&format!(
                "[[job]]\nname = \"{job}\"\nplugin = \"size-{lang}\"\nschedule = \"@yearly\"\n[job.grants]\nfs = [{{ host = \"data\", guest = \"/data\", access = \"ro\" }}]\n[job.config]\ndir = \"{dir}\"\nmax_bytes = 100\n\n"
            ));
        }
    }
    let env = Env::new(&jobs);
    std::fs::create_dir_all(env.path("data")).unwrap();
    std::fs::write(env.path("data/big.bin"), vec![0u8; 150]).unwrap();

    // Bad names and existing directories are refused, naming the problem.
    let out = env.run(&["plugin", "new", "Size", "--lang", "rust"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`Size` is not a usable plugin name"),
        "{}",
        text(&out)
    );
    // A directory that is no project says what would make one.
    let out = env.run(&["plugin", "build", env.path("data").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not a plugin project opsd knows"),
        "{}",
        text(&out)
    );

    let projects = env.path("projects");
    std::fs::create_dir_all(&projects).unwrap();
    for lang in ["rust", "python", "js"] {
        let name = format!("size-{lang}");
        let project = projects.join(&name);
        let out = Command::new(crate::util::opsd_bin())
            .current_dir(&projects)
            .args(["plugin", "new", &name, "--lang", lang])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("created {name}"))
                && text(&out).contains("opsd plugin test\n  opsd plugin build"),
            "{}",
            text(&out)
        );
        let again = Command::new(crate::util::opsd_bin())
            .current_dir(&projects)
            .args(["plugin", "new", &name, "--lang", lang])
            .output()
            .unwrap();
        assert!(text(&again).contains("already exists"), "{}", text(&again));

        // Python's .venv and componentize-py are installed by `plugin
        // build` itself; the npm tools come from the tests' shared
        // node_modules, which `plugin build` finds in the project.
        if lang == "js" {
            std::os::unix::fs::symlink(node_modules_with(NODE_TOOLS), project.join("node_modules"))
                .unwrap();
        }
        let wasm = test_and_build(&project, &name, lang);
        std::fs::copy(&wasm, env.path(&format!("plugins/{name}.wasm"))).unwrap();
        // The first command to meet the file compiles it, and says so
        // while it does.
        let check = env.run(&["check"]);
        let said = String::from_utf8_lossy(&check.stderr);
        assert!(
            said.contains(&format!(
                "opsd: compiling {}",
                env.path(&format!("plugins/{name}.wasm")).display()
            )) && said.contains(&format!("opsd: compiled plugin {name} in ")),
            "{lang}: {}",
            text(&check)
        );
        let rec = env.run_job(&name);
        assert_eq!(rec["status"], "warning", "{lang}: {rec:#}");
        assert_eq!(
            rec["summary"], "/data holds 1 files, 150 bytes (budget 100): over budget",
            "{lang}"
        );
        assert_eq!(rec["plugin"], name.as_str());

        // A read outside the grant fails the run, naming the grant.
        let rec = env.run_job(&format!("{name}-denied"));
        assert_eq!(rec["status"], "failed", "{lang}: {rec:#}");
        let err = rec["error"].as_str().unwrap_or_default();
        assert!(err.contains("/etc"), "{lang}: {rec:#}");
    }
}

/// A Python plugin that calls every kind of opsd_sdk helper.
const SDK_PY_APP: &str = r#"
from dataclasses import dataclass

import wit_world
from wit_world.imports.types import Capabilities, Description, FsRequest

import opsd_sdk


@dataclass
class Config:
    dir: str
    max_bytes: int


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return Description(
            name="sdk-py",
            version="0.1.0",
            description="exercises opsd_sdk",
            capabilities=Capabilities(fs=[FsRequest("/data", True, "scratch")], exec=["sh"], net=False),
            config_schema="{}",
            suggested_schedule=None,
        )

    def run(self, ctx):
        cfg = opsd_sdk.config(ctx, Config)
        report = opsd_sdk.Report()
        report.note("stdout=" + opsd_sdk.run("sh", "-c", "echo hello").stdout.decode().strip())
        try:
            opsd_sdk.run("sh", "-c", "echo oops >&2; exit 3")
        except opsd_sdk.ProcessError as e:
            report.warn(str(e))
        path = cfg.dir + "/py.txt"
        opsd_sdk.write_text(path, "written by python", mode=0o640)
        report.note("read=" + opsd_sdk.read_text(path))
        report.note("mode=" + oct(opsd_sdk.stat(path).mode & 0o777))
        try:
            opsd_sdk.stat(cfg.dir + "/missing.txt")
        except opsd_sdk.FilesError as e:
            report.note("hosterr=" + str(e))
        report.metric("max_bytes", cfg.max_bytes)
        opsd_sdk.progress(1, 1, "done")
        opsd_sdk.info("sdk-py done")
        return report.outcome("sdk exercised")
"#;

/// A JavaScript plugin that calls every kind of opsd-sdk.js helper.
const SDK_JS_PLUGIN: &str = r#"
import * as opsd from './opsd-sdk.js';
import { snapshot } from 'opsd:plugin/system@0.1.3';

export function describe() {
  return {
    name: 'sdk-js',
    version: '0.1.0',
    description: 'exercises opsd-sdk.js',
    capabilities: { fs: [{ guest: '/data', write: true, reason: 'scratch' }], exec: ['sh'], net: false },
    configSchema: '{}',
    suggestedSchedule: undefined,
  };
}

export function run(ctx) {
  const cfg = opsd.config(ctx, { dir: { type: 'string' }, max_bytes: { type: 'integer' } });
  const report = new opsd.Report();
  report.note(`stdout=${opsd.run('sh', ['-c', 'echo hello']).stdoutText.trim()}`);
  try {
    opsd.run('sh', ['-c', 'echo oops >&2; exit 3']);
  } catch (e) {
    report.warn(`${e instanceof Error}:${e.message}`);
  }
  const path = `${cfg.dir}/js.txt`;
  opsd.fs.writeText(path, 'written by js');
  report.note(`read=${opsd.fs.readText(path)}`);
  report.note(`list=${opsd.fs.list(cfg.dir).map((e) => e.name).sort().join(',')}`);
  const st = opsd.fs.stat(path);
  report.note(`size=${typeof st.size}:${st.size}`);
  report.note(`fsTotal=${typeof opsd.files.stat(path).fsTotalBytes}`);
  const snap = opsd.numbers(snapshot());
  report.note(`memory=${typeof snap.memoryTotalBytes}:${snap.memoryTotalBytes > 0}`);
  try {
    opsd.fs.readText(`${cfg.dir}/missing.txt`);
  } catch (e) {
    report.note(`missing=${e instanceof Error}:${e.message}`);
  }
  try {
    opsd.files.stat(`${cfg.dir}/missing.txt`);
  } catch (e) {
    report.note(`hosterr=${e instanceof Error}:${e.message}`);
  }
  report.metric('max_bytes', BigInt(cfg.max_bytes));
  opsd.progress(1, 1, 'done');
  return report.outcome('sdk exercised');
}
"#;

/// The Python and JavaScript SDKs' helpers inside real components in a
/// daemon: programs (a failure carries its stderr), files through WASI
/// and the host, findings, and in JavaScript 64-bit values as Numbers and
/// host errors as ordinary Errors.
#[test]
fn the_python_and_js_sdks_work_inside_components() {
    let mut jobs = String::new();
    for name in ["sdk-py", "sdk-js"] {
        jobs.push_str(&format!(
            "[[job]]\nname = \"{name}\"\nplugin = \"{name}\"\nschedule = \"@yearly\"\n[job.grants]\nexec = [\"sh\"]\nfs = [{{ host = \"data\", guest = \"/data\", access = \"rw\" }}]\n[job.config]\ndir = \"/data\"\nmax_bytes = 7\n\n"
        ));
    }
    let env = Env::new(&jobs);
    std::fs::create_dir_all(env.path("data")).unwrap();
    let projects = env.path("projects");
    std::fs::create_dir_all(&projects).unwrap();
    for (name, lang, file, source) in [
        ("sdk-py", "python", "app.py", SDK_PY_APP),
        ("sdk-js", "js", "plugin.js", SDK_JS_PLUGIN),
    ] {
        run_ok(
            Command::new(crate::util::opsd_bin())
                .current_dir(&projects)
                .args(["plugin", "new", name, "--lang", lang]),
            "opsd plugin new",
        );
        let project = projects.join(name);
        std::fs::write(project.join(file), source).unwrap();
        if lang == "js" {
            std::os::unix::fs::symlink(node_modules_with(NODE_TOOLS), project.join("node_modules"))
                .unwrap();
        }
        let wasm = test_and_build(&project, name, lang);
        std::fs::copy(&wasm, env.path(&format!("plugins/{name}.wasm"))).unwrap();
    }

    let rec = env.run_job("sdk-py");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert_eq!(rec["summary"], "sdk exercised");
    assert_eq!(metric(&rec, "max_bytes"), 7.0);
    let details = rec["details"].as_str().unwrap();
    for want in [
        "stdout=hello",
        "warning: sh failed (exit code 3): oops",
        "read=written by python",
        "mode=0o640",
        "hosterr=/data/missing.txt: ",
    ] {
        assert!(details.contains(want), "{want}: {details}");
    }
    let written = env.path("data/py.txt");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "written by python"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
        0o640
    );

    let rec = env.run_job("sdk-js");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert_eq!(metric(&rec, "max_bytes"), 7.0);
    let details = rec["details"].as_str().unwrap();
    for want in [
        "stdout=hello",
        "warning: true:sh failed (exit code 3): oops",
        "read=written by js",
        "list=js.txt,py.txt",
        "size=number:13",
        "fsTotal=number",
        "memory=number:true",
        "missing=true:/data/missing.txt: no such file or directory",
        "hosterr=true:/data/missing.txt: ",
    ] {
        assert!(details.contains(want), "{want}: {details}");
    }
    assert_eq!(
        std::fs::read_to_string(env.path("data/js.txt")).unwrap(),
        "written by js"
    );
}

/// Whether `block` appears in `file` as consecutive lines, all shifted by
/// the same indentation.
fn quoted(file: &str, block: &[&str]) -> bool {
    let lines: Vec<&str> = file.lines().collect();
    let first = block[0];
    let first_indent = first.len() - first.trim_start().len();
    (0..lines.len()).any(|s| {
        let line = lines[s];
        let indent = line.len() - line.trim_start().len();
        if indent < first_indent || s + block.len() > lines.len() {
            return false;
        }
        let prefix = &line[..indent - first_indent];
        block.iter().enumerate().all(|(k, b)| {
            let l = lines[s + k];
            if b.trim().is_empty() {
                l.trim().is_empty()
            } else {
                l.strip_prefix(prefix) == Some(*b)
            }
        })
    })
}

/// Checks that every code block of `doc` (a path in the repository) is
/// quoted from the file its `<!-- from: PATH -->` line names; returns how
/// many were.
fn check_quotes(doc: &str) -> usize {
    let guide = std::fs::read_to_string(repo().join(doc)).unwrap();
    let lines: Vec<&str> = guide.lines().collect();
    let mut i = 0;
    let mut checked = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let end = (i + 1..lines.len())
            .find(|&k| lines[k] == "```")
            .unwrap_or_else(|| panic!("{doc}:{}: unclosed block", i + 1));
        let block = &lines[i + 1..end];
        let source = lines[i.saturating_sub(1)]
            .strip_prefix("<!-- from: ")
            .and_then(|l| l.strip_suffix(" -->"));
        match source {
            Some(path) => {
                let file = std::fs::read_to_string(repo().join(path))
                    .unwrap_or_else(|e| panic!("{doc}:{}: {path}: {e}", i + 1));
                assert!(
                    quoted(&file, block),
                    "{doc}:{}: this block is not in {path} as written:\n{}",
                    i + 1,
                    block.join("\n")
                );
                checked += 1;
            }
            // Messages opsd prints are text; everything else is code.
            None => assert_eq!(
                lang,
                "text",
                "{doc}:{}: a code block needs a `<!-- from: PATH -->` line naming the file it quotes",
                i + 1
            ),
        }
        i = end + 1;
    }
    assert!(!guide.contains("PLACEHOLDER"), "{doc}");
    checked
}

#[test]
fn the_plugin_guide_quotes_only_files_ci_builds() {
    let checked = check_quotes("docs/plugin-guide.md");
    assert!(checked >= 10, "only {checked} quoted blocks");
    let checked = check_quotes("docs/host-interfaces.md");
    assert!(checked >= 10, "only {checked} quoted blocks");
}

/// One named shape or function of a WIT interface.
#[derive(Debug)]
struct WitItem {
    /// `record`, `enum`, `variant` or `func`.
    kind: &'static str,
    name: String,
    /// A record's fields or an enum's or variant's cases (without payloads).
    members: Vec<String>,
}

/// `wit/plugin.wit`'s interfaces: (name, items), and the package version.
/// A small parser for the subset the contract uses: comments dropped,
/// blocks matched by braces, members split at top-level commas.
fn parse_wit(wit: &str) -> (String, Vec<(String, Vec<WitItem>)>) {
    let text: String = wit
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let version = text
        .split("package opsd:plugin@")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("package line")
        .to_owned();
    // (keyword, name, body) of each `KEYWORD NAME { ... }` in `s`.
    fn blocks<'a>(s: &'a str, keyword: &str) -> Vec<(String, &'a str)> {
        let mut out = Vec::new();
        let pat = format!("{keyword} ");
        let mut from = 0;
        while let Some(at) = s[from..].find(&pat) {
            let start = from + at;
            from = start + pat.len();
            let before_ok = start == 0 || s[..start].ends_with(char::is_whitespace);
            let Some(open) = s[from..].find('{') else {
                break;
            };
            let name = s[from..from + open].trim();
            if !before_ok
                || name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                continue;
            }
            let body_start = from + open + 1;
            let mut depth = 1;
            let mut end = body_start;
            for (k, c) in s[body_start..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = body_start + k;
                    break;
                }
            }
            out.push((name.to_owned(), &s[body_start..end]));
            from = end;
        }
        out
    }
    fn members(body: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut depth = 0i32;
        let mut cur = String::new();
        for c in body.chars() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => depth -= 1,
                _ => {}
            }
            if c == ',' && depth == 0 {
                out.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        out.push(cur);
        out.iter()
            .map(|m| m.split([':', '(']).next().unwrap_or("").trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect()
    }
    let interfaces = blocks(&text, "interface")
        .into_iter()
        .map(|(name, body)| {
            let mut items = Vec::new();
            for kind in ["record", "enum", "variant"] {
                for (n, b) in blocks(body, kind) {
                    items.push(WitItem {
                        kind,
                        name: n,
                        members: members(b),
                    });
                }
            }
            for line in body.lines() {
                if let Some((n, rest)) = line.trim().split_once(':')
                    && rest.trim_start().starts_with("func(")
                {
                    items.push(WitItem {
                        kind: "func",
                        name: n.trim().to_owned(),
                        members: vec![],
                    });
                }
            }
            (name, items)
        })
        .collect();
    (version, interfaces)
}

fn snake(n: &str) -> String {
    n.replace('-', "_")
}

fn camel(n: &str) -> String {
    let mut out = String::new();
    for (i, part) in n.split('-').enumerate() {
        let mut c = part.chars();
        if i > 0
            && let Some(f) = c.next()
        {
            out.extend(f.to_uppercase());
        }
        out.push_str(c.as_str());
    }
    out
}

/// The text of `doc` from the heading line `heading` to the next heading
/// of the same or a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.split(' ').next().unwrap_or("").len();
    let start = doc.lines().position(|l| l == heading)?;
    let lines: Vec<&str> = doc.lines().collect();
    let end = (start + 1..lines.len())
        .find(|&k| {
            let h = lines[k].split(' ').next().unwrap_or("");
            !h.is_empty() && h.chars().all(|c| c == '#') && h.len() <= level
        })
        .unwrap_or(lines.len());
    let from: usize = lines[..start].iter().map(|l| l.len() + 1).sum();
    let to: usize = lines[..end].iter().map(|l| l.len() + 1).sum();
    Some(&doc[from..to.min(doc.len())])
}

/// docs/host-interfaces.md names every function, record field and case of
/// `wit/plugin.wit` in its WIT, Rust/Python and JavaScript spellings, and
/// nothing the WIT does not have: a change to the contract fails here
/// until the reference follows it.
#[test]
fn the_host_interface_reference_follows_the_wit() {
    let wit = std::fs::read_to_string(repo().join("wit/plugin.wit")).unwrap();
    let doc = std::fs::read_to_string(repo().join("docs/host-interfaces.md")).unwrap();
    let (version, interfaces) = parse_wit(&wit);
    assert!(interfaces.len() >= 6, "{interfaces:?}");
    let mut problems = Vec::new();
    let mut seen_items = 0;
    for (iface, items) in &interfaces {
        let heading = format!("## `opsd:plugin/{iface}@{version}`");
        let Some(sec) = section(&doc, &heading) else {
            problems.push(format!("no section `{heading}`"));
            continue;
        };
        for item in items {
            seen_items += 1;
            if item.kind == "func" {
                let row = format!("| `{}(", item.name);
                let Some(line) = sec.lines().find(|l| l.starts_with(&row)) else {
                    problems.push(format!("{iface}: no row for function `{}`", item.name));
                    continue;
                };
                for form in [snake(&item.name), camel(&item.name)] {
                    if !line.contains(&format!("{form}(")) {
                        problems.push(format!(
                            "{iface}.{}: its row never shows `{form}(`",
                            item.name
                        ));
                    }
                }
                continue;
            }
            let sub_heading = format!("### {} `{}`", item.kind, item.name);
            let Some(sub) = section(sec, &sub_heading) else {
                problems.push(format!("{iface}: no `{sub_heading}`"));
                continue;
            };
            for m in &item.members {
                let row = if item.kind == "record" {
                    format!("| `{m}` | `{}` | `{}` |", snake(m), camel(m))
                } else {
                    format!("| `{m}")
                };
                if !sub.lines().any(|l| l.starts_with(&row)) {
                    problems.push(format!("{iface}.{}: no row `{row}`", item.name));
                }
            }
            // Rows for members the WIT no longer has.
            for line in sub.lines().filter(|l| l.starts_with("| `")) {
                let name = line[3..].split(['`', '(']).next().unwrap_or("");
                if !item.members.iter().any(|m| m == name) {
                    problems.push(format!(
                        "{iface}.{}: row `{name}` is not in the WIT",
                        item.name
                    ));
                }
            }
        }
        // Sub-sections and function rows the WIT no longer has.
        for line in sec.lines() {
            if let Some(rest) = line.strip_prefix("### ") {
                let name = rest.split('`').nth(1).unwrap_or("");
                if !items
                    .iter()
                    .any(|i| i.name == name && rest.starts_with(i.kind))
                {
                    problems.push(format!("{iface}: `{line}` is not in the WIT"));
                }
            }
        }
        if let Some(table) = sec.split("| WIT | Rust |").nth(1) {
            for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
                let name = line[3..].split('(').next().unwrap_or("");
                if !items.iter().any(|i| i.kind == "func" && i.name == name) {
                    problems.push(format!("{iface}: function `{name}` is not in the WIT"));
                }
            }
        }
    }
    for line in doc.lines().filter(|l| l.starts_with("## `opsd:plugin/")) {
        if !interfaces
            .iter()
            .any(|(n, _)| line == format!("## `opsd:plugin/{n}@{version}`"))
        {
            problems.push(format!("`{line}` is no interface of opsd:plugin@{version}"));
        }
    }
    assert!(
        seen_items >= 30,
        "parsed only {seen_items} items: {interfaces:?}"
    );
    assert!(
        problems.is_empty(),
        "docs/host-interfaces.md does not follow wit/plugin.wit:\n{}",
        problems.join("\n")
    );
}
