//! The daemon as an operator runs it: monitoring over HTTP, live runs,
//! webhooks, SIGHUP and SIGTERM.

use crate::util::{Env, http_get, text, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

fn hostile(name: &str, config: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"test-hostile\"\nschedule = \"{}\"\n{extra}\n[job.config]\n{config}\n\n",
        crate::util::far_off()
    )
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn health_and_metrics_over_http_change_after_a_run() {
    let env = Env::new(
        &[
            hostile("ok-job", "action = \"ok\"", ""),
            hostile("bad-job", "action = \"fail\"", ""),
            // A probe and a condition, so the dashboard's machine panels
            // have figures to chart (port 1 refuses: the probe fails).
            hostile(
                "watch",
                "action = \"ok\"",
                "when = { metric = \"http_latency_seconds\", url = \"http://127.0.0.1:1/health\", above = 5, cooldown = \"1h\" }",
            ),
        ]
        .concat(),
    );
    env.install_guest("opsd-test-hostile");
    let daemon = env.daemon();
    let addr = env.http_addr();
    assert!(addr.starts_with("127.0.0.1:"), "loopback: {addr}");

    // Healthy as soon as the socket answers: the daemon marks the loop
    // alive before it opens the socket (the wait stays for a loaded
    // machine's HTTP listener).
    let (status, body) = wait_for(Duration::from_secs(20), || {
        let (status, body) = http_get(&addr, "/health");
        (status == 200).then_some((status, body))
    })
    .unwrap_or_else(|| http_get(&addr, "/health"));
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert!(health["scheduler_tick_age_seconds"].as_f64().unwrap() < 60.0);
    // The TCP listener serves health, metrics and the web console: the
    // control routes live on the 0600 socket.
    for path in [
        "/v1/schedule",
        "/v1/runs",
        "/v1/jobs/ok-job",
        "/v1/jobs/ok-job/run",
    ] {
        assert_eq!(http_get(&addr, path).0, 404, "{path} on the HTTP listener");
    }

    let (_, before) = http_get(&addr, "/metrics");
    assert!(
        before.contains("# TYPE opsd_job_runs_total counter"),
        "{before}"
    );
    assert_eq!(
        metric(
            &before,
            "opsd_build_info{version=\"0.1.0\",wasmtime=\"48.0.8\"}"
        ),
        Some(1.0),
        "{before}"
    );
    // Every outcome's series is there before the first run, at 0, so the
    // first failure is a step `increase()` sees.
    for status in ["ok", "failed", "timeout", "skipped"] {
        assert_eq!(
            metric(
                &before,
                &format!("opsd_job_runs_total{{job=\"bad-job\",status=\"{status}\"}}")
            ),
            Some(0.0),
            "{before}"
        );
    }
    assert!(
        metric(
            &before,
            "opsd_job_next_run_timestamp_seconds{job=\"ok-job\"}"
        )
        .unwrap()
            > 1.7e9
    );
    assert!(metric(&before, "process_resident_memory_bytes").unwrap() > 1e6);

    assert_eq!(env.run_job("ok-job")["status"], "ok");
    assert_eq!(env.run_job("ok-job")["status"], "ok");
    assert_eq!(env.run_job("bad-job")["status"], "failed");
    let (_, after) = http_get(&addr, "/metrics");
    assert_eq!(
        metric(&after, "opsd_job_runs_total{job=\"ok-job\",status=\"ok\"}"),
        Some(2.0),
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "opsd_job_runs_total{job=\"bad-job\",status=\"failed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "opsd_job_duration_seconds_count{job=\"ok-job\"}"),
        Some(2.0)
    );
    assert!(
        metric(&after, "opsd_job_last_duration_seconds{job=\"ok-job\"}").is_some(),
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "opsd_job_duration_seconds_bucket{job=\"ok-job\",le=\"+Inf\"}"
        ),
        Some(2.0)
    );
    let last_success = metric(
        &after,
        "opsd_job_last_success_timestamp_seconds{job=\"ok-job\"}",
    )
    .unwrap();
    assert!((last_success - chrono::Utc::now().timestamp() as f64).abs() < 120.0);
    assert_eq!(
        metric(
            &after,
            "opsd_job_last_success_timestamp_seconds{job=\"bad-job\"}"
        ),
        None
    );
    assert!(after.lines().any(|l| {
        l.starts_with("opsd_plugin_info{name=\"test-hostile\",version=\"0.1.0\",sha256=\"")
    }));

    // Every metric the example Grafana dashboard charts is exported.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana/opsd-dashboard.json"
    ))
    .unwrap();
    // The machine's figures come with the daemon's first sample.
    let after = wait_for(Duration::from_secs(30), || {
        let (_, body) = http_get(&addr, "/metrics");
        body.contains("opsd_probe_latency_seconds{").then_some(body)
    })
    .expect("a sample with the probe within 30 s");
    let mut names: Vec<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("opsd_") || w.starts_with("process_"))
        // The fleet panels' figures come with a [fleet] (fleet_jobs.rs).
        .filter(|w| !w.starts_with("opsd_fleet_"))
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        assert!(
            after.lines().any(|l| l.starts_with(name)),
            "the dashboard charts {name}, which /metrics lacks"
        );
    }

    // Only health and metrics are served over TCP.
    let (status, _) = http_get(&addr, "/v1/schedule");
    assert_eq!(status, 404);
    assert!(daemon.stop().success());
}

