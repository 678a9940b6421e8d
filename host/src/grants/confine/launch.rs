//! Starting one confined child: everything is prepared in the daemon
//! (ruleset, filter, descriptors, ids), and the forked child only makes
//! system calls on it before `exec`, as the time between fork and exec in
//! a threaded program requires (no allocation, no locks).
//!
//! The forked child first enters the namespaces, then forks once more:
//! the grandchild is PID 1 of the new PID namespace and becomes the
//! program; the child stays outside, holding nothing open, and mirrors
//! the grandchild's exit status, so the daemon waits on it as on the
//! program itself. When the program exits, the kernel kills whatever is
//! left in its namespace.

use super::supervisor::{Rules, Supervisor};
use super::{Mode, Support, rules, seccomp};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

mod child;

use child::{Step, confine_child};

/// What one exec call's child is confined by.
pub(crate) struct Request<'a> {
    pub mode: Mode,
    pub plan: &'a rules::Plan,
    /// Whether the job grants any network.
    pub network: bool,
    pub run_as: Option<&'a super::RunAs>,
    /// The job grants a Unix socket.
    pub unix_granted: bool,
    /// Directories the plugin may write: mounted noexec for the child, so
    /// nothing the plugin wrote there runs or loads as code (a library
    /// through LD_PRELOAD included).
    pub writable: Vec<std::path::PathBuf>,
    /// `grants.limits.processes`.
    pub processes: u32,
    /// Where the program starts.
    pub cwd: &'a std::path::Path,
    /// Size of a private /tmp (`grants.tmp`), if any.
    pub tmp: Option<u64>,
    pub rules: Rules,
}

/// An rw grant as the child mounts it: its path and the directory the
/// daemon found there (device, inode).
struct Writable {
    path: CString,
    dev: u64,
    ino: u64,
}

/// Everything the child needs, prepared; plain data only, moved into the
/// pre-exec closure.
struct Setup {
    /// The daemon: if it dies, the relay kills the program.
    daemon: libc::pid_t,
    root: bool,
    netns: Option<i32>,
    new_namespaces: bool,
    uid_map: CString,
    gid_map: CString,
    run_as: Option<(u32, u32, Vec<libc::gid_t>)>,
    last_cap: u32,
    ruleset: Option<i32>,
    /// What the filter allows and asks about; made into `filter` once the
    /// command is known.
    policy: Option<seccomp::Policy>,
    /// The job's rw grants, remounted noexec in the child's namespace.
    writable: Vec<Writable>,
    /// The working directory, entered again once the grants are mounted
    /// (the one inherited is on the mount made read-only).
    cwd: Option<CString>,
    /// Mount options of a private /tmp (`size=...`), when granted.
    tmp: Option<CString>,
    /// The Landlock rights of a read-write grant, for that /tmp.
    tmp_rights: u64,
    /// `pid_max` of the child's PID namespace: a cap on its processes
    /// even where no pids cgroup can be made (the kernel's floor is 301),
    /// when the kernel keeps it per namespace.
    pid_max: Option<CString>,
    filter: Option<Vec<libc::sock_filter>>,
    socket: Option<i32>,
    report: i32,
}

// SAFETY: `sock_filter` is plain data (integers); the struct holds no
// pointers into shared state.
unsafe impl Send for Setup {}
// SAFETY: as above; the closure only reads it.
unsafe impl Sync for Setup {}

/// A prepared launch; keep it until the child has been spawned.
pub(crate) struct Launch {
    setup: Option<Setup>,
    /// Descriptors the child uses; closed in the daemon once it spawned.
    child_side: Vec<OwnedFd>,
    report_read: Option<OwnedFd>,
    supervisor: Option<Supervisor>,
    /// What best-effort mode left out, for the run's log.
    pub notes: Vec<String>,
}

