//! `env = [...]`: names of the daemon's environment variables a job's
//! plugin and programs receive. Their values are usually credentials, so
//! they are also what every log line, record and refusal is masked for.
//!
//! Besides them, every plugin finds `TZ` set to its job's IANA time zone
//! (`timezone = "Europe/Berlin"`, UTC by default), so a plugin in any
//! language reckons calendar days, weeks and file names in the zone its
//! schedule runs in, daylight-saving rules included. The job's zone wins
//! over a granted `TZ` in the plugin's environment; the programs the
//! plugin starts get only granted variables, as before.

use super::{Explained, Kind, Violations, Wiring};
use crate::diag::{Lines, Problems};
use toml::Spanned;

/// The variables a job is granted, by name, and the job's zone for `TZ`.
#[derive(Debug, Clone, Default)]
pub struct EnvGrant {
    names: Vec<String>,
    /// The job's time zone; unset only for grants built outside a config.
    zone: Option<chrono_tz::Tz>,
}

impl EnvGrant {
    /// Validates the names: a variable name, and never `LD_*` (it would
    /// load code into the job's programs).
    pub(crate) fn from_raw(
        raw: &[Spanned<String>],
        lines: &Lines,
        job: &str,
        problems: &mut Problems,
    ) -> EnvGrant {
        let mut names = Vec::new();
        for name in raw {
            let n = name.get_ref();
            let valid = !n.is_empty()
                && !n.as_bytes()[0].is_ascii_digit()
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                problems.push(
                    lines.at(name),
                    Some(job),
                    format!("env grant `{n}` is not a variable name (letters, digits, `_`)"),
                );
            } else if n.starts_with("LD_") {
                problems.push(
                    lines.at(name),
                    Some(job),
                    format!(
                        "env grant `{n}` would let a plugin load code into its child processes; it is never passed"
                    ),
                );
            } else {
                names.push(n.clone());
            }
        }
        EnvGrant { names, zone: None }
    }

    /// Records the job's zone, which its plugin finds in `TZ`.
    pub(crate) fn set_zone(&mut self, zone: chrono_tz::Tz) {
        self.zone = Some(zone);
    }

    /// The plugin's WASI environment: the granted variables the daemon
    /// has, and `TZ` naming the job's zone (in place of a granted `TZ`).
    /// `TZ` is not a secret, so it stays out of [`EnvGrant::values`],
    /// which logs are masked for.
    pub fn plugin_env(&self) -> Vec<(String, String)> {
        let mut vars = self.values();
        if let Some(zone) = self.zone {
            vars.retain(|(n, _)| n != "TZ");
            vars.push(("TZ".to_owned(), zone.name().to_owned()));
        }
        vars
    }

    /// The granted names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `name` is granted.
    pub fn allows(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The granted variables the daemon has, with their values.
    pub fn values(&self) -> Vec<(String, String)> {
        self.names
            .iter()
            .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v)))
            .collect()
    }
}

impl Kind for EnvGrant {
    fn key(&self) -> &'static str {
        "env"
    }

    fn explain(&self) -> Explained {
        Explained::Each(self.names.clone())
    }

    fn wire<'a>(
        &'a self,
        wasi: &'a mut wasmtime_wasi::WasiCtxBuilder,
        _violations: &'a Violations,
    ) -> Wiring<'a> {
        wasi.envs(&self.plugin_env());
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_finds_its_jobs_zone_in_tz() {
        let mut grant = EnvGrant {
            names: vec!["TZ".to_owned(), "OPSD_TEST_SURELY_UNSET_VAR".to_owned()],
            zone: None,
        };
        grant.set_zone(chrono_tz::Tz::Australia__Lord_Howe);
        let env = grant.plugin_env();
        let tz: Vec<&(String, String)> = env.iter().filter(|(n, _)| n == "TZ").collect();
        assert_eq!(tz.len(), 1, "{env:?}");
        assert_eq!(tz[0].1, "Australia/Lord_Howe");
        assert!(EnvGrant::default().plugin_env().is_empty());
    }
}
