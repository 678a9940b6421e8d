//! Fleet mode: hosts that share one PostgreSQL, the runbook's own
//! database, as their coordinator, the way Quartz's JDBC store and
//! db-scheduler do, rather than a cluster of their own. Each host copies
//! its finished runs to a central history through a durable outbox in
//! its sled store (PostgreSQL away never loses a run) and says it is
//! alive; `opsd fleet status` and `opsd history --fleet` read it back.
//!
//! A fleet job (`scope = "fleet"`) runs once per slot for the whole
//! fleet: every eligible host computes the slot, and the one that claims
//! it in PostgreSQL runs it, holding a lease it renews on the database's
//! clock ([`lease`]). The claims go through [`Coordinator`], so another
//! engine could stand in for PostgreSQL.

pub mod central;
pub mod lease;
pub mod tls;

pub use central::{
    Central, Claim, ClaimAsk, Expired, FleetError, FleetHost, FleetJob, FleetQuery, FleetRun,
    HostJob, Released, TakeOver, slot_key,
};

use futures_util::future::BoxFuture;

/// What opsd asks of whatever keeps the fleet's claims: one winner per
/// slot, leases on one clock, and a place to agree on definitions.
pub trait Coordinator: Send + Sync {
    /// Claims a slot for a run.
    fn claim<'a>(&'a self, ask: &'a ClaimAsk) -> BoxFuture<'a, Result<Claim, FleetError>>;
    /// Extends a run's lease: `false` once it is no longer the run's.
    fn renew<'a>(
        &'a self,
        job: &'a str,
        slot: &'a str,
        run_id: &'a str,
        lease: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, FleetError>>;
    /// Ends a run's claim with its status.
    fn release<'a>(
        &'a self,
        job: &'a str,
        slot: &'a str,
        run_id: &'a str,
        status: &'a str,
    ) -> BoxFuture<'a, Result<Released, FleetError>>;
    /// Claims of these jobs whose lease ran out mid-run.
    fn expired<'a>(&'a self, jobs: &'a [String])
    -> BoxFuture<'a, Result<Vec<Expired>, FleetError>>;
    /// Takes an expired claim over for a new run.
    fn take_over<'a>(
        &'a self,
        expired: &'a Expired,
        ask: &'a ClaimAsk,
    ) -> BoxFuture<'a, Result<TakeOver, FleetError>>;
    /// Ends an expired claim that nobody runs again.
    fn abandon<'a>(&'a self, expired: &'a Expired) -> BoxFuture<'a, Result<bool, FleetError>>;
    /// Sets the definition the fleet runs for a job.
    fn define<'a>(
        &'a self,
        job: &'a str,
        definition: &'a str,
        host: &'a str,
        only_if_new: bool,
    ) -> BoxFuture<'a, Result<(), FleetError>>;
}

impl Coordinator for Central {
    fn claim<'a>(&'a self, ask: &'a ClaimAsk) -> BoxFuture<'a, Result<Claim, FleetError>> {
        Box::pin(Central::claim(self, ask))
    }
    fn renew<'a>(
        &'a self,
        job: &'a str,
        slot: &'a str,
        run_id: &'a str,
        lease: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, FleetError>> {
        Box::pin(Central::renew(self, job, slot, run_id, lease))
    }
    fn release<'a>(
        &'a self,
        job: &'a str,
        slot: &'a str,
        run_id: &'a str,
        status: &'a str,
    ) -> BoxFuture<'a, Result<Released, FleetError>> {
        Box::pin(Central::release(self, job, slot, run_id, status))
    }
    fn expired<'a>(
        &'a self,
        jobs: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Expired>, FleetError>> {
        Box::pin(Central::expired(self, jobs))
    }
    fn take_over<'a>(
        &'a self,
        expired: &'a Expired,
        ask: &'a ClaimAsk,
    ) -> BoxFuture<'a, Result<TakeOver, FleetError>> {
        Box::pin(Central::take_over(self, expired, ask))
    }
    fn abandon<'a>(&'a self, expired: &'a Expired) -> BoxFuture<'a, Result<bool, FleetError>> {
        Box::pin(Central::abandon(self, expired))
    }
    fn define<'a>(
        &'a self,
        job: &'a str,
        definition: &'a str,
        host: &'a str,
        only_if_new: bool,
    ) -> BoxFuture<'a, Result<(), FleetError>> {
        Box::pin(Central::define(self, job, definition, host, only_if_new))
    }
}
