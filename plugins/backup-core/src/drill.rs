//! Restore drills: a backup nobody has restored is a hope, not a backup.
//!
//! The `restore-drill` plugin makes nothing new: for each PostgreSQL
//! source it takes the newest published dump (a `.dump` file or a `.dir`
//! directory dump), checks it against its sha256 sidecar (a directory's:
//! every file in it, and no other), restores it into a scratch database,
//! compares row counts (and the source's `check_query`) with those
//! recorded around the dump
//! (`NAME.dump.counts`), and drops the scratch database again. The run's
//! metrics (`SOURCE_drill_rows`, `SOURCE_drill_tables`,
//! `SOURCE_drill_dump_time`) are what reports show as the last good drill
//! of each backup set.

use crate::config::{DumpFormat, check_jobs};
use crate::publish;
use crate::sets::{STAMP, existing_sets};
use crate::sources::{self, AtDump, Drill, DumpAt};
use chrono::{DateTime, Utc};
use opsd_sdk::{IoContext, Outcome, PluginError, pg};
use serde::Deserialize;

/// A restore-drill job's `[job.config]`: the backup job's `target`,
/// `postgres` and PostgreSQL sources, nothing it writes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    pub target: String,
    pub sources: Vec<DrillSource>,
    #[serde(default)]
    pub postgres: pg::Conn,
}

/// The only kind of source a drill restores.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DumpKind {
    Postgres,
}

/// A backup job's PostgreSQL source, as the drill names it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillSource {
    pub kind: DumpKind,
    /// The backup job's name for the source: its files' prefix.
    pub name: String,
    pub database: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    /// Used only when the dump has no counts beside it: otherwise the
    /// query recorded then is run.
    #[serde(default)]
    pub check_query: Option<String>,
    /// pg_restore workers for a directory-format dump.
    #[serde(default)]
    pub jobs: Option<u16>,
}

impl DrillSource {
    fn conn(&self, base: &pg::Conn) -> pg::Conn {
        pg::Conn {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
        }
        .over(base)
    }
}

impl DrillConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !self.target.starts_with('/') {
            return Err(format!(
                "target `{}` must be the guest directory the backup job writes, such as \"/backups\"",
                self.target
            ));
        }
        if self.sources.is_empty() {
            return Err("no sources: name the backup job's PostgreSQL sources in [[job.config.sources]] with kind = \"postgres\"".into());
        }
        self.sources
            .iter()
            .try_for_each(|s| check_jobs(&s.name, s.jobs))
    }
}

/// A scratch database name no real one is likely to have, unique per set.
pub fn scratch_name(source: &str, stamp: &str) -> String {
    format!(
        "opsd_verify_{}_{}",
        source.replace('.', "_"),
        stamp.to_ascii_lowercase()
    )
}

/// Logs what a drill found; fails on differences the dump is to blame
/// for, and turns the rest into warnings.
pub fn judge(
    source: &str,
    database: &str,
    d: &Drill,
    warnings: &mut Vec<String>,
) -> Result<(), PluginError> {
    if !d.mismatches.is_empty() {
        for m in &d.mismatches {
            opsd_sdk::error!("restore drill of {source}: {m}");
        }
        return Err(PluginError::other(
            "drill",
            format!(
                "restore drill of {source} ({database}) failed: the restored dump does not hold what the database held when it was dumped: {}",
                d.mismatches.join("; ")
            ),
        ));
    }
    opsd_sdk::info!(
        "restore drill of {source} ({database}): {} tables, {} rows restored{}",
        d.tables,
        d.rows,
        if d.notes.is_empty() {
            ", counts match"
        } else {
            ""
        }
    );
    if !d.notes.is_empty() {
        warnings.push(format!("restore drill of {source}: {}", d.notes.join("; ")));
    }
    Ok(())
}

/// The metrics reports read a drill from.
pub fn metrics(out: Outcome, source: &str, tables: usize, rows: u64, dumped: i64) -> Outcome {
    out.metric(&format!("{source}_drill_tables"), tables as f64, None)
        .metric(&format!("{source}_drill_rows"), rows as f64, None)
        .metric(
            &format!("{source}_drill_dump_time"),
            dumped as f64,
            Some("seconds"),
        )
}

/// The newest published dump of a source (a `.dump` file or a `.dir`
/// directory dump), with its set's time.
fn newest_dump(target: &str, source: &str) -> Option<(DateTime<Utc>, String)> {
    existing_sets(target, source)
        .into_iter()
        .rev()
        .find_map(|(t, files)| {
            files
                .into_iter()
                .find(|f| DumpFormat::of(f).is_some())
                .map(|f| (t, f))
        })
}

