//! The fleet jobs' part of each round of the fleet loop (every two
//! seconds while PostgreSQL answers): who is alive, which definitions
//! the hosts agree on, slots whose lease ran out on another host, and
//! slots this host held while PostgreSQL was away.

use crate::config::{FleetSettings, Job};
use crate::fleet::{Central, Expired, FleetError, HostJob};
use crate::ops::Ops;
use crate::policy::{CatchUp, MAX_CATCH_UP};
use crate::record::Trigger;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// A host counts as alive this long after its last heartbeat.
const ALIVE_FOR: chrono::Duration = chrono::Duration::seconds(10);

/// A hand-over whose run has not taken its slot is made again after this.
const HAND_OVER_AGAIN: Duration = Duration::from_secs(30);

/// Expired claims of one job handed over in one round, at most.
const TAKE_OVERS_PER_ROUND: usize = 10;

/// Ended claims are kept this long, for `fleet status` and audits.
const KEEP_CLAIMS: Duration = Duration::from_secs(30 * 86_400);

/// Claims are pruned this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the rounds remember between them.
#[derive(Default)]
pub struct Rounds {
    /// Expired claims handed to the scheduler, so a round does not hand
    /// one over twice while its run is on the way.
    handed: HashMap<(String, String, String), Instant>,
    /// What this host last said of its fleet jobs.
    said: Option<Vec<HostJob>>,
    last_prune: Option<Instant>,
}

