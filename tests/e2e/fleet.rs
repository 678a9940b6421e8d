//! Fleet mode against the tests' real PostgreSQL: daemons with their own
//! data directories and host names copy every finished run to one central
//! history, `opsd fleet status` names them, and a run made while
//! PostgreSQL cannot be reached waits in the host's outbox (through a
//! kill -9) until it can.

use crate::pg::pg;
use crate::util::{Env, text, wait_for};
use serde_json::Value;
use std::time::Duration;

/// The test server's connection string for a database of its own.
fn conn(db: &str) -> String {
    format!(
        "host={} port={} user=postgres dbname={db}",
        pg().socket_dir.display(),
        pg().port
    )
}

/// A host of the fleet: its `[fleet]` and one command job.
fn host_config(postgres: &str, host: &str, role: &str) -> String {
    format!(
        r#"[fleet]
postgres = "{postgres}"
host = "{host}"
labels = {{ role = "{role}" }}

[[job]]
name = "tick"
plugin = "command"
schedule = "{}"
[job.grants]
exec = ["true"]
[job.config]
program = "true"
"#,
        crate::util::far_off()
    )
}

fn json_of(env: &Env, args: &[&str]) -> Value {
    let out = env.run(args);
    assert!(out.status.success(), "opsd {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)))
}

/// The central history's runs, once it holds `n`.
fn central_runs(env: &Env, n: usize) -> Vec<Value> {
    wait_for(Duration::from_secs(20), || {
        let all = json_of(env, &["history", "--fleet", "--json", "--limit", "100"]);
        let runs = all.as_array().cloned().unwrap_or_default();
        (runs.len() >= n).then_some(runs)
    })
    .unwrap_or_else(|| {
        panic!(
            "the central history never held {n} runs: {}",
            text(&env.run(&["history", "--fleet", "--json"]))
        )
    })
}

#[test]
fn every_hosts_runs_reach_the_central_history_and_fleet_status_names_the_hosts() {
    let db = pg().create_db("fleet");
    let alpha = Env::new(&host_config(&conn(&db), "alpha", "db"));
    let beta = Env::new(&host_config(&conn(&db), "beta", "web"));
    let _a = alpha.daemon();
    let _b = beta.daemon();
    let ran_alpha = alpha.run_job("tick");
    let ran_beta = beta.run_job("tick");
    assert_eq!(ran_alpha["status"], "ok", "{ran_alpha:#}");

    let runs = central_runs(&alpha, 2);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for (env, host, ran) in [(&alpha, "alpha", &ran_alpha), (&beta, "beta", &ran_beta)] {
        let central = runs
            .iter()
            .find(|r| r["id"] == ran["id"])
            .unwrap_or_else(|| panic!("{host}'s run is not central: {runs:#?}"));
        assert_eq!(central["host"], host);
        // Every field of the host's own record, as `history --json` has it.
        let local = json_of(env, &["history", "--json"]);
        let mut expected = local[0].clone();
        expected["host"] = Value::from(host);
        assert_eq!(central, &expected);
    }
    // From either host, and per host.
    let only_beta = json_of(&alpha, &["history", "--fleet", "--host", "beta", "--json"]);
    assert_eq!(only_beta.as_array().unwrap().len(), 1, "{only_beta:#}");
    assert_eq!(only_beta[0]["host"], "beta");
    let table = text(&beta.run(&["history", "--fleet"]));
    assert!(
        table.contains("HOST") && table.contains("alpha") && table.contains("tick"),
        "{table}"
    );

    let status = json_of(&beta, &["fleet", "status", "--json"]);
    let hosts = status["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"], "{status:#}");
    assert_eq!(hosts[0]["labels"]["role"], "db");
    assert_eq!(hosts[1]["labels"]["role"], "web");
    assert_eq!(hosts[0]["outbox"], 0);
    assert!(hosts[0]["version"].as_str().unwrap().starts_with("0."));
    assert!(hosts[0]["last_seen"].is_string());
    let table = text(&alpha.run(&["fleet", "status"]));
    assert!(
        table.contains("role=db") && table.contains("beta"),
        "{table}"
    );

    // The schema is opsd's own, versioned; a second start migrates nothing.
    assert_eq!(pg().sql(&db, "SELECT max(version) FROM opsd_schema"), "1");
}

