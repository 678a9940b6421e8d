//! The instance pool: every run's instance, memory, tables and fiber stack
//! come from slots reserved once at start, so a run neither maps nor unmaps
//! memory (no page-table work, no TLB shootdowns across CPUs) and its
//! memory starts as a copy-on-write image of the component's.
//!
//! Slots are mostly address space: a linear-memory slot reserves the 4 GiB
//! a wasm32 memory can address, so no job's `grants.limits.memory`,
//! however a reload sets it, outgrows its slot (the limit itself is checked
//! as each memory grows). Table and stack slots are mapped read-write up
//! front, untouched until used: on a host that does not overcommit
//! (`vm.overcommit_memory = 2`) they would count against its commit limit,
//! so there the runtime maps each run's instance on its own instead.
//!
//! Every component is held to its share of the pool (core instances,
//! memories, tables), so one plugin cannot take the slots of others. What a
//! reload can outgrow is the number of slots: runs are capped below it
//! ([`InstancePool::run_capacity`]) and wait for a run slot, as any run past
//! `max_concurrent_runs` does.
//!
//! A slot handed from one run to the next is cleared: its memory restored
//! to the component's image or zeroed, its tables cleared, its fiber stack
//! zeroed (the engine's `async_stack_zeroing`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Core instances one component may hold: a Rust plugin has one or two, a
/// Python one (componentize-py links CPython as several modules) a dozen.
/// A larger component is refused at load.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Linear memories per component (almost always one).
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables per component: each module has at most one or two.
const TABLES_PER_COMPONENT: u32 = 16;
/// Tables per core module.
const TABLES_PER_MODULE: u32 = 4;
/// Host-side size of one instance's bookkeeping (a check, not a
/// reservation): above wasmtime's 1 MiB default, which a large component's
/// many imports and exports can pass.
const INSTANCE_METADATA: usize = 8 << 20;
/// Elements of one table: CPython's function table is above wasmtime's
/// default of 20,000.
const TABLE_ELEMENTS: usize = 200_000;
/// Memory a slot keeps resident after a run, reset by `memset` instead of
/// `madvise`: a small plugin's whole working set, so the next run takes no
/// page faults. (Not PAGEMAP_SCAN, which resets only the dirty pages it
/// finds present and so would skip one swapped out mid-run, leaving it for
/// the next job: wasmtime#14357.)
const MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// The same for a run's fiber stack (zeroed between runs).
const STACK_KEEP_RESIDENT: usize = 64 << 10;
/// Fewest slots, so a reload that raises `max_concurrent_runs` a little
/// finds them there.
const MIN_INSTANCES: u32 = 64;
/// Most slots: with two 4 GiB memory reservations each, 512 slots are
/// 4 TiB of the 128 TiB of address space a process has.
const MAX_INSTANCES: u32 = 512;
/// Slots kept from runs for loading plugins (`describe`), so a load never
/// waits behind a full pool of runs.
const LOAD_HEADROOM: u32 = 8;

/// What one component may hold, in words for an error.
pub(super) fn component_share() -> String {
    format!(
        "{CORE_INSTANCES_PER_COMPONENT} core module instances, {MEMORIES_PER_COMPONENT} linear memories and {TABLES_PER_COMPONENT} tables in the daemon's instance pool"
    )
}

/// How many instances may exist at once, and so what the pool reserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePool {
    /// Component instances at once (runs, and `describe` calls on load).
    pub instances: u32,
}

impl InstancePool {
    /// Whether the daemon takes its instances from a pool: only with
    /// `OPSD_INSTANCE_POOL=on`. Made safe (slots cleared in full between
    /// runs), the pool measured no faster per run than mapping each
    /// instance, and an idle daemon kept 10 MiB more resident (BENCHMARKS.md,
    /// issue 20), so it is not the default.
    pub fn wanted() -> bool {
        match std::env::var("OPSD_INSTANCE_POOL").as_deref() {
            Ok("on") => true,
            Ok("off") | Err(_) => false,
            Ok(other) => {
                tracing::warn!(value = %other, "OPSD_INSTANCE_POOL is \"on\" or \"off\"; no pool");
                false
            }
        }
    }

    /// A pool for a daemon or command that runs up to `max_concurrent_runs`
    /// plugins at once: twice that, so a reload can raise it, within
    /// [`MIN_INSTANCES`] and [`MAX_INSTANCES`].
    pub fn for_runs(max_concurrent_runs: usize) -> InstancePool {
        let wanted = u32::try_from(max_concurrent_runs.saturating_mul(2)).unwrap_or(u32::MAX);
        InstancePool {
            instances: wanted.clamp(MIN_INSTANCES, MAX_INSTANCES),
        }
    }

