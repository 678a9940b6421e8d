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
    // 2: fleet jobs: their agreed definition, each host's view of them,
    // and the claims on their slots.
    include_str!("schema-2.sql"),
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
    /// How far ahead of the database's clock its clock was (negative:
    /// behind), in milliseconds, at its last heartbeat.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
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
        // This host's clock as the statement leaves, against the
        // server's as it runs: the skew, give or take half a round trip.
        let local = Utc::now();
        self.timed(self.client.execute(
            "INSERT INTO opsd_hosts (name, labels, version, last_seen, outbox, clock_offset_ms)
                 VALUES ($1, $2, $3, now(), $4,
                         (extract(epoch FROM $5::timestamptz - now()) * 1000)::bigint)
                 ON CONFLICT (name) DO UPDATE
                 SET labels = EXCLUDED.labels, version = EXCLUDED.version,
                     last_seen = now(), outbox = EXCLUDED.outbox,
                     clock_offset_ms = EXCLUDED.clock_offset_ms",
            &[
                &settings.host,
                &labels,
                &env!("CARGO_PKG_VERSION"),
                &outbox,
                &local,
            ],
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
                // A fleet run's record also ends its claim, if nothing
                // did (the host could not reach PostgreSQL as it
                // finished). An interrupted run leaves its claim to
                // expire, so that another host may take the slot over.
                "WITH ended AS (
                    UPDATE opsd_claims c SET ended = (r->>'finished')::timestamptz, status = r->>'status'
                    FROM unnest($2::jsonb[]) AS r
                    WHERE r ? 'fleet' AND c.job = r->>'job' AND c.slot = r->'fleet'->>'slot'
                      AND c.run_id = r->>'id' AND c.ended IS NULL
                      AND r->>'status' NOT IN ('running', 'interrupted')
                 )
                 INSERT INTO opsd_runs (run_id, host, job, status, started, record)
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
                "SELECT name, labels, version, last_seen, outbox, clock_offset_ms
                 FROM opsd_hosts ORDER BY name",
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
                    clock_offset_ms: r.try_get(5)?,
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

/// A claim on a slot of a fleet job, as asked for.
#[derive(Debug, Clone)]
pub struct ClaimAsk {
    pub job: String,
    /// The slot's key: [`slot_key`] of its time, or `manual RUN`.
    pub slot: String,
    pub scheduled: DateTime<Utc>,
    /// [`crate::config::Job::fleet_definition`] on this host.
    pub definition: String,
    pub host: String,
    pub run_id: String,
    pub attempt: u32,
    pub lease: std::time::Duration,
    pub forbid_overlap: bool,
    /// How far ahead of the database's clock the slot may be: `None` for
    /// a run that is not a schedule's (manual).
    pub early: Option<std::time::Duration>,
    /// How far behind: `None` for catch-up, retries and manual runs.
    pub late: Option<std::time::Duration>,
}

/// The key of a scheduled slot: its time to the microsecond, in UTC.
pub fn slot_key(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// What became of a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This host runs the slot; its lease ends then unless renewed.
    Won { until: DateTime<Utc> },
    /// Another host has (or had) it.
    Taken { host: String, status: String },
    /// `overlap = "forbid"` and another run of the job goes on.
    Busy { host: String, run: String },
    /// The fleet runs a different definition of the job, set by `by`.
    Definition { fleet: String, by: String },
    /// This host's clock is ahead of the database's by about this many
    /// seconds: the slot has not come yet.
    Early { seconds: f64 },
    /// Behind: the slot passed this many seconds ago and nobody ran it.
    Late { seconds: f64 },
}

/// A claim whose lease ran out with its run unfinished: its host died or
/// lost PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub job: String,
    pub slot: String,
    pub scheduled: DateTime<Utc>,
    pub host: String,
    pub run_id: String,
    pub attempt: u32,
    pub lease_until: DateTime<Utc>,
    /// The definition the claim was made with.
    pub definition: String,
    /// The database's clock when it was read: what the job's policies
    /// are judged by, so hosts with skewed clocks decide alike.
    pub db_now: DateTime<Utc>,
}

/// What became of a claim's end.
#[derive(Debug, Clone, PartialEq)]
pub enum Released {
    /// Recorded; the slot is done.
    Ended,
    /// The claim is no longer this run's: another host took it over.
    Lost { holder: String },
}

/// A fleet job as a host sees it, for `fleet status`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostJob {
    pub job: String,
    pub definition: String,
    pub eligible: bool,
    pub next_slot: Option<DateTime<Utc>>,
}

