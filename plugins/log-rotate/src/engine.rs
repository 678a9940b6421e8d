//! The rotation of one log set, step for step as logrotate 3.21 does it
//! (`rotateLogSet`): decide which logs are due, run `firstaction`, then per
//! log (or once for all, with `sharedscripts`) prerotate work and script,
//! the rename or copy, postrotate script and work, and `lastaction`.
//!
//! Following the same order matters beyond tidiness: it decides which
//! generation gets compressed when, which old file is removed, and what a
//! failure part way leaves behind. A failure leaves every byte of log data
//! on disk under some name.

use crate::conf::{LogSet, dirname};
use crate::dateext::DateFormat;
use crate::directives::{Compressor, Criterion, Options, Script};
use crate::state::{State, first_sight};
use crate::sys::{self, Io, Meta};
use crate::zone::{Local, Tm, Zone};
use chrono::{Datelike, NaiveDateTime, Timelike};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::fs;
use std::io::{self, Read, Write};
use std::time::SystemTime;

/// The run's "now", fixed at the start as logrotate fixes `nowSecs`,
/// with the zone every calendar decision is made in.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Wall-clock time in the job's time zone.
    pub local: NaiveDateTime,
    /// Whether that is daylight-saving time (`tm_isdst`).
    pub isdst: bool,
    /// Seconds since the Unix epoch.
    pub unix: i64,
    /// The job's zone, in which every calendar rule is decided.
    pub zone: Zone,
}

impl Now {
    /// `unix` seen from `zone`, as `localtime()` sees it.
    pub fn new(unix: i64, zone: Zone) -> Now {
        let at = zone.localtime(unix).unwrap_or(Local {
            wall: NaiveDateTime::default(),
            unix,
            isdst: false,
        });
        Now {
            local: at.wall,
            isdst: at.isdst,
            unix,
            zone,
        }
    }

    /// Now as a state entry holds it.
    pub fn as_local(&self) -> Local {
        Local {
            wall: self.local,
            unix: self.unix,
            isdst: self.isdst,
        }
    }

    /// When a log seen for the first time is recorded as last rotated.
    pub fn first_sight(&self) -> Local {
        first_sight(&self.as_local(), &self.zone)
    }
}

/// logrotate's `daysElapsed`: whole days between the local midnights of
/// two dates, each taken through mktime with its own DST flag, so the
/// week in which clocks go forward has a day of 23 hours that counts as
/// none (the division truncates), as real logrotate counts it.
fn days_elapsed(zone: &Zone, now: &Local, last: &Local) -> i64 {
    let midnight = |l: &Local| {
        zone.mktime_known(&Tm {
            hour: 0,
            min: 0,
            sec: 0,
            ..Tm::of(l.wall, Some(l.isdst))
        })
    };
    match (midnight(now), midnight(last)) {
        (Some(a), Some(b)) => (a.unix - b.unix) / 86_400,
        _ => (now.wall.date() - last.wall.date()).num_days(),
    }
}

/// One rotated log, for the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotated {
    pub log: String,
    /// Where its content went (the newest generation's name).
    pub to: String,
    pub bytes: u64,
}

/// What the run did and what went wrong, for the outcome.
#[derive(Debug, Default)]
pub struct Report {
    pub seen: usize,
    pub rotated: Vec<Rotated>,
    pub removed: Vec<String>,
    pub compressed_in: u64,
    pub compressed_out: u64,
    pub scripts_run: usize,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Why logs were left alone, and in a dry run what would be done.
    pub notes: Vec<String>,
}

/// Everything a rotation needs besides the log set.
pub struct Env<'a> {
    pub now: Now,
    /// The daemon runs as root: ownership is set, and logrotate's checks
    /// against directories others can write apply.
    pub root: bool,
    pub dry_run: bool,
    /// `logrotate -f`: every log is due, whatever its criteria (an empty
    /// one under notifempty still is not).
    pub force: bool,
    pub state: &'a mut State,
    pub report: &'a mut Report,
}

/// Per-log decision and the log's stat from before rotation.
#[derive(Default, Clone)]
struct Decision {
    rotate: bool,
    meta: Option<Meta>,
}

/// The names one rotation uses (logrotate's `struct logNames`).
#[derive(Debug, Default, Clone)]
struct Names {
    dir: String,
    base: String,
    /// The newest generation's final name (compressed unless delayed).
    first_rotated: String,
    /// The generation to remove once the rotation is done.
    dispose: Option<String>,
    /// Where the log is renamed (or copied) to.
    final_name: String,
}

