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

/// Findings of one kind (`id`) and severity, told as one: 278 backups
/// anyone can read are one thing to fix, not 278. Each stays a finding
/// of its own for what is new and resolved; only the telling is grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a> {
    pub id: &'a str,
    pub severity: Severity,
    /// In the order given, at least one.
    pub members: Vec<&'a Finding>,
}

/// Keys a grouped line names before `and N more`.
const SHOWN: usize = 3;

impl Group<'_> {
    /// One line for logs, details and the summary: a single finding's own
    /// line, or `[P1] backup-readable 278 paths under /backups: /backups/a,
    /// /backups/b, /backups/c and 275 more; TITLE. Fix: FIX`.
    pub fn line(&self) -> String {
        let first = self.members[0];
        if self.members.len() == 1 {
            return first.line();
        }
        format!("{}; {}. Fix: {}", self.head(), self.title(), self.fix())
    }

    /// `[P1] backup-readable 278 paths under /backups: a, b, c and 275
    /// more` (a single finding: `[P1] id key`).
    pub fn head(&self) -> String {
        let first = self.members[0];
        let n = self.members.len();
        if n == 1 {
            return format!("[{}] {} {}", self.severity.as_str(), self.id, first.key);
        }
        let keys: Vec<&str> = self.members.iter().map(|f| f.key.as_str()).collect();
        let under = common_dir(&keys)
            .map(|d| format!(" under {d}"))
            .unwrap_or_default();
        let mut shown = keys[..n.min(SHOWN)].join(", ");
        if n > SHOWN {
            shown.push_str(&format!(" and {} more", n - SHOWN));
        }
        format!(
            "[{}] {} {n} {}{under}: {shown}",
            self.severity.as_str(),
            self.id,
            if keys.iter().all(|k| k.starts_with('/')) {
                "paths"
            } else {
                "instances"
            }
        )
    }

    /// The members' title when they share it, else the first one's `and
    /// alike`.
    fn title(&self) -> String {
        let first = &self.members[0].title;
        if self.members.iter().all(|f| &f.title == first) {
            first.clone()
        } else {
            format!("{first}, and alike")
        }
    }

    /// The members' fix with each one's key in it said once (`chmod 600
    /// each of them`), or the first one's and `the same for each`.
    fn fix(&self) -> String {
        let first = self.members[0];
        let same = self
            .members
            .iter()
            .all(|f| f.fix == first.fix.replace(&first.key, &f.key));
        if same && first.fix.contains(&first.key) {
            first.fix.replace(&first.key, "each of them")
        } else {
            format!("{} (the same for each)", first.fix)
        }
    }
}

/// The deepest directory every path key lies under, when it is more than
/// `/`; none for keys that are not absolute paths.
fn common_dir(keys: &[&str]) -> Option<String> {
    let split = |k: &str| -> Option<Vec<String>> {
        k.starts_with('/').then(|| {
            let mut parts: Vec<String> = k.split('/').map(str::to_owned).collect();
            parts.pop(); // the file's own name
            parts
        })
    };
    let mut common = split(keys.first()?)?;
    for k in &keys[1..] {
        let parts = split(k)?;
        let same = common
            .iter()
            .zip(&parts)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(same);
    }
    let dir = common.join("/");
    (!dir.is_empty()).then_some(dir)
}

/// Findings grouped by kind and severity, in the order of each group's
/// first member (sorted findings stay sorted).
pub fn group(findings: &[Finding]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for f in findings {
        match groups
            .iter_mut()
            .find(|g| g.id == f.id && g.severity == f.severity)
        {
            Some(g) => g.members.push(f),
            None => groups.push(Group {
                id: &f.id,
                severity: f.severity,
                members: vec![f],
            }),
        }
    }
    groups
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
    /// Per log, what recent runs read (for rates over a window).
    #[serde(default)]
    pub log_samples: BTreeMap<String, Vec<crate::rate::Sample>>,
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

    fn readable(path: &str, mode: &str, severity: Severity) -> Finding {
        Finding {
            id: "backup-readable".into(),
            key: path.into(),
            severity,
            title: format!("a backup readable by everyone (mode {mode})"),
            fix: format!("chmod 600 {path}"),
        }
    }

    #[test]
    fn findings_of_one_kind_and_severity_are_one_line() {
        let mut all: Vec<Finding> = (0..278)
            .map(|i| readable(&format!("/backups/db/{i:03}.dump"), "644", Severity::P1))
            .collect();
        all.push(readable("/backups/other/x.dump", "604", Severity::P1));
        all.push(readable("/backups/y.dump", "640", Severity::P2));
        all.push(f("suid-new", "/usr/bin/x"));
        let groups = group(&all);
        assert_eq!(groups.len(), 3, "{groups:?}");
        assert_eq!(groups[0].members.len(), 279);
        assert_eq!(
            groups[0].line(),
            "[P1] backup-readable 279 paths under /backups: /backups/db/000.dump, \
             /backups/db/001.dump, /backups/db/002.dump and 276 more; a backup \
             readable by everyone (mode 644), and alike. Fix: chmod 600 each of them"
        );
        // A kind found once reads as it always did.
        assert_eq!(groups[1].line(), all[279].line());
        assert_eq!(groups[2].head(), "[P2] suid-new /usr/bin/x");
        // Keys that are not paths, fixes that do not name them.
        let two = [f("npm-advisory", "/a:lodash"), f("npm-advisory", "b:x")];
        assert_eq!(
            group(&two)[0].line(),
            "[P2] npm-advisory 2 instances: /a:lodash, b:x; t. Fix: x (the same for each)"
        );
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
