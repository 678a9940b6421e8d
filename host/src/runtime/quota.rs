//! Quotas held on the write path: a plugin's write that would take a
//! grant past its `quota` is refused before it happens (and stops the
//! run), instead of being found by a later walk of the tree.
//!
//! Each grant with a quota has an account: what its tree held when last
//! measured, plus what writes since could have added. A write is charged
//! what it can grow its file by (`offset + len - size` for a positioned
//! write and `set-size`, `len` for a stream); while the account stays
//! under the quota nothing is measured. When a charge would pass it, the
//! tree is measured again (deleted and overwritten bytes then count as
//! they are) and the write is refused only if it really does not fit. A
//! stream's write lands in the background: until it has, its bytes count
//! as in flight, and a measurement keeps them charged.
//!
//! Programs write outside this path: their single files are capped at
//! what is left (`RLIMIT_FSIZE`), the tree is measured when each exits,
//! and a watcher measures every [`CHECK_EVERY`] while the run lasts (what
//! bounds a program writing many files).

use super::state::RunState;
use crate::grants::fs::{FsGrant, tree_bytes};
use crate::locks::Unpoisoned;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDescriptor};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

/// How often the watcher measures grants with a quota during a run (a
/// slow walk is done less often, so measuring never costs more than a
/// tenth of the time).
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// One grant with a quota.
struct Watched {
    guest: String,
    /// Canonical host path: what `/proc/self/fd` shows for files in it.
    host: PathBuf,
    quota: u64,
}

/// What a grant is known to hold.
#[derive(Default, Clone, Copy)]
struct Account {
    /// Bytes at the last measurement; none before the first.
    measured: Option<u64>,
    /// What writes since the measurement may have added.
    charged: u64,
    /// Stream writes handed to the background and not yet landed.
    in_flight: u64,
}

/// The quota accounts of one run, shared by its write path, its program
/// calls and its watcher.
pub struct QuotaBook {
    watched: Vec<Watched>,
    accounts: Mutex<Vec<Account>>,
    stop: CancellationToken,
    why: OnceLock<String>,
}

impl QuotaBook {
    /// The book for a job's grants; none when no grant has a quota.
    pub fn new(grants: &[FsGrant]) -> Option<Arc<QuotaBook>> {
        let watched: Vec<Watched> = grants
            .iter()
            .filter_map(|g| {
                Some(Watched {
                    guest: g.guest.clone(),
                    host: g.host.canonicalize().unwrap_or_else(|_| g.host.clone()),
                    quota: g.quota?,
                })
            })
            .collect();
        (!watched.is_empty()).then(|| {
            Arc::new(QuotaBook {
                accounts: Mutex::new(vec![Account::default(); watched.len()]),
                watched,
                stop: CancellationToken::new(),
                why: OnceLock::new(),
            })
        })
    }

    /// The accounts a file at `path` (as `/proc/self/fd` names it) draws
    /// on: every grant with a quota whose tree holds it.
    fn accounts_of(&self, path: &Path) -> Vec<usize> {
        use std::os::unix::ffi::OsStrExt;
        // An unlinked file still holds its bytes until it is closed.
        let bytes = path.as_os_str().as_bytes();
        let path = Path::new(std::ffi::OsStr::from_bytes(
            bytes.strip_suffix(b" (deleted)").unwrap_or(bytes),
        ));
        self.watched
            .iter()
            .enumerate()
            .filter(|(_, w)| path.starts_with(&w.host))
            .map(|(i, _)| i)
            .collect()
    }

    /// Charges `growth` bytes to the accounts `of` as in flight (until
    /// [`QuotaBook::landed`]), measuring a tree again when the charge
    /// would pass its quota; refuses, and stops the run, when the write
    /// does not fit even then. Measures on the calling thread: only a
    /// write near its quota pays for it.
    fn charge(&self, of: &[usize], growth: u64) -> Result<(), ()> {
        for &i in of {
            let quota = self.watched[i].quota;
            let fits = |a: &Account| {
                a.measured
                    .is_some_and(|m| m.saturating_add(a.charged).saturating_add(growth) <= quota)
            };
            if !fits(&self.accounts.locked()[i]) {
                let held = self.measure(i);
                if !fits(&self.accounts.locked()[i]) {
                    self.refuse(i, held, growth);
                    return Err(());
                }
            }
        }
        let mut accounts = self.accounts.locked();
        for &i in of {
            accounts[i].charged = accounts[i].charged.saturating_add(growth);
            accounts[i].in_flight = accounts[i].in_flight.saturating_add(growth);
        }
        Ok(())
    }

