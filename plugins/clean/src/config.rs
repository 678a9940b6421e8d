//! clean's `[job.config]`: which trees, which files in them, and the
//! rules that pick what goes. Checked before anything is looked at, so a
//! pattern with `..` or a budget that does not parse deletes nothing.

use serde::Deserialize;

/// `[job.config]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Guest directories (in read-write grants) to clean; each is judged
    /// on its own (its own budget, its own newest files).
    pub paths: Vec<String>,
    /// Globs a file must match (by name without `/`, else by its path
    /// under the root); default: every file.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of files and directories left alone (a directory matched is
    /// not entered).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `30d`: files older than this go, counted in whole units as
    /// `find -mtime +30` counts days.
    #[serde(default)]
    pub older_than: Option<String>,
    /// The newest N matching files under each root always stay.
    #[serde(default)]
    pub keep_newest: usize,
    /// `10G`: the oldest matching files go until the rest fit.
    #[serde(default)]
    pub max_size: Option<Size>,
    /// Remove directories left empty by the run (or empty and older than
    /// `older_than`).
    #[serde(default)]
    pub remove_empty_dirs: bool,
    /// At most this many removals per run, oldest first (a safety brake
    /// on a rule wider than meant). Default 10,000.
    #[serde(default = "default_max_deletions")]
    pub max_deletions: usize,
    /// Entries looked at per run before the scan stops. Default 1,000,000.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Directories deeper than this are not entered. Default 64.
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
}

/// A size as written: bytes, or `512K`, `10M`, `2G`, `1T` (binary units).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

fn default_max_deletions() -> usize {
    10_000
}

fn default_max_entries() -> u64 {
    1_000_000
}

fn default_max_depth() -> usize {
    64
}

/// An age counted in whole units, as find counts `-mtime` days: a file
/// goes when `floor(age / unit) > count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age {
    pub count: u64,
    /// The unit in milliseconds.
    pub unit_ms: u64,
}

/// A checked config: globs compiled, sizes and ages read.
#[derive(Debug, Clone)]
pub struct Checked {
    pub paths: Vec<String>,
    pub include: Vec<glob::Pattern>,
    pub exclude: Vec<glob::Pattern>,
    pub older_than: Option<Age>,
    /// `older_than` as written, for messages.
    pub older_than_text: String,
    pub keep_newest: usize,
    pub max_size: Option<u64>,
    pub remove_empty_dirs: bool,
    pub max_deletions: usize,
    pub max_entries: u64,
    pub max_depth: usize,
}

impl Config {
    /// Checks everything; the message names the key and what to write.
    pub fn check(&self) -> Result<Checked, String> {
        if self.paths.is_empty() {
            return Err(
                "paths is empty: name the directories to clean, such as [\"/cache\"]".into(),
            );
        }
        let mut paths = Vec::new();
        for p in &self.paths {
            paths.push(check_path(p)?);
        }
        let include = self
            .include
            .iter()
            .map(|g| check_glob("include", g))
            .collect::<Result<_, _>>()?;
        let exclude = self
            .exclude
            .iter()
            .map(|g| check_glob("exclude", g))
            .collect::<Result<_, _>>()?;
        let older_than = self.older_than.as_deref().map(parse_age).transpose()?;
        let max_size = match &self.max_size {
            None => None,
            Some(Size::Bytes(b)) => Some(*b),
            Some(Size::Text(t)) => Some(parse_size(t)?),
        };
        if older_than.is_none() && max_size.is_none() {
            return Err(
                "no rule says what goes: set older_than (such as \"30d\"), max_size (such as \"10G\") or both"
                    .into(),
            );
        }
        if self.max_deletions == 0 {
            return Err("max_deletions is 0: nothing could ever go; leave it out for 10000".into());
        }
        Ok(Checked {
            paths,
            include,
            exclude,
            older_than,
            older_than_text: self.older_than.clone().unwrap_or_default(),
            keep_newest: self.keep_newest,
            max_size,
            remove_empty_dirs: self.remove_empty_dirs,
            max_deletions: self.max_deletions,
            max_entries: self.max_entries.max(1),
            max_depth: self.max_depth.max(1),
        })
    }
}

