//! Resource limits of one run: memory of the instance, volume of its log,
//! output captured from its child processes and how many there may be,
//! and how many handles (open files, sockets, streams) it may hold.

use serde::Deserialize;

/// `[job.grants.limits]` as written; sizes like `256M`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    memory: Option<String>,
    log: Option<String>,
    output: Option<String>,
    processes: Option<u32>,
    handles: Option<u32>,
}

/// Caps applied to every run of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory of the plugin instance.
    pub memory_bytes: usize,
    /// Captured log lines (plugin log, stdout, stderr) kept per run.
    pub log_bytes: usize,
    /// Output captured from one child process, per stream.
    pub output_bytes: usize,
    /// Processes one exec call may have at once, itself included.
    pub processes: u32,
    /// Handles the instance may hold at once (open files and directories,
    /// sockets, streams, pollables): each open file is a descriptor of
    /// the daemon's, which all runs share.
    pub handles: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            log_bytes: 1 << 20,
            output_bytes: 4 << 20,
            processes: 64,
            handles: 1024,
        }
    }
}

impl Limits {
    pub(crate) fn from_raw(raw: &RawLimits) -> Result<Limits, String> {
        let d = Limits::default();
        let size = |v: &Option<String>, name: &str, default: usize| -> Result<usize, String> {
            match v {
                None => Ok(default),
                Some(t) => crate::diag::parse_size(t)
                    .map(|n| n as usize)
                    .map_err(|e| format!("limits.{name}: {e}")),
            }
        };
        Ok(Limits {
            memory_bytes: size(&raw.memory, "memory", d.memory_bytes)?,
            log_bytes: size(&raw.log, "log", d.log_bytes)?,
            output_bytes: size(&raw.output, "output", d.output_bytes)?,
            processes: match raw.processes {
                Some(0) => return Err("limits.processes must be at least 1".into()),
                Some(n) => n,
                None => d.processes,
            },
            handles: match raw.handles {
                Some(n) if !(16..=65_536).contains(&n) => {
                    return Err("limits.handles must be between 16 and 65536".into());
                }
                Some(n) => n,
                None => d.handles,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cap_defaults_and_refuses_zero() {
        let raw = |t: &str| toml::from_str::<RawLimits>(t).expect("limits table");
        assert_eq!(Limits::from_raw(&raw("")).unwrap().processes, 64);
        assert_eq!(
            Limits::from_raw(&raw("processes = 8")).unwrap().processes,
            8
        );
        let e = Limits::from_raw(&raw("processes = 0")).unwrap_err();
        assert!(e.contains("limits.processes"), "{e}");
    }
}
