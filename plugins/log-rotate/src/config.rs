//! The job's `[job.config]` table for log-rotate, named after logrotate's
//! directives so an operator's existing knowledge carries over.

use serde::Deserialize;

/// How often time-based rotation happens, by calendar (UTC), like
/// logrotate's `daily`/`weekly`/`monthly`/`yearly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// A size written as logrotate does (`100`, `100k`, `10M`, `1G`) or as a
/// plain number of bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// The validated configuration of one log-rotate job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Glob patterns of guest paths, such as `/logs/*.log`.
    pub paths: Vec<String>,
    /// Rotated generations kept; the oldest beyond this is deleted.
    /// 0 removes the log instead of keeping a copy.
    #[serde(default = "default_rotate")]
    pub rotate: u32,
    /// gzip rotated generations.
    #[serde(default)]
    pub compress: bool,
    /// Leave `.1` uncompressed until the next rotation (for programs that
    /// keep writing to the old file for a while).
    #[serde(default)]
    pub delaycompress: bool,
    /// A pattern matching nothing, or a missing log, is not an error.
    #[serde(default)]
    pub missingok: bool,
    /// Do not rotate an empty log.
    #[serde(default)]
    pub notifempty: bool,
    /// Rotate when the log is at least this big (and only then).
    #[serde(default, deserialize_with = "de_size")]
    pub size: Option<u64>,
    /// Rotate by calendar.
    #[serde(default)]
    pub frequency: Option<Frequency>,
    /// Recreate an empty log after moving it away.
    #[serde(default)]
    pub create: bool,
    /// Where rotation times are remembered; a guest path inside a
    /// read-write grant. Defaults to `.opsd-logrotate.status` beside the
    /// logs of the first pattern.
    #[serde(default)]
    pub state_file: Option<String>,
}

fn default_rotate() -> u32 {
    // Debian's /etc/logrotate.conf says `rotate 4`.
    4
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<RawSize>::deserialize(d)? {
        None => Ok(None),
        Some(RawSize::Bytes(n)) => Ok(Some(n)),
        Some(RawSize::Text(s)) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Parses logrotate's size syntax: a number with an optional `k`, `M` or
/// `G` suffix (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = digits.trim().parse().map_err(|_| {
        format!("size `{text}` is not a size: write bytes, or a number with k, M or G (`10M`)")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

impl Config {
    /// Checks what serde cannot: combinations that would silently do the
    /// wrong thing.
    pub fn validate(&self) -> Result<(), String> {
        if self.paths.is_empty() {
            return Err("`paths` is empty: list glob patterns such as \"/logs/*.log\"".into());
        }
        for p in &self.paths {
            if !p.starts_with('/') {
                return Err(format!(
                    "path pattern `{p}` is relative: write the guest path, such as \"/logs/*.log\""
                ));
            }
            glob::Pattern::new(p).map_err(|e| format!("path pattern `{p}`: {e}"))?;
        }
        if self.size.is_some() && self.frequency.is_some() {
            return Err(
                "`size` and `frequency` are both set: `size` rotates by size alone; pick one"
                    .into(),
            );
        }
        Ok(())
    }

    /// The state file's guest path.
    pub fn state_path(&self) -> String {
        if let Some(p) = &self.state_file {
            return p.clone();
        }
        let first = self.paths.first().map(String::as_str).unwrap_or("/");
        let dir = match first.rfind('/') {
            Some(0) | None => "",
            Some(i) => &first[..i],
        };
        format!("{dir}/.opsd-logrotate.status")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_logrotate_suffixes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("100k").unwrap(), 102_400);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("ten").unwrap_err().contains("`ten`"));
    }

    #[test]
    fn state_file_defaults_beside_first_pattern() {
        let c: Config = serde_json::from_str(r#"{"paths":["/logs/app/*.log"]}"#).unwrap();
        assert_eq!(c.state_path(), "/logs/app/.opsd-logrotate.status");
        assert_eq!(c.rotate, 4);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<Config>(r#"{"paths":["/l/*"],"rotat":3}"#).unwrap_err();
        assert!(e.to_string().contains("rotat"), "{e}");
    }

    #[test]
    fn size_and_frequency_conflict() {
        let c: Config =
            serde_json::from_str(r#"{"paths":["/l/*"],"size":"1M","frequency":"daily"}"#).unwrap();
        assert!(c.validate().is_err());
    }
}
