//! command: runs one program the job grants, with exactly the arguments
//! its config gives (no shell unless the job grants `sh` and the config
//! runs it), and records its exit code, duration and the tail of its
//! output. A non-zero exit (or one outside `success_codes`), output
//! matching `fail_on`, or output never matching `ok_if` fails the run.
//! This is how a crontab line becomes a job, inside the job's grants
//! like any other plugin.

pub mod config;
pub mod verdict;

use config::{Config, MAX_TAIL_BYTES};
use opsd_sdk::{
    Command, Context, ContextExt, Description, ExecError, Input, Outcome, Plugin, PluginError,
};
use verdict::{Judged, Verdict};

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["program"],
  "additionalProperties": false,
  "properties": {
    "program": {"type": "string"},
    "args": {"type": "array", "items": {"type": "string"}},
    "cwd": {"type": "string"},
    "stdin": {"type": "string"},
    "env": {"type": "object", "additionalProperties": {"type": "string"}},
    "timeout": {"type": ["string", "integer"]},
    "success_codes": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
    "fail_on": {"type": "string"},
    "ok_if": {"type": "string"},
    "tail_lines": {"type": "integer", "minimum": 0, "maximum": 1000}
  }
}"#;

struct CommandPlugin;

impl Plugin for CommandPlugin {
    fn describe() -> Description {
        Description::new(
            "command",
            env!("CARGO_PKG_VERSION"),
            "Runs one granted program with arguments (a crontab line as a job); fails on its exit code or output",
        )
        // Whatever `program` names: the job's exec grant decides.
        .wants_exec("*")
        .config_schema(SCHEMA)
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        cfg.validate().map_err(|e| ctx.bad_config(e))?;
        let shown = verdict::clip(&command_line(&cfg), 160);
        if ctx.dry_run {
            return Ok(Outcome::ok(format!("would run {shown}")));
        }
        let fail_on = compiled(&ctx, "fail_on", cfg.fail_on.as_deref())?;
        let ok_if = compiled(&ctx, "ok_if", cfg.ok_if.as_deref())?;

        let mut cmd = Command::new(&cfg.program).args(cfg.args.iter().cloned());
        if let Some(dir) = &cfg.cwd {
            cmd = cmd.cwd(dir);
        }
        for (name, value) in &cfg.env {
            cmd = cmd.env(name, value);
        }
        if let Some(input) = &cfg.stdin {
            cmd = cmd.stdin(Input::Bytes(input.as_bytes().to_vec()));
        }
        if let Some(ms) = cfg.timeout {
            cmd = cmd.timeout_ms(ms);
        }
        opsd_sdk::info!("running {shown}");
        let exit = cmd.run().map_err(|e| exec_error(&shown, e))?;

        // The granted variables (the plugin sees what its programs see):
        // masked here before any cut, and again by the host.
        let secrets: Vec<(String, String)> =
            std::env::vars().filter(|(name, _)| name != "TZ").collect();
        let stdout = verdict::mask(&String::from_utf8_lossy(&exit.stdout), &secrets);
        let stderr = verdict::mask(&String::from_utf8_lossy(&exit.stderr), &secrets);
        let both = format!("{stdout}\n{stderr}");
        let judged = verdict::judge(&Judged {
            code: exit.code,
            signal: exit.signal,
            success_codes: &cfg.success_codes,
            output: &both,
            fail_on: fail_on.as_ref(),
            ok_if: ok_if.as_ref(),
            truncated: exit.truncated,
        });

        let lines = cfg.tail_lines as usize;
        let mut details = Vec::new();
        for (name, text, warn) in [("stdout", &stdout, false), ("stderr", &stderr, true)] {
            let (tail, skipped) = verdict::tail(text, lines, MAX_TAIL_BYTES);
            if tail.is_empty() {
                continue;
            }
            let before = if skipped > 0 {
                format!(", {skipped} lines before it left out")
            } else {
                String::new()
            };
            details.push(format!("{name} (last lines{before}):\n{tail}"));
            for line in tail.lines() {
                if warn {
                    opsd_sdk::warn!("{name}: {line}");
                } else {
                    opsd_sdk::info!("{name}: {line}");
                }
            }
        }
        if exit.truncated {
            details.push(
                "output passed the job's output cap (grants.limits.output): the middle of it was cut (opsd keeps the first and the last half of the cap)".into(),
            );
        }
        let seconds = exit.duration_ms as f64 / 1000.0;
        let took = format!("after {seconds:.1} s");
        let (status, summary) = match &judged {
            Verdict::Ok => (
                opsd_sdk::Status::Ok,
                format!("{shown} exited with {} {took}", exit.status_text()),
            ),
            Verdict::Unsure(why) => (
                opsd_sdk::Status::Warning,
                format!("{shown} exited with {} {took}; {why}", exit.status_text()),
            ),
            Verdict::Failed(why) => {
                let last = last_line(&stderr).or_else(|| last_line(&stdout));
                let quoted = match last {
                    Some(l) if !why.contains("fail_on") => {
                        format!(": {}", verdict::clip(l, 200))
                    }
                    _ => String::new(),
                };
                (
                    opsd_sdk::Status::Failed,
                    format!("{shown} {why} {took}{quoted}"),
                )
            }
        };
        let mut out = Outcome::with_status(status, summary)
            .details(details.join("\n\n"))
            .metric("duration_seconds", seconds, Some("seconds"))
            .metric("stdout_bytes", exit.stdout.len() as f64, Some("bytes"))
            .metric("stderr_bytes", exit.stderr.len() as f64, Some("bytes"))
            .metric(
                "output_truncated",
                if exit.truncated { 1.0 } else { 0.0 },
                None,
            );
        match exit.code {
            Some(code) => out = out.metric("exit_code", f64::from(code), None),
            None => out = out.metric("signal", f64::from(exit.signal.unwrap_or_default()), None),
        }
        Ok(out)
    }
}

/// The program and its arguments as one line for people, quoted where a
/// shell would need it.
fn command_line(cfg: &Config) -> String {
    std::iter::once(&cfg.program)
        .chain(&cfg.args)
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

fn compiled(
    ctx: &Context,
    key: &str,
    pattern: Option<&str>,
) -> Result<Option<regex::Regex>, PluginError> {
    pattern
        .map(|p| verdict::pattern(p).map_err(|e| ctx.bad_config(format!("{key} `{p}`: {e}"))))
        .transpose()
}

/// Why the program did not run to an exit, kept apart by kind: a refusal
/// points at the grants.
fn exec_error(shown: &str, e: ExecError) -> PluginError {
    let kind = match &e {
        ExecError::Denied(_) => "denied",
        ExecError::Timeout(_) => "timeout",
        ExecError::Spawn(_) | ExecError::Io(_) => "exec",
    };
    PluginError::other(kind, format!("{shown}: {}", e.text()))
}

opsd_sdk::export_plugin!(CommandPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "program": "npm", "args": ["run", "metrics:daily"], "cwd": "/srv/app",
                "stdin": "yes\n", "env": {"NODE_ENV": "production"}, "timeout": "10m",
                "success_codes": [0, 1], "fail_on": "(?i)error", "ok_if": "^done$", "tail_lines": 20
            }),
        );
    }

    #[test]
    fn the_command_line_is_quoted_for_people() {
        let cfg: Config = serde_json::from_value(serde_json::json!({
            "program": "sh", "args": ["-c", "echo 'hi' | wc -c"]
        }))
        .unwrap();
        assert_eq!(command_line(&cfg), r#"sh -c 'echo '\''hi'\'' | wc -c'"#);
    }
}
