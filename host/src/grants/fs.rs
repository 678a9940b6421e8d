//! Filesystem grants: host directories mapped to guest paths, read-only or
//! read-write. They become WASI preopens; nothing else exists for the
//! guest. The host's own file operations on the guest's behalf (a child's
//! output file, its working directory) go through the same grants and
//! through cap-std, so `..` and symlinks cannot leave a grant either.

use crate::diag::{Lines, Problems};
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};
use toml::Spanned;

/// Whether the guest may change what is under a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Access {
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "rw")]
    ReadWrite,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFsGrant {
    host: String,
    guest: String,
    access: Access,
    /// Create the host directory (and parents) when a run needs it.
    #[serde(default)]
    create: bool,
    /// Most bytes the directory may hold while a run writes to it.
    quota: Option<String>,
}

/// One host directory visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsGrant {
    /// Absolute host path.
    pub host: PathBuf,
    /// Absolute, normalised guest path (`/logs`).
    pub guest: String,
    pub access: Access,
    pub create: bool,
    /// Most bytes the tree may hold during a run (`quota = "100M"`, rw
    /// grants only): a run that fills it past this is stopped.
    pub quota: Option<u64>,
}

pub(crate) fn from_raw(
    raw: &[Spanned<RawFsGrant>],
    base: &Path,
    lines: &Lines,
    job: &str,
    problems: &mut Problems,
) -> Vec<FsGrant> {
    let mut out: Vec<FsGrant> = Vec::new();
    for spanned in raw {
        let r = spanned.get_ref();
        let line = lines.at(spanned);
        let guest = match normalize_guest(&r.guest) {
            Ok(g) => g,
            Err(e) => {
                problems.push(
                    line,
                    Some(job),
                    format!("fs grant guest path `{}`: {e}", r.guest),
                );
                continue;
            }
        };
        // Canonical now, so that a symlink found in its path later is one
        // put there since (and refused).
        let host = canonical_prefix(&base.join(&r.host));
        if !r.create && !host.is_dir() {
            problems.push(
                line,
                Some(job),
                format!(
                    "fs grant host directory {} does not exist; create it, or add `create = true`",
                    host.display()
                ),
            );
            continue;
        }
        let quota = match &r.quota {
            None => None,
            Some(_) if r.access == Access::ReadOnly => {
                problems.push(
                    line,
                    Some(job),
                    format!("fs grant `{guest}` is read-only; a quota applies to `rw` grants only"),
                );
                continue;
            }
            Some(q) => match crate::diag::parse_size(q) {
                Ok(n) => Some(n),
                Err(e) => {
                    problems.push(line, Some(job), format!("fs grant `{guest}` quota: {e}"));
                    continue;
                }
            },
        };
        if out.iter().any(|g| g.guest == guest) {
            problems.push(
                line,
                Some(job),
                format!("guest path `{guest}` is granted twice"),
            );
            continue;
        }
        out.push(FsGrant {
            host,
            guest,
            access: r.access,
            create: r.create,
            quota,
        });
    }
    out
}

/// A guest path as an absolute path with no `.`, `..` or doubled slashes.
/// `..` is refused outright: the host never resolves it on a guest's
/// behalf.
pub fn normalize_guest(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err("must be absolute, such as `/logs`".into());
    }
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_str().ok_or("is not UTF-8")?.to_owned()),
            Component::ParentDir => return Err("contains `..`".into()),
            Component::Prefix(_) => return Err("is not a Unix path".into()),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Where a guest path lands: the grant that covers it and the path
