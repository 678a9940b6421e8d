//! The wasmtime side: one engine per process, compiled components cached
//! on disk and in memory, and a fresh store and instance for every run.
//!
//! Limits on a run: an epoch deadline (the instance yields to tokio every
//! tick and is interrupted at the job's timeout), a memory cap, and the
//! grants. Whatever the plugin does (returns, errs, traps, loops, tries to
//! leave its grants), [`Runtime::run`] returns an [`Execution`] that says
//! what happened in words an operator can act on.

pub mod cache;
mod fs_gate;
pub mod log;
mod pool;
mod quota;
mod state;
mod wasi_errno;
mod wasi_http;

use crate::bindings::{Plugin, PluginPre};
use crate::config::Job;
use crate::grants::{self, Grants, Violations};
use crate::locks::Unpoisoned;
use crate::record::{Artifact, Level, Metric, PluginLoad, RunStatus, Source};
use crate::store::Store;
use cache::CompileCache;
use chrono::{DateTime, Utc};
use log::RunLog;
pub use pool::InstancePool;
use pool::InstanceSlots;
use serde::{Deserialize, Serialize};
use state::{RunEnv, RunState};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

/// The wasmtime release compiled in (from Cargo.lock, by build.rs).
pub const WASMTIME_VERSION: &str = env!("OPSD_WASMTIME_VERSION");

/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.1.3";

/// How long `describe()` may take when a plugin is loaded.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the epoch advances while something runs: the granularity of
/// timeouts and of yielding to other tasks.
const TICK: Duration = Duration::from_millis(10);

/// What a plugin says about itself (its `describe()`), as opsd keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub capabilities: Capabilities,
    pub config_schema: String,
    pub suggested_schedule: Option<String>,
}

/// The grants a plugin asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub fs: Vec<FsRequest>,
    pub exec: Vec<String>,
    pub net: bool,
}

/// A directory a plugin expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsRequest {
    pub guest: String,
    pub write: bool,
    pub reason: String,
}

/// A compiled, described plugin ready to instantiate.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    pub sha256: String,
    pub size: usize,
    /// The component's imports (`opsd:plugin/log@0.1.0`, `wasi:...`).
    pub imports: Vec<String>,
    /// The contract version it was built against.
    pub contract: Option<String>,
    /// How it was first obtained in this process.
    pub first_load: PluginLoad,
    pre: PluginPre<RunState>,
    /// When a run last used it, and whether its code was released since.
    last_used: std::sync::Mutex<(Instant, bool)>,
}

impl LoadedPlugin {
    fn mark_used(&self) {
        *self.last_used.locked() = (Instant::now(), false);
    }
}

/// Why bytes could not become a runnable plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotComponent(String),
    #[error("not compatible with this opsd: {0}")]
    Incompatible(String),
    #[error("describe() failed: {0}")]
    Describe(String),
}

/// What a run did, in the terms of a run record.
#[derive(Debug, Clone)]
pub struct Execution {
    pub status: RunStatus,
    pub summary: String,
    pub details: String,
    pub error: Option<String>,
    pub metrics: Vec<Metric>,
    pub artifacts: Vec<Artifact>,
}

impl Execution {
    /// A run that did not get to do its work.
    pub fn failed(status: RunStatus, error: String) -> Execution {
        Execution {
            status,
            summary: first_line(&error).to_owned(),
            details: String::new(),
            error: Some(error),
            metrics: Vec::new(),
            artifacts: Vec::new(),
        }
    }
}

/// wasmtime-wasi resolves any name once a run may look names up at all;
/// a lookup of a name no grant gives carries data out through the
/// resolver (`secret.attacker.example`). So `resolve-addresses` answers
/// only for names the job's net grant lets it connect to (and address
/// literals, which need no lookup); any other is refused and fails the
/// run, like a refused connect.
fn gate_name_lookup(linker: &mut Linker<RunState>) -> anyhow::Result<()> {
    /// Lookups one run may start in a minute: a maintenance job resolves
    /// a handful of names, a loop of lookups on a slow name would tie up
    /// the daemon's blocking threads (a lookup cannot be cancelled).
    const MAX_LOOKUPS: u32 = 256;
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host, ResolveAddressStream};
    use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, Network};
    use wasmtime_wasi::sockets::WasiSocketsView;
    type Answer = (Result<Resource<ResolveAddressStream>, ErrorCode>,);
    linker.allow_shadowing(true);
    linker
        .instance("wasi:sockets/ip-name-lookup@0.2.12")?
        .func_wrap(
            "resolve-addresses",
            |mut store: wasmtime::StoreContextMut<'_, RunState>,
             (network, name): (Resource<Network>, String)|
             -> wasmtime::Result<Answer> {
                let state = store.data_mut();
                let (since, count) = &mut state.lookups;
                if since.elapsed() >= Duration::from_secs(60) {
                    *since = Instant::now();
                    *count = 0;
                }
                *count += 1;
                if *count > MAX_LOOKUPS {
                    state.env.violations.record(format!(
                        "net: more than {MAX_LOOKUPS} name lookups in a minute; each holds one of the daemon's resolver threads until it ends (connect once and reuse, or resolve once)"
                    ));
                    return Ok((Err(ErrorCode::PermanentResolverFailure),));
                }
                if !state.env.grants.net.may_resolve(&name) {
                    state.env.violations.record(format!(
                        "net: looking up `{}` is not allowed: the plugin may resolve only the names its net grant gives ({}); add the host to `net` if the job needs it",
                        crate::escape::line(&name),
                        state.env.grants.net.describe()
                    ));
                    return Ok((Err(ErrorCode::AccessDenied),));
                }
                match state.sockets().resolve_addresses(network, name) {
                    Ok(stream) => Ok((Ok(stream),)),
                    Err(e) => match e.downcast() {
                        Ok(code) => Ok((Err(code),)),
                        Err(trap) => Err(trap),
                    },
                }
            },
        )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Largest parts of a `describe()` answer opsd keeps: a plugin's own
