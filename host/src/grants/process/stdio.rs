//! A program's standard streams: captured (capped), discarded, or
//! relayed by the daemon to and from granted files, so the program never
//! holds a file on the host's mount.

use super::{DRAIN, ProcessContext, Program, deny};
use crate::bindings::opsd::plugin::process::{ExecError, Output};
use crate::grants::fs;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The program's stdout or stderr as the plugin asked: a pipe the daemon
/// reads, nothing, or a relay into a file its grants let it write.
pub(super) fn output_stdio(
    ctx: &ProcessContext<'_>,
    out: &Output,
    program: &Program,
    relays: &mut Vec<FileRelay>,
) -> Result<Stdio, ExecError> {
    let (path, append) = match out {
        Output::Capture => return Ok(Stdio::piped()),
        Output::Discard => return Ok(Stdio::null()),
        Output::File(p) => (p, false),
        Output::Append(p) => (p, true),
    };
    let file = fs::open_write(&ctx.grants.fs, path, append).map_err(|m| deny(ctx, m))?;
    let room = ctx.quota_room.and_then(|room| {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        // A path /proc/self/fd cannot name, or a file with other names
        // (hard links, which may lie in any grant), is held to every quota.
        let linked = file.metadata().map_or(true, |m| m.nlink() > 1);
        let host = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .ok()
            .filter(|_| !linked);
        room(host.as_deref())
    });
    let (stdio, relay) = FileRelay::output(file, path, room).map_err(|e| io_error(program, e))?;
    relays.push(relay);
    Ok(stdio)
}

/// An I/O failure setting up or relaying the program's streams.
pub(super) fn io_error(program: &Program, e: std::io::Error) -> ExecError {
    ExecError::Io(format!("{}: {e}", program.name))
}

/// A file a program reads or writes as its stdin, stdout or stderr,
/// copied by the daemon through a pipe: the program never holds the file
/// itself, which lies on the host's mount (not the `noexec` one the
/// program sees), so it cannot map it as code. The copy moves pages in
/// the kernel (splice), so a 10 GB dump costs no memory and little CPU.
pub(super) struct FileRelay {
    path: String,
    copy: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FileRelay {
    /// The program writes a pipe; the daemon copies it into `file`, at
    /// most what `room` holds (what a quota leaves, shared by the
    /// program's relays): past that the copy stops and the program's next
    /// write fails (EPIPE).
    pub(super) fn output(
        file: std::fs::File,
        path: &str,
        room: Option<Arc<AtomicU64>>,
    ) -> std::io::Result<(Stdio, FileRelay)> {
        let (read, write) = pipe()?;
        let copy = tokio::task::spawn_blocking(move || {
            splice_all(read, std::os::fd::OwnedFd::from(file), room)
        });
        Ok((
            Stdio::from(write),
            FileRelay {
                path: path.to_owned(),
                copy,
            },
        ))
    }

    /// The daemon copies `file` into a pipe the program reads.
    pub(super) fn input(file: std::fs::File, path: &str) -> std::io::Result<(Stdio, FileRelay)> {
        let (read, write) = pipe()?;
        let copy = tokio::task::spawn_blocking(move || {
            match splice_all(std::os::fd::OwnedFd::from(file), write, None) {
                // The program stopped reading: its business.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        });
        Ok((
            Stdio::from(read),
            FileRelay {
                path: path.to_owned(),
                copy,
            },
        ))
    }

    /// Waits for the copy (at most [`DRAIN`]: the program is gone) and
    /// fails the call if it could not be made whole, so a short file is
    /// never taken for a good one.
    pub(super) async fn finish(self, program: &Program) -> Result<(), ExecError> {
        let abort = self.copy.abort_handle();
        match tokio::time::timeout(DRAIN, self.copy).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) if e.kind() == std::io::ErrorKind::QuotaExceeded => {
                Err(ExecError::Denied(format!(
                    "quota: `{}`'s output into {} was stopped: {e} (free space there or raise the grant's `quota`)",
                    program.name, self.path
                )))
            }
            Ok(Ok(Err(e))) => Err(ExecError::Io(format!(
                "copying `{}`'s stream {} {}: {e}",
                program.name, "to or from", self.path
            ))),
            Ok(Err(e)) => Err(ExecError::Io(format!("{}: {e}", self.path))),
            Err(_) => {
                abort.abort();
                Err(ExecError::Io(format!(
                    "copying `{}`'s stream {} {} did not finish",
                    program.name, "to or from", self.path
                )))
            }
        }
    }
}

/// A blocking pipe (the relay's copy runs on a blocking thread).
fn pipe() -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    })
}

/// Takes up to `want` bytes from `room` (all of `want` without one).
fn reserve(room: Option<&AtomicU64>, want: u64) -> u64 {
    match room {
        None => want,
        Some(room) => {
            let mut took = 0;
            let _ = room.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                took = left.min(want);
                Some(left - took)
            });
            took
        }
    }
}

/// Gives back to `room` what a copy reserved and did not use.
fn give_back(room: Option<&AtomicU64>, unused: u64) {
    if let Some(room) = room {
        room.fetch_add(unused, Ordering::SeqCst);
    }
}

