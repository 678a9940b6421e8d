//! What one plugin instance lives in: the per-run store data, and the host
//! side of every import the contract defines (log, process, system,
//! history), plus the gate on wasi:http.

use super::log::RunLog;
use crate::bindings::opsd::plugin::{files, history, log, process, system, types};
use crate::grants::{self, Grants, NetPolicy, Violations};
use crate::record::{Level, Source};
use crate::store::{HistoryQuery, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Everything a run lends its instance; shared with checks that run
/// outside the store (socket checks).
pub struct RunEnv {
    /// The job this run belongs to: the history it may read by default.
    pub job: String,
    pub grants: Grants,
    pub violations: Violations,
    pub deadline: Instant,
    pub log: RunLog,
    /// Present when history is readable (always, for runs opsd starts).
    pub store: Option<Store>,
    /// Every configured job, listed when the plugin asks.
    pub jobs: super::JobsSource,
    /// The daemon's monitor, for `system.monitor`; none outside a run.
    pub monitor: Option<Arc<crate::monitor::Monitor>>,
    /// Where programs of a job with no fs grant start.
    pub idle_dir: std::path::PathBuf,
    /// Whether the run's log says already what its programs may touch.
    pub sandbox_logged: std::sync::atomic::AtomicBool,
    /// The accounts of grants with a quota, charged on the write path;
    /// none when no grant has one.
    pub quota: Option<Arc<super::quota::QuotaBook>>,
}

/// The `T` of `Store<T>`: one per run, dropped with the instance.
pub struct RunState {
    pub env: Arc<RunEnv>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    gate: HttpGate,
    pub limiter: MemoryLimiter,
    /// Name lookups started in the current minute, and when it began:
    /// each holds a resolver thread until it ends, whether or not the
    /// plugin waits for it.
    pub lookups: (Instant, u32),
    /// The grant (its index) each directory the plugin holds was reached
    /// through, by the directory's shared handle: a preopen's, or the
    /// one it was opened below (`fs_gate`).
    pub dirs: std::collections::HashMap<usize, usize>,
}

impl RunState {
    pub fn new(env: Arc<RunEnv>, wasi: WasiCtx, memory_bytes: usize) -> RunState {
        let mut table = ResourceTable::new();
        // Each open file is one of the daemon's descriptors: a run may not
        // take them all.
        table.set_max_capacity(env.grants.limits.handles as usize);
        RunState {
            gate: HttpGate {
                policy: env.grants.net.clone(),
                violations: env.violations.clone(),
                log: env.log.clone(),
            },
            env,
            wasi,
            http: WasiHttpCtx::new(),
            table,
            limiter: MemoryLimiter {
                max_bytes: memory_bytes,
                used: 0,
                before: 0,
                hit: false,
            },
            lookups: (Instant::now(), 0),
            dirs: Default::default(),
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// Caps a run's memory and remembers that it did, so the run's error can
/// say "memory limit" rather than a bare trap. The cap is on all of the
/// run's linear memories together: a component of several memories gets no
/// more than one of one.
pub struct MemoryLimiter {
    pub max_bytes: usize,
    /// Bytes of every linear memory of the run so far.
    used: usize,
    /// `used` before the last growth, restored if that growth fails.
    before: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A memory is made (`current` 0) or grows; none shrinks.
        let total = (self.used - current.min(self.used)).saturating_add(desired);
        if total > self.max_bytes {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit: the plugin asked for {} MiB, the job allows {} MiB (grants.limits.memory)",
                total >> 20,
                self.max_bytes >> 20
            ));
        }
        self.before = self.used;
        self.used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Allowed here but refused by the engine: not in use after all.
        self.used = self.before;
        tracing::debug!(error = %format!("{error:#}"), "a memory could not grow");
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// wasi:http requests never pass wasmtime's socket check, so every
/// outgoing request is checked here against the job's network grant.
struct HttpGate {
    policy: NetPolicy,
    violations: Violations,
    /// Transport failures (a certificate not trusted, a refused
    /// connection) are written here, since the guest only sees an error
    /// code.
    log: RunLog,
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_owned();
        let host = uri.host().unwrap_or("").to_owned();
        let port = uri.port_u16();
        // What is checked is what is connected to: an authority with a
        // user part is refused rather than read two ways.
        let userinfo = uri.authority().is_some_and(|a| a.as_str().contains('@'));
        if userinfo || !self.policy.allows_http(&scheme, &host, port) {
            let origin = match port {
                Some(p) => format!("{scheme}://{host}:{p}"),
                None => format!("{scheme}://{host}"),
            };
            self.violations.record(format!(
                "HTTP request to {origin} is not in the job's net grant ({}); add \"{origin}\" to `net = [...]`",
                self.policy.describe()
            ));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        _ = fut;
        let origin = match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        };
        let roots = self.policy.ca_roots.clone();
        let log = self.log.clone();
        Box::new(async move {
            let sent = super::wasi_http::send(request, options, &roots).await;
            if let Err(e) = &sent {
                let hint = if matches!(e, wasmtime_wasi_http::Error::Tls(_)) {
                    " (a private CA must be in the job's `ca = [...]` grant)"
                } else {
                    ""
                };
                log.push(
                    Level::Warn,
                    Source::Host,
                    &format!("HTTP request to {origin} failed: {e}{hint}"),
                );
            }
            sent
        })
    }
}

impl types::Host for RunState {}

impl log::Host for RunState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => Level::Trace,
            log::Level::Debug => Level::Debug,
            log::Level::Info => Level::Info,
            log::Level::Warn => Level::Warn,
            log::Level::Error => Level::Error,
        };
        self.env.log.push(level, Source::Plugin, &message);
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: String) {
        self.env.log.progress(done, total, &message);
    }
}

