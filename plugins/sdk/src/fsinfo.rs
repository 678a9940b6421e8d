//! Permission bits, ownership and directory syncs that work the same in
//! the sandbox (through the host's `files` interface, which reaches only
//! the job's grants) and natively (through the OS), so plugin logic that
//! needs them can be unit-tested with `cargo test`.

/// Mode and ownership of a path (following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeOwner {
    /// Permission bits (lower 12).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Mode and ownership of `path`.
pub fn mode_owner(path: &str) -> Result<ModeOwner, String> {
    platform::mode_owner(path)
}

/// Sets permission bits.
pub fn set_mode(path: &str, mode: u32) -> Result<(), String> {
    platform::set_mode(path, mode)
}

/// Changes owner and/or group, by name or number (natively: numbers).
pub fn set_owner(path: &str, owner: Option<&str>, group: Option<&str>) -> Result<(), String> {
    platform::set_owner(path, owner, group)
}

/// Makes a directory's entries durable (after a rename into it).
pub fn sync_dir(dir: &str) -> Result<(), String> {
    platform::sync_dir(dir)
}

/// A regular file's sha256 (lowercase hex) and size. In the sandbox the
/// host hashes it natively, several times faster than wasm can: what a
/// backup of many gigabytes needs.
pub fn sha256(path: &str) -> Result<(String, u64), String> {
    platform::sha256(path)
}

#[cfg(target_arch = "wasm32")]
mod platform {
    use super::ModeOwner;
    use crate::files;

    pub fn mode_owner(path: &str) -> Result<ModeOwner, String> {
        let i = files::stat(path)?;
        Ok(ModeOwner {
            mode: i.mode & 0o7777,
            uid: i.uid,
            gid: i.gid,
        })
    }

    pub fn set_mode(path: &str, mode: u32) -> Result<(), String> {
        files::set_mode(path, mode)
    }

    pub fn set_owner(path: &str, owner: Option<&str>, group: Option<&str>) -> Result<(), String> {
        files::set_owner(path, owner, group)
    }

    pub fn sync_dir(dir: &str) -> Result<(), String> {
        files::sync_dir(dir)
    }

    pub fn sha256(path: &str) -> Result<(String, u64), String> {
        files::sha256(path).map(|d| (d.sha256, d.size))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod platform {
    use super::ModeOwner;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    pub fn mode_owner(path: &str) -> Result<ModeOwner, String> {
        let m = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
        Ok(ModeOwner {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    pub fn set_mode(path: &str, mode: u32) -> Result<(), String> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| format!("chmod {path}: {e}"))
    }

    pub fn set_owner(path: &str, owner: Option<&str>, group: Option<&str>) -> Result<(), String> {
        let num = |s: Option<&str>| -> Result<Option<u32>, String> {
            s.map(|v| {
                v.parse()
                    .map_err(|_| format!("natively only numeric owners work, not `{v}`"))
            })
            .transpose()
        };
        std::os::unix::fs::chown(path, num(owner)?, num(group)?)
            .map_err(|e| format!("chown {path}: {e}"))
    }

    pub fn sync_dir(dir: &str) -> Result<(), String> {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("fsync {dir}: {e}"))
    }

    pub fn sha256(path: &str) -> Result<(String, u64), String> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 18];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((hex, size))
    }
}