/// words are shown in tables and kept for every loaded plugin, so a
/// plugin may not fill the daemon's memory or an operator's screen
/// through them. Generous for any real plugin (the built-ins' schemas are
/// under 4 KiB).
const DESCRIBE_LIMITS: [(&str, usize); 5] = [
    ("name", 64),
    ("version", 64),
    ("description", 1024),
    ("config schema", 64 * 1024),
    ("suggested schedule", 256),
];

/// Refuses a `describe()` answer past [`DESCRIBE_LIMITS`], or asking for
/// more than 64 directories or programs, naming the part and the limit.
fn describe_within_limits(
    d: &crate::bindings::opsd::plugin::types::Description,
) -> Result<(), String> {
    let sizes = [
        d.name.len(),
        d.version.len(),
        d.description.len(),
        d.config_schema.len(),
        d.suggested_schedule.as_ref().map_or(0, String::len),
    ];
    for ((what, max), size) in DESCRIBE_LIMITS.iter().zip(sizes) {
        if size > *max {
            return Err(format!(
                "its {what} is {size} bytes; opsd accepts at most {max} (a plugin's description must stay small: put long text in its documentation)"
            ));
        }
    }
    let caps = &d.capabilities;
    if caps.fs.len() > 64 || caps.exec.len() > 64 {
        return Err(format!(
            "it asks for {} directories and {} programs; opsd accepts at most 64 of each",
            caps.fs.len(),
            caps.exec.len()
        ));
    }
    let longest = caps
        .fs
        .iter()
        .flat_map(|f| [f.guest.len(), f.reason.len()])
        .chain(caps.exec.iter().map(String::len))
        .max()
        .unwrap_or(0);
    if longest > 4096 {
        return Err(format!(
            "one of the directories or programs it asks for (or a reason) is {longest} bytes; opsd accepts at most 4096"
        ));
    }
    Ok(())
}

/// One run's inputs.
pub struct RunRequest<'a> {
    pub job: &'a Job,
    pub run_id: &'a str,
    pub scheduled: DateTime<Utc>,
    pub attempt: u32,
    pub dry_run: bool,
    pub log: RunLog,
    pub store: Option<Store>,
    pub cancel: Cancel,
    /// The configured jobs as the scheduler sees them, for the history
    /// interface's `jobs()`; computed only if the plugin asks.
    pub jobs: JobsSource,
    /// The daemon's monitor, for `system.monitor`.
    pub monitor: Option<Arc<crate::monitor::Monitor>>,
}

/// Lists the configured jobs on demand, every job or only the one named:
/// reading every job's state costs O(jobs), which a run must not pay
/// unless its plugin calls `jobs()` and its grant lets it see them all.
pub type JobsSource = Arc<dyn Fn(Option<&str>) -> Vec<crate::record::ScheduleEntry> + Send + Sync>;

/// A [`JobsSource`] with no jobs (`describe()` runs, tests).
pub fn no_jobs() -> JobsSource {
    Arc::new(|_| Vec::new())
}

/// Stops a run from outside (a replacing run, a shutdown), saying what to
/// record. Dropping the instance kills the plugin's child processes too.
#[derive(Clone, Default)]
pub struct Cancel {
    token: tokio_util::sync::CancellationToken,
    why: Arc<Mutex<Option<(RunStatus, String)>>>,
}

impl Cancel {
    /// Asks the run to stop; the first reason given is the one recorded.
    pub fn cancel(&self, status: RunStatus, why: String) {
        let mut slot = self.why.locked();
        if slot.is_none() {
            *slot = Some((status, why));
        }
        drop(slot);
        self.token.cancel();
    }

    fn reason(&self) -> (RunStatus, String) {
        self.why
            .locked()
            .clone()
            .unwrap_or((RunStatus::Interrupted, "cancelled".into()))
    }
}

/// A compile, as it starts and ends: a Python or JavaScript component
/// takes seconds to compile, which a command must not pass in silence.
#[derive(Debug, Clone, Copy)]
pub enum CompileEvent<'a> {
    /// `what` (a file, a built-in) of `bytes` is being compiled.
    Started { what: &'a str, bytes: usize },
    /// It compiled and described itself as `plugin`, in `ms`.
    Finished {
        what: &'a str,
        plugin: &'a str,
        ms: f64,
    },
}

/// Told of every compile; set by commands that print to a terminal.
pub type CompileNotice = Arc<dyn Fn(CompileEvent<'_>) + Send + Sync>;

/// The process-wide wasmtime engine and what it has loaded.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    cache: CompileCache,
    loaded: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
    ticker: Ticker,
    /// An empty directory beside the cache, where the programs of a job
    /// with no fs grant start.
    idle_dir: PathBuf,
    notice: Mutex<Option<CompileNotice>>,
    /// With a pool, one permit per slot: a run past the pool's size waits
    /// for a slot rather than failing. None without a pool.
    instances: Option<InstanceSlots>,
}

