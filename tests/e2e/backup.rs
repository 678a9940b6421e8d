//! The backup plugin against a real PostgreSQL: dumps that restore, a
//! restore drill, archives and secrets, nothing left by a failure, and
//! retention over two years of backups.

use crate::pg::pg;
use crate::util::{Env, SmallDisk, text};
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn listing(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// A shop database: two tables, thousands of rows, some of them dead.
fn shop() -> String {
    let db = pg().create_db("shop");
    pg().sql(
        &db,
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
         INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 20000) g;
         CREATE TABLE orders (id serial PRIMARY KEY, item int REFERENCES items(id), qty int);
         INSERT INTO orders (item, qty) SELECT (g % 20000) + 1, g % 7 FROM generate_series(1, 5000) g;
         UPDATE items SET price = price + 1 WHERE id % 2 = 0;",
    );
    db
}

fn backup_job(name: &str, db: &str, verify: &str, extra_sources: &str) -> String {
    format!(
        r#"
[[job]]
name = "{name}"
plugin = "backup"
schedule = "@daily"
[job.grants]
fs = [
  {{ host = "backups", guest = "/backups", access = "rw", create = true }},
  {{ host = "app", guest = "/app", access = "ro", create = true }},
]
exec = ["pg_dump", "pg_restore", "pg_dumpall", "psql", "tar", "gzip", "sh"]
net = ["{unix}"]
[job.config]
target = "/backups"
verify = "{verify}"
postgres = {conn}
[[job.config.sources]]
kind = "postgres"
name = "shop"
database = "{db}"
globals = true
{extra_sources}
"#,
        conn = pg().conn_toml(),
        unix = pg().unix_grant()
    )
}

const APP_SOURCES: &str = r#"
[[job.config.sources]]
kind = "directory"
name = "uploads"
path = "/app/uploads"
exclude = ["*.tmp"]
[[job.config.sources]]
kind = "file"
name = "env"
path = "/app/.env"
"#;

fn checksum(db: &str) -> String {
    pg().sql(
        db,
        "SELECT (SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i) || ' ' || \
         (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o)",
    )
}

#[test]
fn backs_up_postgres_a_directory_and_a_secret_and_the_dump_restores() {
    let db = shop();
    let env = Env::new(&backup_job("nightly", &db, "restore", APP_SOURCES));
    std::fs::create_dir_all(env.path("app/uploads/img")).unwrap();
    std::fs::write(env.path("app/uploads/img/a.png"), vec![7u8; 50_000]).unwrap();
    std::fs::write(env.path("app/uploads/notes.txt"), "hello").unwrap();
    std::fs::write(env.path("app/uploads/scratch.tmp"), "skip me").unwrap();
    std::fs::write(env.path("app/.env"), "DATABASE_URL=postgres://secret\n").unwrap();

    let rec = env.run_job("nightly");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let summary = rec["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("backed up shop (")
            && summary.contains("uploads (")
            && summary.contains("env ("),
        "{summary}"
    );
    assert!(
        summary.ends_with("to /backups; kept 3, pruned 0"),
        "{summary}"
    );

    let files = listing(&env.path("backups"));
    assert_eq!(
        files.len(),
        10,
        "4 artifacts, the dump's row counts and 5 sidecars: {files:?}"
    );
    assert!(files.iter().all(|f| !f.ends_with(".partial")));
    // A dump holds every row: backups are private unless `mode` says.
    for f in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("backups").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o600, "{f} is {mode:o}");
    }
    let find = |suffix: &str| {
        env.path("backups")
            .join(files.iter().find(|f| f.ends_with(suffix)).unwrap())
    };

    // Every artifact matches its sidecar and is listed in the record.
    for a in rec["artifacts"].as_array().unwrap() {
        let host = env
            .path("backups")
            .join(a["path"].as_str().unwrap().trim_start_matches("/backups/"));
        assert_eq!(sha256(&host), a["sha256"].as_str().unwrap());
        let sidecar = std::fs::read_to_string(format!("{}.sha256", host.display())).unwrap();
        assert_eq!(
            sidecar,
            format!(
                "{}  {}\n",
                a["sha256"].as_str().unwrap(),
                host.file_name().unwrap().to_str().unwrap()
            )
        );
    }

    // The dump restores into a fresh database with the same contents.
    let fresh = pg().create_db("restored");
    let out = Command::new(pg().program("pg_restore"))
        .arg("-h")
        .arg(&pg().socket_dir)
        .args([
            "-p",
            &pg().port.to_string(),
            "-U",
            "postgres",
            "--no-owner",
            "-d",
            &fresh,
        ])
        .arg(find(".dump"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(checksum(&fresh), checksum(&db));
    assert!(
        std::fs::read_to_string(find(".globals.sql"))
            .unwrap()
            .contains("CREATE ROLE postgres")
    );

    // The restore drill ran, matched and cleaned up after itself.
    let log = env.json(&["logs", rec["id"].as_str().unwrap(), "--json"]);
    let lines: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "restore drill of shop ({db}): 2 tables, 25000 rows restored, counts match"
        ))),
        "{lines:#?}"
    );
    assert_eq!(scratch_databases("shop"), "0");

    // The archive holds the directory minus the excluded file.
    let out = Command::new("tar")
        .arg("-tzf")
        .arg(find(".tar.gz"))
        .output()
        .unwrap();
    let members = String::from_utf8_lossy(&out.stdout);
    assert!(
        members.contains("./img/a.png") && members.contains("./notes.txt"),
        "{members}"
    );
    assert!(!members.contains("scratch.tmp"));

    // The secret is copied byte for byte, readable by its owner only.
    let copy = find(".copy");
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        "DATABASE_URL=postgres://secret\n"
    );
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let metrics: Vec<&str> = rec["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in [
        "shop_bytes",
        "shop_seconds",
        "uploads_bytes",
        "env_bytes",
        "bytes_total",
        "backups_kept",
        "backups_pruned",
    ] {
        assert!(metrics.contains(&m), "{m} in {metrics:?}");
    }
}

