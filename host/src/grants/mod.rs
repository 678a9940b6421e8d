//! The capability policy: what one job's plugin may touch.
//!
//! Default deny. Each kind of grant is its own module with the same life,
//! as in Spin's factors: parsed and checked when the config loads
//! ([`Grants::from_raw`]), turned into per-run state when a run starts, and
//! enforced on every call. Allow-lists are typed at load time (resolved
//! program paths, parsed addresses), never matched as strings at call time.
//!
//! A denial is recorded in the run's [`Violations`] as well as returned to
//! the guest, so a plugin that swallows the error still has its run marked
//! failed, with a message that says which grant to add.

mod contain;
pub mod fs;
pub mod limits;
pub mod net;
pub mod process;

use crate::config::{Lines, Problems};
use serde::Deserialize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use toml::Spanned;

pub use fs::{Access, FsGrant};
pub use limits::Limits;
pub use net::NetPolicy;
pub use process::ExecPolicy;

/// `[job.grants]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrants {
    #[serde(default)]
    fs: Vec<Spanned<fs::RawFsGrant>>,
    #[serde(default)]
    exec: Vec<Spanned<String>>,
    #[serde(default)]
    net: Vec<Spanned<String>>,
    #[serde(default)]
    ca: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default)]
    limits: Option<Spanned<limits::RawLimits>>,
}

/// Everything one job may use, validated and resolved.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub fs: Vec<FsGrant>,
    pub exec: ExecPolicy,
    pub net: NetPolicy,
    /// Names of the daemon's environment variables passed to the plugin
    /// and its child processes.
    pub env: Vec<String>,
    pub limits: Limits,
}

impl Grants {
    /// Validates `[job.grants]`; problems are added to `problems` and
    /// `None` returned when any were found.
    pub(crate) fn from_raw(
        raw: &RawGrants,
        base: &Path,
        lines: &Lines<'_>,
        job: &str,
        problems: &mut Problems,
    ) -> Option<Grants> {
        let before = problems.list.len();
        let fs = fs::from_raw(&raw.fs, base, lines, job, problems);
        let exec = process::ExecPolicy::from_raw(&raw.exec, base, lines, job, problems);
        let mut net = net::NetPolicy::from_raw(&raw.net, lines, job, problems);
        net.load_ca(&raw.ca, base, lines, job, problems);
        let mut env = Vec::new();
        for name in &raw.env {
            let n = name.get_ref();
            let valid = !n.is_empty()
                && !n.as_bytes()[0].is_ascii_digit()
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                problems.push(
                    lines.at(name),
                    Some(job),
                    format!("env grant `{n}` is not a variable name (letters, digits, `_`)"),
                );
            } else if n.starts_with("LD_") {
                problems.push(
                    lines.at(name),
                    Some(job),
                    format!("env grant `{n}` would let a plugin load code into its child processes; it is never passed"),
                );
            } else {
                env.push(n.clone());
            }
        }
        let limits = match &raw.limits {
            None => Limits::default(),
            Some(l) => match Limits::from_raw(l.get_ref()) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(lines.at(l), Some(job), e);
                    Limits::default()
                }
            },
        };
        (problems.list.len() == before).then_some(Grants {
            fs,
            exec,
            net,
            env,
            limits,
        })
    }

    /// The granted environment variables that the daemon has, with values.
    pub fn env_values(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v)))
            .collect()
    }
}

/// Grant violations seen during one run, shared by every checker (some run
/// outside the store, such as the socket address check).
#[derive(Debug, Clone, Default)]
pub struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    /// Records a denial.
    pub fn record(&self, message: String) {
        tracing::warn!(denied = %message, "grant violation");
        if let Ok(mut v) = self.0.lock()
            && v.len() < 100
        {
            v.push(message);
        }
    }

    /// Everything denied so far.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}
