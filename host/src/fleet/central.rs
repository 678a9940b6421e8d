//! The fleet's PostgreSQL: its schema (created and migrated by opsd,
//! versioned), the hosts' heartbeats and the central run history.
//!
//! Every statement uses parameters; nothing a host, a job or a plugin
//! chose is ever pasted into SQL text.

use crate::config::FleetSettings;
use crate::record::RunRecord;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Why the fleet's PostgreSQL could not be used; the text says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("[fleet] {0}")]
    Settings(String),
    #[error("cannot reach the fleet's PostgreSQL ({at}): {error}")]
    Connect { at: String, error: String },
    #[error(
        "the fleet's schema is at version {found}, newer than this opsd knows ({known}): upgrade opsd on this host"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("the fleet's PostgreSQL ({at}): {error}")]
    Query { at: String, error: String },
}

/// The schema, one migration per version, applied in order inside one
/// transaction under an advisory lock, so hosts starting together
/// migrate once.
const MIGRATIONS: &[&str] = &[
    // 1: hosts and the central run history.
    "CREATE TABLE opsd_hosts (
        name text PRIMARY KEY,
        labels jsonb NOT NULL DEFAULT '{}',
        version text NOT NULL,
        last_seen timestamptz NOT NULL,
        outbox bigint NOT NULL DEFAULT 0
     );
     CREATE TABLE opsd_runs (
        run_id text PRIMARY KEY,
        host text NOT NULL,
        job text NOT NULL,
        status text NOT NULL,
        started timestamptz NOT NULL,
        record jsonb NOT NULL,
        received timestamptz NOT NULL DEFAULT now()
     );
     CREATE INDEX opsd_runs_started ON opsd_runs (started DESC);
     CREATE INDEX opsd_runs_job ON opsd_runs (job, started DESC);
     CREATE INDEX opsd_runs_host ON opsd_runs (host, started DESC);",
];

/// The schema version this opsd writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// A host as the fleet last heard from it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FleetHost {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub last_seen: DateTime<Utc>,
    /// Finished runs it had not yet copied to PostgreSQL, when last seen.
    pub outbox: u64,
}

/// A run in the central history: the host's record, and the host.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FleetRun {
    pub host: String,
    #[serde(flatten)]
    pub record: RunRecord,
}

/// Which central runs `opsd history --fleet` wants.
#[derive(Debug, Clone, Default)]
pub struct FleetQuery<'a> {
    pub host: Option<&'a str>,
    pub job: Option<&'a str>,
    /// A status as records spell it (`ok`, `failed`, ...).
    pub status: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// A connection to the fleet's PostgreSQL.
