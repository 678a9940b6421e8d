//! The daemon's side of a child's seccomp filter: every `execve` and
//! `connect` the child (or anything it starts) makes waits here, is
//! checked against the job's grants, and is let through or refused.
//!
//! A refusal is sound (the kernel never runs the call) and is recorded as
//! a violation naming the program, what it tried and the grant to add, so
//! the run fails whether or not the plugin looks at the exit status. An
//! allowed call goes on to the kernel, where Landlock and the namespaces
//! enforce the same grants again: a program that rewrites the call's
//! arguments from another thread between this check and the kernel's
//! (the known limit of seccomp notification) still meets those.

use crate::grants::Violations;
use crate::grants::net::ResolvedNet;
use crate::grants::process::Args;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod caller;

use caller::{
    file_id, meta_id, metadata_target, open_in_caller, read_argv, read_bytes, read_c_string,
    socket_domain, writable_on_the_way,
};

/// A Unix socket a job's programs may connect to (`net = ["unix:/path"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixGrant {
    pub path: PathBuf,
}

/// What the supervisor of one exec call allows.
#[derive(Debug)]
pub struct Rules {
    /// The program the plugin started, for messages.
    pub program: String,
    /// Canonical paths the job's programs may run, with the arguments
    /// each may get (a pinned exec grant holds for what programs start
    /// too).
    pub exec: Vec<(PathBuf, Args)>,
    /// The exec grant as written, for messages.
    pub exec_described: String,
    /// Addresses children may connect to; `None` when the job grants no
    /// network.
    pub net: Option<ResolvedNet>,
    /// The net grant as written, for messages.
    pub net_described: String,
    /// Name servers of `/etc/resolv.conf`: port 53 on them is open when
    /// any network is granted, so granted names resolve.
    pub resolvers: Vec<IpAddr>,
    pub unix: Vec<UnixGrant>,
    /// Directories the job may write (canonical): a path that passes
    /// through one can be swapped between this check and the kernel's.
    pub writable: Vec<PathBuf>,
    /// Names of the job's env grant: with the harmless ones a shell sets,
    /// all a program with pinned arguments may get (`BASH_ENV`,
    /// `PYTHONPATH` or `LD_PRELOAD` would change what it runs).
    pub env: Vec<String>,
    pub violations: Violations,
    /// What was refused already: a shell's PATH search tries `/usr/bin/ls`
    /// and `/bin/ls`, one refusal to report.
    pub refused: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Rules {
    /// Records a refusal of `what` once per call (the first thousand
    /// kinds: a program looping on refused calls must not grow the daemon).
    fn refuse(&self, what: &str, message: String) {
        let first = self
            .refused
            .lock()
            .map(|mut r| r.len() < 1000 && r.insert(clip(what, 256)))
            .unwrap_or(false);
        if first {
            self.violations
                .record(clip(&self.violations.masked(&message), 2048));
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), marked
/// when cut: what a program passes may be megabytes.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The supervisor thread of one exec call; it ends by itself once every
/// process that carries the filter has exited (dropping this detaches it).
pub struct Supervisor {
    _thread: std::thread::JoinHandle<()>,
}

impl Supervisor {
    /// Starts waiting on `socket` for the listener the child sends.
    pub fn start(socket: OwnedFd, rules: Arc<Rules>) -> std::io::Result<Supervisor> {
        let thread = std::thread::Builder::new()
            .name("opsd-exec-supervisor".into())
            .spawn(move || {
                if let Some(listener) = receive_listener(&socket) {
                    drop(socket);
                    serve(&listener, &rules);
                }
            })?;
        Ok(Supervisor { _thread: thread })
    }
}

/// Receives the listener descriptor the child sends before its exec; none
/// when the child failed first (its end of the socket closes).
fn receive_listener(socket: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives
    // the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    loop {
        // SAFETY: `msg` describes live buffers.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return None;
        }
        break;
    }
    // SAFETY: CMSG_FIRSTHDR/CMSG_DATA walk the control buffer the kernel
    // filled; the data of an SCM_RIGHTS message is an int array.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// Answers notifications until no process carries the filter any more.
fn serve(listener: &OwnedFd, rules: &Rules) {
    loop {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if pfd.revents & libc::POLLIN == 0 {
            // POLLHUP: the last process with the filter is gone.
            return;
        }
        // SAFETY: the kernel wants a zeroed seccomp_notif to fill.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV fills `notif`.
        if unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notif,
            )
        } != 0
        {
            // ENOENT: the caller died before we read it.
            continue;
        }
        // A bug here must not let calls through: a panic refuses.
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decide(listener, &notif, rules)
        }))
        .unwrap_or_else(|_| {
            rules.refuse(
                "supervisor error",
                format!(
                    "the exec supervisor failed checking a call of confined `{}`; it was refused",
                    rules.program
                ),
            );
            Verdict::Refuse(libc::EACCES)
        });
        let mut resp = libc::seccomp_notif_resp {
            id: notif.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        match verdict {
            Verdict::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Verdict::Refuse(errno) => resp.error = -errno,
        }
        // SAFETY: SEND reads `resp`; ENOENT (the caller died) is fine.
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp,
            );
        }
    }
}

