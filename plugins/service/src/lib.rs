//! service: restarts or reloads a service and waits until it is back, the
//! runbook's "memory > 85 % -> restart service" as a job. A systemd unit
//! goes through `systemctl` (its state read back with `systemctl show`);
//! a process manager (pm2, supervisorctl, a control script) through the
//! argv given. Back means every check configured says so in one round:
//! the unit active with a new main process, a check command exiting 0, a
//! health URL answering as expected. Not back within `wait` fails the run,
//! so the failure webhook goes out.

pub mod config;
pub mod systemd;

use config::{Checked, Config, Target};
use opsd_sdk::{Command, Context, ContextExt, Description, Outcome, Plugin, PluginError, info};
use std::time::Instant;

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "unit": {"type": "string", "description": "a systemd unit: systemctl ACTION UNIT, then its state"},
    "action": {"enum": ["restart", "reload", "try-restart", "reload-or-restart"], "default": "restart"},
    "systemctl": {"type": "string", "description": "the systemctl program as the exec grant names it"},
    "command": {"type": "array", "items": {"type": "string"}, "description": "instead of a unit: the argv that restarts it (pm2 restart api)"},
    "check": {"type": "array", "items": {"type": "string"}, "description": "an argv that exits 0 when the service is up"},
    "health": {"type": "object", "required": ["url"], "additionalProperties": false,
      "properties": {"url": {"type": "string"}, "status": {"type": "array", "items": {"type": "integer"}},
        "contains": {"type": "string"}, "timeout": {"type": "string", "default": "5s"}}},
    "wait": {"type": "string", "default": "60s"},
    "interval": {"type": "string", "default": "1s"}
  }
}"#;

struct Service;

impl Plugin for Service {
    fn describe() -> Description {
        Description::new(
            "service",
            env!("CARGO_PKG_VERSION"),
            "Restart or reload a service (systemctl or a process manager) and wait until it is back",
        )
        .wants_exec("systemctl")
        .wants_net()
        .config_schema(SCHEMA)
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        let cfg = cfg.check().map_err(|e| ctx.bad_config(e))?;
        run(&cfg, ctx.dry_run)
    }
}

/// `systemctl restart api.service` or the command, for messages.
fn what(cfg: &Checked) -> String {
    match &cfg.target {
        Target::Unit {
            program,
            action,
            unit,
        } => format!("{program} {action} {unit}"),
        Target::Command(argv) => argv.join(" "),
    }
}

fn exec_error(what: &str, e: opsd_sdk::ExecError) -> PluginError {
    PluginError::other("exec", format!("{what}: {}", e.text()))
}

/// The unit's state now.
fn unit_state(program: &str, unit: &str) -> Result<systemd::UnitState, PluginError> {
    let shown = format!("{program} show {unit}");
    let exit = Command::new(program)
        .args(["show", unit, "--property", systemd::PROPERTIES])
        .timeout_ms(30_000)
        .run_checked(&shown)?;
    let state = systemd::parse_show(&String::from_utf8_lossy(&exit.stdout));
    if state.load == "not-found" {
        return Err(PluginError::other(
            "not-found",
            format!("{unit} is not a unit systemd knows ({shown}: LoadState=not-found)"),
        ));
    }
    Ok(state)
}

/// One look at the health URL: `Ok(line)` when healthy, `Err(why)` not.
fn health_once(cfg: &Checked) -> Option<Result<String, String>> {
    let h = cfg.health.as_ref()?;
    Some(
        match opsd_sdk::http::request_timeout("GET", &h.url, &[], None, cfg.request_timeout) {
            Err(e) => Err(e),
            Ok(r) => {
                let status_ok = if h.status.is_empty() {
                    (200..300).contains(&r.status)
                } else {
                    h.status.contains(&r.status)
                };
                let body = r.text();
                if !status_ok {
                    let snippet: String = body.trim().chars().take(120).collect();
                    Err(format!("{} answered {}: {snippet}", h.url, r.status))
                } else if let Some(want) =
                    h.contains.as_ref().filter(|w| !body.contains(w.as_str()))
                {
                    Err(format!(
                        "{} answered {} without `{want}` in its body",
                        h.url, r.status
                    ))
                } else {
                    Ok(format!("{} answered {}", h.url, r.status))
                }
            }
        },
    )
}

/// One look at the check command: exit 0 is up.
fn check_once(cfg: &Checked) -> Option<Result<String, String>> {
    let argv = cfg.check.as_ref()?;
    let shown = argv.join(" ");
    Some(
        match Command::new(&argv[0])
            .args(&argv[1..])
            .timeout_ms(30_000)
            .run()
        {
            Ok(exit) if exit.success() => Ok(format!("{shown} exited 0")),
            Ok(exit) => Err(format!(
                "{shown} exited {}: {}",
                exit.status_text(),
                exit.stderr_text()
            )),
            Err(e) => Err(format!("{shown}: {}", e.text())),
        },
    )
}

