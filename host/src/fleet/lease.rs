//! This host's side of fleet jobs: the connection the claims go through,
//! the leases its runs hold, and the counters `/metrics` shows.
//!
//! A lease is granted on the database's clock and kept on this host's
//! monotonic one: renewed every third of its length, and given up (the
//! run stopped) a sixth of it before it could have run out unrenewed, so
//! a host cut off from PostgreSQL stops before any other host can take
//! the slot over.

use super::{Coordinator, Expired};
use crate::record::Trigger;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts of what became of this host's claims, for `/metrics`.
#[derive(Default)]
pub struct ClaimCounts {
    pub won: AtomicU64,
    /// Another host had the slot.
    pub taken: AtomicU64,
    /// Not run: overlap, a different definition, a skewed clock, or
    /// PostgreSQL away.
    pub refused: AtomicU64,
    pub renewals: AtomicU64,
    pub leases_lost: AtomicU64,
    pub taken_over: AtomicU64,
}

impl ClaimCounts {
    /// One more of `counter`.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, for the exposition.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Fleet runs the scheduler is to start: held slots PostgreSQL is back
/// for, and slots other hosts lost.
pub type Released = Vec<(String, Vec<(DateTime<Utc>, Trigger)>, Option<Expired>)>;

/// What the daemon's fleet loop shares with the runs.
#[derive(Default)]
pub struct FleetLink {
    coordinator: Mutex<Option<Arc<dyn Coordinator>>>,
    pub counts: ClaimCounts,
    released: Mutex<Released>,
    /// Hosts alive in the fleet and their labels, as last read.
    hosts: Mutex<Vec<(String, BTreeMap<String, String>)>>,
    /// What was said loudly once (definition mismatches, clock skew).
    said: Mutex<HashSet<String>>,
    /// Jobs whose definition this host does not share with the fleet.
    disagreeing: Mutex<HashSet<String>>,
}

impl FleetLink {
    /// The claims' way to PostgreSQL, while it answers.
    pub fn coordinator(&self) -> Option<Arc<dyn Coordinator>> {
        self.coordinator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Set by the fleet loop when it connects, cleared when it loses it.
    pub fn set_coordinator(&self, c: Option<Arc<dyn Coordinator>>) {
        *self.coordinator.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// Hands runs to the scheduler.
    pub fn release(
        &self,
        job: &str,
        slots: Vec<(DateTime<Utc>, Trigger)>,
        take_over: Option<Expired>,
    ) {
        self.released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((job.to_owned(), slots, take_over));
    }

    /// What the scheduler is to start now.
    pub fn take_released(&self) -> Released {
        std::mem::take(&mut *self.released.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Keeps the fleet's live hosts and labels.
    pub fn set_hosts(&self, hosts: Vec<(String, BTreeMap<String, String>)>) {
        *self.hosts.lock().unwrap_or_else(|e| e.into_inner()) = hosts;
    }

    /// Where this host stands among the live hosts that may run `job`'s
    /// slot: 0 for the one that claims first. Rendezvous hashing of job,
    /// slot and host spreads slots over hosts evenly and needs no
    /// agreement: a host that is gone only costs its slots a wait.
    pub fn rank(
        &self,
        me: &str,
        job: &crate::config::FleetScope,
        job_name: &str,
        slot: &str,
    ) -> usize {
        use sha2::{Digest, Sha256};
        let score = |host: &str| {
            let d = Sha256::digest(format!("{job_name}\n{slot}\n{host}").as_bytes());
            u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
        };
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let mine = score(me);
        hosts
            .iter()
            .filter(|(h, labels)| h != me && job.admits(labels))
            .filter(|(h, _)| score(h) > mine)
            .count()
    }

    /// Whether `key` is new (to be said loudly once).
    pub fn first_time(&self, key: String) -> bool {
        self.said
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
    }

    /// Marks `job` as defined differently here than in the fleet, or not.
    pub fn set_disagreeing(&self, job: &str, disagrees: bool) {
        let mut set = self.disagreeing.lock().unwrap_or_else(|e| e.into_inner());
        if disagrees {
            set.insert(job.to_owned());
        } else {
            set.remove(job);
        }
    }

    /// How many jobs this host defines differently from the fleet.
    pub fn disagreeing(&self) -> usize {
        self.disagreeing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A lease a run holds, kept alive by [`keep`].
#[derive(Clone)]
pub struct Lease {
    pub job: String,
    pub slot: String,
    pub run_id: String,
    pub length: Duration,
    /// Set when the lease was lost, with why.
    pub lost: Arc<Mutex<Option<String>>>,
}

impl Lease {
    /// Why the lease was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Renews `lease` every third of its length until aborted. If the claim
/// is no longer the run's, or PostgreSQL has not renewed it for five
/// sixths of its length since `granted` (when the claim was sent), the
/// lease is marked lost and `stop` stops the run, told why.
pub async fn keep(
    link: Arc<FleetLink>,
    lease: Lease,
    granted: Instant,
    stop: impl Fn(String) + Send + 'static,
) {
    let every = lease.length / 3;
    let give_up_after = lease.length - lease.length / 6;
    let mut renewed = granted;
    let lose = |why: String| {
        ClaimCounts::add(&link.counts.leases_lost);
        tracing::error!(job = %lease.job, run = %lease.run_id, slot = %lease.slot, "fleet lease lost: {why}");
        *lease.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
        stop(format!("lost its fleet lease: {why}"));
    };
    loop {
        let deadline = renewed + give_up_after;
        let next = (Instant::now() + every).min(deadline);
        tokio::time::sleep_until(next.into()).await;
        if Instant::now() >= deadline {
            lose(format!(
                "the fleet's PostgreSQL has not renewed it for {}; stopped so that another host may take slot {} over",
                humantime::format_duration(Duration::from_secs(give_up_after.as_secs())),
                lease.slot
            ));
            return;
        }
        let Some(c) = link.coordinator() else {
            continue;
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            deadline.saturating_duration_since(sent),
            c.renew(&lease.job, &lease.slot, &lease.run_id, lease.length),
        )
        .await;
        match answer {
            Ok(Ok(true)) => {
                renewed = sent;
                ClaimCounts::add(&link.counts.renewals);
            }
            Ok(Ok(false)) => {
                lose(format!(
                    "its claim on slot {} is no longer this run's (its lease ran out and another host may have taken it over)",
                    lease.slot
                ));
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(job = %lease.job, run = %lease.run_id, error = %e, "could not renew the fleet lease; trying again");
            }
            Err(_) => {}
        }
    }
}
