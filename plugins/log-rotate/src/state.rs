//! When each log was last rotated, kept in logrotate's own status format so
//! an operator can read it the same way:
//!
//! ```text
//! logrotate state -- version 2
//! "/logs/app.log" 2026-11-28-4:0:0
//! ```
//!
//! Times are UTC. The file is replaced atomically (temp file + rename), so a
//! crash mid-write leaves the previous state, never half of one.

use chrono::{NaiveDate, NaiveDateTime};
use std::collections::BTreeMap;
use std::io::Write;

const HEADER: &str = "logrotate state -- version 2";

/// Last rotation time per log path.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct State {
    pub entries: BTreeMap<String, NaiveDateTime>,
}

impl State {
    /// Parses a status file. Lines it cannot read are skipped, as
    /// logrotate does, rather than losing every other entry.
    pub fn parse(text: &str) -> State {
        let mut entries = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("logrotate state") {
                continue;
            }
            if let Some((path, when)) = split_entry(line)
                && let Some(t) = parse_time(when)
            {
                entries.insert(path, t);
            }
        }
        State { entries }
    }

    /// Renders the status file.
    pub fn render(&self) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        for (path, t) in &self.entries {
            let escaped = path.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!(
                "\"{escaped}\" {}\n",
                t.format("%Y-%-m-%-d-%-H:%-M:%-S")
            ));
        }
        out
    }

    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &str) -> std::io::Result<State> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(State::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, path: &str) -> std::io::Result<()> {
        let tmp = format!("{path}.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

fn split_entry(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('"')?;
    let mut path = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => path.push(chars.next()?.1),
            '"' => return Some((path, rest[i + 1..].trim())),
            c => path.push(c),
        }
    }
    None
}

fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let mut parts = text.split(['-', ':']);
    let mut next = || parts.next()?.parse::<u32>().ok();
    let (y, mo, d) = (next()?, next()?, next()?);
    let (h, mi, s) = (
        next().unwrap_or(0),
        next().unwrap_or(0),
        next().unwrap_or(0),
    );
    NaiveDate::from_ymd_opt(y as i32, mo, d)?.and_hms_opt(h, mi, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_logrotate_format() {
        let text = "logrotate state -- version 2\n\"/logs/a \\\"b\\\".log\" 2026-11-28-4:0:7\n\"/logs/c.log\" 2025-1-2-0:0:0\n";
        let s = State::parse(text);
        assert_eq!(s.entries.len(), 2);
        assert_eq!(State::parse(&s.render()), s);
        assert!(s.render().contains("\"/logs/c.log\" 2025-1-2-0:0:0"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let s = State::parse(
            "logrotate state -- version 2\nnonsense\n\"/x\" 2026-2-30-0:0:0\n\"/y\" 2026-2-3\n",
        );
        assert_eq!(s.entries.len(), 1);
        assert!(s.entries.contains_key("/y"));
    }
}
