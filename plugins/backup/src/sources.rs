//! Producing each kind of backup through the host's process grant: the
//! data flows from the child straight into a file in the target grant.

use crate::config::PgConn;
use opsd_sdk::{Command, Exit, Input, IoContext, Output, PluginError};

fn fail(what: &str, e: impl std::fmt::Debug) -> PluginError {
    PluginError::other("exec", format!("{what}: {e:?}"))
}

/// Runs a command; a non-zero exit becomes an error quoting stderr.
fn run(what: &str, cmd: Command) -> Result<Exit, PluginError> {
    let exit = cmd.run().map_err(|e| fail(what, e))?;
    if !exit.success() {
        return Err(PluginError::other(
            "exec",
            format!(
                "{what} exited with {}: {}",
                exit.code.map_or_else(
                    || format!("signal {}", exit.signal.unwrap_or(0)),
                    |c| c.to_string()
                ),
                exit.stderr_text()
            ),
        ));
    }
    Ok(exit)
}

/// `pg_dump --format=custom` of one database into `partial`, then
/// `pg_restore --list` of it: a dump that does not read back fails.
pub fn dump_postgres(conn: &PgConn, database: &str, partial: &str) -> Result<(), PluginError> {
    run(
        &format!("pg_dump of {database}"),
        Command::new("pg_dump")
            .args(conn.args())
            .arg("--format=custom")
            .arg(format!("--dbname={database}"))
            .stdout(Output::File(partial.into())),
    )?;
    run(
        &format!("pg_restore --list of the {database} dump"),
        Command::new("pg_restore")
            .arg("--list")
            .stdin(Input::File(partial.into()))
            .stdout(Output::Discard),
    )?;
    Ok(())
}

/// `pg_dumpall --globals-only` (roles, tablespaces) into `partial`.
pub fn dump_globals(conn: &PgConn, partial: &str) -> Result<(), PluginError> {
    run(
        "pg_dumpall --globals-only",
        Command::new("pg_dumpall")
            .args(conn.args())
            .arg("--globals-only")
            .stdout(Output::File(partial.into())),
    )?;
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
        .map_err(|e| fail("tar", e))?;
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
                    "tar of {dir} failed ({:?}): {}",
                    exit.code,
                    exit.stderr_text()
                ),
            ));
        }
    };
    run(
        &format!("reading back the archive of {dir}"),
        Command::new("tar")
            .args(["--list", "--gzip", "--file=-"])
            .stdin(Input::File(partial.into()))
            .stdout(Output::Discard),
    )?;
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

/// psql with no startup file, stopping on the first error, unaligned
/// tuples-only output.
fn psql(conn: &PgConn, database: &str) -> Command {
    Command::new("psql")
        .args(conn.args())
        .args([
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--set=ON_ERROR_STOP=1",
        ])
        .arg(format!("--dbname={database}"))
}

/// Exact row counts of every user table: `schema.table` -> rows.
pub fn row_counts(conn: &PgConn, database: &str) -> Result<Vec<(String, u64)>, PluginError> {
    let tables = run(
        &format!("listing tables of {database}"),
        psql(conn, database).arg(
            "--command=SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        ),
    )?;
    let names: Vec<String> = String::from_utf8_lossy(&tables.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let query = names
        .iter()
        .map(|n| format!("SELECT {}, count(*) FROM {n}", quote_literal(n)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let out = run(
        &format!("counting rows in {database}"),
        psql(conn, database).arg(format!("--command={query}")),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit_once('|'))
        .filter_map(|(t, n)| n.trim().parse().ok().map(|n| (t.to_owned(), n)))
        .collect())
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// What a restore drill found.
#[derive(Debug)]
pub struct Drill {
    pub tables: usize,
    pub rows: u64,
    /// Tables whose counts differ. The source is counted after the dump,
    /// so a database written to meanwhile differs without the dump being
    /// bad: this is a warning, not a failure.
    pub differences: Vec<String>,
}

/// The restore drill: the dump restored into a scratch database, row
/// counts compared with the source, the scratch database dropped again
/// whatever happened. A dump that does not restore is an error.
pub fn restore_drill(
    conn: &PgConn,
    database: &str,
    dump: &str,
    scratch: &str,
) -> Result<Drill, PluginError> {
    run(
        &format!("creating scratch database {scratch}"),
        psql(conn, "postgres").arg(format!(
            "--command=CREATE DATABASE {}",
            quote_ident(scratch)
        )),
    )?;
    let result = (|| {
        run(
            &format!("restoring the {database} dump into {scratch}"),
            Command::new("pg_restore")
                .args(conn.args())
                .args(["--no-owner", "--no-privileges", "--exit-on-error"])
                .arg(format!("--dbname={scratch}"))
                .stdin(Input::File(dump.into())),
        )?;
        let source = row_counts(conn, database)?;
        let restored = row_counts(conn, scratch)?;
        let differences = source
            .iter()
            .filter(|s| !restored.contains(s))
            .map(|(t, n)| {
                let got = restored
                    .iter()
                    .find(|(r, _)| r == t)
                    .map_or("missing".into(), |(_, m)| m.to_string());
                format!("{t}: {n} in {database}, {got} restored")
            })
            .collect();
        Ok(Drill {
            tables: restored.len(),
            rows: restored.iter().map(|(_, n)| n).sum(),
            differences,
        })
    })();
    let dropped = run(
        &format!("dropping scratch database {scratch}"),
        psql(conn, "postgres").arg(format!(
            "--command=DROP DATABASE IF EXISTS {}",
            quote_ident(scratch)
        )),
    );
    let counted = result?;
    dropped?;
    Ok(counted)
}