/// A fleet job as the fleet sees it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FleetJob {
    pub name: String,
    /// The definition hash the fleet runs, and the host that set it.
    pub definition: String,
    pub defined_by: String,
    /// The earliest next slot among hosts that may run it.
    pub next_slot: Option<DateTime<Utc>>,
    /// Hosts that may run it (their labels fit and they agree on it).
    pub hosts: Vec<String>,
    /// Hosts that define it differently: they do not run it.
    pub disagreeing: Vec<String>,
    pub last_host: Option<String>,
    pub last_slot: Option<DateTime<Utc>>,
    /// `running`, or how the last claimed slot's run ended.
    pub last_status: Option<String>,
}

impl Central {
    async fn claim_call(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<
        (
            String,
            Option<String>,
            Option<String>,
            Option<DateTime<Utc>>,
        ),
        FleetError,
    > {
        let row = self
            .timed(self.client.query_one(sql, params))
            .await?
            .map_err(|e| self.query_error(e))?;
        let bad = |e: tokio_postgres::Error| self.query_error(e);
        Ok((
            row.try_get(0).map_err(bad)?,
            row.try_get(1).map_err(bad)?,
            row.try_get(2).map_err(bad)?,
            row.try_get(3).map_err(bad)?,
        ))
    }

    /// Claims a slot (see `schema-2.sql`, `opsd_claim`).
    pub async fn claim(&self, ask: &ClaimAsk) -> Result<Claim, FleetError> {
        let attempt = i32::try_from(ask.attempt).unwrap_or(i32::MAX);
        let (outcome, holder, detail, until) = self
            .claim_call(
                "SELECT * FROM opsd_claim($1, $2, $3, $4, $5, $6, $7,
                     make_interval(secs => $8), $9,
                     make_interval(secs => $10), make_interval(secs => $11))",
                &[
                    &ask.job,
                    &ask.slot,
                    &ask.scheduled,
                    &ask.definition,
                    &ask.host,
                    &ask.run_id,
                    &attempt,
                    &ask.lease.as_secs_f64(),
                    &ask.forbid_overlap,
                    &ask.early.map(|d| d.as_secs_f64()),
                    &ask.late.map(|d| d.as_secs_f64()),
                ],
            )
            .await?;
        let text = |o: Option<String>| o.unwrap_or_default();
        let secs = |o: &Option<String>| o.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0.0);
        Ok(match outcome.as_str() {
            "won" => Claim::Won {
                until: until.unwrap_or_else(Utc::now),
            },
            "taken" => Claim::Taken {
                host: text(holder),
                status: text(detail),
            },
            "busy" => Claim::Busy {
                host: text(holder),
                run: text(detail),
            },
            "definition" => Claim::Definition {
                fleet: text(detail),
                by: text(holder),
            },
            "early" => Claim::Early {
                seconds: secs(&detail),
            },
            "late" => Claim::Late {
                seconds: secs(&detail),
            },
            other => {
                return Err(FleetError::Query {
                    at: self.at.clone(),
                    error: format!("opsd_claim answered {other:?}, which this opsd does not know"),
                });
            }
        })
    }

    /// Extends a run's lease; `false` once the claim is no longer the
    /// run's, or its lease has already run out.
    pub async fn renew(
        &self,
        job: &str,
        slot: &str,
        run_id: &str,
        lease: std::time::Duration,
    ) -> Result<bool, FleetError> {
        let n = self
            .timed(self.client.execute(
                "UPDATE opsd_claims SET lease_until = now() + make_interval(secs => $4)
                 WHERE job = $1 AND slot = $2 AND run_id = $3 AND ended IS NULL
                   AND lease_until > now()",
                &[&job, &slot, &run_id, &lease.as_secs_f64()],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        Ok(n == 1)
    }

    /// Ends a run's claim with its status. An interrupted run (opsd
    /// stopping) gives its lease up instead, so another host may take
    /// the slot over at once, as the job's policies say.
    pub async fn release(
        &self,
        job: &str,
        slot: &str,
        run_id: &str,
        status: &str,
    ) -> Result<Released, FleetError> {
        let sql = if status == "interrupted" {
            "UPDATE opsd_claims SET lease_until = now() - interval '1 microsecond'
             WHERE job = $1 AND slot = $2 AND run_id = $3 AND ended IS NULL AND $4 <> ''"
        } else {
            "UPDATE opsd_claims SET ended = now(), status = $4
             WHERE job = $1 AND slot = $2 AND run_id = $3 AND ended IS NULL"
        };
        let n = self
            .timed(self.client.execute(sql, &[&job, &slot, &run_id, &status]))
            .await?
            .map_err(|e| self.query_error(e))?;
        if n == 1 {
            return Ok(Released::Ended);
        }
        let row = self
            .timed(self.client.query_opt(
                "SELECT host, run_id FROM opsd_claims WHERE job = $1 AND slot = $2",
                &[&job, &slot],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        match row {
            // Ended already (by the outbox copy of its record): ours.
            Some(r) if r.try_get::<_, String>(1).ok().as_deref() == Some(run_id) => {
                Ok(Released::Ended)
            }
            Some(r) => Ok(Released::Lost {
                holder: r.try_get(0).unwrap_or_default(),
            }),
            None => Ok(Released::Lost {
                holder: String::new(),
            }),
        }
    }

    /// Claims of `jobs` whose lease ran out with the run unfinished.
    pub async fn expired(&self, jobs: &[String]) -> Result<Vec<Expired>, FleetError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .timed(self.client.query(
                "SELECT job, slot, scheduled, host, run_id, attempt, lease_until, definition, now()
                 FROM opsd_claims
                 WHERE ended IS NULL AND lease_until < now() AND job = ANY($1)
                 ORDER BY scheduled LIMIT 1000",
                &[&jobs],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        let mut out = Vec::new();
        for r in rows {
            let e = (|| {
                Ok::<_, tokio_postgres::Error>(Expired {
                    job: r.try_get(0)?,
                    slot: r.try_get(1)?,
                    scheduled: r.try_get(2)?,
                    host: r.try_get(3)?,
                    run_id: r.try_get(4)?,
                    attempt: u32::try_from(r.try_get::<_, i32>(5)?).unwrap_or(1),
                    lease_until: r.try_get(6)?,
                    definition: r.try_get(7)?,
                    db_now: r.try_get(8)?,
                })
            })();
            match e {
                Ok(e) => out.push(e),
                Err(e) => {
                    tracing::warn!(error = %e, "a fleet claim row this opsd cannot read; skipped")
                }
            }
        }
        Ok(out)
    }

    /// Takes over an expired claim for a new run: `Won` (holding the
    /// host and run that lost it), or why not.
    pub async fn take_over(
        &self,
        expired: &Expired,
        ask: &ClaimAsk,
    ) -> Result<TakeOver, FleetError> {
        let (outcome, holder, detail, until) = self
            .claim_call(
                "SELECT * FROM opsd_take_over($1, $2, $3, $4, $5, $6,
                     make_interval(secs => $7), $8)",
                &[
                    &expired.job,
                    &expired.slot,
                    &expired.run_id,
                    &ask.definition,
                    &ask.host,
                    &ask.run_id,
                    &ask.lease.as_secs_f64(),
                    &ask.forbid_overlap,
                ],
            )
            .await?;
        Ok(match outcome.as_str() {
            "won" => TakeOver::Won {
                until: until.unwrap_or_else(Utc::now),
            },
            "busy" => TakeOver::Busy,
            "definition" => TakeOver::Definition {
                fleet: detail.unwrap_or_default(),
                by: holder.unwrap_or_default(),
            },
            _ => TakeOver::Gone,
        })
    }

    /// Ends an expired claim as `lost`, nobody running it again (the
    /// job's policies said no); `false` if another host got there first.
    pub async fn abandon(&self, expired: &Expired) -> Result<bool, FleetError> {
        let n = self
            .timed(self.client.execute(
                "UPDATE opsd_claims SET ended = now(), status = 'lost'
                 WHERE job = $1 AND slot = $2 AND run_id = $3 AND ended IS NULL
                   AND lease_until < now()",
                &[&expired.job, &expired.slot, &expired.run_id],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        Ok(n == 1)
    }

    /// Makes `definition` the one the fleet runs for `job`: when this
    /// host's own definition changed (an operator edited it here), or,
    /// with `only_if_new`, when the fleet has none yet.
    pub async fn define(
        &self,
        job: &str,
        definition: &str,
        host: &str,
        only_if_new: bool,
    ) -> Result<(), FleetError> {
        let sql = if only_if_new {
            "INSERT INTO opsd_jobs (job, definition, defined_by) VALUES ($1, $2, $3)
             ON CONFLICT (job) DO NOTHING"
        } else {
            "INSERT INTO opsd_jobs (job, definition, defined_by) VALUES ($1, $2, $3)
             ON CONFLICT (job) DO UPDATE SET definition = EXCLUDED.definition,
                 defined_by = EXCLUDED.defined_by, defined = now()
             WHERE opsd_jobs.definition <> EXCLUDED.definition"
        };
        self.timed(self.client.execute(sql, &[&job, &definition, &host]))
            .await?
            .map_err(|e| self.query_error(e))?;
        Ok(())
    }

    /// Says how this host sees the fleet jobs that `changed`; rows of
    /// jobs not in `all` go.
    pub async fn host_jobs(
        &self,
        host: &str,
        all: &[&str],
        changed: &[&HostJob],
    ) -> Result<(), FleetError> {
        let jobs = changed;
        let names: Vec<&str> = jobs.iter().map(|j| j.job.as_str()).collect();
        let defs: Vec<&str> = jobs.iter().map(|j| j.definition.as_str()).collect();
        let eligible: Vec<bool> = jobs.iter().map(|j| j.eligible).collect();
        let next: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.next_slot).collect();
        self.timed(self.client.execute(
            "WITH gone AS (
                DELETE FROM opsd_host_jobs WHERE host = $1 AND NOT (job = ANY($6))
             )
             INSERT INTO opsd_host_jobs (host, job, definition, eligible, next_slot, seen)
             SELECT $1, j, d, e, n, now()
             FROM unnest($2::text[], $3::text[], $4::bool[], $5::timestamptz[]) AS u(j, d, e, n)
             ON CONFLICT (host, job) DO UPDATE SET definition = EXCLUDED.definition,
                 eligible = EXCLUDED.eligible, next_slot = EXCLUDED.next_slot, seen = now()",
            &[&host, &names, &defs, &eligible, &next, &all],
        ))
        .await?
        .map_err(|e| self.query_error(e))?;
        Ok(())
    }

    /// The definition the fleet runs for each of `jobs` that has one, and
    /// the host that set it.
    pub async fn definitions(
        &self,
        jobs: &[&str],
    ) -> Result<BTreeMap<String, (String, String)>, FleetError> {
        let rows = self
            .timed(self.client.query(
                "SELECT job, definition, defined_by FROM opsd_jobs WHERE job = ANY($1)",
                &[&jobs],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, (r.try_get(1).ok()?, r.try_get(2).ok()?))))
            .collect())
    }

    /// Every fleet job, by name.
    pub async fn jobs(&self) -> Result<Vec<FleetJob>, FleetError> {
        let rows = self
            .timed(self.client.query(
                "SELECT j.job, j.definition, j.defined_by,
                    (SELECT min(h.next_slot) FROM opsd_host_jobs h
                      WHERE h.job = j.job AND h.eligible AND h.definition = j.definition),
                    coalesce((SELECT array_agg(h.host ORDER BY h.host) FROM opsd_host_jobs h
                      WHERE h.job = j.job AND h.eligible AND h.definition = j.definition), '{}'),
                    coalesce((SELECT array_agg(h.host ORDER BY h.host) FROM opsd_host_jobs h
                      WHERE h.job = j.job AND h.definition <> j.definition), '{}'),
                    last.host, last.scheduled, last.status
                 FROM opsd_jobs j
                 LEFT JOIN LATERAL (
                    SELECT c.host, c.scheduled, coalesce(c.status, 'running') AS status
                    FROM opsd_claims c WHERE c.job = j.job
                    ORDER BY c.scheduled DESC LIMIT 1
                 ) last ON true
                 ORDER BY j.job",
                &[],
            ))
            .await?
            .map_err(|e| self.query_error(e))?;
        let mut out = Vec::new();
        for r in rows {
            let job = (|| {
                Ok::<_, tokio_postgres::Error>(FleetJob {
                    name: r.try_get(0)?,
                    definition: r.try_get(1)?,
                    defined_by: r.try_get(2)?,
                    next_slot: r.try_get(3)?,
                    hosts: r.try_get(4)?,
                    disagreeing: r.try_get(5)?,
                    last_host: r.try_get(6)?,
                    last_slot: r.try_get(7)?,
                    last_status: r.try_get(8)?,
                })
            })();
            match job {
                Ok(j) => out.push(j),
                Err(e) => {
                    tracing::warn!(error = %e, "a fleet job row this opsd cannot read; skipped")
                }
            }
        }
        Ok(out)
    }

    /// Deletes ended claims older than `keep`; how many went.
    pub async fn prune_claims(&self, keep: std::time::Duration) -> Result<u64, FleetError> {
        self.timed(self.client.execute(
            "DELETE FROM opsd_claims WHERE ended < now() - make_interval(secs => $1)",
            &[&keep.as_secs_f64()],
        ))
        .await?
        .map_err(|e| self.query_error(e))
    }
}

/// What became of a take-over.
#[derive(Debug, Clone, PartialEq)]
pub enum TakeOver {
    Won {
        until: DateTime<Utc>,
    },
    /// Another host took it over, or it ended meanwhile.
    Gone,
    Busy,
    Definition {
        fleet: String,
        by: String,
    },
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
