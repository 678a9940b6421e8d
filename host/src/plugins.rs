//! Where plugins come from: the built-ins compiled into the binary, and
//! `.wasm` files dropped into the plugin directory.
//!
//! The directory is kept as an index of files, each either ready (loaded,
//! validated, described) or rejected (with the reason). A file is looked
//! at only once its size and change time have held still for [`SETTLE`] (a file
//! being copied is never loaded half-written) and only when its content
//! changed, so a bad file is reported once, not at every look. The daemon
//! refreshes the index on inotify events and every [`RESCAN_EVERY`] as a
//! fallback; without a daemon, the CLI scans once when it needs to.
//!
//! Names come from `describe()`. A directory plugin with a built-in's name
//! is `shadowed` unless `[plugins] override_builtin` names it; two files
//! with one name are both refused, so neither is chosen silently. A run
//! holds the plugin it started with, so replacing a file never disturbs
//! it; the next run uses the new file.

pub use crate::builtins::{Builtin, builtins};
use crate::locks::Unpoisoned;
use crate::record::PluginLoad;
use crate::runtime::{Capabilities, LoadedPlugin, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A file's path, size and change time, as listed.
type Stat = (PathBuf, u64, Option<SystemTime>);

/// How long a file's size and mtime must hold still before it is read.
pub const SETTLE: Duration = Duration::from_millis(600);

/// How often the daemon rescans the directory besides inotify events.
pub const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// A plugin name that nothing usable answers to.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(
        "plugin `{name}` not found: it is not built in ({builtins}) and no .wasm file in {dir} describes itself as `{name}`{rejected}"
    )]
    NotFound {
        name: String,
        dir: String,
        builtins: String,
        /// A note about rejected files there, which may be the one meant.
        rejected: String,
    },
    #[error("built-in plugin `{name}`: {reason}")]
    Builtin { name: String, reason: String },
    #[error("plugin `{name}` is claimed by more than one file ({}); remove or rename all but one", files.join(", "))]
    Clash { name: String, files: Vec<String> },
}

/// A plugin found by name.
#[derive(Clone)]
pub struct Found {
    pub plugin: Arc<LoadedPlugin>,
    pub load: PluginLoad,
    /// `builtin`, or the file's path.
    pub source: String,
}

/// One row of `opsd plugins list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEntry {
    pub name: String,
    pub version: String,
    /// `builtin`, or the file's path.
    pub source: String,
    pub sha256: String,
    pub status: PluginStatus,
    /// Why it was rejected or shadowed.
    pub error: Option<String>,
    pub description: String,
    pub capabilities: Option<Capabilities>,
    pub size: u64,
}

/// Whether a plugin answers to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginStatus {
    /// Jobs naming it run it.
    Ready,
    /// Not loaded; `error` says why and what to do.
    Rejected,
    /// Valid, but another plugin answers to its name (a built-in, or the
    /// file `override_builtin` chose).
    Shadowed,
}

words!(PluginStatus {
    Ready => "ready",
    Rejected => "rejected",
    Shadowed => "shadowed",
});

/// One file of the plugin directory as last looked at.
struct FileEntry {
    size: u64,
    modified: Option<SystemTime>,
    sha256: String,
    /// The plugin, and how the next run should report its loading.
    state: Result<(Arc<LoadedPlugin>, PluginLoad), String>,
    /// Refused for who may write it: judged again at every look, whatever
    /// its content.
    untrusted: bool,
}