/// Checks a dump against the sha256 sidecar written when it was sealed:
/// a dump changed since is not restored as if it were the backup. A
/// directory dump's sidecar lists every file; a file changed, missing or
/// added fails the check.
fn check_sidecar(dump: &str) -> Result<(), PluginError> {
    let sidecar = format!("{dump}.sha256");
    let text = std::fs::read_to_string(&sidecar).at(format!(
        "reading {sidecar} (every dump opsd publishes has one; without it the dump cannot be trusted)"
    ))?;
    let changed = |what: String| {
        PluginError::other(
            "drill",
            format!(
                "{dump} does not match its sha256 sidecar ({what}): the dump was changed or damaged after it was written; nothing was restored: run the backup again, and look for what else wrote into the backup target"
            ),
        )
    };
    if DumpFormat::of(dump) != Some(DumpFormat::Directory) {
        let want = text.split_whitespace().next().unwrap_or("");
        let (got, _) = publish::sha256_file(dump)?;
        if want != got {
            return Err(changed(format!("{want:.12}... recorded, {got:.12}... now")));
        }
        return Ok(());
    }
    let name = dump.rsplit('/').next().unwrap_or(dump);
    let now = publish::manifest(dump, name).map_err(|e| changed(e.message))?;
    if now.text != text {
        return Err(changed(manifest_diff(&text, &now.text)));
    }
    Ok(())
}

/// What differs between a recorded manifest and one made now, file by
/// file (changed, missing, added), the first five named.
fn manifest_diff(recorded: &str, now: &str) -> String {
    // file -> hash, from `HASH  FILE` lines.
    let entries = |t: &str| -> std::collections::BTreeMap<String, String> {
        t.lines()
            .map(|l| match l.split_once("  ") {
                Some((hash, file)) => (file.to_owned(), hash.to_owned()),
                None => (l.to_owned(), String::new()),
            })
            .collect()
    };
    let (was, is) = (entries(recorded), entries(now));
    let mut diffs: Vec<String> = was
        .iter()
        .filter_map(|(file, w)| match is.get(file) {
            None => Some(format!("{file} missing")),
            Some(i) if i != w => Some(format!("{file} changed")),
            Some(_) => None,
        })
        .chain(
            is.keys()
                .filter(|f| !was.contains_key(*f))
                .map(|f| format!("{f} added")),
        )
        .collect();
    if diffs.is_empty() {
        diffs.push("the sidecar is not the manifest opsd writes".into());
    }
    let more = diffs.len().saturating_sub(5);
    diffs.truncate(5);
    if more > 0 {
        diffs.push(format!("and {more} more"));
    }
    diffs.join(", ")
}

/// The counts recorded around a dump, if the backup job kept them.
fn counts_at_dump(dump: &str) -> Result<Option<AtDump>, PluginError> {
    let file = format!("{dump}.counts");
    match std::fs::read(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PluginError::other("io", format!("reading {file}: {e}"))),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            PluginError::other(
                "drill",
                format!("{file} is not the row counts opsd writes beside a dump: {e}"),
            )
        }),
    }
}

/// Every source's newest dump restored and compared; the first that
/// fails fails the run.
pub fn run(cfg: &DrillConfig, dry_run: bool) -> Result<Outcome, PluginError> {
    let mut warnings = Vec::new();
    let mut lines = Vec::new();
    let mut out_metrics = Vec::new();
    for source in &cfg.sources {
        let (name, database) = (source.name.as_str(), &source.database);
        let (when, dump) = newest_dump(&cfg.target, name).ok_or_else(|| {
            PluginError::other(
                "drill",
                format!(
                    "no dump of {name} in {} to drill: has the backup job for it run, and does this job name the same target and source?",
                    cfg.target
                ),
            )
        })?;
        if dry_run {
            lines.push(format!("would restore {dump} into a scratch database"));
            continue;
        }
        check_sidecar(&dump)?;
        let at = counts_at_dump(&dump)?;
        let conn = source.conn(&cfg.postgres);
        let stamp = when.format(STAMP).to_string();
        opsd_sdk::info!("restoring {dump} into a scratch database");
        let format = DumpFormat::of(&dump).unwrap_or_default();
        let d = sources::restore_drill(
            &conn,
            database,
            DumpAt::new(&dump, format, source.jobs),
            &scratch_name(name, &stamp),
            at.as_ref(),
            source.check_query.as_deref(),
        )?;
        judge(name, database, &d, &mut warnings)?;
        lines.push(format!(
            "{name}: the dump of {} restored, {} tables, {} rows",
            when.format("%Y-%m-%d %H:%M UTC"),
            d.tables,
            d.rows
        ));
        out_metrics.push((name.to_owned(), d.tables, d.rows, when.timestamp()));
    }
    if dry_run {
        return Ok(Outcome::ok(lines.join("; ")));
    }
    let summary = format!("restore drill: {}", lines.join("; "));
    let mut out = if warnings.is_empty() {
        Outcome::ok(summary)
    } else {
        Outcome::warning(format!("{summary}; {}", warnings[0]))
    };
    out = out.details(warnings.join("\n"));
    for (name, tables, rows, when) in out_metrics {
        out = metrics(out, &name, tables, rows, when);
    }
    Ok(out)
}
