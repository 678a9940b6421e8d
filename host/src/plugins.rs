//! Finding a plugin by name: the built-ins compiled into the binary, and
//! `.wasm` files in the plugin directory (by the name their `describe()`
//! gives). A directory plugin with a built-in's name is listed as
//! `shadowed`; two directory files claiming one name are both refused, so
//! neither is chosen silently.

use crate::record::PluginLoad;
use crate::runtime::{Capabilities, LoadError, LoadedPlugin, Runtime};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// Names and bytes of the plugins shipped inside opsd.
pub fn builtins() -> &'static [(&'static str, &'static [u8])] {
    embedded::BUILTINS
}

/// A plugin name that nothing usable answers to.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(
        "plugin `{name}` not found: it is not built in ({builtins}) and no .wasm file in {dir} describes itself as `{name}`",
        dir = dir.display()
    )]
    NotFound {
        name: String,
        dir: PathBuf,
        builtins: String,
    },
    #[error("built-in plugin `{name}`: {source}")]
    Builtin {
        name: String,
        #[source]
        source: LoadError,
    },
    #[error("plugin `{name}` is claimed by more than one file ({}); remove or rename all but one", files.join(", "))]
    Clash { name: String, files: Vec<String> },
}

/// One row of `opsd plugins list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEntry {
    pub name: String,
    pub version: String,
    /// `builtin`, or the file's path.
    pub source: String,
    pub sha256: String,
    /// `ready`, `rejected` or `shadowed`.
    pub status: String,
    /// Why it was rejected or shadowed.
    pub error: Option<String>,
    pub description: String,
    pub capabilities: Option<Capabilities>,
    pub size: u64,
}

/// What a plugin file turned out to be.
struct Scanned {
    path: PathBuf,
    size: u64,
    sha256: String,
    result: Result<(Arc<LoadedPlugin>, PluginLoad), String>,
}

/// Resolves plugin names for one configuration.
pub struct Registry {
    runtime: Arc<Runtime>,
    plugin_dir: PathBuf,
}

impl Registry {
    pub fn new(runtime: Arc<Runtime>, plugin_dir: PathBuf) -> Registry {
        Registry {
            runtime,
            plugin_dir,
        }
    }

    /// The runtime plugins load into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads the plugin called `name`.
    pub async fn find(&self, name: &str) -> Result<(Arc<LoadedPlugin>, PluginLoad), FindError> {
        if let Some((_, bytes)) = builtins().iter().find(|(n, _)| *n == name) {
            return self
                .runtime
                .load(Arc::from(*bytes))
                .await
                .map_err(|source| FindError::Builtin {
                    name: name.into(),
                    source,
                });
        }
        let mut matching: Vec<(PathBuf, Arc<LoadedPlugin>, PluginLoad)> = self
            .scan()
            .await
            .into_iter()
            .filter_map(|s| match s.result {
                Ok((p, load)) if p.info.name == name => Some((s.path, p, load)),
                _ => None,
            })
            .collect();
        match matching.len() {
            0 => Err(FindError::NotFound {
                name: name.into(),
                dir: self.plugin_dir.clone(),
                builtins: builtins()
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            1 => {
                let (_, p, load) = matching.remove(0);
                Ok((p, load))
            }
            _ => Err(FindError::Clash {
                name: name.into(),
                files: matching
                    .iter()
                    .map(|(path, _, _)| path.display().to_string())
                    .collect(),
            }),
        }
    }

    /// Loads every `.wasm` file in the plugin directory.
    async fn scan(&self) -> Vec<Scanned> {
        let mut out = Vec::new();
        for path in wasm_files(&self.plugin_dir) {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    out.push(Scanned {
                        path,
                        size: 0,
                        sha256: String::new(),
                        result: Err(format!("cannot read it: {e}")),
                    });
                    continue;
                }
            };
            let sha256 = crate::runtime::cache::sha256_hex(&bytes);
            let size = bytes.len() as u64;
            let result = self
                .runtime
                .load(Arc::from(bytes))
                .await
                .map_err(|e| e.to_string());
            out.push(Scanned {
                path,
                size,
                sha256,
                result,
            });
        }
        out
    }

