//! The job's `[job.config]` table for audit. Every check is opt-in by
//! naming what it looks at; the log patterns default to the runbook's.

use crate::findings::Severity;
use serde::Deserialize;

/// Paths to look at.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub paths: Vec<String>,
}

/// Secret files: group/world readable ones are findings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub paths: Vec<String>,
    /// File name globs that hold secrets.
    #[serde(default = "default_secret_names")]
    pub names: Vec<String>,
}

/// File names that usually hold secrets.
pub fn default_secret_names() -> Vec<String> {
    [
        ".env",
        ".env.*",
        "*.env",
        "*.key",
        "*.pem",
        "id_rsa",
        "id_ecdsa",
        "id_ed25519",
        "*.p12",
        "*.pfx",
        ".pgpass",
        "credentials*",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// SUID/SGID files compared with the first run's baseline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suid {
    pub paths: Vec<String>,
    /// Accepted besides the baseline.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Certificates near expiry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certs {
    pub paths: Vec<String>,
    #[serde(default = "default_warn_days")]
    pub warn_days: i64,
    #[serde(default = "default_critical_days")]
    pub critical_days: i64,
}

fn default_warn_days() -> i64 {
    30
}

fn default_critical_days() -> i64 {
    7
}

/// One pattern counted in a log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// Names the finding (`log-pattern` key) and the metric.
    pub name: String,
    /// A regular expression (Rust regex syntax), matched per line.
    pub regex: String,
    /// Matches since the last run at or above which it is a finding.
    #[serde(default = "one")]
    pub threshold: u64,
    #[serde(default = "p2")]
    pub severity: Severity,
    /// Judge by a rate over a window instead of a count since the last
    /// run (`threshold` is then the least number of matches).
    #[serde(default)]
    pub rate: Option<crate::rate::RateSpec>,
}

fn one() -> u64 {
    1
}

fn p2() -> Severity {
    Severity::P2
}

/// The runbook's three greps.
pub fn default_patterns() -> Vec<Pattern> {
    vec![
        Pattern {
            name: "auth-failures".into(),
            regex: "Authentication failed".into(),
            threshold: 10,
            severity: Severity::P2,
            rate: None,
        },
        Pattern {
            name: "attack-signs".into(),
            regex: "(?i)injection|exploit|malicious".into(),
            threshold: 1,
            severity: Severity::P1,
            rate: None,
        },
        Pattern {
            name: "rate-limited".into(),
            regex: "Rate limit exceeded".into(),
            threshold: 100,
            severity: Severity::P3,
            rate: None,
        },
    ]
}

/// A log watched incrementally.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub path: String,
    #[serde(default = "default_patterns")]
    pub patterns: Vec<Pattern>,
}

/// A dependency scanner run through the exec grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scanner {
    /// Project directories (guest paths) to run it in.
    pub dirs: Vec<String>,
    /// The program as the exec grant names it.
    #[serde(default)]
    pub program: Option<String>,
}

/// Pending updates from apt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Apt {
    #[serde(default)]
    pub program: Option<String>,
    /// Severity of pending security updates.
    #[serde(default = "p2")]
    pub severity: Severity,
}

/// `[job.config]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest path (read-write grant) where findings, the SUID baseline and
    /// log positions are kept between runs.
    pub state_file: String,
    #[serde(default)]
    pub secrets: Option<Secrets>,
    /// Directories of backups: every file in them is as secret as the
    /// data it holds.
    #[serde(default)]
    pub backups: Option<Paths>,
    #[serde(default)]
    pub world_writable: Option<Paths>,
    #[serde(default)]
    pub suid: Option<Suid>,
    #[serde(default)]
    pub certs: Option<Certs>,
    #[serde(default)]
    pub logs: Vec<Log>,
    #[serde(default)]
    pub npm_audit: Option<Scanner>,
    #[serde(default)]
    pub cargo_audit: Option<Scanner>,
    #[serde(default)]
    pub osv_scanner: Option<Scanner>,
    #[serde(default)]
    pub apt: Option<Apt>,
}

impl Config {
    /// Checks paths and patterns before anything runs.
    pub fn validate(&self) -> Result<(), String> {
        let mut paths: Vec<(&str, &String)> = vec![("state_file", &self.state_file)];
        for (what, list) in [
            ("secrets.paths", self.secrets.as_ref().map(|s| &s.paths)),
            ("backups.paths", self.backups.as_ref().map(|s| &s.paths)),
            (
                "world_writable.paths",
                self.world_writable.as_ref().map(|s| &s.paths),
            ),
            ("suid.paths", self.suid.as_ref().map(|s| &s.paths)),
            ("certs.paths", self.certs.as_ref().map(|s| &s.paths)),
        ] {
            for p in list.into_iter().flatten() {
                paths.push((what, p));
            }
        }
        for l in &self.logs {
            paths.push(("logs.path", &l.path));
        }
        for (what, s) in [
            ("npm_audit.dirs", &self.npm_audit),
            ("cargo_audit.dirs", &self.cargo_audit),
            ("osv_scanner.dirs", &self.osv_scanner),
        ] {
            for d in s.iter().flat_map(|s| &s.dirs) {
                paths.push((what, d));
            }
        }
        for (what, p) in paths {
            if !p.starts_with('/') {
                return Err(format!(
                    "{what} `{p}` is relative: write the guest path, such as \"/srv/app\""
                ));
            }
        }
        for l in &self.logs {
            for p in &l.patterns {
                regex::Regex::new(&p.regex)
                    .map_err(|e| format!("log {} pattern `{}`: bad regex: {e}", l.path, p.name))?;
                if p.name.is_empty()
                    || !p
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "log {} pattern name `{}`: use letters, digits, `-` and `_`",
                        l.path, p.name
                    ));
                }
                if let Some(r) = &p.rate {
                    r.check()
                        .map_err(|e| format!("log {} pattern `{}`: {e}", l.path, p.name))?;
                }
            }
        }
        if let Some(c) = &self.certs
            && c.critical_days > c.warn_days
        {
            return Err(format!(
                "certs.critical_days ({}) is more than warn_days ({})",
                c.critical_days, c.warn_days
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_runbook() {
        let c: Config = serde_json::from_str(
            r#"{"state_file":"/s/audit.json","logs":[{"path":"/var/log/app/agent.log"}]}"#,
        )
        .unwrap();
        c.validate().unwrap();
        let names: Vec<_> = c.logs[0].patterns.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["auth-failures", "attack-signs", "rate-limited"]);
    }

    #[test]
    fn bad_regex_and_relative_paths_are_named() {
        let c: Config = serde_json::from_str(
            r#"{"state_file":"/s","logs":[{"path":"/l","patterns":[{"name":"x","regex":"("}]}]}"#,
        )
        .unwrap();
        assert!(c.validate().unwrap_err().contains("pattern `x`: bad regex"));
        let c: Config =
            serde_json::from_str(r#"{"state_file":"/s","secrets":{"paths":["srv"]}}"#).unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .contains("secrets.paths `srv` is relative")
        );
    }
}
