//! The seccomp filter of a confined child: `execve`, `connect` and the
//! calls that send signals go to the daemon's supervisor, which can name
//! what it refuses;
//! a few calls that only widen what a process can reach (io_uring, which
//! seccomp cannot see into, new namespaces, kernel keyrings, BPF) fail.
//!
//! The filter is built in the daemon; the child installs it with
//! [`install`], which makes only system calls, as the time between fork
//! and exec requires.

use libc::sock_filter;

/// x86_64 syscalls of the x32 ABI carry this bit; the filter refuses them
/// so that a second numbering cannot slip past it.
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// S_ISUID | S_ISGID.
const SETID_BITS: u32 = 0o6000;

/// Open flags that create a file (O_CREAT, __O_TMPFILE).
const CREATES: u32 = libc::O_CREAT as u32 | 0x0040_0000;

/// `clone` flags that make namespaces.
const CLONE_NEW_ANY: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

// Offsets into `struct seccomp_data`.
const NR: u32 = 0;
const ARCH_AT: u32 = 4;
const fn arg_low(n: u32) -> u32 {
    16 + 8 * n
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;
const AND: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;

const fn arg_high(n: u32) -> u32 {
    20 + 8 * n
}

/// Where a conditional jump goes: on to the next instruction, or to a
/// label placed later.
#[derive(Clone, Copy)]
enum To {
    Next,
    Label(&'static str),
}

/// A classic-BPF program with forward labels, resolved by [`Asm::finish`];
/// labels are local to the block they are placed in (each syscall's).
struct Asm {
    ins: Vec<(u32, To, To, u32)>,
    /// (label, instruction index) of the current block.
    labels: Vec<(&'static str, usize)>,
    out: Vec<sock_filter>,
}

impl Asm {
    fn new() -> Asm {
        Asm {
            ins: Vec::new(),
            labels: Vec::new(),
            out: Vec::new(),
        }
    }

    fn op(&mut self, code: u32, k: u32) -> &mut Self {
        self.ins.push((code, To::Next, To::Next, k));
        self
    }

    fn jump(&mut self, code: u32, k: u32, jt: To, jf: To) -> &mut Self {
        self.ins.push((code, jt, jf, k));
        self
    }

    fn ret(&mut self, action: u32) -> &mut Self {
        self.op(RET, action)
    }

    fn label(&mut self, name: &'static str) -> &mut Self {
        self.labels.push((name, self.ins.len()));
        self
    }

    /// Ends a block: resolves its labels and appends it.
    fn flush(&mut self) {
        let at = |to: To, i: usize, labels: &[(&str, usize)]| -> u8 {
            match to {
                To::Next => 0,
                To::Label(l) => {
                    let target = labels
                        .iter()
                        .find(|(n, _)| *n == l)
                        .map(|(_, t)| *t)
                        .unwrap_or(i + 1);
                    u8::try_from(target - i - 1).unwrap_or(0)
                }
            }
        };
        for (i, (code, jt, jf, k)) in self.ins.iter().enumerate() {
            self.out.push(sock_filter {
                code: *code as u16,
                jt: at(*jt, i, &self.labels),
                jf: at(*jf, i, &self.labels),
                k: *k,
            });
        }
        self.ins.clear();
        self.labels.clear();
    }

    fn finish(mut self) -> Vec<sock_filter> {
        self.flush();
        self.out
    }
}

/// What one syscall number leads to.
enum Then {
    /// This action, whatever the arguments.
    Ret(u32),
    /// A block that looks at the arguments (it ends in returns).
    Block(Vec<sock_filter>),
}

/// A filter as a dispatch on the syscall number: the number is loaded
/// once, compared with each listed call in turn, and anything not listed
/// is allowed. Small, so the kernel compiles it quickly at every exec.
struct Dispatch {
    rules: Vec<(libc::c_long, Then)>,
}

impl Dispatch {
    fn ret(&mut self, nr: libc::c_long, action: u32) {
        self.rules.push((nr, Then::Ret(action)));
    }

    fn block(&mut self, nr: libc::c_long, body: impl FnOnce(&mut Asm)) {
        let mut a = Asm::new();
        body(&mut a);
        self.rules.push((nr, Then::Block(a.finish())));
    }

    /// `header` (arch checks), then the dispatch, `RET ALLOW`, the blocks
    /// and the shared returns.
    fn finish(self, header: Vec<sock_filter>) -> Vec<sock_filter> {
        let mut returns: Vec<u32> = Vec::new();
        for (_, then) in &self.rules {
            if let Then::Ret(a) = then
                && !returns.contains(a)
            {
                returns.push(*a);
            }
        }
        let n = self.rules.len();
        let dispatch_at = header.len() + 1; // after LD nr
        let blocks_at = dispatch_at + n + 1; // after RET ALLOW
        let mut block_start = Vec::new();
        let mut at = blocks_at;
        for (_, then) in &self.rules {
            block_start.push(at);
            if let Then::Block(b) = then {
                at += b.len();
            }
        }
        let returns_at = at;
        let mut out = header;
        out.push(sock_filter {
            code: LD_W_ABS as u16,
            jt: 0,
            jf: 0,
            k: NR,
        });
        for (i, (nr, then)) in self.rules.iter().enumerate() {
            let here = dispatch_at + i;
            let target = match then {
                Then::Ret(a) => returns_at + returns.iter().position(|r| r == a).unwrap_or(0),
                Then::Block(_) => block_start[i],
            };
            out.push(sock_filter {
                code: JEQ as u16,
                jt: u8::try_from(target - here - 1).expect("filter jumps fit in a byte"),
                jf: 0,
                k: *nr as u32,
            });
        }
        out.push(sock_filter {
            code: RET as u16,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        });
        for (_, then) in self.rules {
            if let Then::Block(b) = then {
                out.extend(b);
            }
        }
        for a in returns {
            out.push(sock_filter {
                code: RET as u16,
                jt: 0,
                jf: 0,
                k: a,
            });
        }
        out
    }
}

/// What a confined child may not do, and what it must ask about.
pub struct Policy {
    /// The job grants a Unix socket: its programs may make Unix stream
    /// sockets (their connects checked, with the race the README names);
    /// else none at all, so no connect can be re-aimed at one.
    pub unix_allowed: bool,
    /// The programs run as root with no mount namespace to show them the
    /// system read-only: they own every root file, so changing a file's
    /// mode, owner, times or attributes is refused (and named by the
    /// supervisor), which Landlock does not cover.
    pub as_root: bool,
    /// The address of the program path the child's own `execve` passes:
    /// that one exec, the program's, goes through without asking (a later
    /// exec with the same pointer finds a new address space there, and
    /// Landlock still holds it to the granted files).
    pub first_exec: Option<u64>,
}

/// Calls a root child may not make: they change what a file is, and root
/// owns every root file.
const METADATA: &[libc::c_long] = &[
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_chown,
    libc::SYS_fchown,
    libc::SYS_lchown,
    libc::SYS_fchownat,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    SYS_SETXATTRAT,
    SYS_REMOVEXATTRAT,
];

/// setxattrat(2) and removexattrat(2), Linux 6.13 (not in libc yet).
#[cfg(target_arch = "x86_64")]
const SYS_SETXATTRAT: libc::c_long = 463;
#[cfg(target_arch = "x86_64")]
const SYS_REMOVEXATTRAT: libc::c_long = 466;
#[cfg(target_arch = "aarch64")]
const SYS_SETXATTRAT: libc::c_long = 463;
#[cfg(target_arch = "aarch64")]
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// Setting times to now needs only write access (anyone who may write
/// may do it by writing); setting them to a chosen time is the owner's.
/// (syscall, index of its `times` argument).
const SET_TIMES: &[(libc::c_long, u32)] = &[
    (libc::SYS_utime, 1),
    (libc::SYS_utimes, 1),
    (libc::SYS_futimesat, 2),
    (libc::SYS_utimensat, 2),
];

/// The filter of one confined child.
///
/// Long on purpose: it assembles one BPF program, whose labels and jumps
/// are checked most easily read top to bottom, like the listing they
/// become.
pub fn filter(policy: &Policy) -> Vec<sock_filter> {
    // Calls decided on their number alone.
    let by_number: &[(libc::c_long, u32)] = &[
        (libc::SYS_execve, RET_NOTIFY),
        (libc::SYS_execveat, RET_NOTIFY),
        (libc::SYS_connect, RET_NOTIFY),
        (libc::SYS_listen, RET_NOTIFY),
        (libc::SYS_kill, RET_NOTIFY),
        (libc::SYS_tkill, RET_NOTIFY),
        (libc::SYS_tgkill, RET_NOTIFY),
        (libc::SYS_rt_sigqueueinfo, RET_NOTIFY),
        (libc::SYS_rt_tgsigqueueinfo, RET_NOTIFY),
        (libc::SYS_io_uring_setup, ret_errno(libc::ENOSYS)),
        (libc::SYS_io_uring_enter, ret_errno(libc::ENOSYS)),
        (libc::SYS_io_uring_register, ret_errno(libc::ENOSYS)),
        (libc::SYS_clone3, ret_errno(libc::ENOSYS)),
        (libc::SYS_unshare, ret_errno(libc::EPERM)),
        (libc::SYS_setns, ret_errno(libc::EPERM)),
        (libc::SYS_keyctl, ret_errno(libc::EPERM)),
        (libc::SYS_add_key, ret_errno(libc::EPERM)),
        (libc::SYS_request_key, ret_errno(libc::EPERM)),
        (libc::SYS_bpf, ret_errno(libc::EPERM)),
        (libc::SYS_perf_event_open, ret_errno(libc::EPERM)),
        (libc::SYS_userfaultfd, ret_errno(libc::EPERM)),
        (libc::SYS_ptrace, ret_errno(libc::EPERM)),
        (libc::SYS_open_by_handle_at, ret_errno(libc::EPERM)),
        // Its mode sits in a struct the filter cannot read; C libraries
        // use openat, and callers of openat2 fall back on ENOSYS.
        (libc::SYS_openat2, ret_errno(libc::ENOSYS)),
    ];
    let mut head = Asm::new();
    head.op(LD_W_ABS, ARCH_AT)
        .jump(JEQ, ARCH, To::Label("arch"), To::Next)
        .ret(RET_KILL)
        .label("arch");
    #[cfg(target_arch = "x86_64")]
    head.op(LD_W_ABS, NR)
        .jump(JGE, X32_BIT, To::Next, To::Label("native"))
        .ret(ret_errno(libc::ENOSYS))
        .label("native");
    let mut d = Dispatch { rules: Vec::new() };
    if let Some(ptr) = policy.first_exec {
        d.block(libc::SYS_execve, |a| {
            a.op(LD_W_ABS, arg_low(0))
                .jump(JEQ, ptr as u32, To::Next, To::Label("ask"))
                .op(LD_W_ABS, arg_high(0))
                .jump(JEQ, (ptr >> 32) as u32, To::Next, To::Label("ask"))
                .ret(RET_ALLOW)
                .label("ask")
                .ret(RET_NOTIFY);
        });
    }
    for (nr, action) in by_number {
        d.ret(*nr, *action);
    }
    if policy.as_root {
        for nr in METADATA {
            d.ret(*nr, RET_NOTIFY);
        }
        for (nr, times) in SET_TIMES {
            d.block(*nr, |a| {
                a.op(LD_W_ABS, arg_low(*times))
                    .jump(JEQ, 0, To::Next, To::Label("chosen"))
                    .op(LD_W_ABS, arg_high(*times))
                    .jump(JEQ, 0, To::Label("now"), To::Next)
                    .label("chosen")
                    .ret(RET_NOTIFY)
                    .label("now")
                    .ret(RET_ALLOW);
            });
        }
    }
    // clone(flags, ...): no new namespaces.
    d.block(libc::SYS_clone, |a| {
        a.op(LD_W_ABS, arg_low(0))
            .jump(JSET, CLONE_NEW_ANY, To::Next, To::Label("ok"))
            .ret(ret_errno(libc::EPERM))
            .label("ok")
            .ret(RET_ALLOW);
    });
    // Sockets: Unix, IP and netlink only (no vsock to the hypervisor, no
    // packet sockets: the supervisor refuses and names others). IP as TCP,
    // UDP or ping only: no MPTCP or SCTP, which Landlock's TCP rules and
    // the connect check do not see. Unix sockets stream only (a datagram
    // one sends to any socket path without a connect to check), and only
    // when the job grants one: a checked connect could be re-aimed at
    // another socket before the kernel reads it. Refused quietly for a
    // non-blocking socket (name lookups try nscd's on their own), named
    // otherwise.
    let unix = policy.unix_allowed;
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        let pair = nr == libc::SYS_socketpair;
        d.block(nr, |a| {
            a.op(LD_W_ABS, arg_low(0))
                .jump(JEQ, libc::AF_INET as u32, To::Label("ip"), To::Next)
                .jump(JEQ, libc::AF_INET6 as u32, To::Label("ip"), To::Next)
                .jump(JEQ, libc::AF_NETLINK as u32, To::Label("ok"), To::Next)
                .jump(JEQ, libc::AF_UNIX as u32, To::Label("unix"), To::Next)
                .ret(RET_NOTIFY)
                .label("ip")
                .op(LD_W_ABS, arg_low(1))
                .op(AND, 0xf)
                .jump(
                    JEQ,
                    libc::SOCK_SEQPACKET as u32,
                    To::Label("proto-refused"),
                    To::Next,
                )
                .op(LD_W_ABS, arg_low(2))
                .jump(JEQ, 0, To::Label("ok"), To::Next)
                .jump(JEQ, libc::IPPROTO_TCP as u32, To::Label("ok"), To::Next)
                .jump(JEQ, libc::IPPROTO_UDP as u32, To::Label("ok"), To::Next)
                .jump(JEQ, libc::IPPROTO_ICMP as u32, To::Label("ok"), To::Next)
                .jump(JEQ, libc::IPPROTO_ICMPV6 as u32, To::Label("ok"), To::Next)
                .label("proto-refused")
                .ret(ret_errno(libc::EPROTONOSUPPORT))
                .label("unix")
                .op(LD_W_ABS, arg_low(1))
                .op(AND, 0xf)
                .jump(JEQ, libc::SOCK_STREAM as u32, To::Label("stream"), To::Next)
                .jump(
                    JEQ,
                    libc::SOCK_SEQPACKET as u32,
                    To::Label("stream"),
                    To::Next,
                )
                .ret(ret_errno(libc::EACCES))
                .label("stream");
            if !(unix || pair) {
                // A pair is connected already, to itself.
                a.op(LD_W_ABS, arg_low(1))
                    .jump(
                        JSET,
                        libc::SOCK_NONBLOCK as u32,
                        To::Next,
                        To::Label("named"),
                    )
                    .ret(ret_errno(libc::EACCES))
                    .label("named")
                    .ret(RET_NOTIFY);
            }
            a.label("ok").ret(RET_ALLOW);
        });
    }
    // No setuid or setgid bit, whoever the program runs as: the file would
    // keep it on the host, where its grant is no `nosuid` mount. (mode
    // argument of chmod and friends, and of open and mknod that create.)
    for (nr, mode) in [
        (libc::SYS_chmod, 1),
        (libc::SYS_fchmod, 1),
        (libc::SYS_fchmodat, 2),
        (libc::SYS_fchmodat2, 2),
        (libc::SYS_creat, 1),
        (libc::SYS_mknod, 1),
        (libc::SYS_mknodat, 2),
    ] {
        if policy.as_root && METADATA.contains(&nr) {
            continue;
        }
        d.block(nr, |a| {
            a.op(LD_W_ABS, arg_low(mode))
                .jump(JSET, SETID_BITS, To::Next, To::Label("ok"))
                .ret(RET_NOTIFY)
                .label("ok")
                .ret(RET_ALLOW);
        });
    }
    for (nr, flags, mode) in [(libc::SYS_open, 1, 2), (libc::SYS_openat, 2, 3)] {
        d.block(nr, |a| {
            a.op(LD_W_ABS, arg_low(flags))
                .jump(JSET, CREATES, To::Next, To::Label("ok"))
                .op(LD_W_ABS, arg_low(mode))
                .jump(JSET, SETID_BITS, To::Next, To::Label("ok"))
                .ret(RET_NOTIFY)
                .label("ok")
                .ret(RET_ALLOW);
        });
    }
    // TCP Fast Open connects inside sendto/sendmsg, past connect(2) and
    // Landlock's connect check: the supervisor refuses and names it.
    for (nr, flags) in [
        (libc::SYS_sendto, 3),
        (libc::SYS_sendmsg, 2),
        (libc::SYS_sendmmsg, 3),
    ] {
        d.block(nr, |a| {
            a.op(LD_W_ABS, arg_low(flags))
                .jump(JSET, libc::MSG_FASTOPEN as u32, To::Next, To::Label("ok"))
                .ret(RET_NOTIFY)
                .label("ok")
                .ret(RET_ALLOW);
        });
    }
    d.finish(head.finish())
}

/// Installs `filter` on the calling thread and returns the listener
/// descriptor. Between fork and exec: system calls only. Needs
/// `no_new_privs` (or CAP_SYS_ADMIN).
///
/// # Safety
/// `filter` must stay alive and unmoved during the call.
pub unsafe fn install(filter: &[sock_filter]) -> Result<i32, i32> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filter`, alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(fd as i32)
    }
}

/// Whether this kernel lets a filter hand calls to a supervisor.
pub fn probe() -> Result<(), String> {
    let action: u32 = libc::SECCOMP_RET_USER_NOTIF;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads the u32 we point at.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "the kernel refuses it: {} (Linux 5.0 or later with CONFIG_SECCOMP_FILTER)",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_stay_inside_the_program() {
        for as_root in [false, true] {
            let f = filter(&Policy {
                unix_allowed: as_root,
                as_root,
                first_exec: Some(0x7f00_1234_5678),
            });
            for (i, ins) in f.iter().enumerate() {
                if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                    assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < f.len(), "{i}");
                }
            }
            assert_eq!(f.last().unwrap().code as u32, RET);
        }
    }
}
