//! A small harness, in the spirit of ripgrep's `tests/util.rs`: a temp
//! directory with a config, a command builder for the real `opsd` binary,
//! and a daemon handle that is killed when dropped.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn opsd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_opsd")
}

/// A compiled test guest component, by crate name (built by the
/// `opsd-test-guests` artifacts crate).
pub fn guest(name: &str) -> PathBuf {
    opsd_test_guests::path(name)
}

/// A schedule for jobs that a test runs by hand while a daemon is up: it
/// fires once a year, on the 15th at 12:00 UTC of the month six months
/// from now, so never while a test runs. `@daily` or `@yearly` would fire
/// too if the test happened to run across midnight or New Year.
/// Chosen once per test process, so every test (and every assertion in
/// one) sees the same expression.
pub fn far_off() -> String {
    use chrono::Datelike;
    static FAR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FAR.get_or_init(|| {
        let month = (chrono::Utc::now().month0() + 6) % 12 + 1;
        format!("0 12 15 {month} *")
    })
    .clone()
}

/// One test's world: a temp dir holding `opsd.toml`, `data/` and
/// `plugins/`.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A new world whose config is `data_dir`/`plugin_dir` plus `jobs`.
    pub fn new(jobs: &str) -> Env {
        Env::new_in(&std::env::temp_dir(), jobs)
    }

    /// A world under `parent` rather than the temp directory (a job with
    /// a private /tmp must name nothing there).
    pub fn new_in(parent: &Path, jobs: &str) -> Env {
        std::fs::create_dir_all(parent).expect("parent of the world");
        let dir = tempfile::Builder::new()
            .prefix("opsd-e2e")
            .tempdir_in(parent)
            .expect("tempdir");
        let env = Env { dir };
        std::fs::create_dir_all(env.path("plugins")).expect("plugins dir");
        env.write_config(jobs);
        env
    }

    /// A path inside the world.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Replaces the config's jobs (and whatever tables `jobs` holds). The
    /// HTTP endpoints listen on a free loopback port unless `jobs` says
    /// otherwise, so daemons in parallel tests do not collide.
    pub fn write_config(&self, jobs: &str) {
        let mut text = format!("data_dir = \"state\"\nplugin_dir = \"plugins\"\n\n{jobs}");
        if !jobs.contains("[http]") {
            text.push_str("\n[http]\nlisten = \"127.0.0.1:0\"\n");
        }
        std::fs::write(self.path("opsd.toml"), text).expect("write config");
    }

    /// GET on the control socket: (status code, body).
    pub fn socket_get(&self, path: &str) -> (u16, String) {
        let stream = std::os::unix::net::UnixStream::connect(self.path("state/opsd.sock"))
            .expect("connect socket");
        http_exchange(stream, path)
    }

    /// The address the daemon's HTTP endpoints listen on.
    pub fn http_addr(&self) -> String {
        let (_, body) = self.socket_get("/v1/health");
        let health: serde_json::Value = serde_json::from_str(&body).expect("health JSON");
        health["http"]
            .as_str()
            .expect("http address in health")
            .to_owned()
    }

    /// Copies a test guest into the plugin directory.
    pub fn install_guest(&self, name: &str) {
        let src = guest(name);
        std::fs::copy(&src, self.path(&format!("plugins/{name}.wasm")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }

    /// `opsd --config <world>/opsd.toml ARGS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(opsd_bin());
        c.arg("--config").arg(self.path("opsd.toml")).args(args);
        c.env_remove("OPSD_CONFIG").env_remove("RUST_LOG");
        c
    }

    /// Runs opsd and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn opsd")
    }

    /// Runs opsd, expects success, parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "opsd {args:?} failed: {}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("opsd {args:?}: not JSON ({e}): {}", text(&out)))
    }

    /// `opsd run JOB --json`, returning the record whatever the status.
    pub fn run_job(&self, job: &str) -> Value {
        let out = self.run(&["run", job, "--json"]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("opsd run {job}: not JSON ({e}): {}", text(&out)))
    }

    /// Starts `opsd daemon` and waits until its control socket answers.
    pub fn daemon(&self) -> Daemon {
        self.daemon_with_env(&[])
    }

    /// Like [`Env::daemon`], with extra environment variables.
    pub fn daemon_with_env(&self, vars: &[(&str, &str)]) -> Daemon {
        let log = std::fs::File::create(self.path("daemon.log")).expect("daemon log");
        let mut cmd = self.cmd(&["daemon"]);
        cmd.stdout(Stdio::null()).stderr(log);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn daemon");
        let d = Daemon {
            child: Some(child),
            log: self.path("daemon.log"),
        };
        let socket = self.path("state/opsd.sock");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "daemon did not open {} in 30s; log:\n{}",
            socket.display(),
            d.log()
        );
    }
}

