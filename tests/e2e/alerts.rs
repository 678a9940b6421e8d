//! `[[alert]]` end to end: a real daemon probes a real local server that
//! the test takes down and back, and webhook receivers see the alert go
//! out (JSON and Slack-shaped, chosen by severity), be reminded, survive
//! a restart without being sent again, and clear. Also `http_status` in a
//! job's `when` through a private CA of the job's `ca` grant.

use crate::daemon::webhook_sink;
use crate::http_check::{Server, private_ca};
use crate::util::{Env, far_off, http_get, text, wait_for};
use serde_json::Value;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// The next body a receiver gets within `secs`.
fn next(hooks: &Receiver<Value>, secs: u64) -> Option<Value> {
    hooks.recv_timeout(Duration::from_secs(secs)).ok()
}

fn status(env: &Env) -> Value {
    env.json(&["status", "--json"])
}

#[test]
fn an_alert_goes_out_is_reminded_survives_a_restart_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), None);
    std::fs::write(&srv.state, "up").unwrap();
    let (json_addr, json_hooks) = webhook_sink();
    let (slack_addr, slack_hooks) = webhook_sink();
    let (pager_addr, pager_hooks) = webhook_sink();
    let url = format!("http://127.0.0.1:{}/health?token=s3cret", srv.http);
    let env = Env::new(&format!(
        r#"
[monitor]
interval = "1s"

[[notify]]
url = "http://{json_addr}/hook"
on = ["alert", "resolved"]

[[notify]]
url = "http://{slack_addr}/slack"
format = "slack"
severities = ["P1", "P2"]

[[notify]]
url = "http://{pager_addr}/pager"
severities = ["P0"]

[[alert]]
name = "api-down"
severity = "P1"
message = "The API answers 5xx <!channel> \"call Bob\""
when = {{ metric = "http_status", url = "{url}", above = 499, for = "2s" }}
repeat = "10s"
"#
    ));
    let daemon = env.daemon();
    // Healthy: nothing is sent, and the alert shows as clear.
    assert!(next(&json_hooks, 4).is_none(), "nothing while healthy");
    let st = status(&env);
    assert_eq!(st["alerts"][0]["alert"], "api-down", "{st:#}");
    assert_eq!(st["alerts"][0]["active"], false, "{st:#}");
    assert_eq!(st["alerts"][0]["value"], 200.0, "{st:#}");

    std::fs::write(&srv.state, "down").unwrap();
    let hook = next(&json_hooks, 20).expect("the alert");
    assert_eq!(hook["event"], "alert", "{hook:#}");
    let a = &hook["alert"];
    assert_eq!(a["name"], "api-down", "{hook:#}");
    assert_eq!(a["severity"], "P1", "{hook:#}");
    assert_eq!(a["reminder"], false, "{hook:#}");
    assert_eq!(a["value"], 503.0, "{hook:#}");
    assert_eq!(a["message"], "The API answers 5xx <!channel> \"call Bob\"");
    // Slack-shaped, escaped: no mention, the quotes kept as JSON.
    let slack = next(&slack_hooks, 10).expect("the slack alert");
    let text_ = slack["text"].as_str().unwrap_or_default();
    assert!(
        text_.starts_with(":rotating_light: *[P1] api-down*")
            && text_.contains("The API answers 5xx &lt;!channel&gt; \"call Bob\"")
            && !text_.contains("<!channel>"),
        "{slack:#}"
    );
    // The P0 pager is not told of a P1.
    assert!(next(&pager_hooks, 1).is_none());

    // Held back between reminders, counted; the gauge says active.
    std::thread::sleep(Duration::from_secs(3));
    let st = status(&env);
    let s = &st["alerts"][0];
    assert_eq!(s["active"], true, "{st:#}");
    assert!(s["suppressed"].as_u64().unwrap_or(0) >= 2, "{st:#}");
    let table = text(&env.run(&["status"]));
    assert!(table.contains("ACTIVE since"), "{table}");
    assert!(table.contains("repeats held back"), "{table}");
    let (_, metrics) = http_get(&env.http_addr(), "/metrics");
    assert!(
        metrics.contains("opsd_alert_active{alert=\"api-down\",severity=\"P1\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("opsd_probe_status{url="), "{metrics}");

    // A reminder after `repeat`, saying how many samples it held back.
    let reminder = next(&json_hooks, 20).expect("a reminder");
    assert_eq!(reminder["event"], "alert", "{reminder:#}");
    assert_eq!(reminder["alert"]["reminder"], true, "{reminder:#}");
    assert!(
        reminder["alert"]["suppressed"].as_u64().unwrap_or(0) >= 5,
        "{reminder:#}"
    );
    let _ = next(&slack_hooks, 10).expect("the slack reminder");

    // A restart while it is still active: not sent again as new.
    daemon.stop();
    let daemon = env.daemon();
    assert!(
        next(&json_hooks, 5).is_none(),
        "re-sent after a restart: {}",
        daemon.log()
    );
    let st = status(&env);
    assert_eq!(st["alerts"][0]["active"], true, "{st:#}");

    // It clears: resolved goes out, the gauge drops.
    std::fs::write(&srv.state, "up").unwrap();
    let hook = next(&json_hooks, 20).expect("resolved");
    assert_eq!(hook["event"], "resolved", "{hook:#}");
    assert_eq!(hook["alert"]["name"], "api-down");
    let slack = next(&slack_hooks, 10).expect("slack resolved");
    assert!(
        slack["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with(":white_check_mark: *[P1] api-down resolved*"),
        "{slack:#}"
    );
    let (_, metrics) = http_get(&env.http_addr(), "/metrics");
    assert!(
        metrics.contains("opsd_alert_active{alert=\"api-down\",severity=\"P1\"} 0\n"),
        "{metrics}"
    );
    // The probed URL's query (a token) does not leave the machine.
    assert!(!hook.to_string().contains("s3cret"), "{hook:#}");
    assert_eq!(
        hook["alert"]["condition"],
        format!(
            "http_status(http://127.0.0.1:{}/health) > 499 for 2s",
            srv.http
        )
    );
    drop(daemon);
}

#[test]
fn a_flapping_alert_is_held_to_the_targets_rate() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), None);
    let (addr, hooks) = webhook_sink();
    let env = Env::new(&format!(
        r#"
[monitor]
interval = "1s"

[[notify]]
url = "http://{addr}/hook"
max_per_minute = 3

[[alert]]
name = "flappy"
severity = "P2"
message = "flapping"
when = {{ metric = "http_status", url = "http://127.0.0.1:{}/flap", above = 499 }}
"#,
        srv.http
    ));
    let daemon = env.daemon();
    std::thread::sleep(Duration::from_secs(10));
    let got: Vec<Value> = hooks.try_iter().collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    let log = daemon.log();
    assert!(
        log.contains("notification dropped: the target's max_per_minute (3) is reached"),
        "{log}"
    );
}

