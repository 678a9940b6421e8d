//! The web console in a real browser: Debian's `chromium`, headless,
//! driven over the DevTools protocol (on a pipe: `--remote-debugging-pipe`,
//! so no websocket client is needed), against a real daemon with real
//! runs. Every page is loaded and checked, a running job's log is
//! followed live, the buttons are used with and without the token and
//! from another site, and every string a plugin controls carries markup
//! and terminal escapes that must not reach the DOM as anything but text.
//! A screenshot of each page goes to `target/console-screenshots/`.

use crate::util::{Env, far_off, wait_for};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOKEN: &str = "console-test-token-0123456789";

/// What a hostile plugin says, in TOML (a basic string): a script, an
/// attribute breaker with an event handler, an SVG handler, and terminal
/// colour and title sequences.
const PAYLOAD_TOML: &str = r#"<script>window.__pwned=1</script>\"><img src=x onerror=\"window.__pwned=2\">'><svg onload=window.__pwned=3>\u001b[31mRED\u001b]0;title\u0007"#;

/// A headless chromium, one page, spoken to over the DevTools pipe.
struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    events: Vec<Value>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` is two ints, as pipe2 wants.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // Moved above the descriptors the child gets (3 and 4), so setting
    // those up cannot close one of them.
    // SAFETY: both are open descriptors this process owns.
    let high = |fd: i32| unsafe {
        let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
        libc::close(fd);
        std::fs::File::from_raw_fd(h)
    };
    (high(fds[0]), high(fds[1]))
}

impl Browser {
    fn start() -> Browser {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().expect("browser profile dir");
        let (child_reads, to) = pipe();
        let (from_fd, child_writes) = pipe();
        let (r, w) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-pipe",
            "--window-size=1100,1300",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only dup2, which is async-signal-safe, between fork
        // and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("start chromium (tests/run installs it: apt-get install chromium)");
        drop(child_reads);
        drop(child_writes);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_fd);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to,
            from: rx,
            events: Vec::new(),
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let targets = b.call_browser("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].as_str().unwrap_or_default().to_owned())
            .expect("chromium has a page");
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({ "targetId": page, "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("a message");
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    /// Waits for the page's next load event.
    fn wait_load(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| e["method"] == "Page.loadEventFired")
            {
                self.events.drain(..=i);
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.from.recv_timeout(left).expect("the page loads");
            self.events.push(v);
        }
    }

    fn goto(&mut self, url: &str) {
        self.events.clear();
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "{url}: {r}");
        self.wait_load();
    }

    /// Runs `expr` in the page; its value, as JSON.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Runs `expr` (which submits a form) and waits for the page it
    /// leads to.
    fn submit(&mut self, expr: &str) {
        self.events.clear();
        self.eval(expr);
        self.wait_load();
    }

    fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn url(&mut self) -> String {
        self.eval("location.href")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves the page as `target/console-screenshots/NAME.png`.
    fn screenshot(&mut self, name: &str) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64(r["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let dir = screenshots();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// What the page holds that a plugin's text must never make: any
    /// element with an event handler attribute, an image, a script other
    /// than the console's own, a raw escape character, or a flag set by
    /// injected code.
    fn injected(&mut self) -> Value {
        self.eval(
            r#"JSON.stringify({
                handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).map(e => e.outerHTML.slice(0, 200)),
                images: document.querySelectorAll('img, iframe, object, embed').length,
                scripts: [...document.scripts].map(s => s.getAttribute('src')).filter(s => s !== '/console/live.js'),
                escapes: document.documentElement.outerHTML.includes('\u001b'),
                pwned: window.__pwned || 0
            })"#,
        )
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
    }

    fn assert_clean(&mut self, page: &str) {
        let found = self.injected();
        assert_eq!(
            found,
            json!({ "handlers": [], "images": 0, "scripts": [], "escapes": false, "pwned": 0 }),
            "{page}: a plugin's text made markup"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots")
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn hostile(name: &str, config: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"test-hostile\"\nschedule = \"{}\"\n[job.config]\n{config}\n\n",
        far_off()
    )
}

/// A POST as a plain client would send it: (status, body).
fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer)
}

fn runs_of(env: &Env, job: &str) -> usize {
    env.json(&["history", "--job", job, "--json"])
        .as_array()
        .map_or(0, Vec::len)
}

/// The operator's questions answered in a browser, with a token: every
/// page, a live log, the buttons, and hostile text everywhere.
#[test]
fn the_console_answers_in_a_browser_and_shows_hostile_text_as_text() {
    let env = Env::new(&format!(
        "{}{}{}{}{}[monitor]\ninterval = \"1s\"\n[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"console.token\"\n",
        hostile(
            "says",
            &format!("action = \"say-all\"\npath = \"{PAYLOAD_TOML}\"")
        ),
        hostile(
            "fails",
            &format!("action = \"say-all\"\nseconds = 1\npath = \"{PAYLOAD_TOML}\"")
        ),
        hostile(
            "follow",
            "action = \"say-all\"\npath = \"following\"\nseconds = 8\nargs = [\"line 1\", \"line 2\", \"line 3\", \"line 4\", \"line 5\", \"line 6\", \"line 7\", \"line 8\"]"
        ),
        hostile("quick", "action = \"ok\""),
        "[[job]]\nname = \"cond\"\nplugin = \"test-hostile\"\nwhen = { metric = \"memory_used_percent\", above = 99.9, for = \"5m\" }\n[job.config]\naction = \"ok\"\n\n",
    ));
    env.install_guest("opsd-test-hostile");
    // A file in the plugin directory named to break out of an attribute:
    // rejected, and its name shown in the reason.
    std::fs::write(
        env.path("plugins/x\"><img src=x onerror=window.__pwned=5>.wasm"),
        b"not a component",
    )
    .expect("hostile plugin file");
    {
        use std::os::unix::fs::PermissionsExt;
        let token = env.path("console.token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let daemon = env.daemon();
    let addr = env.http_addr();
    let base = format!("http://{addr}");
    assert!(
        wait_for(Duration::from_secs(5), || daemon
            .log()
            .contains("its buttons need signing in with [http] token")
            .then_some(()))
        .is_some(),
        "{}",
        daemon.log()
    );
    let says = env.run_job("says");
    assert_eq!(says["status"], "warning", "{says:#}");
    let fails = env.run_job("fails");
    assert_eq!(fails["status"], "failed", "{fails:#}");
    env.run_job("quick");

    let mut b = Browser::start();

    // Read-only until signed in: pages, no buttons.
    b.goto(&format!("{base}/"));
    let text = b.text();
    for job in ["says", "fails", "follow", "quick", "test-hostile"] {
        assert!(text.contains(job), "schedule lists {job}: {text}");
    }
    assert!(text.contains("Sign in"), "{text}");
    assert_eq!(b.eval("document.querySelectorAll('main form').length"), 0);
    b.assert_clean("schedule");

    // Sign in with a wrong token, then the right one.
    b.goto(&format!("{base}/login?next=/"));
    b.submit("document.querySelector('input[name=token]').value='wrong-token-wrong-token'; document.querySelector('main form').submit()");
    assert!(
        b.text().contains("That is not the token"),
        "{}\n{}",
        b.text(),
        daemon.log()
    );
    b.submit(&format!("document.querySelector('input[name=token]').value='{TOKEN}'; document.querySelector('main form').submit()"));
    let text = b.text();
    assert!(text.contains("signed in"), "{text}");
    assert!(text.contains("Run now"), "{text}");
    b.screenshot("schedule");
    // As a phone shows it.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
    );
    b.goto(&format!("{base}/"));
    assert_eq!(
        b.eval("document.documentElement.scrollWidth <= window.innerWidth + 1"),
        true,
        "the schedule fits a phone's width"
    );
    b.screenshot("schedule-phone");
    b.call("Emulation.clearDeviceMetricsOverride", json!({}));

    // Run now on a running job: the run page, its log following live.
    b.goto(&format!("{base}/jobs/follow"));
    b.assert_clean("job");
    b.submit("[...document.querySelectorAll('form')].find(f => f.action.endsWith('/jobs/follow/run')).submit()");
    let run_url = b.url();
    assert!(
        run_url.contains("/runs/"),
        "run now leads to the run: {run_url}"
    );
    b.eval("window.__same_page = 1");
    let lines = |b: &mut Browser| {
        b.eval("document.querySelectorAll('#log > div').length")
            .as_u64()
            .unwrap_or(0)
    };
    let first = lines(&mut b);
    assert!(b.text().contains("Cancel"), "a running run offers Cancel");
    let grew = wait_for(Duration::from_secs(8), || {
        let same = b.eval("window.__same_page === 1") == json!(true);
        let now = lines(&mut b);
        (same && now >= first + 2).then_some(now)
    });
    assert!(
        grew.is_some(),
        "new log lines arrive without a reload (had {first}): {}",
        b.text()
    );
    let progress = b.eval("document.getElementById('progress-note').textContent");
    assert!(
        progress
            .as_str()
            .unwrap_or_default()
            .contains("of 8 following"),
        "progress arrives live: {progress}"
    );
    b.screenshot("run-live");
    // When it ends the page shows the finished run.
    let done = wait_for(Duration::from_secs(15), || {
        let t = b.text();
        (t.contains("line 8") && !t.contains("Cancel") && t.contains("warning")).then_some(())
    });
    assert!(done.is_some(), "the run finishes on the page: {}", b.text());
    assert_eq!(runs_of(&env, "follow"), 1);

    // The hostile runs: every page that shows their text.
    let says_id = says["id"].as_str().unwrap().to_owned();
    let fails_id = fails["id"].as_str().unwrap().to_owned();
    b.goto(&format!("{base}/runs/{says_id}"));
    let text = b.text();
    assert!(text.contains("<script>window.__pwned=1</script>"), "{text}");
    assert!(text.contains("\\x1b[31mRED"), "escapes shown inert: {text}");
    assert!(
        b.eval("document.querySelectorAll('table.metrics td').length")
            .as_u64()
            .unwrap_or(0)
            >= 3,
        "metrics shown"
    );
    assert!(
        text.contains("/data/<script>"),
        "artifact path shown: {text}"
    );
    b.assert_clean("run");
    b.screenshot("run");
    b.goto(&format!("{base}/runs/{fails_id}"));
    assert!(b.text().contains("failed"), "{}", b.text());
    b.assert_clean("failed run");
    b.goto(&format!("{base}/jobs/says"));
    let text = b.text();
    assert!(text.contains("What it may touch"), "{text}");
    assert!(text.contains("Next fires"), "{text}");
    assert_eq!(
        b.eval("document.querySelectorAll('svg.chart rect').length"),
        1,
        "a duration bar for the run"
    );
    b.assert_clean("job page");
    b.screenshot("job");
    b.goto(&format!("{base}/history"));
    let text = b.text();
    for job in ["says", "fails", "follow", "quick"] {
        assert!(text.contains(job), "history lists {job}: {text}");
    }
    b.assert_clean("history");
    b.screenshot("history");
    b.goto(&format!("{base}/history?status=failed"));
    assert_eq!(
        b.eval("document.querySelectorAll('table.runs tbody tr').length"),
        1,
        "{}",
        b.text()
    );
    b.goto(&format!("{base}/history?job=quick&trigger=manual"));
    assert_eq!(
        b.eval("document.querySelectorAll('table.runs tbody tr').length"),
        1
    );
    b.goto(&format!("{base}/history?trigger=schedule"));
    assert_eq!(
        b.eval("document.querySelectorAll('table.runs tbody tr').length"),
        0
    );
    // A sample a second: the hour's charts have lines.
    let charted = wait_for(Duration::from_secs(10), || {
        b.goto(&format!("{base}/status"));
        (b.eval("document.querySelectorAll('svg.chart polyline').length")
            .as_u64()
            .unwrap_or(0)
            >= 3)
            .then_some(())
    });
    assert!(charted.is_some(), "{}", b.text());
    let text = b.text();
    assert!(text.contains("cpu") && text.contains("memory"), "{text}");
    assert!(
        text.contains("memory_used_percent") && text.contains("cond"),
        "where the when condition stands: {text}"
    );
    b.assert_clean("status");
    b.screenshot("status");
    b.goto(&format!("{base}/plugins"));
    let text = b.text();
    assert!(text.contains("rejected"), "{text}");
    assert!(
        text.contains("onerror=window.__pwned=5"),
        "the file's name shown: {text}"
    );
    assert!(
        text.contains("test-hostile") && text.contains("ready"),
        "{text}"
    );
    b.assert_clean("plugins");
    b.screenshot("plugins");
    b.goto(&format!("{base}/reports?since=7d"));
    let text = b.text();
    assert!(text.contains("report"), "{text}");
    assert!(text.contains("fails"), "{text}");
    b.assert_clean("reports");
    b.screenshot("reports");

    // Disable and enable from the job page.
    b.goto(&format!("{base}/jobs/quick"));
    b.submit(
        "[...document.querySelectorAll('form')].find(f => f.action.endsWith('/disable')).submit()",
    );
    assert_eq!(
        b.eval(
            "[...document.querySelectorAll('form')].some(f => f.action.endsWith('/quick/enable'))"
        ),
        true,
        "a disabled job offers Enable: {}",
        b.text()
    );
    let listed = env.json(&["schedule", "list", "--json"]);
    let quick = listed
        .as_array()
        .and_then(|l| l.iter().find(|e| e["job"] == "quick"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(quick["enabled"], false, "{listed:#}");
    b.submit(
        "[...document.querySelectorAll('form')].find(f => f.action.endsWith('/enable')).submit()",
    );
    assert_eq!(
        env.json(&["schedule", "list", "--json"])
            .as_array()
            .and_then(|l| l.iter().find(|e| e["job"] == "quick"))
            .map(|e| e["enabled"].clone()),
        Some(json!(true))
    );

    // A page on another site posting to the console (with the cookie the
    // browser holds, and even the right CSRF token) is refused.
    b.goto(&format!("{base}/jobs/quick"));
    let csrf = b
        .eval("document.querySelector('input[name=csrf]').value")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let before = runs_of(&env, "quick");
    let attack = format!(
        "data:text/html,<form method=post action='{base}/jobs/quick/run'><input name=csrf value='{csrf}'></form>"
    );
    b.goto(&attack);
    b.submit("document.forms[0].submit()");
    assert!(b.text().contains("another site"), "{}", b.text());
    // And a client with no session, whatever it sends.
    let (code, _) = post(&addr, "/jobs/quick/run", &[], &format!("csrf={csrf}"));
    assert_eq!(code, 401);
    let (code, _) = post(
        &addr,
        "/jobs/quick/run",
        &[("Cookie", "opsd_console=forged")],
        &format!("csrf={csrf}"),
    );
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs_of(&env, "quick"), before, "nothing ran");

    // With the console's own form it runs.
    b.goto(&format!("{base}/jobs/quick"));
    b.submit("[...document.querySelectorAll('form')].find(f => f.action.endsWith('/jobs/quick/run')).submit()");
    assert!(b.url().contains("/runs/"), "{}", b.url());
    assert!(
        wait_for(Duration::from_secs(10), || (runs_of(&env, "quick")
            == before + 1)
            .then_some(()))
        .is_some()
    );

    // Cancel a running run from its page.
    b.goto(&format!("{base}/jobs/follow"));
    b.submit("[...document.querySelectorAll('form')].find(f => f.action.endsWith('/jobs/follow/run')).submit()");
    let running = b.url();
    assert!(running.contains("/runs/"), "{running}");
    // Without JavaScript the running run's page still says where it is
    // (its lines and progress so far) and refreshes itself.
    std::thread::sleep(Duration::from_millis(1500));
    b.call(
        "Emulation.setScriptExecutionDisabled",
        json!({ "value": true }),
    );
    b.goto(&running);
    let text = b.text();
    assert!(
        text.contains("line 1") && text.contains("of 8 following"),
        "{text}"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('meta[http-equiv=refresh]').length"),
        1,
        "the page refreshes itself without JavaScript"
    );
    b.call(
        "Emulation.setScriptExecutionDisabled",
        json!({ "value": false }),
    );
    b.goto(&running);
    b.submit(
        "[...document.querySelectorAll('form')].find(f => f.action.endsWith('/cancel')).submit()",
    );
    let cancelled = wait_for(Duration::from_secs(10), || {
        let h = env.json(&["history", "--job", "follow", "--json"]);
        (h[0]["status"] == "cancelled").then_some(h[0].clone())
    });
    assert!(cancelled.is_some(), "the run was cancelled");
    assert!(daemon.log().contains("run cancelled from the web console"));

    // /health and /metrics stay open and as they were.
    let (code, body) = get(&addr, "/health");
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(&addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("opsd_"), "{body}");
    // A page asked for under another host name (DNS rebinding) is not
    // served.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 421"), "{answer}");
    drop(b);
    assert!(daemon.stop().success());
}

/// Without a token the console is read-only: no buttons, and a POST is
/// refused. Off loopback without a token, the pages are off (and the
/// daemon says so) while /health and /metrics answer; with a token
/// there, every page needs signing in.
#[test]
fn without_a_token_the_console_only_reads_and_off_loopback_it_needs_one() {
    let env = Env::new(&hostile("quick", "action = \"ok\""));
    env.install_guest("opsd-test-hostile");
    let daemon = env.daemon();
    let addr = env.http_addr();
    env.run_job("quick");
    let mut b = Browser::start();
    b.goto(&format!("http://{addr}/"));
    let text = b.text();
    assert!(
        text.contains("quick") && text.contains("read-only"),
        "{text}"
    );
    assert_eq!(b.eval("document.querySelectorAll('form').length"), 0);
    b.goto(&format!("http://{addr}/login"));
    assert!(b.text().contains("read-only"), "{}", b.text());
    drop(b);
    let (code, body) = post(&addr, "/jobs/quick/run", &[], "csrf=x");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    assert_eq!(runs_of(&env, "quick"), 1, "nothing ran");
    assert!(daemon.stop().success());

    // Off loopback, no token: console off, monitoring open.
    env.write_config(&format!(
        "{}[http]\nlisten = \"0.0.0.0:0\"\n",
        hostile("quick", "action = \"ok\"")
    ));
    let daemon = env.daemon();
    let port = env.http_addr().rsplit_once(':').unwrap().1.to_owned();
    let local = format!("127.0.0.1:{port}");
    assert!(
        wait_for(Duration::from_secs(5), || daemon
            .log()
            .contains("is off: the address is not loopback and [http] has no token")
            .then_some(()))
        .is_some(),
        "{}",
        daemon.log()
    );
    let (code, body) = get(&local, "/");
    assert_eq!(code, 403, "{body}");
    assert_eq!(get(&local, "/history").0, 403);
    assert_eq!(get(&local, "/health").0, 200);
    assert_eq!(get(&local, "/metrics").0, 200);
    assert!(daemon.stop().success());

    // Off loopback with a token: sign in first, even to read.
    env.write_config(&format!(
        "{}[http]\nlisten = \"0.0.0.0:0\"\ntoken = \"{TOKEN}\"\n",
        hostile("quick", "action = \"ok\"")
    ));
    // A token in the config itself needs a config others cannot read.
    std::fs::set_permissions(
        env.path("opsd.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let daemon = env.daemon();
    let port = env.http_addr().rsplit_once(':').unwrap().1.to_owned();
    let local = format!("127.0.0.1:{port}");
    assert!(
        daemon.log().contains("every console page needs signing in"),
        "{}",
        daemon.log()
    );
    let (code, answer) = get(&local, "/history");
    assert_eq!(code, 303, "{answer}");
    assert!(
        answer.contains("location: /login?next=%2Fhistory"),
        "{answer}"
    );
    let (code, answer) = post(
        &local,
        "/login",
        &[],
        &format!("token={TOKEN}&next=/history"),
    );
    assert_eq!(code, 303, "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let mut s = std::net::TcpStream::connect(&local).unwrap();
    write!(
        s,
        "GET /history HTTP/1.1\r\nHost: {local}\r\nCookie: {session}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("quick"), "{answer}");
    assert!(daemon.stop().success());
}

/// A token file anyone may read, or too short a token, is refused at
/// load with the line and what to do.
#[test]
fn a_careless_token_is_refused_with_what_to_do() {
    let env = Env::new("[http]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"t\"\n");
    std::fs::write(env.path("t"), format!("{TOKEN}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.path("t"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = env.run(&["check"]);
    let said = crate::util::text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("opsd.toml:6"), "{said}");
    assert!(said.contains("chmod 600"), "{said}");
    env.write_config("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"short\"\n");
    let said = crate::util::text(&env.run(&["check"]));
    assert!(said.contains("openssl rand -hex 32"), "{said}");
}