impl Env<'_> {
    fn error(&mut self, msg: impl Into<String>) {
        self.report.errors.push(msg.into());
    }

    fn note(&mut self, msg: impl Into<String>) {
        self.report.notes.push(msg.into());
    }

    /// Runs a script with logrotate's arguments (`$1`, and `$2` for a
    /// non-shared postrotate). Returns true on failure.
    fn run_script(&mut self, what: &str, script: &Script, arg1: &str, arg2: Option<&str>) -> bool {
        if self.dry_run {
            self.note(format!("would run {what} script ({})", script.origin()));
            return false;
        }
        let (program, args) = match script {
            Script::Argv { argv, .. } => match argv.split_first() {
                Some((p, rest)) => (p.clone(), rest.to_vec()),
                None => return false,
            },
            Script::Text { body, .. } => match simple_command(body) {
                Some(words) if !words.is_empty() => (words[0].clone(), words[1..].to_vec()),
                Some(_) => return false,
                None => {
                    let mut args = vec![
                        "-c".to_owned(),
                        body.clone(),
                        "logrotate_script".to_owned(),
                        arg1.to_owned(),
                    ];
                    args.extend(arg2.map(str::to_owned));
                    ("sh".to_owned(), args)
                }
            },
        };
        self.report.scripts_run += 1;
        match sys::run_program(&program, &args, Io::Pipe, Io::Pipe) {
            Ok(exit) => {
                for line in exit.stdout.lines().chain(exit.stderr.lines()) {
                    opsd_sdk::info!("{what} script: {line}");
                }
                if exit.code == Some(0) {
                    false
                } else {
                    let how = match exit.code {
                        Some(c) => format!("exited with status {c}"),
                        None => "was killed by a signal".to_owned(),
                    };
                    let last = exit.stderr.lines().last().unwrap_or("").trim().to_owned();
                    self.error(format!(
                        "{what} script ({}) {how}{}",
                        script.origin(),
                        if last.is_empty() {
                            String::new()
                        } else {
                            format!(": {last}")
                        }
                    ));
                    true
                }
            }
            Err(why) => {
                let hint = if program == "sh" {
                    " (this script needs a shell: grant exec = [\"sh\"], or make it one plain command)"
                } else {
                    ""
                };
                self.error(format!(
                    "{what} script ({}) could not run: {why}{hint}",
                    script.origin()
                ));
                true
            }
        }
    }

    /// Renames, or says what it would rename in a dry run.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        if self.dry_run {
            if fs::symlink_metadata(from).is_ok() {
                self.note(format!("would rename {from} to {to}"));
            }
            return Ok(());
        }
        fs::rename(from, to)
    }

    /// logrotate's `removeLogFile`: `preremove`, then unlink. `old` says
    /// the file is an old generation (not the source of a compression),
    /// for the report. True on failure.
    fn remove_log_file(&mut self, name: &str, set: &LogSet, old: bool) -> bool {
        if self.dry_run {
            self.note(format!("would remove {name}"));
            return false;
        }
        if let Some(script) = &set.opts.preremove
            && self.run_script("preremove", script, name, None)
        {
            self.error(format!(
                "error running preremove script for {name} of '{}'. Not removing this file.",
                set.pattern.trim()
            ));
            return true;
        }
        match fs::remove_file(name) {
            Ok(()) => {
                if old {
                    self.report.removed.push(name.to_owned());
                }
                false
            }
            Err(e) => {
                self.error(format!("Failed to remove old log {name}: {e}"));
                true
            }
        }
    }

    /// logrotate's `createOutputFile`: a new file with the given mode and
    /// owner; an existing file in the way is renamed to
    /// `NAME-YYYYMMDDHH.backup`, never overwritten.
    fn create_output_file(
        &mut self,
        path: &str,
        mode: u32,
        owner: Option<String>,
        group: Option<String>,
    ) -> Option<fs::File> {
        let mut file = None;
        for attempt in 0..2 {
            match fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(f) => {
                    file = Some(f);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt == 0 => {
                    let backup = format!("{path}{}.backup", self.now.local.format("-%Y%m%d%H"));
                    self.report.warnings.push(format!(
                        "destination {path} already exists, renaming to {backup}"
                    ));
                    if let Err(e) = fs::rename(path, &backup) {
                        self.error(format!(
                            "error renaming already existing output file {path} to {backup}: {e}"
                        ));
                        return None;
                    }
                }
                Err(e) => {
                    self.error(format!("error creating output file {path}: {e}"));
                    return None;
                }
            }
        }
        let file = file?;
        if self.root
            && (owner.is_some() || group.is_some())
            && let Err(e) = sys::set_owner(path, owner.as_deref(), group.as_deref())
        {
            self.error(format!(
                "error setting owner of {path} to {}:{}: {e}",
                owner.unwrap_or_default(),
                group.unwrap_or_default()
            ));
            return None;
        }
        if let Err(e) = sys::set_mode(path, mode & 0o7777) {
            self.error(format!("error setting mode of {path}: {e}"));
            return None;
        }
        Some(file)
    }

    /// logrotate's `compressLogFile`: `NAME` becomes `NAME.gz` (or the
    /// configured extension) with the mode, owner and times of `sb`, then
    /// `NAME` is removed. True on failure.
    fn compress_file(&mut self, name: &str, set: &LogSet, sb: &Meta) -> bool {
        if self.dry_run {
            self.note(format!("would compress {name}"));
            return false;
        }
        let opts = &set.opts;
        if let Err(e) = open_check(name, opts) {
            self.error(format!("unable to open {name} for compression: {e}"));
            return true;
        }
        let dest = format!("{name}{}", opts.compress_ext());
        let Some(mut out) = self.create_output_file(
            &dest,
            sb.mode,
            Some(sb.uid.to_string()),
            Some(sb.gid.to_string()),
        ) else {
            return true;
        };
        let result = match opts.compressor() {
            Compressor::BuiltinGzip(level) => {
                gzip(name, &mut out, level).map_err(|e| e.to_string())
            }
            Compressor::Program { program, args } => {
                match sys::run_program(&program, &args, Io::File(name), Io::File(&dest)) {
                    Ok(exit) if exit.code == Some(0) => fs::metadata(name)
                        .map(|m| m.len())
                        .map_err(|e| e.to_string()),
                    Ok(exit) => Err(format!(
                        "{program} exited with {}: {}",
                        exit.code
                            .map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
                        exit.stderr.trim()
                    )),
                    Err(e) => Err(e),
                }
            }
        };
        let bytes_in = match result {
            Ok(n) => n,
            Err(e) => {
                self.error(format!("failed to compress log {name}: {e}"));
                let _ = fs::remove_file(&dest);
                return true;
            }
        };
        let _ = out.sync_all();
        let times = fs::FileTimes::new()
            .set_accessed(sb.atime)
            .set_modified(sb.mtime);
        if let Err(e) = out.set_times(times) {
            self.report
                .warnings
                .push(format!("cannot keep the times of {name} on {dest}: {e}"));
        }
        self.report.compressed_in += bytes_in;
        self.report.compressed_out += out.metadata().map(|m| m.len()).unwrap_or(0);
        drop(out);
        self.remove_log_file(name, set, false)
    }

    /// logrotate's `copyTruncate`: copy the log to `save` (unless
    /// `skip_copy`), then truncate it in place for `copytruncate`. True on
    /// failure.
    fn copy_truncate(
        &mut self,
        curr: &str,
        save: &str,
        sb: &Meta,
        opts: &Options,
        skip_copy: bool,
    ) -> bool {
        if self.dry_run {
            if !skip_copy {
                self.note(format!("would copy {curr} to {save}"));
            }
            if opts.copytruncate {
                self.note(format!("would truncate {curr}"));
            }
            return false;
        }
        if let Err(e) = open_check(curr, opts) {
            self.error(format!("error opening {curr}: {e}"));
            return true;
        }
        let writable = opts.copytruncate || !opts.copy;
        let mut src = match fs::OpenOptions::new().read(true).write(writable).open(curr) {
            Ok(f) => f,
            Err(e) => {
                self.error(format!("error opening {curr}: {e}"));
                return true;
            }
        };
        if !skip_copy {
            let Some(mut dst) = self.create_output_file(
                save,
                sb.mode,
                Some(sb.uid.to_string()),
                Some(sb.gid.to_string()),
            ) else {
                return true;
            };
            if let Err(e) = io::copy(&mut src, &mut dst).and_then(|_| dst.sync_all()) {
                self.error(format!("error copying {curr} to {save}: {e}"));
                let _ = fs::remove_file(save);
                return true;
            }
        }
        if opts.copytruncate
            && let Err(e) = src.set_len(0)
        {
            self.error(format!("error truncating {curr}: {e}"));
            return true;
        }
        false
    }
}

