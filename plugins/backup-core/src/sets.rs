//! The backup sets in a target directory: `SOURCE-STAMP.EXT` files, one
//! set per source and stamp.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The stamp in backup file names.
pub const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// The backup sets in the target for one source: stamp time -> files.
pub fn existing_sets(target: &str, source: &str) -> Vec<(DateTime<Utc>, Vec<String>)> {
    let prefix = format!("{source}-");
    let mut sets: std::collections::BTreeMap<DateTime<Utc>, Vec<String>> = Default::default();
    for entry in std::fs::read_dir(target).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        if rest.len() < 16 || name.ends_with(".partial") {
            continue;
        }
        let Ok(t) = NaiveDateTime::parse_from_str(&rest[..16], STAMP) else {
            continue;
        };
        sets.entry(t.and_utc())
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
