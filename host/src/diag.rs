//! Diagnostics and the small parsers every section of a config shares:
//! line numbers from byte offsets, the list of problems a load collects,
//! durations and sizes. It sits at the bottom of the crate so the grants,
//! the monitor's conditions and the config can all report the same way
//! without importing one another.

use std::time::Duration;
use toml::Spanned;

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub line: Option<usize>,
    pub job: Option<String>,
    pub message: String,
}

/// Turns byte offsets into line numbers for one file.
pub(crate) struct Lines {
    /// Byte offset of every newline, in order: a line is found by binary
    /// search, so a config of 10,000 jobs is not read once per key.
    newlines: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        Lines {
            newlines: newline_offsets(text),
        }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn of(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&n| n < offset) + 1
    }

    pub(crate) fn at<T>(&self, s: &Spanned<T>) -> Option<usize> {
        Some(self.of(s.span().start))
    }
}

fn newline_offsets(text: &str) -> Vec<usize> {
    text.bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect()
}

/// Collects problems while validating, tagging each with line and job.
pub(crate) struct Problems {
    pub(crate) list: Vec<Problem>,
}

impl Problems {
    pub(crate) fn push(
        &mut self,
        line: Option<usize>,
        job: Option<&str>,
        message: impl Into<String>,
    ) {
        self.list.push(Problem {
            line,
            job: job.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// The longest duration any setting takes: past it, clocks and dates
/// overflow long before the wait ends, and it is a typo anyway.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);

/// Parses `30s`, `5m`, `1h 30m`, `2d` into a duration of at most ten
/// years.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. `90s`, `30m` or `2h`")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than any setting takes (at most ten years, `3660d`)"
        ));
    }
    Ok(d)
}

/// Parses `512`, `64K`, `256M`, `2G` (powers of 1024; `KiB`/`MB` spellings
/// accepted).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. `64M` or `1G`"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{text}` has an unknown unit; use K, M or G")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `3h 12min`, `45s`, `2 days 3h`: the largest two units, as
/// `opsd schedule list` and the console say them.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}min {s}s"),
        (0, _, _) => format!("{h}h {m}min"),
        (1, _, _) => format!("1 day {h}h"),
        _ => format!("{d} days {h}h"),
    }
}

/// Milliseconds as people read them: `840 ms`, `15.5 s`.
pub fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// Strings as a TOML array, `["a", "b"]`, for a message that shows what
/// to write in the config (a JSON array of strings is valid TOML).
pub fn toml_strings<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s.as_ref()).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5T").is_err());
    }

    #[test]
    fn strings_quote_as_toml_reads_them() {
        let shown = toml_strings(&["-c", "echo \"hi\"\n", "\u{1b}[2J"]);
        assert_eq!(shown, r#"["-c", "echo \"hi\"\n", "\u001b[2J"]"#);
        let back: toml::Table = toml::from_str(&format!("v = {shown}")).unwrap();
        assert_eq!(back["v"][1].as_str(), Some("echo \"hi\"\n"));
    }

    #[test]
    fn durations_name_the_text() {
        assert_eq!(parse_duration(" 90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").unwrap_err().contains("`soon`"));
        let e = parse_duration("99999999999d").unwrap_err();
        assert!(e.contains("ten years"), "{e}");
    }
}