/// Rotates one log set. Returns true when anything in it failed.
pub fn rotate_set(set: &LogSet, env: &mut Env<'_>) -> bool {
    let opts = &set.opts;
    let n = set.files.len();
    if n == 0 {
        return false;
    }
    let mut has_errors = false;
    let mut log_errors = vec![false; n];
    let mut decisions = vec![Decision::default(); n];
    for i in 0..n {
        let (err, d) = find_need_rotating(set, i, env);
        log_errors[i] = err;
        has_errors |= err;
        decisions[i] = d;
    }
    env.report.seen += n;
    // Every log of the set gets a state entry, even one that is missing,
    // as in logrotate.
    for file in &set.files {
        env.state.entry(file, env.now.first_sight());
    }
    let num_rotated = decisions.iter().filter(|d| d.rotate).count();
    let pattern = set.pattern.as_str();

    if let Some(first) = &opts.firstaction
        && num_rotated > 0
        && env.run_script("firstaction", first, pattern, None)
    {
        env.error(format!(
            "error running first action script for {}",
            pattern.trim()
        ));
        // A failed firstaction stops the whole set.
        return true;
    }

    let shared = opts.sharedscripts;
    let mut names = vec![Names::default(); n];
    let groups: Vec<Vec<usize>> = if shared {
        vec![(0..n).collect()]
    } else {
        (0..n).map(|i| vec![i]).collect()
    };
    for group in groups {
        let j = group[0];
        for &i in &group {
            let err = prerotate_single(set, i, &decisions[i], &mut names[i], env);
            log_errors[i] |= err;
            has_errors |= err;
        }
        let skip = |log_errors: &[bool], has_errors: bool| {
            if shared {
                has_errors
            } else {
                log_errors[j] || !decisions[j].rotate
            }
        };
        if let Some(pre) = &opts.prerotate
            && !skip(&log_errors, has_errors)
            && num_rotated > 0
        {
            let arg = if shared { pattern } else { &set.files[j] };
            if env.run_script("prerotate", pre, arg, None) {
                env.error(script_failed("prerotate", set, j));
                log_errors[j] = true;
                has_errors = true;
            }
        }
        for &i in &group {
            let blocked = if shared { has_errors } else { log_errors[i] };
            if !blocked {
                let err = rotate_single(set, i, &decisions[i], &mut names[i], env);
                log_errors[i] |= err;
                has_errors |= err;
            }
        }
        if let Some(post) = &opts.postrotate
            && !skip(&log_errors, has_errors)
            && num_rotated > 0
        {
            let (arg1, arg2) = if shared {
                (pattern, None)
            } else {
                (set.files[j].as_str(), Some(names[j].final_name.as_str()))
            };
            if env.run_script("postrotate", post, arg1, arg2) {
                env.error(script_failed("postrotate", set, j));
                log_errors[j] = true;
                has_errors = true;
            }
        }
        for &i in &group {
            let blocked = if shared { has_errors } else { log_errors[i] };
            if !blocked {
                let err = postrotate_single(set, i, &decisions[i], &names[i], env);
                log_errors[i] |= err;
                has_errors |= err;
            }
        }
    }
    if let Some(last) = &opts.lastaction
        && num_rotated > 0
        && env.run_script("lastaction", last, pattern, None)
    {
        env.error(format!(
            "error running last action script for {}",
            pattern.trim()
        ));
        has_errors = true;
    }
    has_errors
}

