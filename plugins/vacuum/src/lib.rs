//! vacuum: VACUUM (ANALYZE) of PostgreSQL databases through `vacuumdb`,
//! REINDEX CONCURRENTLY and VACUUM FULL only when asked, and VACUUM /
//! VACUUM INTO of SQLite files; every run measures before and after and
//! reports the change.

pub mod config;
pub mod sqlite;

use config::{Config, Database};
use opsd_sdk::pg::{self, Conn};
use opsd_sdk::{Context, ContextExt, Description, Outcome, Plugin, PluginError, human_bytes};

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "postgres": {"type": "object", "additionalProperties": false,
      "properties": {"host": {"type": "string"}, "port": {"type": "integer"}, "user": {"type": "string"}}},
    "databases": {"type": "array", "items": {"type": "object", "required": ["name"], "additionalProperties": false,
      "properties": {"name": {"type": "string"}, "tables": {"type": "array", "items": {"type": "string"}},
        "analyze_only": {"type": "boolean"}, "full": {"type": "boolean"}, "reindex": {"type": "boolean"},
        "skip_locked": {"type": "boolean"}, "jobs": {"type": "integer", "minimum": 1}, "min_xid_age": {"type": "integer", "minimum": 0}}}},
    "sqlite": {"type": "array", "items": {"type": "object", "required": ["path"], "additionalProperties": false,
              "properties": {"path": {"type": "string"}, "into": {"type": "string"}, "optimize": {"type": "boolean"},
          "reserve": {"type": ["string", "integer"]}}}}
  }
}"#;

struct Vacuum;