impl Launch {
    /// Prepares a launch, or says why this machine cannot confine as
    /// `mode` requires.
    ///
    /// Long on purpose: every resource the child will use (namespaces,
    /// mount handles, the Landlock ruleset, the filter, the supervisor's
    /// socket) is made here, before the fork, in the order the child uses
    /// them, with what best-effort mode leaves out noted beside each.
    pub fn prepare(req: Request<'_>) -> Result<Launch, String> {
        let support = Support::get();
        let mut notes = Vec::new();
        let missing = support.missing();
        if !missing.is_empty() {
            match req.mode {
                Mode::Strict => {
                    return Err(format!(
                        "this machine cannot confine programs as the job's sandbox requires: it lacks {}; fix that, or set `[sandbox] exec = \"best-effort\"` (or the job's own `[job.sandbox]`) to run them with what there is",
                        missing.join("; ")
                    ));
                }
                Mode::BestEffort => notes.extend(missing.iter().map(|m| format!("without {m}"))),
            }
        }
        if req.run_as.is_some() && !support.root {
            return Err(
                "grants.user needs opsd to run as root: only root may switch users".to_owned(),
            );
        }
        let mut child_side = Vec::new();
        let ruleset = if support.landlock_abi > 0 {
            let (fd, _skipped) = rules::build(req.plan, req.mode)?;
            let raw = fd.as_raw_fd();
            child_side.push(fd);
            Some(raw)
        } else {
            None
        };
        let (filter, socket, supervisor) = if support.seccomp_notify.is_ok() {
            let (ours, theirs) = socket_pair().map_err(|e| format!("socketpair: {e}"))?;
            let raw = theirs.as_raw_fd();
            child_side.push(theirs);
            let sup = Supervisor::start(ours, Arc::new(req.rules))
                .map_err(|e| format!("starting the exec supervisor: {e}"))?;
            let policy = seccomp::Policy {
                unix_allowed: req.unix_granted,
                // Without a mount namespace there is no read-only view of
                // the system to refuse a root child's metadata changes.
                as_root: support.root && req.run_as.is_none() && support.namespaces.is_err(),
                first_exec: None,
            };
            (Some(policy), Some(raw), Some(sup))
        } else {
            (None, None, None)
        };
        let (report_read, report_write) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let report = report_write.as_raw_fd();
        child_side.push(report_write);
        let namespaces = support.namespaces.is_ok();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let setup = Setup {
            daemon: std::process::id() as libc::pid_t,
            root: support.root,
            netns: if support.root && !req.network && namespaces {
                support.empty_netns()
            } else {
                None
            },
            new_namespaces: namespaces,
            uid_map: CString::new(format!("{uid} {uid} 1")).unwrap_or_default(),
            gid_map: CString::new(format!("{gid} {gid} 1")).unwrap_or_default(),
            run_as: req.run_as.map(|r| {
                (
                    r.uid,
                    r.gid,
                    r.groups.iter().map(|g| *g as libc::gid_t).collect(),
                )
            }),
            last_cap: last_cap(),
            ruleset,
            pid_max: support
                .pid_max_per_namespace
                .then(|| CString::new(req.processes.saturating_add(1).max(301).to_string()).ok())
                .flatten(),
            cwd: CString::new(req.cwd.as_os_str().as_encoded_bytes()).ok(),
            tmp: req
                .tmp
                .and_then(|size| CString::new(format!("size={size},mode=1777")).ok()),
            tmp_rights: rules::Allow::ReadWrite.bits(),
            writable: req
                .writable
                .iter()
                .map(|p| {
                    use std::os::unix::fs::MetadataExt;
                    let m = crate::grants::fs::open_grant_dir(p)
                        .and_then(|d| d.metadata())
                        .map_err(|e| format!("fs grant {}: {e}", p.display()))?;
                    Ok(Writable {
                        path: CString::new(p.as_os_str().as_encoded_bytes())
                            .map_err(|e| e.to_string())?,
                        dev: m.dev(),
                        ino: m.ino(),
                    })
                })
                .collect::<Result<_, String>>()?,
            policy: filter,
            filter: None,
            socket,
            report,
        };
        if !support.root && req.network && namespaces {
            // Unprivileged: a fresh network namespace is the only kind
            // there is, so a job with network grants keeps the host's.
            notes.push("network: the host's (opsd is not root)".into());
        }
        Ok(Launch {
            setup: Some(setup),
            child_side,
            report_read: Some(report_read),
            supervisor,
            notes,
        })
    }

    /// Adds the confinement to `cmd`, after any other pre-exec step.
    pub fn apply(&mut self, cmd: &mut tokio::process::Command) {
        let Some(mut setup) = self.setup.take() else {
            return;
        };
        if let Some(mut policy) = setup.policy.take() {
            // The exec of the program itself needs no supervisor: std hands
            // execve(2) the very buffer `get_program` shows (if it ever
            // copies it, that exec is simply checked like the others).
            policy.first_exec = Some(cmd.as_std().get_program().as_encoded_bytes().as_ptr() as u64);
            setup.filter = Some(seccomp::filter(&policy));
        }
        // SAFETY: `confine_child` runs between fork and exec and makes
        // only system calls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || confine_child(&setup));
        }
    }

    /// Closes the daemon's copies of what the child used.
    pub fn spawned(&mut self) {
        self.child_side.clear();
    }

    /// Which step failed, after a failed spawn.
    pub fn failed_step(&mut self) -> Option<&'static str> {
        self.child_side.clear();
        let fd = self.report_read.take()?;
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a live buffer; the write end is
        // closed, so this does not block.
        let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        (n == 1)
            .then(|| Step::from_byte(b[0]).map(Step::words))
            .flatten()
    }

    /// Lets the supervisor run on by itself: it ends when the last
    /// process carrying the filter does.
    pub fn finish(mut self) {
        drop(self.supervisor.take());
    }
}

fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair fills the two-element array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Whether namespaces can be made here: a forked child tries.
pub(super) fn probe_namespaces(root: bool) -> Result<(), String> {
    let flags = if root {
        libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_NEWIPC
    } else {
        libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWIPC
    };
    // SAFETY: the child only calls unshare and _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls in the forked child.
        unsafe {
            let rc = libc::unshare(flags);
            let errno = if rc == 0 {
                0
            } else {
                *libc::__errno_location()
            };
            libc::_exit(errno.min(255));
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child we just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        errno => Err(format!(
            "unshare: {} ({})",
            std::io::Error::from_raw_os_error(errno),
            if root {
                "a container or a seccomp profile that forbids namespaces"
            } else {
                "user namespaces are off: sysctl kernel.unprivileged_userns_clone or user.max_user_namespaces"
            }
        )),
    }
}
