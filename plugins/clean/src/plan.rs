//! Which files go: the rules applied to what a scan found, with no file
//! system in sight, so they are tested natively. Age as find counts it,
//! then the size budget oldest first, the newest N always kept, and at
//! most `max_deletions` a run.

use crate::config::{Age, Checked};

/// What a file is: regular files and symlinks are judged (a symlink by
/// itself, as `find` without `-L`: removing it never touches its target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Symlink,
}

/// One file a scan found under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path under the root, `/`-separated (`a/b.log`).
    pub rel: String,
    pub kind: Kind,
    pub size: u64,
    /// Modification time, unix milliseconds.
    pub mtime_ms: i64,
    /// The file system's identity of the inode and its metadata, so the
    /// entry removed is the one judged.
    pub hash: (u64, u64),
}

/// Why a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Age,
    Budget,
}

/// What the rules decided for one root.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Indexes into the entries, oldest first, with why.
    pub remove: Vec<(usize, Why)>,
    /// Bytes of matching files left after the plan.
    pub bytes_left: u64,
    /// Set when the budget cannot be met by removing what may go.
    pub over_budget: Option<String>,
}

/// True when a glob matches: by name for a pattern without `/` (as
/// `find -name`), else by the whole path under the root.
pub fn matches(p: &glob::Pattern, rel: &str) -> bool {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    if p.as_str().contains('/') {
        p.matches_with(rel, opts)
    } else {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        p.matches_with(name, opts)
    }
}

/// A file is looked at when it matches an include (or there are none)
/// and no exclude.
pub fn selected(cfg: &Checked, rel: &str) -> bool {
    (cfg.include.is_empty() || cfg.include.iter().any(|p| matches(p, rel)))
        && !cfg.exclude.iter().any(|p| matches(p, rel))
}

/// A directory is entered unless an exclude matches it, or everything
/// under it (`logs/keep/**`).
pub fn dir_excluded(cfg: &Checked, rel: &str) -> bool {
    cfg.exclude.iter().any(|p| {
        matches(p, rel)
            || p.as_str()
                .strip_suffix("/**")
                .and_then(|prefix| glob::Pattern::new(prefix).ok())
                .is_some_and(|prefix| matches(&prefix, rel))
    })
}

/// Whole units of age past `age.count`, as find's `-mtime +N`: the
/// fraction of a unit is dropped, so a file 30.9 days old is 30 days old.
pub fn older(age: Age, mtime_ms: i64, now_ms: i64) -> bool {
    let elapsed = now_ms.saturating_sub(mtime_ms).max(0) as u64;
    elapsed / age.unit_ms > age.count
}

