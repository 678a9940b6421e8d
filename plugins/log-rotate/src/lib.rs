//! log-rotate: rotates, compresses and prunes log files the way logrotate
//! does, inside the directories the job grants and nowhere else.

pub mod conf;
pub mod config;
pub mod dateext;
pub mod directives;
pub mod engine;
pub mod state;
pub mod sys;
pub mod zone;

use opsd_sdk::{
    Artifact, Context, ContextExt, Description, IoContext, Outcome, Plugin, PluginError,
    human_bytes,
};

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "logrotate_conf": {"type": ["string", "array"], "description": "guest paths of logrotate config files or directories, read as logrotate reads them"},
    "state_file": {"type": "string", "description": "guest path of the status file (logrotate's format)"},
    "paths": {"type": "array", "items": {"type": "string"}, "description": "glob patterns of guest paths"},
    "rotate": {"type": "integer", "minimum": -1, "default": 4},
    "frequency": {"enum": ["hourly", "daily", "weekly", "monthly", "yearly"]},
    "weekday": {"type": "integer", "minimum": 0, "maximum": 7},
    "size": {"type": ["string", "integer"], "description": "bytes, or a number with k, M or G"},
    "minsize": {"type": ["string", "integer"]},
    "maxsize": {"type": ["string", "integer"]},
    "compress": {"type": "boolean", "default": false},
    "delaycompress": {"type": "boolean", "default": false},
    "compresslevel": {"type": "integer", "minimum": 1, "maximum": 9},
    "compresscmd": {"type": "string"},
    "compressoptions": {"type": "array", "items": {"type": "string"}},
    "compressext": {"type": "string"},
    "copytruncate": {"type": "boolean", "default": false},
    "copy": {"type": "boolean", "default": false},
    "create": {"type": ["boolean", "object"], "properties": {"mode": {"type": "string"}, "owner": {"type": "string"}, "group": {"type": "string"}}},
    "createolddir": {"type": ["boolean", "object"], "properties": {"mode": {"type": "string"}, "owner": {"type": "string"}, "group": {"type": "string"}}},
    "olddir": {"type": "string"},
    "dateext": {"type": "boolean", "default": false},
    "dateformat": {"type": "string"},
    "dateyesterday": {"type": "boolean", "default": false},
    "extension": {"type": "string"},
    "addextension": {"type": "string"},
    "maxage": {"type": "integer", "minimum": 0},
    "minage": {"type": "integer", "minimum": 0},
    "missingok": {"type": "boolean", "default": false},
    "notifempty": {"type": "boolean", "default": false},
    "force": {"type": "boolean", "default": false},
    "start": {"type": "integer", "minimum": 0},
    "sharedscripts": {"type": "boolean", "default": false},
    "allowhardlink": {"type": "boolean", "default": false},
    "prerotate": {"type": ["string", "array"]},
    "postrotate": {"type": ["string", "array"]},
    "firstaction": {"type": ["string", "array"]},
    "lastaction": {"type": ["string", "array"]},
    "preremove": {"type": ["string", "array"]}
  }
}"#;

struct LogRotate;

