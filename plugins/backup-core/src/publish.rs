//! Files that become backups only once they are known good.
//!
//! Each artifact is written as `NAME.partial`, checked, given a sha256
//! sidecar (`NAME.sha256`, in `sha256sum` format), fsynced, and only then
//! renamed to `NAME`, after which the directory is fsynced. A run that
//! fails removes its partial files, so nothing that looks like a backup is
//! left by a failure; partial files a crash left behind are removed by the
//! next run.
//!
//! A directory-format dump (`NAME.dir`) is sealed the same way, its
//! sidecar a manifest: one `sha256sum` line per file (`HASH  NAME.dir/FILE`,
//! checkable with `sha256sum -c` from the target), every file and the
//! directory itself fsynced before the rename.

use crate::config::DumpFormat;
use opsd_sdk::{IoContext, PluginError, files};

/// An artifact on its way to publication.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Final guest path.
    pub path: String,
    pub bytes: u64,
    /// The file's hash; none for a directory (its manifest has each file's).
    pub sha256: Option<String>,
}

impl Pending {
    /// Where it is written until it is good.
    pub fn partial(path: &str) -> String {
        format!("{path}.partial")
    }
}

/// sha256 of a file and its size. In the sandbox the host hashes it
/// natively (`files.sha256`), so verifying a dump of gigabytes costs a
/// fraction of what hashing it in wasm did; a large dump is never in
/// memory either way.
pub fn sha256_file(path: &str) -> Result<(String, u64), PluginError> {
    opsd_sdk::fsinfo::sha256(path).map_err(|e| PluginError::other("io", format!("reading {e}")))
}

/// Checks a written partial file is non-empty, hashes it, writes the
/// sidecar and makes both durable. Returns what to publish.
pub fn seal(path: &str, mode: u32, group: Option<&str>) -> Result<Pending, PluginError> {
    let partial = Pending::partial(path);
    let (sha256, bytes) = sha256_file(&partial)?;
    if bytes == 0 {
        return Err(PluginError::other("empty", format!("{partial} is empty")));
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let sidecar = write_sidecar(path, &format!("{sha256}  {name}\n"), mode)?;
    restrict_and_sync(&[(partial, mode), (sidecar, mode)], group)?;
    Ok(Pending {
        path: path.to_owned(),
        bytes,
        sha256: Some(sha256),
    })
}

/// Writes `PATH.sha256`, private from the start; returns its path.
fn write_sidecar(path: &str, text: &str, mode: u32) -> Result<String, PluginError> {
    let sidecar = format!("{path}.sha256");
    create_private(&sidecar, mode)?;
    std::fs::write(&sidecar, text).at(format!("writing {sidecar}"))?;
    Ok(sidecar)
}

/// Gives each file its mode (and `group`), then fsyncs them all.
fn restrict_and_sync(paths: &[(String, u32)], group: Option<&str>) -> Result<(), PluginError> {
    for (p, mode) in paths {
        files::set_mode(p, *mode).map_err(|e| PluginError::other("io", format!("{p}: {e}")))?;
        if let Some(g) = group {
            files::set_owner(p, None, Some(g))
                .map_err(|e| PluginError::other("io", format!("{p}: group {g}: {e}")))?;
        }
    }
    for (p, _) in paths {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .at(format!("fsync {p}"))?;
    }
    Ok(())
}

/// A directory's mode for files of `mode`: search added wherever read is.
pub fn dir_mode_for(mode: u32) -> u32 {
    mode | ((mode & 0o444) >> 2)
}

/// Names of the regular files in a directory dump, sorted. Anything else
/// (a subdirectory, a link, a device) is no part of a dump pg_dump
/// writes, and is refused rather than sealed or trusted.
pub fn dump_files(dir: &str) -> Result<Vec<String>, PluginError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).at(format!("listing {dir}"))? {
        let entry = entry.at(format!("listing {dir}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().at(format!("{dir}/{name}"))?;
        if !kind.is_file() {
            return Err(PluginError::other(
                "io",
                format!(
                    "{dir}/{name} is not a regular file: a directory dump holds only the files pg_dump writes"
                ),
            ));
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// A directory dump's manifest: what its sidecar holds.
pub struct Manifest {
    /// `sha256sum` format, one `HASH  NAME/FILE` line per file.
    pub text: String,
    /// The files' total size.
    pub bytes: u64,
    /// The files, as paths under the directory.
    pub files: Vec<String>,
}

/// The manifest of the directory dump at `dir`, listed as `name`: every
/// file hashed by the host.
pub fn manifest(dir: &str, name: &str) -> Result<Manifest, PluginError> {
    let mut m = Manifest {
        text: String::new(),
        bytes: 0,
        files: Vec::new(),
    };
    for file in dump_files(dir)? {
        let path = format!("{dir}/{file}");
        let (sha256, bytes) = sha256_file(&path)?;
        m.text.push_str(&format!("{sha256}  {name}/{file}\n"));
        m.bytes += bytes;
        m.files.push(path);
    }
    Ok(m)
}

/// [`seal`] for a directory-format dump written into `PATH.partial/`.
pub fn seal_dir(path: &str, mode: u32, group: Option<&str>) -> Result<Pending, PluginError> {
    let partial = Pending::partial(path);
    let name = path.rsplit('/').next().unwrap_or(path);
    let m = manifest(&partial, name)?;
    if m.files.is_empty() {
        return Err(PluginError::other("empty", format!("{partial} is empty")));
    }
    let sidecar = write_sidecar(path, &m.text, mode)?;
    let mut restricted: Vec<(String, u32)> = m.files.into_iter().map(|f| (f, mode)).collect();
    restricted.push((sidecar, mode));
    restrict_and_sync(&restricted, group)?;
    // The directory last: its mode, then its entries made durable.
    files::set_mode(&partial, dir_mode_for(mode))
        .map_err(|e| PluginError::other("io", format!("{partial}: {e}")))?;
    if let Some(g) = group {
        files::set_owner(&partial, None, Some(g))
            .map_err(|e| PluginError::other("io", format!("{partial}: group {g}: {e}")))?;
    }
    files::sync_dir(&partial)
        .map_err(|e| PluginError::other("io", format!("fsync {partial}: {e}")))?;
    Ok(Pending {
        path: path.to_owned(),
        bytes: m.bytes,
        sha256: None,
    })
}

/// Removes a file or, not following links, a whole directory.
pub fn remove(path: &str) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    }
}

/// Checks that a file of a set retention dropped is one opsd writes:
/// only a directory dump (`NAME.dir`) may be a directory. Any other
/// directory named like part of a set is someone else's (a restore of
/// it), and pruning refuses before it deletes anything.
pub fn prunable(path: &str) -> Result<(), PluginError> {
    is_dir_dump(path).map(drop)
}

/// [`prunable`]'s check; true for a directory dump, false for a file.
fn is_dir_dump(path: &str) -> Result<bool, PluginError> {
    let meta = std::fs::symlink_metadata(path).at(format!("pruning {path}"))?;
    if meta.is_dir() && DumpFormat::of(path) != Some(DumpFormat::Directory) {
        return Err(PluginError::other(
            "prune",
            format!(
                "{path} is named like a backup set but is a directory opsd did not write: move it out of the backup target; nothing was pruned"
            ),
        ));
    }
    Ok(meta.is_dir())
}

/// Removes one file of a set retention dropped (see [`prunable`]). A
/// directory dump is first renamed back to `NAME.dir.partial`: at once it
/// no longer counts as a backup, and if the removal stops half way the
/// next run sweeps the rest.
pub fn prune_file(path: &str) -> Result<(), PluginError> {
    if !is_dir_dump(path)? {
        return std::fs::remove_file(path).at(format!("pruning {path}"));
    }
    let partial = Pending::partial(path);
    std::fs::rename(path, &partial).at(format!("pruning {path}"))?;
    std::fs::remove_dir_all(&partial).at(format!("pruning {path} (as {partial})"))
}

/// Creates a file or directory for a new backup, private, failing if
/// it exists: another run that picked the same name keeps its files.
pub fn create_new_private(path: &str, mode: u32, dir: bool) -> Result<(), PluginError> {
    let made = if dir {
        std::fs::create_dir(path)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
    };
    made.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PluginError::other(
                "io",
                format!("{path} already exists: another run of this backup is writing the same set; nothing of it was touched"),
            )
        } else {
            PluginError::io(format!("creating {path}"), &e)
        }
    })?;
    files::set_mode(path, mode).map_err(|e| PluginError::other("io", format!("{path}: {e}")))
}

