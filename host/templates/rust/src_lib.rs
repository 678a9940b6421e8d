//! {{name}}: an opsd plugin. It reports how much a directory holds and
//! warns when that passes a budget; replace `run` with your chore.
//!
//! Build: cargo build --release --target wasm32-wasip2
//! Test:  cargo test
//! Install: cp target/wasm32-wasip2/release/{{crate}}.wasm /var/lib/opsd/plugins/

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use opsd::plugin::log::{Level, log};
// The world's `use types.{...}` already brings Context, Description,
// Outcome and PluginError into scope.
use opsd::plugin::types::{Capabilities, FsRequest, Metric, Status};
use serde::Deserialize;

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

impl Guest for Component {
    fn describe() -> Description {
        Description {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Reports a directory's size against a budget".into(),
            capabilities: Capabilities {
                fs: vec![FsRequest {
                    guest: "/data".into(),
                    write: false,
                    reason: "the directory to measure".into(),
                }],
                exec: vec![],
                net: false,
            },
            config_schema: r#"{"type":"object","required":["dir","max_bytes"],"additionalProperties":false,"properties":{"dir":{"type":"string"},"max_bytes":{"type":"integer"}}}"#.into(),
            suggested_schedule: Some("0 * * * *".into()),
        }
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = serde_json::from_str(&ctx.config).map_err(|e| PluginError {
            message: format!("job `{}`: [job.config]: {e}", ctx.job),
            kind: "bad-config".into(),
        })?;
        let entries = std::fs::read_dir(&cfg.dir).map_err(|e| PluginError {
            message: format!("{}: {e} (is it in the job's fs grant?)", cfg.dir),
            kind: "io".into(),
        })?;
        let (mut files, mut total) = (0usize, 0u64);
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                files += 1;
                total += meta.len();
            }
        }
        log(Level::Info, &format!("measured {}", cfg.dir));
        let (status, summary) = verdict(&cfg.dir, files, total, cfg.max_bytes);
        Ok(Outcome {
            status,
            summary,
            details: String::new(),
            metrics: vec![Metric {
                name: "bytes".into(),
                value: total as f64,
                unit: Some("bytes".into()),
            }],
            artifacts: vec![],
        })
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_budget_is_a_warning() {
        assert!(matches!(verdict("/data", 2, 10, 100).0, Status::Ok));
        let (status, line) = verdict("/data", 2, 1000, 100);
        assert!(matches!(status, Status::Warning));
        assert!(line.ends_with("over budget"), "{line}");
    }
}