/// Applies the rules to one root's entries. `complete` is false when the
/// scan stopped early: then only age may remove files, and only with no
/// `keep_newest` (the newest files may not have been seen).
pub fn plan(cfg: &Checked, entries: &[Entry], now_ms: i64, complete: bool) -> Plan {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // Oldest first; ties by path, so a run is repeatable.
    order.sort_by(|&a, &b| {
        (entries[a].mtime_ms, &entries[a].rel).cmp(&(entries[b].mtime_ms, &entries[b].rel))
    });
    let protected: std::collections::HashSet<usize> =
        order.iter().rev().take(cfg.keep_newest).copied().collect();
    let mut out = Plan::default();
    let mut gone = vec![false; entries.len()];
    if let Some(age) = cfg.older_than
        && (complete || cfg.keep_newest == 0)
    {
        for &i in &order {
            if !protected.contains(&i) && older(age, entries[i].mtime_ms, now_ms) {
                gone[i] = true;
                out.remove.push((i, Why::Age));
            }
        }
    }
    let mut left: u64 = entries
        .iter()
        .zip(&gone)
        .filter(|(_, g)| !**g)
        .map(|(e, _)| e.size)
        .sum();
    if let Some(budget) = cfg.max_size
        && complete
    {
        for &i in &order {
            if left <= budget {
                break;
            }
            if gone[i] || protected.contains(&i) {
                continue;
            }
            gone[i] = true;
            left -= entries[i].size;
            out.remove.push((i, Why::Budget));
        }
        if left > budget {
            out.over_budget = Some(format!(
                "{} left, over max_size {}: the {} newest files are kept (keep_newest)",
                opsd_sdk::human_bytes(left),
                opsd_sdk::human_bytes(budget),
                cfg.keep_newest
            ));
        }
    }
    out.remove
        .sort_by_key(|&(i, _)| (entries[i].mtime_ms, entries[i].rel.clone()));
    out.bytes_left = left;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_800_000_000_000;

    fn cfg(json: &str) -> Checked {
        opsd_sdk::config::parse::<Config>(json)
            .unwrap()
            .check()
            .unwrap()
    }

    fn entry(rel: &str, days: f64, size: u64) -> Entry {
        Entry {
            rel: rel.into(),
            kind: Kind::File,
            size,
            mtime_ms: NOW - (days * DAY as f64) as i64,
            hash: (0, 0),
        }
    }

    fn names(entries: &[Entry], p: &Plan) -> Vec<String> {
        p.remove
            .iter()
            .map(|&(i, _)| entries[i].rel.clone())
            .collect()
    }

    #[test]
    fn age_counts_whole_days_as_find_mtime_does() {
        let c = cfg(r#"{"paths":["/l"],"older_than":"30d"}"#);
        let e = [
            entry("a", 10.0, 1),
            entry("b", 30.9, 1),
            entry("c", 31.0, 1),
            entry("d", 45.0, 1),
        ];
        assert_eq!(names(&e, &plan(&c, &e, NOW, true)), ["d", "c"]);
    }

    #[test]
    fn the_budget_removes_oldest_first_and_keeps_the_newest() {
        let c = cfg(r#"{"paths":["/c"],"max_size":250,"keep_newest":1}"#);
        let e = [
            entry("new", 1.0, 100),
            entry("mid", 2.0, 100),
            entry("old", 3.0, 100),
        ];
        let p = plan(&c, &e, NOW, true);
        assert_eq!(names(&e, &p), ["old"]);
        assert_eq!(p.bytes_left, 200);
        let c = cfg(r#"{"paths":["/c"],"max_size":50,"keep_newest":1}"#);
        let p = plan(&c, &e, NOW, true);
        assert_eq!(names(&e, &p), ["old", "mid"]);
        assert!(p.over_budget.unwrap().contains("keep_newest"));
        // Age and budget together; the newest stays even when old.
        let c = cfg(r#"{"paths":["/c"],"older_than":"1d","keep_newest":1}"#);
        assert_eq!(names(&e, &plan(&c, &e, NOW, true)), ["old", "mid"]);
    }

    #[test]
    fn a_partial_scan_removes_only_by_age_and_never_with_keep_newest() {
        let e = [entry("a", 40.0, 1), entry("b", 1.0, 1)];
        let c = cfg(r#"{"paths":["/c"],"older_than":"30d","max_size":0}"#);
        assert_eq!(names(&e, &plan(&c, &e, NOW, false)), ["a"]);
        let c = cfg(r#"{"paths":["/c"],"older_than":"30d","keep_newest":1}"#);
        assert!(plan(&c, &e, NOW, false).remove.is_empty());
    }

    #[test]
    fn patterns_match_names_or_paths_and_excludes_prune_dirs() {
        let c = cfg(
            r#"{"paths":["/c"],"older_than":"1d","include":["*.log","tmp/**"],"exclude":["keep/**","*.keep.log"]}"#,
        );
        assert!(selected(&c, "a/b/app.log"));
        assert!(selected(&c, "tmp/x/y.bin"));
        assert!(!selected(&c, "a/tmp/y.bin"));
        assert!(!selected(&c, "a/x.keep.log"));
        assert!(!selected(&c, "app.txt"));
        assert!(dir_excluded(&c, "keep"));
        assert!(!dir_excluded(&c, "a"));
    }
}