/// relative to the grant's host directory.
pub fn locate<'a>(
    grants: &'a [FsGrant],
    guest_path: &str,
) -> Result<(&'a FsGrant, PathBuf), String> {
    let norm = normalize_guest(guest_path).map_err(|e| format!("path `{guest_path}` {e}"))?;
    grants
        .iter()
        .filter_map(|g| {
            let rest = if g.guest == "/" {
                Some(norm.trim_start_matches('/'))
            } else {
                norm.strip_prefix(&g.guest)
                    .filter(|r| r.is_empty() || r.starts_with('/'))
                    .map(|r| r.trim_start_matches('/'))
            }?;
            Some((g, rest))
        })
        .max_by_key(|(g, _)| g.guest.len())
        .map(|(g, rest)| (g, PathBuf::from(if rest.is_empty() { "." } else { rest })))
        .ok_or_else(|| {
            format!(
                "`{guest_path}` is outside the job's filesystem grants ({}); add an `fs` grant that maps a host directory to it",
                describe(grants)
            )
        })
}

/// Explains a plugin's file error in terms of grants: the first absolute
/// path in `message` that no grant covers (or that climbs with `..`).
/// WASI reports such a path as "not found" or "not permitted", which
/// sends an operator looking in the wrong place.
pub fn explain_paths(message: &str, grants: &[FsGrant]) -> Option<String> {
    message
        .split(|c: char| c.is_whitespace() || matches!(c, '`' | '\'' | '"' | ',' | '(' | ')'))
        .map(|t| t.trim_end_matches([':', '.', ';']))
        .filter(|t| t.starts_with('/') && t.len() > 1)
        .find_map(|path| locate(grants, path).err())
}

/// The grants as `guest -> host (access)`, for messages.
pub fn describe(grants: &[FsGrant]) -> String {
    explain(grants).to_string()
}

fn explain(grants: &[FsGrant]) -> super::Explained {
    super::Explained::Each(
        grants
            .iter()
            .map(|g| {
                format!(
                    "{} -> {} ({})",
                    g.guest,
                    g.host.display(),
                    if g.access == Access::ReadWrite {
                        "rw"
                    } else {
                        "ro"
                    }
                )
            })
            .collect(),
    )
}

impl super::Kind for Vec<FsGrant> {
    fn key(&self) -> &'static str {
        "fs"
    }

    fn explain(&self) -> super::Explained {
        explain(self)
    }

    /// Each grant a preopened directory: opened without following a
    /// symlink, then handed to WASI by its descriptor, so what the plugin
    /// gets is exactly that directory.
    fn wire<'a>(
        &'a self,
        wasi: &'a mut wasmtime_wasi::WasiCtxBuilder,
        _violations: &'a super::Violations,
    ) -> super::Wiring<'a> {
        use std::os::fd::AsRawFd;
        use wasmtime_wasi::FsPerms;
        let wired = (|| {
            ensure_created(self).map_err(|e| format!("creating a granted directory: {e}"))?;
            for g in self {
                let perms = match g.access {
                    Access::ReadOnly => FsPerms::ReadOnly,
                    Access::ReadWrite => FsPerms::ReadWrite,
                };
                let dir = open_grant_dir(&g.host)
                    .map_err(|e| format!("fs grant {} -> {}: {e}", g.guest, g.host.display()))?;
                wasi.preopened_dir(
                    format!("/proc/self/fd/{}", dir.as_raw_fd()),
                    &g.guest,
                    perms,
                )
                .map_err(|e| format!("fs grant {} -> {}: {e}", g.host.display(), g.guest))?;
            }
            Ok(())
        })();
        Box::pin(async move { wired })
    }
}

fn open_root(grant: &FsGrant) -> std::io::Result<cap_std::fs::Dir> {
    open_grant_dir(&grant.host).map(cap_std::fs::Dir::from_std_file)
}

/// Opens a grant's host directory without following a symlink anywhere
/// in its path (the path was made canonical when the config loaded, so a
/// symlink there now is one put in since: a job that may write the
/// directory above could aim a nested grant anywhere). Every use of a
/// grant root goes through here: the plugin's preopens, the host's file
/// calls, the quota walk, Landlock rules and a program's mounts.
pub fn open_grant_dir(host: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(host.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain integers; all zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads the path and `how`, both alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ELOOP) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} has a symlink in its path that was not there when the config loaded; opsd does not follow it (fix the path, or reload the config if the change is yours)",
                    host.display()
                ),
            ));
        }
        return Err(e);
    }
    // SAFETY: a new descriptor, owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd as i32) })
}