/// Resolves plugin names for one configuration.
pub struct Registry {
    runtime: Arc<Runtime>,
    plugin_dir: PathBuf,
    overrides: Vec<String>,
    files: Mutex<BTreeMap<PathBuf, FileEntry>>,
    scanned: std::sync::atomic::AtomicBool,
    /// One scan at a time (watcher, timer and finds may all ask).
    scan_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// A registry over `plugin_dir`; `overrides` are built-in names a
    /// directory plugin may replace.
    pub fn new(runtime: Arc<Runtime>, plugin_dir: PathBuf, overrides: Vec<String>) -> Registry {
        Registry {
            runtime,
            plugin_dir,
            overrides,
            files: Mutex::new(BTreeMap::new()),
            scanned: std::sync::atomic::AtomicBool::new(false),
            scan_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The runtime plugins load into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The directory watched.
    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    async fn ensure_scanned(&self) {
        if !self.scanned.load(std::sync::atomic::Ordering::SeqCst) {
            self.rescan().await;
        }
    }

    /// Brings the index up to date with the directory: new and changed
    /// files that have settled are loaded, removed ones forgotten.
    /// Returns true when anything changed.
    pub async fn rescan(&self) -> bool {
        let _one = self.scan_lock.lock().await;
        // A listing that fails (no descriptor left, a permission
        // changed) says nothing about which files are there: keep what is
        // known rather than take every plugin for removed.
        let on_disk = match stat_wasm_files(&self.plugin_dir) {
            Ok(files) => files,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!(dir = %self.plugin_dir.display(), error = %e, "cannot list the plugin directory; keeping the plugins known");
                return false;
            }
        };
        let dir_trust = crate::trust::check_plugin_dir(&self.plugin_dir);
        let Some(candidates) = self.settled_changes(&on_disk, &dir_trust).await else {
            return false;
        };
        let mut changed = false;
        for (path, size, modified) in candidates {
            changed |= self.look_at(path, size, modified, &dir_trust).await;
        }
        changed |= self.forget_removed(&on_disk);
        self.scanned
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if changed {
            self.forget_unused();
        }
        changed
    }

    /// The files that changed since the last look (or must be judged
    /// again) and have held still for [`SETTLE`]; `None` when the
    /// directory cannot be listed again.
    async fn settled_changes(
        &self,
        on_disk: &[Stat],
        dir_trust: &Result<(), String>,
    ) -> Option<Vec<Stat>> {
        // Who may write the directory decides for every file in it: a
        // chmod of the directory changes no file, so all are judged again
        // while it is open to others (and files refused for their owner
        // or mode, until they are fixed).
        let mut candidates: Vec<Stat> = {
            let files = self.files.locked();
            on_disk
                .iter()
                .filter(|(p, size, mtime)| {
                    files.get(p).is_none_or(|e| {
                        e.size != *size || e.modified != *mtime || e.untrusted || dir_trust.is_err()
                    })
                })
                .cloned()
                .collect()
        };
        // Files written moments ago may still be growing: look again after
        // SETTLE and keep only those that held still.
        let fresh = |m: &Option<SystemTime>| {
            m.and_then(|m| m.elapsed().ok())
                .is_none_or(|age| age < SETTLE * 2)
        };
        if candidates.iter().any(|(_, _, m)| fresh(m)) {
            tokio::time::sleep(SETTLE).await;
            let again = stat_wasm_files(&self.plugin_dir).ok()?;
            candidates.retain(|c| again.contains(c));
        }
        Some(candidates)
    }

    /// Reads, judges and loads one changed file; whether the index
    /// changed.
    async fn look_at(
        &self,
        path: PathBuf,
        size: u64,
        modified: Option<SystemTime>,
        dir_trust: &Result<(), String>,
    ) -> bool {
        let (bytes, trust) = match read_plugin_file(&path) {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read plugin file");
                return false;
            }
        };
        let trust = dir_trust.clone().and(trust);
        let sha256 = crate::runtime::cache::sha256_hex(&bytes);
        if let Err(why) = trust {
            let why = format!("not loaded: {why}");
            let mut files = self.files.locked();
            if files
                .get(&path)
                .is_some_and(|e| e.sha256 == sha256 && e.state.as_ref().err() == Some(&why))
            {
                return false;
            }
            tracing::warn!(file = %path.display(), sha256 = %&sha256[..12], "plugin file rejected: {why}");
            files.insert(
                path,
                FileEntry {
                    size,
                    modified,
                    sha256,
                    state: Err(why),
                    untrusted: true,
                },
            );
            return true;
        }
        let same = {
            let mut files = self.files.locked();
            match files.get_mut(&path) {
                Some(e) if e.sha256 == sha256 && !e.untrusted => {
                    // Touched, not changed.
                    e.size = size;
                    e.modified = modified;
                    true
                }
                _ => false,
            }
        };
        if same {
            return false;
        }
        let state = self
            .runtime
            .load_named(Arc::from(bytes), &path.display().to_string())
            .await
            .map_err(|e| e.to_string());
        match &state {
            Ok((p, _)) => tracing::info!(
                file = %path.display(), plugin = %p.info.name, version = %crate::escape::line(&p.info.version), sha256 = %&sha256[..12],
                "plugin ready"
            ),
            Err(e) => {
                tracing::warn!(file = %path.display(), sha256 = %&sha256[..12], "plugin file rejected: {}", crate::escape::line(e))
            }
        }
        self.files.locked().insert(
            path,
            FileEntry {
                size,
                modified,
                sha256,
                state,
                untrusted: false,
            },
        );
        true
    }