/// logrotate's message for a failed pre- or postrotate script of log `j`.
fn script_failed(what: &str, set: &LogSet, j: usize) -> String {
    let pattern = set.pattern.trim();
    if set.opts.sharedscripts {
        format!("error running shared {what} script for '{pattern}'")
    } else {
        format!(
            "error running non-shared {what} script for {} of '{pattern}'",
            set.files[j]
        )
    }
}

/// logrotate's `findNeedRotating`: (failed, decision).
fn find_need_rotating(set: &LogSet, i: usize, env: &mut Env<'_>) -> (bool, Decision) {
    let opts = &set.opts;
    let file = &set.files[i];
    let none = Decision::default();
    if env.root && !opts.su {
        let dir = dirname(file);
        match sys::stat(&dir) {
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound || !opts.missingok {
                    env.error(format!("stat of {dir} failed: {e}"));
                    return (true, none);
                }
                return (false, none);
            }
            Ok(m) => {
                if (m.gid != 0 && m.mode & 0o020 != 0) || m.mode & 0o002 != 0 {
                    env.error(format!(
                        "skipping \"{file}\" because parent directory has insecure permissions (It's world writable or writable by group which is not \"root\") Set \"su\" directive in config file to tell logrotate which user/group should be used for rotation."
                    ));
                    return (true, none);
                }
            }
        }
    }
    let sb = match sys::lstat(file) {
        Ok(m) => m,
        Err(e) => {
            if opts.missingok && e.kind() == io::ErrorKind::NotFound {
                env.note(format!("{file} does not exist (missingok)"));
                return (false, none);
            }
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (add missingok if it may be absent)"
            } else {
                ""
            };
            env.error(format!("stat of {file} failed: {e}{hint}"));
            return (true, none);
        }
    };
    let now = env.now;
    let entry = env.state.entry(file, now.first_sight());
    entry.used = true;
    let last_at = entry.last_rotated;
    let last = last_at.wall;
    if sb.is_symlink {
        env.note(format!(
            "{file} is a symbolic link; rotating links is not allowed, to avoid security issues"
        ));
        return (false, none);
    }
    if !opts.allowhardlink && sb.nlink != 1 {
        env.note(format!(
            "{file} has {} hard links; rotation of files with multiple hard links is not allowed without allowhardlink",
            sb.nlink
        ));
        return (false, none);
    }
    let same_hour = (last.year(), last.month(), last.day(), last.hour())
        == (
            now.local.year(),
            now.local.month(),
            now.local.day(),
            now.local.hour(),
        );
    let mut rotate;
    let mut why = String::new();
    // `logrotate -f` first, as in findNeedRotating.
    if env.force || (opts.maxsize > 0 && sb.size > opts.maxsize) {
        rotate = true;
    } else if let Criterion::Size(threshold) = opts.criterion {
        rotate = sb.size >= threshold;
        if !rotate {
            why = format!("{} bytes is below the size threshold {threshold}", sb.size);
        }
    } else if opts.criterion == Criterion::EveryRun {
        rotate = true;
    } else if last_at.unix - now.unix > 25 * 3600 {
        // Real hours (mktime of both), so across a fall-back night 24.5
        // hours on the clock can be 25.5 and force the rotation.
        env.report.warnings.push(format!(
            "log {file} last rotated in the future ({last}) -- rotation forced"
        ));
        rotate = true;
    } else if !same_hour {
        let days = days_elapsed(&now.zone, &now.as_local(), &last_at);
        rotate = match opts.criterion {
            Criterion::Weekly(weekday) => {
                days >= 7 || (days >= 1 && now.local.weekday().num_days_from_sunday() == weekday)
            }
            Criterion::Hourly => true,
            Criterion::Daily => {
                (now.local.year(), now.local.month(), now.local.day())
                    != (last.year(), last.month(), last.day())
            }
            Criterion::Monthly => {
                (now.local.year(), now.local.month()) != (last.year(), last.month())
            }
            Criterion::Yearly => now.local.year() != last.year(),
            Criterion::Size(_) | Criterion::EveryRun => false,
        };
        if !rotate {
            why = format!("last rotated {last}; not due yet");
        }
        if opts.minsize > 0 && sb.size < opts.minsize {
            rotate = false;
            why = format!("{} bytes is below minsize {}", sb.size, opts.minsize);
        }
        if opts.minage > 0 && (opts.minage as i64) * 86_400 >= now.unix - unix_secs(sb.mtime) {
            rotate = false;
            why = format!("younger than minage {} days", opts.minage);
        }
    } else {
        rotate = false;
        why = format!("already rotated this hour ({last})");
    }
    if rotate && !opts.ifempty && sb.size == 0 {
        rotate = false;
        why = "empty (notifempty)".to_owned();
    }
    if !rotate {
        env.note(format!("{file}: {why}"));
    }
    (
        false,
        Decision {
            rotate,
            meta: Some(sb),
        },
    )
}