    /// Every plugin: built-ins first, then the directory's files.
    pub async fn list(&self) -> Vec<PluginEntry> {
        let mut out = Vec::new();
        for (name, bytes) in builtins() {
            out.push(match self.runtime.load(Arc::from(*bytes)).await {
                Ok((p, _)) => entry(&p, "builtin".into(), "ready", None),
                Err(e) => PluginEntry {
                    name: (*name).into(),
                    version: String::new(),
                    source: "builtin".into(),
                    sha256: crate::runtime::cache::sha256_hex(bytes),
                    status: "rejected".into(),
                    error: Some(e.to_string()),
                    description: String::new(),
                    capabilities: None,
                    size: bytes.len() as u64,
                },
            });
        }
        let scanned = self.scan().await;
        for s in &scanned {
            let source = s.path.display().to_string();
            out.push(match &s.result {
                Err(e) => PluginEntry {
                    name: String::new(),
                    version: String::new(),
                    source,
                    sha256: s.sha256.clone(),
                    status: "rejected".into(),
                    error: Some(e.clone()),
                    description: String::new(),
                    capabilities: None,
                    size: s.size,
                },
                Ok((p, _)) => {
                    let name = &p.info.name;
                    let clash: Vec<String> = scanned
                        .iter()
                        .filter(|o| {
                            o.path != s.path
                                && o.result.as_ref().is_ok_and(|(q, _)| q.info.name == *name)
                        })
                        .map(|o| o.path.display().to_string())
                        .collect();
                    if builtins().iter().any(|(b, _)| b == name) {
                        entry(
                            p,
                            source,
                            "shadowed",
                            Some(format!("the built-in plugin `{name}` is used instead")),
                        )
                    } else if !clash.is_empty() {
                        entry(
                            p,
                            source,
                            "rejected",
                            Some(format!("`{name}` is also claimed by {}", clash.join(", "))),
                        )
                    } else {
                        entry(p, source, "ready", None)
                    }
                }
            });
        }
        out
    }

    /// What a file (or a known plugin's name) is, and whether it would be
    /// accepted.
    pub async fn inspect(&self, what: &str) -> Inspection {
        let path = Path::new(what);
        let bytes: Result<Vec<u8>, String> = if path.exists() {
            std::fs::read(path).map_err(|e| format!("cannot read {what}: {e}"))
        } else if let Some((_, b)) = builtins().iter().find(|(n, _)| *n == what) {
            Ok(b.to_vec())
        } else {
            Err(format!(
                "no file {what}, and no built-in plugin by that name"
            ))
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                return Inspection {
                    source: what.into(),
                    accepted: false,
                    error: Some(e),
                    size: 0,
                    sha256: String::new(),
                    contract: None,
                    imports: Vec::new(),
                    info: None,
                };
            }
        };
        let sha256 = crate::runtime::cache::sha256_hex(&bytes);
        let size = bytes.len() as u64;
        match self.runtime.load(Arc::from(bytes)).await {
            Ok((p, _)) => Inspection {
                source: what.into(),
                accepted: true,
                error: None,
                size,
                sha256,
                contract: p.contract.clone(),
                imports: p.imports.clone(),
                info: Some(p.info.clone()),
            },
            Err(e) => Inspection {
                source: what.into(),
                accepted: false,
                error: Some(e.to_string()),
                size,
                sha256,
                contract: None,
                imports: Vec::new(),
                info: None,
            },
        }
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

fn entry(p: &LoadedPlugin, source: String, status: &str, error: Option<String>) -> PluginEntry {
    PluginEntry {
        name: p.info.name.clone(),
        version: p.info.version.clone(),
        source,
        sha256: p.sha256.clone(),
        status: status.into(),
        error,
        description: p.info.description.clone(),
        capabilities: Some(p.info.capabilities.clone()),
        size: p.size as u64,
    }
}

/// `.wasm` files directly in `dir`, sorted; a missing directory has none.
fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    files
}
