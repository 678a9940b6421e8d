//! SQLite files through the `sqlite3` program: VACUUM in place or VACUUM
//! INTO a copy, `PRAGMA optimize`, and freelist pages before and after.
//! A VACUUM that the file system has no room for is refused up front.

use crate::config::Sqlite;
use opsd_sdk::{Command, PluginError, files, human_bytes};

/// What one file's maintenance did.
pub struct Report {
    pub line: String,
    pub metrics: Vec<(String, f64, Option<&'static str>)>,
}

/// Free space a VACUUM needs: in place, SQLite writes a full copy to a
/// temporary file and journals the original, so up to twice the file;
/// INTO writes one copy.
pub fn needed_bytes(size: u64, into: bool) -> u64 {
    if into { size } else { size.saturating_mul(2) }
}

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", f)) => ("/", f),
        Some((d, f)) => (d, f),
        None => ("/", path),
    }
}

/// (page size, page count, freelist pages) of a file, read with sqlite3
/// run in the file's directory.
fn pragmas(dir: &str, file: &str) -> Result<(u64, u64, u64), PluginError> {
    let exit = Command::new("sqlite3")
        .cwd(dir)
        .args(["-batch", "-bail", "-noheader", "-list", file])
        .arg("PRAGMA page_size; PRAGMA page_count; PRAGMA freelist_count;")
        .run()
        .map_err(|e| PluginError::other("exec", format!("sqlite3 {file}: {}", e.text())))?;
    if !exit.success() {
        return Err(PluginError::other(
            "exec",
            format!("sqlite3 {file}: {}", exit.stderr_text()),
        ));
    }
    let text = String::from_utf8_lossy(&exit.stdout);
    let n: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    match n.as_slice() {
        [a, b, c] => Ok((*a, *b, *c)),
        _ => Err(PluginError::other(
            "exec",
            format!("sqlite3 {file}: unexpected output `{}`", text.trim()),
        )),
    }
}

/// Vacuums one file.
pub fn vacuum(s: &Sqlite, dry_run: bool) -> Result<Report, PluginError> {
    let (dir, file) = split(&s.path);
    let info = files::stat(&s.path).map_err(|e| PluginError::other("io", e))?;
    let (page, pages, free) = pragmas(dir, file)?;
    let need = needed_bytes(info.size, s.into.is_some()).saturating_add(s.reserve);
    if info.fs_available_bytes < need {
        return Err(PluginError::other(
            "no-space",
            format!(
                "{}: refused: VACUUM{} needs up to {} free (with the reserve) and the file system has {}; free space, or lower `reserve`",
                s.path,
                if s.into.is_some() { " INTO" } else { "" },
                human_bytes(need),
                human_bytes(info.fs_available_bytes)
            ),
        ));
    }
    let what = match &s.into {
        Some(into) => format!("VACUUM INTO {into}"),
        None => "VACUUM".to_string(),
    };
    if dry_run {
        return Ok(Report {
            line: format!(
                "{}: would {what} ({free} of {pages} pages free, {})",
                s.path,
                human_bytes(info.size)
            ),
            metrics: vec![(format!("{file}_freelist_pages"), free as f64, None)],
        });
    }
    let sql = match &s.into {
        Some(into) => format!("VACUUM INTO '{}';", into.replace('\'', "''")),
        None => "VACUUM;".to_string(),
    };
    let sql = if s.optimize {
        format!("{sql} PRAGMA optimize;")
    } else {
        sql
    };
    let exit = Command::new("sqlite3")
        .cwd(dir)
        .args(["-batch", "-bail", file])
        .arg(&sql)
        .run()
        .map_err(|e| PluginError::other("exec", format!("sqlite3 {file}: {}", e.text())))?;
    if !exit.success() {
        return Err(PluginError::other(
            "exec",
            format!("{what} of {}: {}", s.path, exit.stderr_text()),
        ));
    }
    let result_file = s.into.as_deref().unwrap_or(file);
    let (page_after, pages_after, free_after) = pragmas(dir, result_file)?;
    let size_before = page * pages;
    let size_after = page_after * pages_after;
    Ok(Report {
        line: format!(
            "{}: {what}; free pages {free} -> {free_after}, size {} -> {}",
            s.path,
            human_bytes(size_before),
            human_bytes(size_after)
        ),
        metrics: vec![
            (format!("{file}_freelist_pages_before"), free as f64, None),
            (
                format!("{file}_freelist_pages_after"),
                free_after as f64,
                None,
            ),
            (
                format!("{file}_bytes_before"),
                size_before as f64,
                Some("bytes"),
            ),
            (
                format!("{file}_bytes_after"),
                size_after as f64,
                Some("bytes"),
            ),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_needed() {
        assert_eq!(needed_bytes(100, false), 200);
        assert_eq!(needed_bytes(100, true), 100);
        assert_eq!(needed_bytes(u64::MAX, false), u64::MAX);
        assert_eq!(split("/data/app.db"), ("/data", "app.db"));
        assert_eq!(split("/app.db"), ("/", "app.db"));
    }
}