enum Verdict {
    Continue,
    Refuse(i32),
}

/// What to answer one notified system call.
///
/// Long on purpose: it is the table of every call the filter hands to the
/// supervisor, an arm a rule; split, the one place that says what a
/// confined program may do would be scattered.
fn decide(listener: &OwnedFd, n: &libc::seccomp_notif, rules: &Rules) -> Verdict {
    let pid = n.pid;
    let args = n.data.args;
    let nr = libc::c_long::from(n.data.nr);
    // What the call names, read from the caller's memory; checked to be
    // still the same caller before it is trusted.
    if nr == libc::SYS_execve || nr == libc::SYS_execveat {
        let (dirfd, ptr, argv, flags) = if nr == libc::SYS_execve {
            (libc::AT_FDCWD, args[0], args[1], 0)
        } else {
            (args[0] as i32, args[1], args[2], args[4] as i32)
        };
        let Some(raw) = read_c_string(pid, ptr) else {
            return Verdict::Refuse(libc::EFAULT);
        };
        let envp = if nr == libc::SYS_execve {
            args[2]
        } else {
            args[3]
        };
        if !still_valid(listener, n.id) {
            return Verdict::Refuse(libc::ESRCH);
        }
        // The arguments and environment are read only for a pinned
        // program: megabytes of them cost nothing otherwise.
        let call = Exec {
            pid,
            dirfd,
            flags,
            argv,
            envp,
        };
        exec_verdict(&call, &raw, rules, || still_valid(listener, n.id))
    } else if [
        libc::SYS_kill,
        libc::SYS_tkill,
        libc::SYS_tgkill,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_tgsigqueueinfo,
    ]
    .contains(&nr)
    {
        // kill(pid, ...) and rt_sigqueueinfo(tgid, ...) name a process
        // first; tkill(tid) a thread; tgkill(tgid, tid) both.
        let target = args[0] as i32;
        signal_verdict(pid, target, rules)
    } else if nr == libc::SYS_connect {
        let len = (args[2] as usize).min(128);
        let Some(addr) = read_bytes(pid, args[1], len) else {
            return Verdict::Refuse(libc::EFAULT);
        };
        // What the socket is, not what the address says: an address read
        // as IP could be rewritten into a Unix path before the kernel
        // reads it, and only a Unix socket would take that.
        let domain = socket_domain(pid, args[0] as i32);
        if !still_valid(listener, n.id) {
            return Verdict::Refuse(libc::ESRCH);
        }
        let family = addr
            .get(..2)
            .map(|b| i32::from(u16::from_ne_bytes([b[0], b[1]])));
        match (domain, family) {
            (Some(libc::AF_UNIX), Some(libc::AF_UNIX)) => connect_verdict(pid, &addr, rules),
            (Some(libc::AF_UNIX), _) | (None, _) => Verdict::Refuse(libc::EINVAL),
            _ => connect_verdict(pid, &addr, rules),
        }
    } else if (nr == libc::SYS_socket || nr == libc::SYS_socketpair)
        && args[0] as i32 == libc::AF_UNIX
    {
        rules.refuse(
            "unix socket",
            format!(
                "confined `{}` tried to open a Unix socket; the job grants none, so its programs may reach no Unix socket; add net = [\"unix:/path/of/the/socket\"] if the job needs one",
                rules.program
            ),
        );
        Verdict::Refuse(libc::EACCES)
    } else if setid_call(nr, &args) {
        let what = metadata_target(pid, nr, &args);
        rules.refuse(
            &format!("setid {what}"),
            format!(
                "confined `{}` tried to give {what} the setuid or setgid bit, which a job's programs never may (the file would keep it outside the sandbox)",
                rules.program
            ),
        );
        Verdict::Refuse(libc::EPERM)
    } else if nr == libc::SYS_socket || nr == libc::SYS_socketpair {
        let family = args[0] as i32;
        rules.refuse(
            &format!("family {family}"),
            format!(
                "confined `{}` tried to open a socket of address family {family} ({}); a job's programs may use IP, Unix and netlink sockets only",
                rules.program,
                family_name(family)
            ),
        );
        Verdict::Refuse(libc::EAFNOSUPPORT)
    } else if [libc::SYS_sendto, libc::SYS_sendmsg, libc::SYS_sendmmsg].contains(&nr) {
        rules.refuse(
            "fastopen",
            format!(
                "confined `{}` tried TCP Fast Open, a connect that skips the job's net grant checks; use a plain connect",
                rules.program
            ),
        );
        Verdict::Refuse(libc::EOPNOTSUPP)
    } else if nr == libc::SYS_listen {
        rules.refuse(
            "listen",
            format!(
                "confined `{}` tried to listen for connections; a job's programs may only connect out",
                rules.program
            ),
        );
        Verdict::Refuse(libc::EACCES)
    } else {
        // What is left of what the filter sends: the calls that change a
        // file's mode, owner, times or attributes, for a root child.
        let what = metadata_target(pid, nr, &args);
        rules.refuse(
            &format!("metadata {what}"),
            format!(
                "confined `{}` tried to change the mode, owner, times or attributes of {what}; its programs run as root, which owns every root file, so they may not (set grants.user to run them as a user if the job must)",
                rules.program
            ),
        );
        Verdict::Refuse(libc::EPERM)
    }
}