#[test]
fn bad_alerts_are_refused_naming_file_line_and_what_to_write() {
    let env = Env::new(
        r#"
[[alert]]
name = "a"
severity = "P7"
message = "m"
when = { metric = "load1", above = 4 }

[[alert]]
name = "b"
severity = "P2"
when = { metric = "load1", above = 4 }

[[alert]]
name = "c"
severity = "P2"
message = "m"
when = { metric = "lod1", above = 4 }

[[alert]]
name = "a"
severity = "P3"
message = "again"
when = { metric = "load1", above = 4 }

[[alert]]
name = "d"
severity = "P3"
message = "m"
when = { metric = "load1", above = 4 }
ca = ["ca.pem"]

[[notify]]
url = "http://127.0.0.1:9/"
severities = ["P9"]
max_per_minute = 0
"#,
    );
    let out = env.run(&["check"]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    for says in [
        "opsd.toml:5: [[alert]] `a`: unknown severity `P7`; use P0, P1, P2 or P3",
        "opsd.toml:11: [[alert]] `b`: needs a `message`",
        "opsd.toml:16: [[alert]] `c`: when: unknown metric `lod1`",
        "opsd.toml:22: [[alert]] `a` is defined twice",
        "opsd.toml:28: [[alert]] `d`: `ca` applies to an https:// URL's probe",
        "[[notify]] severities: unknown severity `P9`",
        "[[notify]] max_per_minute must be from 1 to 10000, not 0",
    ] {
        assert!(all.contains(says), "no `{says}` in:\n{all}");
    }
}

#[test]
fn a_jobs_http_status_condition_probes_through_its_ca_grant() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(certs.path(), 30);
    let srv = Server::start(certs.path(), Some((&cert, &key)));
    std::fs::write(&srv.state, "up").unwrap();
    let s = srv.https.unwrap();
    let env = Env::new(&format!(
        r#"
[monitor]
interval = "1s"

[[job]]
name = "restart-api"
plugin = "http-check"
schedule = "{}"
when = {{ metric = "http_status", url = "https://127.0.0.1:{s}/health", above = 499, for = "1s", cooldown = "0s" }}
[job.grants]
net = ["https://127.0.0.1:{s}"]
ca = ["{ca}"]
[job.config]
checks = [{{ url = "https://127.0.0.1:{s}/ok" }}]

[[alert]]
name = "tls-api"
severity = "P3"
message = "the API behind the private CA fails"
when = {{ metric = "http_status", url = "https://127.0.0.1:{s}/ok", above = 499 }}
ca = ["{ca}"]
"#,
        far_off(),
        ca = ca.display()
    ));
    let _daemon = env.daemon();
    // Trusted through the job's `ca` grant: the probe reads 200 (an
    // untrusted certificate would be no answer, which holds).
    let st = wait_for(Duration::from_secs(15), || {
        let st = status(&env);
        (st["sample"]["probes"][0]["status"] == 200).then_some(st)
    });
    assert!(st.is_some(), "{:#}", status(&env));
    // The alert's own `ca` trusts the same CA for its URL, which no job
    // probes.
    let st = wait_for(Duration::from_secs(15), || {
        let st = status(&env);
        (st["alerts"][0]["value"] == 200.0).then_some(st)
    });
    assert!(st.is_some(), "{:#}", status(&env));
    std::thread::sleep(Duration::from_secs(3));
    let runs = env.json(&["history", "--job", "restart-api", "--json"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(0), "{runs:#}");
    std::fs::write(&srv.state, "down").unwrap();
    let run = wait_for(Duration::from_secs(20), || {
        let runs = env.json(&["history", "--job", "restart-api", "--json"]);
        runs.as_array()
            .and_then(|r| r.first().cloned())
            .filter(|r| r["status"] != "running")
    })
    .expect("the condition ran the job");
    assert_eq!(run["trigger"], "condition", "{run:#}");
    assert!(
        run["condition"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!(
                "http_status(https://127.0.0.1:{s}/health) > 499 for 1s: 503"
            )),
        "{run:#}"
    );
}

#[test]
fn a_reload_hands_alerts_to_the_new_notify_targets() {
    let (a_addr, a_hooks) = webhook_sink();
    let (b_addr, b_hooks) = webhook_sink();
    let config = |addr: &str, alerts: &[&str]| {
        let mut text =
            format!("[monitor]\ninterval = \"1s\"\n\n[[notify]]\nurl = \"http://{addr}/hook\"\n\n");
        for name in alerts {
            text.push_str(&format!(
                "[[alert]]\nname = \"{name}\"\nseverity = \"P3\"\nmessage = \"memory is in use\"\nwhen = {{ metric = \"memory_used_percent\", above = 0 }}\n\n"
            ));
        }
        text
    };
    let env = Env::new(&config(&a_addr, &["mem"]));
    let daemon = env.daemon();
    let hook = next(&a_hooks, 15).expect("the first target hears of it");
    assert_eq!(hook["alert"]["name"], "mem", "{hook:#}");
    env.write_config(&config(&b_addr, &["mem", "mem2"]));
    daemon.signal(libc::SIGHUP);
    let hook = next(&b_hooks, 15)
        .unwrap_or_else(|| panic!("the new target heard nothing: {}", daemon.log()));
    assert_eq!(hook["alert"]["name"], "mem2", "{hook:#}");
    assert!(
        next(&a_hooks, 2).is_none(),
        "the old target is no longer told"
    );
}