    /// Forgets files no longer on disk; whether any were.
    fn forget_removed(&self, on_disk: &[Stat]) -> bool {
        let mut changed = false;
        let mut files = self.files.locked();
        let present: BTreeSet<&PathBuf> = on_disk.iter().map(|(p, _, _)| p).collect();
        let gone: Vec<PathBuf> = files
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for p in gone {
            tracing::info!(file = %p.display(), "plugin file removed");
            files.remove(&p);
            changed = true;
        }
        changed
    }

    /// Drops compiled code no current plugin uses, in memory and on disk.
    fn forget_unused(&self) {
        let mut keep: BTreeSet<String> = builtins().iter().map(|b| b.sha256.to_owned()).collect();
        keep.extend(self.files.locked().values().map(|e| e.sha256.clone()));
        self.runtime.retain(&keep);
    }

    /// Loads the plugin called `name`.
    pub async fn find(&self, name: &str) -> Result<Found, FindError> {
        self.ensure_scanned().await;
        let (matching, rejected) = {
            let mut files = self.files.locked();
            let matching: Vec<(PathBuf, Arc<LoadedPlugin>, PluginLoad)> = files
                .iter_mut()
                .filter_map(|(path, e)| match &mut e.state {
                    Ok((p, load)) if p.info.name == name => {
                        // The first run after a scan paid for the load;
                        // later ones find the code in memory.
                        let first = std::mem::replace(
                            load,
                            PluginLoad {
                                source: crate::record::LoadSource::Memory,
                                ms: 0.0,
                            },
                        );
                        Some((path.clone(), p.clone(), first))
                    }
                    _ => None,
                })
                .collect();
            let rejected: Vec<String> = files
                .iter()
                .filter(|(_, e)| e.state.is_err())
                .map(|(p, _)| p.display().to_string())
                .collect();
            (matching, rejected)
        };
        let overridden = self.overrides.iter().any(|o| o == name);
        if let Some(builtin) = builtins().iter().find(|b| b.name == name)
            && (!overridden || matching.is_empty())
        {
            if overridden {
                tracing::warn!(plugin = name, dir = %self.plugin_dir.display(), "override_builtin names this plugin, but no file in the plugin directory provides it; using the built-in");
            }
            let (plugin, load) =
                self.runtime
                    .load_builtin(builtin)
                    .await
                    .map_err(|e| FindError::Builtin {
                        name: name.into(),
                        reason: e.to_string(),
                    })?;
            return Ok(Found {
                plugin,
                load,
                source: "builtin".into(),
            });
        }
        match matching.as_slice() {
            [] => Err(FindError::NotFound {
                name: name.into(),
                dir: self.plugin_dir.display().to_string(),
                builtins: builtins()
                    .iter()
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", "),
                rejected: if rejected.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (rejected there: {}; see `opsd plugins list`)",
                        rejected.join(", ")
                    )
                },
            }),
            [(path, plugin, load)] => Ok(Found {
                plugin: plugin.clone(),
                load: load.clone(),
                source: path.display().to_string(),
            }),
            many => Err(FindError::Clash {
                name: name.into(),
                files: many
                    .iter()
                    .map(|(p, _, _)| p.display().to_string())
                    .collect(),
            }),
        }
    }

    /// Every plugin: built-ins first, then the directory's files.
    pub async fn list(&self) -> Vec<PluginEntry> {
        self.ensure_scanned().await;
        let files = self.files.locked();
        let ready_names: BTreeMap<&str, Vec<&PathBuf>> =
            files.iter().fold(BTreeMap::new(), |mut m, (path, e)| {
                if let Ok((p, _)) = &e.state {
                    m.entry(p.info.name.as_str())
                        .or_insert_with(Vec::new)
                        .push(path);
                }
                m
            });
        let mut out: Vec<PluginEntry> = builtins()
            .iter()
            .map(|b| self.builtin_entry(b, &ready_names))
            .collect();
        out.extend(
            files
                .iter()
                .map(|(path, e)| self.file_entry(path, e, &ready_names)),
        );
        out
    }

    /// A built-in's row: shadowed when `override_builtin` chose a file.
    fn builtin_entry(
        &self,
        b: &Builtin,
        ready_names: &BTreeMap<&str, Vec<&PathBuf>>,
    ) -> PluginEntry {
        let (name, sha256) = (&b.name, b.sha256.to_owned());
        let replaced = self.overrides.iter().any(|o| o == name)
            && ready_names.get(name).is_some_and(|v| v.len() == 1);
        let loaded = self
            .runtime
            .loaded()
            .into_iter()
            .find(|p| p.sha256 == sha256);
        PluginEntry {
            name: (*name).into(),
            version: loaded
                .as_ref()
                .map(|p| p.info.version.clone())
                .unwrap_or_default(),
            source: "builtin".into(),
            sha256,
            status: if replaced {
                PluginStatus::Shadowed
            } else {
                PluginStatus::Ready
            },
            error: replaced.then(|| {
                format!(
                    "override_builtin: {} is used instead",
                    ready_names[name][0].display()
                )
            }),
            description: loaded
                .as_ref()
                .map(|p| p.info.description.clone())
                .unwrap_or_default(),
            capabilities: loaded.as_ref().map(|p| p.info.capabilities.clone()),
            size: b.bytes.len() as u64,
        }
    }

    /// A file's row: rejected (with why), shadowed by a built-in, or
    /// ready.
    fn file_entry(
        &self,
        path: &PathBuf,
        e: &FileEntry,
        ready_names: &BTreeMap<&str, Vec<&PathBuf>>,
    ) -> PluginEntry {
        let source = path.display().to_string();
        match &e.state {
            Err(reason) => PluginEntry {
                name: String::new(),
                version: String::new(),
                source,
                sha256: e.sha256.clone(),
                status: PluginStatus::Rejected,
                error: Some(reason.clone()),
                description: String::new(),
                capabilities: None,
                size: e.size,
            },
            Ok((p, _)) => {
                let name = p.info.name.as_str();
                let others: Vec<String> = ready_names
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter(|o| **o != path)
                    .map(|o| o.display().to_string())
                    .collect();
                let (status, error) = if !others.is_empty() {
                    (
                        PluginStatus::Rejected,
                        Some(format!("`{name}` is also claimed by {}", others.join(", "))),
                    )
                } else if builtins().iter().any(|b| b.name == name)
                    && !self.overrides.iter().any(|o| o == name)
                {
                    (
                        PluginStatus::Shadowed,
                        Some(format!(
                            "the built-in `{name}` is used; add it to [plugins] override_builtin to use this file"
                        )),
                    )
                } else {
                    (PluginStatus::Ready, None)
                };
                PluginEntry {
                    name: name.into(),
                    version: p.info.version.clone(),
                    source,
                    sha256: e.sha256.clone(),
                    status,
                    error,
                    description: p.info.description.clone(),
                    capabilities: Some(p.info.capabilities.clone()),
                    size: e.size,
                }
            }
        }
    }

    /// What a file (or a built-in's name) is, and whether it would be
    /// accepted.
    pub async fn inspect(&self, what: &str) -> Inspection {
        let path = Path::new(what);
        let bytes: Result<Vec<u8>, String> = if path.exists() {
            std::fs::read(path).map_err(|e| format!("cannot read {what}: {e}"))
        } else if let Some(b) = builtins().iter().find(|b| b.name == what) {
            Ok(b.bytes.to_vec())
        } else {
            Err(format!(
                "no file {what}, and no built-in plugin by that name"
            ))
        };
        let mut report = Inspection {
            source: what.into(),
            accepted: false,
            error: None,
            size: 0,
            sha256: String::new(),
            contract: None,
            imports: Vec::new(),
            info: None,
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                report.error = Some(e);
                return report;
            }
        };
        report.sha256 = crate::runtime::cache::sha256_hex(&bytes);
        report.size = bytes.len() as u64;
        match self.runtime.load_named(Arc::from(bytes), what).await {
            Ok((p, _)) => {
                report.accepted = true;
                report.contract = p.contract.clone();
                report.imports = p.imports.clone();
                report.info = Some(p.info.clone());
            }
            Err(e) => report.error = Some(e.to_string()),
        }
        report
    }
}