/// `path` with the symlinks of its longest existing prefix resolved (the
/// rest does not exist yet, as a grant made with `create = true`).
pub(crate) fn canonical_prefix(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut at = path.to_owned();
    loop {
        if let Ok(real) = at.canonicalize() {
            return missing
                .iter()
                .rev()
                .fold(real, |p, m: &std::ffi::OsString| p.join(m));
        }
        match (at.file_name().map(|n| n.to_owned()), at.parent()) {
            (Some(name), Some(parent)) => {
                missing.push(name);
                at = parent.to_owned();
            }
            _ => return path.to_owned(),
        }
    }
}

/// Opens a guest path for writing on the guest's behalf (a child's output).
/// Needs a read-write grant; cap-std keeps `..` and symlinks inside it.
pub fn open_write(
    grants: &[FsGrant],
    guest_path: &str,
    append: bool,
) -> Result<std::fs::File, String> {
    let (grant, rel) = locate(grants, guest_path)?;
    if grant.access != Access::ReadWrite {
        return Err(format!(
            "`{guest_path}` is in the read-only grant {} -> {}; set access = \"rw\" to write there",
            grant.guest,
            grant.host.display()
        ));
    }
    use cap_std::fs::OpenOptionsExt;
    let mut opts = cap_std::fs::OpenOptions::new();
    // Non-blocking: a FIFO put there would make the open wait forever.
    opts.write(true).create(true).custom_flags(libc::O_NONBLOCK);
    if append {
        opts.append(true);
    } else {
        opts.truncate(true);
    }
    let root =
        open_root(grant).map_err(|e| format!("cannot open `{guest_path}` for writing: {e}"))?;
    not_special(&root, &rel, guest_path)?;
    root.open_with(&rel, &opts)
        .map(cap_std::fs::File::into_std)
        .map_err(|e| format!("cannot open `{guest_path}` for writing: {e}"))
        .and_then(|f| regular(f, guest_path))
}

/// Refuses a path that is there and is not a regular file, before it is
/// opened (a FIFO without a reader would refuse a writer with a puzzling
/// "no such device").
fn not_special(root: &cap_std::fs::Dir, rel: &Path, guest_path: &str) -> Result<(), String> {
    match root.symlink_metadata(rel) {
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => Err(format!(
            "`{guest_path}` is not a regular file; a program's input and output files must be"
        )),
        _ => Ok(()),
    }
}

/// `f` if it is a regular file, made blocking again: a program's input or
/// output is never a FIFO, device or socket the plugin placed there.
fn regular(f: std::fs::File, guest_path: &str) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let m = f.metadata().map_err(|e| format!("`{guest_path}`: {e}"))?;
    if !m.is_file() {
        return Err(format!(
            "`{guest_path}` is not a regular file; a program's input and output files must be"
        ));
    }
    // SAFETY: fcntl on a descriptor we own, flags read then written.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(f)
}

/// Opens a guest path for reading on the guest's behalf (a child's input).
pub fn open_read(grants: &[FsGrant], guest_path: &str) -> Result<std::fs::File, String> {
    use cap_std::fs::OpenOptionsExt;
    let (grant, rel) = locate(grants, guest_path)?;
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.read(true).custom_flags(libc::O_NONBLOCK);
    let root =
        open_root(grant).map_err(|e| format!("cannot open `{guest_path}` for reading: {e}"))?;
    not_special(&root, &rel, guest_path)?;
    root.open_with(&rel, &opts)
        .map(cap_std::fs::File::into_std)
        .map_err(|e| format!("cannot open `{guest_path}` for reading: {e}"))
        .and_then(|f| regular(f, guest_path))
}

