//! The backup sets in a target directory: `SOURCE-STAMP.EXT` files, one
//! set per source and stamp.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The stamp in backup file names.
pub const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// The stamp of a file a run for `source` names (`SOURCE-STAMP...`).
pub fn stamp_of(name: &str, source: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix(source)?.strip_prefix('-')?.get(..16)?;
    NaiveDateTime::parse_from_str(stamp, STAMP)
        .ok()
        .map(|t| t.and_utc())
}

/// The backup sets in the target for one source: stamp time -> files.
pub fn existing_sets(target: &str, source: &str) -> Vec<(DateTime<Utc>, Vec<String>)> {
    let mut sets: std::collections::BTreeMap<DateTime<Utc>, Vec<String>> = Default::default();
    for entry in std::fs::read_dir(target).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".partial") {
            continue;
        }
        let Some(t) = stamp_of(&name, source) else {
            continue;
        };
        sets.entry(t)
            .or_default()
            .push(format!("{}/{name}", target.trim_end_matches('/')));
    }
    // A set counts only if its main file is there, not just sidecars.
    sets.into_iter()
        .filter(|(_, files)| {
            files
                .iter()
                .any(|f| !f.ends_with(".sha256") && !f.ends_with(".counts"))
        })
        .collect()
}
