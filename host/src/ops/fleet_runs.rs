//! Runs of fleet jobs: the claim before the plugin starts, the lease
//! while it runs, the claim's end after. A host job passes straight
//! through.

use super::{Ops, OpsError, Start};
use crate::config::{Config, Job};
use crate::fleet::lease::{ClaimCounts, Keeper, Lease};
use crate::fleet::{Claim, ClaimAsk, Coordinator, Released, TakeOver, slot_key};
use crate::policy::Overlap;
use crate::record::{FleetClaim, RunRecord, RunStatus, TookOver, Trigger};
use crate::runtime::Execution;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far ahead of the database's clock a host may fire a slot without
/// waiting: beyond it, the host's clock is ahead and the claim waits.
const EARLY: Duration = Duration::from_secs(1);

/// A host whose clock is further ahead than this does not wait for the
/// database's: it records the slot as not run and says to fix its clock.
const MAX_EARLY: f64 = 300.0;

/// How long a host waits per place in a slot's ranking before it claims
/// (see [`crate::fleet::lease::FleetLink::rank`]).
const RANK_STEP: Duration = Duration::from_millis(100);

/// The longest a host waits for its place: the hosts ranked above it are
/// read from PostgreSQL, and anyone who can write there could list
/// thousands that never claim, making every slot wait past its time.
const MAX_RANK_WAIT: Duration = Duration::from_secs(2);

/// How long a host ranked `rank` waits before it claims a slot.
fn rank_wait(rank: usize) -> Duration {
    RANK_STEP
        .saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX))
        .min(MAX_RANK_WAIT)
}

/// A claimed run's lease, its record's fleet part, and its keeper.
pub(super) struct Held {
    lease: Lease,
    claim: FleetClaim,
    keeper: Keeper,
    /// The plugin the claim was made for, until the run takes it.
    pub(super) found: Option<crate::plugins::Found>,
}

/// A slot this host won: its lease (granted when the claim was sent),
/// its record's fleet part, and the plugin the claim was made for (the
/// run uses that one: looking it up again would lose what its load was).
pub(super) struct Won {
    lease: Lease,
    claim: FleetClaim,
    granted: Instant,
    found: crate::plugins::Found,
}

/// What a fleet job's run may do, decided before it starts.
#[allow(clippy::large_enum_variant)] // one per run, never stored
pub(super) enum Claimed {
    /// Run it: a host job, or a slot this host won (its lease granted
    /// when the claim was sent).
    Run(Option<Won>),
    /// Not run; the record says why.
    Recorded(RunRecord),
}