/// The host directory for a guest directory (a child's working
/// directory), checked to be a directory that resolves inside its grant.
pub fn host_dir(grants: &[FsGrant], guest_path: &str) -> Result<PathBuf, String> {
    let (grant, rel) = locate(grants, guest_path)?;
    let root = grant
        .host
        .canonicalize()
        .map_err(|e| format!("grant {}: {e}", grant.host.display()))?;
    let full = root
        .join(&rel)
        .canonicalize()
        .map_err(|e| format!("working directory `{guest_path}`: {e}"))?;
    if !full.starts_with(&root) {
        return Err(format!(
            "working directory `{guest_path}` resolves to {} outside its grant",
            full.display()
        ));
    }
    if !full.is_dir() {
        return Err(format!(
            "working directory `{guest_path}` is not a directory"
        ));
    }
    Ok(full)
}

/// Why a `files` call failed: the grants said no (a violation), or the
/// file system did (the plugin's business).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Io(String),
}

/// Opens a guest path (file or directory) through its grant, for the
/// `files` interface; `write` needs a read-write grant.
fn open_in_grant(
    grants: &[FsGrant],
    guest_path: &str,
    write: bool,
) -> Result<std::fs::File, FsError> {
    let (grant, rel) = locate(grants, guest_path).map_err(FsError::Denied)?;
    if write && grant.access != Access::ReadWrite {
        return Err(FsError::Denied(format!(
            "`{guest_path}` is in the read-only grant {} -> {}; set access = \"rw\" to change it",
            grant.guest,
            grant.host.display()
        )));
    }
    use cap_std::fs::OpenOptionsExt;
    let mut opts = cap_std::fs::OpenOptions::new();
    // Non-blocking: a FIFO a program left there would hold the open (and
    // the thread making it) forever.
    opts.read(true).custom_flags(libc::O_NONBLOCK);
    open_root(grant)
        .and_then(|d| d.open_with(&rel, &opts))
        .map(cap_std::fs::File::into_std)
        .map_err(|e| escape_or_io(e, guest_path, grant))
}

/// A file error as the grants see it: cap-std refusing a path that leads
/// out of the grant (a symlink, `..`) is a denial, like any other leaving
/// of a grant; anything else is the plugin's business.
fn escape_or_io(e: std::io::Error, guest_path: &str, grant: &FsGrant) -> FsError {
    if e.kind() == std::io::ErrorKind::PermissionDenied
        && e.to_string().contains("outside of the filesystem")
    {
        FsError::Denied(format!(
            "`{guest_path}` leads outside the grant {} -> {} (through a symlink or `..`); a plugin's paths stay inside its grants",
            grant.guest,
            grant.host.display()
        ))
    } else {
        FsError::Io(format!("`{guest_path}`: {e}"))
    }
}

/// What `files.stat` reports.
pub struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub size: u64,
    pub fs_available: u64,
    pub fs_total: u64,
}

/// Mode, ownership, size and free space of a guest path.
pub fn stat(grants: &[FsGrant], guest_path: &str) -> Result<Stat, FsError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let f = open_in_grant(grants, guest_path, false)?;
    let m = f
        .metadata()
        .map_err(|e| FsError::Io(format!("`{guest_path}`: {e}")))?;
    // SAFETY: fstatvfs fills the zeroed struct we pass for a valid fd.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstatvfs(f.as_raw_fd(), &mut vfs) } == 0;
    let (avail, total) = if ok {
        (
            vfs.f_bavail as u64 * vfs.f_frsize as u64,
            vfs.f_blocks as u64 * vfs.f_frsize as u64,
        )
    } else {
        (0, 0)
    };
    Ok(Stat {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        owner: user_name(m.uid()),
        group: group_name(m.gid()),
        size: m.len(),
        fs_available: avail,
        fs_total: total,
    })
}

