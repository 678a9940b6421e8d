//! Fleet jobs against a real PostgreSQL: three daemons on this machine,
//! each with its own data directory and host name, share one fleet. A
//! fleet job runs once per slot over all of them; a host killed mid-run
//! loses its slot to another; PostgreSQL stopped for half a minute loses
//! no run and pauses no host job; labels say where a job may run.

use crate::pg::{Pg, PrivatePg, pg};
use crate::util::{Daemon, Env, text, wait_for};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A connection string for `db` on `server`.
fn conn(server: &Pg, db: &str) -> String {
    format!(
        "host={} port={} user=postgres dbname={db}",
        server.socket_dir.display(),
        server.port
    )
}

/// A host of the fleet with these jobs.
fn host(postgres: &str, name: &str, role: &str, lease: &str, jobs: &str) -> String {
    format!(
        "[fleet]\npostgres = \"{postgres}\"\nhost = \"{name}\"\nlease = \"{lease}\"\nlabels = {{ role = \"{role}\" }}\n\n{jobs}"
    )
}

/// A command job running `program args`.
fn job(name: &str, schedule: &str, extra: &str, program: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"command\"\nschedule = \"{schedule}\"\n{extra}\n[job.grants]\nexec = [\"{program}\"]\n[job.config]\nprogram = \"{program}\"\nargs = [{}]\n\n",
        args.join(", ")
    )
}

/// Three hosts of one fleet, their daemons started.
fn three(postgres: &str, lease: &str, roles: [&str; 3], jobs: &str) -> Vec<(Env, Daemon)> {
    ["alpha", "beta", "gamma"]
        .iter()
        .zip(roles)
        .map(|(name, role)| {
            let env = Env::new(&host(postgres, name, role, lease, jobs));
            let d = env.daemon();
            (env, d)
        })
        .collect()
}

/// Waits until every host has said it is alive.
fn all_seen(server: &Pg, db: &str, n: usize) {
    let seen = wait_for(Duration::from_secs(30), || {
        server
            .try_sql(db, "SELECT count(*) FROM opsd_hosts")
            .ok()
            .filter(|c| c.parse::<usize>().unwrap_or(0) >= n)
    });
    assert!(seen.is_some(), "{n} hosts never said they were alive");
}

