//! Quotas held on the write path: a plugin's write that would take a
//! grant past its `quota` is refused before it happens (and stops the
//! run), instead of being found by a later walk of the tree.
//!
//! Each grant with a quota has an account (one per directory for the
//! whole daemon, so runs granting the same one share it): what its tree
//! held when last measured, plus what writes since could have added. A
//! write is charged what it can grow its file by (`offset + len - size`
//! for a positioned write and `set-size`, `len` for a stream); a rename
//! into the tree from outside it is charged what it brings, a hard link
//! what its file holds (the walk counts each name). A file whose path
//! /proc/self/fd cannot give is charged to every account. While the
//! account stays under the quota nothing is measured. When a charge
//! would pass it, the tree is measured again (deleted and overwritten
//! bytes then count as they are) and the write is refused only if it
//! really does not fit. What is in flight when a walk begins, or charged
//! while it walks, stays charged: the walk may not have seen it land.
//!
//! Programs write outside this path: their single files are capped at
//! what the grant with least room has left (`RLIMIT_FSIZE`), their
//! relayed output shares that room, the tree is measured when each exits,
//! and a watcher measures every [`CHECK_EVERY`] while the run lasts (what
//! bounds a program writing many files), and once more when it ends.

use super::state::RunState;
use crate::grants::fs::{FsGrant, tree_bytes};
use crate::locks::Unpoisoned;
use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{ErrorCode, HostDescriptor, PathFlags};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

/// How often the watcher measures grants with a quota during a run (a
/// slow walk is done less often, so measuring never costs more than a
/// tenth of the time).
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// One grant with a quota.
struct Watched {
    guest: String,
    /// Canonical host path: what `/proc/self/fd` shows for files in it,
    /// and the key of its account (shared by every run granting it).
    host: PathBuf,
    quota: u64,
}

/// What a tree is known to hold. One per canonical host path for the
/// whole daemon: two runs granting the same directory (two jobs, or a
/// job and its next run) charge the same account, so each sees what the
/// other may have added since the tree was last measured.
#[derive(Default, Clone, Copy)]
struct Account {
    /// Bytes at the last measurement; none before the first.
    measured: Option<u64>,
    /// All ever charged to the account (it only grows).
    charged: u64,
    /// `charged` when the last measurement began: what was charged since
    /// may have landed after the walk saw its file.
    base: u64,
    /// What was in flight when the last measurement began (the walk may
    /// not have seen it land).
    unseen: u64,
    /// Stream writes handed to the background and not yet landed.
    in_flight: u64,
}

impl Account {
    /// The most the tree can hold now (none before a measurement).
    fn held(&self) -> Option<u64> {
        self.measured.map(|m| {
            m.saturating_add(self.charged.saturating_sub(self.base))
                .saturating_add(self.unseen)
        })
    }
}

/// The daemon's accounts, by canonical host path, with how many live
/// books use each.
static ACCOUNTS: LazyLock<Mutex<HashMap<PathBuf, (Account, usize)>>> =
    LazyLock::new(Default::default);

fn account<'m>(map: &'m mut HashMap<PathBuf, (Account, usize)>, host: &Path) -> &'m mut Account {
    &mut map.entry(host.to_path_buf()).or_default().0
}

/// The quota accounts of one run, shared by its write path, its program
/// calls and its watcher.
pub struct QuotaBook {
    watched: Vec<Watched>,
    stop: CancellationToken,
    why: OnceLock<String>,
}

impl Drop for QuotaBook {
    fn drop(&mut self) {
        let mut map = ACCOUNTS.locked();
        for w in &self.watched {
            if let Some(e) = map.get_mut(&w.host) {
                e.1 = e.1.saturating_sub(1);
                if e.1 == 0 {
                    map.remove(&w.host);
                }
            }
        }
    }
}

impl QuotaBook {
    /// The book for a job's grants; none when no grant has a quota.
    pub fn new(grants: &[FsGrant]) -> Option<Arc<QuotaBook>> {
        let mut watched: Vec<Watched> = Vec::new();
        for g in grants {
            let Some(quota) = g.quota else { continue };
            let host = g.host.canonicalize().unwrap_or_else(|_| g.host.clone());
            // Two grants of one directory are one tree: the lower quota.
            match watched.iter_mut().find(|w| w.host == host) {
                Some(w) => w.quota = w.quota.min(quota),
                None => watched.push(Watched {
                    guest: g.guest.clone(),
                    host,
                    quota,
                }),
            }
        }
        if watched.is_empty() {
            return None;
        }
        let mut map = ACCOUNTS.locked();
        for w in &watched {
            map.entry(w.host.clone()).or_default().1 += 1;
        }
        drop(map);
        Some(Arc::new(QuotaBook {
            watched,
            stop: CancellationToken::new(),
            why: OnceLock::new(),
        }))
    }