impl process::Host for RunState {
    async fn run(&mut self, cmd: process::Command) -> Result<process::Exit, process::ExecError> {
        let env = self.env.clone();
        let program = cmd.program.clone();
        if !env
            .sandbox_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            env.log.push(
                Level::Info,
                Source::Host,
                &format!("programs {}", env.grants.child_sandbox().join("; ")),
            );
        }
        let note = |line: &str| env.log.push(Level::Info, Source::Host, line);
        // One room for all the call's relayed output: the first relay
        // measures it, the next ones share it (held to their own room).
        let pool = std::sync::Mutex::new(None::<Arc<std::sync::atomic::AtomicU64>>);
        let room = |path: Option<&std::path::Path>| {
            use crate::locks::Unpoisoned;
            let left = env.quota.as_ref()?.room_for(path)?;
            let mut pool = pool.locked();
            let pool = pool.get_or_insert_with(|| Arc::new(left.into()));
            pool.fetch_min(left, std::sync::atomic::Ordering::SeqCst);
            Some(pool.clone())
        };
        let before = env.quota.as_ref().map(|q| q.measure_all());
        let ctx = grants::process::ProcessContext {
            grants: &env.grants,
            violations: &env.violations,
            deadline: env.deadline,
            idle_dir: &env.idle_dir,
            notes: &note,
            file_size_cap: env
                .quota
                .as_ref()
                .and_then(|q| q.file_size_cap(&env.grants.fs)),
            quota_room: Some(&room),
        };
        let result = grants::process::run(&ctx, cmd).await;
        // What the program wrote is not charged on the way: measure now,
        // before the plugin goes on.
        if let Some(q) = &env.quota {
            q.after_program(&program, before.as_deref().unwrap_or(&[]), &env.violations);
        }
        match &result {
            Ok(exit) => env.log.push(
                Level::Debug,
                Source::Host,
                &format!(
                    "exec {program}: exit {} in {} ms",
                    exit.code.map_or_else(
                        || format!("by signal {}", exit.signal.unwrap_or(0)),
                        |c| c.to_string()
                    ),
                    exit.duration_ms
                ),
            ),
            Err(e) => env.log.push(
                Level::Warn,
                Source::Host,
                &format!("exec {program}: {}", exec_error(e)),
            ),
        }
        result
    }
}

/// A refused or failed program start in words, for the run's log.
fn exec_error(e: &process::ExecError) -> String {
    match e {
        process::ExecError::Denied(why) => format!("denied: {why}"),
        process::ExecError::Spawn(why) => format!("could not start: {why}"),
        process::ExecError::Timeout(ms) => format!("killed after its time limit of {ms} ms"),
        process::ExecError::Io(why) => format!("input or output file: {why}"),
    }
}

/// How old the daemon's sample may be for a plugin's snapshot to use it
/// (the default `[monitor] interval` is a minute).
const SAMPLE_FRESH: std::time::Duration = std::time::Duration::from_secs(180);

impl system::Host for RunState {
    /// The machine now, with the daemon's newest sample's CPU, load and
    /// memory when it is fresh: the figures `opsd status` shows, so a
    /// report and the status agree (a CPU figure read now would cover
    /// only the moment of the call).
    fn snapshot(&mut self) -> system::SystemSnapshot {
        let mut now = crate::system::snapshot();
        let latest = self.env.monitor.as_ref().and_then(|m| m.latest());
        if let Some(s) = latest
            .filter(|s| (chrono::Utc::now() - s.taken).to_std().unwrap_or_default() <= SAMPLE_FRESH)
        {
            now.cpu_percent = s.cpu_percent as f32;
            now.load_average = (s.load[0], s.load[1], s.load[2]);
            now.memory_total_bytes = s.memory_total_bytes;
            now.memory_used_bytes = s.memory_used_bytes;
            now.swap_total_bytes = s.swap_total_bytes;
            now.swap_used_bytes = s.swap_used_bytes;
        }
        now
    }