/// A host's local history, every record.
fn local(env: &Env) -> Vec<Value> {
    let out = env.run(&["history", "--json", "--limit", "100000"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("history --json: {e}: {}", text(&out)))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every finished run in the hosts' own histories, by id.
fn union(hosts: &[(Env, Daemon)]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (env, _) in hosts {
        for r in local(env) {
            if r["status"] != "running" {
                ids.insert(r["id"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    ids
}

/// The central history's run ids.
fn central(server: &Pg, db: &str) -> BTreeSet<String> {
    server
        .try_sql(db, "SELECT run_id FROM opsd_runs ORDER BY 1")
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Checks that the central history is the union of the hosts' (as the
/// hosts go on running): every run finished now reaches it, and it
/// holds nothing no host has.
fn central_is_the_union(server: &Pg, db: &str, hosts: &[(Env, Daemon)]) {
    let now = union(hosts);
    let reached = wait_for(Duration::from_secs(60), || {
        let c = central(server, db);
        now.is_subset(&c).then_some(c)
    });
    let Some(c) = reached else {
        let c = central(server, db);
        let missing: Vec<&String> = now.difference(&c).take(10).collect();
        let logs: Vec<String> = hosts
            .iter()
            .map(|(e, d)| format!("{}:\n{}", e.path("").display(), d.log()))
            .collect();
        panic!(
            "runs never reached the central history (lost from an outbox?): {missing:?}\n{}",
            logs.join("\n----\n")
        );
    };
    let later = union(hosts);
    let phantom: Vec<&String> = c.difference(&later).collect();
    assert!(phantom.is_empty(), "central runs no host has: {phantom:?}");
}

/// A fleet job firing every second for two minutes (`OPSD_FLEET_SOAK`
/// seconds if set) over three hosts runs each slot exactly once, and
/// every host runs some.
#[test]
fn a_fleet_job_runs_exactly_once_per_slot_over_three_hosts() {
    let soak: i64 = std::env::var("OPSD_FLEET_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let db = pg().create_db("fleetjob");
    let postgres = conn(pg(), &db);
    let tick = job("tick", "* * * * * *", "scope = \"fleet\"", "true", &[]);
    let hosts = three(&postgres, "10s", ["app", "app", "app"], &tick);
    all_seen(pg(), &db, 3);
    // The window, on the database's clock: from a few seconds on, when
    // every host has its schedule going.
    let from = pg().sql(
        &db,
        "SELECT to_char(date_trunc('second', now()) + interval '3 s', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') ",
    );
    std::thread::sleep(Duration::from_secs(soak as u64 + 5));
    central_is_the_union(pg(), &db, &hosts);
    let until = format!("(timestamptz '{from}' + interval '{soak} s')");
    let window = format!(
        "job = 'tick' AND (record->>'scheduled')::timestamptz BETWEEN timestamptz '{from}' AND {until}"
    );
    let per_slot = pg().sql(
        &db,
        &format!(
            "SELECT count(*) FILTER (WHERE n > 1), count(*), coalesce(string_agg(s || ' x' || n, ', ') FILTER (WHERE n > 1), '')
             FROM (SELECT record->>'scheduled' AS s, count(*) AS n FROM opsd_runs
                   WHERE {window} AND status <> 'skipped' GROUP BY 1) x"
        ),
    );
    let fields: Vec<&str> = per_slot.split('|').collect();
    assert_eq!(fields[0], "0", "slots run more than once: {}", fields[2]);
    assert_eq!(
        fields[1],
        (soak + 1).to_string(),
        "slots with a run, of {} in the window (a gap is a slot nobody ran)",
        soak + 1
    );
    let not_ok = pg().sql(
        &db,
        &format!("SELECT count(*) FROM opsd_runs WHERE {window} AND status <> 'ok'"),
    );
    assert_eq!(not_ok, "0", "every run ok, none skipped");
    // Spread over the hosts.
    let by_host = pg().sql(
        &db,
        &format!("SELECT string_agg(host || '=' || n, ',' ORDER BY host) FROM (SELECT host, count(*) n FROM opsd_runs WHERE {window} GROUP BY host) x"),
    );
    let counts: BTreeMap<&str, i64> = by_host
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap_or(0)))
        .collect();
    assert_eq!(counts.len(), 3, "every host runs some: {by_host}");
    for (h, n) in &counts {
        assert!(
            *n >= soak / 10,
            "host {h} ran {n} of {soak} slots: {by_host}"
        );
    }
}

/// The host running a long fleet job is killed with SIGKILL: its lease
/// runs out, another host takes the slot over (the job has a retry), and
/// the history says both attempts truthfully once the host is back.
#[test]
fn a_host_killed_mid_run_loses_its_slot_to_another_within_the_lease() {
    let db = pg().create_db("fleetkill");
    let postgres = conn(pg(), &db);
    let long = job(
        "long",
        &crate::util::far_off(),
        "scope = \"fleet\"\nretries = 1\nretry_backoff = \"1s\"",
        "sleep",
        &["6"],
    );
    let mut hosts = three(&postgres, "3s", ["app", "app", "app"], &long);
    all_seen(pg(), &db, 3);
    // Started by hand on alpha (a manual run claims too).
    let mut run = hosts[0]
        .0
        .cmd(&["run", "long", "--json"])
        .spawn()
        .expect("opsd run");
    let claimed = wait_for(Duration::from_secs(15), || {
        pg().try_sql(&db, "SELECT run_id FROM opsd_claims WHERE job = 'long' AND host = 'alpha' AND ended IS NULL")
            .ok()
            .filter(|r| !r.is_empty())
    })
    .expect("alpha claims the run");
    std::thread::sleep(Duration::from_millis(500));
    let (alpha_env, alpha) = hosts.remove(0);
    let killed = Instant::now();
    alpha.kill9();
    let _ = run.wait();
    // Within the lease (3 s) and a round of the fleet loop (2 s), another
    // host has the slot.
    let taken = wait_for(Duration::from_secs(15), || {
        pg().try_sql(&db, "SELECT host || ' ' || run_id || ' ' || attempt FROM opsd_claims WHERE job = 'long' AND host <> 'alpha'")
            .ok()
            .filter(|r| !r.is_empty())
    })
    .unwrap_or_else(|| panic!("nobody took the slot over: {}", pg().sql(&db, "SELECT * FROM opsd_claims")));
    let took_after = killed.elapsed();
    assert!(
        took_after < Duration::from_secs(3 + 2 + 2),
        "taken over {took_after:?} after the kill"
    );
    let parts: Vec<&str> = taken.split(' ').collect();
    let (new_host, new_run) = (parts[0], parts[1]);
    assert_eq!(parts[2], "2", "the second attempt: {taken}");
    // The new run finishes ok, and says whose slot it took.
    let done = wait_for(Duration::from_secs(30), || {
        hosts.iter().find_map(|(e, _)| {
            local(e)
                .into_iter()
                .find(|r| r["id"] == new_run && r["status"] != "running")
        })
    })
    .expect("the take-over run finishes");
    assert_eq!(done["status"], "ok", "{done:#}");
    assert_eq!(done["attempt"], 2);
    assert_eq!(done["trigger"], "retry");
    assert_eq!(done["fleet"]["took_over"]["host"], "alpha", "{done:#}");
    assert_eq!(done["fleet"]["took_over"]["run"], claimed.as_str());
    // alpha comes back: its own record says the run was interrupted, and
    // the central history holds both attempts, on their hosts.
    let _alpha = alpha_env.daemon();
    let both = wait_for(Duration::from_secs(30), || {
        let rows = pg()
            .try_sql(&db, "SELECT host || ' ' || status || ' ' || (record->>'attempt') FROM opsd_runs WHERE job = 'long' ORDER BY started")
            .ok()?;
        (rows.lines().count() >= 2).then_some(rows)
    })
    .expect("both attempts reach the central history");
    assert_eq!(
        both,
        format!("alpha interrupted 1\n{new_host} ok 2"),
        "the history tells both attempts"
    );
    let claim = pg().sql(
        &db,
        "SELECT status, jsonb_array_length(earlier) FROM opsd_claims WHERE job = 'long'",
    );
    assert_eq!(claim, "ok|1", "the claim ended ok, the lost attempt kept");
}

/// PostgreSQL stopped for 30 s: host jobs never pause, fleet slots are
/// recorded as not run and handed to the catch-up policy when it is
/// back, and no record is lost from any outbox.
#[test]
fn postgresql_stopped_for_half_a_minute_loses_nothing_and_pauses_no_host_job() {
    let mut server = PrivatePg::new();
    let db = server.pg.create_db("fleetstop");
    let postgres = format!("{} connect_timeout=2", conn(&server.pg, &db));
    let jobs = format!(
        "{}{}",
        job("beat", "* * * * * *", "", "true", &[]),
        job(
            "every2",
            "*/2 * * * * *",
            "scope = \"fleet\"\ncatch_up = \"latest\"",
            "true",
            &[]
        )
    );
    let hosts = three(&postgres, "5s", ["app", "app", "app"], &jobs);
    all_seen(&server.pg, &db, 3);
    std::thread::sleep(Duration::from_secs(3));
    let stopped = chrono::Utc::now();
    server.stop();
    std::thread::sleep(Duration::from_secs(30));
    server.start();
    let started = chrono::Utc::now();
    // Some time after, for the loops to reconnect and drain.
    std::thread::sleep(Duration::from_secs(8));
    central_is_the_union(&server.pg, &db, &hosts);
    let t = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .map(|d| d.to_utc())
            .ok()
    };
    let mut skipped_fleet = 0;
    for (env, _) in &hosts {
        let runs = local(env);
        // Every second of the outage has its host job run, on each host.
        let beats: BTreeSet<i64> = runs
            .iter()
            .filter(|r| r["job"] == "beat" && r["status"] == "ok")
            .filter_map(|r| t(&r["scheduled"]))
            .map(|d| d.timestamp())
            .collect();
        for s in stopped.timestamp() + 1..started.timestamp() {
            assert!(
                beats.contains(&s),
                "{}: no host-job run at {s} while PostgreSQL was down",
                env.path("").display()
            );
        }
        for r in &runs {
            if r["job"] == "every2" && r["status"] == "skipped" {
                let summary = r["summary"].as_str().unwrap_or_default();
                assert!(summary.contains("not run by guesswork"), "{summary}");
                skipped_fleet += 1;
            }
        }
    }
    assert!(
        skipped_fleet > 0,
        "slots missed while PostgreSQL was down are recorded"
    );
    // catch_up = "latest" ran the last held slot once, and no slot twice.
    let twice = server.pg.sql(
        &db,
        "SELECT count(*) FROM (SELECT record->>'scheduled' FROM opsd_runs WHERE job = 'every2' AND status = 'ok' GROUP BY 1 HAVING count(*) > 1) x",
    );
    assert_eq!(twice, "0", "no fleet slot ran twice");
    let caught_up = server.pg.sql(
        &db,
        "SELECT count(*) FROM opsd_runs WHERE job = 'every2' AND record->>'trigger' = 'catch-up' AND status = 'ok'",
    );
    assert!(
        caught_up.parse::<i64>().unwrap_or(0) >= 1,
        "the latest held slot ran once PostgreSQL was back"
    );
}

/// `on = { role = "db" }`: only hosts with that label run the job; the
/// others never do, and running it by hand there says where it runs.
#[test]
fn a_job_on_role_db_never_runs_on_other_hosts() {
    let db = pg().create_db("fleetlabels");
    let postgres = conn(pg(), &db);
    let jobs = job(
        "dbonly",
        "* * * * * *",
        "scope = \"fleet\"\non = { role = \"db\" }",
        "true",
        &[],
    );
    let hosts = three(&postgres, "10s", ["db", "web", "web"], &jobs);
    all_seen(pg(), &db, 3);
    std::thread::sleep(Duration::from_secs(8));
    let by_host = pg().sql(
        &db,
        "SELECT string_agg(DISTINCT host, ',') FROM opsd_claims WHERE job = 'dbonly'",
    );
    assert_eq!(by_host, "alpha", "only the db host claims");
    for (env, _) in &hosts[1..] {
        assert!(
            local(env).iter().all(|r| r["job"] != "dbonly"),
            "a web host has a dbonly record"
        );
        let out = env.run(&["run", "dbonly"]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("for hosts with role=db"),
            "{}",
            text(&out)
        );
    }
    let ran = local(&hosts[0].0)
        .iter()
        .filter(|r| r["job"] == "dbonly" && r["status"] == "ok")
        .count();
    assert!(ran >= 5, "alpha runs every slot: {ran}");

    // What the fleet says of its jobs, from any host.
    let web = &hosts[2].0;
    let status = web.json(&["fleet", "status", "--json"]);
    let jobs = status["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 1, "{status:#}");
    assert_eq!(jobs[0]["name"], "dbonly");
    assert_eq!(jobs[0]["hosts"], serde_json::json!(["alpha"]), "{status:#}");
    assert_eq!(jobs[0]["last_host"], "alpha");
    assert!(jobs[0]["next_slot"].is_string(), "{status:#}");
    // (The same rows; the slots move on every second between the calls.)
    let listed = web.json(&["schedule", "list", "--fleet", "--json"]);
    assert_eq!(listed[0]["name"], jobs[0]["name"], "{listed:#}");
    assert_eq!(listed[0]["hosts"], jobs[0]["hosts"]);
    assert_eq!(listed[0]["definition"], jobs[0]["definition"]);
    let table = text(&web.run(&["schedule", "list", "--fleet"]));
    assert!(
        table.contains("FLEET JOB") && table.contains("dbonly") && table.contains("on alpha"),
        "{table}"
    );
    // The fleet's report, per host and per job, in every format.
    let report = web.json(&["report", "--fleet", "--format", "json"]);
    let by_host: BTreeMap<String, Value> = report["hosts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|h| (h["name"].as_str().unwrap_or_default().to_owned(), h))
        .collect();
    assert_eq!(by_host.len(), 3, "{report:#}");
    assert!(
        by_host["alpha"]["runs"].as_u64().unwrap_or(0) >= 5,
        "{report:#}"
    );
    assert_eq!(by_host["beta"]["runs"], 0);
    assert_eq!(by_host["alpha"]["labels"], "role=db");
    assert!(
        report["jobs"]
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["name"] == "dbonly")),
        "{report:#}"
    );
    for (format, header) in [
        ("md", "## Hosts"),
        ("html", "<h2>Hosts</h2>"),
        ("text", "host alpha (role=db)"),
    ] {
        let out = text(&web.run(&["report", "--fleet", "--format", format]));
        assert!(
            out.contains(header) && out.contains("dbonly"),
            "{format}: {out}"
        );
    }
    let (_, metrics) = crate::util::http_get(&hosts[0].0.http_addr(), "/metrics");
    let won = metrics
        .lines()
        .find_map(|l| l.strip_prefix("opsd_fleet_claims_total{outcome=\"won\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(won >= 5, "{metrics}");
    assert!(
        metrics.contains("opsd_fleet_jobs_disagreeing 0\n"),
        "{metrics}"
    ); // Every fleet figure the example Grafana dashboard charts is there.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana/opsd-dashboard.json"
    ))
    .unwrap_or_default();
    let charted: BTreeSet<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("opsd_fleet_"))
        .collect();
    assert!(charted.len() >= 6, "{charted:?}");
    for name in charted {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "the dashboard charts {name}, which a fleet host's /metrics lacks"
        );
    }
}

/// Two hosts define the same fleet job differently: the one that did not
/// set the fleet's definition says so loudly and runs nothing, until its
/// configuration agrees.
#[test]
fn a_host_with_a_different_definition_says_so_and_does_not_run_it() {
    let db = pg().create_db("fleetdef");
    let postgres = conn(pg(), &db);
    let echo = |word: &str| job("greet", "* * * * * *", "scope = \"fleet\"", "echo", &[word]);
    let alpha = Env::new(&host(&postgres, "alpha", "app", "10s", &echo("hello")));
    let _a = alpha.daemon();
    all_seen(pg(), &db, 1);
    std::thread::sleep(Duration::from_secs(3));
    let beta = Env::new(&host(&postgres, "beta", "app", "10s", &echo("goodbye")));
    let b = beta.daemon();
    let said = wait_for(Duration::from_secs(20), || {
        let log = b.log();
        log.contains("differs from the one the fleet runs")
            .then_some(log)
    });
    assert!(said.is_some(), "beta says so: {}", b.log());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        local(&beta).iter().all(|r| r["status"] != "ok"),
        "beta ran a job the fleet defines differently"
    );
    let status = alpha.json(&["fleet", "status", "--json"]);
    assert_eq!(
        status["jobs"][0]["disagreeing"],
        serde_json::json!(["beta"]),
        "{status:#}"
    );
    let (_, metrics) = crate::util::http_get(&beta.http_addr(), "/metrics");
    assert!(
        metrics.contains("opsd_fleet_jobs_disagreeing 1\n"),
        "{metrics}"
    );
    // beta's operator makes it agree (a reload): it runs slots again.
    beta.write_config(&host(&postgres, "beta", "app", "10s", &echo("hello")));
    b.signal(libc::SIGHUP);
    let ran = wait_for(Duration::from_secs(30), || {
        local(&beta)
            .iter()
            .any(|r| r["job"] == "greet" && r["status"] == "ok")
            .then_some(())
    });
    assert!(
        ran.is_some(),
        "beta, agreeing now, runs some slots: {}",
        b.log()
    );
    let twice = pg().sql(
        &db,
        "SELECT count(*) FROM (SELECT record->>'scheduled' FROM opsd_runs WHERE status = 'ok' GROUP BY 1 HAVING count(*) > 1) x",
    );
    assert_eq!(twice, "0");
}

/// Hosts whose clocks are 8 s ahead and 90 s behind the database's
/// (libfaketime) neither run a slot before its time nor repeat one.
#[test]
fn hosts_with_skewed_clocks_neither_steal_nor_repeat_a_slot() {
    let db = pg().create_db("fleetclock");
    let postgres = conn(pg(), &db);
    let tick = job("tick", "* * * * * *", "scope = \"fleet\"", "true", &[]);
    let mut hosts = Vec::new();
    for (name, skew) in [
        ("alpha", None),
        ("beta", Some("+8s")),
        ("gamma", Some("-90s")),
    ] {
        let env = Env::new(&host(&postgres, name, "app", "10s", &tick));
        let d = match skew {
            None => env.daemon(),
            Some(offset) => env.daemon_with_env(&[
                (
                    "LD_PRELOAD",
                    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                ),
                ("FAKETIME", offset),
                ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ]),
        };
        hosts.push((env, d));
    }
    all_seen(pg(), &db, 3);
    std::thread::sleep(Duration::from_secs(20));
    let offsets = pg().sql(&db, "SELECT string_agg(name || '=' || (clock_offset_ms / 1000), ',' ORDER BY name) FROM opsd_hosts");
    assert!(
        offsets.contains("beta=8") || offsets.contains("beta=7"),
        "fleet status tells each host's skew: {offsets}"
    );
    assert!(
        offsets.contains("gamma=-90") || offsets.contains("gamma=-89"),
        "{offsets}"
    );
    // No slot was claimed before its time on the database's clock.
    let early = pg().sql(
        &db,
        "SELECT count(*) FROM opsd_claims WHERE claimed < scheduled - interval '1 second'",
    );
    assert_eq!(early, "0", "a slot ran before its time: {}", pg().sql(&db, "SELECT host, slot, claimed FROM opsd_claims WHERE claimed < scheduled - interval '1 second' LIMIT 5"));
    // None ran twice, and the host 90 s behind found every slot taken.
    let twice = pg().sql(
        &db,
        "SELECT count(*) FROM (SELECT record->>'scheduled' FROM opsd_runs WHERE status = 'ok' GROUP BY 1 HAVING count(*) > 1) x",
    );
    assert_eq!(twice, "0");
    let gamma = pg().sql(&db, "SELECT count(*) FROM opsd_claims WHERE host = 'gamma'");
    assert_eq!(gamma, "0", "the host 90 s behind took no slot");
    let beta = pg().sql(&db, "SELECT count(*) FROM opsd_claims WHERE host = 'beta'");
    assert!(
        beta.parse::<i64>().unwrap_or(0) > 0,
        "the host ahead still runs slots, at their time"
    );
    drop(hosts);
}
