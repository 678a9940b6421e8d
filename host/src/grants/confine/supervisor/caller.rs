//! Reading a caller's side of a system call: its memory (paths, argv),
//! its descriptors and working directory, and its file system as it sees
//! it (through `/proc/PID/root`), for the supervisor's verdicts. Every
//! answer is a snapshot the caller may change afterwards; the verdicts
//! account for that (see the module above).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The file a metadata call names, for the message: its path, or what
/// its descriptor is.
pub(super) fn metadata_target(pid: u32, nr: libc::c_long, args: &[u64; 6]) -> String {
    let by_fd = [
        libc::SYS_fchmod,
        libc::SYS_fchown,
        libc::SYS_fsetxattr,
        libc::SYS_fremovexattr,
    ];
    let by_path = [
        libc::SYS_open,
        libc::SYS_creat,
        libc::SYS_mknod,
        libc::SYS_chmod,
        libc::SYS_chown,
        libc::SYS_lchown,
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_removexattr,
        libc::SYS_lremovexattr,
        libc::SYS_utime,
        libc::SYS_utimes,
    ];
    let shown = if by_fd.contains(&nr) {
        fd_path(pid, args[0] as i32).map(|p| p.display().to_string())
    } else if by_path.contains(&nr) {
        read_c_string(pid, args[0]).map(|b| String::from_utf8_lossy(&b).into_owned())
    } else {
        // *at(dirfd, path, ...)
        read_c_string(pid, args[1]).map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    shown.unwrap_or_else(|| "a file".into())
}

/// The address family of a caller's socket, from a copy of its
/// descriptor (pidfd_getfd).
pub(super) fn socket_domain(pid: u32, fd: i32) -> Option<i32> {
    // SAFETY: pidfd_open and pidfd_getfd return new descriptors we own.
    // The caller may be a thread other than its process's first: then
    // only a thread pidfd (PIDFD_THREAD, Linux 6.9) names it.
    let mut pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if pidfd < 0 {
        const PIDFD_THREAD: u32 = libc::O_EXCL as u32;
        // SAFETY: as above.
        pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, PIDFD_THREAD) };
    }
    if pidfd < 0 {
        return None;
    }
    // SAFETY: a new descriptor, owned here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: as above.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0u32) };
    if copy < 0 {
        return None;
    }
    // SAFETY: a new descriptor, owned here.
    let copy = unsafe { OwnedFd::from_raw_fd(copy as i32) };
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int into `domain`.
    let rc = unsafe {
        libc::getsockopt(
            copy.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(domain)
}

/// The first directory the job may write that resolving `named` passes
/// through, as the caller sees its file system (symlinks followed by
/// hand, so the kernel follows none for us but `/proc/PID/root`).
pub(super) fn writable_on_the_way(
    pid: u32,
    dirfd: i32,
    named: &Path,
    flags: i32,
    writable: &[PathBuf],
) -> Option<PathBuf> {
    use std::path::Component;
    let inside = |p: &Path| writable.iter().find(|w| p.starts_with(w)).cloned();
    let start = if named.as_os_str().is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        return None;
    } else if named.is_absolute() {
        PathBuf::from("/")
    } else if dirfd == libc::AT_FDCWD {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?
    } else {
        std::fs::read_link(format!("/proc/{pid}/fd/{dirfd}")).ok()?
    };
    let root = format!("/proc/{pid}/root");
    let mut pending: Vec<std::ffi::OsString> = named
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut current = start;
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if let Some(w) = inside(&current) {
            return Some(w);
        }
        if c == ".." {
            current.pop();
            continue;
        }
        let next = current.join(&c);
        let seen = format!("{root}{}", next.display());
        match std::fs::symlink_metadata(&seen) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                let target = std::fs::read_link(&seen).ok()?;
                if links > 40 {
                    return Some(current);
                }
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                pending.extend(target.components().rev().filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_owned()),
                    Component::ParentDir => Some("..".into()),
                    _ => None,
                }));
            }
            _ => current = next,
        }
    }
    None
}

/// Opens what a caller's `execveat(dirfd, path, ..., flags)` names, as the
/// caller sees it: inside its root and mounts (its own /proc), symlinks
/// resolved there, magic links refused (the kernel would follow them, so
/// refusing is the safe side).
pub(super) fn open_in_caller(
    pid: u32,
    dirfd: i32,
    named: &Path,
    flags: i32,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::ffi::OsStrExt as _;
    if named.as_os_str().is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        // fexecve: the descriptor's own file (O_PATH: a FIFO's open would
        // wait for a writer).
        return open_path(&format!("/proc/{pid}/fd/{dirfd}"));
    }
    let full = if named.is_absolute() {
        named.to_owned()
    } else {
        let base = if dirfd == libc::AT_FDCWD {
            std::fs::read_link(format!("/proc/{pid}/cwd"))?
        } else {
            std::fs::read_link(format!("/proc/{pid}/fd/{dirfd}"))?
        };
        if !base.is_absolute() {
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        base.join(named)
    };
    let root = open_path(&format!("/proc/{pid}/root"))?;
    let path = std::ffi::CString::new(full.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut how: libc::open_how = unsafe_zeroed_open_how();
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
        how.flags |= libc::O_NOFOLLOW as u64;
    }
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 reads `path` and `how`, both alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd as i32) })
}

fn unsafe_zeroed_open_how() -> libc::open_how {
    // SAFETY: open_how is plain integers; all zero is valid.
    unsafe { std::mem::zeroed() }
}

/// An `O_PATH` descriptor, symlinks (and magic links) followed.
fn open_path(path: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
}

/// (device, inode): the file itself, whatever path reached it.
pub(super) fn file_id(f: &std::fs::File) -> Option<(u64, u64)> {
    f.metadata().ok().map(|m| meta_id(&m))
}

/// (device, inode) of a file already looked up: compared with `file_id`
/// to tell a swapped file from the one checked.
pub(super) fn meta_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// What a caller's descriptor points at, as its `/proc` link says.
fn fd_path(pid: u32, fd: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// Reads a NUL-terminated string (at most 4 KiB) from a process.
pub(super) fn read_c_string(pid: u32, addr: u64) -> Option<Vec<u8>> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < 4096 {
        let mut buf = [0u8; 256];
        let n = std::os::unix::fs::FileExt::read_at(&mem, &mut buf, at).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    None
}

/// Reads a NULL-terminated array of string pointers (an argv); `None`
/// when it cannot be read whole (more than 4096 arguments, or one past
/// 4 KiB): pinned arguments are then refused rather than half-matched.
pub(super) fn read_argv(pid: u32, addr: u64) -> Option<Vec<String>> {
    let mut out = Vec::new();
    if addr == 0 {
        return Some(out);
    }
    let mut at = addr;
    loop {
        let raw = read_bytes(pid, at, 8 * 64)?;
        if raw.len() < 8 {
            return None;
        }
        for chunk in raw.chunks_exact(8) {
            let ptr = u64::from_ne_bytes(chunk.try_into().ok()?);
            if ptr == 0 {
                return Some(out);
            }
            if out.len() >= 4096 {
                return None;
            }
            out.push(String::from_utf8_lossy(&read_c_string(pid, ptr)?).into_owned());
        }
        at += (raw.len() - raw.len() % 8) as u64;
    }
}

/// Up to `len` bytes of a caller's memory (fewer at the end of a mapping).
pub(super) fn read_bytes(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; len];
    let n = std::os::unix::fs::FileExt::read_at(&mem, &mut buf, addr).ok()?;
    buf.truncate(n);
    Some(buf)
}
