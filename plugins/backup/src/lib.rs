//! backup: PostgreSQL databases, directories and files, written
//! atomically, verified before they count, with restic-style retention.
//!
//! A run makes one backup set: `SOURCE-YYYYMMDDTHHMMSSZ.EXT` per source
//! (`.dump` for pg_dump's custom format, `.dir` for its directory format,
//! `.globals.sql`, `.tar.gz`, `.copy`), each with a `.sha256` sidecar.
//! Nothing is published unless every source succeeded and read back;
//! retention prunes only after a published, verified set, so a failed run
//! never deletes anything.

use opsd_backup_core::sets::{STAMP, existing_sets};
use opsd_backup_core::{config, drill, publish, sources};

use chrono::{DateTime, Utc};
use config::{Config, DumpFormat, Source, Verify};
use opsd_sdk::{
    Artifact, Context, ContextExt, Description, IoContext, Outcome, Plugin, PluginError,
    human_bytes,
};
use publish::Pending;
use sources::DumpAt;
use std::time::Instant;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["target", "sources"],
  "additionalProperties": false,
  "properties": {
    "target": {"type": "string", "description": "guest directory for backups, in a read-write grant"},
    "mode": {"type": "string", "description": "permission bits of the backups, octal; default 0600"},
    "group": {"type": "string", "description": "group the backups are given"},
    "verify": {"enum": ["read", "restore"]},
    "record_counts": {"type": "boolean", "description": "keep row counts from dump time beside each dump, for drills"},
    "postgres": {"type": "object", "additionalProperties": false,
      "properties": {"host": {"type": "string"}, "port": {"type": "integer"}, "user": {"type": "string"}}},
    "sources": {"type": "array", "items": {"type": "object", "required": ["kind", "name"], "additionalProperties": false,
      "properties": {"kind": {"enum": ["postgres", "directory", "file"]}, "name": {"type": "string"},
        "database": {"type": "string"}, "host": {"type": "string"}, "port": {"type": "integer"}, "user": {"type": "string"},
        "globals": {"type": "boolean"}, "check_query": {"type": "string"},
        "format": {"enum": ["custom", "directory"], "description": "pg_dump's format; directory dumps tables in parallel"},
        "jobs": {"type": "integer", "minimum": 1, "maximum": 32, "description": "workers of a directory dump and its restores"}, "path": {"type": "string"}, "exclude": {"type": "array", "items": {"type": "string"}}}}},
    "retention": {"type": "object", "additionalProperties": false,
      "properties": {"keep_last": {"type": "integer"}, "keep_hourly": {"type": "integer"}, "keep_daily": {"type": "integer"},
        "keep_weekly": {"type": "integer"}, "keep_monthly": {"type": "integer"}, "keep_yearly": {"type": "integer"},
        "max_age": {"type": "string"}}}
  }
}"#;

struct Backup;