impl Ops {
    /// Claims the run's slot if the job is a fleet job.
    pub(super) async fn claim(
        &self,
        config: &Config,
        job: &Job,
        start: &Start,
        run_id: &str,
    ) -> Result<Claimed, OpsError> {
        let (Some(scope), Some(settings)) = (&job.fleet, &config.fleet) else {
            return Ok(Claimed::Run(None));
        };
        if !scope.admits(&settings.labels) {
            return Err(OpsError::NotOnThisHost {
                job: job.name.clone(),
                on: scope.on_text(),
                host: settings.host.clone(),
            });
        }
        if start.dry_run {
            // It acts on nothing: no slot to hold from a real run, and
            // nothing another host could take over and run for real.
            return Ok(Claimed::Run(None));
        }
        let manual = start.trigger == Trigger::Manual;
        let found = match self.find_plugin(job).await {
            Ok(f) => f,
            Err(e) => {
                return self
                    .not_run(
                        job,
                        start,
                        RunStatus::Failed,
                        &format!("{e}; the slot is left to the fleet's other hosts"),
                    )
                    .map(Claimed::Recorded);
            }
        };
        let scheduled = start.trigger == Trigger::Schedule;
        let ask = ClaimAsk {
            job: job.name.clone(),
            slot: match (&start.fleet_slot, manual) {
                (Some(slot), _) => slot.clone(),
                (None, true) => format!("manual {run_id}"),
                (None, false) => slot_key(start.scheduled),
            },
            scheduled: start.scheduled,
            definition: job
                .fleet_definition(&found.plugin.sha256)
                .unwrap_or_default(),
            host: settings.host.clone(),
            run_id: run_id.to_owned(),
            attempt: start.attempt,
            lease: settings.lease,
            forbid_overlap: job.policy.overlap == Overlap::Forbid,
            // Any slot of the schedule (a catch-up's too: a host whose
            // clock is ahead thinks future slots were missed) waits for
            // the database's clock; a run by hand has no slot to wait for.
            early: (!manual).then_some(EARLY),
            late: scheduled.then(|| {
                (crate::policy::MISSED_AFTER.to_std().unwrap_or_default()) + job.policy.jitter
            }),
        };
        let coordinator: Arc<dyn Coordinator> = match self.fleet.coordinator() {
            Some(c) => c,
            // By hand, without a daemon connected: connect for this run.
            None if manual => match crate::fleet::Central::connect(settings).await {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    return Err(OpsError::FleetUnreachable {
                        job: job.name.clone(),
                        error: e.to_string(),
                    });
                }
            },
            None => {
                return self
                    .hold(job, start, "the fleet's PostgreSQL does not answer")
                    .map(Claimed::Recorded);
            }
        };
        if scheduled {
            let rank = self.fleet.rank(&settings.host, scope, &job.name, &ask.slot);
            if rank > 0 {
                tokio::time::sleep(rank_wait(rank)).await;
            }
        }
        loop {
            let sent = Instant::now();
            let (answer, took_over) = match &start.take_over {
                Some(expired) => {
                    let took = TookOver {
                        host: expired.host.clone(),
                        run: expired.run_id.clone(),
                        lease_until: expired.lease_until,
                    };
                    let answer = coordinator.take_over(expired, &ask).await.map(|t| match t {
                        TakeOver::Won { until } => Claim::Won { until },
                        TakeOver::Gone => Claim::Taken {
                            host: "another host".into(),
                            status: "taken over".into(),
                        },
                        TakeOver::Busy => Claim::Busy {
                            host: "another host".into(),
                            run: "a run".into(),
                        },
                        TakeOver::Definition { fleet, by } => Claim::Definition { fleet, by },
                    });
                    (answer, Some(took))
                }
                None => (coordinator.claim(&ask).await, None),
            };
            let counts = &self.fleet.counts;
            let claim = match answer {
                Ok(c) => c,
                Err(e) if manual => {
                    return Err(OpsError::FleetUnreachable {
                        job: job.name.clone(),
                        error: e.to_string(),
                    });
                }
                Err(e) => {
                    return self.hold(job, start, &e.to_string()).map(Claimed::Recorded);
                }
            };
            let refuse = |why: String| {
                ClaimCounts::add(&counts.refused);
                self.not_run(job, start, RunStatus::Skipped, &why)
                    .map(Claimed::Recorded)
            };
            return match claim {
                Claim::Won { .. } => {
                    ClaimCounts::add(&counts.won);
                    if let Some(t) = &took_over {
                        ClaimCounts::add(&counts.taken_over);
                        tracing::warn!(job = %job.name, slot = %ask.slot, from = %t.host, lost_run = %t.run, "took over a fleet slot whose lease ran out on another host");
                    }
                    Ok(Claimed::Run(Some(Won {
                        lease: Lease {
                            job: job.name.clone(),
                            slot: ask.slot.clone(),
                            run_id: run_id.to_owned(),
                            length: settings.lease,
                            lost: Default::default(),
                            claimed_via: coordinator.clone(),
                        },
                        claim: FleetClaim {
                            slot: ask.slot.clone(),
                            took_over,
                            lease_lost: None,
                        },
                        granted: sent,
                        found,
                    })))
                }
                Claim::Taken { host, .. } => {
                    ClaimCounts::add(&counts.taken);
                    Err(OpsError::ClaimedElsewhere {
                        job: job.name.clone(),
                        host,
                        slot: ask.slot.clone(),
                    })
                }
                Claim::Busy { host, run } if manual => Err(OpsError::AlreadyRunning {
                    job: job.name.clone(),
                    run: format!("{run} on host {host}"),
                }),
                Claim::Busy { host, run } => refuse(format!(
                    "run {run} on host {host} was still going (overlap = \"forbid\")"
                )),
                Claim::Definition { fleet, by } => {
                    let mine = &ask.definition;
                    let why = format!(
                        "this host's definition of fleet job `{}` (hash {mine}) differs from the one the fleet runs (hash {fleet}, set by host {by}); it does not run a different job under the same name: make opsd.toml and the plugin agree on every host (`opsd fleet status` names the hosts that differ)",
                        job.name
                    );
                    if self
                        .fleet
                        .first_time(format!("definition {} {fleet} {mine}", job.name))
                    {
                        tracing::error!(job = %job.name, "{why}");
                    }
                    self.fleet.set_disagreeing(&job.name, true);
                    refuse(why)
                }
                Claim::Early { seconds } if seconds <= MAX_EARLY => {
                    if self.fleet.first_time(format!("early {}", job.name)) {
                        tracing::warn!(job = %job.name, ahead = seconds, "this host's clock is ahead of the fleet's PostgreSQL; fleet slots wait for the database's clock (fix the host's time sync)");
                    }
                    tokio::time::sleep(
                        Duration::from_secs_f64(seconds.max(0.0)) + Duration::from_millis(5),
                    )
                    .await;
                    continue;
                }
                Claim::Early { seconds } => refuse(format!(
                    "this host's clock is {seconds:.0} s ahead of the fleet's PostgreSQL: slot {} has not come for the fleet; fix this host's time sync",
                    ask.slot
                )),
                Claim::Late { seconds } => refuse(format!(
                    "slot {} passed {seconds:.0} s ago by the fleet's PostgreSQL clock and no host claimed it; this host's clock is behind (fix its time sync), and a slot that late is the job's catch_up policy's to run",
                    ask.slot
                )),
            };
        }
    }

    /// Starts keeping a won lease for the run `cancel` stops.
    pub(super) fn keep_lease(
        &self,
        claimed: Option<Won>,
        cancel: &crate::runtime::Cancel,
    ) -> Option<Held> {
        let Won {
            lease,
            claim,
            granted,
            found,
        } = claimed?;
        let cancel = cancel.clone();
        let keeper = Keeper::spawn(self.fleet.clone(), lease.clone(), granted, move |why| {
            cancel.cancel(RunStatus::Interrupted, why)
        });
        Some(Held {
            lease,
            claim,
            keeper,
            found: Some(found),
        })
    }

    /// Ends the claim of a run that held one: a run whose lease was lost
    /// does not count, whatever its plugin said.
    pub(super) async fn end_claim(
        &self,
        rec: &mut RunRecord,
        mut exec: Execution,
        held: Held,
    ) -> Execution {
        let Held {
            lease,
            mut claim,
            keeper,
            ..
        } = held;
        drop(keeper);
        let mut lost = lease.lost();
        if lost.is_none() {
            let c = lease.coordinator(&self.fleet);
            let status = exec.status.to_string();
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                c.release(&lease.job, &lease.slot, &lease.run_id, &status),
            )
            .await;
            match answer {
                Ok(Ok(Released::Ended)) => {}
                Ok(Ok(Released::Lost { holder })) => {
                    ClaimCounts::add(&self.fleet.counts.leases_lost);
                    lost = Some(format!(
                        "its lease on slot {} ran out while it ran and host {holder} holds the slot now",
                        lease.slot
                    ));
                }
                // The outbox's copy of the record ends the claim.
                Ok(Err(e)) => {
                    tracing::warn!(job = %lease.job, run = %lease.run_id, error = %e, "could not end the fleet claim; the run's record ends it when it reaches PostgreSQL")
                }
                Err(_) => {
                    tracing::warn!(job = %lease.job, run = %lease.run_id, "the fleet's PostgreSQL did not answer the claim's end; the run's record ends it when it reaches PostgreSQL")
                }
            }
        }
        if let Some(why) = &lost
            && exec.status != RunStatus::Interrupted
        {
            let error = format!(
                "the run lost its fleet lease ({why}); its result ({}) does not count",
                exec.status
            );
            exec.status = RunStatus::Interrupted;
            exec.error = Some(match exec.error.take() {
                Some(e) => format!("{error}; the plugin said: {e}"),
                None => error,
            });
        }
        claim.lease_lost = lost;
        rec.fleet = Some(claim);
        exec
    }

    /// A slot this host cannot claim because PostgreSQL does not answer:
    /// recorded as not run, and kept for the job's catch-up policy once
    /// PostgreSQL is back.
    fn hold(&self, job: &Job, start: &Start, error: &str) -> Result<RunRecord, OpsError> {
        ClaimCounts::add(&self.fleet.counts.refused);
        self.jobs.store().hold_slot(&job.name, start.scheduled)?;
        self.not_run(
            job,
            start,
            RunStatus::Skipped,
            &format!(
                "fleet job: {error}, so slot {} is not run by guesswork; the job's catch_up policy decides once PostgreSQL answers",
                slot_key(start.scheduled)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::lease::FleetLink;

    /// Ten thousand hosts written into PostgreSQL that never claim do
    /// not make a slot wait past its time.
    #[test]
    fn hosts_that_never_claim_cannot_hold_a_slot_back() {
        let link = FleetLink::default();
        let fake: Vec<(String, std::collections::BTreeMap<String, String>)> = (0..10_000)
            .map(|i| (format!("ghost{i}"), Default::default()))
            .chain(std::iter::once(("me".to_owned(), Default::default())))
            .collect();
        link.set_hosts(fake);
        let scope = crate::config::FleetScope {
            on: Default::default(),
            written: String::new(),
        };
        let worst = (0..20)
            .map(|i| link.rank("me", &scope, "job", &format!("slot {i}")))
            .max()
            .unwrap_or(0);
        assert!(worst > 1000, "ranked {worst} of 10001");
        assert!(rank_wait(worst) <= MAX_RANK_WAIT);
        assert!(MAX_RANK_WAIT < crate::scheduler::MISSED_AFTER.to_std().unwrap_or_default());
        assert_eq!(rank_wait(0), Duration::ZERO);
        assert_eq!(rank_wait(3), RANK_STEP * 3);
    }
}