#[test]
fn a_failing_pg_dump_leaves_previous_backups_untouched_and_no_partial_file() {
    let db = shop();
    let env = Env::new(&backup_job("nightly", &db, "read", ""));
    assert_eq!(env.run_job("nightly")["status"], "ok");
    let before: Vec<(String, String)> = listing(&env.path("backups"))
        .into_iter()
        .map(|f| {
            let h = sha256(&env.path("backups").join(&f));
            (f, h)
        })
        .collect();

    env.write_config(&backup_job("nightly", "no_such_database", "read", ""));
    let out = env.run(&["run", "nightly", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "failed");
    let err = rec["error"].as_str().unwrap();
    assert!(
        err.contains("pg_dump of no_such_database exited with 1") && err.contains("does not exist"),
        "{err}"
    );
    let after: Vec<(String, String)> = listing(&env.path("backups"))
        .into_iter()
        .map(|f| {
            let h = sha256(&env.path("backups").join(&f));
            (f, h)
        })
        .collect();
    assert_eq!(
        after, before,
        "the failed run changed nothing in the target"
    );
}

/// A period a backup falls in, as a comparable string.
type Period = fn(&DateTime<Utc>) -> String;

/// Retention in the test's own words: for each rule, walk the backups
/// newest first and keep the newest of each of the first N periods; a
/// backup stays if any rule keeps it.
fn expected_kept(times: &[DateTime<Utc>], rules: &[(usize, Period)]) -> BTreeSet<DateTime<Utc>> {
    let mut sorted = times.to_vec();
    sorted.sort_by(|a, b| b.cmp(a));
    let mut keep = BTreeSet::new();
    for (n, bucket) in rules {
        let mut seen: Vec<String> = Vec::new();
        for t in &sorted {
            let b = bucket(t);
            if !seen.contains(&b) {
                if seen.len() == *n {
                    break;
                }
                seen.push(b);
                keep.insert(*t);
            }
        }
    }
    keep
}

#[test]
fn retention_prunes_two_years_of_backups_after_a_good_run() {
    let now = Utc::now().with_nanosecond(0).unwrap();
    let env = Env::new(
        r#"
[[job]]
name = "secrets"
plugin = "backup"
schedule = "@daily"
[job.grants]
fs = [
  { host = "backups", guest = "/backups", access = "rw", create = true },
  { host = "app", guest = "/app", access = "ro", create = true },
]
[job.config]
target = "/backups"
[[job.config.sources]]
kind = "file"
name = "env"
path = "/app/.env"
[job.config.retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
keep_yearly = 2
"#,
    );
    std::fs::create_dir_all(env.path("backups")).unwrap();
    std::fs::create_dir_all(env.path("app")).unwrap();
    std::fs::write(env.path("app/.env"), "X=1\n").unwrap();
    // Two years of backups, one a day at 03:00, with a few days missing,
    // each with its sidecar; and another source's file that must be left
    // alone.
    let mut times = Vec::new();
    for d in 1..=730 {
        if d % 37 == 0 {
            continue;
        }
        let t = (now - Duration::days(d))
            .with_hour(3)
            .unwrap()
            .with_minute(0)
            .unwrap()
            .with_second(0)
            .unwrap();
        let name = format!("env-{}.copy", t.format("%Y%m%dT%H%M%SZ"));
        std::fs::write(env.path("backups").join(&name), "old").unwrap();
        std::fs::write(env.path("backups").join(format!("{name}.sha256")), "x").unwrap();
        times.push(t);
    }
    std::fs::write(env.path("backups/other-20250101T000000Z.copy"), "keep").unwrap();

    let rules: [(usize, Period); 4] = [
        (7, |t| t.format("%Y-%m-%d").to_string()),
        (4, |t| {
            format!("{}-{}", t.iso_week().year(), t.iso_week().week())
        }),
        (12, |t| t.format("%Y-%m").to_string()),
        (2, |t| t.format("%Y").to_string()),
    ];
    // A dry run lists what would go and deletes nothing. It judges the
    // sets there are: the new one does not exist yet, so on a day when it
    // would open a new week, month or year at once (a Monday that is the
    // 1st, 1 January) the real run prunes more than the dry run said.
    let dry_want = expected_kept(&times, &rules);
    let out = env.run(&["run", "secrets", "--dry-run", "--json"]);
    let dry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listing(&env.path("backups")).len(), times.len() * 2 + 1);

    let rec = env.run_job("secrets");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    // The set is named after the run's scheduled second.
    let scheduled = DateTime::parse_from_rfc3339(rec["scheduled"].as_str().unwrap())
        .unwrap()
        .to_utc()
        .with_nanosecond(0)
        .unwrap();
    let before = times.len();
    times.push(scheduled);
    let want = expected_kept(&times, &rules);
    let left = listing(&env.path("backups"));
    let kept: BTreeSet<DateTime<Utc>> = left
        .iter()
        .filter(|f| f.starts_with("env-") && !f.ends_with(".sha256"))
        .map(|f| {
            DateTime::parse_from_str(&format!("{}+0000", &f[4..20]), "%Y%m%dT%H%M%SZ%z")
                .unwrap()
                .to_utc()
        })
        .collect();
    assert_eq!(kept, want);
    // Each kept backup keeps its sidecar; pruned ones lose both.
    assert_eq!(
        left.iter().filter(|f| f.ends_with(".sha256")).count(),
        want.len()
    );
    assert!(
        left.contains("other-20250101T000000Z.copy"),
        "another source's files are untouched"
    );
    let metric = |r: &Value, name: &str| {
        r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(metric(&rec, "backups_kept") as usize, want.len());
    assert_eq!(
        metric(&rec, "backups_pruned") as usize,
        times.len() - want.len()
    );
    // The dry run predicted exactly what the rules say of the sets it saw.
    assert_eq!(
        metric(&dry, "backups_would_prune") as usize,
        before - dry_want.len(),
        "{dry:#}"
    );
}

#[test]
fn a_set_already_named_for_this_second_is_never_touched() {
    let env = Env::new(
        r#"
[[job]]
name = "secrets"
plugin = "backup"
schedule = "@daily"
[job.grants]
fs = [
  { host = "backups", guest = "/backups", access = "rw", create = true },
  { host = "app", guest = "/app", access = "ro", create = true },
]
[job.config]
target = "/backups"
[[job.config.sources]]
kind = "file"
name = "env"
path = "/app/.env"
"#,
    );
    std::fs::create_dir_all(env.path("backups")).unwrap();
    std::fs::create_dir_all(env.path("app")).unwrap();
    std::fs::write(env.path("app/.env"), "X=2\n").unwrap();
    // Sets named for this second and the next few, as a run a moment ago
    // (or a clock step) would leave them.
    let now = Utc::now().with_nanosecond(0).unwrap();
    let mut before = Vec::new();
    for s in 0..=10 {
        let name = format!(
            "env-{}.copy",
            (now + Duration::seconds(s)).format("%Y%m%dT%H%M%SZ")
        );
        std::fs::write(env.path("backups").join(&name), format!("set {s}")).unwrap();
        std::fs::write(env.path("backups").join(format!("{name}.sha256")), "x").unwrap();
        before.push(name);
    }
    let rec = env.run_job("secrets");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    for (s, name) in before.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(env.path("backups").join(name)).unwrap(),
            format!("set {s}"),
            "{name} was overwritten"
        );
        assert_eq!(
            std::fs::read_to_string(env.path("backups").join(format!("{name}.sha256"))).unwrap(),
            "x"
        );
    }
    let new: Vec<String> = listing(&env.path("backups"))
        .into_iter()
        .filter(|f| !before.contains(f) && !before.iter().any(|b| *f == format!("{b}.sha256")))
        .collect();
    assert_eq!(new.len(), 2, "one new set and its sidecar: {new:?}");
    assert_eq!(
        std::fs::read_to_string(env.path("backups").join(&new[0])).unwrap(),
        "X=2\n"
    );
}

