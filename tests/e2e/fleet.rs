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
    assert_eq!(pg().sql(&db, "SELECT max(version) FROM opsd_schema"), "2");
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

/// A host whose `nul` job prints a NUL byte (which PostgreSQL's jsonb
/// refuses) besides its `tick`.
fn nul_config(postgres: &str, host: &str) -> String {
    format!(
        r#"{}
[[job]]
name = "nul"
plugin = "command"
schedule = "{}"
[job.grants]
exec = ["printf"]
[job.config]
program = "printf"
args = ['nul\000byte\n']
"#,
        host_config(postgres, host, "db"),
        crate::util::far_off()
    )
}

#[test]
fn a_run_postgresql_refuses_does_not_keep_later_runs_from_the_fleet() {
    let db = pg().create_db("fleetnul");
    let env = Env::new(&nul_config(&conn(&db), "delta"));
    let _daemon = env.daemon();
    let poison = env.run_job("nul");
    let local = json_of(&env, &["history", "--json"]);
    assert!(
        local.to_string().contains("\\u0000"),
        "the record holds the NUL: {local:#}"
    );
    let later = env.run_job("tick");
    let runs = central_runs(&env, 2);
    let ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&later["id"].as_str().unwrap()), "{runs:#?}");
    assert!(ids.contains(&poison["id"].as_str().unwrap()), "{runs:#?}");
    let outbox = wait_for(Duration::from_secs(10), || {
        let s = json_of(&env, &["fleet", "status", "--json"]);
        (s["hosts"][0]["outbox"] == 0).then_some(s)
    });
    assert!(outbox.is_some(), "the outbox drains to 0");
}

#[test]
fn rows_another_host_wrote_cannot_break_or_escape_fleet_status() {
    let db = pg().create_db("fleethostile");
    let env = Env::new(&host_config(&conn(&db), "epsilon", "db"));
    let daemon = env.daemon();
    env.run_job("tick");
    central_runs(&env, 1);
    drop(daemon);
    // Another host (same role: the schema's owner) writes what it likes.
    pg().sql(
        &db,
        "ALTER TABLE opsd_hosts ALTER COLUMN version DROP NOT NULL;
         INSERT INTO opsd_hosts (name, labels, version, last_seen, outbox)
         VALUES (E'evil\\x1b[2J', '{\"x\\u001b[31m\": \"red\\u001b[0m\"}', NULL, now(), -5);
         INSERT INTO opsd_hosts (name, labels, version, last_seen)
         VALUES ('odd', '[1, 2]', '1', 'infinity');",
    );
    for args in [&["fleet", "status"][..], &["fleet", "status", "--json"]] {
        let out = env.run(args);
        let said = text(&out);
        assert!(out.status.success(), "opsd {args:?}: {said}");
        assert!(!said.contains("panicked"), "{said}");
        assert!(
            !out.stdout.contains(&0x1b),
            "an escape reached the terminal: {said}"
        );
        assert!(said.contains("epsilon"), "{said}");
    }
}

#[test]
fn postgresql_that_stops_answering_does_not_stall_the_fleet_loop() {
    let db = pg().create_db("fleethang");
    let env = Env::new(&host_config(&conn(&db), "zeta", "db"));
    let daemon = env.daemon();
    env.run_job("tick");
    central_runs(&env, 1);
    // Another session holds the history table: every write to it waits,
    // as it would on a server that accepts and never answers.
    let hold = std::thread::spawn(move || {
        pg().try_sql(
            &db,
            "BEGIN; LOCK TABLE opsd_runs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(40); COMMIT;",
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    env.run_job("tick");
    let said = wait_for(Duration::from_secs(30), || {
        let log = daemon.log();
        log.contains("no answer within").then_some(log)
    });
    assert!(
        said.is_some(),
        "the loop gives up on a silent PostgreSQL and says so: {}",
        daemon.log()
    );
    let _ = hold.join();
    central_runs(&env, 2);
}

/// A man in the middle on a non-local address: answers "no TLS" to the
/// SSLRequest, then asks for the password in clear; returns all it got.
fn downgrading_server() -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    use std::io::{Read, Write};
    // This machine's address on its default route (no packet is sent).
    let ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|u| u.connect("8.8.8.8:53").map(|()| u))
        .and_then(|u| u.local_addr())
        .map(|a| a.ip())
        .expect("a non-loopback address of this machine");
    assert!(!ip.is_loopback(), "{ip}");
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::thread::spawn(move || {
        let mut got = Vec::new();
        let Ok((mut s, _)) = listener.accept() else {
            return got;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut ssl_request = [0u8; 8];
        if s.read_exact(&mut ssl_request).is_err() || s.write_all(b"N").is_err() {
            return got;
        }
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return got;
        }
        let mut startup = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
        if s.read_exact(&mut startup).is_err() {
            return got;
        }
        let _ = s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
        let _ = s.read_to_end(&mut got);
        got
    });
    (addr, seen)
}

#[test]
fn a_server_off_this_machine_cannot_talk_opsd_out_of_tls() {
    for mode in ["", "sslmode=prefer&"] {
        let (addr, seen) = downgrading_server();
        let env = Env::new(&format!(
            "[fleet]\npostgres = \"postgres://opsd:s3cret-pw@{}:{}/x?{mode}connect_timeout=3\"\n",
            addr.ip(),
            addr.port()
        ));
        let out = env.run(&["fleet", "status"]);
        assert!(!out.status.success(), "{}", text(&out));
        let got = seen.join().unwrap();
        assert!(
            !String::from_utf8_lossy(&got).contains("s3cret-pw"),
            "{mode:?}: the password went in clear to a server that refused TLS"
        );
    }
    // verify-full, as the README writes it, is a connection string opsd takes.
    let env =
        Env::new("[fleet]\npostgres = \"postgres://opsd@db.example/opsd?sslmode=verify-full\"\n");
    let out = env.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
}
