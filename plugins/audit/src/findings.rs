//! Findings and the audit's memory between runs: what was found last time
//! (to say what is new and what is resolved), the SUID/SGID baseline, and
//! where each watched log was read up to.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The runbook's incident levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Critical: act now.
    P0,
    /// High: within the hour.
    P1,
    /// Medium: within four hours.
    P2,
    /// Low: within a business day.
    P3,
}

impl Severity {
    /// Every level, most urgent first.
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];

    /// `P0`..`P3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "P0",
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
        }
    }
}

/// One thing to fix. `id` names the check (stable across versions) and
/// `key` the instance (a path, a package), so the same problem found again
/// is the same finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub key: String,
    pub severity: Severity,
    pub title: String,
    /// One line saying what to do.
    pub fix: String,
}

impl Finding {
    /// `id key`, the finding's identity.
    pub fn ident(&self) -> String {
        format!("{} {}", self.id, self.key)
    }

    /// One line for logs and details.
    pub fn line(&self) -> String {
        format!(
            "[{}] {} {}: {}. Fix: {}",
            self.severity.as_str(),
            self.id,
            self.key,
            self.title,
            self.fix
        )
    }
}

/// Where a log was read up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    /// sha256 (hex) of the file's first `head_len` bytes when first seen:
    /// the file's identity across renames.
    pub head: String,
    pub head_len: u64,
    /// Bytes consumed (always at a line end).
    pub offset: u64,
}

/// Everything remembered between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub findings: Vec<Finding>,
    /// SUID/SGID files seen on the first run: the accepted baseline.
    pub suid_baseline: Option<BTreeSet<String>>,
    pub logs: BTreeMap<String, LogCursor>,
}

impl State {
    /// Reads the state file; missing means a first run.
    pub fn load(path: &str) -> Result<State, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                format!("{path} is not an audit state file ({e}); move it aside to start over")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: 1,
                ..State::default()
            }),
            Err(e) => Err(format!("{path}: {e}")),
        }
    }

    /// Writes the state file atomically (temp file, fsync, rename).
    pub fn save(&self, path: &str) -> Result<(), String> {
        use std::io::Write;
        let tmp = format!("{path}.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
        f.write_all(&text).map_err(|e| format!("{tmp}: {e}"))?;
        f.sync_all().map_err(|e| format!("{tmp}: {e}"))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))
    }
}

/// What changed since the previous run.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub new: Vec<Finding>,
    pub resolved: Vec<Finding>,
}

/// Findings in `now` but not `before` are new; the other way, resolved.
pub fn diff(before: &[Finding], now: &[Finding]) -> Diff {
    let had: BTreeSet<String> = before.iter().map(Finding::ident).collect();
    let has: BTreeSet<String> = now.iter().map(Finding::ident).collect();
    Diff {
        new: now
            .iter()
            .filter(|f| !had.contains(&f.ident()))
            .cloned()
            .collect(),
        resolved: before
            .iter()
            .filter(|f| !has.contains(&f.ident()))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: &str, key: &str) -> Finding {
        Finding {
            id: id.into(),
            key: key.into(),
            severity: Severity::P2,
            title: "t".into(),
            fix: "x".into(),
        }
    }

    #[test]
    fn new_and_resolved_by_identity() {
        let before = [f("a", "1"), f("b", "2")];
        let mut changed = f("b", "2");
        changed.title = "same finding, new words".into();
        let now = [changed, f("c", "3")];
        let d = diff(&before, &now);
        assert_eq!(d.new, [f("c", "3")]);
        assert_eq!(d.resolved, [f("a", "1")]);
    }
}