fn family_name(family: i32) -> &'static str {
    match family {
        libc::AF_VSOCK => "vsock, to the hypervisor",
        libc::AF_PACKET => "packet",
        libc::AF_BLUETOOTH => "bluetooth",
        libc::AF_ALG => "kernel crypto",
        libc::AF_XDP => "XDP",
        _ => "not granted",
    }
}

/// Whether a call the filter sent asks for a setuid or setgid bit (the
/// filter sends these calls only then, unless they all go to the
/// supervisor for a root child without a mount namespace).
fn setid_call(nr: libc::c_long, args: &[u64; 6]) -> bool {
    let mode = match nr {
        n if n == libc::SYS_chmod
            || n == libc::SYS_fchmod
            || n == libc::SYS_creat
            || n == libc::SYS_mknod =>
        {
            args[1]
        }
        n if n == libc::SYS_fchmodat
            || n == libc::SYS_fchmodat2
            || n == libc::SYS_mknodat
            || n == libc::SYS_open =>
        {
            args[2]
        }
        n if n == libc::SYS_openat => args[3],
        _ => return false,
    };
    mode & 0o6000 != 0
}

fn still_valid(listener: &OwnedFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: ID_VALID reads the u64 we pass.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &mut id,
        ) == 0
    }
}

/// An `execve` or `execveat` as the caller made it.
struct Exec {
    pid: u32,
    dirfd: i32,
    flags: i32,
    /// Addresses of its argv and envp arrays in the caller.
    argv: u64,
    envp: u64,
}

