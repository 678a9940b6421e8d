//! clean: removes files under granted directories by age, size budget and
//! patterns, the runbook's "clear cache" and `find /logs -mtime +30
//! -delete`. It walks by directory handle and never follows a symlink: a
//! link is judged and removed as itself, a linked directory is never
//! entered, and each file is checked to be the one judged just before it
//! is unlinked, so swapping a directory for a link mid-run removes nothing
//! through it. A dry run lists what would go.

pub mod config;
pub mod plan;
mod walk;

use config::{Checked, Config};
use opsd_sdk::{Context, ContextExt, Description, Outcome, Plugin, PluginError, human_bytes};

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["paths"],
  "additionalProperties": false,
  "properties": {
    "paths": {"type": "array", "items": {"type": "string"}, "description": "guest directories in read-write grants; each judged on its own"},
    "include": {"type": "array", "items": {"type": "string"}, "description": "globs a file must match: by name without '/', else by its path under the root"},
    "exclude": {"type": "array", "items": {"type": "string"}, "description": "globs of files and directories left alone"},
    "older_than": {"type": "string", "description": "30d: older than this, in whole units as find -mtime +30"},
    "keep_newest": {"type": "integer", "minimum": 0, "default": 0},
    "max_size": {"type": ["string", "integer"], "description": "10G: the oldest go until the rest fit"},
    "remove_empty_dirs": {"type": "boolean", "default": false},
    "max_deletions": {"type": "integer", "minimum": 1, "default": 10000},
    "max_entries": {"type": "integer", "minimum": 1, "default": 1000000},
    "max_depth": {"type": "integer", "minimum": 1, "default": 64}
  }
}"#;

/// Lines of removed files listed in the details before "and N more".
const LISTED: usize = 1000;

struct Clean;

/// What a run did (or, dry, would do).
#[derive(Default)]
pub struct Report {
    pub removed: Vec<String>,
    pub bytes: u64,
    pub dirs: Vec<String>,
    pub scanned: u64,
    pub bytes_left: u64,
    /// Removals that failed: the run is a warning, or failed if nothing went.
    pub errors: Vec<String>,
    /// Scans cut short, budgets not met, files changed under the run.
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

impl Plugin for Clean {
    fn describe() -> Description {
        Description::new(
            "clean",
            env!("CARGO_PKG_VERSION"),
            "Remove files under granted directories by age, size budget and patterns, never following symlinks",
        )
        .wants_dir("/cache", true, "what to clean")
        .config_schema(SCHEMA)
        .suggested_schedule("0 2 * * sun")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        let cfg: Checked = cfg.check().map_err(|e| ctx.bad_config(e))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let report = walk::clean(&cfg, now_ms, ctx.dry_run)?;
        Ok(outcome(&cfg, &report, ctx.dry_run))
    }
}

fn outcome(cfg: &Checked, r: &Report, dry_run: bool) -> Outcome {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut summary = format!(
        "{verb} {} file{} ({}) under {}",
        r.removed.len(),
        if r.removed.len() == 1 { "" } else { "s" },
        human_bytes(r.bytes),
        cfg.paths.join(", ")
    );
    if !r.dirs.is_empty() {
        summary.push_str(&format!(" and {} empty directories", r.dirs.len()));
    }
    summary.push_str(&format!(
        "; {} entries looked at, {} left",
        r.scanned,
        human_bytes(r.bytes_left)
    ));
    let mut notes = r.notes.clone();
    let title = if dry_run { "would remove:" } else { "removed:" };
    if !r.removed.is_empty() {
        notes.push(title.into());
        for line in r.removed.iter().take(LISTED) {
            notes.push(format!("  {line}"));
        }
        if r.removed.len() > LISTED {
            notes.push(format!("  and {} more", r.removed.len() - LISTED));
        }
    }
    for d in &r.dirs {
        notes.push(format!(
            "  {} empty directory {d}",
            if dry_run { "would remove" } else { "removed" }
        ));
    }
    let mut out = if !r.errors.is_empty() && r.removed.is_empty() {
        Outcome::from_findings(summary, &r.errors, &r.warnings, &notes)
    } else {
        // Files that could not be removed while others went: a warning.
        let warnings: Vec<String> = r.errors.iter().chain(&r.warnings).cloned().collect();
        Outcome::from_findings(summary, &[], &warnings, &notes)
    };
    out = out
        .metric("files_removed", r.removed.len() as f64, None)
        .metric("bytes_removed", r.bytes as f64, Some("bytes"))
        .metric("dirs_removed", r.dirs.len() as f64, None)
        .metric("files_scanned", r.scanned as f64, None)
        .metric("bytes_left", r.bytes_left as f64, Some("bytes"))
        .metric("failures", r.errors.len() as f64, None);
    out
}

opsd_sdk::export_plugin!(Clean);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "paths": ["/cache"], "include": ["*.tmp"], "exclude": ["keep/**"],
                "older_than": "30d", "keep_newest": 3, "max_size": "10G",
                "remove_empty_dirs": true, "max_deletions": 100, "max_entries": 1000, "max_depth": 8
            }),
        );
    }
}
