//! The built-in http-check plugin against a real local server, over plain
//! HTTP and over HTTPS with a private CA made by openssl: status, body,
//! latency, certificate expiry, redirects, grants, and servers that send
//! too much or never finish.

use crate::util::{Env, far_off, text, wait_for};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test server (tests/e2e/data/health_server.py), killed on drop.
pub struct Server {
    child: Child,
    pub http: u16,
    pub https: Option<u16>,
    /// Where `/health` reads `up` or not.
    pub state: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server in `dir`, with TLS when `cert` (cert, key) is
    /// given.
    pub fn start(dir: &Path, cert: Option<(&Path, &Path)>) -> Server {
        let script = dir.join("health_server.py");
        std::fs::write(&script, include_str!("data/health_server.py")).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(&script);
        if let Some((c, k)) = cert {
            cmd.arg(c).arg(k);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = |want: &str| -> u16 {
            let line = lines.next().expect("a port line").unwrap();
            let (what, p) = line.split_once(' ').unwrap();
            assert_eq!(what, want);
            p.parse().unwrap()
        };
        let http = port("http");
        let https = cert.map(|_| port("https"));
        Server {
            child,
            http,
            https,
            state: dir.join("state"),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// A private CA and a server certificate for 127.0.0.1 and localhost,
/// valid `days`: (ca.pem, server.pem, server.key) in `dir`.
pub fn private_ca(
    dir: &Path,
    days: u32,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=opsd test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let days = days.to_string();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            &days,
            "-extfile",
            "ext.cnf",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// One http-check job: `checks` is the TOML of its checks' array.
fn job(name: &str, grants: &str, checks: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"http-check\"\nschedule = \"{}\"\n[job.grants]\n{grants}\n[job.config]\nchecks = [{checks}]\n\n",
        far_off()
    )
}

fn summary(rec: &Value) -> &str {
    rec["summary"].as_str().unwrap_or_default()
}

#[test]
fn http_check_judges_status_body_latency_redirects_grants_and_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path(), 3);
    let srv = Server::start(certs.path(), Some((&cert, &key)));
    let (h, s) = (srv.http, srv.https.unwrap());
    let plain = format!("net = [\"http://127.0.0.1:{h}\"]");
    let tls = format!(
        "net = [\"https://127.0.0.1:{s}\"]\nca = [\"{}\"]\nexec = [\"openssl\"]",
        ca.display()
    );
    let url = |p: &str| format!("http://127.0.0.1:{h}{p}");
    let mut config = String::new();
    for (name, grants, checks) in [
        (
            "ok",
            plain.clone(),
            format!(
                "{{ url = \"{}\", expect_body = \"\\\"ok\\\"\" }}",
                url("/ok?token=s3cret")
            ),
        ),
        (
            "status",
            plain.clone(),
            format!("{{ url = \"{}\" }}", url("/fail")),
        ),
        (
            "body",
            plain.clone(),
            format!("{{ url = \"{}\", expect_body = \"status\" }}", url("/body")),
        ),
        (
            "slow",
            plain.clone(),
            format!("{{ url = \"{}\", max_latency_ms = 500 }}", url("/slow")),
        ),
        (
            "redirect",
            plain.clone(),
            format!("{{ url = \"{}\" }}", url("/redirect")),
        ),
        (
            "followed",
            plain.clone(),
            format!(
                "{{ url = \"{}\", follow_redirects = true, expect_body = \"ok\" }}",
                url("/redirect")
            ),
        ),
        (
            "away",
            plain.clone(),
            format!("{{ url = \"{}\", follow_redirects = true }}", url("/away")),
        ),
        (
            "loop",
            plain.clone(),
            format!("{{ url = \"{}\", follow_redirects = true }}", url("/loop")),
        ),
        (
            "ungranted",
            "net = [\"http://127.0.0.1:1\"]".into(),
            format!("{{ url = \"{}\" }}", url("/ok")),
        ),
        (
            "huge",
            plain.clone(),
            format!("{{ url = \"{}\", expect_body = \"needle\" }}", url("/huge")),
        ),
        (
            "stall",
            plain.clone(),
            format!("{{ url = \"{}\", timeout_ms = 1500 }}", url("/stall")),
        ),
        (
            "endless",
            plain.clone(),
            format!(
                "{{ url = \"{}\", expect_body = \"needle\", timeout_ms = 2000 }}",
                url("/endless")
            ),
        ),
        (
            "tls",
            tls.clone(),
            format!(
                "{{ url = \"https://127.0.0.1:{s}/ok\", cert_warn_days = 14, cert_fail_days = 1 }}"
            ),
        ),
        (
            "tls-fail-days",
            tls.clone(),
            format!("{{ url = \"https://127.0.0.1:{s}/ok\", cert_fail_days = 7 }}"),
        ),
        (
            "tls-no-ca",
            format!("net = [\"https://127.0.0.1:{s}\"]\nexec = [\"openssl\"]"),
            format!("{{ url = \"https://127.0.0.1:{s}/ok\" }}"),
        ),
        (
            "tls-no-openssl",
            format!(
                "net = [\"https://127.0.0.1:{s}\"]\nca = [\"{}\"]",
                ca.display()
            ),
            format!("{{ url = \"https://127.0.0.1:{s}/ok\", cert_warn_days = 14 }}"),
        ),
        (
            "two",
            plain.clone(),
            format!(
                "{{ url = \"{}\" }}, {{ url = \"{}\", name = \"api\" }}",
                url("/ok"),
                url("/fail")
            ),
        ),
    ] {
        config.push_str(&job(name, &grants, &checks));
    }
    let env = Env::new(&config);
    let check = env.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check));

