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

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;
const AND: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;

/// The filter; `unix_allowed` (the job grants a Unix socket) lets its
/// programs make Unix datagram sockets too.
pub fn filter(unix_allowed: bool) -> Vec<sock_filter> {
    // (syscall, what happens) for calls decided on their number alone.
    let by_number: &[(libc::c_long, u32)] = &[
        (libc::SYS_execve, RET_NOTIFY),
        (libc::SYS_execveat, RET_NOTIFY),
        (libc::SYS_connect, RET_NOTIFY),
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
    ];
    let mut f = vec![
        stmt(LD_W_ABS, ARCH_AT),
        jump(JEQ, ARCH, 1, 0),
        stmt(RET, RET_KILL),
        stmt(LD_W_ABS, NR),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        f.push(jump(JGE, X32_BIT, 0, 1));
        f.push(stmt(RET, ret_errno(libc::ENOSYS)));
    }
    for (nr, action) in by_number {
        f.push(jump(JEQ, *nr as u32, 0, 1));
        f.push(stmt(RET, *action));
    }
    // clone(flags, ...): no new namespaces.
    f.push(jump(JEQ, libc::SYS_clone as u32, 0, 4));
    f.push(stmt(LD_W_ABS, arg_low(0)));
    f.push(jump(JSET, CLONE_NEW_ANY, 0, 1));
    f.push(stmt(RET, ret_errno(libc::EPERM)));
    f.push(stmt(RET, RET_ALLOW));
    // Unix datagram sockets can send to any socket path without a
    // connect the supervisor sees: none unless Unix sockets are granted
    // (stream sockets must connect, and that is checked).
    if !unix_allowed {
        f.push(jump(JEQ, libc::SYS_socket as u32, 0, 6));
        f.push(stmt(LD_W_ABS, arg_low(0)));
        f.push(jump(JEQ, libc::AF_UNIX as u32, 0, 4));
        f.push(stmt(LD_W_ABS, arg_low(1)));
        f.push(stmt(AND, 0xf));
        f.push(jump(JEQ, libc::SOCK_DGRAM as u32, 0, 1));
        f.push(stmt(RET, ret_errno(libc::EACCES)));
    }
    f.push(stmt(RET, RET_ALLOW));
    f
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
        for unix in [false, true] {
            let f = filter(unix);
            for (i, ins) in f.iter().enumerate() {
                if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                    assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < f.len(), "{i}");
                }
            }
            assert_eq!(f.last().unwrap().code as u32, RET);
        }
    }
}