/// logrotate's `prerotateSingleLog`: works out the names, compresses the
/// delayed generation, shifts numbered generations (or prunes dated
/// ones). True on failure.
fn prerotate_single(
    set: &LogSet,
    i: usize,
    d: &Decision,
    names: &mut Names,
    env: &mut Env<'_>,
) -> bool {
    if !d.rotate {
        return false;
    }
    let opts = &set.opts;
    let file = &set.files[i];
    let mut has_errors = false;
    let rotate_count: i64 = if opts.rotate != 0 { opts.rotate } else { 1 };
    let compext = if opts.compress {
        opts.compress_ext()
    } else {
        String::new()
    };
    let now = env.now;
    env.state.entry(file, now.first_sight()).last_rotated = now.as_local();

    let log_dir = dirname(file);
    names.dir = match &opts.olddir {
        Some(o) if o.starts_with('/') => o.clone(),
        Some(o) => format!("{log_dir}/{o}"),
        None => log_dir,
    };
    names.base = file.rsplit('/').next().unwrap_or(file).to_owned();
    let mut fileext = String::new();
    if let Some(add) = &opts.addextension {
        if let Some(stripped) = names.base.strip_suffix(add.as_str()) {
            names.base = stripped.to_owned();
        }
        fileext = add.clone();
    }
    if let Some(ext) = &opts.extension
        && let Some(stripped) = names.base.strip_suffix(ext.as_str())
    {
        fileext = ext.clone();
        names.base = stripped.to_owned();
    }

    // The date used for dateext names, moved as logrotate moves its
    // `struct tm`: yesterday is noon of the day before with today's DST
    // flag, an hour ago is one off the hour with the flag it has then,
    // each through mktime. Across a DST change that is an hour off what
    // the clock said (03:30 CEST an hour ago is 01:30 CET), as in
    // logrotate.
    let mut when = now.as_local();
    if opts.dateyesterday {
        let noon = Tm {
            hour: 12,
            ..Tm::of(when.wall, Some(when.isdst))
        };
        let noon = Tm {
            mday: noon.mday - 1,
            ..noon
        };
        when = now.zone.mktime_known(&noon).unwrap_or(when);
    }
    if opts.datehourago {
        let tm = Tm::of(when.wall, Some(when.isdst));
        let ago = Tm {
            hour: tm.hour - 1,
            ..tm
        };
        when = now.zone.mktime_known(&ago).unwrap_or(when);
    }
    let fmt = match DateFormat::new(
        opts.dateformat.as_deref(),
        opts.criterion == Criterion::Hourly,
    ) {
        Ok(f) => f,
        Err(e) => {
            env.error(e);
            return true;
        }
    };
    let dext = fmt.render(when.wall, when.unix);
    let prefix_len = names.dir.len() + 1 + names.base.len();
    let sort = |paths: &mut Vec<String>| {
        if fmt.sort_by_date {
            paths.sort_by_key(|p| fmt.sort_key(&p[prefix_len.min(p.len())..], &now.zone));
        }
    };

    // First compress the generation whose compression was delayed.
    if opts.compress && opts.delaycompress {
        if opts.dateext {
            let pattern = format!("{}/{}{}{}", names.dir, names.base, fmt.glob, fileext);
            let mut found = glob_paths(&pattern);
            sort(&mut found);
            for old in found {
                if has_errors {
                    break;
                }
                match sys::stat(&old) {
                    Ok(sbprev) => has_errors = env.compress_file(&old, set, &sbprev),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => env.error(format!("cannot stat {old}: {e}")),
                }
            }
        } else {
            let old = format!("{}/{}.{}{}", names.dir, names.base, opts.start, fileext);
            match sys::stat(&old) {
                Ok(sbprev) => has_errors = env.compress_file(&old, set, &sbprev),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => env.error(format!("cannot stat {old}: {e}")),
            }
        }
    }

    if opts.dateext {
        let pattern = format!(
            "{}/{}{}{}{}",
            names.dir, names.base, fmt.glob, fileext, compext
        );
        let mut found = glob_paths(&pattern);
        sort(&mut found);
        // Keep `rotate_count` including the one about to be made: drop the
        // oldest beyond that, and any older than maxage. The last one
        // picked is removed after the rotation, the others now.
        let count = found.len();
        let keep = if rotate_count < 0 {
            usize::MAX
        } else {
            rotate_count as usize
        };
        let mut pending: Option<String> = None;
        for (idx, old) in found.iter().enumerate() {
            let Ok(m) = sys::stat(old) else { continue };
            let by_count = count >= keep && idx <= count - keep;
            let by_age = opts.maxage > 0 && age_days(now.unix, m.mtime) > opts.maxage as f64;
            if by_count || by_age {
                if let Some(prev) = pending.take()
                    && !has_errors
                {
                    has_errors = env.remove_log_file(&prev, set, true);
                }
                pending = Some(old.clone());
            }
        }
        names.dispose = pending;
        names.first_rotated = format!(
            "{}/{}{}{}{}",
            names.dir,
            names.base,
            dext,
            fileext,
            if opts.delaycompress { "" } else { &compext }
        );
    } else {
        let mut rotate_count = rotate_count;
        if rotate_count == -1 {
            rotate_count = find_last_rotated(&names.dir, &names.base, &fileext, &compext);
        }
        let gen_name = |n: i64| format!("{}/{}.{}{}{}", names.dir, names.base, n, fileext, compext);
        let start = opts.start as i64;
        let mut old = gen_name(start + rotate_count);
        if opts.rotate != -1 {
            names.dispose = Some(old.clone());
        }
        names.first_rotated = format!(
            "{}/{}.{}{}{}",
            names.dir,
            names.base,
            start,
            fileext,
            if opts.delaycompress { "" } else { &compext }
        );
        let mut idx = start + rotate_count - 1;
        while idx >= start && !has_errors {
            let new = old;
            old = gen_name(idx);
            idx -= 1;
            if opts.maxage > 0 {
                match sys::stat(&old) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        env.error(format!("cannot stat {old}: {e}"));
                        has_errors = true;
                        continue;
                    }
                    Ok(m) => {
                        if age_days(now.unix, m.mtime) > opts.maxage as f64 {
                            has_errors = env.remove_log_file(&old, set, true);
                            continue;
                        }
                    }
                }
            }
            match env.rename(&old, &new) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    env.error(format!("error renaming {old} to {new}: {e}"));
                    has_errors = true;
                }
            }
        }
    }

    if opts.dateext {
        names.final_name = format!("{}/{}{}{}", names.dir, names.base, dext, fileext);
        let dest = format!("{}{}", names.final_name, compext);
        if fs::symlink_metadata(&dest).is_ok() {
            env.error(format!(
                "destination {} already exists, skipping rotation",
                names.first_rotated
            ));
            has_errors = true;
        }
    } else {
        names.final_name = format!("{}/{}.{}{}", names.dir, names.base, opts.start, fileext);
    }
    if let Some(dispose) = &names.dispose
        && fs::symlink_metadata(dispose).is_err()
    {
        names.dispose = None;
    }
    has_errors
}

