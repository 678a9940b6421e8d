//! opsd: a maintenance scheduler that runs sandboxed WebAssembly plugins.
//!
//! # Layers
//!
//! Each module imports only from the layers below its own, never from
//! its own layer or above; `layering::the_imports_go_one_way_down` fails
//! on an edge that does not, so this map stays true.
//!
//! ```text
//! layer  modules
//!  10    commands
//!   9    cli daemon project
//!   8    api console scaffold scheduler
//!   7    ops
//!   6    check
//!   5    metrics plugins
//!   4    fleet jobs runtime
//!   3    config crontab
//!   2    grants system
//!   1    http_token monitor notify store
//!   0    bindings builtins clock diag escape idle_memory locks outbound policy record schedule secrets trust
//! ```
//!
//! What each owns, bottom up:
//!
//! - Layer 0, what everything shares and which imports nothing of opsd:
//!   [`diag`] (line numbers, the problems a load collects, durations and
//!   sizes), [`record`] (run records, job state, log lines, schedule rows:
//!   what is stored and sent), [`escape`] (plugin text made safe for
//!   terminals and logs), [`secrets`] (granted values masked everywhere),
//!   [`outbound`] (the one HTTP(S) client), [`clock`] (wall time,
//!   injectable), [`schedule`] (cron expressions, time zones, next fires),
//!   [`policy`] (catch-up, overlap, retries, jitter, retention), [`locks`]
//!   (locks that outlive a panic),
//!   [`trust`] (who may write what opsd runs), [`builtins`] (the plugins
//!   compiled in), [`bindings`] (the host side of `wit/plugin.wit`),
//!   [`idle_memory`] (what a waiting daemon gives back to the kernel).
//! - Layer 1: [`monitor`] (the machine's figures and `when` conditions),
//!   [`notify`] (webhooks), [`store`] (sled trees of runs, logs, state),
//!   [`http_token`] (the web console's token, never shown, compared in
//!   constant time).
//! - Layer 2: [`grants`] (the capability policy: files, programs,
//!   network, limits; default deny) and [`system`] (the `system` host
//!   interface's figures).
//! - Layer 3: [`config`]: TOML in, a validated [`config::Config`] out,
//!   with the jobs that cannot run set aside as broken; every problem
//!   names file, line and job. [`crontab`]: crontab(5) files in, an opsd
//!   config of `command` jobs out (`opsd import crontab`).
//! - Layer 4: [`runtime`] (wasmtime: engine, compile cache, one instance
//!   per run, limits), [`jobs`] (the one writer of job state and run
//!   records, by named transitions) and [`fleet`] (the fleet's PostgreSQL:
//!   schema, heartbeats, the central history, fleet jobs' claims and
//!   leases behind the `Coordinator` trait).
//! - Layer 5: [`plugins`] (built-ins and the plugin directory, ready or
//!   rejected) and [`metrics`] (the Prometheus exposition).
//! - Layer 6: [`check`]: what `opsd check` finds, and the jobs that
//!   cannot run as written (their plugin unknown, their config refused).
//! - Layer 7: [`ops`]: what every interface offers (schedule, run,
//!   history, logs, status, health) over one open store.
//! - Layer 8: [`scheduler`] (decides *when* jobs fire), [`api`] (control
//!   socket and HTTP endpoints), [`console`] (the web console on the HTTP
//!   listener), [`scaffold`] (`opsd plugin new`).
//! - Layer 9: [`cli`] (arguments and tables), [`daemon`] (`opsd daemon`:
//!   signals, reloads, systemd), [`project`] (`opsd plugin build` and
//!   `test`: a plugin project's language, toolchain and component).
//! - Layer 10: [`commands`]: each CLI command, through the daemon or
//!   directly.
//!
//! Data flows one way: config ─▶ scheduler ─▶ ops ─▶ runtime (grants) ─▶
//! jobs (store) ─▶ api / cli.

