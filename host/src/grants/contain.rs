//! Containment of the processes one exec call starts: a cap on how many
//! there may be at once (so a fork bomb through an allowed `sh` cannot
//! take the machine's PIDs), and a way to kill all of them, including
//! any that left the process group, when the call ends.
//!
//! The cap is a `pids` cgroup when the daemon may make one (root, or a
//! delegated cgroup v2 subtree, as systemd's `Delegate=yes` gives), else
//! `RLIMIT_NPROC` set in the child. The rlimit counts every task of the
//! daemon's user, so it is set to what that user has now plus the cap;
//! root ignores it, which is why root uses the cgroup.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// How one exec call's processes are capped; dropping it kills whatever
/// is left of them and removes the cgroup.
pub(crate) struct Containment {
    cgroup: Option<PathBuf>,
    /// `cgroup.procs` of `cgroup`, ready for the child to write "0" to
    /// between fork and exec (no allocation allowed there).
    join: Option<CString>,
    nproc: Option<libc::rlim_t>,
    /// The process group the child leads, once spawned.
    pgid: Option<i32>,
}

/// Where this daemon may create `pids` cgroups, found once.
fn pids_parent() -> Option<&'static Path> {
    static PARENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let candidates = own.lines().flat_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (controllers, path) = match (parts.next(), parts.next(), parts.next()) {
                    (Some(_), Some(c), Some(p)) => (c, p.trim_start_matches('/')),
                    _ => return Vec::new(),
                };
                if controllers.split(',').any(|c| c == "pids") {
                    vec![Path::new("/sys/fs/cgroup/pids").join(path)]
                } else if controllers.is_empty() {
                    // cgroup v2: usable where pids is enabled for children:
                    // the daemon's own cgroup, or the one above it (under
                    // systemd's Delegate=pids with DelegateSubgroup=, the
                    // daemon sits in a leaf of the delegated service
                    // cgroup, whose other children may be its calls').
                    let own = Path::new("/sys/fs/cgroup").join(path);
                    let above = own.parent().map(Path::to_path_buf);
                    [Some(own), above]
                        .into_iter()
                        .flatten()
                        .filter(|dir| {
                            std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                                .unwrap_or_default()
                                .split_whitespace()
                                .any(|c| c == "pids")
                        })
                        .collect()
                } else {
                    Vec::new()
                }
            });
            for dir in candidates {
                let probe = dir.join(format!("opsd-probe-{}", std::process::id()));
                if std::fs::create_dir(&probe).is_ok() {
                    let usable = probe.join("pids.max").exists();
                    let _ = std::fs::remove_dir(&probe);
                    if usable {
                        reap_left_behind(&dir);
                        return Some(dir);
                    }
                }
            }
            None
        })
        .as_deref()
}

/// Tasks (threads count, as the kernel counts them for `RLIMIT_NPROC`)
/// that `uid` has now.
fn tasks_of(uid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| e.file_name().as_bytes().iter().all(u8::is_ascii_digit))
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .map(|stat| {
            // Field 20 (num_threads), counted after the `(comm)` field,
            // which may itself hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(17))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
        })
        .sum()
}

