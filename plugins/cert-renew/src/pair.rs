//! Replacing a certificate's key and chain together.
//!
//! The key and the chain live in one directory `D` (certbot's `live/NAME`
//! layout), which cert-renew keeps as a symbolic link to a versioned
//! directory beside it: `P/.NAME.opsd/vTIME-RAND/` holds both files.
//! A renewal writes the new pair into a fresh version directory (each
//! file fsynced, mode set before the first byte), then makes a new link
//! and renames it over `D`: one rename(2), so at every instant `D`
//! resolves to a complete old pair or a complete new pair, never a new
//! key with the old chain. A failure before that rename leaves `D` as it
//! was. The previous version is kept (for a quick manual rollback); older
//! ones are removed.
//!
//! A reader that opens `D/privkey.pem` and then `D/fullchain.pem` could
//! still straddle the rename; servers read both when they (re)load, which
//! the deploy hook triggers after the swap. A reader that must never mix
//! resolves `D` once (`realpath`) and reads both files from there.
//!
//! The first time, a `D` that is a real directory holding only the two
//! files is moved into the version store and replaced by the link: during
//! that one step `D` is briefly absent (a reader gets "not found", never
//! a mismatched pair).

use crate::keys::write_atomic;

/// Where a pair lives: the directory `D`, its parent and name, and the
/// two file names inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub dir: String,
    pub parent: String,
    pub name: String,
    pub key_file: String,
    pub cert_file: String,
}

fn split(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    let dir = if i == 0 { "/" } else { &path[..i] };
    let name = &path[i + 1..];
    (!name.is_empty()).then_some((dir, name))
}

impl Layout {
    /// The layout for a configured key and certificate path; both must
    /// name files in the same directory, which is not `/` itself.
    pub fn of(key: &str, cert: &str) -> Result<Layout, String> {
        let (kd, kf) = split(key).ok_or_else(|| format!("`{key}` names no file"))?;
        let (cd, cf) = split(cert).ok_or_else(|| format!("`{cert}` names no file"))?;
        if kd != cd {
            return Err(format!(
                "`key` ({key}) and `cert` ({cert}) must be in the same directory, so that cert-renew can replace them together (such as /etc/ssl/opsd/example.org/privkey.pem and .../fullchain.pem)"
            ));
        }
        let (parent, name) = split(kd).ok_or_else(|| {
            format!("`{key}`: the key and certificate need a directory of their own, not /")
        })?;
        if name.starts_with('.') || kf == cf {
            return Err(format!(
                "`{key}`, `{cert}`: the directory may not be hidden, and the two files must differ"
            ));
        }
        Ok(Layout {
            dir: kd.to_owned(),
            parent: parent.to_owned(),
            name: name.to_owned(),
            key_file: kf.to_owned(),
            cert_file: cf.to_owned(),
        })
    }

    /// The hidden directory beside `D` holding the versions.
    pub fn store(&self) -> String {
        join(&self.parent, &format!(".{}.opsd", self.name))
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// wasi-libc's symlink(2) (std's WASI wrapper is unstable), which maps
/// onto the preopened directories like every other path call.
#[cfg(target_os = "wasi")]
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    use std::ffi::{CString, c_char, c_int};
    unsafe extern "C" {
        fn symlink(target: *const c_char, link: *const c_char) -> c_int;
    }
    let t = CString::new(target)?;
    let l = CString::new(link)?;
    // SAFETY: two NUL-terminated strings that outlive the call.
    if unsafe { symlink(t.as_ptr(), l.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "wasi"))]
fn symlink(target: &str, link: &str) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

fn version_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut r = [0u8; 4];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    format!(
        "v{:012}{:09}-{:08x}",
        now.as_secs(),
        now.subsec_nanos(),
        u32::from_be_bytes(r)
    )
}

/// Writes one file: (path, bytes, mode).
pub type WriteFile<'a> = dyn FnMut(&str, &[u8], u32) -> Result<(), String> + 'a;

/// Writes the pair as one step (see the module docs).
pub fn install(layout: &Layout, key_pem: &[u8], cert_pem: &[u8]) -> Result<(), String> {
    install_with(layout, key_pem, cert_pem, &mut |p, d, m| {
        write_atomic(p, d, m)
    })
}