/// Whether one `execve` may go on.
///
/// Long on purpose: the checks of one exec in the order they must hold
/// (the path resolved in the caller's root, the grant, no writable
/// directory on the way, the pinned arguments, the environment), each
/// re-validated against the notification before it is trusted.
fn exec_verdict(call: &Exec, raw: &[u8], rules: &Rules, still_valid: impl Fn() -> bool) -> Verdict {
    let (pid, dirfd, flags) = (call.pid, call.dirfd, call.flags);
    let named = Path::new(std::ffi::OsStr::from_bytes(raw));
    if let Some(dir) = writable_on_the_way(pid, dirfd, named, flags, &rules.writable) {
        rules.refuse(
            &format!("through {}", dir.display()),
            format!(
                "confined `{}` tried to run {} by a path through {}, a directory the job may write (what it names could change under the check); run programs by their installed paths",
                rules.program,
                named.display(),
                dir.display()
            ),
        );
        return Verdict::Refuse(libc::EACCES);
    }
    let file = match open_in_caller(pid, dirfd, named, flags) {
        Ok(f) => f,
        // Not there: the kernel would say so too (a PATH search tries
        // several names).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return Verdict::Refuse(e.raw_os_error().unwrap_or(libc::ENOENT));
        }
        Err(e) => {
            rules.refuse(
                &format!("unresolved {}", named.display()),
                format!(
                    "confined `{}` tried to run {}, which could not be checked ({e}); a program may run only what the job's exec grant names, by a plain path",
                    rules.program,
                    named.display()
                ),
            );
            return Verdict::Refuse(libc::EACCES);
        }
    };
    let id = file_id(&file);
    let shown = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| named.display().to_string());
    let entries: Vec<&Args> = rules
        .exec
        .iter()
        .filter(|(p, _)| id.is_some() && std::fs::metadata(p).ok().map(|m| meta_id(&m)) == id)
        .map(|(_, a)| a)
        .collect();
    if entries.is_empty() {
        rules.refuse(
            &shown,
            format!(
                "confined `{}` tried to run {shown}, which the job's exec grant ({}) does not name; add it to `exec = [...]` if the job needs it",
                rules.program, rules.exec_described
            ),
        );
        return Verdict::Refuse(libc::EACCES);
    }
    if entries.iter().any(|a| matches!(a, Args::Any)) {
        return Verdict::Continue;
    }
    // Pinned: every argument must be read to be matched.
    let argv = read_argv(pid, call.argv);
    let envp = read_argv(pid, call.envp);
    if !still_valid() {
        return Verdict::Refuse(libc::ESRCH);
    }
    let Some(argv) = argv else {
        rules.refuse(
            &format!("{shown} unreadable arguments"),
            format!(
                "confined `{}` tried to run {shown} with arguments too long to check against the job's exec grant ({})",
                rules.program, rules.exec_described
            ),
        );
        return Verdict::Refuse(libc::E2BIG);
    };
    let given = argv.get(1..).unwrap_or_default();
    if entries.iter().any(|a| a.allows(given)) {
        return match envp.map(|e| unpinned_variable(&e, &rules.env)) {
            Some(None) => Verdict::Continue,
            Some(Some(name)) => {
                rules.refuse(
                    &format!("{shown} env {name}"),
                    format!(
                        "confined `{}` tried to run {shown}, which the job's exec grant pins, with `{name}` in its environment, which could change what it runs; only the job's env grant and a shell's own variables pass",
                        rules.program
                    ),
                );
                Verdict::Refuse(libc::EACCES)
            }
            None => {
                rules.refuse(
                    &format!("{shown} unreadable environment"),
                    format!(
                        "confined `{}` tried to run {shown} with an environment too large to check against the job's exec grant",
                        rules.program
                    ),
                );
                Verdict::Refuse(libc::E2BIG)
            }
        };
    }
    rules.refuse(
        &format!("{shown} {}", crate::diag::toml_strings(given)),
        format!(
            "confined `{}` tried to run {shown} with arguments {}, which the job's exec grant ({}) does not allow; add an entry with those `args` if the job needs it",
            rules.program,
            crate::diag::toml_strings(given),
            rules.exec_described
        ),
    );
    Verdict::Refuse(libc::EACCES)
}

/// Variables a shell sets on its own, harmless to any program.
const SHELL_VARIABLES: &[&str] = &[
    "PATH", "PWD", "OLDPWD", "SHLVL", "_", "LANG", "LANGUAGE", "TERM", "TZ", "USER", "LOGNAME",
    "SHELL", "COLUMNS", "LINES",
];

/// The first variable of `envp` neither granted nor a shell's own.
fn unpinned_variable(envp: &[String], granted: &[String]) -> Option<String> {
    envp.iter()
        .map(|kv| kv.split('=').next().unwrap_or(kv))
        .find(|name| {
            !SHELL_VARIABLES.contains(name)
                && !name.starts_with("LC_")
                && !granted.iter().any(|g| g == name)
        })
        .map(str::to_owned)
}

/// A signal to one process (not a group: those stay inside the caller's
/// PID namespace) must go to a process the caller can see in its own
/// `/proc`, which shows only what its sandbox started.
fn signal_verdict(pid: u32, target: i32, rules: &Rules) -> Verdict {
    if target <= 0 {
        return Verdict::Continue;
    }
    let own_proc = format!("/proc/{pid}/root/proc/{target}");
    if std::fs::symlink_metadata(&own_proc).is_ok() {
        return Verdict::Continue;
    }
    rules.refuse(
        &format!("signal {target}"),
        format!(
            "confined `{}` tried to signal process {target}, which is not one it started; programs may signal only processes of their own sandbox",
            rules.program
        ),
    );
    Verdict::Refuse(libc::ESRCH)
}

