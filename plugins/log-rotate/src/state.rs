//! When each log was last rotated, in logrotate's own status format, so an
//! operator reads it the same way and can move between the two:
//!
//! ```text
//! logrotate state -- version 2
//! "/var/log/app.log" 2026-11-28-4:0:0
//! ```
//!
//! Times are local wall-clock times of the job's time zone, as logrotate
//! writes them; a time is read as logrotate reads it, through `mktime`
//! with the DST flag unknown ([`Zone::mktime`]), so one that does not
//! exist (the spring-forward gap) is moved as glibc moves it, and written
//! back moved, and one that occurs twice is read with the offset of now. The file is replaced atomically (temp file, fsync,
//! rename), so a crash mid-write leaves the previous state, never half of
//! one.

use crate::zone::{Local, Tm, Zone};
use chrono::{NaiveDate, NaiveDateTime};
use std::collections::BTreeMap;
use std::io::Write;

const HEADER: &str = "logrotate state -- version 2";

/// logrotate's "solar year": entries for logs that no longer exist are
/// dropped after this long without a rotation.
const SECONDS_IN_YEAR: i64 = 31_556_926;

/// One log's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The local fields written, and the instant they stand for.
    pub last_rotated: Local,
    /// Seen this run (the log exists); unused entries age out.
    pub used: bool,
}

/// Last rotation time per log path.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct State {
    pub entries: BTreeMap<String, Entry>,
}