impl Containment {
    /// Prepares a cap of `max_processes` for one exec call.
    pub(crate) fn new(max_processes: u32) -> Containment {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut c = Containment {
            cgroup: None,
            join: None,
            nproc: None,
            pgid: None,
        };
        if let Some(parent) = pids_parent() {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = parent.join(format!("opsd-{}-{n}", std::process::id()));
            let made = std::fs::create_dir(&dir)
                .and_then(|_| std::fs::write(dir.join("pids.max"), max_processes.to_string()));
            match made {
                Ok(()) => {
                    c.join = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok();
                    c.cgroup = Some(dir);
                    return c;
                }
                Err(e) => {
                    tracing::warn!(cgroup = %dir.display(), error = %e, "cannot make a pids cgroup; falling back to RLIMIT_NPROC");
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        // SAFETY: getuid(2) has no preconditions.
        let uid = unsafe { libc::getuid() };
        if uid != 0 {
            c.nproc = Some(tasks_of(uid) + u64::from(max_processes));
        }
        c
    }

    /// Makes `cmd`'s child join the cap as it starts, in its own process
    /// group.
    pub(crate) fn apply(&self, cmd: &mut tokio::process::Command, file_size_cap: Option<u64>) {
        cmd.process_group(0);
        let join = self.join.clone();
        let nproc = self.nproc;
        let nofile = DESCRIPTOR_LIMIT_BEFORE.get().copied();
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes async-signal-safe calls (open, write, close,
        // setrlimit) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(path) = &join {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let wrote = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if wrote != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(n) = nproc {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NPROC, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Programs get the descriptor limit opsd was started with
                // (select(2) breaks past 1024), not the one it raised.
                if let Some(lim) = &nofile {
                    libc::setrlimit(libc::RLIMIT_NOFILE, lim);
                }
                if let Some(cap) = file_size_cap {
                    let lim = libc::rlimit {
                        rlim_cur: cap,
                        rlim_max: cap,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }

    /// Records the spawned child, whose pid is its process group's id.
    pub(crate) fn started(&mut self, pid: Option<u32>) {
        self.pgid = pid.and_then(|p| i32::try_from(p).ok());
    }

    /// Whether a fork was refused because the cap was reached (known only
    /// with a cgroup, whose `pids.events` counts refusals).
    pub(crate) fn hit_cap(&self) -> bool {
        let Some(dir) = &self.cgroup else {
            return false;
        };
        std::fs::read_to_string(dir.join("pids.events"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("max "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    /// Kills every process the call started: its process group, then any
    /// left in its cgroup (one that called setsid leaves the group, not
    /// the cgroup).
    pub(crate) fn kill_all(&self) {
        // The program itself first: it is PID 1 of its namespace, and the
        // kernel then kills everything in it, whatever session or group
        // it moved to (and whatever it did to its parent-death signal).
        // It is the only child of the relay, whose pid is the group's.
        if let Some(pgid) = self.pgid {
            let children = std::fs::read_to_string(format!("/proc/{pgid}/task/{pgid}/children"))
                .unwrap_or_default();
            for pid in children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) of one process; no memory involved.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) with a negative pid signals a process group;
            // no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let Some(dir) = &self.cgroup else { return };
        // Kill until empty: a process may fork while it is being killed.
        for _ in 0..100 {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: as above, for one process.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for Containment {
    fn drop(&mut self) {
        self.kill_all();
        if let Some(dir) = self.cgroup.take() {
            // Usually empty by now and gone at once; killed processes
            // leave it as they exit, which takes the kernel a moment, and
            // the call need not wait for that.
            if std::fs::remove_dir(&dir).is_err() {
                reap_later(dir);
            }
        }
    }
}

/// Kills and removes what an opsd that died (kill -9, a crash) left: its
/// calls' cgroups, named after its pid, and whatever is still in them.
fn reap_left_behind(parent: &Path) {
    let own = std::process::id().to_string();
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("opsd-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let alive =
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "opsd");
        if pid != own && pid != "probe" && !alive {
            tracing::info!(cgroup = %entry.path().display(), "removing a pids cgroup an earlier opsd left");
            reap_later(entry.path());
        }
    }
}

/// Removes cgroups that still held processes when their call ended, on a
/// thread of its own: killing what is left again, then retrying.
fn reap_later(dir: PathBuf) {
    use std::sync::Mutex;
    use std::sync::mpsc::{Sender, channel};
    static REAPER: OnceLock<Option<Mutex<Sender<PathBuf>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = channel::<PathBuf>();
        std::thread::Builder::new()
            .name("opsd-cgroup-reaper".into())
            .spawn(move || {
                for dir in rx {
                    let leftover = Containment {
                        cgroup: Some(dir.clone()),
                        join: None,
                        nproc: None,
                        pgid: None,
                    };
                    for _ in 0..2000 {
                        leftover.kill_all();
                        match std::fs::remove_dir(&dir) {
                            Ok(()) => break,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                            Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                        }
                    }
                    if dir.exists() {
                        tracing::warn!(cgroup = %dir.display(), "could not remove a run's pids cgroup");
                    }
                    // Nothing left to kill or remove on drop.
                    let mut leftover = leftover;
                    leftover.cgroup = None;
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    match reaper {
        Some(tx) => {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(dir);
            }
        }
        None => tracing::warn!(cgroup = %dir.display(), "could not remove a run's pids cgroup"),
    }
}

/// The descriptor limit opsd was started with, when it raised its own.
static DESCRIPTOR_LIMIT_BEFORE: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Raises the daemon's soft descriptor limit to its hard one (as systemd
/// advises services to do themselves): runs hold files open through the
/// daemon's descriptors, each run capped by `grants.limits.handles`, and
/// the daemon needs room for all of them besides its store and sockets.
/// Returns (before, now).
pub fn raise_descriptor_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                let _ = DESCRIPTOR_LIMIT_BEFORE.set(lim);
                return Some((before, lim.rlim_max));
            }
        }
        Some((before, before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_processs_tasks() {
        // SAFETY: getuid(2) has no preconditions.
        let uid = unsafe { libc::getuid() };
        assert!(tasks_of(uid) >= 1);
    }
}
