//! `env = [...]`: names of the daemon's environment variables a job's
//! plugin and programs receive. Their values are usually credentials, so
//! they are also what every log line, record and refusal is masked for.

use super::{Explained, Kind, Violations, Wiring};
use crate::diag::{Lines, Problems};
use toml::Spanned;

/// The variables a job is granted, by name.
#[derive(Debug, Clone, Default)]
pub struct EnvGrant {
    names: Vec<String>,
}

impl EnvGrant {
    /// Validates the names: a variable name, and never `LD_*` (it would
    /// load code into the job's programs).
    pub(crate) fn from_raw(
        raw: &[Spanned<String>],
        lines: &Lines<'_>,
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
        EnvGrant { names }
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
        wasi.envs(&self.values());
        Box::pin(async { Ok(()) })
    }
}
