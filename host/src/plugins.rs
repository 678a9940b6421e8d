//! Finding a plugin by name: the built-ins compiled into the binary first,
//! then `.wasm` files in the plugin directory (by the name their
//! `describe()` gives).

use crate::record::PluginLoad;
use crate::runtime::{LoadError, LoadedPlugin, Runtime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// Names and bytes of the plugins shipped inside opsd.
pub fn builtins() -> &'static [(&'static str, &'static [u8])] {
    embedded::BUILTINS
}

/// A plugin name that nothing answers to.
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
        for file in wasm_files(&self.plugin_dir) {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read plugin file");
                    continue;
                }
            };
            match self.runtime.load(Arc::from(bytes)).await {
                Ok((p, load)) if p.info.name == name => return Ok((p, load)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "plugin file rejected")
                }
            }
        }
        Err(FindError::NotFound {
            name: name.into(),
            dir: self.plugin_dir.clone(),
            builtins: builtins()
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
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