/// The sha256 (lowercase hex) and size of a regular file in a grant, for
/// `files.sha256`: read natively, so a plugin verifying a dump of
/// gigabytes does not pay for hashing it in wasm. Only regular files: a
/// FIFO or device would never end. Stops early, as an error, once
/// `cancelled` is set (the run timed out or was cancelled).
pub fn sha256(
    grants: &[FsGrant],
    guest_path: &str,
    cancelled: &std::sync::atomic::AtomicBool,
) -> Result<(String, u64), FsError> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = open_in_grant(grants, guest_path, false)?;
    let io = |e: std::io::Error| FsError::Io(format!("`{guest_path}`: {e}"));
    if !f.metadata().map_err(io)?.is_file() {
        return Err(FsError::Io(format!(
            "`{guest_path}` is not a regular file; only files can be hashed"
        )));
    }
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(FsError::Io(format!(
                "hashing `{guest_path}`: the run ended"
            )));
        }
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        size += n as u64;
        hash.update(&buf[..n]);
    }
    Ok((hex::encode(hash.finalize()), size))
}

/// Sets permission bits of a guest path in a read-write grant: the nine
/// rwx bits only. Setuid, setgid and sticky are refused: a plugin that
/// copied a program into its grant could otherwise hand every local user
/// a root shell.
pub fn set_mode(grants: &[FsGrant], guest_path: &str, mode: u32) -> Result<(), FsError> {
    use std::os::unix::fs::PermissionsExt;
    if mode & 0o7000 != 0 {
        return Err(FsError::Denied(format!(
            "files.set-mode {mode:o} on `{guest_path}`: setuid, setgid and sticky bits are never set for a plugin; use the permission bits (0o777) only"
        )));
    }
    let f = open_in_grant(grants, guest_path, true)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| FsError::Io(format!("chmod `{guest_path}`: {e}")))
}

/// Changes owner and/or group of a guest path in a read-write grant.
pub fn set_owner(
    grants: &[FsGrant],
    guest_path: &str,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<(), FsError> {
    let uid = owner
        .map(|o| user_id(o).ok_or_else(|| FsError::Io(format!("no user `{o}` on this host"))))
        .transpose()?;
    let gid = group
        .map(|g| group_id(g).ok_or_else(|| FsError::Io(format!("no group `{g}` on this host"))))
        .transpose()?;
    let f = open_in_grant(grants, guest_path, true)?;
    std::os::unix::fs::fchown(&f, uid, gid)
        .map_err(|e| FsError::Io(format!("chown `{guest_path}`: {e}")))
}

/// fsyncs a directory in a grant, making renames into it durable.
pub fn sync_dir(grants: &[FsGrant], guest_path: &str) -> Result<(), FsError> {
    open_in_grant(grants, guest_path, false)?
        .sync_all()
        .map_err(|e| FsError::Io(format!("fsync `{guest_path}`: {e}")))
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getpwuid_r writes into `pwd` and `buf` (sized as passed) and
    // sets `result` to null or to `pwd`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) != 0
            || result.is_null()
        {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: as in user_name, for getgrgid_r.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        if libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) != 0
            || result.is_null()
        {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(grp.gr_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

fn user_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: as in user_name, for getpwnam_r with a NUL-terminated name.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        if libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        ) != 0
            || result.is_null()
        {
            return None;
        }
        Some(pwd.pw_uid)
    }
}

fn group_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: as in user_name, for getgrnam_r with a NUL-terminated name.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        if libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        ) != 0
            || result.is_null()
        {
            return None;
        }
        Some(grp.gr_gid)
    }
}

/// Read-write grants whose filesystem is (nearly) full, described for a
/// failed run's error: inside the sandbox a full disk often reaches the
/// plugin as a bare "I/O error", and the operator needs to know which.
pub fn full_grants(grants: &[FsGrant]) -> Vec<String> {
    const NEARLY_FULL: u64 = 64 << 10;
    grants
        .iter()
        .filter(|g| g.access == Access::ReadWrite)
        .filter_map(|g| {
            let free = crate::monitor::disk_use(&g.host)?.available_bytes;
            (free < NEARLY_FULL).then(|| {
                format!(
                    "the disk of grant {} ({}) is full: {} KiB free",
                    g.guest,
                    g.host.display(),
                    free >> 10
                )
            })
        })
        .collect()
}