/// `opsd plugins inspect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspection {
    pub source: String,
    pub accepted: bool,
    pub error: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// The opsd:plugin version it was built against.
    pub contract: Option<String>,
    pub imports: Vec<String>,
    pub info: Option<crate::runtime::PluginInfo>,
}

/// A plugin file's bytes, and whether its owner and mode let opsd trust
/// it (judged on the file opened, so a swap after the look changes
/// nothing), with every directory above it.
fn read_plugin_file(path: &Path) -> std::io::Result<(Vec<u8>, Result<(), String>)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let trust = crate::trust::check_opened(path, &file).and_then(|()| crate::trust::check(path));
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok((bytes, trust))
}

/// `.wasm` files directly in `dir` with size and change time, sorted, or
/// why the directory could not be listed. The inode's change time, not its mtime:
/// `cp -p`, `rsync -t` or `tar x` give a file being written an old mtime,
/// which would pass for settled, but the kernel stamps ctime on every
/// write.
fn stat_wasm_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64, Option<SystemTime>)>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        paths.push(entry?.path());
    }
    let mut files: Vec<(PathBuf, u64, Option<SystemTime>)> = paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .filter_map(|p| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&p).ok().filter(|m| m.is_file())?;
            let changed = u64::try_from(m.ctime()).ok().map(|s| {
                SystemTime::UNIX_EPOCH
                    + Duration::new(s, m.ctime_nsec().clamp(0, 999_999_999) as u32)
            });
            Some((p, m.len(), changed))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Keeps the index current while the daemon runs: inotify events
/// (debounced) and a periodic rescan, until `stop` resolves.
pub async fn watch(registry: Arc<Registry>, stop: impl Future<Output = ()>) {
    use notify::Watcher;
    tokio::pin!(stop);
    let dir = registry.plugin_dir.clone();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin directory; rescanning it periodically");
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|ev| {
            ev.paths
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "wasm"))
        }) {
            let _ = tx.send(());
        }
    })
    .and_then(|mut w| {
        w.watch(&dir, notify::RecursiveMode::NonRecursive)
            .map(|_| w)
    });
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the plugin directory; rescanning it every {RESCAN_EVERY:?}");
            None
        }
    };
    registry.rescan().await;
    let mut tick = tokio::time::interval(RESCAN_EVERY);
    loop {
        tokio::select! {
            Some(()) = rx.recv() => {
                // Let a burst of events (a copy in chunks) settle into one look.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                registry.rescan().await;
                // A file still growing was skipped; look again once it may
                // have settled, even if no further event comes.
                tokio::time::sleep(SETTLE).await;
                registry.rescan().await;
            }
            _ = tick.tick() => { registry.rescan().await; }
            _ = &mut stop => return,
        }
    }
}
