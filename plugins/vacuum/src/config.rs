//! The vacuum job's `[job.config]`.
//!
//! ```toml
//! [job.config]
//! postgres = { host = "/run/postgresql", port = 5432, user = "postgres" }
//! [[job.config.databases]]
//! name = "shop"
//! tables = ["orders"]       # default: every table
//! analyze_only = false
//! full = false              # VACUUM FULL: only when asked; locks tables
//! reindex = false           # REINDEX ... CONCURRENTLY: only when asked
//! skip_locked = true
//! jobs = 2
//! min_xid_age = 100000000
//! [[job.config.sqlite]]
//! path = "/data/app.db"
//! into = "app.compact.db"   # VACUUM INTO a copy beside it, instead of in place
//! ```

use opsd_sdk::pg;
use serde::Deserialize;

/// One PostgreSQL database to maintain.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub name: String,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub analyze_only: bool,
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub reindex: bool,
    #[serde(default = "yes")]
    pub skip_locked: bool,
    #[serde(default)]
    pub jobs: Option<u32>,
    #[serde(default)]
    pub min_xid_age: Option<u64>,
}

fn yes() -> bool {
    true
}

/// One SQLite database file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sqlite {
    /// Guest path of the database file.
    pub path: String,
    /// `VACUUM INTO` this file name (in the same directory) instead of
    /// vacuuming in place.
    #[serde(default)]
    pub into: Option<String>,
    /// `PRAGMA optimize` afterwards.
    #[serde(default = "yes")]
    pub optimize: bool,
    /// Free space to leave on top of what VACUUM needs (`1G`, `500M`, or
    /// bytes); below that the run is refused.
    #[serde(default, deserialize_with = "de_size")]
    pub reserve: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match RawSize::deserialize(d)? {
        RawSize::Bytes(n) => Ok(n),
        RawSize::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

/// `512`, `64K`, `500M`, `2G`, `1T` (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{text}` is not a size; write e.g. `500M` or `2G`"))
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connection settings for every database.
    #[serde(default)]
    pub postgres: pg::Conn,
    #[serde(default)]
    pub databases: Vec<Database>,
    #[serde(default)]
    pub sqlite: Vec<Sqlite>,
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.databases.is_empty() && self.sqlite.is_empty() {
            return Err(
                "nothing to vacuum: add [[job.config.databases]] or [[job.config.sqlite]]".into(),
            );
        }
        for d in &self.databases {
            if d.full && d.analyze_only {
                return Err(format!(
                    "database `{}`: full and analyze_only together make no sense",
                    d.name
                ));
            }
        }
        for s in &self.sqlite {
            if !s.path.starts_with('/') {
                return Err(format!("sqlite path `{}` must be a guest path", s.path));
            }
            if let Some(into) = &s.into
                && (into.contains('/') || into.is_empty())
            {
                return Err(format!(
                    "sqlite `into = \"{into}\"` is a file name beside the database, without `/`"
                ));
            }
        }
        Ok(())
    }
}