    fn monitor(&mut self) -> system::MonitorFigures {
        let history = self
            .env
            .monitor
            .as_ref()
            .map(|m| m.history())
            .unwrap_or_default();
        match history.split_last() {
            Some((latest, before)) => system::MonitorFigures {
                network_errors_total: latest.network_errors,
                network_errors_last_hour: crate::monitor::network_errors_per_hour(latest, before)
                    .map(|n| n as u64),
                probes: latest
                    .probes
                    .iter()
                    .map(|p| (crate::outbound::url_without_secrets(&p.url), p.seconds))
                    .collect(),
            },
            // No daemon sampling (a test, or before its first sample):
            // the counter read now.
            None => system::MonitorFigures {
                network_errors_total: crate::system::network_errors_now(),
                network_errors_last_hour: None,
                probes: Vec::new(),
            },
        }
    }
}

impl files::Host for RunState {
    fn stat(&mut self, path: String) -> Result<files::FileInfo, String> {
        let s = self.checked(grants::fs::stat(&self.env.grants.fs, &path))?;
        Ok(files::FileInfo {
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
            owner: s.owner,
            group: s.group,
            size: s.size,
            fs_available_bytes: s.fs_available,
            fs_total_bytes: s.fs_total,
        })
    }

    fn set_mode(&mut self, path: String, mode: u32) -> Result<(), String> {
        self.checked(grants::fs::set_mode(&self.env.grants.fs, &path, mode))
    }

    fn set_owner(
        &mut self,
        path: String,
        owner: Option<String>,
        group: Option<String>,
    ) -> Result<(), String> {
        self.checked(grants::fs::set_owner(
            &self.env.grants.fs,
            &path,
            owner.as_deref(),
            group.as_deref(),
        ))
    }

    fn sync_dir(&mut self, path: String) -> Result<(), String> {
        self.checked(grants::fs::sync_dir(&self.env.grants.fs, &path))
    }

    async fn sha256(&mut self, path: String) -> Result<files::FileDigest, String> {
        /// Tells the hashing thread to stop when the run is dropped
        /// (timed out or cancelled) while it waits.
        struct StopOnDrop(Arc<AtomicBool>);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let env = self.env.clone();
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let cancelled = stop.0.clone();
        // Off the async workers: a large file takes seconds to read.
        let hashed = tokio::task::spawn_blocking(move || {
            grants::fs::sha256(&env.grants.fs, &path, &cancelled)
        })
        .await
        .unwrap_or_else(|e| Err(grants::fs::FsError::Io(format!("hashing: {e}"))));
        drop(stop);
        let (sha256, size) = self.checked(hashed)?;
        Ok(files::FileDigest { sha256, size })
    }
}

impl RunState {
    /// A call refused by the grants is recorded as a violation, like a
    /// denied exec; other failures are the plugin's to handle.
    fn checked<T>(&self, r: Result<T, grants::fs::FsError>) -> Result<T, String> {
        r.map_err(|e| {
            if let grants::fs::FsError::Denied(m) = &e {
                self.env.violations.record(m.clone());
            }
            e.to_string()
        })
    }
}

impl RunState {
    /// Whether this run may read `job`'s history; a refusal is a
    /// violation, like any other.
    fn may_read_history_of(&self, job: &str) -> bool {
        if self.env.grants.history == grants::HistoryScope::All || job == self.env.job {
            return true;
        }
        self.env.violations.record(format!(
            "history: job `{}` may read only its own runs, and asked for job `{}`'s; add `history = \"all\"` to its [job.grants] if it reports on other jobs",
            crate::escape::line(&self.env.job),
            crate::escape::line(job)
        ));
        false
    }
}

impl history::Host for RunState {
    fn runs(
        &mut self,
        job: Option<String>,
        since: Option<String>,
        limit: u32,
    ) -> Vec<history::RunSummary> {
        let Some(store) = &self.env.store else {
            return Vec::new();
        };
        // "Every job" means every job this run may read.
        let job = match job {
            None if self.env.grants.history == grants::HistoryScope::Own => {
                Some(self.env.job.clone())
            }
            Some(j) if !self.may_read_history_of(&j) => return Vec::new(),
            other => other,
        };
        let since = since.and_then(|s| {
            chrono::DateTime::parse_from_rfc3339(&s)
                .ok()
                .map(|t| t.to_utc())
        });
        let query = HistoryQuery {
            job,
            status: None,
            since,
            limit: Some(limit.min(10_000) as usize),
            real_only: true,
        };
        store
            .history(&query)
            .unwrap_or_default()
            .into_iter()
            .map(run_summary)
            .collect()
    }

