//! A picture of the machine for plugins (`system.snapshot`) and the
//! store, read by the same [`Sampler`] as the daemon's monitor, so a
//! plugin sees the figures `opsd status` and `/metrics` show.
//!
//! CPU usage is a difference between two readings, so the sampler is
//! primed when the runtime starts and each snapshot reports usage since
//! the previous one.
//!
//! A disk's `total-bytes` here is what `df` reckons its Use% against:
//! used plus available, blocks reserved for root counted in neither. So
//! `(total - available) / total` is the percentage `df` and `opsd status`
//! show; with the filesystem's raw size it read far fuller on a disk
//! with reserved or otherwise unavailable blocks (issue 23, item 6).

use crate::bindings::opsd::plugin::system::{Disk, SystemSnapshot};
use crate::locks::Unpoisoned;
use crate::monitor::Sampler;
use std::sync::Mutex;

static SAMPLER: Mutex<Option<Sampler>> = Mutex::new(None);

/// Takes the first CPU reading, so the first snapshot has a baseline.
pub fn prime() {
    let mut guard = SAMPLER.locked();
    if guard.is_none() {
        *guard = Some(Sampler::new());
    }
}

/// The machine now, through the shared sampler.
fn read(taken: chrono::DateTime<chrono::Utc>) -> crate::monitor::Sample {
    let mut guard = SAMPLER.locked();
    guard
        .get_or_insert_with(Sampler::new)
        .sample(taken, &[], Vec::new())
}

/// Used plus available: the size `df`'s Use% is a share of.
fn df_total(d: &crate::monitor::DiskUse) -> u64 {
    d.used_bytes.saturating_add(d.available_bytes)
}

/// This machine's name as reports, webhooks and fleet leases give it;
/// empty when the kernel will not say.
pub fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

/// The machine now. Figures that cannot be read are zero.
pub fn snapshot() -> SystemSnapshot {
    let now = chrono::Utc::now();
    let s = read(now);
    SystemSnapshot {
        hostname: hostname(),
        taken_at: now.timestamp().max(0) as u64,
        uptime_seconds: sysinfo::System::uptime().unwrap_or_default(),
        cpu_count: s.cpu_count,
        cpu_percent: s.cpu_percent as f32,
        load_average: (s.load[0], s.load[1], s.load[2]),
        memory_total_bytes: s.memory_total_bytes,
        memory_used_bytes: s.memory_used_bytes,
        swap_total_bytes: s.swap_total_bytes,
        swap_used_bytes: s.swap_used_bytes,
        disks: s
            .disks
            .into_iter()
            .map(|d| Disk {
                total_bytes: df_total(&d),
                mount_point: d.path,
                filesystem: d.filesystem,
                available_bytes: d.available_bytes,
            })
            .collect(),
    }
}

/// Network errors of all interfaces since boot, read now.
pub fn network_errors_now() -> u64 {
    read(chrono::Utc::now()).network_errors
}

/// The machine now, as the store keeps it.
pub fn sample(taken: chrono::DateTime<chrono::Utc>) -> crate::record::SystemSample {
    stored_sample(&read(taken), taken)
}

/// A monitor sample as the store keeps it.
pub fn stored_sample(
    s: &crate::monitor::Sample,
    taken: chrono::DateTime<chrono::Utc>,
) -> crate::record::SystemSample {
    crate::record::SystemSample {
        taken,
        cpu_percent: s.cpu_percent as f32,
        memory_total_bytes: s.memory_total_bytes,
        memory_used_bytes: s.memory_used_bytes,
        disks: s
            .disks
            .iter()
            .map(|d| crate::record::DiskSample {
                mount_point: d.path.clone(),
                total_bytes: df_total(d),
                available_bytes: d.available_bytes,
                df_basis: true,
            })
            .collect(),
    }
}