fn run(cfg: &Checked, dry_run: bool) -> Result<Outcome, PluginError> {
    let action = what(cfg);
    // Before anything: the unit's state, and one look at the health URL
    // (a URL the net grant does not allow fails the run here, before the
    // service is touched).
    let before = match &cfg.target {
        Target::Unit { program, unit, .. } => Some(unit_state(program, unit)?),
        Target::Command(_) => None,
    };
    let health_before = health_once(cfg);
    if let Some(Err(e)) = &health_before
        && e.contains(opsd_sdk::http::DENIED)
    {
        return Err(PluginError::other(
            "denied",
            format!("{e}: nothing was restarted, as it could not be seen coming back"),
        ));
    }
    if let Some(b) = &before {
        info!("before: {}", b.show());
    }
    if let Some(h) = &health_before {
        info!("before: {}", h.as_ref().unwrap_or_else(|e| e));
    }
    if dry_run {
        let mut now = Vec::new();
        if let Some(b) = &before {
            now.push(b.show());
        }
        if let Some(h) = &health_before {
            now.push(h.clone().unwrap_or_else(|e| e));
        }
        return Ok(Outcome::ok(format!(
            "would run `{action}`, then wait up to {} for it to be back; now: {}",
            humantime::format_duration(cfg.wait),
            if now.is_empty() {
                "-".into()
            } else {
                now.join("; ")
            }
        )));
    }

    let started = Instant::now();
    let argv: Vec<String> = match &cfg.target {
        Target::Unit {
            program,
            action,
            unit,
        } => vec![program.clone(), action.clone(), unit.clone()],
        Target::Command(argv) => argv.clone(),
    };
    info!("running {action}");
    let exit = Command::new(&argv[0])
        .args(&argv[1..])
        .timeout_ms(cfg.wait.as_millis() as u64 + 30_000)
        .run()
        .map_err(|e| exec_error(&action, e))?;
    if !exit.success() {
        let out = String::from_utf8_lossy(&exit.stdout).trim().to_owned();
        let err = exit.stderr_text();
        return Err(PluginError::other(
            "exec",
            format!(
                "{action} exited {}: {}",
                exit.status_text(),
                if err.is_empty() { out } else { err }
            ),
        ));
    }

    // Wait until every check says back in the same round.
    let mut looks = 0u32;
    let last_word = loop {
        looks += 1;
        let mut back = Vec::new();
        let mut not_yet: Option<String> = None;
        if let (
            Target::Unit {
                program,
                action,
                unit,
            },
            Some(b),
        ) = (&cfg.target, &before)
        {
            let now = unit_state(program, unit)?;
            match now.verdict(b, action) {
                systemd::Verdict::Back => back.push(format!("{unit} {}", now.show())),
                systemd::Verdict::Waiting(why) => not_yet = Some(format!("{unit}: {why}")),
                systemd::Verdict::Failed(why) => {
                    return Ok(Outcome::failed(format!(
                        "{action}: {unit} did not come back: {why}"
                    ))
                    .metric(
                        "seconds_waited",
                        started.elapsed().as_secs_f64(),
                        Some("seconds"),
                    ));
                }
            }
        }
        if not_yet.is_none()
            && let Some(r) = check_once(cfg)
        {
            match r {
                Ok(l) => back.push(l),
                Err(e) => not_yet = Some(e),
            }
        }
        if not_yet.is_none()
            && let Some(r) = health_once(cfg)
        {
            match r {
                Ok(l) => back.push(l),
                Err(e) => not_yet = Some(e),
            }
        }
        match not_yet {
            None => {
                let took = started.elapsed();
                let summary = format!(
                    "`{action}`: back after {:.1} s ({})",
                    took.as_secs_f64(),
                    if back.is_empty() {
                        "the command succeeded".into()
                    } else {
                        back.join("; ")
                    }
                );
                info!("{summary}");
                return Ok(Outcome::ok(summary)
                    .metric(
                        "seconds_to_back",
                        (took.as_secs_f64() * 10.0).round() / 10.0,
                        Some("seconds"),
                    )
                    .metric("looks", looks as f64, None));
            }
            Some(why) => {
                if started.elapsed() + cfg.interval > cfg.wait {
                    break why;
                }
                info!("not back yet: {why}");
                std::thread::sleep(cfg.interval);
            }
        }
    };
    Ok(Outcome::failed(format!(
        "`{action}` ran, but the service is not back within {}: {last_word}",
        humantime::format_duration(cfg.wait)
    ))
    .metric(
        "seconds_waited",
        (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        Some("seconds"),
    )
    .metric("looks", looks as f64, None))
}

opsd_sdk::export_plugin!(Service);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "unit": "api.service", "action": "restart", "systemctl": "systemctl",
                "command": ["pm2", "restart", "api"], "check": ["pm2", "pid", "api"],
                "health": {"url": "http://127.0.0.1:3000/health", "status": [200], "contains": "ok", "timeout": "5s"},
                "wait": "60s", "interval": "1s"
            }),
        );
    }
}
