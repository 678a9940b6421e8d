//! The rotation itself, over ordinary `std::fs` calls: inside the sandbox
//! they reach only the job's grants; natively they run in unit tests.
//!
//! Order of operations follows logrotate: shift `.i` to `.i+1` from the
//! oldest down, move the log to `.1`, optionally recreate it, compress, and
//! only then delete the generation that fell off the end. A failure part
//! way leaves every byte of log data on disk under some name.

use crate::config::{Config, Frequency};
use crate::state::State;
use chrono::{Datelike, NaiveDateTime};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

/// One log that was rotated.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotated {
    pub log: String,
    /// The newest generation's path (`.1` or `.1.gz`).
    pub newest: String,
    pub bytes: u64,
}

/// What a run did, for the outcome.
#[derive(Debug, Default)]
pub struct Report {
    pub seen: usize,
    pub rotated: Vec<Rotated>,
    /// Log and why it was left alone.
    pub skipped: Vec<(String, String)>,
    pub removed: Vec<String>,
    pub errors: Vec<String>,
    pub bytes_compressed_in: u64,
    pub bytes_compressed_out: u64,
}

/// Rotates every log the patterns match. Errors on one log are recorded
/// and the others still run, as logrotate does.
pub fn run(cfg: &Config, now: NaiveDateTime, dry_run: bool, state: &mut State) -> Report {
    let mut report = Report::default();
    let state_path = cfg.state_path();
    let logs = match_logs(cfg, &state_path, &mut report);
    report.seen = logs.len();
    for log in logs {
        let size = match fs::metadata(&log) {
            Ok(m) => m.len(),
            Err(e) => {
                report.errors.push(format!("{log}: {e}"));
                continue;
            }
        };
        match decide(cfg, size, state.entries.get(&log).copied(), now) {
            Decision::Skip(reason) => report.skipped.push((log, reason)),
            Decision::FirstSeen => {
                state.entries.insert(log.clone(), now);
                report
                    .skipped
                    .push((log, "first seen; rotation time recorded".into()));
            }
            Decision::Rotate if dry_run => report.rotated.push(Rotated {
                newest: generation(&log, 1, cfg.compress && !cfg.delaycompress),
                log,
                bytes: size,
            }),
            Decision::Rotate => match rotate_one(cfg, &log, &mut report) {
                Ok(newest) => {
                    state.entries.insert(log.clone(), now);
                    report.rotated.push(Rotated {
                        log,
                        newest,
                        bytes: size,
                    });
                }
                Err(e) => report.errors.push(format!("{log}: {e}")),
            },
        }
    }
    report
}

fn match_logs(cfg: &Config, state_path: &str, report: &mut Report) -> BTreeSet<String> {
    let options = glob::MatchOptions {
        require_literal_leading_dot: true,
        ..Default::default()
    };
    let mut logs = BTreeSet::new();
    for pattern in &cfg.paths {
        let mut matched = false;
        match glob::glob_with(pattern, options) {
            Ok(paths) => {
                for entry in paths {
                    match entry {
                        Ok(p) => {
                            let Some(s) = p.to_str().map(str::to_owned) else {
                                continue;
                            };
                            if s == state_path || looks_rotated(&s) || !p.is_file() {
                                continue;
                            }
                            matched = true;
                            logs.insert(s);
                        }
                        Err(e) => report.errors.push(e.to_string()),
                    }
                }
            }
            Err(e) => report.errors.push(format!("pattern `{pattern}`: {e}")),
        }
        if !matched && !cfg.missingok {
            report.errors.push(format!(
                "no log matches `{pattern}` (set missingok = true if that is expected)"
            ));
        }
    }
    logs
}