impl Plugin for Backup {
    fn describe() -> Description {
        Description::new(
            "backup",
            env!("CARGO_PKG_VERSION"),
            "Backs up PostgreSQL, directories and files; verified, atomic, retained",
        )
        .wants_dir("/backups", true, "where backups are written and pruned")
        .wants_exec("pg_dump")
        .wants_exec("pg_restore")
        .wants_exec("pg_dumpall")
        .wants_exec("psql")
        .wants_exec("tar")
        // tar --gzip runs `sh -c gzip` (and `sh -c "gzip -d"` to read
        // back); pg_dumpall runs pg_dump through `sh -c`.
        .wants_exec("gzip")
        .wants_exec("sh")
        .config_schema(SCHEMA)
        .suggested_schedule("0 3 * * *")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        cfg.validate().map_err(|e| ctx.bad_config(e))?;
        let mut when = ctx.scheduled_time()?.to_utc();
        if ctx.dry_run {
            return dry_run(&cfg, when);
        }
        if std::fs::metadata(&cfg.target).is_err() {
            std::fs::create_dir_all(&cfg.target).at(format!("creating {}", cfg.target))?;
            opsd_sdk::files::set_mode(&cfg.target, cfg.dir_mode())
                .map_err(|e| PluginError::other("io", e))?;
        }
        let names: Vec<&str> = cfg.sources.iter().map(Source::name).collect();
        publish::sweep_stale(&cfg.target, &names);
        // Another run in the same second (a manual one) already named its
        // set after it: take the next free second rather than touch its
        // files.
        let stamp = loop {
            let stamp = when.format(STAMP).to_string();
            if !stamp_taken(&cfg, &stamp) {
                break stamp;
            }
            when += chrono::Duration::seconds(1);
        };
        let mut produced: Vec<String> = Vec::new();
        let mut sealed: Vec<Pending> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut per_source: Vec<(String, u64, f64)> = Vec::new();
        let mut drilled: Vec<(String, usize, u64)> = Vec::new();
        let total = cfg.sources.len() as u64;
        let result = (|| {
            for (i, source) in cfg.sources.iter().enumerate() {
                opsd_sdk::progress(
                    i as u64,
                    Some(total),
                    &format!("backing up {}", source.name()),
                );
                let started = Instant::now();
                let paths = produce(
                    &cfg,
                    source,
                    &stamp,
                    &mut produced,
                    &mut warnings,
                    &mut drilled,
                )?;
                let mut bytes = 0;
                for p in paths {
                    let seal = if DumpFormat::of(&p) == Some(DumpFormat::Directory) {
                        publish::seal_dir
                    } else {
                        publish::seal
                    };
                    let s = seal(&p, cfg.file_mode(), cfg.group.as_deref())?;
                    bytes += s.bytes;
                    sealed.push(s);
                }
                let secs = started.elapsed().as_secs_f64();
                opsd_sdk::info!("{}: {} in {secs:.1}s", source.name(), human_bytes(bytes));
                per_source.push((source.name().to_owned(), bytes, secs));
            }
            publish::publish(&cfg.target, &sealed)
        })();
        if let Err(e) = result {
            publish::discard(&produced);
            opsd_sdk::error!("{}; nothing published, nothing pruned", e.message);
            return Err(e);
        }
        opsd_sdk::progress(total, Some(total), "pruning");
        let (kept, pruned) = prune(&cfg, when)?;
        let total_bytes: u64 = per_source.iter().map(|s| s.1).sum();
        let names: Vec<String> = per_source
            .iter()
            .map(|(n, b, _)| format!("{n} ({})", human_bytes(*b)))
            .collect();
        let mut summary = format!(
            "backed up {} to {}; kept {kept}, pruned {pruned}",
            names.join(", "),
            cfg.target
        );
        let mut out = if warnings.is_empty() {
            Outcome::ok(summary)
        } else {
            summary.push_str(&format!("; {}", warnings[0]));
            Outcome::warning(summary)
        };
        out = out.details(warnings.join("\n"));
        for (name, bytes, secs) in &per_source {
            out = out
                .metric(&format!("{name}_bytes"), *bytes as f64, Some("bytes"))
                .metric(&format!("{name}_seconds"), *secs, Some("seconds"));
        }
        for (name, tables, rows) in &drilled {
            out = drill::metrics(out, name, *tables, *rows, when.timestamp());
        }
        out = out
            .metric("bytes_total", total_bytes as f64, Some("bytes"))
            .metric("backups_kept", kept as f64, None)
            .metric("backups_pruned", pruned as f64, None);
        for s in sealed {
            let kind = if s.path.ends_with(".counts") {
                "row-counts"
            } else {
                "backup"
            };
            out = out.artifact(Artifact {
                path: s.path,
                kind: kind.into(),
                size_bytes: Some(s.bytes),
                sha256: s.sha256,
            });
        }
        Ok(out)
    }
}

/// Writes one source's partial files (checked, not yet sealed) and
/// returns their final paths.
fn produce(
    cfg: &Config,
    source: &Source,
    stamp: &str,
    produced: &mut Vec<String>,
    warnings: &mut Vec<String>,
    drilled: &mut Vec<(String, usize, u64)>,
) -> Result<Vec<String>, PluginError> {
    let base = format!(
        "{}/{}-{stamp}",
        cfg.target.trim_end_matches('/'),
        source.name()
    );
    // Each file (or a directory dump's directory) exists, private, before
    // anything writes into it: a dump is never readable by others, not
    // even while it is being written. Only what this run made is tracked
    // (and discarded on failure): a name another run already holds fails
    // here, its files untouched.
    let mut make = |p: String, dir: bool| -> Result<String, PluginError> {
        let mode = if dir { cfg.dir_mode() } else { cfg.file_mode() };
        publish::create_new_private(&Pending::partial(&p), mode, dir)?;
        produced.push(p.clone());
        Ok(p)
    };
    match source {
        Source::Postgres {
            database,
            globals,
            check_query,
            format,
            jobs,
            ..
        } => {
            let conn = source.conn(&cfg.postgres);
            let dump = make(
                format!("{base}.{}", format.extension()),
                *format == DumpFormat::Directory,
            )?;
            let partial = Pending::partial(&dump);
            let dump_at = DumpAt::new(&partial, *format, *jobs);
            let before = cfg
                .records_counts()
                .then(|| sources::counts(&conn, database, check_query.as_deref()))
                .transpose()?;
            sources::dump_postgres(&conn, database, dump_at)?;
            let mut out = vec![dump.clone()];
            if let Some(before) = before {
                let at = sources::AtDump {
                    database: database.clone(),
                    check_query: check_query.clone(),
                    before,
                    after: sources::counts(&conn, database, check_query.as_deref())?,
                };
                let file = make(format!("{dump}.counts"), false)?;
                let json = serde_json::to_vec_pretty(&at)
                    .map_err(|e| PluginError::other("io", e.to_string()))?;
                std::fs::write(Pending::partial(&file), json)
                    .at(format!("writing {}", Pending::partial(&file)))?;
                out.push(file);
                if cfg.verify == Verify::Restore {
                    let scratch = drill::scratch_name(source.name(), stamp);
                    let d = sources::restore_drill(
                        &conn,
                        database,
                        dump_at,
                        &scratch,
                        Some(&at),
                        check_query.as_deref(),
                    )?;
                    drill::judge(source.name(), database, &d, warnings)?;
                    drilled.push((source.name().to_owned(), d.tables, d.rows));
                }
            }
            if *globals {
                let g = make(format!("{base}.globals.sql"), false)?;
                sources::dump_globals(&conn, &Pending::partial(&g))?;
                out.push(g);
            }
            Ok(out)
        }
        Source::Directory { path, exclude, .. } => {
            let archive = make(format!("{base}.tar.gz"), false)?;
            if let Some(w) = sources::archive_directory(path, exclude, &Pending::partial(&archive))?
            {
                warnings.push(w);
            }
            Ok(vec![archive])
        }
        Source::File { path, .. } => {
            let copy = make(format!("{base}.copy"), false)?;
            sources::copy_file(path, &Pending::partial(&copy))?;
            Ok(vec![copy])
        }
    }
}