/// How long a run waits for another that holds its state file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Plugin for LogRotate {
    fn describe() -> Description {
        Description::new(
            "log-rotate",
            env!("CARGO_PKG_VERSION"),
            "Rotates, compresses and prunes log files like logrotate, from its own config files or a TOML table",
        )
        .wants_dir("/logs", true, "the logs to rotate, and the state file")
        .config_schema(SCHEMA)
        .suggested_schedule("0 2 * * 0")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let job = config::parse_job(&ctx.config, &ctx.job).map_err(|e| ctx.bad_config(e))?;
        let zone = job_zone(std::env::var("TZ").ok().as_deref(), &ctx)?;
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let now = engine::Now::new(unix, zone);
        let root = running_as_root(&job.state_file, ctx.dry_run);
        let mut report = engine::Report::default();
        let mut problems = Vec::new();
        // Runs that share a state file take turns; a directory the lock
        // cannot be made in is left for the state write to report.
        let _lock = if ctx.dry_run {
            None
        } else {
            match state::Lock::take(&job.state_file, &ctx.run_id, LOCK_WAIT) {
                Ok(lock) => Some(lock),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(PluginError::other("io", e.to_string()));
                }
                Err(_) => None,
            }
        };
        // A job's own state file starts from the one jobs shared before.
        let read_from = match &job.shared_state_file {
            Some(shared)
                if std::fs::metadata(&job.state_file).is_err()
                    && std::fs::metadata(shared).is_ok() =>
            {
                shared.clone()
            }
            _ => job.state_file.clone(),
        };
        let mut state = state::State::load(&read_from, &now.zone, &now.as_local(), &mut problems)
            .at(format!("reading state file {read_from}"))?;
        report.warnings.extend(
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", job.state_file)),
        );
        let sets = match &job.source {
            config::Source::Conf(paths) => {
                let parsed = conf::read_paths(paths, root);
                report.errors.extend(parsed.errors);
                report.warnings.extend(parsed.warnings);
                parsed.sets
            }
            config::Source::Inline { patterns, opts } => vec![config::inline_set(
                patterns,
                opts,
                &job.state_file,
                &mut report.errors,
            )],
        };
        {
            let mut env = engine::Env {
                now,
                root,
                dry_run: ctx.dry_run,
                force: job.force,
                state: &mut state,
                report: &mut report,
            };
            for set in &sets {
                engine::rotate_set(set, &mut env);
            }
        }
        if !ctx.dry_run
            && let Err(e) = state.save(&job.state_file, &ctx.run_id, now.unix)
        {
            report.errors.push(format!(
                "error writing state file {}: {e} (it must lie in a read-write grant whose directory exists)",
                job.state_file
            ));
        }
        Ok(outcome(&report, ctx.dry_run))
    }
}

/// The zone every calendar rule is decided in: the job's, which opsd
/// puts in `TZ`, with its daylight-saving rules, as logrotate's libc uses
/// them. A host that does not set `TZ` (an older opsd) or names
/// a zone this build does not know leaves the scheduled time's UTC offset,
/// used all year; the run log says so, since decisions across a DST
/// change can then differ from logrotate's.
fn job_zone(tz: Option<&str>, ctx: &Context) -> Result<zone::Zone, PluginError> {
    if let Some(z) = zone::Zone::from_tz(tz) {
        opsd_sdk::debug!("calendar rules in time zone {}", z.describe());
        return Ok(z);
    }
    let offset = i64::from(ctx.scheduled_time()?.offset().local_minus_utc());
    let (fixed, why) = fallback_zone(tz, offset);
    opsd_sdk::warn!("{why}");
    Ok(fixed)
}

/// The zone without a usable `TZ`: the scheduled time's offset all year,
/// and the run log's line saying so.
fn fallback_zone(tz: Option<&str>, offset_secs: i64) -> (zone::Zone, String) {
    let fixed = zone::Zone::Fixed(offset_secs);
    let why = match tz {
        None => "TZ is not set (this opsd does not pass the job's time zone)".to_owned(),
        Some(v) => format!("TZ={v:?} is not a time zone this plugin knows"),
    };
    let line = format!(
        "{why}: calendar rules use the scheduled time's offset {} all year, so around a daylight-saving change they can differ from logrotate's",
        fixed.describe()
    );
    (fixed, line)
}

/// Whether the daemon runs as root, which decides (as for logrotate)
/// whether ownership is set and whether configs and directories that
/// others can write are refused. WASI has no getuid; a file the plugin
/// creates is owned by the daemon's user.
fn running_as_root(state_file: &str, dry_run: bool) -> bool {
    let uid_of = |path: &str| opsd_sdk::fsinfo::mode_owner(path).ok().map(|i| i.uid);
    if dry_run {
        return uid_of(state_file) == Some(0);
    }
    let probe = format!("{state_file}.opsd-probe");
    if std::fs::File::create(&probe).is_err() {
        return false;
    }
    let uid = uid_of(&probe);
    let _ = std::fs::remove_file(&probe);
    uid == Some(0)
}

