//! The `service` plugin through a live daemon against a real service: an
//! HTTP server process kept by a small supervisor this test runs, which
//! restarts it when asked on its control socket (as pm2 or supervisord
//! are asked on theirs). The plugin asks through a granted `curl` and
//! waits for the real health URL; a service that comes back broken, a
//! health URL outside the grant, one that never answers, and systemctl
//! on this machine (no systemd as PID 1) fail the run saying why. The
//! runbook's "memory > 85 % -> restart service" row runs by itself.

use crate::util::{Env, metric, text};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The service: answers /health with its pid and generation after a
/// second of starting up; 500 when started broken.
const SERVER: &str = r#"
import http.server, json, os, sys, time
port, gen, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
time.sleep(1.0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = mode != "broken"
        body = json.dumps({"status": "ok" if ok else "down", "pid": os.getpid(), "generation": gen}).encode()
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer.allow_reuse_address = True
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A supervisor: keeps one server process, restarts it on
/// `POST /restart` on its Unix control socket.
pub(crate) struct Supervisor {
    pub(crate) port: u16,
    pub(crate) socket: PathBuf,
    generation: Arc<AtomicU32>,
    broken: Arc<AtomicBool>,
    child: Arc<Mutex<Child>>,
}

fn spawn_server(port: u16, generation: u32, broken: bool) -> Child {
    Command::new("python3")
        .args(["-c", SERVER, &port.to_string(), &generation.to_string()])
        .arg(if broken { "broken" } else { "ok" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the service (python3)")
}

impl Supervisor {
    pub(crate) fn start(dir: &Path) -> Supervisor {
        let port = free_port();
        let socket = dir.join("ctl.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let generation = Arc::new(AtomicU32::new(1));
        let broken = Arc::new(AtomicBool::new(false));
        let child = Arc::new(Mutex::new(spawn_server(port, 1, false)));
        let (g, b, c) = (generation.clone(), broken.clone(), child.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let status = if request.starts_with("POST /restart ") {
                    // Stop, then start: as pm2 restart does.
                    let mut child = c.lock().unwrap();
                    let _ = child.kill();
                    let _ = child.wait();
                    let next = g.fetch_add(1, Ordering::SeqCst) + 1;
                    *child = spawn_server(port, next, b.load(Ordering::SeqCst));
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
                );
            }
        });
        let s = Supervisor {
            port,
            socket,
            generation,
            broken,
            child,
        };
        assert!(s.health().is_some(), "the service did not start");
        s
    }

    /// The service's /health body, waiting up to 10 s for an answer.
    pub(crate) fn health(&self) -> Option<String> {
        crate::util::wait_for(Duration::from_secs(10), || {
            let stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            let (code, body) = crate::util::http_exchange(stream, "/health");
            (code != 0).then_some(body)
        })
    }

    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::SeqCst)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A job restarting the supervised service through curl on the control
/// socket; `extra` goes into [job.config], `net` replaces the grant.
fn job(name: &str, sup: &Supervisor, health: &str, extra: &str, net: Option<&str>) -> String {
    let far = crate::util::far_off();
    let sock = sup.socket.display();
    let net = net
        .map(str::to_owned)
        .unwrap_or_else(|| format!("[\"http://127.0.0.1:{}\", \"unix:{sock}\"]", sup.port));
    format!(
        r#"
[[job]]
name = "{name}"
plugin = "service"
schedule = "{far}"
[job.grants]
exec = [{{ program = "curl", args = ["-sSf", "--unix-socket", "{sock}", "-X", "POST", "http://supervisor/restart"] }}]
net = {net}
[job.config]
command = ["curl", "-sSf", "--unix-socket", "{sock}", "-X", "POST", "http://supervisor/restart"]
health = {health}
interval = "200ms"
{extra}
"#
    )
}

#[test]
fn a_service_is_restarted_and_waited_for_until_its_health_url_says_back() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::start(dir.path());
    let url = format!("http://127.0.0.1:{}/health", sup.port);
    // Something that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let jobs = [
        job(
            "restart-api",
            &sup,
            &format!("{{ url = \"{url}\", contains = '\"status\": \"ok\"' }}"),
            "wait = \"20s\"",
            None,
        ),
        job(
            "restart-broken",
            &sup,
            &format!("{{ url = \"{url}\" }}"),
            "wait = \"4s\"",
            None,
        ),
        job(
            "ungranted-health",
            &sup,
            &format!("{{ url = \"{url}\" }}"),
            "",
            Some(&format!("[\"unix:{}\"]", sup.socket.display())),
        ),
        job(
            "silent-health",
            &sup,
            &format!("{{ url = \"http://127.0.0.1:{silent_port}/health\", timeout = \"1s\" }}"),
            "wait = \"3s\"",
            Some(&format!(
                "[\"http://127.0.0.1:{silent_port}\", \"unix:{}\"]",
                sup.socket.display()
            )),
        ),
        {
            // The restart command not in the exec grant.
            let j = job(
                "ungranted-command",
                &sup,
                &format!("{{ url = \"{url}\" }}"),
                "",
                None,
            );
            let start = j.find("exec = [").unwrap();
            let end = start + j[start..].find('\n').unwrap();
            format!("{}exec = [\"true\"]{}", &j[..start], &j[end..])
        },
        format!(
            r#"
[[job]]
name = "systemd-unit"
plugin = "service"
schedule = "{}"
[job.grants]
exec = ["systemctl"]
[job.config]
unit = "opsd-e2e-api.service"
wait = "5s"
"#,
            crate::util::far_off()
        ),
    ];
    let env = Env::new(&jobs.concat());
    let _daemon = env.daemon();
    let pid_before = sup.health().unwrap();

    // A dry run restarts nothing and says what it would do.
    let out = env.run(&["run", "restart-api", "--dry-run", "--json"]);
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .starts_with("would run `curl -sSf --unix-socket"),
        "{rec:#}"
    );
    assert_eq!(sup.generation(), 1);

    // Restarted for real: a new process, and the run waited the second
    // it takes to listen.
    let rec = env.run_job("restart-api");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(sup.generation(), 2);
    let after = sup.health().unwrap();
    assert!(after.contains("\"generation\": 2"), "{after}");
    assert_ne!(after, pid_before);
    let waited = metric(&rec, "seconds_to_back");
    assert!(
        waited >= 0.9,
        "back after {waited} s: it cannot have waited: {rec:#}"
    );
    assert!(metric(&rec, "looks") >= 2.0, "{rec:#}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("{url} answered 200")),
        "{rec:#}"
    );
    let logs = text(&env.run(&["logs", rec["id"].as_str().unwrap()]));
    assert!(logs.contains("not back yet: "), "{logs}");

    // It comes back broken: the run fails once `wait` is up, saying what
    // the health URL answered last.
    sup.broken.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let rec = env.run_job("restart-broken");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    let summary = rec["summary"].as_str().unwrap();
    assert!(
        summary.contains("ran, but the service is not back within 4s")
            && summary.contains(&format!("{url} answered 500")),
        "{rec:#}"
    );
    assert_eq!(sup.generation(), 3);
    sup.broken.store(false, Ordering::SeqCst);

    // A health URL outside the net grant: refused before the service is
    // touched.
    let rec = env.run_job("ungranted-health");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert_eq!(
        sup.generation(),
        3,
        "restarted without a way to see it back"
    );
    let error = format!("{} {}", rec["error"], rec["summary"]);
    assert!(
        error.contains(&format!("127.0.0.1:{}", sup.port)),
        "{rec:#}"
    );

    // A restart command the exec grant does not name is refused, and
    // the run says which grant to add.
    let rec = env.run_job("ungranted-command");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert_eq!(sup.generation(), 3);
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("program `curl` is not in the job's exec grant"),
        "{rec:#}"
    );

    // A health URL that accepts and never answers holds the run no longer
    // than its wait (and each look no longer than its timeout).
    let start = Instant::now();
    let rec = env.run_job("silent-health");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains("not back within 3s"),
        "{rec:#}"
    );
    drop(silent);

    // systemctl here: no systemd as PID 1 in this container, so the
    // unit's state cannot be read, and the run says so in systemctl's
    // own words, before anything is restarted.
    let rec = env.run_job("systemd-unit");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("systemctl show opsd-e2e-api.service exited"),
        "{rec:#}"
    );
}

