//! Turning what the sandbox refused a program into the run's violations:
//! Landlock and a read-only mount tell only the program, so the run learns
//! of it from the program's own error output.

use super::{ProcessContext, Program};
use crate::grants::{Grants, confine, fs};
use std::path::{Path, PathBuf};

/// Names what the sandbox refused a program, from its own error output:
/// a line that says "Permission denied" (Landlock) or "Read-only file
/// system" (its view of the system) about a path the job's programs may
/// not touch. Landlock tells only the program; this is how the run
/// learns of it (and fails) even when the plugin ignores the exit status.
pub(super) fn note_refusals(
    ctx: &ProcessContext<'_>,
    program: &Program,
    cwd: &Path,
    stderr: &[u8],
) {
    let text = String::from_utf8_lossy(stderr);
    for line in text.lines().filter(|l| {
        [
            "Permission denied",
            "Operation not permitted",
            "Read-only file system",
        ]
        .iter()
        .any(|m| l.contains(m))
    }) {
        let writing = WRITE_WORDS.iter().any(|w| line.contains(w));
        let Some(path) = line
            .split(|c: char| c.is_whitespace() || "`'\"‘’,():;".contains(c))
            .filter(|t| t.len() > 1 && t.contains('/'))
            // "/usr/bin/touch: cannot touch ...": the program naming
            // itself.
            .filter(|t| !ctx.grants.exec.names(t) && Path::new(t) != program.path)
            .map(|t| lexically_absolute(cwd, t))
            .find(|p| !allowed_to_children(ctx.grants, p, writing))
        else {
            continue;
        };
        let path = path.display();
        ctx.violations.record(format!(
            "confined `{}` was refused {path}: its programs may touch only the job's fs grants ({}) and the system base; add a grant (or `system_paths = [...]` for reading) if the job needs it",
            program.name,
            fs::describe(&ctx.grants.fs)
        ));
        return;
    }
}

/// `path` from `cwd`, with `.` and `..` resolved as written (what a
/// program's message names, not what the file system holds now).
pub(super) fn lexically_absolute(cwd: &Path, path: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in cwd.join(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Words of a program's error that say it was changing a file, not
/// reading it (coreutils, tar, shells).
const WRITE_WORDS: &[&str] = &[
    "chang",
    "creat",
    "writ",
    "remov",
    "touch",
    "mkdir",
    "make",
    "move",
    "renam",
    "unlink",
    "truncat",
    "overwrit",
    "chmod",
    "chown",
    "setting times",
    "Read-only",
];

/// Whether a confined child may read (or, `writing`, change) `path`.
pub(super) fn allowed_to_children(g: &Grants, path: &Path, writing: bool) -> bool {
    let rw =
        g.fs.iter()
            .any(|f| f.access == fs::Access::ReadWrite && path.starts_with(&f.host));
    if writing {
        return rw || confine::SYSTEM_DEVICES.iter().any(|p| path.starts_with(p));
    }
    rw || g.fs.iter().any(|f| path.starts_with(&f.host))
        || g.children.system_paths.iter().any(|p| path.starts_with(p))
        || confine::SYSTEM_BASE.iter().any(|p| path.starts_with(p))
        || confine::SYSTEM_DEVICES.iter().any(|p| path.starts_with(p))
        || confine::SYSTEM_RANDOM.iter().any(|p| path.starts_with(p))
}

/// Fails the run if the program ran into its process cap: what it did
/// next (a shell's "Cannot fork") would not say which limit it was.
pub(super) fn note_cap(
    ctx: &ProcessContext<'_>,
    contained: &crate::grants::contain::Containment,
    program: &Program,
) {
    if contained.hit_cap() {
        ctx.violations.record(format!(
            "process limit: `{}` and what it started tried to run more than {} processes at once; raise grants.limits.processes if the job needs more",
            program.name, ctx.grants.limits.processes
        ));
    }
}