impl State {
    /// Parses a status file, reading its times in `zone` at `now`. Lines
    /// it cannot read are reported and skipped rather than losing every
    /// other entry.
    pub fn parse(text: &str, zone: &Zone, now: &Local, problems: &mut Vec<String>) -> State {
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        // glibc's mktime starts from the offset its last call found. In
        // logrotate the last call before a line's time is read is the one
        // recording a new path at now's hour (`newState`, called for each
        // line's path before its time is set), so a time that occurs
        // twice is read with the offset of now, not of the line before
        // (unless the path came before, when that line's is).
        let mut guess = 0;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if n == 0 {
                if line != HEADER && line != "logrotate state -- version 1" {
                    problems.push(format!(
                        "state file line 1: bad top line `{line}`; expected `{HEADER}`"
                    ));
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let mut read = |(path, w): (String, &str)| {
                let wall = parse_time(w)?;
                if !entries.contains_key(&path) {
                    let _ = zone.mktime(&first_sight_tm(now), &mut guess);
                }
                Some((path, zone.mktime(&Tm::of(wall, None), &mut guess)?))
            };
            match split_entry(line).and_then(&mut read) {
                Some((path, t)) => {
                    entries.insert(
                        path,
                        Entry {
                            last_rotated: t,
                            used: false,
                        },
                    );
                }
                None => problems.push(format!(
                    "state file line {}: cannot read `{line}`; the entry is ignored",
                    n + 1
                )),
            }
        }
        State { entries }
    }

    /// The entry for a log, created as logrotate does for a log it has not
    /// seen: "rotated" at `first_sight` (the start of the current hour, see
    /// [`first_sight`]), so time-based rotation first happens on the next
    /// period.
    pub fn entry(&mut self, path: &str, first_sight: Local) -> &mut Entry {
        self.entries
            .entry(path.to_owned())
            .or_insert_with(|| Entry {
                last_rotated: first_sight,
                used: false,
            })
    }

    /// Renders the status file, dropping entries of logs that were not
    /// seen and not rotated for a year (by the clock: `now_unix`).
    pub fn render(&self, now_unix: i64) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        for (path, e) in &self.entries {
            if !e.used && now_unix - e.last_rotated.unix > SECONDS_IN_YEAR {
                continue;
            }
            out.push('"');
            for c in path.chars() {
                match c {
                    '"' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
            out.push_str(
                &e.last_rotated
                    .wall
                    .format(" %Y-%-m-%-d-%-H:%-M:%-S\n")
                    .to_string(),
            );
        }
        out
    }

    /// Reads the state file, its times in `zone` at `now`; a missing file
    /// is an empty state.
    pub fn load(
        path: &str,
        zone: &Zone,
        now: &Local,
        problems: &mut Vec<String>,
    ) -> std::io::Result<State> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.is_empty() => Ok(State::default()),
            Ok(text) => Ok(State::parse(&text, zone, now, problems)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically, through a temporary file of this
    /// run's own (`PATH.RUN.tmp`): two runs never write one temporary.
    pub fn save(&self, path: &str, run: &str, now_unix: i64) -> std::io::Result<()> {
        let tmp = format!("{path}.{run}.tmp");
        let written = (|| {
            let mut f = std::fs::File::create_new(&tmp)?;
            f.write_all(self.render(now_unix).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// A lock on a state file (`PATH.lock`, made with create-new, as
/// logrotate holds an flock on its state): runs that share a state file
/// read, rotate and write it one after the other. Released when dropped.
pub struct Lock {
    path: String,
}

/// A lock older than this was left by a run that died holding it.
const STALE_LOCK: std::time::Duration = std::time::Duration::from_secs(3600);

impl Lock {
    /// Takes the lock of `state_file` for run `run`, waiting up to `wait`
    /// for another run to let go of it.
    pub fn take(state_file: &str, run: &str, wait: std::time::Duration) -> std::io::Result<Lock> {
        let path = format!("{state_file}.lock");
        let began = std::time::Instant::now();
        loop {
            match std::fs::File::create_new(&path) {
                Ok(mut f) => {
                    let _ = f.write_all(run.as_bytes());
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > STALE_LOCK) {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if began.elapsed() >= wait {
                        let holder = std::fs::read_to_string(&path).unwrap_or_default();
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::WouldBlock,
                            format!(
                                "{path} is held by run {} for over {}s; another job shares this state file and is still rotating (remove the lock if no run is going)",
                                holder.trim(),
                                wait.as_secs()
                            ),
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// When logrotate records a log it has not seen (`newState`): the start
/// of `now`'s hour *with `now`'s DST flag*, through mktime and back. Where
/// that hour's start does not exist with that flag (a half-hour shift, as
/// at Lord Howe Island) it lands half an hour away, as logrotate's does.
pub fn first_sight(now: &Local, zone: &Zone) -> Local {
    zone.mktime_known(&first_sight_tm(now)).unwrap_or(*now)
}

/// The start of `now`'s hour with `now`'s DST flag, as `newState` asks
/// mktime for it.
fn first_sight_tm(now: &Local) -> Tm {
    Tm {
        min: 0,
        sec: 0,
        ..Tm::of(now.wall, Some(now.isdst))
    }
}

/// `"path" time`, with logrotate's escapes in the path.
fn split_entry(line: &str) -> Option<(String, &str)> {
    let Some(rest) = line.strip_prefix('"') else {
        // Version 1 files have unquoted paths.
        let (path, when) = line.split_once(char::is_whitespace)?;
        return Some((path.to_owned(), when.trim()));
    };
    let mut path = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next()?.1 {
                'n' => path.push('\n'),
                other => path.push(other),
            },
            '"' => return Some((path, rest[i + 1..].trim())),
            c => path.push(c),
        }
    }
    None
}

/// `Y-M-D[-H:M:S]`, as logrotate's sscanf reads it.
fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let mut parts = text.split(['-', ':']);
    let mut next = || parts.next()?.trim().parse::<u32>().ok();
    let (y, mo, d) = (next()?, next()?, next()?);
    let (h, mi, s) = (
        next().unwrap_or(0),
        next().unwrap_or(0),
        next().unwrap_or(0),
    );
    if !(1970..=2100).contains(&y) {
        return None;
    }
    NaiveDate::from_ymd_opt(y as i32, mo, d.max(1))?.and_hms_opt(h, mi, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: Zone = Zone::Fixed(0);

    fn t(y: i32, m: u32, d: u32, h: u32) -> Local {
        let wall = NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap();
        Local {
            wall,
            unix: wall.and_utc().timestamp(),
            isdst: false,
        }
    }

    #[test]
    fn round_trips_logrotate_format() {
        let text = "logrotate state -- version 2\n\"/logs/a \\\"b\\\"\\n.log\" 2026-11-28-4:0:7\n\"/logs/c.log\" 2025-1-2-0:0:0\n";
        let mut problems = Vec::new();
        let mut s = State::parse(text, &UTC, &t(2026, 12, 1, 0), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(s.entries.contains_key("/logs/a \"b\"\n.log"));
        for e in s.entries.values_mut() {
            e.used = true;
        }
        let now = t(2026, 12, 1, 0).unix;
        let again = State::parse(&s.render(now), &UTC, &t(2026, 12, 1, 0), &mut problems);
        assert_eq!(again.entries.len(), 2);
        assert!(s.render(now).contains("\"/logs/c.log\" 2025-1-2-0:0:0"));
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let mut problems = Vec::new();
        let s = State::parse(
            "logrotate state -- version 2\nnonsense\n\"/x\" 2026-2-30-0:0:0\n\"/y\" 2026-2-3\n",
            &UTC,
            &t(2026, 3, 1, 0),
            &mut problems,
        );
        assert_eq!(s.entries.len(), 1);
        assert!(s.entries.contains_key("/y"));
        assert_eq!(problems.len(), 2);
        assert!(problems[0].starts_with("state file line 2"), "{problems:?}");
    }

    #[test]
    fn unseen_entries_age_out_after_a_year() {
        let mut s = State::default();
        s.entry("/old", t(2024, 1, 1, 0));
        s.entry("/seen", t(2024, 1, 1, 0)).used = true;
        let text = s.render(t(2026, 1, 1, 0).unix);
        assert!(!text.contains("/old"));
        assert!(text.contains("/seen"));
    }

    #[test]
    fn first_sight_is_recorded_at_the_start_of_the_hour() {
        let now = Local {
            wall: t(2026, 3, 1, 10).wall + chrono::Duration::minutes(42),
            unix: t(2026, 3, 1, 10).unix + 42 * 60,
            isdst: false,
        };
        assert_eq!(first_sight(&now, &UTC), t(2026, 3, 1, 10));
    }

    #[test]
    fn first_sight_at_lord_howe_keeps_logrotates_half_hour() {
        // 02:45 LHDT on the morning DST begins (02:00 -> 02:30): the
        // start of the hour with the DST flag is 01:30 standard time.
        let zone = Zone::from_tz(Some("Australia/Lord_Howe")).unwrap();
        let now = zone.localtime(1_917_445_500).unwrap();
        assert_eq!(now.wall.format("%H:%M").to_string(), "02:45");
        let seen = first_sight(&now, &zone);
        assert_eq!(seen.wall.format("%H:%M").to_string(), "01:30");
        assert!(!seen.isdst);
    }

    #[test]
    fn times_are_read_as_mktime_reads_them() {
        // A time in the spring-forward gap moves to 03:30 CEST and is
        // written back so. The repeated 02:30 of the fall-back night is
        // read with the offset of now (glibc's guess, left by the call
        // that recorded the path at now's hour): CEST in summer, CET in
        // winter, whatever the line before.
        let zone = Zone::from_tz(Some("Europe/Berlin")).unwrap();
        let at = |unix: i64| zone.localtime(unix).unwrap();
        let (summer, winter) = (at(1_909_130_400), at(1_919_329_200));
        assert!(summer.isdst && !winter.isdst);
        let mut problems = Vec::new();
        let text = "logrotate state -- version 2\n\"/gap\" 2030-3-31-2:30:0\n\"/twice\" 2030-10-27-2:30:0\n";
        let mut s = State::parse(text, &zone, &summer, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.entries["/twice"].last_rotated.unix, 1_919_291_400);
        for e in s.entries.values_mut() {
            e.used = true;
        }
        assert!(s.render(0).contains("\"/gap\" 2030-3-31-3:30:0"));
        let s = State::parse(text, &zone, &winter, &mut problems);
        assert_eq!(s.entries["/twice"].last_rotated.unix, 1_919_295_000);
        assert!(!s.entries["/twice"].last_rotated.isdst);
    }
}