    let rec = env.run_job("ok");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(
        summary(&rec).starts_with(&format!("http://127.0.0.1:{h}/ok: answered 200 in ")),
        "{rec:#}"
    );
    assert!(
        !rec.to_string().contains("s3cret"),
        "the query stays out of the record: {rec:#}"
    );

    let failed = |job: &str, says: &[&str]| {
        let rec = env.run_job(job);
        assert_eq!(rec["status"], "failed", "{job}: {rec:#}");
        for s in says {
            assert!(summary(&rec).contains(s), "{job}: no `{s}` in {rec:#}");
        }
        rec
    };
    failed("status", &["answered 500", "expected 2xx"]);
    failed(
        "body",
        &["answered 200", "the body does not contain \"status\""],
    );
    failed("slow", &["slower than max_latency_ms (500 ms)"]);
    failed(
        "redirect",
        &[
            "answered 302",
            "a redirect to /ok; set follow_redirects = true",
        ],
    );
    let rec = env.run_job("followed");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let rec = failed(
        "away",
        &[
            "http://127.0.0.1:1 is not in the job's `net` grant",
            "add \"http://127.0.0.1:1\" to `net = [...]`",
            "after 1 redirects",
        ],
    );
    assert!(!rec.to_string().contains("s3cret"), "{rec:#}");
    failed("loop", &["more than 5 redirects"]);
    failed(
        "ungranted",
        &[&format!(
            "http://127.0.0.1:{h} is not in the job's `net` grant"
        )],
    );

    // A body that never ends, or is huge, gets bounded attention.
    let began = Instant::now();
    failed(
        "huge",
        &["in the first 1048576 bytes; read no further than 1 MiB"],
    );
    let began_endless = Instant::now();
    failed("endless", &["did not end within timeout_ms (2000 ms)"]);
    let endless = began_endless.elapsed();
    assert!(endless < Duration::from_secs(10), "{endless:?}");
    // A server that takes the request and never answers.
    let began_stall = Instant::now();
    failed("stall", &["no answer"]);
    assert!(began_stall.elapsed() < Duration::from_secs(10));
    assert!(began.elapsed() < Duration::from_secs(30));

    // HTTPS through the private CA of the `ca` grant, with the short-lived
    // certificate's expiry read by openssl s_client.
    let rec = env.run_job("tls");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert!(summary(&rec).contains("answered 200"), "{rec:#}");
    assert!(
        summary(&rec).contains("the certificate expires in 2 days"),
        "{rec:#}"
    );
    assert_eq!(crate::util::metric(&rec, "check1_cert_days_left"), 2.0);
    failed("tls-fail-days", &["the certificate expires in 2 days"]);
    failed("tls-no-ca", &["TLS with https://127.0.0.1", "`ca = [...]`"]);
    // The host names the grant first (a refused program is a violation).
    failed(
        "tls-no-openssl",
        &[
            "`openssl` is not in the job's exec grant",
            "add it to `exec = [...]`",
        ],
    );
    let rec = failed("two", &["1 of 2 checks unhealthy: api: answered 500"]);
    assert_eq!(crate::util::metric(&rec, "check1_up"), 1.0);
    assert_eq!(crate::util::metric(&rec, "check2_up"), 0.0);
    assert_eq!(crate::util::metric(&rec, "check2_status"), 500.0);
}

#[test]
fn http_check_config_errors_name_the_job_and_check() {
    let env = Env::new(&job(
        "bad",
        "net = [\"http://127.0.0.1:9\"]",
        "{ url = \"http://127.0.0.1:9/\", cert_warn_days = 3 }",
    ));
    let out = env.run(&["check"]);
    let rec = env.run_job("bad");
    assert_eq!(rec["status"], "failed", "{rec:#} / {}", text(&out));
    let all = rec.to_string();
    assert!(
        all.contains(
            "job `bad`: checks[1]: cert_warn_days and cert_fail_days apply to https:// URLs"
        ),
        "{rec:#}"
    );
}

#[test]
fn an_unhealthy_endpoint_sends_failure_then_recovery_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), None);
    std::fs::write(&srv.state, "down").unwrap();
    let (addr, hooks) = crate::daemon::webhook_sink();
    let env = Env::new(&format!(
        "[[notify]]\nurl = \"http://{addr}/hook\"\non = [\"failure\", \"recovered\"]\n\n{}",
        job(
            "health",
            &format!("net = [\"http://127.0.0.1:{}\"]", srv.http),
            &format!(
                "{{ url = \"http://127.0.0.1:{}/health\", expect_body = \"ok\" }}",
                srv.http
            )
        )
    ));
    let _daemon = env.daemon();
    let rec = env.run_job("health");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let hook = hooks
        .recv_timeout(Duration::from_secs(20))
        .expect("failure webhook");
    assert_eq!(hook["event"], "failure", "{hook:#}");
    assert!(
        hook["run"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("answered 503"),
        "{hook:#}"
    );
    std::fs::write(&srv.state, "up").unwrap();
    let rec = env.run_job("health");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let hook =
        wait_for(Duration::from_secs(20), || hooks.try_recv().ok()).expect("recovered webhook");
    assert_eq!(hook["event"], "recovered", "{hook:#}");
}