/// `app.log.3`, `app.log.3.gz` and our temp files are products of rotation,
/// never logs to rotate themselves.
fn looks_rotated(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_suffix(".gz").unwrap_or(name);
    if name.ends_with(".opsd-tmp") {
        return true;
    }
    match name.rsplit_once('.') {
        Some((_, n)) => !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

enum Decision {
    Rotate,
    FirstSeen,
    Skip(String),
}

fn decide(cfg: &Config, size: u64, last: Option<NaiveDateTime>, now: NaiveDateTime) -> Decision {
    if size == 0 && cfg.notifempty {
        return Decision::Skip("empty (notifempty)".into());
    }
    if let Some(limit) = cfg.size {
        return if size >= limit {
            Decision::Rotate
        } else {
            Decision::Skip(format!("{size} bytes, below size {limit}"))
        };
    }
    let Some(freq) = cfg.frequency else {
        // No criterion: the job's own schedule says when.
        return Decision::Rotate;
    };
    let Some(last) = last else {
        return Decision::FirstSeen;
    };
    if due(freq, last, now) {
        Decision::Rotate
    } else {
        Decision::Skip(format!("rotated {last} UTC; not due ({freq:?})").to_lowercase())
    }
}

/// logrotate's calendar rules: a new day, a new week (weekday went
/// backwards or 7 days passed), a new month, a new year.
pub fn due(freq: Frequency, last: NaiveDateTime, now: NaiveDateTime) -> bool {
    if now < last {
        // The clock went back; do not rotate twice.
        return false;
    }
    match freq {
        Frequency::Daily => now.date() != last.date(),
        Frequency::Weekly => {
            now.weekday().num_days_from_sunday() < last.weekday().num_days_from_sunday()
                || now - last > chrono::Duration::days(7)
        }
        Frequency::Monthly => (now.year(), now.month()) != (last.year(), last.month()),
        Frequency::Yearly => now.year() != last.year(),
    }
}

/// The path of generation `i`, compressed or not.
pub fn generation(log: &str, i: u32, compressed: bool) -> String {
    if compressed {
        format!("{log}.{i}.gz")
    } else {
        format!("{log}.{i}")
    }
}

/// Whichever of `.i` or `.i.gz` exists.
fn existing_generation(log: &str, i: u32) -> Option<String> {
    [generation(log, i, false), generation(log, i, true)]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn rotate_one(cfg: &Config, log: &str, report: &mut Report) -> io::Result<String> {
    let n = cfg.rotate;
    if n == 0 {
        fs::remove_file(log)?;
        report.removed.push(log.to_owned());
        if cfg.create {
            fs::File::create(log)?;
        }
        return Ok(String::new());
    }
    // Shift from the oldest down: .n -> .n+1, ..., .1 -> .2.
    for i in (1..=n).rev() {
        if let Some(from) = existing_generation(log, i) {
            let to = if from.ends_with(".gz") {
                generation(log, i + 1, true)
            } else {
                generation(log, i + 1, false)
            };
            fs::rename(&from, &to)?;
        }
    }
    let first = generation(log, 1, false);
    fs::rename(log, &first)?;
    if cfg.create {
        fs::File::create(log)?;
    }
    let mut newest = first.clone();
    if cfg.compress {
        let target = if cfg.delaycompress {
            generation(log, 2, false)
        } else {
            first
        };
        if Path::new(&target).exists() {
            let (inb, outb) = gzip_file(&target)?;
            report.bytes_compressed_in += inb;
            report.bytes_compressed_out += outb;
            if !cfg.delaycompress {
                newest = generation(log, 1, true);
            }
        }
    }
    // Only now drop what fell off the end.
    if let Some(old) = existing_generation(log, n + 1) {
        fs::remove_file(&old)?;
        report.removed.push(old);
    }
    Ok(newest)
}

/// Compresses `path` to `path.gz` through a temp file, then removes
/// `path`. Returns (bytes in, bytes out).
pub fn gzip_file(path: &str) -> io::Result<(u64, u64)> {
    let dest = format!("{path}.gz");
    let tmp = format!("{path}.gz.opsd-tmp");
    let result = (|| {
        let mut input = fs::File::open(path)?;
        let out = fs::File::create(&tmp)?;
        let mut enc = GzEncoder::new(
            io::BufWriter::with_capacity(1 << 16, out),
            Compression::new(6),
        );
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            enc.write_all(&buf[..n])?;
        }
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        let written = out.metadata()?.len();
        Ok((total, written))
    })();
    match result {
        Ok(sizes) => {
            fs::rename(&tmp, &dest)?;
            fs::remove_file(path)?;
            Ok(sizes)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use flate2::read::GzDecoder;

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    fn cfg(dir: &Path, extra: &str) -> Config {
        let json = format!(
            r#"{{"paths":["{}/*.log"]{}}}"#,
            dir.display(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(",{extra}")
            }
        );
        let c: Config = serde_json::from_str(&json).unwrap();
        c.validate().unwrap();
        c
    }

    fn gunzip(p: &Path) -> String {
        let mut s = String::new();
        GzDecoder::new(fs::File::open(p).unwrap())
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_n_compressed_generations_and_drops_the_oldest() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), r#""rotate":2,"compress":true"#);
        let log = d.path().join("app.log");
        let mut st = State::default();
        for round in 1..=3 {
            fs::write(&log, format!("round {round}\n")).unwrap();
            let r = run(&c, at(2026, 1, round, 0), false, &mut st);
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            assert_eq!(r.rotated.len(), 1);
        }
        assert_eq!(names(d.path()), ["app.log.1.gz", "app.log.2.gz"]);
        assert_eq!(gunzip(&d.path().join("app.log.1.gz")), "round 3\n");
        assert_eq!(gunzip(&d.path().join("app.log.2.gz")), "round 2\n");
    }

    #[test]
    fn delaycompress_leaves_the_newest_plain() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(
            d.path(),
            r#""rotate":3,"compress":true,"delaycompress":true"#,
        );
        let log = d.path().join("app.log");
        let mut st = State::default();
        for round in 1..=2 {
            fs::write(&log, format!("round {round}\n")).unwrap();
            run(&c, at(2026, 1, round, 0), false, &mut st);
        }
        assert_eq!(names(d.path()), ["app.log.1", "app.log.2.gz"]);
        assert_eq!(
            fs::read_to_string(d.path().join("app.log.1")).unwrap(),
            "round 2\n"
        );
        assert_eq!(gunzip(&d.path().join("app.log.2.gz")), "round 1\n");
    }

    #[test]
    fn notifempty_size_and_create() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("empty.log"), "").unwrap();
        fs::write(d.path().join("small.log"), "x").unwrap();
        fs::write(d.path().join("big.log"), "y".repeat(2048)).unwrap();
        let c = cfg(d.path(), r#""notifempty":true,"size":"1k","create":true"#);
        let r = run(&c, at(2026, 1, 1, 0), false, &mut State::default());
        assert_eq!(r.rotated.len(), 1);
        assert_eq!(r.rotated[0].log, d.path().join("big.log").to_str().unwrap());
        assert_eq!(
            names(d.path()),
            ["big.log", "big.log.1", "empty.log", "small.log"]
        );
        assert_eq!(fs::metadata(d.path().join("big.log")).unwrap().len(), 0);
    }

    #[test]
    fn frequency_records_first_sight_then_rotates_next_day() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), r#""frequency":"daily""#);
        fs::write(d.path().join("a.log"), "a").unwrap();
        let mut st = State::default();
        let r = run(&c, at(2026, 3, 1, 10), false, &mut st);
        assert!(r.rotated.is_empty());
        let r = run(&c, at(2026, 3, 1, 23), false, &mut st);
        assert!(r.rotated.is_empty());
        let r = run(&c, at(2026, 3, 2, 0), false, &mut st);
        assert_eq!(r.rotated.len(), 1);
    }

    #[test]
    fn calendar_rules() {
        // 2026-03-01 is a Sunday.
        assert!(due(Frequency::Weekly, at(2026, 3, 7, 0), at(2026, 3, 8, 0)));
        assert!(!due(
            Frequency::Weekly,
            at(2026, 3, 2, 0),
            at(2026, 3, 7, 0)
        ));
        assert!(due(
            Frequency::Monthly,
            at(2026, 3, 31, 0),
            at(2026, 4, 1, 0)
        ));
        assert!(!due(
            Frequency::Yearly,
            at(2026, 1, 1, 0),
            at(2026, 12, 31, 0)
        ));
        assert!(!due(Frequency::Daily, at(2026, 3, 2, 0), at(2026, 3, 1, 0)));
    }

    #[test]
    fn missing_logs_are_errors_unless_missingok() {
        let d = tempfile::tempdir().unwrap();
        let r = run(
            &cfg(d.path(), ""),
            at(2026, 1, 1, 0),
            false,
            &mut State::default(),
        );
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].contains("missingok"));
        let r = run(
            &cfg(d.path(), r#""missingok":true"#),
            at(2026, 1, 1, 0),
            false,
            &mut State::default(),
        );
        assert!(r.errors.is_empty());
    }

    #[test]
    fn dry_run_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.log"), "a").unwrap();
        let r = run(
            &cfg(d.path(), r#""compress":true"#),
            at(2026, 1, 1, 0),
            true,
            &mut State::default(),
        );
        assert_eq!(r.rotated.len(), 1);
        assert_eq!(names(d.path()), ["a.log"]);
    }

    #[test]
    fn rotated_names_are_not_logs() {
        assert!(looks_rotated("/l/app.log.1"));
        assert!(looks_rotated("/l/app.log.12.gz"));
        assert!(!looks_rotated("/l/app.log"));
        assert!(!looks_rotated("/l/app.v2.log"));
    }
}
