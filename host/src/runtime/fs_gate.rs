//! Refusals on a plugin's file calls that fail the run: a path that
//! leads out of its grant (`..` past the grant's root), a symlink a
//! plugin makes that points out of it (an absolute target included), and
//! a change under a read-only grant. wasmtime-wasi refuses all three with
//! a bare `not-permitted`, which a plugin may catch and ignore; opsd
//! records each as a grant violation naming the grant, so the attempt
//! fails the run and says why, as a refused program or address does.
//!
//! Paths are judged by their words, below the grant's root, before the
//! call is made; wasmtime-wasi's own checks (cap-std) stay behind them for
//! what words cannot tell (a symlink the host put in the grant).

use super::state::RunState;
use crate::grants::fs::{Access, FsGrant};
use std::path::{Component, Path, PathBuf};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorStat, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

/// The grant a directory descriptor lies in, and how deep below its root.
struct Place<'a> {
    grant: &'a FsGrant,
    /// Components from the grant's root to the directory.
    below: Vec<String>,
}

/// Where the directory behind `fd` is, in the job's grants.
fn place_of<'a>(
    state: &mut RunState,
    fd: &Resource<Descriptor>,
    grants: &'a [FsGrant],
) -> Option<Place<'a>> {
    use std::os::fd::AsRawFd;
    let view = state.filesystem();
    let Ok(Descriptor::Dir(d)) = view.table.get(fd) else {
        return None;
    };
    let host = std::fs::read_link(format!("/proc/self/fd/{}", d.dir.as_raw_fd())).ok()?;
    // The deepest grant holding it (grants may nest).
    grants
        .iter()
        .filter_map(|g| {
            let root = g.host.canonicalize().unwrap_or_else(|_| g.host.clone());
            let rel = host.strip_prefix(&root).ok()?;
            Some(Place {
                grant: g,
                below: rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect(),
            })
        })
        .max_by_key(|p| p.grant.host.as_os_str().len())
}

impl Place<'_> {
    /// `path` from this directory, as a guest path in the grant; none
    /// when its words lead above the grant's root or start at `/`.
    fn resolve(&self, path: &str) -> Option<Vec<String>> {
        let mut at = self.below.clone();
        for c in Path::new(path).components() {
            match c {
                Component::Normal(n) => at.push(n.to_string_lossy().into_owned()),
                Component::CurDir => {}
                Component::ParentDir => {
                    at.pop()?;
                }
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(at)
    }

    /// A guest path for the operator: the grant's guest path, then `rel`.
    fn guest(&self, rel: &[String]) -> String {
        let mut p = PathBuf::from(&self.grant.guest);
        p.extend(rel);
        p.display().to_string()
    }

    fn grant_words(&self) -> String {
        format!("{} ({})", self.grant.guest, self.grant.host.display())
    }
}

/// Whether `fd` is the empty directory at `/` below the grants: a path
/// the guest's WASI library resolved there lies in no grant.
fn is_empty_root(state: &mut RunState, fd: &Resource<Descriptor>) -> bool {
    use std::os::fd::AsRawFd;
    let empty = state
        .env
        .idle_dir
        .canonicalize()
        .unwrap_or_else(|_| state.env.idle_dir.clone());
    let view = state.filesystem();
    let Ok(Descriptor::Dir(d)) = view.table.get(fd) else {
        return false;
    };
    std::fs::read_link(format!("/proc/self/fd/{}", d.dir.as_raw_fd())).is_ok_and(|p| p == empty)
}

/// Why `op` on `path` below `fd` is refused, if it is; `writes` for
/// calls that change the tree.
pub(super) fn refusal(
    state: &mut RunState,
    fd: &Resource<Descriptor>,
    op: &str,
    path: &str,
    writes: bool,
) -> Option<String> {
    let env = state.env.clone();
    if is_empty_root(state, fd) {
        let inside = Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::CurDir));
        return inside.then(|| {
            format!(
                "fs: {op} `/{}` was refused: no fs grant gives the plugin that path (it has {}); add an `fs` grant if the job needs it",
                crate::escape::line(path.trim_start_matches('/')),
                crate::grants::fs::describe(&env.grants.fs)
            )
        });
    }
    let place = place_of(state, fd, &env.grants.fs)?;
    let shown = crate::escape::line(path);
    let Some(rel) = place.resolve(path) else {
        return Some(format!(
            "fs: {op} `{shown}` in {} was refused: it leads out of the grant {}; a plugin's paths stay below the grant's root (no `..` past it, no absolute path)",
            place.guest(&place.below),
            place.grant_words()
        ));
    };
    if writes && place.grant.access == Access::ReadOnly {
        return Some(format!(
            "fs: {op} `{}` was refused: the grant {} is read-only; set access = \"rw\" if the job must change it",
            place.guest(&rel),
            place.grant_words()
        ));
    }
    None
}

/// Where a path the words allowed lands on the host, kept before a call
/// so that, when wasmtime-wasi refuses it, opsd can tell whether a
/// symlink in the grant led out (a violation) or the system said no.
struct Landing {
    root: PathBuf,
    host: PathBuf,
    guest: String,
    grant: String,
}