impl Runtime {
    /// An engine with epoch interruption and the component model, a linker
    /// with WASI 0.2, wasi:http and the opsd imports, and a compile cache
    /// in `cache_dir`.
    /// Each run's instance is mapped on its own: the cheapest to start, for
    /// a command that runs a plugin once or not at all.
    pub fn new(cache_dir: PathBuf) -> anyhow::Result<Runtime> {
        Runtime::build(cache_dir, None)
    }

    /// [`Runtime::new`] with instances taken from a pool of `pool`'s size,
    /// reserved once: for a daemon that runs many plugins a second, where
    /// mapping each run's memory is the cost (see [`InstancePool::wanted`]).
    pub fn with_pool(cache_dir: PathBuf, pool: InstancePool) -> anyhow::Result<Runtime> {
        // Without overcommit the pool's table and stack slots, mapped up
        // front, would take commit charge from every other process.
        if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "2")
        {
            tracing::info!(
                "vm.overcommit_memory = 2: no instance pool; each run maps its own instance"
            );
            return Runtime::build(cache_dir, None);
        }
        Runtime::build(cache_dir, Some(pool))
    }

    fn build(cache_dir: PathBuf, pool: Option<InstancePool>) -> anyhow::Result<Runtime> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        if let Some(pool) = pool {
            config.allocation_strategy(pool.allocation());
            // A slot's fiber stack goes from one run to the next.
            config.async_stack_zeroing(true);
        }
        let (engine, pool) = match Engine::new(&config) {
            Ok(e) => (e, pool),
            Err(e) => {
                // A process limited in address space (`ulimit -v`) cannot
                // reserve the pool: it runs with instances mapped per run.
                let Some(pool) = pool else {
                    return Err(e.into());
                };
                tracing::warn!(error = %format!("{e:#}"), "cannot reserve {pool}; each run maps its own instance (slower)");
                config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
                (Engine::new(&config)?, None)
            }
        };
        if let Some(pool) = pool {
            tracing::debug!("reserved {pool}");
        }
        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        gate_name_lookup(&mut linker)?;
        quota::gate_writes(&mut linker)?;
        fs_gate::gate_paths(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)?;
        crate::system::prime();
        let idle_dir = cache_dir.with_file_name("idle");
        if let Err(e) = std::fs::create_dir_all(&idle_dir) {
            tracing::warn!(dir = %idle_dir.display(), error = %e, "cannot make the idle directory for programs");
        }
        Ok(Runtime {
            instances: pool.map(InstanceSlots::new),
            idle_dir,
            cache: CompileCache::new(cache_dir, &engine),
            ticker: Ticker::start(engine.clone())?,
            engine,
            linker,
            loaded: Mutex::new(HashMap::new()),
            notice: Mutex::new(None),
        })
    }

    /// Calls `notice` when a plugin starts and finishes compiling.
    pub fn on_compile(&self, notice: CompileNotice) {
        *self.notice.locked() = Some(notice);
    }

    /// Compiles (or loads from cache) and describes a plugin. The same
    /// bytes loaded twice in one process are compiled once.
    pub async fn load(
        &self,
        bytes: Arc<[u8]>,
    ) -> Result<(Arc<LoadedPlugin>, PluginLoad), LoadError> {
        self.load_named(bytes, "a plugin").await
    }

    /// [`Runtime::load`], with what the bytes are (a file's path) for the
    /// messages a compile gives.
    pub async fn load_named(
        &self,
        bytes: Arc<[u8]>,
        what: &str,
    ) -> Result<(Arc<LoadedPlugin>, PluginLoad), LoadError> {
        let sha256 = cache::sha256_hex(&bytes);
        self.load_hashed(bytes, sha256, what).await
    }

    /// Like [`Runtime::load`] for a built-in, whose hash is known: once
    /// loaded, a run neither copies nor hashes its bytes.
    pub async fn load_builtin(
        &self,
        builtin: &crate::builtins::Builtin,
    ) -> Result<(Arc<LoadedPlugin>, PluginLoad), LoadError> {
        if let Some(p) = self.in_memory(builtin.sha256) {
            return Ok(p);
        }
        let loaded = self
            .load_hashed(
                Arc::from(builtin.bytes),
                builtin.sha256.to_owned(),
                &format!("the built-in {}", builtin.name),
            )
            .await?;
        // What runs under a built-in's name describes itself by it: a
        // component that says otherwise is not the built-in, whatever
        // produced it.
        if loaded.0.info.name != builtin.name {
            return Err(LoadError::Describe(format!(
                "the built-in `{}` describes itself as `{}`; opsd refuses to run it",
                builtin.name, loaded.0.info.name
            )));
        }
        Ok(loaded)
    }

    /// The plugin with this hash, if this process has it loaded.
    fn in_memory(&self, sha256: &str) -> Option<(Arc<LoadedPlugin>, PluginLoad)> {
        self.loaded.locked().get(sha256).map(|p| {
            (
                p.clone(),
                PluginLoad {
                    source: crate::record::LoadSource::Memory,
                    ms: 0.0,
                },
            )
        })
    }

    /// Compiles (or loads from cache) and describes `bytes`, whose hash the
    /// caller computed.
    async fn load_hashed(
        &self,
        bytes: Arc<[u8]>,
        sha256: String,
        what: &str,
    ) -> Result<(Arc<LoadedPlugin>, PluginLoad), LoadError> {
        if let Some(p) = self.in_memory(&sha256) {
            return Ok(p);
        }
        if bytes.len() < 8 || bytes[..4] != *b"\0asm" {
            return Err(LoadError::NotComponent(
                "it is not WebAssembly at all (no `\\0asm` header); is it the right file?".into(),
            ));
        }
        if !wasmparser_is_component(&bytes) {
            return Err(LoadError::NotComponent(
                "it is a core WebAssembly module; build with `--target wasm32-wasip2` (or componentize-py, jco) to get a component".into(),
            ));
        }
        let (engine, cache, sha) = (self.engine.clone(), self.cache.clone(), sha256.clone());
        let bytes2 = bytes.clone();
        let notice = self.notice.locked().clone();
        let (what2, notice2) = (what.to_owned(), notice.clone());
        let compiling = move || {
            tracing::info!(plugin_file = %crate::escape::line(&what2), bytes = bytes2.len(), "compiling plugin for this machine (once per file; cached after)");
            if let Some(n) = &notice2 {
                n(CompileEvent::Started {
                    what: &what2,
                    bytes: bytes2.len(),
                });
            }
        };
        let bytes3 = bytes.clone();
        let (component, source, ms) =
            tokio::task::spawn_blocking(move || cache.load(&engine, &bytes3, &sha, compiling))
                .await
                .map_err(|e| LoadError::NotComponent(e.to_string()))?
                .map_err(|e| {
                    let why = format!("{e:#}");
                    // A component over its share of the daemon's pool: a
                    // valid component, too large for this opsd to run.
                    if why.contains("pooling allocator") {
                        LoadError::Incompatible(format!(
                            "{why} (each plugin may have up to {})",
                            pool::component_share()
                        ))
                    } else {
                        LoadError::NotComponent(why)
                    }
                })?;
        if source.as_str() == "compiled" {
            crate::idle_memory::release_freed_heap();
        }
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        let contract = check_contract(&imports, &exports)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Incompatible(format!("{e:#}")))?;
        let pre = PluginPre::new(pre).map_err(|e| LoadError::Incompatible(format!("{e:#}")))?;
        let info = self.describe(&pre).await?;
        let load = PluginLoad { source, ms };
        if source == crate::record::LoadSource::Compiled
            && let Some(n) = &notice
        {
            n(CompileEvent::Finished {
                what,
                plugin: &info.name,
                ms,
            });
        }
        tracing::info!(
            plugin = %info.name, version = %crate::escape::line(&info.version), sha256 = %&sha256[..12],
            source = source.as_str(), ms = format!("{ms:.1}"), "plugin loaded"
        );
        let plugin = Arc::new(LoadedPlugin {
            info,
            sha256: sha256.clone(),
            size: bytes.len(),
            imports,
            contract,
            first_load: load.clone(),
            pre,
            last_used: std::sync::Mutex::new((Instant::now(), false)),
        });
        self.loaded.locked().insert(sha256, plugin.clone());
        Ok((plugin, load))
    }

    /// Forgets compiled plugins whose sha256 is not in `keep`, in memory
    /// and in the on-disk compile cache, so replaced files do not pile up.
    pub fn retain(&self, keep: &std::collections::BTreeSet<String>) {
        self.loaded.locked().retain(|sha, _| keep.contains(sha));
        self.cache.gc(keep);
    }

    /// Hands the compiled code of plugins no run has used for `after` back
    /// to the kernel; the next run pages it in again from the compile
    /// cache file (a millisecond or two). Returns how many were released.
    pub fn release_idle_code(&self, after: Duration) -> usize {
        let mut released = 0;
        for p in self.loaded() {
            let mut used = p.last_used.locked();
            if used.1 || used.0.elapsed() < after {
                continue;
            }
            let code = p.pre.instance_pre().component().image_range();
            crate::idle_memory::page_out(code.start as usize, code.end as usize);
            *used = (used.0, true);
            released += 1;
        }
        released
    }

    /// Whether every loaded plugin's code has been released: no run has
    /// used any of them for `release_idle_code_after`, so the daemon is
    /// only waiting.
    pub fn all_code_released(&self) -> bool {
        self.loaded().iter().all(|p| p.last_used.locked().1)
    }

    /// Runs that may be in progress at once: `max_concurrent_runs` is
    /// capped to this, the pool's slots less those kept for loads.
    pub fn run_capacity(&self) -> usize {
        self.instances
            .as_ref()
            .map_or(usize::MAX, |s| s.pool.run_capacity())
    }

    /// An instance slot of the pool, waiting for one if all are taken;
    /// nothing to wait for without a pool.
    async fn instance_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.instances {
            Some(slots) => Some(slots.acquire().await),
            None => None,
        }
    }

    /// Every plugin loaded in this process.
    pub fn loaded(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut v: Vec<_> = self.loaded.locked().values().cloned().collect();
        v.sort_by(|a, b| a.info.name.cmp(&b.info.name).then(a.sha256.cmp(&b.sha256)));
        v
    }

    async fn describe(&self, pre: &PluginPre<RunState>) -> Result<PluginInfo, LoadError> {
        // Before the deadline is set: waiting for a slot is not the
        // plugin's time.
        let _slot = self.instance_slot().await;
        let log = RunLog::new("(describe)", "-", 64 * 1024);
        let env = Arc::new(RunEnv {
            job: "(describe)".into(),
            grants: Grants::default(),
            violations: Violations::default(),
            deadline: Instant::now() + DESCRIBE_TIMEOUT,
            log: log.clone(),
            store: None,
            jobs: no_jobs(),
            monitor: None,
            idle_dir: self.idle_dir.clone(),
            sandbox_logged: Default::default(),
            quota: None,
        });
        let wasi = WasiCtxBuilder::new()
            .stdout(log.stream(Source::Stdout))
            .stderr(log.stream(Source::Stderr))
            .build();
        let mut store = self.new_store(env.clone(), wasi, 256 << 20);
        store.set_hostcall_fuel(DESCRIBE_FUEL);
        let _active = self.ticker.enter();
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_describe(&mut store).await
        };
        let d = match tokio::time::timeout(DESCRIBE_TIMEOUT, call).await {
            Err(_) => {
                return Err(LoadError::Describe(format!(
                    "did not answer within {DESCRIBE_TIMEOUT:?}"
                )));
            }
            Ok(Err(e)) if Instant::now() >= env.deadline => {
                let _ = e;
                return Err(LoadError::Describe(format!(
                    "did not answer within {DESCRIBE_TIMEOUT:?}"
                )));
            }
            Ok(Err(e)) if fuel_exhausted(&e) => {
                return Err(LoadError::Describe(format!(
                    "its answer is over {} MiB, far more than any plugin needs (a 64 KiB config schema at most); it was not read",
                    DESCRIBE_FUEL >> 20
                )));
            }
            Ok(Err(e)) => return Err(LoadError::Describe(trap_message(&e, &log))),
            Ok(Ok(d)) => d,
        };
        describe_within_limits(&d).map_err(LoadError::Describe)?;
        if d.name.is_empty()
            || !d
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(LoadError::Describe(format!(
                "plugin name `{}` must be letters, digits, `-` and `_`",
                d.name
            )));
        }
        Ok(PluginInfo {
            name: d.name,
            version: d.version,
            description: d.description,
            capabilities: Capabilities {
                fs: d
                    .capabilities
                    .fs
                    .into_iter()
                    .map(|f| FsRequest {
                        guest: f.guest,
                        write: f.write,
                        reason: f.reason,
                    })
                    .collect(),
                exec: d.capabilities.exec,
                net: d.capabilities.net,
            },
            config_schema: d.config_schema,
            suggested_schedule: d.suggested_schedule,
        })
    }

    fn new_store(
        &self,
        env: Arc<RunEnv>,
        wasi: wasmtime_wasi::WasiCtx,
        memory: usize,
    ) -> wasmtime::Store<RunState> {
        let deadline = env.deadline;
        let mut store = wasmtime::Store::new(&self.engine, RunState::new(env, wasi, memory));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    /// Runs a loaded plugin for a job, in a fresh instance with the job's
    /// grants, until it returns or its time is up.
    pub async fn run(&self, plugin: &LoadedPlugin, req: RunRequest<'_>) -> Execution {
        plugin.mark_used();
        let job = req.job;
        let secrets = crate::secrets::Secrets::new(job.grants.env_values());
        req.log.mask(secrets.clone());
        let mut exec = self.run_unmasked(plugin, req).await;
        exec.summary = wasi_errno::in_host_words(&secrets.mask(&exec.summary));
        exec.details = secrets.mask(&exec.details);
        exec.error = exec
            .error
            .map(|e| wasi_errno::in_host_words(&secrets.mask(&e)));
        // Every field a plugin returns, so a secret cannot be stored
        // through the one left out.
        for m in &mut exec.metrics {
            m.name = secrets.mask(&m.name);
            m.unit = m.unit.take().map(|u| secrets.mask(&u));
        }
        for a in &mut exec.artifacts {
            a.path = secrets.mask(&a.path);
            a.kind = secrets.mask(&a.kind);
            a.sha256 = a.sha256.take().map(|h| secrets.mask(&h));
        }
        exec
    }

    async fn run_unmasked(&self, plugin: &LoadedPlugin, req: RunRequest<'_>) -> Execution {
        let job = req.job;
        // Before the deadline is set, so a wait is not counted against the
        // job's timeout (runs are capped below the slots, so it is rare).
        let slot = tokio::select! {
            slot = self.instance_slot() => slot,
            _ = req.cancel.token.cancelled() => {
                let (status, why) = req.cancel.reason();
                return Execution::failed(status, why);
            }
        };
        let deadline = Instant::now() + job.timeout;
        let violations = Violations::default();
        violations.mask(crate::secrets::Secrets::new(job.grants.env_values()));
        let wasi = match build_wasi(
            &job.grants,
            &violations,
            &req.log,
            &plugin.info.name,
            &self.idle_dir,
        )
        .await
        {
            Ok(w) => w,
            Err(e) => return Execution::failed(RunStatus::Failed, e),
        };
        let quota = quota::QuotaBook::new(&job.grants.fs);
        let env = Arc::new(RunEnv {
            job: job.name.clone(),
            quota: quota.clone(),
            grants: job.grants.clone(),
            violations: violations.clone(),
            deadline,
            log: req.log.clone(),
            store: req.store.clone(),
            jobs: req.jobs.clone(),
            monitor: req.monitor.clone(),
            idle_dir: self.idle_dir.clone(),
            sandbox_logged: Default::default(),
        });
        let mut store = self.new_store(env, wasi, job.grants.limits.memory_bytes);
        store.set_hostcall_fuel(RUN_FUEL);
        let ctx = crate::bindings::opsd::plugin::types::Context {
            job: job.name.clone(),
            run_id: req.run_id.to_owned(),
            // With the job's offset, so a plugin reckons calendar days and
            // names files as the operator does in that zone.
            scheduled: req
                .scheduled
                .with_timezone(&job.timezone)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            attempt: req.attempt,
            dry_run: req.dry_run,
            config: job.config.to_string(),
        };
        let _active = self.ticker.enter();
        let call = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_run(&mut store, &ctx).await
        };
        let result = tokio::select! {
            r = tokio::time::timeout(job.timeout + TICK * 10, call) => r,
            _ = req.cancel.token.cancelled() => {
                let (status, why) = req.cancel.reason();
                return Execution::failed(status, why);
            }
            why = quota_stopped(quota.clone()) => {
                req.log.push(Level::Error, Source::Host, &why);
                return Execution::failed(RunStatus::Failed, why);
            }
        };
        let memory = (store.data().limiter.hit, store.data().limiter.max_bytes);
        drop(store);
        drop(slot);
        // The watcher measures every 100 ms: a run that ended since is
        // measured once more, so it is never recorded ok over its quota.
        if let Some(q) = quota.clone() {
            let _ = tokio::task::spawn_blocking(move || q.check_all()).await;
        }
        if let Some(why) = quota.as_ref().and_then(|q| q.stopped_why()) {
            req.log.push(Level::Error, Source::Host, &why);
            return Execution::failed(RunStatus::Failed, why);
        }
        let exec = call_outcome(result, job, deadline, memory, &req.log);
        let exec = within_limits(exec, job, &req.log);
        with_violations(exec, violations.take(), &req.log)
    }
}