#[test]
#[cfg_attr(
    not(opsd_privileged),
    ignore = "needs root or password-less sudo (mounts a small tmpfs)"
)]
fn a_full_disk_fails_the_backup_cleanly_and_the_daemon_carries_on() {
    let far = crate::util::far_off();
    let env = Env::new(&format!(
        r#"
[[job]]
name = "uploads"
plugin = "backup"
schedule = "{far}"
[job.grants]
fs = [
  {{ host = "backups", guest = "/backups", access = "rw" }},
  {{ host = "app", guest = "/app", access = "ro", create = true }},
]
# tar --gzip runs its compressor through `sh -c`: pinned, so this sh runs
# gzip and nothing else.
exec = [
  "tar",
  "gzip",
  {{ program = "sh", args = ["-c", "gzip"] }},
  {{ program = "sh", args = ["-c", "gzip -d"] }},
]
[job.config]
target = "/backups"
{APP_SOURCES}
[[job]]
name = "small"
plugin = "backup"
schedule = "{far}"
[job.grants]
fs = [
  {{ host = "backups", guest = "/backups", access = "rw" }},
  {{ host = "app", guest = "/app", access = "ro", create = true }},
]
[job.config]
target = "/backups"
[[job.config.sources]]
kind = "file"
name = "env"
path = "/app/.env"
"#
    ));
    let _disk = SmallDisk::mount(env.path("backups"), "1m");
    std::fs::create_dir_all(env.path("app/uploads")).unwrap();
    std::fs::write(env.path("app/.env"), "X=1\n").unwrap();
    // 3 MiB that gzip cannot shrink: the archive cannot fit in 1 MiB.
    let mut noise = vec![0u8; 3 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(env.path("app/uploads/blob.bin"), &noise).unwrap();
    let daemon = env.daemon();
    let out = env.run(&["run", "uploads", "--json"]);
    let rec: Value = serde_json::from_slice(&out.stdout).expect("a run record");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap_or_default();
    eprintln!("disk full: {error}");
    assert!(error.contains("No space left on device"), "{rec:#}");
    // Nothing that looks like a good backup, no partial left behind.
    let left = listing(&env.path("backups"));
    assert!(
        left.iter().all(|n| !n.ends_with(".tar.gz")
            && !n.ends_with(".partial")
            && !n.ends_with(".sha256")),
        "{left:?}"
    );
    // The daemon is fine, and a backup that fits still works there.
    let (code, body) = env.socket_get("/v1/health");
    assert_eq!(code, 200, "{body}");
    let ok = env.run_job("small");
    assert_eq!(ok["status"], "ok", "{ok:#}");
    assert!(daemon.stop().success());
}

/// A weekly drill job beside a nightly backup of the same set.
fn drill_config(db: &str) -> String {
    let backup = backup_job("nightly", db, "read", "")
        .replace(
            "verify = \"read\"",
            "verify = \"read\"\nrecord_counts = true",
        )
        .replace(
            "globals = true",
            "globals = true\ncheck_query = \"SELECT sum(qty) || '/' || max(id) FROM orders\"",
        );
    format!(
        r#"{backup}
[[job]]
name = "drill"
plugin = "restore-drill"
schedule = "0 4 * * sun"
[job.grants]
fs = [{{ host = "backups", guest = "/backups", access = "ro" }}]
exec = ["pg_restore", "psql"]
net = ["{unix}"]
[job.config]
target = "/backups"
postgres = {conn}
[[job.config.sources]]
kind = "postgres"
name = "shop"
database = "{db}"
"#,
        conn = pg().conn_toml(),
        unix = pg().unix_grant()
    )
}

/// Scratch databases of one source's drills. Each test drills a source
/// name of its own: tests run in parallel against one server.
fn scratch_databases(source: &str) -> String {
    pg().sql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'opsd\\_verify\\_{source}\\_%'"
        ),
    )
}