/// Gives an enum of unit variants the words it is written, stored and
/// shown as (`as_str` and `Display`) from one table. Serde's renames say
/// the same words for JSON and TOML.
macro_rules! words {
    ($ty:ty { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// The word it is written, stored and shown as.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod api;
pub mod bindings;
pub mod builtins;
pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod crontab;
pub mod daemon;
pub mod diag;
pub mod escape;
pub mod fleet;
pub mod grants;
pub mod http_token;
pub mod idle_memory;
pub mod jobs;
pub mod locks;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod ops;
pub mod outbound;
pub mod plugins;
pub mod policy;
pub mod project;
pub mod record;
pub mod runtime;
pub mod scaffold;
pub mod schedule;
pub mod scheduler;
pub mod secrets;
pub mod store;
pub mod system;
pub mod trust;

#[cfg(test)]
mod layering {
    //! Keeps the map above true: reads every source file and fails on an
    //! import that does not go down, and on a write to job state or run
    //! records outside `jobs` (and `store` itself).

    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// The map in this file's doc: module name to layer.
    fn layers() -> BTreeMap<String, u32> {
        let lib = include_str!("lib.rs");
        let start = lib.find("//! layer  modules\n").expect("the layer map");
        let mut out = BTreeMap::new();
        for line in lib[start..].lines().skip(1) {
            let line = line.trim_start_matches("//!").trim();
            if line.starts_with("```") {
                break;
            }
            let mut words = line.split_whitespace();
            let layer: u32 = words.next().expect("a layer").parse().expect("a number");
            for m in words {
                assert!(
                    out.insert(m.to_owned(), layer).is_none(),
                    "{m} is listed twice"
                );
            }
        }
        out
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The code of a file without comments and without its test module
    /// (tests may build fixtures from any layer).
    fn code(text: &str) -> String {
        let text = text
            .find("#[cfg(test)]\nmod tests")
            .map_or(text, |i| &text[..i]);
        text.lines()
            .map(|l| match l.trim_start().starts_with("//") {
                true => "",
                false => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The top-level modules a file names through `crate::`, including
    /// inside `use crate::{a, b::c}` groups.
    fn imports(code: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0;
                let mut at_start = true;
                let mut word = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => at_start = true,
                        c if c.is_alphanumeric() || c == '_' => {
                            if at_start {
                                word.push(c);
                            }
                            continue;
                        }
                        _ => {}
                    }
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    if c != ',' && !c.is_whitespace() {
                        at_start = false;
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        }
        out
    }

    #[test]
    fn the_imports_go_one_way_down() {
        let layers = layers();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).expect("under src");
            let own = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|c| c.trim_end_matches(".rs").to_owned())
                .expect("a file name");
            if own == "lib" || own == "main" || own == "snapshots" {
                continue;
            }
            let Some(&mine) = layers.get(&own) else {
                wrong.push(format!("{own} is not in the layer map of lib.rs"));
                continue;
            };
            let text = std::fs::read_to_string(&file).expect("a readable source");
            for used in imports(&code(&text)) {
                if used == own {
                    continue;
                }
                match layers.get(&used) {
                    Some(&theirs) if theirs < mine => {}
                    Some(&theirs) => wrong.push(format!(
                        "{} (layer {mine}) imports {used} (layer {theirs})",
                        rel.display()
                    )),
                    None => {}
                }
            }
            if own != "store" && own != "jobs" {
                for writer in [
                    ".put_run(",
                    ".put_log(",
                    ".put_job_state(",
                    ".update_job_state(",
                    ".recover_interrupted(",
                    ".prune(",
                ] {
                    if code(&text).contains(writer) {
                        wrong.push(format!(
                            "{} calls the store's `{writer}`: job state and run records change only through `jobs`",
                            rel.display()
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_reader_sees_groups_and_paths() {
        let found = imports("use crate::{a, b::{c, d}, e::f};\nlet x = crate::g::h();");
        assert_eq!(found, ["a", "b", "e", "g"]);
    }
}