fn outcome(r: &engine::Report, dry_run: bool) -> Outcome {
    for note in &r.notes {
        opsd_sdk::debug!("{note}");
    }
    for rot in &r.rotated {
        opsd_sdk::info!(
            "{}{} -> {}",
            if dry_run { "would rotate " } else { "" },
            rot.log,
            rot.to
        );
    }
    for w in &r.warnings {
        opsd_sdk::warn!("{w}");
    }
    for e in &r.errors {
        opsd_sdk::error!("{e}");
    }
    let verb = if dry_run { "would rotate" } else { "rotated" };
    let mut summary = format!("{verb} {} of {} logs", r.rotated.len(), r.seen);
    if r.compressed_in > 0 {
        summary.push_str(&format!(
            " ({} compressed to {})",
            human_bytes(r.compressed_in),
            human_bytes(r.compressed_out)
        ));
    }
    if !r.removed.is_empty() {
        summary.push_str(&format!(", {} old removed", r.removed.len()));
    }
    let mut out = Outcome::from_findings(summary, &r.errors, &r.warnings, &[])
        .metric("logs_seen", r.seen as f64, None)
        .metric("logs_rotated", r.rotated.len() as f64, None)
        .metric(
            "bytes_rotated",
            r.rotated.iter().map(|x| x.bytes).sum::<u64>() as f64,
            Some("bytes"),
        )
        .metric("bytes_compressed_in", r.compressed_in as f64, Some("bytes"))
        .metric(
            "bytes_compressed_out",
            r.compressed_out as f64,
            Some("bytes"),
        )
        .metric("files_removed", r.removed.len() as f64, None)
        .metric("scripts_run", r.scripts_run as f64, None);
    if !dry_run {
        for rot in &r.rotated {
            if let Ok(m) = std::fs::metadata(&rot.to) {
                out = out.artifact(Artifact {
                    path: rot.to.clone(),
                    kind: "rotated-log".into(),
                    size_bytes: Some(m.len()),
                    sha256: None,
                });
            }
        }
    }
    out
}

opsd_sdk::export_plugin!(LogRotate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_known_tz_the_offset_is_used_and_said() {
        let (z, line) = fallback_zone(None, 7200);
        assert_eq!(z, zone::Zone::Fixed(7200));
        assert!(line.starts_with("TZ is not set"), "{line}");
        assert!(line.contains("UTC+02:00 all year"), "{line}");
        let (_, line) = fallback_zone(Some("Mars/Olympus"), -18_000);
        assert!(
            line.contains("\"Mars/Olympus\" is not a time zone"),
            "{line}"
        );
        assert!(line.contains("UTC-05:00"), "{line}");
    }

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<config::Config>(
            SCHEMA,
            &serde_json::json!({
                "logrotate_conf": ["/etc/logrotate.conf"], "state_file": "/logs/status",
                "paths": ["/logs/*.log"], "rotate": 4, "frequency": "weekly", "weekday": 0,
                "size": "10M", "minsize": 1024, "maxsize": "1G",
                "compress": true, "delaycompress": true, "compresslevel": 9, "compresscmd": "gzip",
                "compressoptions": ["-9"], "compressext": ".gz", "copytruncate": false, "copy": false,
                "create": {"mode": "0640", "owner": "app", "group": "adm"}, "createolddir": true,
                "olddir": "/logs/old", "dateext": true, "dateformat": "-%Y%m%d", "dateyesterday": false,
                "extension": ".log", "addextension": ".log", "maxage": 30, "minage": 1,
                "missingok": true, "notifempty": true, "force": false, "start": 1, "sharedscripts": true,
                "allowhardlink": false, "prerotate": "echo pre", "postrotate": ["kill", "-HUP", "1"],
                "firstaction": "true", "lastaction": "true", "preremove": "true"
            }),
        );
    }
}
