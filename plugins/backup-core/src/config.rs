//! The backup job's `[job.config]`.
//!
//! ```toml
//! [job.config]
//! target = "/backups"                 # guest dir in a read-write grant
//! verify = "restore"                  # "read" (default) or "restore"
//! # record_counts = true              # row counts beside each dump
//! postgres = { host = "/run/postgresql", port = 5432, user = "postgres" }
//! [[job.config.sources]]
//! kind = "postgres"
//! name = "codie"
//! database = "codie"
//! check_query = "SELECT sum(total) FROM orders"  # compared by drills
//! globals = true                      # pg_dumpall --globals-only too
//! # format = "directory"              # pg_dump -Fd, tables in parallel
//! # jobs = 4                          # its workers (default 2)
//! [[job.config.sources]]
//! kind = "directory"
//! name = "uploads"
//! path = "/data/uploads"
//! exclude = ["*.tmp"]
//! [[job.config.sources]]
//! kind = "file"
//! name = "env"
//! path = "/app/.env"
//! [job.config.retention]
//! keep_daily = 30
//! ```

use crate::retention::Retention;
use opsd_sdk::pg;
use serde::Deserialize;

/// How thoroughly a new backup is checked before it is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Read every backup back (`pg_restore --list`, a full `tar` read).
    #[default]
    Read,
    /// Also restore each database dump into a scratch database and compare
    /// row counts with the source.
    Restore,
}

/// How a database is dumped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// One compressed file, `NAME.dump`: one pg_dump process, one core.
    #[default]
    Custom,
    /// A directory of compressed files, one per table, `NAME.dir`: tables
    /// are dumped (and drills restore them) by several workers at once,
    /// so a large database with several large tables backs up faster
    /// than one `pg_dump -Fc` can.
    Directory,
}

impl DumpFormat {
    /// The backup's extension in the set.
    pub fn extension(self) -> &'static str {
        match self {
            DumpFormat::Custom => "dump",
            DumpFormat::Directory => "dir",
        }
    }

    /// The format of a published dump, by its name (`NAME.dump`,
    /// `NAME.dir`); none for anything else.
    pub fn of(path: &str) -> Option<DumpFormat> {
        [DumpFormat::Custom, DumpFormat::Directory]
            .into_iter()
            .find(|f| {
                path.strip_suffix(f.extension())
                    .is_some_and(|p| p.ends_with('.'))
            })
    }
}

/// Workers of a directory-format dump when the job does not say.
pub const DEFAULT_JOBS: u16 = 2;

/// The most workers a source may ask for: N workers are N + 1 processes,
/// and a job's default `limits.processes` is 64.
pub const MAX_JOBS: u16 = 32;

/// Checks a source's `jobs` against [`MAX_JOBS`].
pub fn check_jobs(source: &str, jobs: Option<u16>) -> Result<(), String> {
    match jobs {
        Some(j) if !(1..=MAX_JOBS).contains(&j) => Err(format!(
            "source `{source}`: jobs = {j}: give 1 to {MAX_JOBS} workers (each is one more process, counted by the job's `limits.processes`, and one more connection to the server)"
        )),
        _ => Ok(()),
    }
}

/// One thing to back up.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A database, dumped with `pg_dump --format=custom`, or with
    /// `--format=directory --jobs=N` to dump its tables in parallel.
    Postgres {
        name: String,
        database: String,
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        user: Option<String>,
        /// Also `pg_dumpall --globals-only` (roles, tablespaces).
        #[serde(default)]
        globals: bool,
        /// A query whose output a restore must reproduce (a sum, a
        /// checksum): compared like the row counts.
        #[serde(default)]
        check_query: Option<String>,
        #[serde(default)]
        format: DumpFormat,
        /// Parallel workers of a directory-format dump and of its restore
        /// drills (`--jobs`); each is one more connection to the server.
        #[serde(default)]
        jobs: Option<u16>,
    },
    /// A directory, as a gzipped tar streamed by `tar`.
    Directory {
        name: String,
        path: String,
        #[serde(default)]
        exclude: Vec<String>,
    },
    /// One file (a `.env`), copied with mode 0600.
    File { name: String, path: String },
}

impl Source {
    /// A PostgreSQL source's connection, over the job-wide settings.
    pub fn conn(&self, base: &pg::Conn) -> pg::Conn {
        match self {
            Source::Postgres {
                host, port, user, ..
            } => pg::Conn {
                host: host.clone(),
                port: *port,
                user: user.clone(),
            }
            .over(base),
            _ => base.clone(),
        }
    }