/// What the plugin's `run` call came to: its outcome, or why it was
/// stopped (a timeout, a limit, a trap, an error it returned, explained
/// by the grants where a path is to blame).
fn call_outcome(
    result: Result<
        wasmtime::Result<
            Result<
                crate::bindings::opsd::plugin::types::Outcome,
                crate::bindings::opsd::plugin::types::PluginError,
            >,
        >,
        tokio::time::error::Elapsed,
    >,
    job: &Job,
    deadline: Instant,
    (memory_hit, max_memory): (bool, usize),
    log: &RunLog,
) -> Execution {
    let timed_out = || {
        format!(
            "timeout: the run exceeded the job's timeout of {} and was interrupted",
            humantime::format_duration(job.timeout)
        )
    };
    match result {
        Err(_) => Execution::failed(RunStatus::Timeout, timed_out()),
        Ok(Err(_)) if Instant::now() >= deadline => {
            Execution::failed(RunStatus::Timeout, timed_out())
        }
        Ok(Err(_)) if memory_hit => Execution::failed(
            RunStatus::Failed,
            format!(
                "memory limit: the plugin tried to grow past {} MiB and was stopped; raise grants.limits.memory if it needs more",
                max_memory >> 20
            ),
        ),
        Ok(Err(e)) if fuel_exhausted(&e) => Execution::failed(
            RunStatus::Failed,
            format!(
                "outcome limit: the plugin passed over {} MiB to the host in one call (what it returned, or a call's arguments) and was stopped; write large data to a file in a grant",
                RUN_FUEL >> 20
            ),
        ),
        Ok(Err(e)) if handles_exhausted(&e) => Execution::failed(
            RunStatus::Failed,
            format!(
                "handle limit: the plugin held more than {} open files, directories, sockets and streams at once and was stopped; close what it no longer needs, or raise grants.limits.handles",
                job.grants.limits.handles
            ),
        ),
        Ok(Err(e)) => Execution::failed(RunStatus::Failed, trap_message(&e, log)),
        Ok(Ok(Err(pe))) => {
            let mut msg = pe.message.clone();
            if pe.kind == "io" || pe.kind == "denied" {
                match grants::fs::explain_paths(&pe.message, &job.grants.fs) {
                    Some(why) => msg.push_str(&format!(" ({why})")),
                    None if pe.kind == "denied" => msg.push_str(&format!(
                        " (denied by the job's grants: fs {}; add or widen an `fs` grant)",
                        grants::fs::describe(&job.grants.fs)
                    )),
                    None => {}
                }
            }
            Execution::failed(RunStatus::Failed, msg)
        }
        Ok(Ok(Ok(o))) => outcome_execution(o),
    }
}

