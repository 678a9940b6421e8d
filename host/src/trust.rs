//! Whose files opsd acts on. A plugin file chooses the code that runs
//! with a job's grants, the config chooses the grants, the data
//! directory holds the compile cache: whoever may write any of them, or
//! any directory above them, is as good as root. As cron refuses a
//! crontab others may write and sshd's StrictModes refuses such keys,
//! opsd uses them only when they and every directory above are owned by
//! root or opsd's own user and writable by no one else (a root-owned
//! sticky directory such as `/tmp` is fine: no one may replace another's
//! entry there).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why `path` (a file or directory opsd is about to use) could be chosen
/// by someone else, naming the culprit and the command that fixes it.
pub fn check(path: &Path) -> Result<(), String> {
    check_as(path, &Trusted::default())
}

/// Who else may own or write a file without being able to choose more
/// than they already can.
#[derive(Debug, Default)]
pub struct Trusted {
    /// A job's `user`: a program only it runs may be its own.
    pub uid: Option<u32>,
    /// Groups as good as root that may write (Debian's `staff`, which
    /// owns `/usr/local` on older installs, and root's own group).
    pub groups: Vec<u32>,
}

impl Trusted {
    /// For a program a job runs (as `run_as`, when it names a user).
    pub fn program(run_as: Option<u32>) -> Trusted {
        Trusted {
            uid: run_as,
            groups: Trusted::program_groups(),
        }
    }

    /// The groups a program's directories may be writable by: root and
    /// `staff` when it exists. A lookup reads /etc/group through NSS, so a
    /// caller checking many jobs looks them up once.
    pub fn program_groups() -> Vec<u32> {
        let mut groups = vec![0];
        // SAFETY: getgrnam returns a pointer into static storage or null;
        // the gid is copied out at once (config load is single-threaded
        // with respect to group lookups).
        let staff = unsafe { libc::getgrnam(c"staff".as_ptr()) };
        if !staff.is_null() {
            // SAFETY: non-null, points at a struct group.
            groups.push(unsafe { (*staff).gr_gid });
        }
        groups
    }
}

/// [`check`] with more owners and writing groups allowed.
pub fn check_as(path: &Path, trusted: &Trusted) -> Result<(), String> {
    let canonical = nearest_existing(path)?;
    for p in canonical.ancestors() {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        judge(p, &m, trusted)?;
    }
    Ok(())
}

/// Checks the plugin directory: like [`check`], and the directory itself
/// writable by no one else even when sticky (in a sticky directory anyone
/// may still add a file, or a link to one, and name a plugin).
pub fn check_plugin_dir(dir: &Path) -> Result<(), String> {
    check(dir)?;
    let m = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} may be written by others (mode {:o}), and anyone who can add a file there chooses a plugin; `chmod go-w {}`",
            dir.display(),
            m.mode() & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// Checks an opened file's own owner and mode (what was actually read,
/// whatever the path points at now).
pub fn check_opened(path: &Path, file: &std::fs::File) -> Result<(), String> {
    let m = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    judge(path, &m, &Trusted::default())
}

fn judge(p: &Path, m: &std::fs::Metadata, trusted: &Trusted) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let us = unsafe { libc::geteuid() };
    if m.uid() != 0 && m.uid() != us && Some(m.uid()) != trusted.uid {
        return Err(format!(
            "{} is owned by uid {}, not root or opsd's user (uid {us}): whoever owns it chooses what opsd runs; `chown root {}` (or opsd's user)",
            p.display(),
            m.uid(),
            p.display()
        ));
    }
    let sticky = m.is_dir() && m.mode() & 0o1000 != 0;
    let writers = if trusted.groups.contains(&m.gid()) {
        0o002
    } else {
        0o022
    };
    if m.mode() & writers != 0 && !sticky {
        return Err(format!(
            "{} may be written by {} (mode {:o}): whoever can write it chooses what opsd runs; `chmod go-w {}`",
            p.display(),
            match (m.mode() & 0o020 != 0, m.mode() & 0o002 != 0) {
                (true, true) => "its group and others",
                (true, false) => "its group",
                _ => "others",
            },
            m.mode() & 0o7777,
            p.display()
        ));
    }
    Ok(())
}

/// `path` made absolute without symlinks, or its nearest ancestor that
/// exists (a data directory opsd is about to create).
fn nearest_existing(path: &Path) -> Result<std::path::PathBuf, String> {
    let absolute = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for p in absolute.ancestors() {
        if let Ok(c) = p.canonicalize() {
            return Ok(c);
        }
    }
    Ok("/".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_file_others_may_write_or_under_such_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let file = open.join("p.wasm");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(check(&file), Ok(()));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&file).unwrap_err();
        assert!(
            e.contains("may be written by its group and others (mode 777)"),
            "{e}"
        );
        assert!(e.contains("chmod go-w"), "{e}");
        // Sticky, like /tmp: fine.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check(&file), Ok(()));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o646)).unwrap();
        let e = check(&file).unwrap_err();
        assert!(e.contains("may be written by others (mode 646)"), "{e}");
        // A path not made yet is judged by what exists above it.
        assert_eq!(check(&open.join("later/state")), Ok(()));
        // A program root's group may write (Debian's root:staff
        // /usr/local): as good as root.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&file).unwrap().gid() == 0 {
            assert!(check(&file).is_err());
            assert_eq!(check_as(&file, &Trusted::program(None)), Ok(()));
        }
    }
}