/// Copies `from` to its end into `to`, by splice(2) (one side is a pipe),
/// else read and write (splice refuses files opened for appending); with
/// `room`, never more than it holds, taken from it as copied (the copies
/// of one program's stdout and stderr share it); an error of kind
/// `QuotaExceeded` when there was more.
fn splice_all(
    from: std::os::fd::OwnedFd,
    to: std::os::fd::OwnedFd,
    room: Option<Arc<AtomicU64>>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let room = room.as_deref();
    let over = || {
        std::io::Error::new(
            std::io::ErrorKind::QuotaExceeded,
            "the job's quota there has no room for more; the copy was stopped",
        )
    };
    // One byte more than there is room for says it does not fit.
    let no_room = |from: &std::os::fd::OwnedFd| -> std::io::Result<()> {
        let mut src = std::fs::File::from(from.try_clone()?);
        match src.read(&mut [0u8; 1])? {
            0 => Ok(()),
            _ => Err(over()),
        }
    };
    let mut spliced = true;
    loop {
        let chunk = reserve(room, 1 << 20);
        if chunk == 0 {
            return no_room(&from);
        }
        let n = if spliced {
            // SAFETY: splice between two descriptors we own.
            unsafe {
                libc::splice(
                    from.as_raw_fd(),
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    chunk as usize,
                    libc::SPLICE_F_MOVE,
                )
            }
        } else {
            let mut buf = vec![0u8; chunk as usize];
            let mut src = std::fs::File::from(from.try_clone()?);
            let mut dst = std::fs::File::from(to.try_clone()?);
            match src.read(&mut buf) {
                Ok(n) => {
                    if let Err(e) = dst.write_all(&buf[..n]) {
                        give_back(room, chunk - n as u64);
                        return Err(e);
                    }
                    n as isize
                }
                Err(e) => {
                    give_back(room, chunk);
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
            }
        };
        give_back(room, chunk - n.max(0) as u64);
        match n {
            0 => return Ok(()),
            n if n > 0 => continue,
            _ => {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EINVAL) => spliced = false,
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Reads a stream to its end, keeping at most `cap` bytes so a flood
/// neither blocks the child nor fills memory: the first half and the last
/// half, with a line saying how much was cut between them, since a
/// program's error is usually at the end of what it printed.
pub(super) async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Capped::new(cap);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => kept.push(&buf[..n]),
        }
    }
    kept.finish()
}

/// A stream's head and tail within a byte budget.
struct Capped {
    head: Vec<u8>,
    head_cap: usize,
    tail: std::collections::VecDeque<u8>,
    tail_cap: usize,
    cut: u64,
}

impl Capped {
    fn new(cap: usize) -> Capped {
        let head_cap = cap / 2;
        Capped {
            head: Vec::new(),
            head_cap,
            tail: std::collections::VecDeque::new(),
            tail_cap: cap - head_cap,
            cut: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let room = self.head_cap.saturating_sub(self.head.len());
        let to_head = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        if bytes.len() >= self.tail_cap {
            self.cut += (self.tail.len() + bytes.len() - self.tail_cap) as u64;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        self.tail.extend(bytes);
        let over = self.tail.len().saturating_sub(self.tail_cap);
        self.tail.drain(..over);
        self.cut += over as u64;
    }

    /// Head, the line saying what was cut (taken from the head's end, so
    /// the whole stays within the cap), tail.
    fn finish(self) -> (Vec<u8>, bool) {
        let mut out = self.head;
        if self.cut > 0 {
            let line = |cut: u64| {
                format!(
                    "\n[opsd: {cut} bytes of output cut here; the job's grants.limits.output caps what is kept]\n"
                )
            };
            // The line's own length is part of what it counts.
            let mut marker = line(self.cut);
            for _ in 0..2 {
                let room = out.len().min(marker.len());
                marker = line(self.cut + room as u64);
            }
            let keep = out.len().saturating_sub(marker.len());
            out.truncate(keep);
            out.extend_from_slice(marker.as_bytes());
        }
        out.extend(self.tail);
        (out, self.cut > 0)
    }
}

/// The output a reader collected, waiting at most [`DRAIN`] for the
/// stream to end (the program and everything it started are gone by
/// now; only a descriptor that escaped could hold it open).
pub(super) async fn join_capture(
    task: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>,
) -> (Vec<u8>, bool) {
    let Some(t) = task else {
        return (Vec::new(), false);
    };
    let abort = t.abort_handle();
    match tokio::time::timeout(DRAIN, t).await {
        Ok(r) => r.unwrap_or_default(),
        Err(_) => {
            abort.abort();
            (Vec::new(), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_its_head_and_its_end() {
        let mut c = Capped::new(200);
        let flood: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for chunk in flood.chunks(7) {
            c.push(chunk);
        }
        let (out, truncated) = c.finish();
        assert!(truncated);
        assert_eq!(out.len(), 200, "the cap holds, marker included");
        let text = String::from_utf8(out).unwrap();
        let (head, rest) = text.split_once("\n[opsd: ").unwrap();
        let (count, tail) = rest.split_once(" bytes of output cut here;").unwrap();
        let tail = tail.split_once("]\n").unwrap().1;
        assert!(flood.starts_with(head.as_bytes()));
        assert!(flood.ends_with(tail.as_bytes()));
        assert_eq!(tail.len(), 100);
        assert_eq!(
            count.parse::<usize>().unwrap(),
            1000 - head.len() - tail.len()
        );

        let mut small = Capped::new(10);
        small.push(b"short");
        assert_eq!(small.finish(), (b"short".to_vec(), false));
        let mut exact = Capped::new(10);
        exact.push(b"0123456789");
        assert_eq!(exact.finish(), (b"0123456789".to_vec(), false));
    }
}