/// Whether any file in the target already carries `stamp` for one of the
/// job's sources.
fn stamp_taken(cfg: &Config, stamp: &str) -> bool {
    let prefixes: Vec<String> = cfg
        .sources
        .iter()
        .map(|s| format!("{}-{stamp}", s.name()))
        .collect();
    std::fs::read_dir(&cfg.target)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            prefixes.iter().any(|p| name.starts_with(p.as_str()))
        })
}

/// Applies retention to every source's sets; returns (kept, pruned).
fn prune(cfg: &Config, now: DateTime<Utc>) -> Result<(usize, usize), PluginError> {
    let mut kept = 0;
    // (source, set time, its files), all checked before any is deleted.
    let mut doomed: Vec<(&str, DateTime<Utc>, Vec<String>)> = Vec::new();
    for source in &cfg.sources {
        let sets = existing_sets(&cfg.target, source.name());
        let times: Vec<DateTime<Utc>> = sets.iter().map(|(t, _)| *t).collect();
        let (keep, remove) = cfg.retention.apply(&times, now);
        kept += keep.len();
        for t in remove {
            let files: Vec<String> = sets
                .iter()
                .filter(|(st, _)| *st == t)
                .flat_map(|(_, f)| f.iter().cloned())
                .collect();
            for f in &files {
                publish::prunable(f)?;
            }
            doomed.push((source.name(), t, files));
        }
    }
    for (source, t, files) in &doomed {
        for f in files {
            publish::prune_file(f)?;
        }
        opsd_sdk::info!("pruned {} backup of {source}", t.format(STAMP));
    }
    Ok((kept, doomed.len()))
}

/// Dry run: what would be backed up and what retention would delete.
fn dry_run(cfg: &Config, now: DateTime<Utc>) -> Result<Outcome, PluginError> {
    let mut would_prune = Vec::new();
    let mut kept = 0;
    for source in &cfg.sources {
        let sets = existing_sets(&cfg.target, source.name());
        let times: Vec<DateTime<Utc>> = sets.iter().map(|(t, _)| *t).collect();
        let (keep, remove) = cfg.retention.apply(&times, now);
        kept += keep.len();
        for t in remove {
            let line = format!("{}-{}", source.name(), t.format(STAMP));
            opsd_sdk::info!("would prune {line}");
            would_prune.push(line);
        }
    }
    let names: Vec<&str> = cfg.sources.iter().map(Source::name).collect();
    Ok(Outcome::ok(format!(
        "would back up {} to {}; would keep {kept}, prune {}",
        names.join(", "),
        cfg.target,
        would_prune.len()
    ))
    .details(would_prune.join("\n"))
    .metric("backups_would_prune", would_prune.len() as f64, None))
}

opsd_sdk::export_plugin!(Backup);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "target": "/backups",
                "mode": "0640",
                "group": "backup",
                "verify": "restore",
                "record_counts": true,
                "postgres": {"host": "/run/postgresql", "port": 5432, "user": "postgres"},
                "sources": [
                    {"kind": "postgres", "name": "shop", "database": "shop", "host": "db",
                     "port": 5433, "user": "backup", "globals": true,
                     "check_query": "SELECT sum(total) FROM orders"},
                    {"kind": "postgres", "name": "big", "database": "big", "format": "directory", "jobs": 4},
                    {"kind": "directory", "name": "uploads", "path": "/data/uploads", "exclude": ["*.tmp"]},
                    {"kind": "file", "name": "env", "path": "/app/.env"}
                ],
                "retention": {"keep_last": 3, "keep_hourly": 24, "keep_daily": 30, "keep_weekly": 8,
                              "keep_monthly": 12, "keep_yearly": 5, "max_age": "400d"}
            }),
        );
    }
}