/// A run that passed a limit on what it returns or logs fails; a failed
/// run says which of its grants is full.
fn within_limits(mut exec: Execution, job: &Job, log: &RunLog) -> Execution {
    if let Some(why) = oversized(&exec) {
        exec = Execution::failed(RunStatus::Failed, why);
    }
    let dropped = log.dropped();
    if dropped > 0 && exec.status.is_success() {
        exec.status = RunStatus::Failed;
        exec.error = Some(format!(
            "log limit: the plugin logged {dropped} lines past the run's cap of {} KiB, which were dropped; raise grants.limits.log if it needs more",
            job.grants.limits.log_bytes >> 10
        ));
        exec.summary = first_line(exec.error.as_deref().unwrap_or_default()).to_owned();
    }
    if !exec.status.is_success() {
        let full = crate::grants::fs::full_grants(&job.grants.fs);
        if !full.is_empty() {
            let said = exec.error.take().unwrap_or_default();
            exec.error = Some(format!("{said}; {}", full.join("; ")));
            log.push(Level::Error, Source::Host, &full.join("; "));
        }
    }
    exec
}

/// A run that tried to pass its grants fails, naming the first refusal;
/// every refusal is in its log.
fn with_violations(mut exec: Execution, denied: Vec<String>, log: &RunLog) -> Execution {
    if let Some(first) = denied.first() {
        let more = if denied.len() > 1 {
            format!(" (and {} more denials)", denied.len() - 1)
        } else {
            String::new()
        };
        let reason = format!("grant violation: {first}{more}");
        exec.status = if exec.status == RunStatus::Timeout {
            RunStatus::Timeout
        } else {
            RunStatus::Failed
        };
        exec.error = Some(match exec.error.take() {
            Some(e) if !e.contains(first.as_str()) => format!("{reason}; plugin said: {e}"),
            _ => reason,
        });
        exec.summary = first_line(exec.error.as_deref().unwrap_or_default()).to_owned();
        for d in &denied {
            log.push(Level::Error, Source::Host, &format!("denied: {d}"));
        }
    }
    exec
}

