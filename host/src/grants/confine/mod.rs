//! Confinement of the programs a plugin starts through its exec grant.
//!
//! A plugin's own code is held by WASI; a program it starts is a native
//! process, so the kernel must hold it instead. Every child of
//! `process.run` starts, before `exec`:
//!
//! - in a new PID namespace, as its PID 1, so that everything it starts
//!   dies with it (even what called `setsid`), and it cannot see or name
//!   processes outside; with a `/proc` of that namespace (read only);
//! - with no network at all (an empty network namespace) unless the job
//!   grants some, and then with TCP only to the granted ports (Landlock)
//!   and connects checked against the granted addresses ([`supervisor`]);
//! - without privileges: no capabilities (bounding set empty, `SECBIT_NOROOT`
//!   locked), `no_new_privs`, and as the job's `user`/`group` when set;
//! - under a Landlock ruleset ([`rules`]): read the job's fs grants and
//!   the system base, write only its rw grants, execute only the granted
//!   programs and what the kernel needs to start them; no signals and no
//!   abstract Unix sockets outside its own sandbox;
//! - under a seccomp filter ([`seccomp`]) that hands every `execve`,
//!   `connect` and Unix `socket` to a supervisor in the daemon, which
//!   refuses what the grants do not name and records why, so the refusal
//!   fails the run and names the grant to add;
//! - with exactly stdin, stdout and stderr open.
//!
//! [`Support`] says what this kernel offers. In `strict` mode (the
//! default) a job whose exec would run with less fails with the reason;
//! `[sandbox] exec = "best-effort"` runs it with what there is and says
//! what is missing in the run's log.

pub(crate) mod launch;
pub mod rules;
mod seccomp;
pub(crate) mod supervisor;

pub(crate) use launch::Launch;
pub use supervisor::UnixGrant;

use serde::Deserialize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Whether a job's programs may run with less confinement than asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Every part of the confinement, or the exec fails saying which part
    /// this machine lacks.
    #[default]
    Strict,
    /// What this machine offers; the run's log says what was missing.
    BestEffort,
}

impl Mode {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::BestEffort => "best-effort",
        }
    }
}

/// A user (and group) to run a job's programs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// As written: `postgres`, or a number.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, read when the config loads (`initgroups`
    /// needs NSS, which cannot run between fork and exec).
    pub groups: Vec<u32>,
}

impl RunAs {
    /// Looks up `user` (and `group`, else the user's primary group).
    pub fn lookup(user: &str, group: Option<&str>) -> Result<RunAs, String> {
        let (uid, primary) = passwd(user).ok_or_else(|| {
            format!("user `{user}` does not exist on this host; create it or name another")
        })?;
        let gid = match group {
            None => primary,
            Some(g) => group_id(g).ok_or_else(|| {
                format!("group `{g}` does not exist on this host; create it or name another")
            })?,
        };
        let mut groups = supplementary_groups(user, gid);
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        Ok(RunAs {
            user: user.to_owned(),
            uid,
            gid,
            groups,
        })
    }
}

fn passwd(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: getpwnam_r/getpwuid_r write into `pwd` and `buf` (sized as
    // passed) and set `result` to null or to `pwd`.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result = std::ptr::null_mut();
        let rc = match name.parse::<u32>() {
            Ok(uid) => libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result),
            Err(_) => libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            ),
        };
        if rc != 0 || result.is_null() {
            // A bare number with no passwd entry is still a valid uid.
            return name.parse::<u32>().ok().map(|u| (u, u));
        }
        Some((pwd.pw_uid, pwd.pw_gid))
    }
}

fn group_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: as in `passwd`, for getgrnam_r.
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

fn supplementary_groups(user: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = std::ffi::CString::new(user) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: getgrouplist writes at most `count` entries into
        // `groups` and sets `count` to how many there are.
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= n || n > 65536 {
            return vec![gid];
        }
        n = count;
    }
}

/// What a job's children get besides the fs, exec and net grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildPolicy {
    pub mode: Mode,
    /// `grants.user` / `grants.group`; `None` keeps the daemon's user
    /// (without its capabilities).
    pub run_as: Option<RunAs>,
    /// `grants.system_paths`: more read-only paths than the base.
    pub system_paths: Vec<PathBuf>,
    /// `net = ["unix:/path"]`: Unix sockets the programs may connect to.
    pub unix: Vec<UnixGrant>,
    /// `grants.tmp = "64M"`: a private /tmp of that size for the programs.
    pub tmp: Option<u64>,
}