fn follow_streams_live(env: &Env) {
    let mut child = env
        .cmd(&["run", "chatty", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    while !first.contains(" step ") {
        first.clear();
        assert!(
            out.read_line(&mut first).unwrap() > 0,
            "the stream ended before any step"
        );
    }
    assert!(first.contains("plugin step 1 of 5"), "{first}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first line arrived while the run was still going"
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{rest}\n{err}");
    let steps: Vec<&str> = std::iter::once(first.as_str())
        .chain(rest.lines())
        .filter(|l| l.contains(" step "))
        .collect();
    assert_eq!(steps.len(), 5, "{first}{rest}");
    assert!(steps[4].contains("step 5 of 5"));
    assert!(rest.contains("chatty ok (test-hostile 0.1.0)"), "{rest}");
    // Not a terminal: progress comes as lines on stderr.
    assert!(err.contains("progress 100% (5/5) stepping"), "{err}");
}

#[test]
fn run_follow_streams_log_lines_and_progress_live() {
    let env = Env::new(&hostile("chatty", "action = \"chatty\"\nseconds = 3", ""));
    env.install_guest("opsd-test-hostile");
    follow_streams_live(&env);
    let daemon = env.daemon();
    follow_streams_live(&env);
    assert!(daemon.stop().success());
}

#[test]
fn sighup_reloads_and_a_broken_config_keeps_the_old_one() {
    let env = Env::new(&hostile("first", "action = \"ok\"", ""));
    env.install_guest("opsd-test-hostile");
    let daemon = env.daemon();
    // Straight to the socket: the CLI itself would refuse the broken file.
    let jobs = || -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(&env.socket_get("/v1/schedule").1)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["job"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(jobs(), ["first"]);

    // A typo in one job: that job is set aside, with what and where, and
    // the rest is put in force.
    let good = std::fs::read_to_string(env.path("opsd.toml")).unwrap();
    std::fs::write(
        env.path("opsd.toml"),
        format!(
            "{good}\n[[job]]\nname = \"second\"\nplugin = \"test-hostile\"\nschedul = \"@daily\"\n"
        ),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    let log = wait_for(Duration::from_secs(10), || {
        daemon
            .log()
            .contains("1 broken job set aside")
            .then(|| daemon.log())
    })
    .unwrap_or_else(|| panic!("no broken job logged:\n{}", daemon.log()));
    assert!(
        log.contains("job is broken and does not run") && log.contains("unknown field `schedul`"),
        "{log}"
    );
    assert_eq!(jobs(), ["first", "second"], "listed, the broken one last");
    let broken =
        serde_json::from_str::<serde_json::Value>(&env.socket_get("/v1/health").1).unwrap();
    assert_eq!(broken["broken_jobs"][0]["job"], "second", "{broken:#}");
    assert_eq!(env.run_job("first")["status"], "ok", "the others still run");

    // A file broken as a whole: said, and the running configuration stays.
    std::fs::write(env.path("opsd.toml"), format!("{good}\n[[job]\n")).unwrap();
    daemon.signal(libc::SIGHUP);
    let log = wait_for(Duration::from_secs(10), || {
        daemon.log().contains("reload failed").then(|| daemon.log())
    })
    .unwrap_or_else(|| panic!("no reload error logged:\n{}", daemon.log()));
    assert!(
        log.contains(&format!("{}:", env.path("opsd.toml").display())),
        "the message names the file: {log}"
    );
    assert_eq!(
        jobs(),
        ["first", "second"],
        "the running configuration stays"
    );

    env.write_config(
        &[
            hostile("first", "action = \"ok\"", ""),
            hostile("second", "action = \"ok\"", ""),
        ]
        .concat(),
    );
    daemon.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), || {
        (jobs().len() == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("reload not applied:\n{}", daemon.log()));
    assert_eq!(env.run_job("second")["status"], "ok");
    assert!(daemon.stop().success());
}

#[test]
fn sigterm_lets_runs_finish_within_the_grace_then_interrupts_them() {
    let env = Env::new(&format!(
        "shutdown_grace = \"1s\"\n\n{}",
        hostile("slow", "action = \"sleep\"\nseconds = 60", "")
    ));
    env.install_guest("opsd-test-hostile");
    let daemon = env.daemon();
    let client = env
        .cmd(&["run", "slow", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let running = wait_for(Duration::from_secs(10), || {
        let h = env.json(&["history", "--json"]);
        h.as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "running")
            .map(|r| r["id"].as_str().unwrap().to_owned())
    })
    .expect("the slow run started");
    let stopped_at = Instant::now();
    let status = daemon.stop();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(20),
        "the 1s grace was honoured, not the plugin's 60s"
    );
    let mut client = client;
    let _ = client.wait();
    let rec = env
        .json(&["history", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == running.as_str())
        .cloned()
        .unwrap();
    assert_eq!(rec["status"], "interrupted", "{rec:#}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within the 1s grace period"),
        "{rec:#}"
    );
}

/// Collects the bodies POSTed to it.
pub(crate) fn webhook_sink() -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut len = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send(v);
            }
        }
    });
    (addr, rx)
}

