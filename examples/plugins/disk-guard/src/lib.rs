//! disk-guard: the runbook's "disk over 90 %" check, from the host's system
//! snapshot, and the runbook's answer to it: remove old rotated logs from
//! the directories the job grants. An example of an opsd plugin in Rust
//! with `plugins/sdk`.

use opsd_sdk::{
    Context, ContextExt, Description, Outcome, Plugin, PluginError, Status, human_bytes, system,
};
use serde::Deserialize;
use std::time::{Duration, SystemTime};

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "warn_percent": {"type": "number", "default": 90},
    "fail_percent": {"type": "number", "default": 95},
    "mounts": {"type": "array", "items": {"type": "string"}, "description": "mount points to watch; all when empty"},
    "clean": {
      "type": "object",
      "required": ["dirs"],
      "additionalProperties": false,
      "properties": {
        "dirs": {"type": "array", "items": {"type": "string"}, "description": "guest paths (read-write grants) holding rotated logs"},
        "older_than_days": {"type": "integer", "default": 7},
        "always": {"type": "boolean", "default": false, "description": "clean even when no disk is over warn_percent"}
      }
    }
  }
}"#;

/// `[job.config]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "ninety")]
    pub warn_percent: f64,
    #[serde(default = "ninety_five")]
    pub fail_percent: f64,
    #[serde(default)]
    pub mounts: Vec<String>,
    pub clean: Option<Clean>,
}

/// Where old rotated logs may be removed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clean {
    pub dirs: Vec<String>,
    #[serde(default = "seven")]
    pub older_than_days: u64,
    #[serde(default)]
    pub always: bool,
}

fn ninety() -> f64 {
    90.0
}
fn ninety_five() -> f64 {
    95.0
}
fn seven() -> u64 {
    7
}

/// True for names logrotate and friends give old logs: `app.log.1`,
/// `app.log.2.gz`, `app.log-20261128`, `syslog.7.xz`, `app.log.old`. The
/// live log (`app.log`) never matches.
pub fn is_rotated(name: &str) -> bool {
    let stem = name;
    for ext in [".gz", ".xz", ".bz2", ".zst", ".lz4"] {
        if let Some(s) = stem.strip_suffix(ext) {
            // A compressed file is an old log by definition.
            return !s.is_empty();
        }
    }
    if let Some(s) = stem.strip_suffix(".old") {
        return !s.is_empty();
    }
    if let Some((base, n)) = stem.rsplit_once('.')
        && !base.is_empty()
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return true;
    }
    if let Some((base, date)) = stem.rsplit_once('-') {
        return !base.is_empty()
            && (date.len() == 8 || date.len() == 10)
            && date.bytes().all(|b| b.is_ascii_digit());
    }
    false
}

/// Used share of a disk, 0..100.
pub fn used_percent(total: u64, available: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    100.0 * (total - available.min(total)) as f64 / total as f64
}

/// One disk's line and its verdict.
fn judge(d: &system::Disk, cfg: &Config) -> (Status, String) {
    let used = used_percent(d.total_bytes, d.available_bytes);
    let line = format!(
        "{}: {used:.1} % used, {} free of {}",
        d.mount_point,
        human_bytes(d.available_bytes),
        human_bytes(d.total_bytes)
    );
    let status = if used >= cfg.fail_percent {
        Status::Failed
    } else if used >= cfg.warn_percent {
        Status::Warning
    } else {
        Status::Ok
    };
    (status, line)
}

/// Old rotated logs in `dir` (not recursive): (path, size).
pub fn old_rotated(
    dir: &str,
    older_than: Duration,
    now: SystemTime,
) -> std::io::Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        if !meta.is_file() || !is_rotated(&name) {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age > older_than {
            found.push((format!("{}/{name}", dir.trim_end_matches('/')), meta.len()));
        }
    }
    found.sort();
    Ok(found)
}

struct DiskGuard;

