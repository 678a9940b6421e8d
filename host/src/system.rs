//! A picture of the machine for plugins (`system.snapshot`), from sysinfo.
//!
//! CPU usage is a difference between two readings, so the sampler is
//! primed when the runtime starts and each snapshot reports usage since
//! the previous one.

use crate::bindings::opsd::plugin::system::{Disk, SystemSnapshot};
use std::sync::Mutex;
use sysinfo::{Disks, System};

static SAMPLER: Mutex<Option<System>> = Mutex::new(None);

/// Takes the first CPU reading, so the first snapshot has a baseline.
pub fn prime() {
    let mut guard = SAMPLER.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none()
        && let Ok(mut sys) = System::new()
    {
        sys.refresh_cpu_usage();
        *guard = Some(sys);
    }
}

/// The machine now. Figures sysinfo cannot read are zero.
pub fn snapshot() -> SystemSnapshot {
    prime();
    let mut guard = SAMPLER.lock().unwrap_or_else(|p| p.into_inner());
    let (cpu_count, cpu_percent, mem) = match guard.as_mut() {
        Some(sys) => {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            (
                sys.cpus().len() as u32,
                sys.global_cpu_usage(),
                (
                    sys.total_memory(),
                    sys.used_memory(),
                    sys.total_swap(),
                    sys.used_swap(),
                ),
            )
        }
        None => (0, 0.0, (0, 0, 0, 0)),
    };
    drop(guard);
    let load = System::load_average()
        .map(|l| (l.one, l.five, l.fifteen))
        .unwrap_or_default();
    let disks = Disks::new_with_refreshed_list()
        .map(|d| {
            d.iter()
                .map(|d| Disk {
                    mount_point: d.mount_point().to_string_lossy().into_owned(),
                    filesystem: d.file_system().to_string_lossy().into_owned(),
                    total_bytes: d.total_space(),
                    available_bytes: d.available_space(),
                })
                .collect()
        })
        .unwrap_or_default();
    SystemSnapshot {
        hostname: System::host_name().unwrap_or_default(),
        taken_at: chrono::Utc::now().timestamp().max(0) as u64,
        uptime_seconds: System::uptime().unwrap_or_default(),
        cpu_count,
        cpu_percent,
        load_average: load,
        memory_total_bytes: mem.0,
        memory_used_bytes: mem.1,
        swap_total_bytes: mem.2,
        swap_used_bytes: mem.3,
        disks,
    }
}

/// The machine now, as the store keeps it.
pub fn sample(taken: chrono::DateTime<chrono::Utc>) -> crate::record::SystemSample {
    let s = snapshot();
    crate::record::SystemSample {
        taken,
        cpu_percent: s.cpu_percent,
        memory_total_bytes: s.memory_total_bytes,
        memory_used_bytes: s.memory_used_bytes,
        disks: s
            .disks
            .into_iter()
            .map(|d| crate::record::DiskSample {
                mount_point: d.mount_point,
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            })
            .collect(),
    }
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
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            })
            .collect(),
    }
}