/// A running daemon; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (SIGHUP, ...).
    pub fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child by pid.
            unsafe {
                libc::kill(child.id() as i32, sig);
            }
        }
    }

    /// Kills the daemon with SIGKILL, as a crash or the OOM killer would.
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL daemon");
            child.wait().expect("reap daemon");
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait daemon") {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "daemon ignored SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A Python interpreter with these PyPI packages, in a virtualenv under
/// the target directory (created on first use, so `cargo test` works on a
/// fresh machine with python3 and access to PyPI).
pub fn python_with(packages: &[&str]) -> PathBuf {
    use std::sync::Mutex;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "python3 -m venv {} failed; install python3 with venv",
            venv.display()
        );
    }
    let stamp = venv.join(format!(
        "installed-{}",
        packages.join("+").replace(['=', '<', '>'], "_")
    ));
    if !stamp.exists() {
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages)
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "pip install {packages:?} failed:\n{}",
            text(&out)
        );
        std::fs::write(&stamp, "").expect("write venv stamp");
    }
    python
}

/// One HTTP/1.1 GET with `Connection: close`: (status code, body).
pub fn http_exchange<S: std::io::Read + std::io::Write>(
    mut stream: S,
    path: &str,
) -> (u16, String) {
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: opsd\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("send request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Bodies may come chunked.
    let body = if answer
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// GET over TCP: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let stream = std::net::TcpStream::connect(addr).expect("connect http");
    http_exchange(stream, path)
}

/// A `node_modules` directory holding these npm packages, under the target
/// directory (installed on first use from the npm registry).
pub fn node_modules_with(packages: &[&str]) -> PathBuf {
    use std::sync::Mutex;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-tools");
    std::fs::create_dir_all(&prefix).expect("create node-tools dir");
    let stamp = prefix.join(format!(
        "installed-{}",
        packages.join("+").replace(['/', '@'], "_")
    ));
    if !stamp.exists() {
        let out = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&prefix)
            .args(packages)
            .output()
            .expect("run npm (install Node.js 18 or later with npm)");
        assert!(
            out.status.success(),
            "npm install {packages:?} failed:\n{}",
            text(&out)
        );
        std::fs::write(&stamp, "").expect("write node-tools stamp");
    }
    prefix.join("node_modules")
}

/// Copies a directory tree, following symbolic links (so a project that
/// links to `wit/plugin.wit` is copied whole).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name == "__pycache__" || name == "target" {
            continue;
        }
        let src = entry.path();
        if std::fs::metadata(&src).unwrap().is_dir() {
            copy_tree(&src, &to.join(&name));
        } else {
            std::fs::copy(&src, to.join(&name)).unwrap();
        }
    }
}

/// A metric of a run record (`opsd run --json`), by name.
pub fn metric(rec: &Value, name: &str) -> f64 {
    rec["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["value"].as_f64())
        .unwrap_or_else(|| panic!("no metric {name}: {rec:#}"))
}

/// A small tmpfs mounted at a directory, unmounted on drop: a full disk
/// for tests.
pub struct SmallDisk(PathBuf);

/// Runs a privileged command: directly as root, else through `sudo -n`.
fn privileged(args: &[&std::ffi::OsStr]) -> std::io::Result<std::process::Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Command::new(args[0]).args(&args[1..]).output()
    } else {
        Command::new("sudo").arg("-n").args(args).output()
    }
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`1m`, `256k`) at `dir`. Tests that use
    /// it are built as ignored where the build could not mount one (see
    /// `opsd_privileged` in host/build.rs); where they run, a failure to
    /// mount fails the test rather than passing it unrun.
    pub fn mount(dir: PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&dir).expect("create the mount point");
        let options = format!("size={size}");
        let args = ["mount", "-t", "tmpfs", "-o", &options, "tmpfs"].map(std::ffi::OsStr::new);
        let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
        all.push(dir.as_os_str());
        match privileged(&all) {
            Ok(out) if out.status.success() => SmallDisk(dir),
            Ok(out) => panic!("cannot mount a {size} tmpfs: {}", text(&out)),
            Err(e) => panic!("cannot mount a {size} tmpfs: {e}"),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = privileged(&[std::ffi::OsStr::new("umount"), self.0.as_os_str()]);
    }
}