#[test]
fn webhooks_tell_of_failure_and_recovery_and_a_dead_endpoint_blocks_nothing() {
    let (addr, hooks) = webhook_sink();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = Env::new(&format!(
        "[[notify]]\nurl = \"http://{addr}/hook\"\non = [\"failure\", \"recovered\"]\n\n[[notify]]\nurl = \"http://{dead}/gone\"\n\n{}",
        hostile(
            "flip",
            "action = \"fail-if\"\npath = \"/switch/fail\"",
            "[job.grants]\nfs = [{ host = \"switch\", guest = \"/switch\", access = \"ro\", create = true }]"
        )
    ));
    env.install_guest("opsd-test-hostile");
    std::fs::create_dir_all(env.path("switch")).unwrap();
    std::fs::write(env.path("switch/fail"), "").unwrap();
    let daemon = env.daemon();
    let t = Instant::now();
    let failed = env.run_job("flip");
    assert_eq!(failed["status"], "failed");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the dead endpoint delayed nothing"
    );
    let n = hooks
        .recv_timeout(Duration::from_secs(10))
        .expect("a failure notification");
    assert_eq!(n["event"], "failure");
    assert_eq!(n["job"], "flip");
    assert_eq!(n["run"]["id"], failed["id"]);
    assert_eq!(n["run"]["summary"], "/switch/fail exists");

    std::fs::remove_file(env.path("switch/fail")).unwrap();
    let ok = env.run_job("flip");
    assert_eq!(ok["status"], "ok");
    let n = hooks
        .recv_timeout(Duration::from_secs(10))
        .expect("a recovered notification");
    assert_eq!(n["event"], "recovered");
    assert_eq!(n["run"]["id"], ok["id"]);
    // Another success is no news.
    assert_eq!(env.run_job("flip")["status"], "ok");
    assert!(hooks.recv_timeout(Duration::from_millis(500)).is_err());
    assert!(daemon.stop().success(), "{}", text(&env.run(&["history"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_with_the_reason_until_the_scheduler_runs() {
    let env = Env::new(&hostile("x", "action = \"ok\"", ""));
    let config = opsd::config::Config::load(&env.path("opsd.toml")).unwrap();
    let ops = std::sync::Arc::new(
        opsd::ops::Ops::open(config, std::sync::Arc::new(opsd::clock::SystemClock)).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(opsd::api::serve_http(
        listener,
        ops.clone(),
        opsd::console::router(ops.clone(), None),
        std::future::pending(),
    ));
    let get = |addr: String| tokio::task::spawn_blocking(move || http_get(&addr, "/health"));
    let (status, body) = get(addr.clone()).await.unwrap();
    assert_eq!(status, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unhealthy");
    assert_eq!(health["reasons"][0], "the scheduler loop has not started");
    ops.heartbeat(chrono::Utc::now());
    let (status, _) = get(addr).await.unwrap();
    assert_eq!(status, 200);
}

#[test]
fn tells_systemd_ready_reloading_stopping_and_pets_the_watchdog() {
    let env = Env::new(&hostile("x", "action = \"ok\"", ""));
    let notify_path = env.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let daemon = env.daemon_with_env(&[
        ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "1000000"),
    ]);
    let mut seen = Vec::new();
    let recv_until = |want: &str, seen: &mut Vec<String>| {
        let mut buf = [0u8; 256];
        while !seen.iter().any(|s| s == want) {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {want} from the daemon ({e}); got {seen:?}"));
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    recv_until("READY=1", &mut seen);
    recv_until("WATCHDOG=1", &mut seen);
    daemon.signal(libc::SIGHUP);
    recv_until("RELOADING=1", &mut seen);
    let status = daemon.stop();
    recv_until("STOPPING=1", &mut seen);
    assert!(status.success());
}

#[test]
fn the_example_systemd_unit_verifies() {
    // systemd-analyze checks the unit's syntax and directives; point
    // ExecStart at the binary under test so it exists.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/systemd/opsd.service"
    ))
    .unwrap();
    assert!(
        unit.contains("Type=notify")
            && unit.contains("ProtectSystem=strict")
            && unit.contains("NoNewPrivileges=yes")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opsd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/opsd", crate::util::opsd_bin())
            .replace("Documentation=man:opsd(1)\n", ""),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn max_concurrent_runs_makes_runs_wait_their_turn() {
    let env = Env::new(
        &[
            "max_concurrent_runs = 1\n\n".to_owned(),
            hostile("slow-a", "action = \"chatty\"\nseconds = 2", ""),
            hostile("slow-b", "action = \"chatty\"\nseconds = 2", ""),
        ]
        .concat(),
    );
    env.install_guest("opsd-test-hostile");
    let daemon = env.daemon();
    // Both asked for at once; with one slot the second starts only when
    // the first has finished, and its record's `started` says so.
    let spawn = |job: &str| {
        env.cmd(&["run", job, "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("slow-a"), spawn("slow-b"));
    let recs: Vec<serde_json::Value> = [a, b]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let time = |r: &serde_json::Value, k: &str| {
        chrono::DateTime::parse_from_rfc3339(r[k].as_str().unwrap()).unwrap()
    };
    let (first, second) = if time(&recs[0], "started") <= time(&recs[1], "started") {
        (&recs[0], &recs[1])
    } else {
        (&recs[1], &recs[0])
    };
    assert!(
        time(second, "started") >= time(first, "finished"),
        "runs overlapped with max_concurrent_runs = 1:\n{first:#}\n{second:#}"
    );
    assert!(daemon.stop().success());
}

/// The dashboard's failure panel, run through Prometheus' own rule
/// engine: a job's first failure shows when its series existed at 0
/// before (as opsd now exports them), and would not if the series
/// appeared only with the failure.
#[test]
fn the_failure_panel_sees_the_first_failure() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/grafana/opsd-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let expr = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Failures (last 24h)")
        .and_then(|p| p["targets"][0]["expr"].as_str())
        .expect("the failure panel")
        .replace("$instance", ".*")
        .replace("$job", ".*");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        format!(
            "groups:\n- name: dashboard\n  rules:\n  - alert: FailurePanelShowsAFailure\n    expr: '{} > 0'\n",
            expr.replace('\'', "''")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test.yml"),
        r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'opsd_job_runs_total{instance="h:9779",job="nightly",status="failed"}'
    values: '0 0 0 1 1 1'
  - series: 'opsd_job_runs_total{instance="h:9779",job="appeared-at-one",status="failed"}'
    values: '_ _ _ 1 1 1'
  alert_rule_test:
  - eval_time: 5m
    alertname: FailurePanelShowsAFailure
    exp_alerts:
    - exp_labels: {job: nightly}
"#,
    )
    .unwrap();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool (Debian package prometheus; tests/run installs it)");
    assert!(out.status.success(), "{}", text(&out));
}

/// One job's missing mount or misspelt plugin sets that job aside, said
/// everywhere an operator looks; every other job runs, and the job comes
/// back by itself when its cause goes away.
#[test]
fn one_broken_job_never_stops_the_rest() {
    let (addr, hooks) = webhook_sink();
    let env = Env::new(&format!(
        "[[notify]]\nurl = \"http://{addr}/hook\"\non = [\"broken\"]\n\n{}{}{}",
        hostile("good", "action = \"ok\"", ""),
        hostile(
            "nfs",
            "action = \"ok\"",
            "[job.grants]\nfs = [{ host = \"mnt/nfs\", guest = \"/m\", access = \"ro\" }]"
        ),
        hostile("typo", "action = \"ok\"", "").replace("test-hostile", "test-hostil"),
    ));
    env.install_guest("opsd-test-hostile");
    // Without a daemon, the other jobs run.
    assert_eq!(env.run_job("good")["status"], "ok");
    let out = env.run(&["run", "nfs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("job `nfs` is broken and does not run")
            && String::from_utf8_lossy(&out.stderr).contains("mnt/nfs does not exist"),
        "{}",
        text(&out)
    );

    let daemon = env.daemon();
    assert_eq!(env.run_job("good")["status"], "ok");
    let list = env.json(&["schedule", "list", "--json"]);
    let broken = |name: &str| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .find(|e| e["job"] == name)
            .map(|e| {
                e["broken"]
                    .as_array()
                    .map(|v| v.iter().map(|r| r.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default()
            })
            .unwrap()
    };
    assert!(broken("good").is_empty());
    assert!(broken("nfs")[0].contains("does not exist"), "{list:#}");
    assert!(
        broken("typo")[0].contains("plugin `test-hostil` not found"),
        "the plugin's name is checked at start, not when the job fires: {list:#}"
    );
    let text_list = String::from_utf8_lossy(&env.run(&["schedule", "list"]).stdout).into_owned();
    assert!(
        text_list.contains("typo is broken and does not run: "),
        "{text_list}"
    );
    let (status, body) = http_get(&env.http_addr(), "/health");
    assert_eq!(status, 200, "the daemon does its work: {body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health["broken_jobs"].as_array().map(Vec::len),
        Some(2),
        "{health:#}"
    );
    // Over TCP, which more may reach than the 0600 socket: which jobs, not
    // why (the reasons quote the configuration), nor which file runs.
    assert!(
        health["broken_jobs"][0].get("reasons").is_none(),
        "{health:#}"
    );
    assert!(health.get("config").is_none(), "{health:#}");
    let (_, body) = env.socket_get("/v1/health");
    let private: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        private["broken_jobs"][0]["reasons"][0].is_string(),
        "{private:#}"
    );
    assert!(private["config"]["sha256"].is_string(), "{private:#}");
    let (_, metrics) = http_get(&env.http_addr(), "/metrics");
    assert!(
        metrics.contains("opsd_job_broken{job=\"nfs\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("opsd_job_broken{job=\"good\"} 0\n"),
        "{metrics}"
    );
    let mut told = Vec::new();
    while let Ok(n) = hooks.recv_timeout(Duration::from_secs(10)) {
        assert_eq!(n["event"], "broken");
        told.push(n["job"].as_str().unwrap().to_owned());
        if told.len() == 2 {
            break;
        }
    }
    told.sort();
    assert_eq!(told, ["nfs", "typo"]);

    // The mount appears: the job runs again by itself.
    std::fs::create_dir_all(env.path("mnt/nfs")).unwrap();
    wait_for(Duration::from_secs(60), || {
        daemon.log().contains("job recovered").then_some(())
    })
    .unwrap_or_else(|| panic!("nfs did not recover:\n{}", daemon.log()));
    assert_eq!(env.run_job("nfs")["status"], "ok");
    assert!(daemon.stop().success());
}

/// While a daemon runs, the CLI answers with what it runs: a file broken
/// on disk blocks nothing, and an edit not yet applied is pointed out.
#[test]
fn the_cli_talks_to_what_the_daemon_runs() {
    let env = Env::new(&hostile("first", "action = \"ok\"", ""));
    env.install_guest("opsd-test-hostile");
    let daemon = env.daemon();
    assert_eq!(env.run_job("first")["status"], "ok");
    let good = std::fs::read_to_string(env.path("opsd.toml")).unwrap();

    // A broken file, not reloaded: every command still answers.
    std::fs::write(
        env.path("opsd.toml"),
        format!("max_concurrent_runs = 0\n{good}"),
    )
    .unwrap();
    for args in [
        &["history"][..],
        &["schedule", "list"],
        &["schedule", "show", "first"],
        &["status"],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("does not load") && err.contains("max_concurrent_runs = 0"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(env.run_job("first")["status"], "ok");

    // A job added, not reloaded: the daemon does not know it yet, and the
    // note says why.
    std::fs::write(
        env.path("opsd.toml"),
        format!("{good}{}", hostile("second", "action = \"ok\"", "")),
    )
    .unwrap();
    let out = env.run(&["run", "second"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has changed since the daemon loaded it")
            && err.contains("no job named `second`"),
        "{err}"
    );
    daemon.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(10), || {
        let out = env.run(&["schedule", "list"]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("second"))
            .then_some(())
    })
    .expect("the reload applied the new job");
    let out = env.run(&["run", "second", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("note:"),
        "nothing to note once the daemon runs the file: {}",
        text(&out)
    );
    assert!(daemon.stop().success());
}

/// A broken job's reasons quote what the configuration and plugins said
/// (a plugin's name here, with terminal controls in it): the refusal of a
/// run reaches the terminal escaped, like every other printed string.
#[test]
fn a_broken_jobs_refusal_is_shown_escaped() {
    let env = Env::new(
        &hostile("evil", "action = \"ok\"", "")
            .replace("test-hostile", "x\\u001b]0;pwned\\u0007\\u001b[2J"),
    );
    let daemon = env.daemon();
    let out = env.run(&["run", "evil"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("job `evil` is broken"), "{err:?}");
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{7}'),
        "raw control characters reached the terminal: {err:?}"
    );
    let list = env.run(&["schedule", "list"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains('\u{1b}'));
    assert!(daemon.stop().success());
}
