//! The command job's `[job.config]`.
//!
//! ```toml
//! [job.config]
//! program = "npm"                 # named in the job's exec grant
//! args = ["run", "metrics:daily"]
//! cwd = "/srv/app"                # guest path inside an fs grant
//! stdin = "yes\n"                 # fed to the program (crontab's `%`)
//! env = { NODE_ENV = "production" }   # plain values; names in the env grant
//! timeout = "10m"                 # this run's limit (the job's timeout still caps it)
//! success_codes = [0, 1]          # exit codes that count as success (default [0])
//! fail_on = "(?i)error|fatal"     # output matching this fails the run
//! ok_if = "^done$"                # output must match this, or the run fails
//! tail_lines = 20                 # output lines kept in the record (default 20)
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;

/// Most output lines a record keeps, whatever `tail_lines` says: a run
/// record is not a log store.
pub const MAX_TAIL_LINES: u32 = 1000;

/// Most bytes of each stream's tail kept in a record.
pub const MAX_TAIL_BYTES: usize = 16 << 10;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The program, as the exec grant names it.
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `30s`, `10m`, `2h`, `1h30m`, or whole seconds.
    #[serde(default, deserialize_with = "de_timeout")]
    pub timeout: Option<u64>,
    #[serde(default = "zero")]
    pub success_codes: Vec<i32>,
    #[serde(default)]
    pub fail_on: Option<String>,
    #[serde(default)]
    pub ok_if: Option<String>,
    #[serde(default = "twenty")]
    pub tail_lines: u32,
}

fn zero() -> Vec<i32> {
    vec![0]
}

fn twenty() -> u32 {
    20
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(u64),
    Text(String),
}

fn de_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match RawDuration::deserialize(d)? {
        RawDuration::Seconds(s) => Ok(Some(s.saturating_mul(1000))),
        RawDuration::Text(t) => parse_duration_ms(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// `30s`, `10m`, `2h`, `1d`, `1h30m`, `500ms` in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("timeout `{text}` is not a duration; write e.g. `30s`, `10m` or `1h30m`");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(format!(
            "timeout `{text}` is zero; leave it out to use the job's timeout"
        ));
    }
    Ok(total)
}

impl Config {
    /// Checks what serde cannot: guest paths, patterns, bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.program.trim().is_empty() {
            return Err("`program` is empty; name a program the job's exec grant lists".into());
        }
        if let Some(cwd) = &self.cwd
            && !cwd.starts_with('/')
        {
            return Err(format!(
                "cwd `{cwd}` is not a guest path; write the absolute guest path of a directory inside an fs grant"
            ));
        }
        if self.success_codes.is_empty() {
            return Err(
                "`success_codes` is empty, so no run could succeed; leave it out for [0]".into(),
            );
        }
        if self.tail_lines > MAX_TAIL_LINES {
            return Err(format!(
                "tail_lines = {} is more than {MAX_TAIL_LINES}; a run record keeps a tail, the log keeps the rest",
                self.tail_lines
            ));
        }
        for (key, pattern) in [("fail_on", &self.fail_on), ("ok_if", &self.ok_if)] {
            if let Some(p) = pattern {
                crate::verdict::pattern(p).map_err(|e| format!("{key} `{p}`: {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        for bad in ["", "10", "10 minutes", "m", "0s", "99999999999999999d"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let cfg: Config = serde_json::from_value(serde_json::json!({
            "program": "true", "fail_on": "(unclosed"
        }))
        .unwrap();
        assert!(
            cfg.validate()
                .unwrap_err()
                .starts_with("fail_on `(unclosed`")
        );
        let cfg: Config =
            serde_json::from_value(serde_json::json!({"program": "true", "cwd": "srv"})).unwrap();
        assert!(cfg.validate().unwrap_err().contains("cwd `srv`"));
        let cfg: Config =
            serde_json::from_value(serde_json::json!({"program": "true", "success_codes": []}))
                .unwrap();
        assert!(cfg.validate().is_err());
        let cfg: Config =
            serde_json::from_value(serde_json::json!({"program": "true", "timeout": 5})).unwrap();
        assert_eq!(cfg.timeout, Some(5000));
        assert_eq!(cfg.success_codes, [0]);
        assert!(cfg.validate().is_ok());
    }
}