/// Resolves, with the reason, when a quota stops the run; never when no
/// grant has one.
async fn quota_stopped(book: Option<Arc<quota::QuotaBook>>) -> String {
    match book {
        Some(book) => book.stopped().await,
        None => std::future::pending().await,
    }
}

/// Checks a component's shape against the contract before linking, so a
/// mismatch says what is wrong in the contract's terms: which version it
/// was built for, which exports are missing.
fn check_contract(imports: &[String], exports: &[String]) -> Result<Option<String>, LoadError> {
    for want in ["describe", "run"] {
        if !exports.iter().any(|e| e == want) {
            return Err(LoadError::Incompatible(format!(
                "it does not export `{want}` (it exports: {}); an opsd plugin implements the `opsd:plugin/plugin` world",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            )));
        }
    }
    let ours = semver_parts(CONTRACT_VERSION);
    let mut contract = None;
    for import in imports.iter().filter(|i| i.starts_with("opsd:plugin/")) {
        let Some((_, version)) = import.split_once('@') else {
            continue;
        };
        let theirs = semver_parts(version);
        // Same major; for 0.x, same minor too. A newer minor or patch than
        // ours may use what this host lacks.
        let compatible = match (ours, theirs) {
            (Some((0, om, op)), Some((0, tm, tp))) => om == tm && tp <= op,
            (Some((oma, omi, _)), Some((tma, tmi, _))) => oma == tma && tmi <= omi,
            _ => false,
        };
        if !compatible {
            return Err(LoadError::Incompatible(format!(
                "it was built for opsd:plugin@{version}; this opsd provides opsd:plugin@{CONTRACT_VERSION}"
            )));
        }
        contract = Some(version.to_owned());
    }
    Ok(contract)
}