    /// A charged write has landed (or failed): a measurement from now on
    /// sees it.
    fn landed(&self, of: &[usize], growth: u64) {
        let mut accounts = self.accounts.locked();
        for &i in of {
            accounts[i].in_flight = accounts[i].in_flight.saturating_sub(growth);
        }
    }

    /// Measures grant `i`'s tree and starts its account afresh from it;
    /// writes still in flight stay charged (the walk may not see them).
    fn measure(&self, i: usize) -> Option<u64> {
        let held = tree_bytes(&self.watched[i].host);
        let mut accounts = self.accounts.locked();
        let a = &mut accounts[i];
        a.measured = held;
        a.charged = a.in_flight;
        held
    }

    fn refuse(&self, i: usize, held: Option<u64>, growth: u64) {
        let w = &self.watched[i];
        let why = match held {
            Some(held) => format!(
                "quota: grant {} ({}) holds {} KiB of its quota of {} KiB; a write of {} more bytes was refused and the run was stopped (free space there or raise the grant's `quota`)",
                w.guest,
                w.host.display(),
                held >> 10,
                w.quota >> 10,
                growth
            ),
            None => self.unmeasurable(w),
        };
        self.stop_with(why);
    }

    fn unmeasurable(&self, w: &Watched) -> String {
        format!(
            "quota: grant {} ({}) could not be measured (deeper than 256 levels, or a directory that cannot be opened); the run was stopped",
            w.guest,
            w.host.display()
        )
    }

    fn stop_with(&self, why: String) {
        let _ = self.why.set(why);
        self.stop.cancel();
    }

    /// Measures every grant; stops the run when one holds more than its
    /// quota (what a program wrote, or what the write path could not see).
    pub fn check_all(&self) {
        for (i, w) in self.watched.iter().enumerate() {
            match self.measure(i) {
                None => return self.stop_with(self.unmeasurable(w)),
                Some(held) if held > w.quota => {
                    return self.stop_with(format!(
                        "quota: grant {} ({}) holds {} KiB, past its quota of {} KiB; the run was stopped (free space there or raise the grant's `quota`)",
                        w.guest,
                        w.host.display(),
                        held >> 10,
                        w.quota >> 10
                    ));
                }
                Some(_) => {}
            }
        }
    }

    /// Measures after a program ran (its writes are not charged on the
    /// way). A grant found full means the program was held at its file
    /// size cap (its writes failed with EFBIG, or SIGXFSZ killed it): the
    /// run fails for it, whatever the plugin makes of the exit.
    pub fn after_program(&self, program: &str, violations: &crate::grants::Violations) {
        self.check_all();
        let accounts = self.accounts.locked().clone();
        for (w, a) in self.watched.iter().zip(accounts) {
            if a.measured.is_some_and(|held| held >= w.quota) {
                violations.record(format!(
                    "quota: grant {} ({}) is full ({} KiB) after `{}` ran: a program cannot write past what the job's quotas leave (its writes failed with EFBIG); free space there or raise the grant's `quota`",
                    w.guest,
                    w.host.display(),
                    w.quota >> 10,
                    crate::escape::line(program)
                ));
            }
        }
    }

    /// The largest file a program may write: what is left of the grant
    /// with most room (measured now). None when no cap applies: some rw
    /// grant has no quota, and a program may write files of any size there.
    pub fn file_size_cap(&self, grants: &[FsGrant]) -> Option<u64> {
        let all_quota = grants
            .iter()
            .filter(|g| g.access == crate::grants::Access::ReadWrite)
            .all(|g| g.quota.is_some());
        if !all_quota {
            return None;
        }
        let mut most = 0u64;
        for (i, w) in self.watched.iter().enumerate() {
            let held = self.measure(i)?;
            most = most.max(w.quota.saturating_sub(held));
        }
        Some(most)
    }