pub struct Central {
    client: tokio_postgres::Client,
    /// Where it is (host, port, database): for messages; never the URL,
    /// which may hold a password.
    at: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Central {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Central {
    /// Connects (TLS as the URL's `sslmode` asks) and brings the schema up
    /// to this opsd's version.
    pub async fn connect(settings: &FleetSettings) -> Result<Central, FleetError> {
        let url = settings.url().map_err(FleetError::Settings)?;
        let config = crate::config::parse_fleet_url(&url).map_err(FleetError::Settings)?;
        let at = describe(&config);
        let tls = super::tls::MakeRustls::new(&settings.ca_certs().map_err(FleetError::Settings)?)
            .map_err(FleetError::Settings)?;
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tls))
            .await
            .map_err(|_| FleetError::Connect {
                at: at.clone(),
                error: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            })?
            .map_err(|e| FleetError::Connect {
                at: at.clone(),
                error: error_text(&e),
            })?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "fleet PostgreSQL connection ended");
            }
        });
        let central = Central { client, at, driver };
        central.timed(central.migrate()).await??;
        Ok(central)
    }

    /// Where it is, for messages.
    pub fn at(&self) -> &str {
        &self.at
    }

    /// Whether the connection has ended (the server went away).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn query_error(&self, e: tokio_postgres::Error) -> FleetError {
        FleetError::Query {
            at: self.at.clone(),
            error: error_text(&e),
        }
    }

    async fn migrate(&self) -> Result<(), FleetError> {
        let q = |e| self.query_error(e);
        // A transaction of its own: the advisory lock is held until it
        // ends, so two hosts starting together migrate one after the other.
        self.client.batch_execute("BEGIN").await.map_err(q)?;
        let result = async {
            self.client
                .batch_execute(
                    "SELECT pg_advisory_xact_lock(hashtext('opsd fleet schema'));
                     CREATE TABLE IF NOT EXISTS opsd_schema (
                        version integer PRIMARY KEY,
                        applied timestamptz NOT NULL DEFAULT now()
                     );",
                )
                .await
                .map_err(q)?;
            let row = self
                .client
                .query_one("SELECT coalesce(max(version), 0) FROM opsd_schema", &[])
                .await
                .map_err(q)?;
            let found: i32 = row.get(0);
            if found > SCHEMA_VERSION {
                return Err(FleetError::SchemaTooNew {
                    found,
                    known: SCHEMA_VERSION,
                });
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                self.client.batch_execute(sql).await.map_err(q)?;
                let version = i as i32 + 1;
                self.client
                    .execute("INSERT INTO opsd_schema (version) VALUES ($1)", &[&version])
                    .await
                    .map_err(q)?;
                tracing::info!(at = %self.at, version, "fleet schema migrated");
            }
            Ok(())
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.client.batch_execute(end).await.map_err(q);
        result.and(ended)
    }

    /// Says this host is alive, with its labels, version and backlog;
    /// `last_seen` is the database's clock, not this host's.
    pub async fn heartbeat(&self, settings: &FleetSettings, outbox: u64) -> Result<(), FleetError> {
        let labels = serde_json::to_value(&settings.labels).unwrap_or_default();
        let outbox = i64::try_from(outbox).unwrap_or(i64::MAX);
        self.timed(self.client.execute(
            "INSERT INTO opsd_hosts (name, labels, version, last_seen, outbox)
                 VALUES ($1, $2, $3, now(), $4)
                 ON CONFLICT (name) DO UPDATE
                 SET labels = EXCLUDED.labels, version = EXCLUDED.version,
                     last_seen = now(), outbox = EXCLUDED.outbox",
            &[&settings.host, &labels, &env!("CARGO_PKG_VERSION"), &outbox],
        ))
        .await?
        .map_err(|e| self.query_error(e))?;
        Ok(())
    }

    /// Copies finished runs to the central history. Idempotent by run id:
    /// a batch sent again after a lost answer adds nothing. A run the
    /// server refuses for what it holds (SQLSTATE class 22 or 54) is
    /// answered in the returned list, id and reason, and the rest still
    /// go: one bad record must not keep every later run from the fleet.
    pub async fn publish(
        &self,
        host: &str,
        runs: &[RunRecord],
    ) -> Result<Vec<(String, String)>, FleetError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| without_nul(serde_json::to_value(r).unwrap_or_default()))
            .collect();
        match self.timed(self.insert_runs(host, &records)).await? {
            Ok(()) => return Ok(Vec::new()),
            Err(e) if !refuses_data(&e) => return Err(self.query_error(e)),
            Err(_) => {}
        }
        let mut refused = Vec::new();
        for (run, record) in runs.iter().zip(records) {
            match self
                .timed(self.insert_runs(host, std::slice::from_ref(&record)))
                .await?
            {
                Ok(()) => {}
                Err(e) if refuses_data(&e) => refused.push((run.id.clone(), error_text(&e))),
                Err(e) => return Err(self.query_error(e)),
            }
        }
        Ok(refused)
    }

    async fn insert_runs(
        &self,
        host: &str,
        records: &[serde_json::Value],
    ) -> Result<(), tokio_postgres::Error> {
        self.client
            .execute(
                "INSERT INTO opsd_runs (run_id, host, job, status, started, record)
                 SELECT r->>'id', $1, r->>'job', r->>'status', (r->>'started')::timestamptz, r
                 FROM unnest($2::jsonb[]) AS r
                 ON CONFLICT (run_id) DO NOTHING",
                &[&host, &records],
            )
            .await
            .map(|_| ())
    }

    /// `fut`, or an error once the server has not answered within
    /// [`QUERY_TIMEOUT`]: a server that accepts and never answers (or a
    /// lock someone holds) must not stall the sync loop forever.
    async fn timed<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, FleetError> {
        tokio::time::timeout(QUERY_TIMEOUT, fut)
            .await
            .map_err(|_| FleetError::Query {
                at: self.at.clone(),
                error: format!("no answer within {} s", QUERY_TIMEOUT.as_secs()),
            })
    }

    /// Every host the fleet has heard from, by name.
    pub async fn hosts(&self) -> Result<Vec<FleetHost>, FleetError> {
        let rows = self
            .timed(self.client.query(
                "SELECT name, labels, version, last_seen, outbox FROM opsd_hosts ORDER BY name",
                &[],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            // Rows other hosts wrote: any of them may hold what no opsd
            // wrote (NULLs, other types, dates past chrono's range).
            let host = (|| {
                Ok::<_, tokio_postgres::Error>(FleetHost {
                    name: r.try_get(0)?,
                    labels: serde_json::from_value(r.try_get(1)?).unwrap_or_default(),
                    version: r.try_get(2)?,
                    last_seen: r.try_get(3)?,
                    outbox: u64::try_from(r.try_get::<_, i64>(4)?).unwrap_or(0),
                })
            })();
            match host {
                Ok(h) => out.push(h),
                Err(e) => {
                    tracing::warn!(error = %e, "a fleet host row this opsd cannot read; skipped")
                }
            }
        }
        Ok(out)
    }

    /// The central history, newest first.
    pub async fn history(&self, q: &FleetQuery<'_>) -> Result<Vec<FleetRun>, FleetError> {
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let rows = self
            .timed(self.client.query(
                "SELECT host, record FROM opsd_runs
                 WHERE ($1::text IS NULL OR host = $1) AND ($2::text IS NULL OR job = $2)
                   AND ($3::text IS NULL OR status = $3)
                   AND ($4::timestamptz IS NULL OR started >= $4)
                 ORDER BY started DESC, run_id DESC LIMIT $5",
                &[&q.host, &q.job, &q.status, &q.since, &limit],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (host, value): (String, serde_json::Value) = match (r.try_get(0), r.try_get(1)) {
                (Ok(h), Ok(v)) => (h, v),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "a central run row this opsd cannot read; skipped");
                    continue;
                }
            };
            match serde_json::from_value::<RunRecord>(value) {
                Ok(record) => out.push(FleetRun { host, record }),
                Err(e) => {
                    tracing::warn!(host = %host, error = %e, "a central run record this opsd cannot read; skipped")
                }
            }
        }
        Ok(out)
    }
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long one statement (or the migration) may wait for the server.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether the server refused the data itself (class 22, data exception;
/// 54, a limit passed), not the connection or the moment: sending the same
/// record again would be refused again.
fn refuses_data(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("54"))
}

/// A record PostgreSQL can store: jsonb and text refuse U+0000 anywhere
/// (a plugin's output may hold one), so it becomes U+FFFD, in keys too.
fn without_nul(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let fix = |s: String| {
        if s.contains('\0') {
            s.replace('\0', "\u{fffd}")
        } else {
            s
        }
    };
    match value {
        Value::String(s) => Value::String(fix(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nul).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (fix(k), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `host:port/dbname` of a connection config: what messages name.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// An error with its cause: tokio-postgres's own text is often just
/// "error connecting to server" or "db error".
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