fn semver_parts(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split(['.', '-', '+']).map(|p| p.parse::<u64>());
    Some((it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?))
}

/// Largest summary a run record keeps: one line for a list or a page.
const MAX_SUMMARY: usize = 16 << 10;
/// Largest details text (findings, a report's outline).
const MAX_DETAILS: usize = 4 << 20;
/// Most metrics or artifacts one outcome may carry.
const MAX_ITEMS: usize = 10_000;

/// Why an outcome is too big to record, if it is: a plugin must not fill
/// the store (and every `opsd history`) through its return value.
fn oversized(exec: &Execution) -> Option<String> {
    let text = |what: &str, len: usize, max: usize| {
        (len > max).then(|| {
            format!(
                "outcome limit: the plugin returned a {what} of {len} bytes; the limit is {max} bytes (write large output to a file in a grant and return its path as an artifact)"
            )
        })
    };
    let items = |what: &str, n: usize| {
        (n > MAX_ITEMS).then(|| {
            format!("outcome limit: the plugin returned {n} {what}; the limit is {MAX_ITEMS}")
        })
    };
    text("summary", exec.summary.len(), MAX_SUMMARY)
        .or_else(|| text("details text", exec.details.len(), MAX_DETAILS))
        .or_else(|| {
            text(
                "error",
                exec.error.as_ref().map_or(0, String::len),
                MAX_SUMMARY,
            )
        })
        .or_else(|| items("metrics", exec.metrics.len()))
        .or_else(|| items("artifacts", exec.artifacts.len()))
}

fn outcome_execution(o: crate::bindings::opsd::plugin::types::Outcome) -> Execution {
    use crate::bindings::opsd::plugin::types::Status;
    let status = match o.status {
        Status::Ok => RunStatus::Ok,
        Status::Warning => RunStatus::Warning,
        Status::Failed => RunStatus::Failed,
    };
    Execution {
        status,
        error: (status == RunStatus::Failed).then(|| o.summary.clone()),
        summary: o.summary,
        details: o.details,
        metrics: o
            .metrics
            .into_iter()
            .map(|m| Metric {
                name: m.name,
                value: m.value,
                unit: m.unit,
            })
            .collect(),
        artifacts: o
            .artifacts
            .into_iter()
            .map(|a| Artifact {
                path: a.path,
                kind: a.kind,
                size_bytes: a.size_bytes,
                sha256: a.sha256,
            })
            .collect(),
    }
}

/// The WASI context of one run: granted directories, granted environment
/// variables, output into the run log, and sockets only where granted.
///
/// Below the grants, `/` is an empty read-only directory (`empty`) that
/// opsd watches: a WASI library resolves an absolute path outside every
/// grant against it rather than refusing it in the guest, where the host
/// would never see the attempt; [`fs_gate`] makes that a violation.
async fn build_wasi(
    grants: &Grants,
    violations: &Violations,
    log: &RunLog,
    plugin: &str,
    empty: &std::path::Path,
) -> Result<wasmtime_wasi::WasiCtx, String> {
    let mut b = WasiCtxBuilder::new();
    b.args(&[plugin]);
    b.stdout(log.stream(Source::Stdout));
    b.stderr(log.stream(Source::Stderr));
    grants.wire(&mut b, violations).await?;
    if !grants.fs.iter().any(|g| g.guest == "/") {
        b.preopened_dir(empty, "/", wasmtime_wasi::FsPerms::ReadOnly)
            .map_err(|e| format!("the empty root directory {}: {e}", empty.display()))?;
    }
    Ok(b.build())
}

