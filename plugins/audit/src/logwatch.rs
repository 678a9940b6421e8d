//! Counting log lines that match patterns, incrementally: each run reads
//! only what was written since the last one. A log is known by a hash of
//! its first bytes, not by its name, so when it is rotated
//! (`app.log` -> `app.log.1`, plain or gzipped, or copied and truncated)
//! the rest of the old file is read from where the last run stopped and
//! the new file from its start: no line missed, none counted twice.

use crate::findings::LogCursor;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};

/// Bytes hashed to recognise a file.
const HEAD: u64 = 256;

/// What one log contributed this run.
#[derive(Debug, Default, PartialEq)]
pub struct Scanned {
    /// Matches per pattern, in the order given.
    pub counts: Vec<u64>,
    pub lines: u64,
    pub bytes: u64,
    /// Files read, for the log (`app.log.1 from 1234`, `app.log`).
    pub sources: Vec<String>,
}

fn hash_head(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    format!("{:x}", h.finalize())
}

/// Reads a whole file, gunzipping `.gz` ones.
fn read_all(path: &str) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    if path.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The first `len` bytes of a file (decompressed for `.gz`).
fn head_of(path: &str, len: u64) -> Option<Vec<u8>> {
    if path.ends_with(".gz") {
        let mut data = read_all(path).ok()?;
        data.truncate(len as usize);
        return Some(data);
    }
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return None,
        }
    }
    buf.truncate(got);
    Some(buf)
}

fn same_file(path: &str, cur: &LogCursor) -> bool {
    cur.head_len > 0
        && head_of(path, cur.head_len)
            .is_some_and(|h| h.len() as u64 == cur.head_len && hash_head(&h) == cur.head)
}

/// Counts complete lines of `data` (up to its last newline) per pattern;
/// returns the bytes consumed.
fn count(data: &[u8], patterns: &[regex::Regex], scanned: &mut Scanned) -> u64 {
    let end = match data.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => return 0,
    };
    for line in data[..end].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        scanned.lines += 1;
        let text = String::from_utf8_lossy(line);
        for (i, p) in patterns.iter().enumerate() {
            if p.is_match(&text) {
                scanned.counts[i] += 1;
            }
        }
    }
    scanned.bytes += end as u64;
    end as u64
}

/// Where the previous file went: the first sibling named like a rotation
/// of `path` (`app.log.1`, `app.log-20261128`, `.gz` too) whose head is
/// the remembered one.
fn find_rotated(path: &str, cur: &LogCursor) -> Option<String> {
    let (dir, base) = path.rsplit_once('/')?;
    let dir = if dir.is_empty() { "/" } else { dir };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() > base.len() && n.starts_with(base))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| format!("{}/{n}", dir.trim_end_matches('/')))
        .find(|p| same_file(p, cur))
}

/// Reads what is new in `path` since `cur` and moves `cur` on.
pub fn scan(path: &str, cur: &mut LogCursor, patterns: &[regex::Regex]) -> Result<Scanned, String> {
    let mut out = Scanned {
        counts: vec![0; patterns.len()],
        ..Scanned::default()
    };
    let current_is_same = same_file(path, cur);
    if !current_is_same && cur.head_len > 0 {
        // Rotated (or replaced): finish the old file wherever it went.
        if let Some(old) = find_rotated(path, cur) {
            let data = read_all(&old).map_err(|e| format!("{old}: {e}"))?;
            let from = (cur.offset as usize).min(data.len());
            count(&data[from..], patterns, &mut out);
            out.sources.push(format!("{old} from byte {from}"));
        }
        *cur = LogCursor::default();
    }
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let len = f.metadata().map_err(|e| format!("{path}: {e}"))?.len();
    if len < cur.offset {
        // Truncated in place and no copy found with our head: start over.
        cur.offset = 0;
    }
    f.seek(SeekFrom::Start(cur.offset))
        .map_err(|e| format!("{path}: {e}"))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .map_err(|e| format!("{path}: {e}"))?;
    let from = cur.offset;
    cur.offset += count(&data, patterns, &mut out);
    out.sources.push(format!("{path} from byte {from}"));
    if cur.head_len < HEAD.min(len) {
        // Remember (or widen) the head while the file is young.
        if let Some(h) = head_of(path, HEAD.min(len)) {
            cur.head_len = h.len() as u64;
            cur.head = hash_head(&h);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pats() -> Vec<regex::Regex> {
        vec![regex::Regex::new("Authentication failed").unwrap()]
    }

    fn append(p: &std::path::Path, lines: &[&str]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    }

    #[test]
    fn counts_only_new_lines_across_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("agent.log");
        let path = log.to_str().unwrap();
        let mut cur = LogCursor::default();
        append(
            &log,
            &[
                "start of the log, long enough to be recognised later on",
                "Authentication failed for a",
                "ok",
            ],
        );
        assert_eq!(scan(path, &mut cur, &pats()).unwrap().counts, [1]);
        assert_eq!(scan(path, &mut cur, &pats()).unwrap().counts, [0]);
        // Written, then rotated by rename, then a new file.
        append(&log, &["Authentication failed for b"]);
        std::fs::rename(&log, d.path().join("agent.log.1")).unwrap();
        append(
            &log,
            &[
                "a new file begins",
                "Authentication failed for c",
                "Authentication failed for d",
            ],
        );
        let s = scan(path, &mut cur, &pats()).unwrap();
        assert_eq!(s.counts, [3], "{:?}", s.sources);
        // Gzipped later: nothing counted twice.
        assert_eq!(scan(path, &mut cur, &pats()).unwrap().counts, [0]);
    }

    #[test]
    fn copytruncate_and_partial_lines() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        let path = log.to_str().unwrap();
        let mut cur = LogCursor::default();
        append(
            &log,
            &[
                "first line of a copytruncated log",
                "Authentication failed 1",
            ],
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"Authentication failed (half")
            .unwrap();
        assert_eq!(scan(path, &mut cur, &pats()).unwrap().counts, [1]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b" a line)\n")
            .unwrap();
        // Copy with gzip, then truncate in place.
        let data = std::fs::read(&log).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&data).unwrap();
        std::fs::write(d.path().join("app.log.1.gz"), gz.finish().unwrap()).unwrap();
        std::fs::File::create(&log).unwrap();
        append(&log, &["Authentication failed 3"]);
        assert_eq!(scan(path, &mut cur, &pats()).unwrap().counts, [2]);
    }
}
