//! PostgreSQL through its client programs (`psql`, `pg_dump`, `vacuumdb`,
//! ...), which the job's `exec` grant names: the connection settings a
//! job's config carries and the arguments every libpq program takes, so
//! plugins that talk to the same server connect the same way.
//!
//! The password never appears here: libpq reads `PGPASSWORD` (which the
//! job passes to its programs with `env = ["PGPASSWORD"]`) or a `.pgpass`
//! file, and `--no-password` makes a missing one an error instead of a
//! prompt nobody answers.

use crate::Command;
use serde::Deserialize;

/// Where and as whom to connect; every part is optional and falls back to
/// libpq's defaults (`PGHOST`, `PGPORT`, `PGUSER` or the local socket).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Conn {
    /// Host name, or the directory of the server's Unix socket.
    #[serde(default)]
    pub host: Option<String>,
    /// TCP port, or the number in the socket file's name.
    #[serde(default)]
    pub port: Option<u16>,
    /// The role to connect as.
    #[serde(default)]
    pub user: Option<String>,
}

impl Conn {
    /// These settings where given, `base`'s elsewhere: a per-database
    /// table over the job-wide one.
    pub fn over(&self, base: &Conn) -> Conn {
        Conn {
            host: self.host.clone().or_else(|| base.host.clone()),
            port: self.port.or(base.port),
            user: self.user.clone().or_else(|| base.user.clone()),
        }
    }

    /// `--no-password`, then `--host`, `--port` and `--username` as set:
    /// the options every libpq program understands.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--no-password".to_string()];
        if let Some(host) = &self.host {
            args.push(format!("--host={host}"));
        }
        if let Some(port) = self.port {
            args.push(format!("--port={port}"));
        }
        if let Some(user) = &self.user {
            args.push(format!("--username={user}"));
        }
        args
    }

    /// `program` connected to `database`: the connection arguments, then
    /// `--dbname`.
    pub fn command(&self, program: &str, database: &str) -> Command {
        Command::new(program)
            .args(self.args())
            .arg(format!("--dbname={database}"))
    }

    /// `psql` for queries a plugin reads back: no startup file, stop at
    /// the first error, rows as `a|b|c` lines without headers. Add
    /// `--command=...`.
    pub fn psql(&self, database: &str) -> Command {
        Command::new("psql")
            .args(self.args())
            .args([
                "--no-psqlrc",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--field-separator=|",
                "--set=ON_ERROR_STOP=1",
            ])
            .arg(format!("--dbname={database}"))
    }
}

/// `s` as an SQL string literal: `'it''s'`.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as an SQL identifier: `"My ""table"""`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_database_settings_win_and_the_password_never_shows() {
        let base: Conn =
            serde_json::from_str(r#"{"host":"/run/postgresql","user":"postgres"}"#).unwrap();
        let own = Conn {
            port: Some(5433),
            user: Some("app".into()),
            ..Conn::default()
        };
        assert_eq!(
            own.over(&base).args(),
            [
                "--no-password",
                "--host=/run/postgresql",
                "--port=5433",
                "--username=app"
            ]
        );
        assert_eq!(Conn::default().args(), ["--no-password"]);
        assert!(serde_json::from_str::<Conn>(r#"{"password":"x"}"#).is_err());
    }

    #[test]
    fn quoting_doubles_the_quote() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("My \"t\""), "\"My \"\"t\"\"\"");
    }
}
