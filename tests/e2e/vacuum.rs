//! The vacuum plugin against a real PostgreSQL and real SQLite files.

use crate::pg::pg;
use crate::util::{Env, metric, text};
use serde_json::Value;
use std::process::Command;

fn job(name: &str, db: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nplugin = \"vacuum\"\nschedule = \"@weekly\"\n[job.grants]\nexec = [\"vacuumdb\", \"reindexdb\", \"psql\"]\nnet = [\"{}\"]\n[job.config]\npostgres = {}\n[[job.config.databases]]\nname = \"{db}\"\n{extra}\n\n",
        pg().unix_grant(),
        pg().conn_toml()
    )
}

/// A table with many dead tuples and no vacuum yet.
fn bloated() -> String {
    let db = pg().create_db("bloat");
    pg().sql(
        &db,
        "CREATE TABLE events (id int PRIMARY KEY, body text);
         INSERT INTO events SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
         UPDATE events SET body = repeat('y', 200) WHERE id % 2 = 0;
         DELETE FROM events WHERE id % 5 = 0;",
    );
    // Statistics reach the cumulative stats system at transaction end.
    pg().sql(&db, "SELECT pg_stat_force_next_flush()");
    db
}

fn stat(db: &str, col: &str) -> String {
    pg().sql(
        db,
        &format!(
            "SELECT coalesce({col}::text, 'null') FROM pg_stat_user_tables WHERE relname = 'events'"
        ),
    )
}

#[test]
fn vacuum_analyze_clears_dead_tuples_and_reports_the_change() {
    let db = bloated();
    assert_eq!(stat(&db, "last_vacuum"), "null");
    let dead_before: u64 = stat(&db, "n_dead_tup").parse().unwrap();
    assert!(dead_before > 10_000, "{dead_before}");
    let env = Env::new(&job("weekly", &db, "jobs = 2"));
    let rec = env.run_job("weekly");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_ne!(stat(&db, "last_vacuum"), "null", "last_vacuum moved");
    assert_ne!(stat(&db, "last_analyze"), "null");
    assert_eq!(stat(&db, "n_dead_tup"), "0");
    assert_eq!(
        metric(&rec, &format!("{db}_dead_tuples_before")) as u64,
        dead_before
    );
    assert_eq!(metric(&rec, &format!("{db}_dead_tuples_after")), 0.0);
    let summary = rec["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!(
            "{db}: VACUUM ANALYZE; dead tuples {dead_before} -> 0, size "
        )),
        "{summary}"
    );
    assert!(summary.contains("last vacuum now"), "{summary}");
}

#[test]
fn analyze_only_full_and_reindex_do_only_what_is_asked() {
    let db = bloated();
    let env = Env::new(&job("analyze", &db, "analyze_only = true"));
    assert_eq!(env.run_job("analyze")["status"], "ok");
    assert_eq!(stat(&db, "last_vacuum"), "null", "ANALYZE only");
    assert_ne!(stat(&db, "last_analyze"), "null");

    let index_before = pg().sql(&db, "SELECT 'events_pkey'::regclass::oid");
    let size_before: u64 = pg()
        .sql(&db, "SELECT pg_relation_size('events')")
        .parse()
        .unwrap();
    env.write_config(&job(
        "full",
        &db,
        "full = true\nreindex = true\ntables = [\"events\"]",
    ));
    let rec = env.run_job("full");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains("VACUUM FULL ANALYZE, REINDEX CONCURRENTLY of events")
    );
    let size_after: u64 = pg()
        .sql(&db, "SELECT pg_relation_size('events')")
        .parse()
        .unwrap();
    assert!(
        size_after < size_before,
        "VACUUM FULL shrank the table: {size_before} -> {size_after}"
    );
    assert_ne!(
        pg().sql(&db, "SELECT 'events_pkey'::regclass::oid"),
        index_before,
        "the index was rebuilt"
    );
    assert!(
        metric(&rec, &format!("{db}_bytes_after")) < metric(&rec, &format!("{db}_bytes_before"))
    );
}

fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 (Debian package sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn sqlite_files_are_vacuumed_in_place_or_into_a_copy_when_there_is_room() {
    let env = Env::new(
        r#"
[[job]]
name = "sqlite"
plugin = "vacuum"
schedule = "@weekly"
[job.grants]
exec = ["sqlite3"]
fs = [{ host = "data", guest = "/data", access = "rw", create = true }]
[job.config]
[[job.config.sqlite]]
path = "/data/app.db"
[[job.config.sqlite]]
path = "/data/other.db"
into = "other.compact.db"

[[job]]
name = "greedy"
plugin = "vacuum"
schedule = "@weekly"
[job.grants]
exec = ["sqlite3"]
fs = [{ host = "data", guest = "/data", access = "rw", create = true }]
[job.config]
[[job.config.sqlite]]
path = "/data/app.db"
reserve = "1000000T"
"#,
    );
    std::fs::create_dir_all(env.path("data")).unwrap();
    for f in ["app.db", "other.db"] {
        sqlite(
            &env.path("data").join(f),
            "CREATE TABLE t (x TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000) \
             INSERT INTO t SELECT printf('%0200d', i) FROM n; DELETE FROM t WHERE rowid % 3 != 0;",
        );
    }
    let app = env.path("data/app.db");
    let free_before: u64 = sqlite(&app, "PRAGMA freelist_count").parse().unwrap();
    assert!(free_before > 100, "{free_before}");
    let size_before = std::fs::metadata(&app).unwrap().len();

    // Refused up front when the file system lacks the room.
    let out = env.run(&["run", "greedy", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let refused: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("/data/app.db: refused: VACUUM needs up to"),
        "{refused:#}"
    );
    assert_eq!(
        sqlite(&app, "PRAGMA freelist_count")
            .parse::<u64>()
            .unwrap(),
        free_before,
        "untouched"
    );

    let rec = env.run_job("sqlite");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_eq!(sqlite(&app, "PRAGMA freelist_count"), "0");
    assert!(std::fs::metadata(&app).unwrap().len() < size_before);
    assert_eq!(
        metric(&rec, "app.db_freelist_pages_before") as u64,
        free_before
    );
    assert_eq!(metric(&rec, "app.db_freelist_pages_after"), 0.0);
    // INTO leaves the original and writes a compact copy beside it.
    let copy = env.path("data/other.compact.db");
    assert_eq!(
        sqlite(&copy, "SELECT count(*) FROM t"),
        sqlite(&env.path("data/other.db"), "SELECT count(*) FROM t")
    );
    assert_eq!(sqlite(&copy, "PRAGMA freelist_count"), "0");
    assert!(
        sqlite(&env.path("data/other.db"), "PRAGMA freelist_count")
            .parse::<u64>()
            .unwrap()
            > 0
    );
}