    /// The accounts a file at `path` (as `/proc/self/fd` names it) draws
    /// on: every grant with a quota whose tree holds it; every one when
    /// the path is not known (/proc/self/fd cannot name a path longer
    /// than PATH_MAX).
    fn accounts_of(&self, path: Option<&Path>) -> Vec<usize> {
        use std::os::unix::ffi::OsStrExt;
        let Some(path) = path else {
            return (0..self.watched.len()).collect();
        };
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

    /// The accounts a write to `file` (at `path`, as /proc/self/fd names
    /// it) draws on: those of its path, or every one when it has other
    /// names (a hard link), which may lie in any grant.
    fn accounts_of_file(&self, file: &std::fs::File, path: Option<&Path>) -> Vec<usize> {
        use std::os::unix::fs::MetadataExt;
        match file.metadata() {
            Ok(m) if m.nlink() > 1 => self.accounts_of(None),
            _ => self.accounts_of(path),
        }
    }

    /// Charges `growth` to the accounts `of` when it fits them all (in
    /// one step, so two runs cannot both take the last room); else the
    /// first account it does not fit.
    fn try_charge(&self, of: &[usize], growth: u64) -> Result<(), usize> {
        let mut map = ACCOUNTS.locked();
        for &i in of {
            let w = &self.watched[i];
            let fits = account(&mut map, &w.host)
                .held()
                .is_some_and(|h| h.saturating_add(growth) <= w.quota);
            if !fits {
                return Err(i);
            }
        }
        for &i in of {
            let a = account(&mut map, &self.watched[i].host);
            a.charged = a.charged.saturating_add(growth);
            a.in_flight = a.in_flight.saturating_add(growth);
        }
        Ok(())
    }

    /// Charges `growth` bytes to the accounts `of` as in flight (until
    /// [`QuotaBook::landed`]), measuring a tree again when the charge
    /// would pass its quota; refuses, and stops the run, when the write
    /// does not fit even then. Measures on the calling thread: only a
    /// write near its quota pays for it.
    fn charge(&self, of: &[usize], growth: u64) -> Result<(), ()> {
        if self.try_charge(of, growth).is_ok() {
            return Ok(());
        }
        for &i in of {
            self.measure(i);
        }
        self.try_charge(of, growth).map_err(|i| {
            let held = ACCOUNTS
                .locked()
                .get(&self.watched[i].host)
                .and_then(|e| e.0.held());
            self.refuse(i, held, growth);
        })
    }

    /// A charged write has landed (or failed): a measurement from now on
    /// sees it.
    fn landed(&self, of: &[usize], growth: u64) {
        let mut map = ACCOUNTS.locked();
        for &i in of {
            let a = account(&mut map, &self.watched[i].host);
            a.in_flight = a.in_flight.saturating_sub(growth);
        }
    }

    /// Measures grant `i`'s tree and starts its account afresh from it:
    /// what was in flight when the walk began, or charged since, stays
    /// charged (the walk may not have seen it land).
    fn measure(&self, i: usize) -> Option<u64> {
        let host = &self.watched[i].host;
        let (base, unseen) = {
            let mut map = ACCOUNTS.locked();
            let a = account(&mut map, host);
            (a.charged, a.in_flight)
        };
        let held = tree_bytes(host).map(|t| t.saturating_add(unlinked_open(host)));
        let mut map = ACCOUNTS.locked();
        let a = account(&mut map, host);
        a.measured = held;
        a.base = base;
        a.unseen = unseen;
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

    /// Measures every grant now, for [`QuotaBook::after_program`].
    pub fn measure_all(&self) -> Vec<Option<u64>> {
        (0..self.watched.len()).map(|i| self.measure(i)).collect()
    }

    /// Measures after a program ran (its writes are not charged on the
    /// way). A grant the program filled (it holds more than `before`, the
    /// measure just before the program, and is at its quota) means the
    /// program was held at its file size cap (its writes failed with
    /// EFBIG, or SIGXFSZ killed it): the run fails for it, whatever the
    /// plugin makes of the exit. A grant the plugin filled to its quota
    /// and a program left alone is no one's fault.
    pub fn after_program(
        &self,
        program: &str,
        before: &[Option<u64>],
        violations: &crate::grants::Violations,
    ) {
        self.check_all();
        let map = ACCOUNTS.locked();
        for (i, w) in self.watched.iter().enumerate() {
            let held = map.get(&w.host).and_then(|e| e.0.measured);
            let grew = held > before.get(i).copied().flatten();
            if grew && held.is_some_and(|held| held >= w.quota) {
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

    /// What grant `i` may still grow by, measured now (what other runs
    /// have in flight counted); none when it cannot be measured.
    fn room_now(&self, i: usize) -> Option<u64> {
        self.measure(i)?;
        let held = ACCOUNTS.locked().get(&self.watched[i].host)?.0.held()?;
        Some(self.watched[i].quota.saturating_sub(held))
    }

    /// The largest file a program may write: what is left of the grant
    /// with least room (measured now; a program may write any of them),
    /// nothing when one cannot be measured. None when no cap applies:
    /// some rw grant has no quota (nor lies in one that has), and a
    /// program may write files of any size there.
    pub fn file_size_cap(&self, grants: &[FsGrant]) -> Option<u64> {
        // A grant without a quota inside the tree of one with a quota is
        // held by that one.
        let held = |g: &FsGrant| {
            g.quota.is_some() || {
                let host = g.host.canonicalize().unwrap_or_else(|_| g.host.clone());
                self.watched.iter().any(|w| host.starts_with(&w.host))
            }
        };
        let all_quota = grants
            .iter()
            .filter(|g| g.access == crate::grants::Access::ReadWrite)
            .all(held);
        if !all_quota {
            return None;
        }
        (0..self.watched.len())
            .map(|i| self.room_now(i).unwrap_or(0))
            .min()
    }

    /// What the file at host path `path` may still grow by (the least
    /// room of the grants holding it, measured now; of every grant when
    /// the path is not known); none when no quota holds it.
    pub fn room_for(&self, path: Option<&Path>) -> Option<u64> {
        self.accounts_of(path)
            .into_iter()
            .map(|i| self.room_now(i).unwrap_or(0))
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

/// Bytes of the files the daemon holds open that were unlinked from
/// below `host` (or whose path /proc/self/fd cannot give): gone from the
/// tree, they still take its disk until closed, and a plugin could keep
/// any number of them.
fn unlinked_open(host: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    for fd in fds.flatten() {
        let below = match std::fs::read_link(fd.path()) {
            Ok(target) => target
                .as_os_str()
                .as_bytes()
                .strip_suffix(b" (deleted)")
                .is_some_and(|p| Path::new(std::ffi::OsStr::from_bytes(p)).starts_with(host)),
            Err(_) => true,
        };
        if !below {
            continue;
        }
        // Gone for real (a file merely named so has links).
        if let Ok(m) = std::fs::metadata(fd.path())
            && m.is_file()
            && m.nlink() == 0
            && seen.insert((m.dev(), m.ino()))
        {
            total = total.saturating_add(m.len());
        }
    }
    total
}

/// The file behind a descriptor, and the host path it has now (none
/// when /proc/self/fd cannot name it).
fn file_of(
    state: &mut RunState,
    fd: &Resource<Descriptor>,
) -> Option<(Arc<std::fs::File>, Option<PathBuf>)> {
    let view = state.filesystem();
    let Ok(Descriptor::File(f)) = view.table.get(fd) else {
        return None;
    };
    let file = f.file.clone();
    let path = path_of(&file);
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
                    let of = book.accounts_of_file(&file, path.as_deref());
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
                    let of = book.accounts_of_file(&file, path.as_deref());
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
    types.func_wrap_async(
        "[method]descriptor.rename-at",
        |mut store,
         (fd, old, new_fd, new): (
            Resource<Descriptor>,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                let moved = match before_move(state, (&fd, &old), (&new_fd, &new), false) {
                    Ok(moved) => moved,
                    Err(refused) => return refused,
                };
                let r = store
                    .data_mut()
                    .filesystem()
                    .rename_at(fd, old, new_fd, new)
                    .await;
                if let Some((book, of, size)) = moved {
                    book.landed(&of, size);
                }
                answer(r)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.link-at",
        |mut store,
         (fd, flags, old, new_fd, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                let linked = match before_move(state, (&fd, &old), (&new_fd, &new), true) {
                    Ok(linked) => linked,
                    Err(refused) => return refused,
                };
                let r = store
                    .data_mut()
                    .filesystem()
                    .link_at(fd, flags, old, new_fd, new)
                    .await;
                if let Some((book, of, size)) = linked {
                    book.landed(&of, size);
                }
                answer(r)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A move's charge: the book, the accounts charged and the bytes.
type MoveCharge = (Arc<QuotaBook>, Vec<usize>, u64);

/// What a rename (or, with `link`, a hard link) of `old` to `new` must
/// pass before it is made: the path refusals (out of a grant, under a
/// read-only one, a symlink that would point out from where it lands),
/// then the quota's charge for what it brings in. The charge to settle
/// once the call is done, or the answer that refuses it.
fn before_move(
    state: &mut RunState,
    (fd, old): (&Resource<Descriptor>, &str),
    (new_fd, new): (&Resource<Descriptor>, &str),
    link: bool,
) -> Result<Option<MoveCharge>, Answer<()>> {
    use super::fs_gate::{moved_link, refusal, refuse};
    let (from, from_writes, to, moving) = if link {
        ("linking from", false, "making the link", "linking")
    } else {
        ("renaming", true, "renaming to", "moving")
    };
    let why = refusal(state, fd, from, old, from_writes)
        .or_else(|| refusal(state, new_fd, to, new, true))
        .or_else(|| moved_link(state, moving, (fd, old), (new_fd, new)));
    if let Some(why) = why {
        return Err(refuse(state, why));
    }
    let charge = moving_in(state, fd, old, new_fd, new, link);
    if let Some((book, of, size)) = &charge
        && book.charge(of, *size).is_err()
    {
        return Err(Ok((Err(ErrorCode::InsufficientSpace),)));
    }
    Ok(charge)
}

/// What renaming (or, with `link`, hard-linking) `old` under directory
/// `fd` to `new` under `new_fd` charges: the bytes it brings into each
/// grant with a quota that holds `new` (a rename within one tree brings
/// nothing to it; a link counts again, as the walk counts every name).
/// None when no quota is concerned.
fn moving_in(
    state: &mut RunState,
    fd: &Resource<Descriptor>,
    old: &str,
    new_fd: &Resource<Descriptor>,
    new: &str,
    link: bool,
) -> Option<(Arc<QuotaBook>, Vec<usize>, u64)> {
    let book = state.env.quota.clone()?;
    let view = state.filesystem();
    let dir_of = |fd: &Resource<Descriptor>| match view.table.get(fd) {
        Ok(Descriptor::Dir(d)) => d.dir.try_clone().ok(),
        _ => None,
    };
    let (from_dir, to_dir) = (dir_of(fd)?, dir_of(new_fd)?);
    let to = where_is(&to_dir, new);
    let from = where_is(&from_dir, old);
    let stays: Vec<usize> = match (&from, link) {
        (Some(from), false) => book.accounts_of(Some(from)),
        _ => Vec::new(),
    };
    let of: Vec<usize> = book
        .accounts_of(to.as_deref())
        .into_iter()
        .filter(|i| !stays.contains(i))
        .collect();
    if of.is_empty() {
        return None;
    }
    let mut size = size_of(&from_dir, old, from.as_deref(), link);
    if !link {
        // A file renamed over goes: only what the new one adds counts.
        let to_dir = cap_std::fs::Dir::from_std_file(to_dir);
        if let Ok(m) = to_dir.symlink_metadata(new)
            && m.is_file()
        {
            size = size.saturating_sub(m.len());
        }
    }
    Some((book, of, size))
}

/// The host path `rel` names under `dir`: its directory resolved (so `..`
/// and symlinks on the way count where they lead), its last component as
/// it is; none when that directory cannot be opened or named.
fn where_is(dir: &std::fs::File, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    let name = rel.file_name()?;
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
    let base = match parent {
        None => path_of(dir)?,
        Some(p) => {
            let root = cap_std::fs::Dir::from_std_file(dir.try_clone().ok()?);
            let sub = root.open_dir(p).ok()?.into_std_file();
            path_of(&sub)?
        }
    };
    Some(base.join(name))
}

/// The bytes `rel` under `dir` holds as a quota walk counts them: a
/// file's length, a directory's tree (everything, when it cannot be
/// measured).
fn size_of(dir: &std::fs::File, rel: &str, host: Option<&Path>, link: bool) -> u64 {
    let Ok(root) = dir.try_clone().map(cap_std::fs::Dir::from_std_file) else {
        return u64::MAX;
    };
    match root.symlink_metadata(rel) {
        Ok(m) if m.is_dir() => host.and_then(tree_bytes).unwrap_or(u64::MAX),
        Ok(m) if m.is_file() => m.len(),
        // A symlink moves as itself (nothing a walk counts); `link-at`
        // may follow it: count its target then.
        Ok(_) if link => root.metadata(rel).map(|m| m.len()).unwrap_or(0),
        Ok(_) => 0,
        Err(_) => 0,
    }
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
                // Against the size now, not the furthest this stream went:
                // the file may have been truncated since (its last write
                // has landed, or the stream would not take another).
                end.saturating_sub(size)
            }
        };
        // Where the file is now decides what it draws on (it may have been
        // renamed since the stream was opened).
        self.of = self
            .book
            .accounts_of_file(&self.file, path_of(&self.file).as_deref());
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