/// [`install`] with the file writer given, so tests can make a write fail.
pub fn install_with(
    layout: &Layout,
    key_pem: &[u8],
    cert_pem: &[u8],
    write: &mut WriteFile<'_>,
) -> Result<(), String> {
    let store = layout.store();
    match std::fs::create_dir(&store) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{store}: {e}")),
    }
    // What D is now: a link (ours), a real directory (first run), or
    // nothing.
    let existing = match std::fs::symlink_metadata(&layout.dir) {
        Ok(m) if m.file_type().is_symlink() => Some(false),
        Ok(m) if m.is_dir() => Some(true),
        Ok(_) => {
            return Err(format!(
                "{} is a file; it must be a directory (or cert-renew's link)",
                layout.dir
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", layout.dir)),
    };
    if existing == Some(true) {
        refuse_foreign_files(layout)?;
    }
    let version = version_name();
    let vdir = join(&store, &version);
    std::fs::create_dir(&vdir).map_err(|e| format!("{vdir}: {e}"))?;
    let written = (|| {
        // Closed while the key is written (its file exists, empty, for
        // a moment before its mode is set, and a descriptor opened then
        // would read the key), then as open as D was: a 0700 D stays so.
        let mode = opsd_sdk::fsinfo::mode_owner(&mode_source(layout, existing, &vdir))
            .or_else(|_| opsd_sdk::fsinfo::mode_owner(&vdir))
            .map_err(|e| format!("the mode of {vdir}: {e}"))?
            .mode;
        opsd_sdk::fsinfo::set_mode(&vdir, 0o700)?;
        write(&join(&vdir, &layout.key_file), key_pem, 0o600)?;
        write(&join(&vdir, &layout.cert_file), cert_pem, 0o644)?;
        opsd_sdk::fsinfo::set_mode(&vdir, mode & 0o777)?;
        let _ = opsd_sdk::fsinfo::sync_dir(&vdir);
        // Made beside D, so its relative target reads the same before
        // and after the rename.
        let link = join(&layout.parent, &format!(".{}.opsd-link", layout.name));
        let _ = std::fs::remove_file(&link);
        let target = format!(".{}.opsd/{version}", layout.name);
        symlink(&target, &link).map_err(|e| format!("making the link {link}: {e}"))?;
        Ok::<_, String>(link)
    })();
    let link = match written {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&vdir);
            return Err(e);
        }
    };
    if existing == Some(true) {
        // First run: the real directory becomes the oldest version.
        let aside = join(&store, "v000000000000000000000-original");
        let _ = std::fs::remove_dir_all(&aside);
        if let Err(e) = std::fs::rename(&layout.dir, &aside) {
            let _ = std::fs::remove_file(&link);
            let _ = std::fs::remove_dir_all(&vdir);
            return Err(format!("moving {} aside to {aside}: {e}", layout.dir));
        }
    }
    if let Err(e) = std::fs::rename(&link, &layout.dir) {
        let _ = std::fs::remove_file(&link);
        if existing == Some(true) {
            let _ = std::fs::rename(join(&store, "v000000000000000000000-original"), &layout.dir);
        }
        let _ = std::fs::remove_dir_all(&vdir);
        return Err(format!(
            "replacing {} with the link to {vdir}: {e}",
            layout.dir
        ));
    }
    let _ = opsd_sdk::fsinfo::sync_dir(&layout.parent);
    prune(&store, &version);
    Ok(())
}

/// Whose mode a new version takes: the real `D`, or the version our
/// link points to; a new directory's otherwise (no `D`, or a link that
/// is not ours, which is never followed).
fn mode_source(layout: &Layout, existing: Option<bool>, vdir: &str) -> String {
    let ours = format!(".{}.opsd/", layout.name);
    match existing {
        Some(true) => layout.dir.clone(),
        Some(false) => match std::fs::read_link(&layout.dir) {
            Ok(t) => match t.to_str().and_then(|t| t.strip_prefix(&ours)) {
                Some(v) if v.starts_with('v') && !v.contains('/') => join(&layout.store(), v),
                _ => vdir.to_owned(),
            },
            Err(_) => vdir.to_owned(),
        },
        None => vdir.to_owned(),
    }
}