    /// What the file at host path `path` may still grow by (the least
    /// room of the grants holding it, measured now); none when no quota
    /// holds it.
    pub fn room_for(&self, path: &Path) -> Option<u64> {
        self.accounts_of(path)
            .into_iter()
            .map(|i| {
                self.measure(i)
                    .map_or(0, |held| self.watched[i].quota.saturating_sub(held))
            })
            .min()
    }

    /// Why the run was stopped for a quota, if it was: a refused write
    /// may end the run before the watcher's stop is seen, and the run
    /// must still be recorded as stopped by its quota.
    pub fn stopped_why(&self) -> Option<String> {
        self.why.get().cloned()
    }

    /// Resolves, with the reason, when the run must stop for a quota:
    /// refused on the write path, or found over by the watcher.
    pub async fn stopped(self: Arc<Self>) -> String {
        while !self.stop.is_cancelled() {
            let began = Instant::now();
            let book = self.clone();
            let _ = tokio::task::spawn_blocking(move || book.check_all()).await;
            tokio::select! {
                _ = self.stop.cancelled() => {}
                _ = tokio::time::sleep(CHECK_EVERY.max(began.elapsed() * 10)) => {}
            }
        }
        self.why.get().cloned().unwrap_or_default()
    }
}

/// The file behind a descriptor, and the host path it has now.
fn file_of(
    state: &mut RunState,
    fd: &Resource<Descriptor>,
) -> Option<(Arc<std::fs::File>, PathBuf)> {
    let view = state.filesystem();
    let Ok(Descriptor::File(f)) = view.table.get(fd) else {
        return None;
    };
    let file = f.file.clone();
    let path = path_of(&file)?;
    Some((file, path))
}

/// What writing `len` bytes at `offset` can grow the file by.
fn growth_at(file: &std::fs::File, offset: u64, len: u64) -> u64 {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    offset.saturating_add(len).saturating_sub(size)
}

type Answer<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