/// What this kernel offers for confinement, found once.
#[derive(Debug)]
pub struct Support {
    /// Landlock ABI version (0: none).
    pub landlock_abi: i32,
    /// An empty network namespace children join, when the daemon may
    /// make one (root); without root each child makes its own inside a
    /// user namespace.
    empty_netns: Option<OwnedFd>,
    /// Whether the daemon runs as root (children then need no user
    /// namespace).
    pub root: bool,
    /// Namespaces (user, net, pid) can be made, and why not.
    pub namespaces: Result<(), String>,
    /// seccomp user notification works, and why not.
    pub seccomp_notify: Result<(), String>,
    /// `kernel.pid_max` belongs to each PID namespace (Linux 6.14): a cap
    /// on a child's processes without a cgroup. On older kernels it is
    /// the whole machine's, and never written.
    pub pid_max_per_namespace: bool,
}

/// The oldest Landlock ABI strict mode accepts: 6 (Linux 6.12) scopes
/// signals and abstract Unix sockets; 4 brought TCP rules, 3 truncation.
pub const LANDLOCK_ABI_REQUIRED: i32 = 6;

impl Support {
    /// Probes the kernel once per process.
    pub fn get() -> &'static Support {
        static SUPPORT: OnceLock<Support> = OnceLock::new();
        SUPPORT.get_or_init(Support::probe)
    }

    fn probe() -> Support {
        // SAFETY: landlock_create_ruleset with a null attr, size 0 and the
        // VERSION flag only returns the ABI version (or an error).
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                1u32, // LANDLOCK_CREATE_RULESET_VERSION
            )
        };
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let (empty_netns, namespaces) = if root {
            match make_empty_netns() {
                Ok(fd) => (Some(fd), launch::probe_namespaces(true)),
                Err(e) => (None, Err(format!("cannot make a network namespace: {e}"))),
            }
        } else {
            (None, launch::probe_namespaces(false))
        };
        let s = Support {
            landlock_abi: i32::try_from(abi).unwrap_or(0).max(0),
            empty_netns,
            root,
            namespaces,
            seccomp_notify: seccomp::probe(),
            pid_max_per_namespace: kernel_at_least(6, 14),
        };
        tracing::debug!(?s.landlock_abi, root, namespaces = ?s.namespaces, seccomp = ?s.seccomp_notify, "child confinement support");
        s
    }

    /// What strict mode needs and this machine lacks, in words; empty
    /// when everything is there.
    pub fn missing(&self) -> Vec<String> {
        let mut m = Vec::new();
        if self.landlock_abi < LANDLOCK_ABI_REQUIRED {
            m.push(if self.landlock_abi == 0 {
                "Landlock (the kernel has none, or it is not enabled at boot: add `lsm=...,landlock`)".to_owned()
            } else {
                format!(
                    "Landlock ABI {LANDLOCK_ABI_REQUIRED} (Linux 6.12); this kernel has ABI {}",
                    self.landlock_abi
                )
            });
        }
        if let Err(e) = &self.namespaces {
            m.push(format!("namespaces ({e})"));
        }
        if let Err(e) = &self.seccomp_notify {
            m.push(format!("seccomp user notification ({e})"));
        }
        m
    }

    /// One line for `opsd check` and logs.
    pub fn summary(&self) -> String {
        let missing = self.missing();
        if missing.is_empty() {
            format!(
                "Landlock ABI {}, namespaces, seccomp notification{}",
                self.landlock_abi,
                if self.root {
                    ""
                } else {
                    " (unprivileged: in a user namespace)"
                }
            )
        } else {
            format!("missing {}", missing.join("; "))
        }
    }

    /// The one empty network namespace every job without a network
    /// grant joins (made once: a namespace per call costs a synchronize_rcu
    /// in the kernel, milliseconds).
    pub(crate) fn empty_netns(&self) -> Option<i32> {
        self.empty_netns.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// Whether the running kernel is `major.minor` or later.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// An empty network namespace (a loopback that is down, nothing else),
/// made on a short-lived thread (`unshare` moves only the calling
/// thread) and kept alive by the descriptor.
fn make_empty_netns() -> std::io::Result<OwnedFd> {
    std::thread::spawn(|| {
        // SAFETY: unshare(2) affects only this thread's namespaces; the
        // thread ends right after.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let path = c"/proc/thread-self/ns/net";
        // SAFETY: open(2) of a NUL-terminated path.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// The system base: what ordinary programs read besides what a job
/// grants. Directories of code and data, not `/etc` as a whole (no
/// `/etc/shadow`), and only the devices a program expects to find.
pub const SYSTEM_BASE: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    // Dynamic linking, names, time, TLS, locale.
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/crypto-policies",
    "/etc/alternatives",
    "/etc/locale.alias",
    "/etc/os-release",
    "/etc/mime.types",
    // What a process reads of the machine (its /proc is its own, mounted
    // for its PID namespace, and added by the child).
    "/sys/devices/system/cpu",
];

/// Devices every program may read and write.
pub const SYSTEM_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// Devices every program may read.
pub const SYSTEM_RANDOM: &[&str] = &["/dev/urandom", "/dev/random"];