impl Plugin for Vacuum {
    fn describe() -> Description {
        Description::new(
            "vacuum",
            env!("CARGO_PKG_VERSION"),
            "VACUUM, ANALYZE and REINDEX for PostgreSQL and SQLite, with before/after figures",
        )
        .wants_exec("vacuumdb")
        .wants_exec("reindexdb")
        .wants_exec("psql")
        .wants_exec("sqlite3")
        .config_schema(SCHEMA)
        .suggested_schedule("0 2 * * 0")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        cfg.validate().map_err(|e| ctx.bad_config(e))?;
        let mut lines = Vec::new();
        let mut metrics: Vec<(String, f64, Option<&str>)> = Vec::new();
        let total = (cfg.databases.len() + cfg.sqlite.len()) as u64;
        let mut done = 0;
        for db in &cfg.databases {
            opsd_sdk::progress(done, Some(total), &format!("vacuuming {}", db.name));
            let before = pg_stats(&cfg.postgres, db)?;
            if ctx.dry_run {
                lines.push(format!(
                    "{}: would {} ({} dead tuples, {})",
                    db.name,
                    plan(db),
                    before.dead,
                    human_bytes(before.bytes)
                ));
                done += 1;
                continue;
            }
            vacuum_pg(&cfg.postgres, db)?;
            let after = pg_stats(&cfg.postgres, db)?;
            let line = format!(
                "{}: {}; dead tuples {} -> {}, size {} -> {}, oldest xid age {} -> {}{}",
                db.name,
                plan(db),
                before.dead,
                after.dead,
                human_bytes(before.bytes),
                human_bytes(after.bytes),
                before.xid_age,
                after.xid_age,
                match (&before.last_vacuum, &after.last_vacuum) {
                    (b, Some(a)) if b.as_ref() != Some(a) => format!(", last vacuum now {a}"),
                    _ => String::new(),
                }
            );
            opsd_sdk::info!("{line}");
            lines.push(line);
            for (k, b, a, unit) in [
                ("dead_tuples", before.dead as f64, after.dead as f64, None),
                (
                    "bytes",
                    before.bytes as f64,
                    after.bytes as f64,
                    Some("bytes"),
                ),
                ("xid_age", before.xid_age as f64, after.xid_age as f64, None),
            ] {
                metrics.push((format!("{}_{k}_before", db.name), b, unit));
                metrics.push((format!("{}_{k}_after", db.name), a, unit));
            }
            done += 1;
        }
        for s in &cfg.sqlite {
            opsd_sdk::progress(done, Some(total), &format!("vacuuming {}", s.path));
            let report = sqlite::vacuum(s, ctx.dry_run)?;
            opsd_sdk::info!("{}", report.line);
            lines.push(report.line);
            metrics.extend(report.metrics);
            done += 1;
        }
        opsd_sdk::progress(total, Some(total), "done");
        let summary = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!(
                "{} databases: {}",
                lines.len(),
                lines
                    .iter()
                    .map(|l| l.split(':').next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut out = Outcome::ok(summary).details(lines.join("\n"));
        for (name, value, unit) in metrics {
            out = out.metric(&name, value, unit);
        }
        Ok(out)
    }
}

/// What will be done to a database, in words.
fn plan(db: &Database) -> String {
    let mut what = if db.analyze_only {
        "ANALYZE".to_string()
    } else if db.full {
        "VACUUM FULL ANALYZE".to_string()
    } else {
        "VACUUM ANALYZE".to_string()
    };
    if db.reindex {
        what.push_str(", REINDEX CONCURRENTLY");
    }
    if !db.tables.is_empty() {
        what.push_str(&format!(" of {}", db.tables.join(", ")));
    }
    what
}

fn vacuum_pg(conn: &Conn, db: &Database) -> Result<(), PluginError> {
    let mut cmd = conn.command("vacuumdb", &db.name);
    cmd = if db.analyze_only {
        cmd.arg("--analyze-only")
    } else {
        cmd.arg("--analyze")
    };
    if db.full {
        cmd = cmd.arg("--full");
    }
    if db.skip_locked {
        cmd = cmd.arg("--skip-locked");
    }
    if let Some(j) = db.jobs {
        cmd = cmd.arg(format!("--jobs={j}"));
    }
    if let Some(age) = db.min_xid_age {
        cmd = cmd.arg(format!("--min-xid-age={age}"));
    }
    for t in &db.tables {
        cmd = cmd.arg(format!("--table={t}"));
    }
    cmd.run_checked(&format!("vacuumdb of {}", db.name))?;
    if db.reindex {
        let mut cmd = conn.command("reindexdb", &db.name).arg("--concurrently");
        for t in &db.tables {
            cmd = cmd.arg(format!("--table={t}"));
        }
        cmd.run_checked(&format!("reindexdb --concurrently of {}", db.name))?;
    }
    Ok(())
}

/// Figures before or after.
struct PgStats {
    dead: u64,
    bytes: u64,
    xid_age: u64,
    last_vacuum: Option<String>,
}

fn pg_stats(conn: &Conn, db: &Database) -> Result<PgStats, PluginError> {
    let filter = if db.tables.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = db
            .tables
            .iter()
            .map(|t| format!("{}::regclass", pg::quote_literal(t)))
            .collect();
        format!("WHERE relid IN ({})", list.join(", "))
    };
    let sql = format!(
        "SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(pg_total_relation_size(relid)), 0), \
         coalesce((SELECT max(age(c.relfrozenxid)) FROM pg_class c JOIN pg_stat_user_tables u ON u.relid = c.oid {f2}), 0), \
         coalesce(max(greatest(last_vacuum, last_autovacuum))::text, '') \
         FROM pg_stat_user_tables {filter}",
        f2 = filter.replace("WHERE relid", "WHERE u.relid")
    );
    let out = conn
        .psql(&db.name)
        .arg(format!("--command={sql}"))
        .run_checked(&format!("reading statistics of {}", db.name))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let f: Vec<&str> = text.split('|').collect();
    let num = |i: usize| {
        f.get(i)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(PgStats {
        dead: num(0),
        bytes: num(1),
        xid_age: num(2),
        last_vacuum: f
            .get(3)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    })
}

opsd_sdk::export_plugin!(Vacuum);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "postgres": {"host": "/run/postgresql", "port": 5432, "user": "postgres"},
                "databases": [{"name": "shop", "tables": ["orders"], "analyze_only": false, "full": false,
                               "reindex": true, "skip_locked": true, "jobs": 2, "min_xid_age": 100000000}],
                "sqlite": [{"path": "/data/app.db", "into": "app.compact.db", "optimize": true, "reserve": "1G"}]
            }),
        );
    }
}
