//! Producing each kind of backup through the host's process grant: the
//! data flows from the child straight into a file in the target grant.

use opsd_sdk::pg::{self, Conn};
use opsd_sdk::{Command, Input, IoContext, Output, PluginError};

/// `pg_dump --format=custom` of one database into `partial`, then
/// `pg_restore --list` of it: a dump that does not read back fails.
pub fn dump_postgres(conn: &Conn, database: &str, partial: &str) -> Result<(), PluginError> {
    conn.command("pg_dump", database)
        .arg("--format=custom")
        .stdout(Output::File(partial.into()))
        .run_checked(&format!("pg_dump of {database}"))?;
    Command::new("pg_restore")
        .arg("--list")
        .stdin(Input::File(partial.into()))
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

/// Exact row counts of every user table: `schema.table` -> rows.
pub fn row_counts(conn: &Conn, database: &str) -> Result<Vec<(String, u64)>, PluginError> {
    let tables = conn
        .psql(database)
        .arg(
            "--command=SELECT format('%I.%I', schemaname, tablename) FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        .run_checked(&format!("listing tables of {database}"))?;
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
        .map(|n| format!("SELECT {}, count(*) FROM {n}", pg::quote_literal(n)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let out = conn
        .psql(database)
        .arg(format!("--command={query}"))
        .run_checked(&format!("counting rows in {database}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit_once('|'))
        .filter_map(|(t, n)| n.trim().parse().ok().map(|n| (t.to_owned(), n)))
        .collect())
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
    conn: &Conn,
    database: &str,
    dump: &str,
    scratch: &str,
) -> Result<Drill, PluginError> {
    conn.psql("postgres")
        .arg(format!(
            "--command=CREATE DATABASE {}",
            pg::quote_ident(scratch)
        ))
        .run_checked(&format!("creating scratch database {scratch}"))?;
    let result = (|| {
        conn.command("pg_restore", scratch)
            .args(["--no-owner", "--no-privileges", "--exit-on-error"])
            .stdin(Input::File(dump.into()))
            .run_checked(&format!("restoring the {database} dump into {scratch}"))?;
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
    let dropped = conn
        .psql("postgres")
        .arg(format!(
            "--command=DROP DATABASE IF EXISTS {}",
            pg::quote_ident(scratch)
        ))
        .run_checked(&format!("dropping scratch database {scratch}"));
    let counted = result?;
    dropped?;
    Ok(counted)
}