    /// The name backups of this source are filed under.
    pub fn name(&self) -> &str {
        match self {
            Source::Postgres { name, .. }
            | Source::Directory { name, .. }
            | Source::File { name, .. } => name,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub target: String,
    pub sources: Vec<Source>,
    #[serde(default)]
    pub verify: Verify,
    /// Count rows just before and after each dump and keep the counts
    /// beside it (`NAME.dump.counts`), for later drills; implied by
    /// `verify = "restore"`.
    #[serde(default)]
    pub record_counts: bool,
    /// Connection settings for PostgreSQL sources; each source may
    /// override them.
    #[serde(default)]
    pub postgres: pg::Conn,
    #[serde(default)]
    pub retention: Retention,
    /// Permission bits of the backups, octal (`"0640"`); default `"0600"`:
    /// a dump holds every row of the database.
    #[serde(default)]
    pub mode: Option<String>,
    /// Group the backups are given (with `mode = "0640"`, a backup
    /// reader's group).
    #[serde(default)]
    pub group: Option<String>,
}

impl Config {
    /// The backups' permission bits.
    pub fn file_mode(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o600)
    }

    /// The target directory's bits when the plugin makes it: the files'
    /// bits with search added wherever read is.
    pub fn dir_mode(&self) -> u32 {
        crate::publish::dir_mode_for(self.file_mode())
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !self.target.starts_with('/') {
            return Err(format!(
                "target `{}` must be a guest path such as \"/backups\"",
                self.target
            ));
        }
        if let Some(m) = &self.mode {
            match u32::from_str_radix(m, 8) {
                Ok(bits) if bits <= 0o777 && bits & 0o600 == 0o600 => {}
                _ => {
                    return Err(format!(
                        "mode `{m}` is not a file mode opsd gives backups: write octal permission bits the owner can read and write, such as \"0600\" or \"0640\""
                    ));
                }
            }
        }
        if self.sources.is_empty() {
            return Err("no sources: add [[job.config.sources]] with kind = \"postgres\", \"directory\" or \"file\"".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.sources {
            let n = s.name();
            if n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(format!(
                    "source name `{n}` is used in file names: letters, digits, `_` and `.` only (no `-`)"
                ));
            }
            if !seen.insert(n) {
                return Err(format!("two sources are named `{n}`"));
            }
            if let Source::Postgres { format, jobs, .. } = s {
                if *format == DumpFormat::Custom && jobs.is_some() {
                    return Err(format!(
                        "source `{n}`: `jobs` needs format = \"directory\" (pg_dump dumps one file with one worker)"
                    ));
                }
                check_jobs(n, *jobs)?;
            }
            if let Source::Directory { path, .. } | Source::File { path, .. } = s
                && !path.starts_with('/')
            {
                return Err(format!("source `{n}`: path `{path}` must be a guest path"));
            }
        }
        Ok(())
    }

    /// Whether each dump gets its row counts recorded beside it.
    pub fn records_counts(&self) -> bool {
        self.record_counts || self.verify == Verify::Restore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources_of_each_kind() {
        let c: Config = serde_json::from_value(serde_json::json!({
            "target": "/backups",
            "postgres": {"host": "/run/postgresql", "user": "postgres"},
            "sources": [
                {"kind": "postgres", "name": "codie", "database": "codie", "port": 5433, "globals": true},
                {"kind": "directory", "name": "data", "path": "/data", "exclude": ["*.tmp"]},
                {"kind": "file", "name": "env", "path": "/app/.env"}
            ],
            "retention": {"keep_daily": 30}
        }))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.sources[0].conn(&c.postgres).args(),
            [
                "--no-password",
                "--host=/run/postgresql",
                "--port=5433",
                "--username=postgres"
            ]
        );
        assert_eq!(c.verify, Verify::Read);
    }

    #[test]
    fn refuses_what_would_break_file_names() {
        let c: Config = serde_json::from_value(serde_json::json!({
            "target": "/backups",
            "sources": [{"kind": "file", "name": "my-env", "path": "/app/.env"}]
        }))
        .unwrap();
        assert!(c.validate().unwrap_err().contains("no `-`"));
        let e = serde_json::from_value::<Config>(serde_json::json!({
            "target": "/b", "sources": [{"kind": "ftp", "name": "x"}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("ftp"), "{e}");
    }

    #[test]
    fn workers_only_for_a_directory_dump_and_within_reason() {
        let with = |format: &str, jobs: u16| {
            let c: Config = serde_json::from_value(serde_json::json!({
                "target": "/backups",
                "sources": [{"kind": "postgres", "name": "db", "database": "db",
                             "format": format, "jobs": jobs}]
            }))
            .unwrap();
            c.validate()
        };
        with("directory", 4).unwrap();
        assert!(
            with("custom", 4)
                .unwrap_err()
                .contains("needs format = \"directory\""),
            "{:?}",
            with("custom", 4)
        );
        assert!(with("directory", 0).unwrap_err().contains("1 to 32"));
        assert!(with("directory", 33).unwrap_err().contains("1 to 32"));
    }

    #[test]
    fn a_dump_format_is_known_by_its_extension_only() {
        assert_eq!(DumpFormat::of("/b/db-x.dump"), Some(DumpFormat::Custom));
        assert_eq!(DumpFormat::of("/b/db-x.dir"), Some(DumpFormat::Directory));
        for other in [
            "/b/db-x.dir.partial",
            "/b/db-x.dump.counts",
            "/b/db-xdir",
            "/b/db-x.dir.sha256",
        ] {
            assert_eq!(DumpFormat::of(other), None, "{other}");
        }
    }
}