/// An absolute guest path without `.` or `..`, trailing slash dropped.
fn check_path(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!(
            "paths `{p}` is relative: write the guest path of a read-write grant, such as \"/cache\""
        ));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!(
            "paths `{p}` has `.` or `..` in it: write the directory itself"
        ));
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("paths `/`: name a granted directory, not the root".into());
    }
    Ok(trimmed.to_owned())
}

/// A glob matched against names and paths under a root: never absolute,
/// never with `..` (it would match nothing the walk sees, so it is
/// surely a mistake).
fn check_glob(key: &str, g: &str) -> Result<glob::Pattern, String> {
    if g.is_empty() {
        return Err(format!("{key} has an empty pattern"));
    }
    if g.starts_with('/') {
        return Err(format!(
            "{key} `{g}` is absolute: patterns match paths under each of paths, such as \"*.log\" or \"tmp/**\""
        ));
    }
    if g.split('/').any(|c| c == "..") {
        return Err(format!(
            "{key} `{g}` has `..`: patterns match only under each of paths, never above it"
        ));
    }
    glob::Pattern::new(g).map_err(|e| format!("{key} `{g}`: {e}"))
}

/// `30d`, `12h`, `90m`, `1w`: a count and a unit.
pub fn parse_age(s: &str) -> Result<Age, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let count: u64 = num.parse().map_err(|_| {
        format!("older_than `{s}`: write a whole number and a unit, such as \"30d\" or \"12h\"")
    })?;
    let unit_s: u64 = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "older_than `{s}`: unknown unit `{other}`; use s, m, h, d or w"
            ));
        }
    };
    Ok(Age {
        count,
        unit_ms: unit_s * 1000,
    })
}

/// `512K`, `10M`, `2G`, `1T`, `123` (binary units, as du -h).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("max_size `{s}`: write bytes or a number with K, M, G or T"))?;
    let mult: u64 = match unit.trim().trim_end_matches(['B', 'b', 'i']) {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        other => {
            return Err(format!(
                "max_size `{s}`: unknown unit `{other}`; use K, M, G or T"
            ));
        }
    };
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<Checked, String> {
        opsd_sdk::config::parse::<Config>(json)?.check()
    }

    #[test]
    fn ages_and_sizes_read_as_written() {
        assert_eq!(
            parse_age("30d").unwrap(),
            Age {
                count: 30,
                unit_ms: 86_400_000
            }
        );
        assert_eq!(parse_age("12h").unwrap().unit_ms, 3_600_000);
        assert!(parse_age("30 days").unwrap_err().contains("unknown unit"));
        assert!(parse_age("d").unwrap_err().contains("whole number"));
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert!(parse_size("10 parsecs").is_err());
    }

    #[test]
    fn bad_configs_say_what_to_write() {
        for (json, says) in [
            (r#"{"paths":["cache"],"older_than":"1d"}"#, "relative"),
            (r#"{"paths":["/cache/../etc"],"older_than":"1d"}"#, "`..`"),
            (r#"{"paths":["/"],"older_than":"1d"}"#, "not the root"),
            (r#"{"paths":[],"older_than":"1d"}"#, "paths is empty"),
            (
                r#"{"paths":["/c"],"include":["../*.log"],"older_than":"1d"}"#,
                "never above",
            ),
            (
                r#"{"paths":["/c"],"exclude":["/etc/*"],"older_than":"1d"}"#,
                "absolute",
            ),
            (
                r#"{"paths":["/c"],"include":["[a"],"older_than":"1d"}"#,
                "include `[a`",
            ),
            (r#"{"paths":["/c"]}"#, "no rule says what goes"),
            (
                r#"{"paths":["/c"],"older_than":"1d","max_deletions":0}"#,
                "max_deletions is 0",
            ),
        ] {
            let e = cfg(json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
        let c = cfg(r#"{"paths":["/cache/"],"max_size":"1G","older_than":"2w"}"#).unwrap();
        assert_eq!(c.paths, ["/cache"]);
        assert_eq!(c.max_size, Some(1 << 30));
        assert_eq!(c.max_deletions, 10_000);
    }
}