/// A trap in words: the trap itself, and the plugin's last stderr line
/// (where a Rust panic message lands).
fn trap_message(e: &wasmtime::Error, log: &RunLog) -> String {
    let what = match e.downcast_ref::<wasmtime::Trap>() {
        // A plugin compiled from Rust or C keeps its stack in linear
        // memory: running off its bottom is an out-of-bounds access.
        Some(trap @ wasmtime::Trap::MemoryOutOfBounds) => format!(
            "plugin crashed ({trap}: a stack overflow in the plugin, e.g. deep recursion, looks like this too)"
        ),
        Some(trap @ wasmtime::Trap::StackOverflow) => {
            format!("plugin crashed ({trap}: the plugin recursed too deep)")
        }
        Some(trap) => format!("plugin crashed ({trap})"),
        None => format!("plugin crashed: {}", first_line(&e.to_string())),
    };
    match log.last_words() {
        Some(line) => format!("{what}: {line}"),
        None => what,
    }
}

/// Most a `describe()` answer may carry to the host: wasmtime counts what
/// it copies out of the guest (a list may name the same string a million
/// times, so the copy, not the guest's memory, is what to bound).
const DESCRIBE_FUEL: usize = 8 << 20;

/// Most one call of a run may carry to the host (a run's outcome, whose
/// details are capped at 4 MiB, or one host call's arguments: a program's
/// input over 64 MiB goes as a file, `input::file`).
const RUN_FUEL: usize = 64 << 20;

/// Whether wasmtime stopped copying data out of the guest at the fuel
/// set above.
fn fuel_exhausted(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| {
        c.to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// Whether a trap came from the instance's handle table being full
/// (`grants.limits.handles`).
fn handles_exhausted(e: &wasmtime::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    }) || e.to_string().contains("resource table has no free keys")
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Cheap check of the 8-byte preamble: components have layer 1, core
/// modules layer 0.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// Advances the engine's epoch while anything runs, and sleeps otherwise,
/// so an idle daemon does not wake 100 times a second.
struct Ticker {
    active: Arc<AtomicUsize>,
    thread: std::thread::Thread,
}

struct TickGuard(Arc<AtomicUsize>);

impl Drop for TickGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let active = Arc::new(AtomicUsize::new(0));
        let a = active.clone();
        let handle = std::thread::Builder::new()
            .name("opsd-epoch".into())
            .spawn(move || {
                loop {
                    if a.load(Ordering::SeqCst) == 0 {
                        std::thread::park_timeout(Duration::from_secs(60));
                    } else {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(Ticker {
            active,
            thread: handle.thread().clone(),
        })
    }

    fn enter(&self) -> TickGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
        TickGuard(self.active.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_describe_answer_past_its_limits_is_refused_by_part() {
        use crate::bindings::opsd::plugin::types::{Capabilities, Description, FsRequest};
        let d = |schema: usize, exec: usize, reason: usize| Description {
            name: "p".into(),
            version: "1".into(),
            description: "d".into(),
            capabilities: Capabilities {
                fs: vec![FsRequest {
                    guest: "/g".into(),
                    write: false,
                    reason: "r".repeat(reason),
                }],
                exec: vec!["sh".into(); exec],
                net: false,
            },
            config_schema: "s".repeat(schema),
            suggested_schedule: None,
        };
        assert_eq!(describe_within_limits(&d(65_536, 64, 4096)), Ok(()));
        let e = describe_within_limits(&d(65_537, 1, 1)).unwrap_err();
        assert!(
            e.contains("its config schema is 65537 bytes; opsd accepts at most 65536"),
            "{e}"
        );
        let e = describe_within_limits(&d(1, 65, 1)).unwrap_err();
        assert!(e.contains("65 programs; opsd accepts at most 64"), "{e}");
        let e = describe_within_limits(&d(1, 1, 4097)).unwrap_err();
        assert!(
            e.contains("is 4097 bytes; opsd accepts at most 4096"),
            "{e}"
        );
    }

    #[test]
    fn contract_versions_are_semver_compatible() {
        let exports = vec!["describe".to_string(), "run".to_string()];
        let imp = |v: &str| {
            vec![
                format!("opsd:plugin/log@{v}"),
                "wasi:cli/environment@0.2.6".to_string(),
            ]
        };
        // Plugins built for 0.1.0, 0.1.1 and 0.1.2 keep working with a 0.1.3 host.
        assert_eq!(
            check_contract(&imp("0.1.0"), &exports).unwrap(),
            Some("0.1.0".into())
        );
        assert!(check_contract(&imp("0.1.1"), &exports).is_ok());
        assert!(check_contract(&imp("0.1.2"), &exports).is_ok());
        assert!(check_contract(&imp("0.1.3"), &exports).is_ok());
        // A newer patch may call what this host lacks.
        assert!(check_contract(&imp("0.1.4"), &exports).is_err());
        let e = check_contract(&imp("0.2.0"), &exports)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "not compatible with this opsd: it was built for opsd:plugin@0.2.0; this opsd provides opsd:plugin@0.1.3"
        );
        assert!(check_contract(&imp("1.0.0"), &exports).is_err());
        let e = check_contract(&imp("0.1.0"), &["run".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not export `describe`"), "{e}");
    }
}
