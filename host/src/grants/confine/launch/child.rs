//! The forked child's side of a launch: between fork and exec only system
//! calls on memory prepared before the fork (no allocation, no locks).
//! Namespaces, the re-fork into PID 1 and the relay that stays outside,
//! mounts, privileges, Landlock and the seccomp listener.

use super::super::seccomp;
use super::Setup;

/// Steps of the child's setup, for the message when one fails.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(super) enum Step {
    Network = 1,
    PidNamespace,
    MountNamespace,
    Grants,
    UserNamespace,
    Fork,
    Capabilities,
    SwitchUser,
    NoNewPrivs,
    Descriptors,
    Landlock,
    Seccomp,
    Supervisor,
}

impl Step {
    pub(super) fn from_byte(b: u8) -> Option<Step> {
        use Step::*;
        [
            Network,
            PidNamespace,
            MountNamespace,
            Grants,
            UserNamespace,
            Fork,
            Capabilities,
            SwitchUser,
            NoNewPrivs,
            Descriptors,
            Landlock,
            Seccomp,
            Supervisor,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }

    pub(super) fn words(self) -> &'static str {
        match self {
            Step::Network => "joining the empty network namespace",
            Step::PidNamespace => "making its PID namespace",
            Step::MountNamespace => {
                "mounting its own /proc, the file system read-only and its grants"
            }
            Step::Grants => {
                "finding its read-write grants where the daemon found them (one was replaced, or a symlink put in its path)"
            }
            Step::UserNamespace => "making its user namespace",
            Step::Fork => "starting it as PID 1 of its namespace",
            Step::Capabilities => "dropping capabilities",
            Step::SwitchUser => "switching to the job's user",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::Descriptors => "closing inherited descriptors",
            Step::Landlock => "applying the Landlock ruleset",
            Step::Seccomp => "installing the seccomp filter",
            Step::Supervisor => "handing the seccomp listener to the daemon",
        }
    }
}

/// Notes the failing step for the daemon and returns the error.
fn fail(s: &Setup, step: Step) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    let b = [step as u8];
    // SAFETY: write(2) of one byte from a live buffer.
    unsafe {
        libc::write(s.report, b.as_ptr().cast(), 1);
    }
    e
}

macro_rules! check {
    ($s:expr, $step:expr, $rc:expr) => {
        if ($rc) < 0 {
            return Err(fail($s, $step));
        }
    };
}