impl Plugin for DiskGuard {
    fn describe() -> Description {
        Description::new(
            "disk-guard",
            env!("CARGO_PKG_VERSION"),
            "Warns about disks over 90 % and removes old rotated logs (Rust example)",
        )
        .wants_dir(
            "/var/log",
            true,
            "old rotated logs to remove when a disk fills",
        )
        .config_schema(SCHEMA)
        .suggested_schedule("*/15 * * * *")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        if cfg.warn_percent > cfg.fail_percent {
            return Err(ctx.bad_config(format!(
                "warn_percent ({}) is above fail_percent ({})",
                cfg.warn_percent, cfg.fail_percent
            )));
        }
        let watched = |s: &system::SystemSnapshot| -> Vec<system::Disk> {
            s.disks
                .iter()
                .filter(|d| cfg.mounts.is_empty() || cfg.mounts.contains(&d.mount_point))
                .cloned()
                .collect()
        };
        let before = watched(&system::snapshot());
        if !cfg.mounts.is_empty() && before.is_empty() {
            return Err(ctx.bad_config(format!(
                "none of the mounts {:?} is on this machine",
                cfg.mounts
            )));
        }
        let over = before
            .iter()
            .filter(|d| judge(d, &cfg).0 != Status::Ok)
            .count();

        let mut lines = Vec::new();
        let (mut removed, mut freed) = (0u64, 0u64);
        if let Some(clean) = &cfg.clean
            && (over > 0 || clean.always)
        {
            let older = Duration::from_secs(clean.older_than_days * 86_400);
            for dir in &clean.dirs {
                let found = old_rotated(dir, older, SystemTime::now()).map_err(|e| {
                    PluginError::io(format!("listing {dir} (is it granted read-write?)"), &e)
                })?;
                for (path, size) in found {
                    if ctx.dry_run {
                        lines.push(format!("would remove {path} ({})", human_bytes(size)));
                        continue;
                    }
                    std::fs::remove_file(&path)
                        .map_err(|e| PluginError::io(format!("removing {path}"), &e))?;
                    opsd_sdk::info!("removed {path} ({})", human_bytes(size));
                    lines.push(format!("removed {path} ({})", human_bytes(size)));
                    removed += 1;
                    freed += size;
                }
            }
        }

        // Judge the disks as they are now, after any cleaning.
        let after = if removed > 0 {
            watched(&system::snapshot())
        } else {
            before
        };
        let mut status = Status::Ok;
        let mut worst: Option<(f64, String)> = None;
        let mut disk_lines = Vec::new();
        for d in &after {
            let (s, line) = judge(d, &cfg);
            let used = used_percent(d.total_bytes, d.available_bytes);
            if worst.as_ref().is_none_or(|(w, _)| used > *w) {
                worst = Some((used, d.mount_point.clone()));
            }
            status = match (status, s) {
                (Status::Failed, _) | (_, Status::Failed) => Status::Failed,
                (Status::Warning, _) | (_, Status::Warning) => Status::Warning,
                _ => Status::Ok,
            };
            disk_lines.push(line);
        }
        disk_lines.extend(lines);
        let over_now = after
            .iter()
            .filter(|d| judge(d, &cfg).0 != Status::Ok)
            .count();
        let mut summary = match &worst {
            Some((used, mount)) if over_now > 0 => format!(
                "{over_now} of {} disks over {} % (fullest {mount} at {used:.1} %)",
                after.len(),
                cfg.warn_percent
            ),
            Some((used, mount)) => format!(
                "{} disks under {} % (fullest {mount} at {used:.1} %)",
                after.len(),
                cfg.warn_percent
            ),
            None => "no disks reported".to_owned(),
        };
        if removed > 0 {
            summary.push_str(&format!(
                "; removed {removed} old rotated logs, {}",
                human_bytes(freed)
            ));
        }
        Ok(Outcome::with_status(status, summary)
            .details(disk_lines.join("\n"))
            .metric("disks_over", over_now as f64, None)
            .metric(
                "max_used_percent",
                worst.map(|(u, _)| u).unwrap_or(0.0),
                Some("percent"),
            )
            .metric("logs_removed", removed as f64, None)
            .metric("bytes_freed", freed as f64, Some("bytes")))
    }
}

opsd_sdk::export_plugin!(DiskGuard);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_match_and_live_logs_do_not() {
        for name in [
            "app.log.1",
            "app.log.2.gz",
            "app.log-20261128",
            "app.log-2026112803",
            "syslog.7.xz",
            "app.log.old",
            "app-20261128.gz",
        ] {
            assert!(is_rotated(name), "{name}");
        }
        for name in [
            "app.log",
            "syslog",
            "app.log-old",
            ".gz",
            "app.log.1x",
            "v1.2.log",
        ] {
            assert!(!is_rotated(name), "{name}");
        }
    }

    #[test]
    fn only_old_rotated_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for name in ["app.log", "app.log.1", "app.log.2.gz"] {
            std::fs::write(base.join(name), b"x").unwrap();
        }
        let path = base.to_str().unwrap();
        let later = SystemTime::now() + Duration::from_secs(8 * 86_400);
        let found = old_rotated(path, Duration::from_secs(7 * 86_400), later).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|(p, _)| p.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["app.log.1", "app.log.2.gz"]);
        assert!(
            old_rotated(path, Duration::from_secs(7 * 86_400), SystemTime::now())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "warn_percent": 90, "fail_percent": 95.5, "mounts": ["/"],
                "clean": {"dirs": ["/var/log"], "older_than_days": 7, "always": false}
            }),
        );
    }

    #[test]
    fn used_share() {
        assert_eq!(used_percent(200, 20), 90.0);
        assert_eq!(used_percent(0, 0), 0.0);
    }
}