/// Unix sockets that name-service lookups try on their own (nscd,
/// systemd's user database): refused quietly, as if absent.
const QUIET_UNIX: &[&str] = &["/run/nscd/", "/var/run/nscd/", "/run/systemd/userdb/"];

fn connect_verdict(pid: u32, addr: &[u8], rules: &Rules) -> Verdict {
    if addr.len() < 2 {
        return Verdict::Continue;
    }
    let family = i32::from(u16::from_ne_bytes([addr[0], addr[1]]));
    let target = match family {
        libc::AF_INET if addr.len() >= 8 => {
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let ip = Ipv4Addr::new(addr[4], addr[5], addr[6], addr[7]);
            SocketAddr::new(IpAddr::V4(ip), port)
        }
        libc::AF_INET6 if addr.len() >= 24 => {
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let mut b = [0u8; 16];
            b.copy_from_slice(&addr[8..24]);
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), port)
        }
        libc::AF_UNIX => return unix_verdict(pid, &addr[2..], rules),
        _ => return Verdict::Continue,
    };
    let Some(net) = &rules.net else {
        rules.refuse(
            &target.to_string(),
            format!(
                "confined `{}` tried to connect to {target}; the job grants no network, so its programs run without one; add \"{target}\" to `net = [...]` if the job needs it",
                rules.program
            ),
        );
        return Verdict::Refuse(libc::ENETUNREACH);
    };
    let ip = target.ip().to_canonical();
    if net.allows(target) || (target.port() == 53 && rules.resolvers.contains(&ip)) {
        return Verdict::Continue;
    }
    rules.refuse(
        &target.to_string(),
        format!(
            "confined `{}` tried to connect to {target}, which the job's net grant ({}) does not allow; add \"{target}\" to `net = [...]` if the job needs it",
            rules.program, rules.net_described
        ),
    );
    Verdict::Refuse(libc::EACCES)
}

fn unix_verdict(pid: u32, path: &[u8], rules: &Rules) -> Verdict {
    let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
    if end == 0 {
        // Abstract: Landlock keeps the child to its own sandbox's.
        let name = String::from_utf8_lossy(path.get(1..path.len().min(64)).unwrap_or_default())
            .into_owned();
        rules.refuse(
            &format!("@{name}"),
            format!(
                "confined `{}` tried to connect to the abstract Unix socket @{name}; programs may reach only Unix sockets the job grants by path",
                rules.program
            ),
        );
        return Verdict::Refuse(libc::EACCES);
    }
    let named = Path::new(std::ffi::OsStr::from_bytes(&path[..end]));
    if let Some(dir) = writable_on_the_way(pid, libc::AT_FDCWD, named, 0, &rules.writable) {
        rules.refuse(
            &format!("unix through {}", dir.display()),
            format!(
                "confined `{}` tried to connect to the Unix socket {} by a path through {}, a directory the job may write; name the socket by its own path",
                rules.program,
                named.display(),
                dir.display()
            ),
        );
        return Verdict::Refuse(libc::EACCES);
    }
    // What the kernel will reach, as the caller sees it: a granted name
    // made a symlink to something else is something else.
    let reached = open_in_caller(pid, libc::AT_FDCWD, named, 0).ok();
    let id = reached.as_ref().and_then(file_id);
    if id.is_some()
        && rules
            .unix
            .iter()
            .any(|g| std::fs::metadata(&g.path).ok().map(|m| meta_id(&m)) == id)
    {
        return Verdict::Continue;
    }
    let real = reached
        .and_then(|f| std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok())
        .unwrap_or_else(|| named.to_owned());
    let text = real.to_string_lossy();
    if !QUIET_UNIX.iter().any(|q| text.starts_with(q)) {
        rules.refuse(
            &text,
            format!(
                "confined `{}` tried to connect to the Unix socket {}, which the job's net grant does not name; add \"unix:{}\" to `net = [...]` if the job needs it",
                rules.program,
                real.display(),
                real.display()
            ),
        );
    }
    Verdict::Refuse(libc::EACCES)
}

/// Name servers `/etc/resolv.conf` lists.
pub fn resolvers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect()
}