    /// Runs that may be in progress at once: the slots less the headroom
    /// kept for loads.
    pub fn run_capacity(&self) -> usize {
        self.instances.saturating_sub(LOAD_HEADROOM).max(1) as usize
    }

    /// The allocation strategy wasmtime is given.
    pub(super) fn allocation(&self) -> InstanceAllocationStrategy {
        let n = self.instances;
        let mut p = PoolingAllocationConfig::new();
        p.total_component_instances(n)
            .total_core_instances(n * CORE_INSTANCES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .total_memories(n * MEMORIES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_memories_per_module(MEMORIES_PER_COMPONENT)
            .total_tables(n * TABLES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_tables_per_module(TABLES_PER_MODULE)
            .table_elements(TABLE_ELEMENTS)
            .max_component_instance_size(INSTANCE_METADATA)
            .max_core_instance_size(INSTANCE_METADATA)
            .total_stacks(n)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .async_stack_keep_resident(STACK_KEEP_RESIDENT)
            .pagemap_scan(Enabled::No);
        InstanceAllocationStrategy::Pooling(p)
    }
}

impl fmt::Display for InstancePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an instance pool of {} slots", self.instances)
    }
}

/// One permit per pool slot, taken before a store is made and given back
/// when it is dropped.
pub(super) struct InstanceSlots {
    pub(super) pool: InstancePool,
    permits: Arc<Semaphore>,
    said_full: AtomicBool,
}

impl InstanceSlots {
    pub(super) fn new(pool: InstancePool) -> InstanceSlots {
        InstanceSlots {
            permits: Arc::new(Semaphore::new(pool.instances as usize)),
            pool,
            said_full: AtomicBool::new(false),
        }
    }

    /// A slot, waiting for one if all are in use (said once: runs are
    /// capped below the slots, so only loads past the headroom wait).
    pub(super) async fn acquire(&self) -> OwnedSemaphorePermit {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return p;
        }
        if !self.said_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                slots = self.pool.instances,
                "every instance slot is in use: plugin loads wait for one; the pool is sized at start from max_concurrent_runs (restart opsd to resize it)"
            );
        }
        // The semaphore is never closed.
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("instance slots are never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_from_runs_within_bounds() {
        assert_eq!(InstancePool::for_runs(8).instances, MIN_INSTANCES);
        assert_eq!(InstancePool::for_runs(100).instances, 200);
        assert_eq!(InstancePool::for_runs(100_000).instances, MAX_INSTANCES);
        // Runs fill the pool less the headroom kept for loads.
        assert_eq!(InstancePool::for_runs(100_000).run_capacity(), 504);
        assert!(InstancePool::for_runs(8).run_capacity() >= 8);
    }

    /// A component of `n` instances of a module with one memory.
    fn component_with_memories(n: usize) -> Vec<u8> {
        let instances = "(core instance (instantiate $m))\n".repeat(n);
        wat::parse_str(format!(
            "(component (core module $m (memory 1)) {instances})"
        ))
        .expect("the test's WAT parses")
    }

    #[test]
    fn one_component_cannot_take_the_slots_of_others() {
        use wasmtime::component::{Component, Linker};
        let pool = InstancePool { instances: 2 };
        let mut config = wasmtime::Config::new();
        config.allocation_strategy(pool.allocation());
        let engine = wasmtime::Engine::new(&config).expect("a two-slot pool");
        // Within the pool's totals (2 slots x 2 memories) but over one
        // component's share: were it loaded, one run of it would leave the
        // other slot without a memory.
        let greedy = Component::new(
            &engine,
            component_with_memories(MEMORIES_PER_COMPONENT as usize + 1),
        );
        let why = match greedy {
            Ok(_) => panic!("a component over its share was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(why.contains("memories"), "{why}");
        // Components within their share fill every slot.
        let fair = Component::new(
            &engine,
            component_with_memories(MEMORIES_PER_COMPONENT as usize),
        )
        .expect("a component within its share");
        let linker = Linker::<()>::new(&engine);
        let mut stores: Vec<_> = (0..pool.instances)
            .map(|_| wasmtime::Store::new(&engine, ()))
            .collect();
        for store in &mut stores {
            linker
                .instantiate(&mut *store, &fair)
                .expect("an instance in a free slot");
        }
    }

    #[tokio::test]
    async fn a_run_past_the_slots_waits_for_one() {
        let slots = InstanceSlots::new(InstancePool { instances: 1 });
        let first = slots.acquire().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), slots.acquire());
        assert!(waiting.await.is_err(), "a second slot was handed out");
        drop(first);
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), slots.acquire());
        assert!(again.await.is_ok(), "a freed slot was not handed out");
    }
}