/// Runs in the forked child: namespaces, privileges, descriptors,
/// Landlock and seccomp, in that order (each later step needs what the
/// earlier ones still had: namespaces need capabilities, the filter needs
/// `no_new_privs`).
///
/// Long on purpose: between fork and exec only system calls on data
/// prepared before the fork are safe, and the order of the steps is the
/// security argument; read top to bottom, it is checked in one place.
pub(super) fn confine_child(s: &Setup) -> std::io::Result<()> {
    // SAFETY (whole function): only system calls, on memory prepared
    // before the fork; no allocation.
    unsafe {
        let mut pid_namespace = false;
        if s.new_namespaces {
            if s.root {
                if let Some(fd) = s.netns {
                    check!(s, Step::Network, libc::setns(fd, libc::CLONE_NEWNET));
                }
                check!(
                    s,
                    Step::PidNamespace,
                    libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC)
                );
            } else {
                check!(
                    s,
                    Step::UserNamespace,
                    libc::unshare(
                        libc::CLONE_NEWUSER
                            | libc::CLONE_NEWNET
                            | libc::CLONE_NEWPID
                            | libc::CLONE_NEWNS
                            | libc::CLONE_NEWIPC
                    )
                );
                check!(
                    s,
                    Step::UserNamespace,
                    write_file(c"/proc/self/setgroups", b"deny")
                );
                check!(
                    s,
                    Step::UserNamespace,
                    write_file(c"/proc/self/uid_map", s.uid_map.as_bytes())
                );
                check!(
                    s,
                    Step::UserNamespace,
                    write_file(c"/proc/self/gid_map", s.gid_map.as_bytes())
                );
            }
            // Mounts made from here on stay in this namespace.
            check!(
                s,
                Step::MountNamespace,
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null()
                )
            );
            pid_namespace = true;
        }
        if pid_namespace {
            // fork(2) without glibc's atfork handlers.
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            check!(s, Step::Fork, pid);
            if pid > 0 {
                relay(pid as libc::pid_t, s.daemon);
            }
            // PID 1 of the new namespace: dies with the relay.
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            // A /proc of its own namespace: /proc/self works for every
            // process it starts, and no other process is there to see.
            check!(
                s,
                Step::MountNamespace,
                libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null()
                )
            );
            // No executable memfds in this namespace (Linux 6.3+; older
            // kernels lack the knob and the write fails harmlessly), and
            // no more processes than the cap, cgroup or not (only where
            // the kernel keeps pid_max per namespace).
            write_file(c"/proc/sys/vm/memfd_noexec", b"2");
            if let Some(max) = &s.pid_max {
                write_file(c"/proc/sys/kernel/pid_max", max.as_bytes());
            }
            // A private /tmp, gone with the namespace.
            if let Some(options) = &s.tmp {
                check!(
                    s,
                    Step::MountNamespace,
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        c"/tmp".as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        options.as_ptr().cast()
                    )
                );
            }
            // The whole file system read-only but the rw grants, which are
            // noexec: root owns every root file, and Landlock does not
            // cover changing a file's mode, owner, times or attributes;
            // a read-only mount refuses them all.
            check!(
                s,
                Step::MountNamespace,
                mount_setattr(
                    libc::AT_FDCWD,
                    c"/",
                    libc::AT_RECURSIVE as u32,
                    ATTR_RDONLY,
                    0
                )
            );
            // Each rw grant: found again by path without following a
            // symlink, checked to be the directory the daemon opened, then
            // cloned, made writable (noexec), and mounted on itself, all by
            // descriptor: nothing swapped into its path can be reached.
            for grant in &s.writable {
                let dir = open_plain_dir(&grant.path);
                let mut st: libc::stat = std::mem::zeroed();
                if dir < 0
                    || libc::fstat(dir, &mut st) != 0
                    || (st.st_dev, st.st_ino) != (grant.dev, grant.ino)
                {
                    return Err(fail(s, Step::Grants));
                }
                let tree = libc::syscall(
                    libc::SYS_open_tree,
                    dir,
                    c"".as_ptr(),
                    (OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32)
                        | libc::AT_RECURSIVE as u32,
                ) as i32;
                check!(s, Step::MountNamespace, tree);
                check!(
                    s,
                    Step::MountNamespace,
                    mount_setattr(
                        tree,
                        c"",
                        (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32,
                        ATTR_NOEXEC | ATTR_NOSUID | ATTR_NODEV,
                        ATTR_RDONLY
                    )
                );
                check!(
                    s,
                    Step::MountNamespace,
                    libc::syscall(
                        libc::SYS_move_mount,
                        tree,
                        c"".as_ptr(),
                        dir,
                        c"".as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
                    )
                );
                libc::close(tree);
                libc::close(dir);
            }
            if s.tmp.is_some() {
                check!(
                    s,
                    Step::MountNamespace,
                    mount_setattr(libc::AT_FDCWD, c"/tmp", 0, 0, ATTR_RDONLY)
                );
            }
            // The working directory on what is mounted now, entered by a
            // path without symlinks.
            if let Some(cwd) = &s.cwd {
                let dir = open_plain_dir(cwd);
                if dir < 0 || libc::fchdir(dir) != 0 {
                    // Hidden under a private /tmp (a data directory there):
                    // nowhere is as good as anywhere for a job without
                    // grants; a grant that is not there fails below.
                    check!(s, Step::MountNamespace, libc::chdir(c"/".as_ptr()));
                }
                if dir >= 0 {
                    libc::close(dir);
                }
            }
        }
        // Capabilities (when there are any to drop: as root, or inside
        // the user namespace): the bounding set first (it needs
        // CAP_SETPCAP), then lock root out of ever regaining them on exec.
        let privileged = s.root || pid_namespace;
        for cap in 0..=s.last_cap {
            if !privileged {
                break;
            }
            libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
        }
        let bits = libc::SECBIT_NOROOT
            | libc::SECBIT_NOROOT_LOCKED
            | libc::SECBIT_NO_SETUID_FIXUP
            | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
            | libc::SECBIT_KEEP_CAPS_LOCKED
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        if privileged {
            check!(
                s,
                Step::Capabilities,
                libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0, 0, 0)
            );
        }
        if let Some((uid, gid, groups)) = &s.run_as {
            check!(
                s,
                Step::SwitchUser,
                libc::setgroups(groups.len(), groups.as_ptr())
            );
            check!(s, Step::SwitchUser, libc::setresgid(*gid, *gid, *gid));
            check!(s, Step::SwitchUser, libc::setresuid(*uid, *uid, *uid));
        }
        if privileged {
            check!(s, Step::Capabilities, drop_all_capabilities());
        }
        check!(
            s,
            Step::Capabilities,
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0
            )
        );
        check!(
            s,
            Step::NoNewPrivs,
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        );
        // Nothing but stdin, stdout and stderr survives the exec.
        check!(
            s,
            Step::Descriptors,
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC
            )
        );
        if let Some(ruleset) = s.ruleset {
            // Its own /proc (read only): a private one in its namespace,
            // else just its own entry (then what it starts has none).
            add_path_rule(
                ruleset,
                if pid_namespace {
                    c"/proc"
                } else {
                    c"/proc/self"
                },
                LANDLOCK_READ,
            );
            if pid_namespace && s.tmp.is_some() {
                add_path_rule(ruleset, c"/tmp", s.tmp_rights);
            }
            check!(
                s,
                Step::Landlock,
                libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32)
            );
        }
        if let (Some(filter), Some(socket)) = (&s.filter, s.socket) {
            let listener = match seccomp::install(filter) {
                Ok(fd) => fd,
                Err(_) => return Err(fail(s, Step::Seccomp)),
            };
            check!(s, Step::Supervisor, send_fd(socket, listener));
            libc::close(listener);
        }
    }
    Ok(())
}

