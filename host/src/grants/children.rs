//! What a job's programs run as and may read besides its grants:
//! `user`/`group`, `system_paths`, `tmp`, and the `unix:` entries of
//! `net`. Parsed here with the problems they raise, and explained in
//! words with the rest of what confines a program.

use super::{Access, Grants, confine, process};
use crate::diag::{Lines, Problems};
use std::path::Path;
use toml::Spanned;

/// The `[job.grants]` keys about programs, as written.
pub(crate) struct RawChildren<'a> {
    pub user: Option<&'a Spanned<String>>,
    pub group: Option<&'a Spanned<String>>,
    pub system_paths: &'a [Spanned<String>],
    pub tmp: Option<&'a Spanned<String>>,
}

/// `net = ["unix:/path"]` entries: absolute paths only.
pub(crate) fn unix_grants(
    entries: &[Spanned<String>],
    lines: &Lines,
    job: &str,
    problems: &mut Problems,
) -> Vec<confine::UnixGrant> {
    let mut unix = Vec::new();
    for entry in entries {
        let path = Path::new(&entry.get_ref()["unix:".len()..]);
        if path.is_absolute() {
            unix.push(confine::UnixGrant {
                path: path.canonicalize().unwrap_or_else(|_| path.to_owned()),
            });
        } else {
            problems.push(
                lines.at(entry),
                Some(job),
                format!(
                    "net grant `{}`: a Unix socket is named by its absolute path, such as \"unix:/run/postgresql/.s.PGSQL.5432\"",
                    entry.get_ref()
                ),
            );
        }
    }
    unix
}

/// What the job's programs run as and may read besides the grants; the
/// fs grants and programs are needed to refuse a private /tmp that would
/// hide one of them.
pub(crate) fn from_raw(
    raw: &RawChildren<'_>,
    (mode, unix): (confine::Mode, Vec<confine::UnixGrant>),
    (fs, exec): (&[super::FsGrant], &process::ExecPolicy),
    lines: &Lines,
    job: &str,
    problems: &mut Problems,
) -> confine::ChildPolicy {
    let run_as = raw.user.and_then(|u| {
        confine::RunAs::lookup(u.get_ref(), raw.group.map(|g| g.get_ref().as_str()))
            .map_err(|e| problems.push(lines.at(u), Some(job), format!("grants.user: {e}")))
            .ok()
    });
    if let (None, Some(g)) = (&raw.user, &raw.group) {
        problems.push(
            lines.at(g),
            Some(job),
            "grants.group needs grants.user: name the user the programs run as",
        );
    }
    let mut system_paths = Vec::new();
    for p in raw.system_paths {
        let path = Path::new(p.get_ref());
        if path.is_absolute() {
            system_paths.push(path.to_owned());
        } else {
            problems.push(
                lines.at(p),
                Some(job),
                format!(
                    "system_paths entry `{}` must be absolute, such as \"/etc/postgresql-common\"",
                    p.get_ref()
                ),
            );
        }
    }
    let tmp = raw.tmp.and_then(|t| {
        let size = crate::diag::parse_size(t.get_ref())
            .map_err(|e| problems.push(lines.at(t), Some(job), format!("grants.tmp: {e}")))
            .ok()?;
        // The private /tmp covers the host's: nothing the job names
        // may live there.
        let hidden = fs
            .iter()
            .map(|g| g.host.clone())
            .chain(system_paths.iter().cloned())
            .chain(exec.programs.iter().map(|p| p.path.clone()))
            .find(|p| p.starts_with("/tmp"));
        match hidden {
            Some(p) => {
                problems.push(
                    lines.at(t),
                    Some(job),
                    format!(
                        "grants.tmp gives the job's programs a /tmp of their own, which would hide {}; move it out of /tmp or drop `tmp`",
                        p.display()
                    ),
                );
                None
            }
            None => Some(size),
        }
    });
    confine::ChildPolicy {
        mode,
        run_as,
        system_paths,
        unix,
        tmp,
    }
}

/// What the job's programs may do, in words, one line per kind.
pub(crate) fn explain(g: &Grants) -> Vec<String> {
    let support = confine::Support::get();
    let mut out = Vec::new();
    out.push(match (&g.children.run_as, support.root) {
        (Some(r), _) => format!(
            "run as user {} (uid {}, gid {}), with no capabilities and no way to gain any (no_new_privs)",
            r.user, r.uid, r.gid
        ),
        (None, true) => "run as root with no capabilities and no way to gain any (no_new_privs); set grants.user to run them as another user".into(),
        (None, false) => "run as opsd's own user, with no way to gain privileges (no_new_privs)".into(),
    });
    let mut reads: Vec<String> = vec!["the system base".into()];
    reads.extend(g.fs.iter().map(|g| g.host.display().to_string()));
    reads.extend(
        g.children
            .system_paths
            .iter()
            .map(|p| p.display().to_string()),
    );
    out.push(format!("read {}", reads.join(", ")));
    let writes: Vec<String> =
        g.fs.iter()
            .filter(|g| g.access == Access::ReadWrite)
            .map(|g| g.host.display().to_string())
            .collect();
    let mut writes = writes;
    if let Some(size) = g.children.tmp {
        writes.push(format!("a private /tmp of {} MiB", size >> 20));
    }
    out.push(if writes.is_empty() {
        "write nothing".into()
    } else {
        format!("write {} only", writes.join(", "))
    });
    out.push(format!(
        "run {} only (and what the kernel needs to start them)",
        g.exec.describe()
    ));
    let mut net = if g.net.is_empty() {
        "connect nowhere: no network at all".to_owned()
    } else {
        format!(
            "connect by TCP only to {} (UDP stays open, for DNS among others)",
            g.net.describe()
        )
    };
    if !g.children.unix.is_empty() {
        let unix: Vec<String> = g
            .children
            .unix
            .iter()
            .map(|u| u.path.display().to_string())
            .collect();
        net.push_str(&format!("; Unix sockets {}", unix.join(", ")));
    }
    out.push(net);
    out.push(
        "see and signal only processes they started (own PID namespace); no descriptor but stdin, stdout and stderr".into(),
    );
    let missing = support.missing();
    if !missing.is_empty() {
        out.push(match g.children.mode {
            confine::Mode::Strict => format!(
                "cannot start on this machine, which lacks {} (set `[sandbox] exec = \"best-effort\"` to run them with less)",
                missing.join("; ")
            ),
            confine::Mode::BestEffort => {
                format!("run with less on this machine (best-effort): it lacks {}", missing.join("; "))
            }
        });
    }
    out
}
