//! The words of a crontab line: `NAME=value` assignments, `%` as cron
//! reads it, commands with no shell syntax, the paths a line names as
//! grants, and text made safe for the TOML printed.

use super::{Job, SH_ONLY};
use std::path::{Path, PathBuf};

/// Keeps each path once, drops one inside another (the outer one with
/// the stronger access stays), never grants a program's own file
/// writable, and leaves out what a job cannot be granted.
pub(super) fn tidy_fs(fs: &mut Vec<(String, bool)>, exec: &[String]) {
    fs.retain(|(p, _)| {
        p != "/"
            && !["/dev", "/proc", "/sys", "/run", "/tmp"]
                .iter()
                .any(|s| Path::new(p).starts_with(s))
    });
    fs.sort();
    let mut out: Vec<(String, bool)> = Vec::new();
    for (p, w) in fs.drain(..) {
        if let Some(outer) = out
            .iter_mut()
            .find(|(o, _)| Path::new(&p).starts_with(o) || Path::new(o).starts_with(&p))
        {
            if Path::new(&outer.0).starts_with(&p) {
                outer.0 = p.clone();
            }
            outer.1 |= w;
            continue;
        }
        out.push((p, w));
    }
    // A writable grant holding a granted program is refused at load (the
    // job could replace what runs): read-only there.
    for (p, w) in &mut out {
        if *w && exec.iter().any(|e| Path::new(e).starts_with(p.as_str())) {
            *w = false;
        }
    }
    *fs = out;
}

/// An absolute path a word names, as a grant: a directory it names
/// (read-only), a file it reads (that file alone, in `system_paths`), a
/// file it writes (its directory, read-write). Never the system base
/// (which programs read anyway), nothing that does not exist (a written
/// file may not, its directory must), and no directory directly under
/// `/` for a file: `> /srv/x` would grant all of `/srv`. What is not
/// granted lands in `left_out`, for a REVIEW line.
pub(super) fn paths_of(word: &str, write: bool, job: &mut Job) {
    let word = word.trim_matches(|c| c == '"' || c == '\'' || c == ';');
    let word = word.split_once('=').map_or(word, |(_, v)| v);
    if !word.starts_with('/') || word.contains('$') || word.contains('*') || word == "/" {
        return;
    }
    let p = PathBuf::from(word);
    let in_base = |p: &Path| {
        crate::grants::confine::SYSTEM_BASE
            .iter()
            .any(|b| p.starts_with(b))
            || ["/dev", "/proc", "/sys", "/run", "/tmp"]
                .iter()
                .any(|s| p.starts_with(s))
    };
    if in_base(&p) && !write {
        return;
    }
    let real = |p: &Path| p.canonicalize().ok().filter(|r| !in_base(r));
    if !write && p.is_file() {
        if let Some(r) = real(&p) {
            job.read_files.push(r.to_string_lossy().into_owned());
        }
        return;
    }
    let dir = if p.is_dir() {
        Some(p.clone())
    } else if write {
        p.parent()
            .filter(|d| d.is_dir() && d.components().count() > 2)
            .map(Path::to_owned)
    } else {
        None
    };
    match dir.as_deref().and_then(real) {
        Some(r) => job.fs.push((r.to_string_lossy().into_owned(), write)),
        None if dir.is_some() && !write => {}
        None => {
            if !job.left_out.iter().any(|l| l == word) {
                job.left_out.push(word.to_owned());
            }
        }
    }
}

/// `NAME=value` (crontab(5): spaces around `=` allowed; the value may be
/// quoted to keep spaces).
pub(super) fn assignment(line: &str) -> Option<(&str, String)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    if name.is_empty()
        || name.as_bytes()[0].is_ascii_digit()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let value = value.trim();
    let value = match (value.chars().next(), value.chars().last()) {
        (Some(q @ ('"' | '\'')), Some(e)) if value.len() >= 2 && q == e => {
            value[1..value.len() - 1].to_owned()
        }
        _ => value.to_owned(),
    };
    Some((name, value))
}

/// The first whitespace-separated word and what follows it.
pub(super) fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// crontab(5)'s `%`: the command ends at the first unescaped `%`; what
/// follows is standard input, each further unescaped `%` a newline, and
/// `\%` is a `%` (as Vixie cron's do_command.c reads it).
pub(super) fn percent(command: &str) -> (String, Option<String>) {
    let mut cmd = String::new();
    let mut chars = command.chars().peekable();
    let mut stdin = None;
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                cmd.push('%');
                chars.next();
            }
            '%' => {
                let mut input = String::new();
                let rest: String = chars.by_ref().collect();
                let mut it = rest.chars().peekable();
                while let Some(c) = it.next() {
                    match c {
                        '\\' if it.peek() == Some(&'%') => {
                            input.push('%');
                            it.next();
                        }
                        '%' => input.push('\n'),
                        c => input.push(c),
                    }
                }
                stdin = Some(input);
                break;
            }
            c => cmd.push(c),
        }
    }
    (cmd, stdin)
}

/// The words of a command with no shell syntax at all; none when the
/// shell would do anything but split it at spaces.
pub(super) fn simple_words(command: &str) -> Option<Vec<String>> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./:,@+=%".contains(&b);
    let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    if words.is_empty()
        || !words.iter().all(|w| w.bytes().all(plain))
        || assignment(&words[0]).is_some()
        || SH_ONLY.contains(&words[0].as_str())
    {
        return None;
    }
    Some(words)
}

/// Text for a comment: on one line, control characters escaped, so
/// nothing a crontab (or a file's name) holds can end the comment and
/// write TOML.
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A TOML basic string on one line (a newline as `\n`), so a REVIEW
/// comment above a key always sits next to it.
pub(super) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn bare_or_quoted(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        quoted(s)
    }
}