    fn detail(&mut self, id: String) -> Option<history::RunDetail> {
        let rec = self.env.store.as_ref()?.run(&id).ok()??;
        if !self.may_read_history_of(&rec.job) {
            return None;
        }
        let trigger = match rec.trigger {
            crate::record::Trigger::Schedule => "schedule",
            crate::record::Trigger::Manual => "manual",
            crate::record::Trigger::CatchUp => "catch-up",
            crate::record::Trigger::Retry => "retry",
            crate::record::Trigger::Condition => "condition",
        }
        .to_owned();
        let attempt = rec.attempt;
        let details = rec.details.clone();
        let metrics = rec
            .metrics
            .iter()
            .map(|m| types::Metric {
                name: m.name.clone(),
                value: m.value,
                unit: m.unit.clone(),
            })
            .collect();
        let artifacts = rec
            .artifacts
            .iter()
            .map(|a| types::Artifact {
                path: a.path.clone(),
                kind: a.kind.clone(),
                size_bytes: a.size_bytes,
                sha256: a.sha256.clone(),
            })
            .collect();
        Some(history::RunDetail {
            summary: run_summary(rec),
            trigger,
            attempt,
            details,
            metrics,
            artifacts,
        })
    }

    fn samples(&mut self, since: Option<String>) -> Vec<system::SystemSnapshot> {
        let Some(store) = &self.env.store else {
            return Vec::new();
        };
        let since = since
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.to_utc())
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        store
            .samples(since)
            .unwrap_or_default()
            .into_iter()
            .map(|s| system::SystemSnapshot {
                hostname: String::new(),
                taken_at: s.taken.timestamp().max(0) as u64,
                uptime_seconds: 0,
                cpu_count: 0,
                cpu_percent: s.cpu_percent,
                load_average: (0.0, 0.0, 0.0),
                memory_total_bytes: s.memory_total_bytes,
                memory_used_bytes: s.memory_used_bytes,
                swap_total_bytes: 0,
                swap_used_bytes: 0,
                disks: s
                    .disks
                    .into_iter()
                    .map(|d| system::Disk {
                        mount_point: d.mount_point,
                        filesystem: String::new(),
                        total_bytes: d.total_bytes,
                        available_bytes: d.available_bytes,
                    })
                    .collect(),
            })
            .collect()
    }

    fn jobs(&mut self) -> Vec<history::JobInfo> {
        let all = self.env.grants.history == grants::HistoryScope::All;
        let only = (!all).then_some(self.env.job.as_str());
        (self.env.jobs)(only)
            .iter()
            .filter(|j| all || j.job == self.env.job)
            .map(|j| {
                let state = self
                    .env
                    .store
                    .as_ref()
                    .and_then(|s| s.job_state(&j.job).ok().flatten())
                    .unwrap_or_default();
                history::JobInfo {
                    name: j.job.clone(),
                    plugin: j.plugin.clone(),
                    schedule: j.schedule.clone(),
                    timezone: j.timezone.clone(),
                    enabled: j.enabled,
                    next_fire: j.next.map(|t| t.to_rfc3339()),
                    last_success: state.last_success.map(|t| t.to_rfc3339()),
                    missed_total: state.missed_total,
                }
            })
            .collect()
    }
}

fn run_summary(r: crate::record::RunRecord) -> history::RunSummary {
    history::RunSummary {
        id: r.id,
        job: r.job,
        plugin: r.plugin,
        scheduled: r.scheduled.to_rfc3339(),
        started: r.started.to_rfc3339(),
        finished: r.finished.map(|t| t.to_rfc3339()),
        status: r.status.as_str().into(),
        summary: r.summary,
        error: r.error,
        duration_ms: r.duration_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryLimiter;
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_memory_limit_is_for_all_memories_together() {
        let mut l = MemoryLimiter {
            max_bytes: 10 << 20,
            used: 0,
            before: 0,
            hit: false,
        };
        // One memory made at 4 MiB and grown to 6, a second made at 4.
        assert!(l.memory_growing(0, 4 << 20, None).is_ok_and(|ok| ok));
        assert!(l.memory_growing(4 << 20, 6 << 20, None).is_ok_and(|ok| ok));
        assert!(l.memory_growing(0, 4 << 20, None).is_ok_and(|ok| ok));
        assert!(!l.hit);
        // 6 + 4 = 10 MiB: the second may not grow past the cap.
        assert!(l.memory_growing(4 << 20, 5 << 20, None).is_err());
        assert!(l.hit);
    }
}