fn landing(state: &mut RunState, fd: &Resource<Descriptor>, path: &str) -> Option<Landing> {
    let env = state.env.clone();
    let place = place_of(state, fd, &env.grants.fs)?;
    let rel = place.resolve(path)?;
    let root = place
        .grant
        .host
        .canonicalize()
        .unwrap_or_else(|_| place.grant.host.clone());
    let mut host = root.clone();
    host.extend(&rel);
    Some(Landing {
        root,
        host,
        guest: place.guest(&rel),
        grant: place.grant_words(),
    })
}

/// After a not-permitted answer: a violation when a symlink on the way
/// leads out of the grant (the deepest part of the path that exists,
/// followed on the host, is outside its root).
fn refused_by_link<T>(state: &mut RunState, op: &str, at: Option<Landing>, r: &Answer<T>) {
    let (Some(at), Ok((Err(ErrorCode::NotPermitted),))) = (at, r) else {
        return;
    };
    let resolved = at.host.ancestors().find_map(|p| p.canonicalize().ok());
    if resolved.is_some_and(|p| !p.starts_with(&at.root)) {
        state.env.violations.record(format!(
            "fs: {op} `{}` was refused: a symlink on the way leads out of the grant {}; a plugin reaches only what lies inside its grants",
            at.guest, at.grant
        ));
    }
}

/// Records a refusal as a violation of the run and answers not-permitted.
pub(super) fn refuse<T>(
    state: &mut RunState,
    why: String,
) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    state.env.violations.record(why);
    Ok((Err(ErrorCode::NotPermitted),))
}

type Answer<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

fn answer<T>(r: wasmtime_wasi::p2::FsResult<T>) -> Answer<T> {
    match r {
        Ok(v) => Ok((Ok(v),)),
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}

/// Puts the refusals in front of wasi:filesystem's path calls
/// (`rename-at` and `link-at`, which quotas also watch, ask [`refusal`]
/// from the quota's gate).
///
/// Long on purpose: one wrapper per call, each the same three steps
/// (judge the path, refuse as a violation, or hand on).
pub fn gate_paths(linker: &mut Linker<RunState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance("wasi:filesystem/types@0.2.12")?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                let writes = flags
                    .intersects(DescriptorFlags::WRITE | DescriptorFlags::MUTATE_DIRECTORY)
                    || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
                if let Some(why) = refusal(state, &fd, "opening", &path, writes) {
                    return refuse(state, why);
                }
                let at = landing(state, &fd, &path);
                let r = answer(
                    state
                        .filesystem()
                        .open_at(fd, path_flags, path, oflags, flags)
                        .await,
                );
                refused_by_link(state, "opening", at, &r);
                r
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store, (fd, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                if let Some(why) = refusal(state, &fd, "making the symlink", &link, true) {
                    return refuse(state, why);
                }
                // The target, read from the link's own directory.
                let env = state.env.clone();
                if let Some(place) = place_of(state, &fd, &env.grants.fs) {
                    let from = Path::new(&link).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                    let lands = place.resolve(&from).and_then(|dir| {
                        Place { grant: place.grant, below: dir }.resolve(&target)
                    });
                    if lands.is_none() {
                        let why = format!(
                            "fs: the symlink `{}` -> `{}` was refused: a link a plugin makes must point inside its grant {} (a relative target that stays below the grant's root)",
                            crate::escape::line(&link),
                            crate::escape::line(&target),
                            place.grant_words()
                        );
                        return refuse(state, why);
                    }
                }
                answer(state.filesystem().symlink_at(fd, target, link).await)
            })
        },
    )?;
    for (name, op, writes) in [
        (
            "[method]descriptor.create-directory-at",
            "making the directory",
            true,
        ),
        ("[method]descriptor.unlink-file-at", "removing", true),
        (
            "[method]descriptor.remove-directory-at",
            "removing the directory",
            true,
        ),
    ] {
        types.func_wrap_async(
            name,
            move |mut store, (fd, path): (Resource<Descriptor>, String)| {
                Box::new(async move {
                    let state: &mut RunState = store.data_mut();
                    if let Some(why) = refusal(state, &fd, op, &path, writes) {
                        return refuse(state, why);
                    }
                    let mut fs = state.filesystem();
                    answer(match name {
                        "[method]descriptor.create-directory-at" => {
                            fs.create_directory_at(fd, path).await
                        }
                        "[method]descriptor.unlink-file-at" => fs.unlink_file_at(fd, path).await,
                        _ => fs.remove_directory_at(fd, path).await,
                    })
                })
            },
        )?;
    }
    types.func_wrap_async(
        "[method]descriptor.stat-at",
        |mut store, (fd, flags, path): (Resource<Descriptor>, PathFlags, String)| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                if let Some(why) = refusal(state, &fd, "looking at", &path, false) {
                    return refuse::<DescriptorStat>(state, why);
                }
                let at = landing(state, &fd, &path);
                let r = answer(state.filesystem().stat_at(fd, flags, path).await);
                refused_by_link(state, "looking at", at, &r);
                r
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.readlink-at",
        |mut store, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let state: &mut RunState = store.data_mut();
                if let Some(why) = refusal(state, &fd, "reading the link", &path, false) {
                    return refuse::<String>(state, why);
                }
                answer(state.filesystem().readlink_at(fd, path).await)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
