//! Fleet mode: hosts that share one PostgreSQL, the runbook's own
//! database, as their coordinator, the way Quartz's JDBC store and
//! db-scheduler do, rather than a cluster of their own. Each host copies
//! its finished runs to a central history through a durable outbox in
//! its sled store (PostgreSQL away never loses a run) and says it is
//! alive; `opsd fleet status` and `opsd history --fleet` read it back.

pub mod central;
pub mod tls;

pub use central::{Central, FleetError, FleetHost, FleetQuery, FleetRun};