impl Rounds {
    /// One round; an error means PostgreSQL stopped answering.
    pub async fn round(
        &mut self,
        ops: &Ops,
        central: &Central,
        settings: &FleetSettings,
    ) -> Result<(), FleetError> {
        let config = ops.config();
        let now = ops.clock().now();
        // Who is alive, by the database's clock (the newest heartbeat,
        // this host's own of a moment ago, stands for "now").
        let hosts = central.hosts().await?;
        let newest = hosts.iter().map(|h| h.last_seen).max();
        ops.fleet().set_hosts(
            hosts
                .into_iter()
                .filter(|h| newest.is_some_and(|n| n - h.last_seen <= ALIVE_FOR))
                .map(|h| (h.name, h.labels))
                .collect(),
        );
        let fleet_jobs: Vec<&Job> = config.jobs.iter().filter(|j| j.fleet.is_some()).collect();
        if fleet_jobs.is_empty() && self.said.as_ref().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        // Each job's definition here, with its plugin as loaded now.
        let plugins: BTreeMap<String, String> = ops
            .registry()
            .list()
            .await
            .into_iter()
            .filter(|p| p.status == crate::plugins::PluginStatus::Ready)
            .map(|p| (p.name, p.sha256))
            .collect();
        let mut mine = Vec::new();
        for job in &fleet_jobs {
            let Some(definition) = plugins
                .get(&job.plugin)
                .and_then(|sha| job.fleet_definition(sha))
            else {
                continue;
            };
            let told = ops.store().told_definition(&job.name).ok().flatten();
            if told.as_deref() != Some(definition.as_str()) {
                // Changed here since this host last said: the operator's
                // edit, which the fleet follows. Never said: a host that
                // joins takes the fleet's, unless there is none yet.
                central
                    .define(&job.name, &definition, &settings.host, told.is_none())
                    .await?;
                if let Err(e) = ops.store().set_told_definition(&job.name, &definition) {
                    tracing::warn!(job = %job.name, error = %e, "cannot keep the fleet job's definition in the store");
                }
            }
            let state = ops.jobs().state(&job.name).unwrap_or_default();
            let eligible = job
                .fleet
                .as_ref()
                .is_some_and(|f| f.admits(&settings.labels));
            mine.push(HostJob {
                job: job.name.clone(),
                definition,
                eligible,
                next_slot: state.next_fire.filter(|_| eligible),
            });
        }
        // Only what changed since the last round (a fire moves one job's
        // next slot): the claims share this connection.
        let said = self.said.as_deref().unwrap_or_default();
        let changed: Vec<&HostJob> = if said.len() == mine.len() {
            mine.iter()
                .zip(said)
                .filter(|(m, s)| m != s)
                .map(|(m, _)| m)
                .collect()
        } else {
            mine.iter().collect()
        };
        let names: Vec<&str> = mine.iter().map(|m| m.job.as_str()).collect();
        if !changed.is_empty() || said.len() != mine.len() {
            central.host_jobs(&settings.host, &names, &changed).await?;
            self.said = Some(mine.clone());
        }
        // Where this host disagrees with the fleet, said loudly once.
        let fleet_defs = central.definitions(&names).await?;
        for m in &mine {
            let differs = fleet_defs.get(&m.job).filter(|(d, _)| *d != m.definition);
            ops.fleet().set_disagreeing(&m.job, differs.is_some());
            if let Some((d, by)) = differs
                && ops
                    .fleet()
                    .first_time(format!("definition {} {d} {}", m.job, m.definition))
            {
                tracing::error!(job = %m.job, here = %m.definition, fleet = %d, defined_by = %by,
                    "this host's definition of the fleet job differs from the one the fleet runs; it does not run the job until opsd.toml and the plugin agree with host {by}'s");
            }
        }
        let eligible: Vec<&Job> = fleet_jobs
            .iter()
            .copied()
            .filter(|j| {
                mine.iter().any(|m| {
                    m.job == j.name
                        && m.eligible
                        && fleet_defs
                            .get(&j.name)
                            .is_none_or(|(d, _)| *d == m.definition)
                })
            })
            .collect();
        let definitions: BTreeMap<String, String> = mine
            .iter()
            .map(|m| (m.job.clone(), m.definition.clone()))
            .collect();
        let mut released = self
            .take_overs(ops, central, &eligible, &definitions)
            .await?;
        released |= release_held(ops, &eligible, now);
        if released {
            ops.changed().notify_one();
        }
        if self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            self.last_prune = Some(Instant::now());
            let n = central.prune_claims(KEEP_CLAIMS).await?;
            if n > 0 {
                tracing::info!(
                    claims = n,
                    "pruned the fleet's ended claims older than 30 days"
                );
            }
        }
        Ok(())
    }

    /// Hands the scheduler each expired claim the job's policies run
    /// again (retries left, or the catch-up policy); ends the others as
    /// lost. Whether this host or another runs it, the claim decides.
    async fn take_overs(
        &mut self,
        ops: &Ops,
        central: &Central,
        eligible: &[&Job],
        definitions: &BTreeMap<String, String>,
    ) -> Result<bool, FleetError> {
        let names: Vec<String> = eligible.iter().map(|j| j.name.clone()).collect();
        let expired = central.expired(&names).await?;
        let keys: HashSet<(String, String, String)> = expired
            .iter()
            .map(|e| (e.job.clone(), e.slot.clone(), e.run_id.clone()))
            .collect();
        // A hand-over whose run never took the slot (it found the job
        // busy, PostgreSQL failed it) is tried again after a while.
        self.handed
            .retain(|k, at| keys.contains(k) && at.elapsed() < HAND_OVER_AGAIN);
        let mut released = false;
        let mut per_job: HashMap<String, usize> = HashMap::new();
        for e in expired {
            let key = (e.job.clone(), e.slot.clone(), e.run_id.clone());
            if self.handed.contains_key(&key) {
                continue;
            }
            let Some(job) = eligible.iter().find(|j| j.name == e.job) else {
                continue;
            };
            // Only what this host would have run itself: a slot of the
            // job's schedule (or a manual run), claimed with the
            // definition this host has, a few per round. Rows written by
            // someone else with the database's credentials cannot make
            // the fleet run a job over and over.
            let ours = definitions.get(&e.job) == Some(&e.definition);
            let in_schedule = e.slot.starts_with("manual ")
                || job.schedule.next_after(
                    e.scheduled - chrono::Duration::microseconds(1),
                    job.timezone,
                ) == Some(e.scheduled);
            let n = per_job.entry(e.job.clone()).or_default();
            if !ours || !in_schedule || *n >= TAKE_OVERS_PER_ROUND {
                continue;
            }
            *n += 1;
            match again(job, &e, e.db_now) {
                Some(trigger) => {
                    tracing::warn!(job = %e.job, slot = %e.slot, host = %e.host, run = %e.run_id, lease_until = %e.lease_until,
                        "a fleet slot's lease ran out mid-run on another host; the job's policies run it again ({trigger:?})");
                    self.handed.insert(key, Instant::now());
                    let (name, at) = (e.job.clone(), e.scheduled);
                    ops.fleet().release(&name, vec![(at, trigger)], Some(e));
                    released = true;
                }
                None => {
                    if central.abandon(&e).await? {
                        tracing::warn!(job = %e.job, slot = %e.slot, host = %e.host, run = %e.run_id, lease_until = %e.lease_until,
                            "a fleet slot's lease ran out mid-run on another host; the job's policies (retries, catch_up) do not run it again: recorded as lost");
                    }
                }
            }
        }
        Ok(released)
    }
}

