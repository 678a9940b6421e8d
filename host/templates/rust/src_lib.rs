//! {{name}}: an opsd plugin. It reports how much a directory holds and
//! warns when that passes a budget; replace `run` with your chore.
//!
//! Test:    opsd plugin test
//! Build:   opsd plugin build   (see README.md for the steps it runs)
//! Install: cp target/wasm32-wasip2/release/{{crate}}.wasm /var/lib/opsd/plugins/

use opsd_sdk::{Context, ContextExt, Description, IoContext, Outcome, Plugin, PluginError, Status};
use serde::Deserialize;

/// The JSON Schema of `[job.config]`: `opsd check` validates jobs against
/// it before anything runs. A unit test keeps it in step with `Config`.
const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["dir", "max_bytes"],
  "additionalProperties": false,
  "properties": {
    "dir": {"type": "string", "description": "guest path of the directory to measure"},
    "max_bytes": {"type": "integer", "minimum": 0, "description": "warn above this many bytes"}
  }
}"#;

/// The job's `[job.config]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path of the directory, as the job's `fs` grant maps it.
    pub dir: String,
    /// Warn above this many bytes.
    pub max_bytes: u64,
}

/// The verdict on a directory holding `total` bytes; kept free of host
/// calls so `cargo test` can check it natively.
pub fn verdict(dir: &str, files: usize, total: u64, max_bytes: u64) -> (Status, String) {
    let line = format!("{dir} holds {files} files, {total} bytes (budget {max_bytes})");
    if total > max_bytes {
        (Status::Warning, format!("{line}: over budget"))
    } else {
        (Status::Ok, line)
    }
}

struct Component;

impl Plugin for Component {
    fn describe() -> Description {
        Description::new(
            "{{name}}",
            env!("CARGO_PKG_VERSION"),
            "Reports a directory's size against a budget",
        )
        .wants_dir("/data", false, "the directory to measure")
        .config_schema(SCHEMA)
        .suggested_schedule("0 * * * *")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        let entries = std::fs::read_dir(&cfg.dir).at(format!(
            "reading {} (is it in the job's fs grant?)",
            cfg.dir
        ))?;
        let (mut files, mut total) = (0usize, 0u64);
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                files += 1;
                total += meta.len();
            }
        }
        opsd_sdk::info!("measured {}: {}", cfg.dir, opsd_sdk::human_bytes(total));
        let (status, summary) = verdict(&cfg.dir, files, total, cfg.max_bytes);
        Ok(Outcome::with_status(status, summary).metric("bytes", total as f64, Some("bytes")))
    }
}

opsd_sdk::export_plugin!(Component);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_budget_is_a_warning() {
        assert_eq!(verdict("/data", 2, 10, 100).0, Status::Ok);
        let (status, line) = verdict("/data", 2, 1000, 100);
        assert_eq!(status, Status::Warning);
        assert!(line.ends_with("over budget"), "{line}");
    }

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({"dir": "/data", "max_bytes": 1000000000}),
        );
    }
}
