//! log-rotate: rotates, compresses and prunes log files the way logrotate
//! does, inside the directories the job grants and nowhere else.

pub mod config;
pub mod rotate;
pub mod state;

use opsd_sdk::{
    Artifact, Context, ContextExt, Description, IoContext, Outcome, Plugin, PluginError,
};

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["paths"],
  "additionalProperties": false,
  "properties": {
    "paths": {"type": "array", "items": {"type": "string"}, "description": "glob patterns of guest paths"},
    "rotate": {"type": "integer", "minimum": 0, "default": 4},
    "compress": {"type": "boolean", "default": false},
    "delaycompress": {"type": "boolean", "default": false},
    "missingok": {"type": "boolean", "default": false},
    "notifempty": {"type": "boolean", "default": false},
    "size": {"type": ["string", "integer"], "description": "bytes, or a number with k, M or G"},
    "frequency": {"enum": ["daily", "weekly", "monthly", "yearly"]},
    "create": {"type": "boolean", "default": false},
    "state_file": {"type": "string"}
  }
}"#;

struct LogRotate;

impl Plugin for LogRotate {
    fn describe() -> Description {
        Description::new(
            "log-rotate",
            env!("CARGO_PKG_VERSION"),
            "Rotates, compresses and prunes log files like logrotate",
        )
        .wants_dir("/logs", true, "the logs to rotate, and the state file")
        .config_schema(SCHEMA)
        .suggested_schedule("0 2 * * 0")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: config::Config = ctx.config()?;
        cfg.validate()
            .map_err(|e| PluginError::bad_config(format!("job `{}`: {e}", ctx.job)))?;
        let now = chrono::DateTime::parse_from_rfc3339(&ctx.scheduled)
            .map_err(|e| {
                PluginError::other(
                    "bad-context",
                    format!("scheduled time `{}`: {e}", ctx.scheduled),
                )
            })?
            .naive_utc();
        let state_path = cfg.state_path();
        let mut state =
            state::State::load(&state_path).at(format!("reading state file {state_path}"))?;
        let before = state.clone();
        let report = rotate::run(&cfg, now, ctx.dry_run, &mut state);
        if !ctx.dry_run && state != before {
            state
                .save(&state_path)
                .at(format!("writing state file {state_path}"))?;
        }
        Ok(outcome(&report, ctx.dry_run))
    }
}

fn outcome(r: &rotate::Report, dry_run: bool) -> Outcome {
    for (log, why) in &r.skipped {
        opsd_sdk::debug!("{log}: {why}");
    }
    for rot in &r.rotated {
        opsd_sdk::info!(
            "{}{} -> {}",
            if dry_run { "would rotate " } else { "" },
            rot.log,
            rot.newest
        );
    }
    for e in &r.errors {
        opsd_sdk::error!("{e}");
    }
    let verb = if dry_run { "would rotate" } else { "rotated" };
    let mut summary = format!("{verb} {} of {} logs", r.rotated.len(), r.seen);
    if r.bytes_compressed_in > 0 {
        summary.push_str(&format!(
            " ({} compressed to {})",
            human(r.bytes_compressed_in),
            human(r.bytes_compressed_out)
        ));
    }
    if !r.removed.is_empty() {
        summary.push_str(&format!(", {} old removed", r.removed.len()));
    }
    let mut out = if let Some(first) = r.errors.first() {
        summary.push_str(&format!("; {} failed: {first}", r.errors.len()));
        Outcome::failed(summary)
    } else {
        Outcome::ok(summary)
    };
    out = out
        .details(r.errors.join("\n"))
        .metric("logs_seen", r.seen as f64, None)
        .metric("logs_rotated", r.rotated.len() as f64, None)
        .metric(
            "bytes_rotated",
            r.rotated.iter().map(|x| x.bytes).sum::<u64>() as f64,
            Some("bytes"),
        )
        .metric(
            "bytes_compressed_in",
            r.bytes_compressed_in as f64,
            Some("bytes"),
        )
        .metric(
            "bytes_compressed_out",
            r.bytes_compressed_out as f64,
            Some("bytes"),
        )
        .metric("files_removed", r.removed.len() as f64, None);
    if !dry_run {
        for rot in r.rotated.iter().filter(|x| !x.newest.is_empty()) {
            out = out.artifact(Artifact {
                path: rot.newest.clone(),
                kind: "rotated-log".into(),
                size_bytes: std::fs::metadata(&rot.newest).ok().map(|m| m.len()),
                sha256: None,
            });
        }
    }
    out
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

opsd_sdk::export_plugin!(LogRotate);