/// Makes `path` empty with `mode`, so what is written into it next is
/// never more readable than that.
pub fn create_private(path: &str, mode: u32) -> Result<(), PluginError> {
    std::fs::File::create(path).at(format!("writing {path}"))?;
    files::set_mode(path, mode).map_err(|e| PluginError::other("io", format!("{path}: {e}")))
}

/// Renames every sealed partial into place and fsyncs the directory.
pub fn publish(dir: &str, pending: &[Pending]) -> Result<(), PluginError> {
    for p in pending {
        std::fs::rename(Pending::partial(&p.path), &p.path).at(format!("publishing {}", p.path))?;
    }
    files::sync_dir(dir).map_err(|e| PluginError::other("io", format!("fsync {dir}: {e}")))
}

/// Removes this run's partial files (and sidecars of unpublished ones)
/// after a failure.
pub fn discard(paths: &[String]) {
    for p in paths {
        let _ = remove(&Pending::partial(p));
        let _ = std::fs::remove_file(format!("{p}.sha256"));
    }
}

/// Removes the partial files (and directory dumps) of `sources` that
/// have been untouched for an hour, left by a crashed run; returns how
/// many. Only names this job's runs make are touched: `SOURCE-STAMP...
/// .partial`.
pub fn sweep_stale(dir: &str, sources: &[&str]) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path().to_string_lossy().into_owned();
        if is_own_partial(&name, sources) && idle_secs(&path) > 3600 && remove(&path).is_ok() {
            opsd_sdk::warn!("removed {name}, left by an interrupted run");
            n += 1;
        }
    }
    n
}

/// Whether `name` is a partial file a run for one of `sources` makes.
fn is_own_partial(name: &str, sources: &[&str]) -> bool {
    name.ends_with(".partial")
        && sources
            .iter()
            .any(|s| crate::sets::stamp_of(name, s).is_some())
}

/// Seconds since a file, or anything directly in a directory, last
/// changed: a directory dump still being written has a fresh file in it
/// even when no file was added for hours. Zero when unknown.
fn idle_secs(path: &str) -> u64 {
    let age = |p: &str| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |a| a.as_secs())
    };
    let mut idle = age(path);
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            idle = idle.min(age(&entry.path().to_string_lossy()));
        }
    }
    idle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_knows_only_its_own_partial_files() {
        let own = ["shop", "env"];
        for name in [
            "shop-20240101T030000Z.dump.partial",
            "shop-20240101T030000Z.dir.partial",
            "env-20240101T030000Z.copy.partial",
        ] {
            assert!(is_own_partial(name, &own), "{name}");
        }
        for name in [
            "shop-20240101T030000Z.dump",
            "other-20240101T030000Z.dump.partial",
            "shop-restore.partial",
            "shop.partial",
            "shopx-20240101T030000Z.dump.partial",
            "notes.partial",
        ] {
            assert!(!is_own_partial(name, &own), "{name}");
        }
    }
}
