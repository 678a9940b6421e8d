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
    let rw = !d.perms.write_not_permitted();
    let key = std::sync::Arc::as_ptr(&d.dir) as usize;
    // The grant it was reached through (its preopen's), which, where
    // grants nest, need not be the deepest grant holding it: a read-only
    // grant nested in a read-write one is writable through the outer one,
    // as for the host's file calls and Landlock, and the other way round
    // is not; cap-std keeps `..` below that preopen's root.
    let known = state.dirs.get(&key);
    let holding = |g: &&'a FsGrant| {
        let root = g.host.canonicalize().unwrap_or_else(|_| g.host.clone());
        host.starts_with(root)
    };
    // Not known (none should be): of the grants of its access holding
    // it, the outermost, so no legitimate call is called an escape.
    let grant = known
        .and_then(|&i| grants.get(i))
        .filter(holding)
        .or_else(|| {
            grants
                .iter()
                .filter(holding)
                .filter(|g| (g.access == Access::ReadWrite) == rw)
                .min_by_key(|g| g.host.as_os_str().len())
        })
        .or_else(|| {
            grants
                .iter()
                .filter(holding)
                .max_by_key(|g| g.host.as_os_str().len())
        })?;
    let root = grant
        .host
        .canonicalize()
        .unwrap_or_else(|_| grant.host.clone());
    let rel = host.strip_prefix(&root).ok()?;
    Some(Place {
        grant,
        below: rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect(),
    })
}

/// The key of a directory descriptor in [`RunState::dirs`].
fn dir_key(state: &mut RunState, fd: &Resource<Descriptor>) -> Option<usize> {
    match state.filesystem().table.get(fd) {
        Ok(Descriptor::Dir(d)) => Some(std::sync::Arc::as_ptr(&d.dir) as usize),
        _ => None,
    }
}

/// `path` on the host as the kernel would follow it: its deepest
/// existing ancestor with symlinks resolved, then the rest by its words.
fn followed(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    for at in path.ancestors() {
        if let Ok(mut real) = at.canonicalize() {
            for c in rest.iter().rev() {
                match c {
                    Component::ParentDir => {
                        real.pop();
                    }
                    Component::Normal(n) => real.push(n),
                    _ => {}
                }
            }
            return real;
        }
        if let Some(c) = at.components().next_back() {
            rest.push(c);
        }
    }
    path.to_owned()
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
        // `.` too, when the call would change it.
        return (inside || writes).then(|| {
            format!(
                "fs: {op} `/{}` was refused: no fs grant gives the plugin that path (it has {}); add an `fs` grant if the job needs it",
                crate::escape::line(if path == "." { "" } else { path.trim_start_matches('/') }),
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

/// Why moving or hard-linking `old` (below `fd`) to `new` (below
/// `new_fd`) is refused, if it is a symlink that would point out of the
/// grant from its new place: a relative target is followed from the
/// link's directory, so one judged where it was made may lead out from
/// another (a link in a subdirectory a directory tree moved as a whole
/// carries is not looked at).
pub(super) fn moved_link(
    state: &mut RunState,
    op: &str,
    (fd, old): (&Resource<Descriptor>, &str),
    (new_fd, new): (&Resource<Descriptor>, &str),
) -> Option<String> {
    let from = landing(state, fd, old)?;
    let name = from.host.file_name()?.to_owned();
    let at = followed(from.host.parent()?).join(name);
    if !std::fs::symlink_metadata(&at)
        .ok()?
        .file_type()
        .is_symlink()
    {
        return None;
    }
    let target = std::fs::read_link(&at).ok()?;
    let to = landing(state, new_fd, new)?;
    let dir = followed(to.host.parent()?);
    if dir.starts_with(&to.root) && followed(&dir.join(&target)).starts_with(&to.root) {
        return None;
    }
    Some(format!(
        "fs: {op} the symlink `{}` -> `{}` to `{}` was refused: from there it would point out of the grant {}; a link a plugin makes must point inside its grant",
        from.guest,
        crate::escape::line(&target.to_string_lossy()),
        to.guest,
        to.grant
    ))
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
    // Each preopen noted with its grant: a directory opened below one is
    // in that grant, whichever others hold it too.
    linker
        .instance("wasi:filesystem/preopens@0.2.12")?
        .func_wrap("get-directories", |mut store, (): ()| {
            use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
            let state: &mut RunState = store.data_mut();
            let dirs = state.filesystem().get_directories()?;
            let env = state.env.clone();
            for (fd, guest) in &dirs {
                let grant = env.grants.fs.iter().position(|g| &g.guest == guest);
                if let (Some(key), Some(i)) = (dir_key(state, fd), grant) {
                    state.dirs.insert(key, i);
                }
            }
            Ok((dirs,))
        })?;
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
                let parent = dir_key(state, &fd).and_then(|k| state.dirs.get(&k).copied());
                let r = answer(
                    state
                        .filesystem()
                        .open_at(fd, path_flags, path, oflags, flags)
                        .await,
                );
                refused_by_link(state, "opening", at, &r);
                // A new directory's handle may reuse a closed one's: noted
                // anew each time.
                if let Ok((Ok(opened),)) = &r
                    && let Some(key) = dir_key(state, opened)
                {
                    match parent {
                        Some(i) => state.dirs.insert(key, i),
                        None => state.dirs.remove(&key),
                    };
                }
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
                    // By its words it may stay inside, yet a symlink the
                    // plugin made on the way (`deep -> .`) puts the link,
                    // or its target, elsewhere: judged where the kernel
                    // will follow it too.
                    let root = place.grant.host.canonicalize().unwrap_or_else(|_| place.grant.host.clone());
                    let mut dir = root.clone();
                    dir.extend(&place.below);
                    let dir = followed(&dir.join(&from));
                    let out = !dir.starts_with(&root) || !followed(&dir.join(&target)).starts_with(&root);
                    if lands.is_none() || out {
                        let why = format!(
                            "fs: the symlink `{}` -> `{}` was refused: a link a plugin makes must point inside its grant {} (a relative target that stays below the grant's root)",
                            crate::escape::line(&link),
                            crate::escape::line(&target),
                            place.grant_words()
                        );
                        return refuse(state, why);
                    }
                } else if dir_key(state, &fd).is_some() {
                    // A directory /proc cannot place (its host path past
                    // PATH_MAX): cap-std judges no target, so none is made.
                    let why = format!(
                        "fs: the symlink `{}` -> `{}` was refused: opsd cannot tell where its directory lies (its host path is too long to read back), so not whether the link points inside the plugin's grants",
                        crate::escape::line(&link),
                        crate::escape::line(&target),
                    );
                    return refuse(state, why);
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