fn answer<T>(r: wasmtime_wasi::p2::FsResult<T>) -> Answer<T> {
    match r {
        Ok(v) => Ok((Ok(v),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// Puts the book in front of every way a plugin grows a file through
/// wasi:filesystem: `write`, `set-size`, and the streams of
/// `write-via-stream` and `append-via-stream`.
pub fn gate_writes(linker: &mut Linker<RunState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance("wasi:filesystem/types@0.2.12")?;
    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store, (fd, buf, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                if let (Some(book), Some((file, path))) =
                    (state.env.quota.clone(), file_of(state, &fd))
                {
                    let of = book.accounts_of(&path);
                    let growth = growth_at(&file, offset, buf.len() as u64);
                    if book.charge(&of, growth).is_err() {
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = store.data_mut().filesystem().write(fd, buf, offset).await;
                    book.landed(&of, growth);
                    return answer(r);
                }
                answer(store.data_mut().filesystem().write(fd, buf, offset).await)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                if let (Some(book), Some((file, path))) =
                    (state.env.quota.clone(), file_of(state, &fd))
                {
                    let of = book.accounts_of(&path);
                    let growth = growth_at(&file, size, 0);
                    if book.charge(&of, growth).is_err() {
                        return Ok((Err(ErrorCode::InsufficientSpace),));
                    }
                    let r = store.data_mut().filesystem().set_size(fd, size).await;
                    book.landed(&of, growth);
                    return answer(r);
                }
                answer(store.data_mut().filesystem().set_size(fd, size).await)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store, (fd, offset): (Resource<Descriptor>, u64)| {
            let state: &mut RunState = store.data_mut();
            let watch = watch_of(state, &fd);
            let stream = state.filesystem().write_via_stream(fd, offset);
            wrap_stream(state, stream, watch, Some(offset))
        },
    )?;
    types.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store, (fd,): (Resource<Descriptor>,)| {
            let state: &mut RunState = store.data_mut();
            let watch = watch_of(state, &fd);
            let stream = state.filesystem().append_via_stream(fd);
            wrap_stream(state, stream, watch, None)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What a stream on `fd` charges, if anything: the book, the accounts
/// and the file (its size tells what a write grows it by).
struct Watch {
    book: Arc<QuotaBook>,
    of: Vec<usize>,
    file: Arc<std::fs::File>,
}

/// Every file stream of a run with a quota is watched, in a grant with a
/// quota or not: a file renamed into one later is charged from then on.
fn watch_of(state: &mut RunState, fd: &Resource<Descriptor>) -> Option<Watch> {
    let book = state.env.quota.clone()?;
    let (file, _) = file_of(state, fd)?;
    Some(Watch {
        book,
        of: Vec::new(),
        file,
    })
}

/// The host path a file has now.
fn path_of(file: &std::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// Replaces a new file stream in the table by one that charges the book;
/// `position` is where it writes (none: it appends).
fn wrap_stream(
    state: &mut RunState,
    stream: wasmtime_wasi::p2::FsResult<Resource<DynOutputStream>>,
    watch: Option<Watch>,
    position: Option<u64>,
) -> Answer<Resource<DynOutputStream>> {
    let stream = match stream {
        Ok(s) => s,
        Err(e) => return answer(Err(e)),
    };
    let Some(Watch { book, of, file }) = watch else {
        return Ok((Ok(stream),));
    };
    let view = state.filesystem();
    let inner = view.table.delete(stream)?;
    let wrapped: DynOutputStream = Box::new(QuotaStream {
        inner,
        book,
        of,
        file,
        position,
        end: 0,
        pending: 0,
    });
    Ok((Ok(view.table.push(wrapped)?),))
}

/// A file stream whose writes are charged to quota accounts before they
/// are handed on.
struct QuotaStream {
    inner: DynOutputStream,
    book: Arc<QuotaBook>,
    /// The accounts the pending write was charged to.
    of: Vec<usize>,
    file: Arc<std::fs::File>,
    /// Where the next write lands; none for an appending stream.
    position: Option<u64>,
    /// The furthest end charged so far (the file's size may lag a write
    /// still in flight).
    end: u64,
    /// Bytes of the write handed on and not known to have landed.
    pending: u64,
}

impl QuotaStream {
    /// The pending write has landed (or failed): no longer in flight.
    fn settle(&mut self) {
        if self.pending > 0 {
            self.book.landed(&self.of, self.pending);
            self.pending = 0;
        }
    }

    /// Charges a write of `n` bytes before it is handed on; the error the
    /// plugin sees when it does not fit (the run is being stopped).
    fn charge(&mut self, n: u64) -> StreamResult<()> {
        self.settle();
        let growth = match self.position {
            None => n,
            Some(at) => {
                let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                let end = at.saturating_add(n);
                self.position = Some(end);
                let grown = end.saturating_sub(size.max(self.end));
                self.end = self.end.max(end);
                grown
            }
        };
        // Where the file is now decides what it draws on (it may have been
        // renamed since the stream was opened).
        self.of = path_of(&self.file)
            .map(|p| self.book.accounts_of(&p))
            .unwrap_or_default();
        if self.book.charge(&self.of, growth).is_err() {
            // As ENOSPC, so `filesystem-error-code` says insufficient-space.
            return Err(StreamError::LastOperationFailed(wasmtime::Error::from(
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            )));
        }
        self.pending = growth;
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.charge(bytes.len() as u64)?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let r = self.inner.check_write();
        // Room to write means the last write is done.
        if !matches!(r, Ok(0)) {
            self.settle();
        }
        r
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.inner.ready().await;
        self.charge(bytes.len() as u64)?;
        let r = self.inner.blocking_write_and_flush(bytes).await;
        self.settle();
        r
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
        self.settle();
    }
}

impl Drop for QuotaStream {
    fn drop(&mut self) {
        // The guest's drop cancels first (which waits for the write); this
        // is the run's end, when nothing measures any more.
        self.settle();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}