#[test]
fn runs_made_while_postgresql_is_away_wait_in_the_outbox_through_a_crash() {
    let db = pg().create_db("fleetdown");
    // A port nothing listens on: PostgreSQL "down".
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let away = format!("host=127.0.0.1 port={closed} user=postgres dbname={db} connect_timeout=2");
    let env = Env::new(&host_config(&away, "gamma", "db"));
    let daemon = env.daemon();
    let first = env.run_job("tick");
    let second = env.run_job("tick");
    assert_eq!(first["status"], "ok", "host jobs carry on: {first:#}");
    assert_eq!(second["status"], "ok");
    let said = wait_for(Duration::from_secs(20), || {
        let log = daemon.log();
        log.contains("runs wait in the outbox").then_some(log)
    });
    assert!(
        said.is_some(),
        "the daemon says where the runs are: {}",
        daemon.log()
    );
    // A crash while the runs wait: the outbox is in the store.
    daemon.kill9();

    // PostgreSQL "comes back" (the host is pointed at it) and the daemon
    // restarts: both runs reach the central history, once each.
    env.write_config(&host_config(&conn(&db), "gamma", "db"));
    let _daemon = env.daemon();
    let runs = central_runs(&env, 2);
    let mut ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut want = [
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    ];
    want.sort_unstable();
    assert_eq!(ids, want, "{runs:#?}");
    let status = wait_for(Duration::from_secs(10), || {
        let s = json_of(&env, &["fleet", "status", "--json"]);
        (s["hosts"][0]["outbox"] == 0).then_some(s)
    });
    assert!(status.is_some(), "the outbox drains to 0");
    let (_, metrics) = crate::util::http_get(&env.http_addr(), "/metrics");
    assert!(metrics.contains("opsd_fleet_outbox_runs 0\n"), "{metrics}");
    assert!(
        metrics.contains("opsd_fleet_seconds_since_contact "),
        "{metrics}"
    );
    assert_eq!(
        pg().sql(&db, "SELECT count(*) FROM opsd_runs"),
        "2",
        "copied once each"
    );
}

#[test]
fn a_fleet_section_with_mistakes_is_refused_naming_the_line() {
    let env = Env::new("[fleet]\nhost = \"alpha\"\n");
    let out = env.run(&["check"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("opsd.toml:4: [fleet] needs postgres = \"postgres://...\" or postgres_env"),
        "{}",
        text(&out)
    );
    env.write_config(
        "[fleet]\npostgres_env = \"OPSD_TEST_NO_SUCH_VAR\"\nlabels = { Role = \"db\" }\n",
    );
    let out = env.run(&["check"]);
    assert!(
        text(&out).contains("[fleet] labels: `Role = \"db\"`: a label is a lowercase name"),
        "{}",
        text(&out)
    );
    env.write_config("[fleet]\npostgres_env = \"OPSD_TEST_NO_SUCH_VAR\"\n");
    let out = env.run(&["fleet", "status"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "postgres_env names OPSD_TEST_NO_SUCH_VAR, which is not set in opsd's environment"
        ),
        "{}",
        text(&out)
    );
    // The password in a connection string never shows in a message.
    env.write_config(
        "[fleet]\npostgres = \"postgres://opsd:s3cret-pw@127.0.0.1:1/x?connect_timeout=1\"\n",
    );
    let out = env.run(&["fleet", "status"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("cannot reach the fleet's PostgreSQL (127.0.0.1:1/x)"),
        "{said}"
    );
    assert!(!said.contains("s3cret-pw"), "{said}");
}