/// logrotate's `rotateSingleLog`: the rename (or copy) and `create`.
fn rotate_single(
    set: &LogSet,
    i: usize,
    d: &Decision,
    names: &mut Names,
    env: &mut Env<'_>,
) -> bool {
    if !d.rotate {
        return false;
    }
    let Some(sb) = &d.meta else { return false };
    let opts = &set.opts;
    let file = &set.files[i];
    let mut has_errors = false;
    let copying = opts.copytruncate || opts.copy;
    if !copying {
        let target = if opts.renamecopy {
            format!("{file}.tmp")
        } else {
            names.final_name.clone()
        };
        if let Err(e) = env.rename(file, &target) {
            env.error(format!("failed to rename {file} to {target}: {e}"));
            has_errors = true;
        }
        if opts.rotate == 0 {
            let ext = if opts.compress && !opts.delaycompress {
                opts.compress_ext()
            } else {
                String::new()
            };
            names.dispose = Some(format!("{}{ext}", names.final_name));
        }
    }
    if !has_errors
        && !copying
        && let Some(create) = &opts.create
    {
        let mode = create.mode.unwrap_or(sb.mode & 0o777);
        let owner = create.owner.clone().or_else(|| Some(sb.uid.to_string()));
        let group = create.group.clone().or_else(|| Some(sb.gid.to_string()));
        if env.dry_run {
            env.note(format!("would create {file} with mode {mode:04o}"));
        } else if env.create_output_file(file, mode, owner, group).is_none() {
            has_errors = true;
        }
    }
    if !has_errors && copying && !opts.renamecopy {
        has_errors = env.copy_truncate(file, &names.final_name, sb, opts, opts.rotate == 0);
    }
    if !has_errors {
        let to = if opts.compress && !opts.delaycompress {
            format!("{}{}", names.final_name, opts.compress_ext())
        } else {
            names.final_name.clone()
        };
        env.report.rotated.push(Rotated {
            log: file.clone(),
            to,
            bytes: sb.size,
        });
    }
    has_errors
}

