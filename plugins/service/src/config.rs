//! service's `[job.config]`: what to restart (a systemd unit, or a
//! process manager's command) and how to know it is back (the unit's
//! state, a check command, a health URL).

use serde::Deserialize;
use std::time::Duration;

/// `[job.config]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A systemd unit: `systemctl ACTION UNIT`, then its state.
    #[serde(default)]
    pub unit: Option<String>,
    /// `restart` (default), `reload`, `try-restart` or `reload-or-restart`.
    #[serde(default)]
    pub action: Option<String>,
    /// The systemctl program as the exec grant names it.
    #[serde(default)]
    pub systemctl: Option<String>,
    /// Instead of a unit: the argv that restarts it through a process
    /// manager (`["pm2", "restart", "api"]`), through the exec grant.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// An argv that exits 0 when the service is up (`["pm2", "pid", "api"]`).
    #[serde(default)]
    pub check: Option<Vec<String>>,
    /// A URL that answers when the service is back (through the net grant).
    #[serde(default)]
    pub health: Option<Health>,
    /// How long the service may take to be back. Default 60s.
    #[serde(default)]
    pub wait: Option<String>,
    /// Between two looks. Default 1s.
    #[serde(default)]
    pub interval: Option<String>,
}

/// The health URL and what a healthy answer is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub url: String,
    /// Statuses that count as healthy; default any 2xx.
    #[serde(default)]
    pub status: Vec<u16>,
    /// Text the body must contain.
    #[serde(default)]
    pub contains: Option<String>,
    /// One request's limit. Default 5s.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// What restarts the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// systemctl ACTION UNIT.
    Unit {
        program: String,
        action: String,
        unit: String,
    },
    /// A process manager's argv.
    Command(Vec<String>),
}

/// A checked config.
#[derive(Debug, Clone)]
pub struct Checked {
    pub target: Target,
    pub check: Option<Vec<String>>,
    pub health: Option<Health>,
    pub request_timeout: Duration,
    pub wait: Duration,
    pub interval: Duration,
}

fn duration(key: &str, v: &Option<String>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| format!("{key} `{s}`: {e} (write a duration such as \"30s\")")),
    }
}

/// A unit name as systemd writes them, and never an option.
pub fn check_unit(unit: &str) -> Result<(), String> {
    let ok = !unit.is_empty()
        && unit.len() <= 256
        && !unit.starts_with('-')
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.@-\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unit `{unit}` is not a unit name: letters, digits and `:_.@-\\`, not starting with `-` (such as \"nginx.service\")"
        ))
    }
}

fn check_argv(key: &str, argv: &[String]) -> Result<(), String> {
    match argv.first() {
        None => Err(format!(
            "{key} is empty: write the program and its arguments, such as [\"pm2\", \"restart\", \"api\"]"
        )),
        Some(p) if p.is_empty() => Err(format!("{key} names an empty program")),
        Some(_) => Ok(()),
    }
}

impl Config {
    /// Checks everything; the message names the key and what to write.
    pub fn check(&self) -> Result<Checked, String> {
        let target = match (&self.unit, &self.command) {
            (Some(_), Some(_)) => {
                return Err("unit and command exclude each other: a systemd unit, or a process manager's command".into());
            }
            (None, None) => {
                return Err("nothing to restart: set unit = \"api.service\" (systemctl) or command = [\"pm2\", \"restart\", \"api\"]".into());
            }
            (Some(unit), None) => {
                check_unit(unit)?;
                let action = self.action.clone().unwrap_or_else(|| "restart".into());
                if !["restart", "reload", "try-restart", "reload-or-restart"]
                    .contains(&action.as_str())
                {
                    return Err(format!(
                        "action `{action}`: \"restart\", \"reload\", \"try-restart\" or \"reload-or-restart\""
                    ));
                }
                Target::Unit {
                    program: self.systemctl.clone().unwrap_or_else(|| "systemctl".into()),
                    action,
                    unit: unit.clone(),
                }
            }
            (None, Some(argv)) => {
                check_argv("command", argv)?;
                if self.action.is_some() || self.systemctl.is_some() {
                    return Err(
                        "action and systemctl go with unit; a command says its own action".into(),
                    );
                }
                if self.check.is_none() && self.health.is_none() {
                    return Err("with a command, say how to know the service is back: health = { url = \"...\" } or check = [...]".into());
                }
                Target::Command(argv.clone())
            }
        };
        if let Some(c) = &self.check {
            check_argv("check", c)?;
        }
        if let Some(h) = &self.health {
            opsd_sdk::http::split_url(&h.url).map_err(|e| format!("health.url: {e}"))?;
            if let Some(s) = h.status.iter().find(|s| !(100..=599).contains(*s)) {
                return Err(format!("health.status {s} is no HTTP status"));
            }
        }
        let wait = duration("wait", &self.wait, Duration::from_secs(60))?;
        let interval = duration("interval", &self.interval, Duration::from_secs(1))?;
        let request_timeout = duration(
            "health.timeout",
            &self.health.as_ref().and_then(|h| h.timeout.clone()),
            Duration::from_secs(5),
        )?;
        if wait.is_zero() {
            return Err("wait is 0: give the service time to come back, such as \"60s\"".into());
        }
        Ok(Checked {
            target,
            check: self.check.clone(),
            health: self.health.clone(),
            request_timeout,
            wait,
            interval: interval.max(Duration::from_millis(100)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<Checked, String> {
        opsd_sdk::config::parse::<Config>(json)?.check()
    }

    #[test]
    fn targets_and_refusals() {
        let c = cfg(r#"{"unit":"api.service"}"#).unwrap();
        assert_eq!(
            c.target,
            Target::Unit {
                program: "systemctl".into(),
                action: "restart".into(),
                unit: "api.service".into()
            }
        );
        assert_eq!(c.wait, Duration::from_secs(60));
        let c = cfg(r#"{"command":["pm2","restart","api"],"health":{"url":"http://127.0.0.1:3000/health"},"wait":"10s"}"#)
            .unwrap();
        assert_eq!(
            c.target,
            Target::Command(vec!["pm2".into(), "restart".into(), "api".into()])
        );
        for (json, says) in [
            (r#"{"unit":"--root=/"}"#, "not a unit name"),
            (r#"{"unit":"a b"}"#, "not a unit name"),
            (r#"{"unit":"api","action":"stop"}"#, "action `stop`"),
            (r#"{}"#, "nothing to restart"),
            (r#"{"unit":"a","command":["x"]}"#, "exclude each other"),
            (r#"{"command":["pm2","restart","api"]}"#, "how to know"),
            (r#"{"command":[],"check":["x"]}"#, "command is empty"),
            (r#"{"unit":"a","health":{"url":"ftp://x/"}}"#, "health.url"),
            (
                r#"{"unit":"a","health":{"url":"http://x/","status":[42]}}"#,
                "no HTTP status",
            ),
            (r#"{"unit":"a","wait":"soon"}"#, "wait `soon`"),
            (r#"{"unit":"a","wait":"0s"}"#, "wait is 0"),
        ] {
            let e = cfg(json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
    }
}