/// Bytes the files under `dir` hold (their lengths; symlinks are not
/// followed), or None when it cannot be read.
pub fn tree_bytes(dir: &Path) -> Option<u64> {
    let root = open_grant_dir(dir)
        .ok()
        .map(cap_std::fs::Dir::from_std_file)?;
    let mut total = 0u64;
    walk(&root, 0, &mut total).then_some(total)
}

/// Deepest a quota walk goes: a deeper tree is not measured, and counts as
/// over its quota (a plugin could otherwise hide bytes below the walk).
const WALK_DEPTH: usize = 256;

/// Adds the sizes below `dir` to `total`, depth first, holding open only
/// the directories on the way down (not every one found), entering none
/// through a symlink. False when some part could not be measured.
fn walk(dir: &cap_std::fs::Dir, depth: usize, total: &mut u64) -> bool {
    if depth > WALK_DEPTH {
        return false;
    }
    let Ok(entries) = dir.entries() else {
        return false;
    };
    for e in entries {
        let Ok(e) = e else { return false };
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            match subdir_nofollow(dir, &e.file_name()) {
                Some(sub) => {
                    if !walk(&sub, depth + 1, total) {
                        return false;
                    }
                }
                // Gone since it was listed: nothing to count.
                None if dir.symlink_metadata(e.file_name()).is_err() => {}
                None => return false,
            }
        } else if meta.is_file() {
            *total = total.saturating_add(meta.len());
        }
    }
    true
}

/// The directory `name` (one component) in `dir`, never through a symlink.
fn subdir_nofollow(dir: &cap_std::fs::Dir, name: &std::ffi::OsStr) -> Option<cap_std::fs::Dir> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(name.as_bytes()).ok()?;
    // SAFETY: openat of one NUL-terminated component below a directory
    // descriptor we hold; the result is ours.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a new descriptor, owned by nobody else.
    (fd >= 0).then(|| cap_std::fs::Dir::from_std_file(unsafe { std::fs::File::from_raw_fd(fd) }))
}

/// The first grant holding more than its quota, described for the run's
/// error, with what to do.
pub fn over_quota(grants: &[FsGrant]) -> Option<String> {
    grants.iter().find_map(|g| {
        let quota = g.quota?;
        let Some(held) = tree_bytes(&g.host) else {
            return Some(format!(
                "quota: grant {} ({}) could not be measured (deeper than {WALK_DEPTH} levels, or a directory that cannot be opened); the run was stopped",
                g.guest,
                g.host.display()
            ));
        };
        (held > quota).then(|| {
            format!(
                "quota: grant {} ({}) holds {} KiB, past its quota of {} KiB; the run was stopped (free space there or raise the grant's `quota`)",
                g.guest,
                g.host.display(),
                held >> 10,
                quota >> 10
            )
        })
    })
}