const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

/// An `O_PATH` directory descriptor of `path`, no symlink followed (-1 if
/// there is none such).
unsafe fn open_plain_dir(path: &std::ffi::CStr) -> i32 {
    // SAFETY: open_how is plain integers; openat2 reads it and the path.
    unsafe {
        let mut how: libc::open_how = std::mem::zeroed();
        how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        ) as i32
    }
}

const ATTR_RDONLY: u64 = 0x1;
const ATTR_NOSUID: u64 = 0x2;
const ATTR_NODEV: u64 = 0x4;
const ATTR_NOEXEC: u64 = 0x8;

/// mount_setattr(2) on `path` (and, with AT_RECURSIVE, the mounts below).
unsafe fn mount_setattr(
    dirfd: i32,
    path: &std::ffi::CStr,
    flags: u32,
    set: u64,
    clear: u64,
) -> libc::c_long {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (sized as passed) and the path.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

/// Adds a path-beneath rule for `path` to `ruleset` (between fork and
/// exec: system calls only). A path that cannot be opened gets none.
unsafe fn add_path_rule(ruleset: i32, path: &std::ffi::CStr, rights: u64) {
    // SAFETY: open/landlock_add_rule/close on a NUL-terminated path and a
    // live attribute struct.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        if fd < 0 {
            return;
        }
        let attr = PathBeneathAttr {
            allowed_access: rights,
            parent_fd: fd,
        };
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            1u32, // LANDLOCK_RULE_PATH_BENEATH
            &attr as *const PathBeneathAttr,
            0u32,
        );
        libc::close(fd);
    }
}

/// `struct landlock_path_beneath_attr`.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR.
const LANDLOCK_READ: u64 = (1 << 2) | (1 << 3);

/// The relay: holds nothing open, waits for the program and leaves the
/// way it did, so the daemon sees the program's own exit status; if the
/// daemon dies first, it kills the program (and so its whole namespace).
unsafe fn relay(child: libc::pid_t, daemon: libc::pid_t) -> ! {
    // SAFETY: system calls only, in the forked child.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let program = libc::syscall(libc::SYS_pidfd_open, child, 0u32) as i32;
        let opsd = libc::syscall(libc::SYS_pidfd_open, daemon, 0u32) as i32;
        if libc::getppid() != daemon {
            libc::kill(child, libc::SIGKILL);
        } else if program >= 0 && opsd >= 0 {
            let mut fds = [
                libc::pollfd {
                    fd: program,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: opsd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            loop {
                let n = libc::poll(fds.as_mut_ptr(), 2, -1);
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                if n > 0 && fds[1].revents != 0 {
                    libc::kill(child, libc::SIGKILL);
                }
                break;
            }
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(child, &mut status, 0);
            if r == child {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = libc::WTERMSIG(status);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig)
    }
}

unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> libc::c_int {
    // SAFETY: open/write/close on a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if n == data.len() as isize { 0 } else { -1 }
    }
}

/// capset(2) to nothing: no effective, permitted or inheritable
/// capability.
unsafe fn drop_all_capabilities() -> libc::c_long {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads the header and two data structs.
    unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) }
}

/// Sends one descriptor over a Unix socket.
unsafe fn send_fd(socket: i32, fd: i32) -> libc::ssize_t {
    // SAFETY: every pointer in `msg` refers to a live stack buffer; the
    // CMSG macros stay inside `control`.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL)
    }
}