/// Rewrites a dump's sha256 sidecar to match it, as a tool that
/// "repairs" checksums would.
fn reseal(dump: &std::path::Path) {
    let name = dump.file_name().unwrap().to_str().unwrap();
    std::fs::write(
        format!("{}.sha256", dump.display()),
        format!("{}  {name}\n", sha256(dump)),
    )
    .unwrap();
}

#[test]
fn a_drill_restores_the_newest_dump_and_holds_it_to_the_counts_at_dump_time() {
    let db = shop();
    let env = Env::new(&drill_config(&db).replace("name = \"shop\"", "name = \"drillshop\""));
    std::fs::create_dir_all(env.path("backups")).unwrap();
    let check = env.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check));
    let rec = env.run_job("nightly");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let files = listing(&env.path("backups"));
    let dump = env
        .path("backups")
        .join(files.iter().find(|f| f.ends_with(".dump")).unwrap());
    let counts: Value =
        serde_json::from_slice(&std::fs::read(format!("{}.counts", dump.display())).unwrap())
            .unwrap();
    assert_eq!(
        counts["before"]["tables"]["public.items"], 20000,
        "{counts:#}"
    );
    assert_eq!(
        counts["after"]["tables"]["public.orders"], 5000,
        "{counts:#}"
    );

    // The database moves on after the dump; the drill still holds the
    // dump to what the database held when it was made.
    pg().sql(&db, "INSERT INTO orders (item, qty) VALUES (1, 1), (2, 2)");
    let rec = env.run_job("drill");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let summary = rec["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("restore drill: drillshop: the dump of ")
            && summary.ends_with(" restored, 2 tables, 25000 rows"),
        "{summary}"
    );
    assert_eq!(crate::util::metric(&rec, "drillshop_drill_rows"), 25000.0);
    assert_eq!(crate::util::metric(&rec, "drillshop_drill_tables"), 2.0);
    assert_eq!(scratch_databases("drillshop"), "0");

    // A scratch database a killed drill left is a full copy of the
    // database: the next drill says so (and leaves it: another job may be
    // drilling a set of the same name).
    let stale = "opsd_verify_drillshop_20200101t000000z";
    pg().sql("postgres", &format!("CREATE DATABASE {stale}"));
    let rec = env.run_job("drill");
    assert_eq!(rec["status"], "warning", "{rec:#}");
    assert!(
        rec["summary"].as_str().unwrap().contains(&format!(
            "scratch databases left by interrupted drills of this set: {stale} (each a full copy of {db}"
        )),
        "{rec:#}"
    );
    pg().sql("postgres", &format!("DROP DATABASE {stale}"));

    // The report shows the set's last good drill, and the drill job is
    // not taken for a backup job.
    let report = env.json(&["report", "--since", "7d", "--format", "json"]);
    let drills = report["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1, "{report:#}");
    assert_eq!(drills[0]["set"], "drillshop");
    assert_eq!(drills[0]["job"], "drill");
    assert_eq!(drills[0]["rows"], 25000);
    let backup_jobs: Vec<&str> = report["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["job"].as_str().unwrap())
        .collect();
    assert_eq!(backup_jobs, ["nightly"]);
    let md = env.run(&["report", "--since", "7d", "--format", "md"]);
    assert!(text(&md).contains("## Restore drills"), "{}", text(&md));

    // A dump that lost a row, its sidecar "repaired" to match: the drill
    // tells it from a database that was written to.
    let partial = pg().create_db("partial");
    pg().sql(
        &partial,
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
         INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 19999) g;
         CREATE TABLE orders (id serial PRIMARY KEY, item int REFERENCES items(id), qty int);
         INSERT INTO orders (item, qty) SELECT (g % 19999) + 1, g % 7 FROM generate_series(1, 5000) g;",
    );
    let out = Command::new(pg().program("pg_dump"))
        .arg("-h")
        .arg(&pg().socket_dir)
        .args(["-p", &pg().port.to_string(), "-U", "postgres", "-Fc", "-f"])
        .arg(&dump)
        .arg(&partial)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reseal(&dump);
    let out = env.run(&["run", "drill", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "failed");
    let err = rec["error"].as_str().unwrap();
    assert!(
        err.contains(&format!(
            "restore drill of drillshop ({db}) failed: the restored dump does not hold what the database held when it was dumped: public.items: 20000 rows in {db} at dump time, 19999 restored"
        )),
        "{err}"
    );
    assert_eq!(scratch_databases("drillshop"), "0");

    // A dump changed behind its sidecar is not restored at all.
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let out = env.run(&["run", "drill", "--json"]);
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "failed");
    let err = rec["error"].as_str().unwrap();
    assert!(
        err.contains("does not match its sha256 sidecar") && err.contains("nothing was restored"),
        "{err}"
    );
    // The report still shows the last good drill, not the failed ones.
    let report = env.json(&["report", "--since", "7d", "--format", "json"]);
    assert_eq!(report["drills"][0]["rows"], 25000, "{report:#}");
}

#[test]
fn table_names_built_to_break_a_query_are_only_counted() {
    let db = shop();
    // Names a line-by-line reading of psql's output would split, and
    // fragments of which would be pasted into SQL.
    pg().sql(
        &db,
        r#"CREATE TABLE "we""ird|na
me" (x int);
           INSERT INTO "we""ird|na
me" VALUES (1), (2), (3);
           CREATE TABLE "a
; DROP TABLE items; --" (y int);
           INSERT INTO "a
; DROP TABLE items; --" VALUES (4);"#,
    );
    let env = Env::new(
        &backup_job("nightly", &db, "restore", "")
            .replace("name = \"shop\"", "name = \"oddnames\""),
    );
    let rec = env.run_job("nightly");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(crate::util::metric(&rec, "oddnames_drill_tables"), 4.0);
    assert_eq!(crate::util::metric(&rec, "oddnames_drill_rows"), 25004.0);
    assert_eq!(pg().sql(&db, "SELECT count(*) FROM items"), "20000");
    assert_eq!(scratch_databases("oddnames"), "0");
}

/// A database user who may create functions in `public` (as the owner of
/// a database does) shadows `format(text, name, name)` for the backup
/// user's counting query; the function tries to make its author a
/// superuser, which only works when a superuser calls it. The counts
/// (on the source, and on the scratch database the restored function
/// lands in) never call it.
#[test]
fn a_function_shadowing_the_counting_query_is_never_called() {
    let db = shop();
    let role = format!("{db}_app");
    pg().sql(
        &db,
        &format!(
            r#"CREATE ROLE {role} LOGIN;
           GRANT CREATE ON SCHEMA public TO {role};
           SET ROLE {role};
           CREATE TABLE public.seen (who text);
           GRANT INSERT ON public.seen TO PUBLIC;
           CREATE FUNCTION public.format(text, name, name) RETURNS text
             LANGUAGE plpgsql AS $f$
           BEGIN
             INSERT INTO public.seen VALUES (current_user);
             BEGIN
               EXECUTE 'ALTER ROLE {role} SUPERUSER';
             EXCEPTION WHEN others THEN NULL;
             END;
             RETURN pg_catalog.format($1, $2, $3);
           END $f$;
           RESET ROLE;"#
        ),
    );
    let env = Env::new(
        &backup_job("nightly", &db, "restore", "")
            .replace("name = \"shop\"", "name = \"shadowed\""),
    );
    let rec = env.run_job("nightly");
    assert_eq!(
        pg().sql(
            "postgres",
            &format!("SELECT rolsuper FROM pg_roles WHERE rolname = '{role}'")
        ),
        "f",
        "the backup user ran the shadowing function"
    );
    assert_eq!(pg().sql(&db, "SELECT count(*) FROM public.seen"), "0");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(scratch_databases("shadowed"), "0");
}

/// Every file of a directory dump, as `sha256sum` prints them from the
/// target: what its manifest sidecar must say.
fn manifest_of(dir: &std::path::Path) -> String {
    let name = dir.file_name().unwrap().to_str().unwrap();
    listing(dir)
        .into_iter()
        .map(|f| format!("{}  {name}/{f}\n", sha256(&dir.join(&f))))
        .collect()
}

/// A nightly directory-format backup with two workers, and a drill job
/// restoring it with two; `verify` and `retention` go into the backup
/// job's config.
fn directory_config(db: &str, verify: &str, retention: &str) -> String {
    format!(
        r#"
[[job]]
name = "nightly"
plugin = "backup"
schedule = "@daily"
[job.grants]
fs = [{{ host = "backups", guest = "/backups", access = "rw", create = true }}]
exec = ["pg_dump", "pg_restore", "pg_dumpall", "psql"]
net = ["{unix}"]
[job.config]
target = "/backups"
verify = "{verify}"
postgres = {conn}
{retention}
[[job.config.sources]]
kind = "postgres"
name = "dirshop"
database = "{db}"
format = "directory"
jobs = 2

[[job]]
name = "drill"
plugin = "restore-drill"
schedule = "0 4 * * sun"
[job.grants]
fs = [{{ host = "backups", guest = "/backups", access = "ro" }}]
exec = ["pg_restore", "psql"]
net = ["{unix}"]
[job.config]
target = "/backups"
postgres = {conn}
[[job.config.sources]]
kind = "postgres"
name = "dirshop"
database = "{db}"
jobs = 2
"#,
        conn = pg().conn_toml(),
        unix = pg().unix_grant()
    )
}

/// Sets the modification time of each path (in that order) two hours back.
fn two_hours_old(paths: &[std::path::PathBuf]) {
    for p in paths {
        let out = Command::new("touch")
            .args(["-h", "-d", "2 hours ago"])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

#[test]
fn a_directory_dump_runs_in_parallel_restores_and_is_held_to_its_manifest() {
    let db = shop();
    let config = directory_config(&db, "restore", "");
    let env = Env::new(&config);
    std::fs::create_dir_all(env.path("backups")).unwrap();
    let check = env.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check));

    // A crash left a directory dump behind two hours ago: it goes.
    let stale = env.path("backups/dirshop-20200101T000000Z.dir.partial");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("toc.dat"), "half a dump").unwrap();
    two_hours_old(&[stale.join("toc.dat"), stale.clone()]);

    // One still being written (an old directory, a fresh file in it) and
    // a name no run of this job makes stay.
    let busy = env.path("backups/dirshop-20200102T000000Z.dir.partial");
    let foreign = env.path("backups/notes.partial");
    for d in [&busy, &foreign] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("toc.dat"), "being written").unwrap();
    }
    two_hours_old(&[busy.clone(), foreign.join("toc.dat"), foreign.clone()]);

    let rec = env.run_job("nightly");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(!stale.exists(), "the stale partial dump was left");
    assert!(busy.join("toc.dat").exists() && foreign.join("toc.dat").exists());
    std::fs::remove_dir_all(&busy).unwrap();
    std::fs::remove_dir_all(&foreign).unwrap();
    let files = listing(&env.path("backups"));
    let dir_name = files.iter().find(|f| f.ends_with(".dir")).unwrap().clone();
    let dir = env.path("backups").join(&dir_name);
    assert!(files.iter().all(|f| !f.ends_with(".partial")), "{files:?}");
    assert_eq!(files.len(), 4, "{files:?}");
    for f in [".dir.sha256", ".dir.counts", ".dir.counts.sha256"] {
        assert!(
            files.contains(&dir_name.replace(".dir", f)),
            "{f} in {files:?}"
        );
    }

    // Private like any backup: the directory 0700, its files 0600.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o700);
    let inside = listing(&dir);
    assert!(inside.contains("toc.dat"), "{inside:?}");
    assert!(
        inside.len() >= 3,
        "a file per table and the TOC: {inside:?}"
    );
    for f in &inside {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }

    // The manifest is `sha256sum -c`'s format, checked from the target.
    let manifest =
        std::fs::read_to_string(env.path("backups").join(format!("{dir_name}.sha256"))).unwrap();
    assert_eq!(manifest, manifest_of(&dir));
    let out = Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{dir_name}.sha256"))
        .current_dir(env.path("backups"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // The record names the directory, its size the sum of its files.
    let artifact = rec["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == format!("/backups/{dir_name}"))
        .unwrap_or_else(|| panic!("{rec:#}"));
    let total: u64 = inside
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum();
    assert_eq!(artifact["size_bytes"], total);
    assert_eq!(artifact["sha256"], Value::Null);

    // The backup's own restore drill ran, and so does the drill job.
    let log = env.json(&["logs", rec["id"].as_str().unwrap(), "--json"]);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().unwrap().starts_with(&format!(
                "restore drill of dirshop ({db}): 2 tables, 25000 rows restored, counts match"
            ))),
        "{log:#}"
    );
    let rec = env.run_job("drill");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(crate::util::metric(&rec, "dirshop_drill_rows"), 25000.0);
    assert_eq!(scratch_databases("dirshop"), "0");

    // pg_restore reads it in parallel, by hand, into the same contents.
    let fresh = pg().create_db("dirrestored");
    let out = Command::new(pg().program("pg_restore"))
        .arg("-h")
        .arg(&pg().socket_dir)
        .args([
            "-p",
            &pg().port.to_string(),
            "-U",
            "postgres",
            "--no-owner",
            "-j",
            "2",
            "-d",
            &fresh,
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(checksum(&fresh), checksum(&db));

    // Whatever changed in the directory since it was sealed, the drill
    // restores nothing and says which file.
    let drill_fails = |what: &str| {
        let out = env.run(&["run", "drill", "--json"]);
        let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rec["status"], "failed", "{what}: {rec:#}");
        let err = rec["error"].as_str().unwrap().to_owned();
        assert_eq!(scratch_databases("dirshop"), "0");
        err
    };
    std::fs::write(dir.join("9999.dat.gz"), "smuggled").unwrap();
    let err = drill_fails("an added file");
    assert!(
        err.contains(&format!("{dir_name}/9999.dat.gz added"))
            && err.contains("nothing was restored"),
        "{err}"
    );
    std::fs::remove_file(dir.join("9999.dat.gz")).unwrap();
    let data = inside.iter().find(|f| *f != "toc.dat").unwrap();
    let original = std::fs::read(dir.join(data)).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(dir.join(data), &bytes).unwrap();
    let err = drill_fails("a changed file");
    assert!(err.contains(&format!("{dir_name}/{data} changed")), "{err}");
    std::fs::remove_file(dir.join(data)).unwrap();
    let err = drill_fails("a missing file");
    assert!(err.contains(&format!("{dir_name}/{data} missing")), "{err}");
    // A link in its place, even to the right bytes, is not a dump file.
    std::fs::write(env.path("elsewhere.dat.gz"), &original).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere.dat.gz"), dir.join(data)).unwrap();
    let err = drill_fails("a link");
    assert!(err.contains("is not a regular file"), "{err}");
    std::fs::remove_file(dir.join(data)).unwrap();
    std::fs::write(dir.join(data), &original).unwrap();
    assert_eq!(env.run_job("drill")["status"], "ok");

    // A directory dump that fails leaves nothing behind and prunes nothing.
    let before = listing(&env.path("backups"));
    // (Without counts, so that pg_dump itself is what fails.)
    env.write_config(&directory_config(&db, "read", "").replacen(&db, "no_such_database", 1));
    let out = env.run(&["run", "nightly", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = rec["error"].as_str().unwrap();
    assert!(
        err.contains("pg_dump of no_such_database exited with 1"),
        "{err}"
    );
    assert_eq!(listing(&env.path("backups")), before);

    // Retention prunes a directory set whole. A directory that only
    // looks like part of a set (someone's restore of it) stops pruning
    // instead of being deleted with it.
    env.write_config(&directory_config(
        &db,
        "read",
        "retention = { keep_last = 1 }",
    ));
    let theirs = env.path("backups/dirshop-20200103T000000Z.restored");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("keep.txt"), "mine").unwrap();
    let out = env.run(&["run", "nightly", "--json"]);
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["error"].as_str().unwrap().contains(
            "is named like a backup set but is a directory opsd did not write: move it out of the backup target; nothing was pruned"
        ),
        "{rec:#}"
    );
    assert!(theirs.join("keep.txt").exists() && dir.exists());
    std::fs::remove_dir_all(&theirs).unwrap();
    let rec = env.run_job("nightly");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .ends_with("kept 1, pruned 2"),
        "{rec:#}"
    );
    assert!(!dir.exists(), "the pruned directory dump is still there");
    let after = listing(&env.path("backups"));
    assert_eq!(
        after.iter().filter(|f| f.ends_with(".dir")).count(),
        1,
        "{after:?}"
    );
    assert!(!after.iter().any(|f| f.starts_with(&dir_name)), "{after:?}");
}