/// Whether a slot whose run was lost runs again, and as what: a retry
/// while the job has retries left, else as its catch-up policy says of
/// a missed slot.
fn again(job: &Job, e: &Expired, now: DateTime<Utc>) -> Option<Trigger> {
    let policy = &job.policy;
    if e.attempt <= policy.retries {
        return Some(Trigger::Retry);
    }
    if e.slot.starts_with("manual ") {
        return None;
    }
    let in_time = policy
        .catch_up_deadline
        .is_none_or(|d| (now - e.scheduled).to_std().is_ok_and(|age| age <= d));
    let wanted = match policy.catch_up {
        CatchUp::Skip => false,
        CatchUp::All => true,
        // Only while no later slot has come.
        CatchUp::Latest => job
            .schedule
            .next_after(e.scheduled, job.timezone)
            .is_none_or(|n| n > now),
    };
    (in_time && wanted).then_some(Trigger::CatchUp)
}

/// Hands the scheduler the slots held while PostgreSQL was away, as each
/// job's catch-up policy says; returns whether it handed any.
fn release_held(ops: &Ops, eligible: &[&Job], now: DateTime<Utc>) -> bool {
    let held = match ops.store().take_held() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the fleet slots held in the store");
            return false;
        }
    };
    let mut released = false;
    for (name, slots) in held {
        let Some(job) = eligible.iter().find(|j| j.name == name) else {
            tracing::warn!(job = %name, slots = slots.len(), "slots held while the fleet's PostgreSQL was away are dropped: the job is no longer a fleet job this host may run, or its definition differs from the fleet's");
            continue;
        };
        let policy = &job.policy;
        let mut fit: Vec<DateTime<Utc>> = slots
            .into_iter()
            .filter(|s| {
                policy
                    .catch_up_deadline
                    .is_none_or(|d| (now - *s).to_std().is_ok_and(|age| age <= d))
            })
            .collect();
        let run: Vec<DateTime<Utc>> = match policy.catch_up {
            CatchUp::Skip => Vec::new(),
            CatchUp::Latest => fit.pop().into_iter().collect(),
            CatchUp::All => {
                let from = fit.len().saturating_sub(MAX_CATCH_UP);
                fit.split_off(from)
            }
        };
        tracing::info!(job = %name, running = run.len(), catch_up = ?policy.catch_up,
            "the fleet's PostgreSQL answers again: slots held while it was away go to the job's catch-up policy");
        if !run.is_empty() {
            ops.fleet().release(
                &name,
                run.into_iter().map(|s| (s, Trigger::CatchUp)).collect(),
                None,
            );
            released = true;
        }
    }
    released
}