/// logrotate's `postrotateSingleLog`: renamecopy's copy, compression and
/// removal of the generation that fell off the end.
fn postrotate_single(
    set: &LogSet,
    i: usize,
    d: &Decision,
    names: &Names,
    env: &mut Env<'_>,
) -> bool {
    if !d.rotate {
        return false;
    }
    let Some(sb) = &d.meta else { return false };
    let opts = &set.opts;
    let file = &set.files[i];
    let mut has_errors = false;
    if opts.renamecopy {
        let tmp = format!("{file}.tmp");
        has_errors = env.copy_truncate(&tmp, &names.final_name, sb, opts, false);
        if !has_errors && !env.dry_run {
            let _ = fs::remove_file(&tmp);
        }
    }
    if !has_errors && opts.compress && !opts.delaycompress {
        has_errors = env.compress_file(&names.final_name, set, sb);
    }
    if !has_errors && let Some(dispose) = &names.dispose {
        has_errors = env.remove_log_file(dispose, set, true);
    }
    has_errors
}

/// The highest generation number present, for `rotate -1`.
fn find_last_rotated(dir: &str, base: &str, fileext: &str, compext: &str) -> i64 {
    let pattern = format!("{dir}/{base}.*{fileext}{compext}");
    let prefix = dir.len() + 1 + base.len() + 1;
    let suffix = fileext.len() + compext.len();
    glob_paths(&pattern)
        .iter()
        .filter(|p| p.len() > prefix + suffix)
        .filter_map(|p| p[prefix..p.len() - suffix].parse::<i64>().ok())
        .fold(0, i64::max)
}

