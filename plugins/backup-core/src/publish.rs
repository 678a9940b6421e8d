//! Files that become backups only once they are known good.
//!
//! Each artifact is written as `NAME.partial`, checked, given a sha256
//! sidecar (`NAME.sha256`, in `sha256sum` format), fsynced, and only then
//! renamed to `NAME`, after which the directory is fsynced. A run that
//! fails removes its partial files, so nothing that looks like a backup is
//! left by a failure; partial files a crash left behind are removed by the
//! next run.

use opsd_sdk::{IoContext, PluginError, files};

/// An artifact on its way to publication.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Final guest path.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
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
    let sidecar = format!("{path}.sha256");
    create_private(&sidecar, mode)?;
    std::fs::write(&sidecar, format!("{sha256}  {name}\n")).at(format!("writing {sidecar}"))?;
    for p in [&partial, &sidecar] {
        files::set_mode(p, mode).map_err(|e| PluginError::other("io", format!("{p}: {e}")))?;
        if let Some(g) = group {
            files::set_owner(p, None, Some(g))
                .map_err(|e| PluginError::other("io", format!("{p}: group {g}: {e}")))?;
        }
    }
    for p in [&partial, &sidecar] {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .at(format!("fsync {p}"))?;
    }
    Ok(Pending {
        path: path.to_owned(),
        bytes,
        sha256,
    })
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
        let _ = std::fs::remove_file(Pending::partial(p));
        let _ = std::fs::remove_file(format!("{p}.sha256"));
    }
}

/// Removes partial files older than an hour that a crash left behind;
/// returns how many.
pub fn sweep_stale(dir: &str) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if name.ends_with(".partial") && old && std::fs::remove_file(entry.path()).is_ok() {
            opsd_sdk::warn!("removed {name}, left by an interrupted run");
            n += 1;
        }
    }
    n
}
