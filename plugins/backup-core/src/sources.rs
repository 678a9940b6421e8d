//! Producing each kind of backup through the host's process grant: the
//! data flows from the child straight into a file in the target grant.

use crate::config::{DEFAULT_JOBS, DumpFormat};
use opsd_sdk::pg::{self, Conn};
use opsd_sdk::{Command, Input, IoContext, Output, PluginError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a dump is, and so how `pg_restore` reads it.
#[derive(Debug, Clone, Copy)]
pub enum DumpAt<'a> {
    /// A custom-format file: fed to pg_restore on stdin.
    File(&'a str),
    /// A directory-format dump: pg_restore opens it by name, from its
    /// parent, with `jobs` workers.
    Directory { path: &'a str, jobs: u16 },
}

impl<'a> DumpAt<'a> {
    /// The dump at `path` in `format`; a directory dump gets `jobs`
    /// workers, [`DEFAULT_JOBS`] unless the job says.
    pub fn new(path: &'a str, format: DumpFormat, jobs: Option<u16>) -> DumpAt<'a> {
        match format {
            DumpFormat::Custom => DumpAt::File(path),
            DumpFormat::Directory => DumpAt::Directory {
                path,
                jobs: jobs.unwrap_or(DEFAULT_JOBS),
            },
        }
    }

    /// `pg_restore` reading this dump, with `args` before it.
    fn pg_restore(&self, conn: Option<(&Conn, &str)>, args: &[&str]) -> Command {
        let cmd = match conn {
            Some((conn, db)) => conn.command("pg_restore", db),
            None => Command::new("pg_restore"),
        }
        .args(args.iter().copied());
        match *self {
            DumpAt::File(path) => cmd.stdin(Input::File(path.into())),
            DumpAt::Directory { path, jobs } => {
                let (parent, name) = split_dir(path);
                let cmd = cmd.cwd(parent);
                let cmd = if conn.is_some() && jobs > 1 {
                    cmd.arg(format!("--jobs={jobs}"))
                } else {
                    cmd
                };
                // `./` so that no name is ever taken for an option.
                cmd.arg(format!("./{name}"))
            }
        }
    }
}

/// A guest path's parent directory and last component.
pub fn split_dir(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((parent, name)) => (parent, name),
        None => (".", path),
    }
}

/// One database dumped into `partial` (a file for the custom format, a
/// new directory for the directory format), then `pg_restore --list` of
/// it: a dump that does not read back fails.
pub fn dump_postgres(conn: &Conn, database: &str, dump: DumpAt) -> Result<(), PluginError> {
    match dump {
        DumpAt::File(partial) => conn
            .command("pg_dump", database)
            .arg("--format=custom")
            .stdout(Output::File(partial.into())),
        DumpAt::Directory { path, jobs } => {
            let (parent, name) = split_dir(path);
            conn.command("pg_dump", database)
                .args([
                    "--format=directory".to_owned(),
                    format!("--jobs={jobs}"),
                    format!("--file=./{name}"),
                ])
                .cwd(parent)
        }
    }
    .run_checked(&format!("pg_dump of {database}"))?;
    dump.pg_restore(None, &["--list"])
        .stdout(Output::Discard)
        .run_checked(&format!("pg_restore --list of the {database} dump"))?;
    Ok(())
}

/// `pg_dumpall --globals-only` (roles, tablespaces) into `partial`.
pub fn dump_globals(conn: &Conn, partial: &str) -> Result<(), PluginError> {
    Command::new("pg_dumpall")
        .args(conn.args())
        .arg("--globals-only")
        .stdout(Output::File(partial.into()))
        .run_checked("pg_dumpall --globals-only")?;
    Ok(())
}

/// `tar --create --gzip` of a directory into `partial`, then a full read
/// of it. GNU tar's exit 1 (a file changed while it was read) is a
/// warning, returned as such.
pub fn archive_directory(
    dir: &str,
    exclude: &[String],
    partial: &str,
) -> Result<Option<String>, PluginError> {
    let mut cmd = Command::new("tar")
        .cwd(dir)
        .args(["--create", "--gzip", "--file=-"]);
    for e in exclude {
        cmd = cmd.arg(format!("--exclude={e}"));
    }
    let exit = cmd
        .arg(".")
        .stdout(Output::File(partial.into()))
        .run()
        .map_err(|e| PluginError::other("exec", format!("tar: {}", e.text())))?;
    let warning = match exit.code {
        Some(0) => None,
        Some(1) => Some(format!(
            "tar: some files changed while being archived: {}",
            exit.stderr_text()
        )),
        _ => {
            return Err(PluginError::other(
                "exec",
                format!(
                    "tar of {dir} failed (exit {}): {}",
                    exit.status_text(),
                    exit.stderr_text()
                ),
            ));
        }
    };
    Command::new("tar")
        .args(["--list", "--gzip", "--file=-"])
        .stdin(Input::File(partial.into()))
        .stdout(Output::Discard)
        .run_checked(&format!("reading back the archive of {dir}"))?;
    Ok(warning)
}

/// Copies one file into `partial` with mode 0600: secrets stay secret.
pub fn copy_file(src: &str, partial: &str) -> Result<(), PluginError> {
    let mut from = std::fs::File::open(src).at(format!("reading {src}"))?;
    let mut to = std::fs::File::create(partial).at(format!("writing {partial}"))?;
    opsd_sdk::files::set_mode(partial, 0o600).map_err(|e| PluginError::other("io", e))?;
    std::io::copy(&mut from, &mut to).at(format!("copying {src}"))?;
    Ok(())
}

/// What a database held: exact row counts per table (`schema.table`, as
/// `format('%I.%I')` writes it) and the output of the source's
/// `check_query`, if it has one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub tables: BTreeMap<String, u64>,
    #[serde(default)]
    pub check: Option<String>,
}

/// Counts every user table on the server side: table names never come
/// back into SQL text, so a table named to break a query (quotes,
/// newlines, `|`) is only ever counted. The search path is emptied first,
/// as pg_dump does: a function or operator a database user put in
/// `public` (`format(text, name, name)` beats the built-in's `"any"`)
/// would otherwise run as the backup user, often a superuser; and row
/// security is off, so a policy can neither make a count lie nor run its
/// code (a table it would filter is an error). Runs `check_query` too,
/// if given, with the database's own search path.
pub fn counts(
    conn: &Conn,
    database: &str,
    check_query: Option<&str>,
) -> Result<Counts, PluginError> {
    const QUERY: &str = "SET search_path = ''; SET row_security = off; \
        SELECT coalesce(json_object_agg(name, n), '{}') FROM (\
        SELECT format('%I.%I', schemaname, tablename) AS name, \
        (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', \
        schemaname, tablename), false, true, '')))[1]::text::bigint AS n \
        FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) t";
    let out = conn
        .psql(database)
        .arg(format!("--command={QUERY}"))
        .run_checked(&format!("counting rows in {database}"))?;
    let tables = serde_json::from_slice(out.stdout.trim_ascii()).map_err(|e| {
        PluginError::other(
            "parse",
            format!("row counts of {database}: psql printed something that is not a JSON object of counts ({e})"),
        )
    })?;
    let check = match check_query {
        None => None,
        Some(q) => {
            let out = conn
                .psql(database)
                .arg(format!("--command={q}"))
                .run_checked(&format!("check_query on {database}"))?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
    };
    Ok(Counts { tables, check })
}

/// Counts taken just before and just after a dump, kept beside it as
/// `NAME.dump.counts`. pg_dump reads one snapshot taken between the two:
/// a table with the same count in both had that count in the dump, so a
/// drill, even weeks later, can tell a dump that lost rows from a
/// database that was written to while it was dumped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtDump {
    pub database: String,
    /// The source's `check_query` then: a drill runs this one, so that
    /// editing the job later does not make old dumps fail their drills.
    #[serde(default)]
    pub check_query: Option<String>,
    pub before: Counts,
    pub after: Counts,
}

/// What a restored database is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Reference<'a> {
    /// Counts recorded around the dump: differences in what did not
    /// change during the dump fail the drill.
    AtDump(&'a AtDump),
    /// No counts were recorded: the source as it is now, so differences
    /// are only reported.
    Now(&'a Counts),
}

/// What a restore drill found.
#[derive(Debug, Default, PartialEq)]
pub struct Drill {
    pub tables: usize,
    pub rows: u64,
    /// Differences the dump is to blame for: the drill fails.
    pub mismatches: Vec<String>,
    /// Differences the source's own changes explain: reported only.
    pub notes: Vec<String>,
}

/// Compares a restored database with what its source held.
pub fn compare(database: &str, reference: Reference, restored: &Counts) -> Drill {
    let mut d = Drill {
        tables: restored.tables.len(),
        rows: restored.tables.values().sum(),
        ..Drill::default()
    };
    let got = |t: &str| {
        restored
            .tables
            .get(t)
            .map_or("missing".to_owned(), u64::to_string)
    };
    match reference {
        Reference::AtDump(at) => {
            let names: std::collections::BTreeSet<&String> = at
                .before
                .tables
                .keys()
                .chain(at.after.tables.keys())
                .collect();
            for t in names {
                match (at.before.tables.get(t), at.after.tables.get(t)) {
                    (Some(b), Some(a)) if a == b => {
                        if restored.tables.get(t) != Some(a) {
                            d.mismatches.push(format!(
                                "{t}: {a} rows in {database} at dump time, {} restored",
                                got(t)
                            ));
                        }
                    }
                    (Some(b), Some(a)) => {
                        if restored.tables.contains_key(t) {
                            d.notes.push(format!(
                                "{t}: written to during the dump ({b} rows before, {a} after), {} restored",
                                got(t)
                            ));
                        } else {
                            d.mismatches.push(format!(
                                "{t}: in {database} before and after the dump, missing from the restore"
                            ));
                        }
                    }
                    (Some(_), None) => {
                        d.notes.push(format!("{t}: dropped during the dump"));
                    }
                    (None, _) => d.notes.push(format!("{t}: created during the dump")),
                }
            }
            match (&at.before.check, &at.after.check) {
                (Some(b), Some(a)) if a == b && restored.check.as_ref() != Some(a) => {
                    d.mismatches.push(format!(
                        "check_query: {a:?} in {database} at dump time, {:?} restored",
                        restored.check.as_deref().unwrap_or("")
                    ));
                }
                (Some(b), Some(a)) if a != b => d.notes.push(format!(
                    "check_query: changed during the dump ({b:?} before, {a:?} after)"
                )),
                _ => {}
            }
        }
        Reference::Now(now) => {
            for (t, n) in &now.tables {
                if restored.tables.get(t) != Some(n) {
                    d.notes.push(format!(
                        "{t}: {n} rows in {database} now, {} restored",
                        got(t)
                    ));
                }
            }
            if now.check.is_some() && now.check != restored.check {
                d.notes.push(format!(
                    "check_query: {:?} in {database} now, {:?} restored",
                    now.check.as_deref().unwrap_or(""),
                    restored.check.as_deref().unwrap_or("")
                ));
            }
        }
    }
    d
}

/// The restore drill: the dump restored into a scratch database, counted
/// and compared with `reference` (or with the source now), the scratch
/// database dropped again whatever happened. A dump that does not restore
/// is an error; what the comparison found is in the result.
pub fn restore_drill(
    conn: &Conn,
    database: &str,
    dump: DumpAt,
    scratch: &str,
    reference: Option<&AtDump>,
    check_query: Option<&str>,
) -> Result<Drill, PluginError> {
    // A scratch database of the same name is one an interrupted drill
    // left: opsd's own (`opsd_verify_...`), so it goes first.
    drop_database(conn, scratch, "a stale scratch database")?;
    conn.psql("postgres")
        .arg(format!(
            "--command=CREATE DATABASE {}",
            pg::quote_ident(scratch)
        ))
        .run_checked(&format!("creating scratch database {scratch}"))?;
    let result = (|| {
        dump.pg_restore(
            Some((conn, scratch)),
            &["--no-owner", "--no-privileges", "--exit-on-error"],
        )
        .run_checked(&format!("restoring the {database} dump into {scratch}"))?;
        let query = match reference {
            Some(at) => at.check_query.as_deref(),
            None => check_query,
        };
        let restored = counts(conn, scratch, query)?;
        Ok(match reference {
            Some(at) => compare(database, Reference::AtDump(at), &restored),
            None => {
                let now = counts(conn, database, check_query)?;
                let mut d = compare(database, Reference::Now(&now), &restored);
                if !d.notes.is_empty() {
                    d.notes.insert(
                        0,
                        "no counts were recorded at dump time (the backup job sets them with verify = \"restore\" or record_counts = true), so the restore was compared with the database as it is now".into(),
                    );
                }
                d
            }
        })
    })();
    let dropped = drop_database(conn, scratch, "scratch database");
    let mut counted = result?;
    dropped?;
    let left = leftover_scratch(conn, scratch)?;
    if !left.is_empty() {
        counted.notes.push(format!(
            "scratch databases left by interrupted drills of this set: {} (each a full copy of {database}; drop them with DROP DATABASE when no drill is running)",
            left.join(", ")
        ));
    }
    Ok(counted)
}

/// `DROP DATABASE IF EXISTS`, saying what the database was on failure.
fn drop_database(conn: &Conn, name: &str, what: &str) -> Result<(), PluginError> {
    conn.psql("postgres")
        .arg(format!(
            "--command=DROP DATABASE IF EXISTS {}",
            pg::quote_ident(name)
        ))
        .run_checked(&format!("dropping {what} {name}"))
        .map(drop)
}

/// Scratch databases of the same set other than `scratch`: drills that
/// were killed (a timeout) before they could drop theirs. Reported, not
/// dropped: another job's drill of a set by the same name may be using one.
fn leftover_scratch(conn: &Conn, scratch: &str) -> Result<Vec<String>, PluginError> {
    let Some((prefix, _)) = scratch.rsplit_once('_') else {
        return Ok(Vec::new());
    };
    let pattern = format!("{prefix}_").replace('_', "\\_") + "%";
    let out = conn
        .psql("postgres")
        .arg(format!(
            "--command=SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE {} AND datname <> {} ORDER BY 1",
            pg::quote_literal(&pattern),
            pg::quote_literal(scratch)
        ))
        .run_checked("listing scratch databases")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: &[(&str, u64)], check: Option<&str>) -> Counts {
        Counts {
            tables: t.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect(),
            check: check.map(str::to_owned),
        }
    }

    #[test]
    fn a_table_that_held_still_must_restore_exactly() {
        let at = AtDump {
            database: "shop".into(),
            check_query: Some("SELECT 42".into()),
            before: c(&[("public.orders", 10), ("public.log", 5)], Some("42")),
            after: c(&[("public.orders", 10), ("public.log", 7)], Some("42")),
        };
        let ok = compare(
            "shop",
            Reference::AtDump(&at),
            &c(&[("public.orders", 10), ("public.log", 6)], Some("42")),
        );
        assert!(ok.mismatches.is_empty(), "{ok:?}");
        assert_eq!(ok.notes.len(), 1, "{ok:?}");
        assert!(ok.notes[0].contains("public.log: written to during the dump"));
        assert_eq!((ok.tables, ok.rows), (2, 16));

        let lost = compare(
            "shop",
            Reference::AtDump(&at),
            &c(&[("public.orders", 9), ("public.log", 6)], Some("41")),
        );
        assert_eq!(
            lost.mismatches,
            [
                "public.orders: 10 rows in shop at dump time, 9 restored",
                "check_query: \"42\" in shop at dump time, \"41\" restored"
            ]
        );
        let gone = compare("shop", Reference::AtDump(&at), &c(&[], Some("42")));
        assert_eq!(gone.mismatches.len(), 2, "{gone:?}");
        assert!(gone.mismatches[0].contains("missing"), "{gone:?}");
    }

    #[test]
    fn a_dump_directory_is_named_from_its_parent() {
        assert_eq!(
            split_dir("/backups/db-x.dir.partial"),
            ("/backups", "db-x.dir.partial")
        );
        assert_eq!(split_dir("/db.dir"), ("/", "db.dir"));
        assert_eq!(split_dir("db.dir"), (".", "db.dir"));
    }

    #[test]
    fn without_counts_at_dump_time_differences_are_only_reported() {
        let now = c(&[("public.orders", 12)], None);
        let d = compare(
            "shop",
            Reference::Now(&now),
            &c(&[("public.orders", 10)], None),
        );
        assert!(d.mismatches.is_empty());
        assert_eq!(d.notes, ["public.orders: 12 rows in shop now, 10 restored"]);
    }
}