/// Paths matching a glob, sorted; nothing for a bad pattern.
fn glob_paths(pattern: &str) -> Vec<String> {
    crate::conf::glob(pattern).unwrap_or_default()
}

/// What logrotate's `open_logfile` refuses: not a regular file, or a file
/// with other hard links (unless allowed).
fn open_check(path: &str, opts: &Options) -> io::Result<()> {
    let m = sys::lstat(path)?;
    if !m.is_file || (m.nlink != 1 && !opts.allowhardlink) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Operation not supported (not a regular file, or hard-linked)",
        ));
    }
    Ok(())
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn age_days(now_unix: i64, mtime: SystemTime) -> f64 {
    (now_unix - unix_secs(mtime)) as f64 / 86_400.0
}

/// gzip `src` into `out` at `level`; returns the bytes read.
fn gzip(src: &str, out: &mut fs::File, level: u32) -> io::Result<u64> {
    let mut input = fs::File::open(src)?;
    let mut enc = GzEncoder::new(
        io::BufWriter::with_capacity(1 << 16, out),
        Compression::new(level),
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
    enc.finish()?.flush()?;
    Ok(total)
}

/// A script that is one plain command (no shell syntax) as its words;
/// None when it needs a shell. Empty scripts are `Some([])`.
pub fn simple_command(body: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match lines.as_slice() {
        [] => Some(Vec::new()),
        [line] => {
            let shell_syntax = line.chars().any(|c| {
                matches!(
                    c,
                    '|' | '&'
                        | ';'
                        | '<'
                        | '>'
                        | '('
                        | ')'
                        | '$'
                        | '`'
                        | '\\'
                        | '"'
                        | '\''
                        | '*'
                        | '?'
                        | '['
                        | ']'
                        | '#'
                        | '~'
                        | '='
                        | '{'
                        | '}'
                        | '!'
                )
            });
            if shell_syntax {
                None
            } else {
                Some(line.split_whitespace().map(str::to_owned).collect())
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_need_no_shell() {
        assert_eq!(
            simple_command("\n   /usr/bin/systemctl reload nginx\n").unwrap(),
            ["/usr/bin/systemctl", "reload", "nginx"]
        );
        assert!(simple_command("invoke-rc.d rsyslog rotate > /dev/null").is_none());
        assert!(simple_command("a\nb").is_none());
        assert!(simple_command("kill -HUP $(cat /run/x.pid)").is_none());
        assert_eq!(
            simple_command("  # nothing\n").unwrap(),
            Vec::<String>::new()
        );
    }
}
