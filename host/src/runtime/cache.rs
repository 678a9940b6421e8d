//! Compiled components on disk, so a restart does not recompile.
//!
//! A file is named by the component's sha256 and a digest of the engine's
//! precompile compatibility hash (wasmtime version, target, settings), so a
//! changed plugin or a new opsd never loads stale machine code. Files are
//! written to a temp name and renamed; a file that fails to load is
//! deleted and the component compiled again.
//!
//! Machine code is trusted only if opsd wrote it: each file has a MAC
//! beside it (sha256 of a key, kept in the data directory with mode 0600,
//! and the file's bytes). A file changed by anyone else (a job granted
//! the directory by mistake, another local user) fails the check, is
//! dropped and compiled again, with a warning.

use crate::record::LoadSource;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The on-disk compile cache.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    /// The MAC key; without one (it could not be read or made), nothing
    /// is taken from the disk.
    mac_key: Option<[u8; 32]>,
}

/// Feeds `Hash` into sha256, so the engine key is stable across Rust
/// versions (std's hasher is not promised to be).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CompileCache {
    /// A cache in `dir` for code compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> CompileCache {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..8]);
        let mac_key = mac_key(&dir);
        CompileCache {
            dir,
            engine_key,
            mac_key,
        }
    }

    fn mac(&self, data: &[u8]) -> Option<String> {
        let key = self.mac_key?;
        let mut h = Sha256::new();
        h.update(key);
        h.update(data);
        Some(hex::encode(h.finalize()))
    }

    fn mac_path(path: &Path) -> PathBuf {
        path.with_extension("cwasm.mac")
    }

    /// Whether the entry at `path` is one opsd wrote.
    fn verified(&self, path: &Path) -> bool {
        let (Ok(data), Ok(said)) = (
            std::fs::read(path),
            std::fs::read_to_string(Self::mac_path(path)),
        ) else {
            return false;
        };
        self.mac(&data).is_some_and(|m| m == said.trim())
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled component for `bytes` (whose digest is
    /// `sha256`), compiling and storing it on a miss. Blocking: call from
    /// a blocking thread.
    /// `compiling` is called just before a compile (a miss), so a caller
    /// can say so while it lasts.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
        compiling: impl FnOnce(),
    ) -> wasmtime::Result<(Component, LoadSource, f64)> {
        let start = Instant::now();
        let path = self.path_for(sha256);
        if path.exists() && !self.verified(&path) {
            tracing::warn!(path = %path.display(), "dropping a compile cache entry opsd did not write (its MAC does not match)");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(Self::mac_path(&path));
        }
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of this
            // same engine configuration (the name carries its compatibility
            // hash) into opsd's own data directory; wasmtime checks the
            // header and refuses files from other versions or settings.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, LoadSource::DiskCache, ms(start))),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "dropping unreadable compile cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        compiling();
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&component, &path) {
            tracing::warn!(path = %path.display(), error = %e, "could not write compile cache entry");
            return Ok((component, LoadSource::Compiled, ms(start)));
        }
        // Use the entry just written, as a restart would: its code is a
        // file mapping the kernel can page out, not anonymous memory held
        // for the life of the daemon.
        drop(component);
        // SAFETY: as above; the file was written from this engine a moment
        // ago.
        let component = unsafe { Component::deserialize_file(engine, &path) }?;
        Ok((component, LoadSource::Compiled, ms(start)))
    }

    /// Removes entries for other components or other engines, and temp
    /// files a crash left behind.
    pub fn gc(&self, keep: &std::collections::BTreeSet<String>) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let wanted = name
                .strip_suffix(".cwasm")
                .or_else(|| name.strip_suffix(".cwasm.mac"))
                .and_then(|stem| stem.rsplit_once('-'))
                .is_some_and(|(sha, engine)| keep.contains(sha) && engine == self.engine_key);
            if !wanted {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::debug!(file = %name, "compile cache entry removed"),
                    Err(e) => {
                        tracing::debug!(file = %name, error = %e, "cannot remove compile cache entry")
                    }
                }
            }
        }
    }

    fn store(&self, component: &Component, path: &Path) -> anyhow::Result<()> {
        if self.mac_key.is_none() {
            anyhow::bail!("no MAC key, so no entry opsd could trust later");
        }
        std::fs::create_dir_all(&self.dir)?;
        let data = component.serialize()?;
        let mac = self.mac(&data).unwrap_or_default();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &data)?;
        std::fs::write(Self::mac_path(path), mac)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// The cache's MAC key: `cache.key` beside the cache directory (in the
/// data directory), made once with mode 0600 from the kernel's random.
fn mac_key(dir: &Path) -> Option<[u8; 32]> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = dir.with_file_name("cache.key");
    let read = || {
        let text = std::fs::read_to_string(&file).ok()?;
        <[u8; 32]>::try_from(hex::decode(text.trim()).ok()?.as_slice()).ok()
    };
    if let Some(key) = read() {
        return Some(key);
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .ok()?;
    std::fs::create_dir_all(file.parent()?).ok()?;
    // Written whole under a temporary name, then linked into place: a
    // second opsd starting at once keeps whichever key got there first.
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, hex::encode(key).as_bytes()))
        .ok()?;
    let linked = std::fs::hard_link(&tmp, &file);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Some(key),
        Err(_) => read(),
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}