/// A real `D` may hold only the pair (and this plugin's temporary
/// files): anything else would vanish into the version store.
fn refuse_foreign_files(layout: &Layout) -> Result<(), String> {
    let entries = std::fs::read_dir(&layout.dir).map_err(|e| format!("{}: {e}", layout.dir))?;
    let mut foreign = Vec::new();
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", layout.dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name == layout.key_file
            || name == layout.cert_file
            || name == ".opsd-write-check"
            || (name.starts_with('.') && name.ends_with(".opsd-tmp"));
        if !ours {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    foreign.sort();
    Err(format!(
        "{} also holds {}: cert-renew replaces the directory as a whole (a link to a versioned copy, so key and chain change together); move those files elsewhere",
        layout.dir,
        foreign.join(", ")
    ))
}

/// Keeps the current and the previous version.
fn prune(store: &str, current: &str) {
    let Ok(entries) = std::fs::read_dir(store) else {
        return;
    };
    let mut versions: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('v') && n.as_str() <= current)
        .collect();
    versions.sort();
    let keep = versions.len().saturating_sub(2);
    for old in &versions[..keep] {
        let _ = std::fs::remove_dir_all(join(store, old));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn layout(root: &std::path::Path) -> Layout {
        let d = root.join("site");
        Layout::of(
            &format!("{}/privkey.pem", d.display()),
            &format!("{}/fullchain.pem", d.display()),
        )
        .unwrap()
    }

    fn read_pair(l: &Layout) -> (String, String) {
        (
            std::fs::read_to_string(join(&l.dir, &l.key_file)).unwrap(),
            std::fs::read_to_string(join(&l.dir, &l.cert_file)).unwrap(),
        )
    }

    #[test]
    fn layouts_need_one_directory() {
        assert!(
            Layout::of("/a/k.pem", "/b/c.pem")
                .unwrap_err()
                .contains("same directory")
        );
        assert!(Layout::of("/k.pem", "/c.pem").is_err());
        let l = Layout::of("/etc/ssl/x/k.pem", "/etc/ssl/x/c.pem").unwrap();
        assert_eq!((l.parent.as_str(), l.name.as_str()), ("/etc/ssl", "x"));
        assert_eq!(l.store(), "/etc/ssl/.x.opsd");
    }

    #[test]
    fn a_real_directory_becomes_a_link_and_old_versions_go() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        std::fs::create_dir(&l.dir).unwrap();
        std::fs::write(join(&l.dir, "privkey.pem"), "K0").unwrap();
        std::fs::write(join(&l.dir, "fullchain.pem"), "C0").unwrap();
        for n in 1..=4 {
            install(&l, format!("K{n}").as_bytes(), format!("C{n}").as_bytes()).unwrap();
            assert_eq!(read_pair(&l), (format!("K{n}"), format!("C{n}")));
            assert!(
                std::fs::symlink_metadata(&l.dir)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let versions = std::fs::read_dir(l.store()).unwrap().count();
        assert_eq!(versions, 2, "the current and the previous version");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(join(&l.dir, "privkey.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_directory_with_other_files_is_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        std::fs::create_dir(&l.dir).unwrap();
        std::fs::write(join(&l.dir, "README"), "mine").unwrap();
        let e = install(&l, b"K", b"C").unwrap_err();
        assert!(e.contains("also holds README"), "{e}");
        assert!(std::fs::symlink_metadata(&l.dir).unwrap().is_dir());
    }

    /// A write of the second file that fails leaves the old pair in place
    /// and no half-made version behind.
    #[test]
    fn a_failing_second_write_keeps_the_old_pair() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        install(&l, b"K1", b"C1").unwrap();
        let mut calls = 0;
        let e = install_with(&l, b"K2", b"C2", &mut |p, d, m| {
            calls += 1;
            if calls == 2 {
                return Err(format!("{p}: No space left on device"));
            }
            write_atomic(p, d, m)
        })
        .unwrap_err();
        assert!(e.contains("No space left"), "{e}");
        assert_eq!(read_pair(&l), ("K1".into(), "C1".into()));
        assert_eq!(std::fs::read_dir(l.store()).unwrap().count(), 1);
    }

    /// Nobody else can enter a version while its key is written (a local
    /// user who opened the key's temporary file before its mode was set
    /// would read the key through that descriptor), and the version then
    /// opens up only as far as `D` was: a 0700 `D` stays 0700.
    #[test]
    fn a_version_is_closed_while_written_and_keeps_the_directorys_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        std::fs::create_dir(&l.dir).unwrap();
        std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let mut seen = Vec::new();
        install_with(&l, b"K1", b"C1", &mut |p, d, m| {
            seen.push(mode(&p[..p.rfind('/').unwrap()]));
            write_atomic(p, d, m)
        })
        .unwrap();
        assert_eq!(seen, [0o700, 0o700], "the version while written");
        assert_eq!(mode(&l.dir), 0o750);
        std::fs::set_permissions(&l.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        install(&l, b"K2", b"C2").unwrap();
        assert_eq!(mode(&l.dir), 0o700, "the mode of the version it replaced");
        // A D made by cert-renew itself is as a new directory is.
        let fresh = Layout::of(
            &format!("{}/new/privkey.pem", t.path().display()),
            &format!("{}/new/fullchain.pem", t.path().display()),
        )
        .unwrap();
        install(&fresh, b"K", b"C").unwrap();
        // Our link left dangling (its version removed by hand) or a link
        // of someone else's: the new version is as a new directory is.
        std::fs::remove_dir_all(std::fs::canonicalize(&fresh.dir).unwrap()).unwrap();
        install(&fresh, b"K2", b"C2").unwrap();
        std::fs::remove_file(&fresh.dir).unwrap();
        std::os::unix::fs::symlink(&l.dir, &fresh.dir).unwrap();
        install(&fresh, b"K3", b"C3").unwrap();
        assert_eq!(mode(&l.dir), 0o700, "a link not ours is never followed");
        let probe = t.path().join("probe");
        std::fs::create_dir(&probe).unwrap();
        assert_eq!(mode(&fresh.dir), mode(probe.to_str().unwrap()));
    }

    /// Readers that resolve the directory once never see a key from one
    /// pair with the chain of another while pairs are replaced.
    #[test]
    fn readers_never_see_a_mixed_pair() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        install(&l, b"0", b"0").unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(real) = std::fs::canonicalize(&l.dir) else {
                        continue;
                    };
                    let k = std::fs::read_to_string(real.join(&l.key_file));
                    let c = std::fs::read_to_string(real.join(&l.cert_file));
                    if let (Ok(k), Ok(c)) = (k, c) {
                        assert_eq!(k, c, "a mixed pair in {}", real.display());
                        seen += 1;
                    }
                }
                seen
            });
            for n in 1..300 {
                let v = n.to_string();
                install(&l, v.as_bytes(), v.as_bytes()).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(read_pair(&l), ("299".into(), "299".into()));
    }
}