/// Creates host directories of grants marked `create = true`, one
/// component at a time below the deepest existing one, never through a
/// symlink (one put in the path could otherwise have opsd make a
/// directory anywhere).
pub fn ensure_created(grants: &[FsGrant]) -> std::io::Result<()> {
    for g in grants.iter().filter(|g| g.create) {
        if open_grant_dir(&g.host).is_ok() {
            continue;
        }
        let mut missing = Vec::new();
        let mut at = g.host.clone();
        let mut dir = loop {
            match open_grant_dir(&at) {
                Ok(d) => break cap_std::fs::Dir::from_std_file(d),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let (Some(name), Some(parent)) = (at.file_name(), at.parent()) else {
                        return Err(e);
                    };
                    missing.push(name.to_owned());
                    at = parent.to_owned();
                }
                Err(e) => return Err(e),
            }
        };
        for name in missing.iter().rev() {
            match dir.create_dir(name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            dir = subdir_nofollow(&dir, name).ok_or_else(|| {
                std::io::Error::other(format!(
                    "{} is not a plain directory after creating it",
                    g.host.display()
                ))
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(host: &Path, guest: &str, access: Access) -> FsGrant {
        FsGrant {
            host: host.to_owned(),
            guest: guest.into(),
            access,
            create: false,
            quota: None,
        }
    }

    #[test]
    fn the_quota_walk_never_follows_a_link_out_and_grant_roots_refuse_links() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("grant");
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("sub/a"), vec![0u8; 1000]).unwrap();
        std::fs::write(outside.join("big"), vec![0u8; 100_000]).unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("link")).unwrap();
        assert_eq!(tree_bytes(&inside), Some(1000));
        // A deep tree holds only its depth open, and past the limit is
        // not measured.
        let mut deep = inside.join("deep");
        for _ in 0..(WALK_DEPTH + 2) {
            deep = deep.join("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(tree_bytes(&inside), None);
        // The grant's own path with a link in it is refused.
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(&inside, &linked).unwrap();
        let e = open_grant_dir(&linked).unwrap_err();
        assert!(e.to_string().contains("has a symlink in its path"), "{e}");
        assert_eq!(tree_bytes(&linked), None);
        assert_eq!(
            canonical_prefix(&linked.join("new/deeper")),
            inside.canonicalize().unwrap().join("new/deeper")
        );
    }

    #[test]
    fn normalizes_and_refuses_parent() {
        assert_eq!(normalize_guest("/a//b/./c/").unwrap(), "/a/b/c");
        assert_eq!(normalize_guest("/").unwrap(), "/");
        assert!(normalize_guest("/a/../b").is_err());
        assert!(normalize_guest("a").is_err());
    }

    #[test]
    fn locate_picks_the_longest_grant_and_respects_boundaries() {
        let g = vec![
            grant(Path::new("/h/data"), "/data", Access::ReadOnly),
            grant(Path::new("/h/out"), "/data/out", Access::ReadWrite),
        ];
        let (gr, rel) = locate(&g, "/data/out/x.gz").unwrap();
        assert_eq!(gr.guest, "/data/out");
        assert_eq!(rel, Path::new("x.gz"));
        assert!(locate(&g, "/dataset/x").is_err());
        let e = locate(&g, "/etc/passwd").unwrap_err();
        assert!(e.contains("outside the job's filesystem grants"), "{e}");
        assert!(locate(&g, "/data/../etc").unwrap_err().contains(".."));
    }

    #[test]
    fn explains_paths_outside_grants() {
        let g = vec![grant(Path::new("/h/data"), "/data", Access::ReadWrite)];
        let why = explain_paths(
            "writing /etc/x: No such file or directory (os error 44)",
            &g,
        )
        .unwrap();
        assert!(
            why.starts_with(
                "`/etc/x` is outside the job's filesystem grants (/data -> /h/data (rw))"
            ),
            "{why}"
        );
        assert!(
            explain_paths("writing `/data/../x`: Operation not permitted", &g)
                .unwrap()
                .contains("..")
        );
        assert_eq!(
            explain_paths("reading /data/missing.log: No such file", &g),
            None
        );
    }

    #[test]
    fn writes_need_rw_and_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let ro = d.path().join("ro");
        let rw = d.path().join("rw");
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::create_dir_all(&rw).unwrap();
        std::os::unix::fs::symlink("/etc", rw.join("escape")).unwrap();
        let g = vec![
            grant(&ro, "/ro", Access::ReadOnly),
            grant(&rw, "/rw", Access::ReadWrite),
        ];
        assert!(
            open_write(&g, "/ro/x", false)
                .unwrap_err()
                .contains("read-only")
        );
        assert!(open_write(&g, "/rw/x", false).is_ok());
        assert!(open_write(&g, "/rw/escape/opsd-test", false).is_err());
        assert!(host_dir(&g, "/rw/escape").unwrap_err().contains("outside"));
        assert_eq!(host_dir(&g, "/rw").unwrap(), rw.canonicalize().unwrap());
    }
}