/// "memory > 85 % -> restart service", with a threshold this machine is
/// always past: the daemon's monitor starts the job by itself, and the
/// service is restarted once per episode.
#[test]
fn the_memory_row_restarts_the_service_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let sup = Supervisor::start(dir.path());
    let url = format!("http://127.0.0.1:{}/health", sup.port);
    let job = job("memory-restart", &sup, &format!("{{ url = \"{url}\" }}"), "wait = \"20s\"", None)
        .replace(
            "[job.grants]",
            "when = { metric = \"memory_used_percent\", above = 0.01, cooldown = \"1h\" }\n[job.grants]",
        );
    let env = Env::new(&format!("[monitor]\ninterval = \"1s\"\n{job}"));
    let _daemon = env.daemon();
    let rec = crate::util::wait_for(Duration::from_secs(40), || {
        let runs = env.json(&["history", "--job", "memory-restart", "--json"]);
        runs.as_array()
            .and_then(|r| r.iter().find(|r| r["status"] != "running").cloned())
    })
    .expect("the condition never ran the job");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(rec["trigger"], "condition", "{rec:#}");
    assert!(
        rec["condition"]
            .as_str()
            .unwrap()
            .starts_with("memory_used_percent > 0.01"),
        "{rec:#}"
    );
    assert_eq!(sup.generation(), 2);
    assert!(sup.health().unwrap().contains("\"generation\": 2"));
}
