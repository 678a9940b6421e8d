//! The run history and job state, in sled.
//!
//! Trees:
//! - `runs`: run id (ULID, 16 bytes big-endian, so key order is time
//!   order) → [`RunRecord`] as JSON;
//! - `job_runs`: job name, 0, run id → nothing: the per-job index;
//! - `logs`: run id → captured log lines as JSON;
//! - `jobs`: job name → [`JobState`];
//! - `meta`: `schema_version`.
//!
//! A run is written as `running` and flushed before its plugin starts, so
//! a crash leaves a record; whoever opens the store next marks such
//! records `interrupted` (sled allows one process, so at open time no one
//! else can be running anything).

use crate::locks::Unpoisoned;
use crate::record::{JobState, LogLine, RunRecord, RunStatus};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use ulid::Ulid;

/// The schema this build reads and writes. 2 added the index of runs in
/// progress (built from the runs on first open of a version-1 store).
pub const SCHEMA_VERSION: u64 = 2;

/// Why the store could not be used; callers tell "someone else has it
/// open" apart from real failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store in {} is in use by another process (an opsd daemon without a reachable control socket?); stop it or point --config at another data_dir",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error("store in {}: written by a newer opsd (schema {found}, this build reads {SCHEMA_VERSION}); upgrade opsd", path.display())]
    TooNew { path: PathBuf, found: u64 },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: corrupt record {key}: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

/// Which runs `history` returns, newest first.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct HistoryQuery {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
    /// Leaves dry runs out: previews, which did nothing (what plugins
    /// reading history are given).
    #[serde(default)]
    pub real_only: bool,
}

/// Handle to the open store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    runs: sled::Tree,
    job_runs: sled::Tree,
    logs: sled::Tree,
    jobs: sled::Tree,
    /// Keys of runs whose status is `running`, so finding the runs a dead
    /// process left behind does not read the whole history.
    running: sled::Tree,
    /// System samples keyed by big-endian Unix seconds.
    samples: sled::Tree,
    /// What each `[[alert]]` remembers (active since, last sent), by name.
    alerts: sled::Tree,
    /// Keys of finished runs not yet copied to the fleet's PostgreSQL:
    /// written with the record, removed once PostgreSQL has it, so a run
    /// is never lost while PostgreSQL is away.
    outbox: sled::Tree,
    /// Fleet jobs on this host: slots held while PostgreSQL was away
    /// (`held\0JOB\0SLOT`) and each job's definition when this host last
    /// told the fleet (`def\0JOB`).
    fleet: sled::Tree,
    /// Whether finished runs go into the outbox (a `[fleet]` is set).
    outbox_on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    path: PathBuf,
    /// Lets concurrent [`Store::flush_async`] callers share one fsync.
    flushes: std::sync::Arc<FlushGate>,
}

/// Group commit: a flush covers every write made before it started, so a
/// caller whose writes an in-progress or later flush covers waits for that
/// one instead of queueing its own fsync behind it, and every caller a
/// finished flush covers is released at once, not one by one through the
/// flusher's lock (runs started together would otherwise queue behind
/// each other and behind the next run's own fsync).
struct FlushGate {
    /// Flush requests so far; a request's number is taken after its writes.
    requested: std::sync::atomic::AtomicU64,
    /// Held by the one caller flushing.
    flusher: tokio::sync::Mutex<()>,
    /// The highest request number a finished flush covers.
    done: tokio::sync::watch::Sender<u64>,
}

impl Default for FlushGate {
    fn default() -> Self {
        FlushGate {
            requested: Default::default(),
            flusher: Default::default(),
            done: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Store {
    /// Opens (or creates) the store under `data_dir/store`.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join("store");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(16 << 20)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.to_string().contains("lock") => {
                    StoreError::Locked { path: path.clone() }
                }
                e => StoreError::Sled(e),
            })?;
        let meta = db.open_tree("meta")?;
        let found = match meta.get("schema_version")? {
            None => SCHEMA_VERSION,
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX),
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path, found });
        }
        let store = Store {
            runs: db.open_tree("runs")?,
            job_runs: db.open_tree("job_runs")?,
            logs: db.open_tree("logs")?,
            jobs: db.open_tree("jobs")?,
            running: db.open_tree("running")?,
            samples: db.open_tree("samples")?,
            alerts: db.open_tree("alerts")?,
            outbox: db.open_tree("outbox")?,
            fleet: db.open_tree("fleet")?,
            outbox_on: Default::default(),
            db,
            path,
            flushes: Default::default(),
        };
        if found < 2 {
            // Version 1 had no index of runs in progress: build it once.
            for item in store.runs.iter() {
                let (key, value) = item?;
                let rec: RunRecord = decode(&key, &value)?;
                if rec.status == RunStatus::Running {
                    store.running.insert(key, &[])?;
                }
            }
        }
        if found != SCHEMA_VERSION || meta.get("schema_version")?.is_none() {
            meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            store.db.flush()?;
        }
        Ok(store)
    }

    /// Where the store lives on disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks runs left `running` by a process that died as `interrupted`.
    pub fn recover_interrupted(&self, now: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        let mut fixed = Vec::new();
        for item in self.running.iter() {
            let (key, _) = item?;
            let Some(value) = self.runs.get(&key)? else {
                self.running.remove(&key)?;
                continue;
            };
            let mut rec: RunRecord = decode(&key, &value)?;
            if rec.status != RunStatus::Running {
                self.running.remove(&key)?;
            } else {
                rec.status = RunStatus::Interrupted;
                rec.finished = Some(now);
                rec.error = Some("opsd stopped while this run was in progress".into());
                self.put_run(&rec)?;
                fixed.push(rec);
            }
        }
        if !fixed.is_empty() {
            self.db.flush()?;
        }
        Ok(fixed)
    }

    /// Inserts or updates a run and its index entry.
    pub fn put_run(&self, rec: &RunRecord) -> Result<()> {
        let key = run_key(&rec.id);
        let value = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt {
            key: rec.id.clone(),
            source: e,
        })?;
        // The outbox entry goes first: sled recovers its writes in order,
        // so a crash between the two leaves an entry whose run is still
        // `running` (the outbox waits for it; recovery finishes it as
        // interrupted), never a finished run the outbox does not know.
        let finished = rec.status != RunStatus::Running;
        if finished && self.outbox_on.load(std::sync::atomic::Ordering::SeqCst) {
            self.outbox.insert(key, &[])?;
        }
        self.runs.insert(key, value)?;
        self.job_runs.insert(job_key(&rec.job, &key), &[])?;
        if finished {
            self.running.remove(key)?;
        } else {
            self.running.insert(key, &[])?;
        }
        Ok(())
    }

    /// From now on, finished runs also go into the fleet outbox.
    pub fn enable_outbox(&self) {
        self.outbox_on
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Finished runs waiting to be copied to the fleet's PostgreSQL.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Up to `n` runs from the outbox, oldest first, by id, and no more
    /// than `max_bytes` of records (at least one): a backlog of large
    /// runs never makes a statement PostgreSQL refuses for its size. A
    /// run whose record retention removed meanwhile, or that cannot be
    /// read, is left out (and its entry dropped, said in the log): there
    /// is nothing to copy, and it must not hold back the runs behind it.
    pub fn outbox_batch(&self, n: usize, max_bytes: usize) -> Result<Vec<RunRecord>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in self.outbox.iter() {
            if out.len() >= n {
                break;
            }
            let (key, _) = item?;
            match self.runs.get(&key)? {
                Some(v) => {
                    if !out.is_empty() && bytes + v.len() > max_bytes {
                        break;
                    }
                    match decode::<RunRecord>(&key, &v) {
                        // Its finished record is on its way (see
                        // `put_run`): it goes in a later batch.
                        Ok(rec) if rec.status == RunStatus::Running => {}
                        Ok(rec) => {
                            bytes += v.len();
                            out.push(rec);
                        }
                        Err(e) => {
                            tracing::warn!(run = %key_id(&key), error = %e, "a run record in the store cannot be read; it stays out of the fleet's history");
                            self.outbox.remove(&key)?;
                        }
                    }
                }
                None => {
                    tracing::info!(run = %key_id(&key), "a run history retention removed before it reached the fleet's PostgreSQL");
                    self.outbox.remove(&key)?;
                }
            }
        }
        Ok(out)
    }

    /// Keeps a fleet job's slot that could not be claimed, for its
    /// catch-up policy once PostgreSQL answers; durable on return.
    pub fn hold_slot(&self, job: &str, slot: DateTime<Utc>) -> Result<()> {
        let mut key = format!("held\0{job}\0").into_bytes();
        key.extend_from_slice(&slot.timestamp_micros().to_be_bytes());
        self.fleet.insert(key, &[])?;
        Ok(())
    }

    /// Every held slot, by job, oldest first; taken out of the store.
    pub fn take_held(&self) -> Result<Vec<(String, Vec<DateTime<Utc>>)>> {
        let mut out: Vec<(String, Vec<DateTime<Utc>>)> = Vec::new();
        for item in self.fleet.scan_prefix(b"held\0") {
            let (key, _) = item?;
            self.fleet.remove(&key)?;
            let rest = &key[5..];
            let Some(split) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let job = String::from_utf8_lossy(&rest[..split]).into_owned();
            let Some(slot) = rest[split + 1..]
                .try_into()
                .ok()
                .map(i64::from_be_bytes)
                .and_then(DateTime::from_timestamp_micros)
            else {
                continue;
            };
            match out.last_mut() {
                Some((j, slots)) if *j == job => slots.push(slot),
                _ => out.push((job, vec![slot])),
            }
        }
        Ok(out)
    }

    /// A fleet job's definition as this host last told the fleet.
    pub fn told_definition(&self, job: &str) -> Result<Option<String>> {
        Ok(self
            .fleet
            .get(format!("def\0{job}"))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Remembers the definition this host told the fleet.
    pub fn set_told_definition(&self, job: &str, definition: &str) -> Result<()> {
        self.fleet
            .insert(format!("def\0{job}"), definition.as_bytes())?;
        Ok(())
    }

    /// Takes copied runs out of the outbox.
    pub fn outbox_done(&self, ids: &[String]) -> Result<()> {
        for id in ids {
            self.outbox.remove(run_key(id))?;
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// [`Store::flush`], then an fsync of sled's file (its flush writes
    /// the log with `sync_file_range`, which leaves the file's size and
    /// the drive's cache to sled's next `sync_all`: what its drop does,
    /// for a process about to exit without waiting for that drop).
    pub fn sync_all(&self) -> Result<()> {
        self.flush()?;
        // A second descriptor: closing it leaves sled's lock alone (an
        // flock belongs to sled's own open file).
        std::fs::File::open(self.path.join("db"))
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::Sled(e.into()))
    }

    /// Like [`Store::flush`], on tokio's blocking threads, so an async
    /// worker is not held while the disk catches up (runs and the scheduler
    /// share two workers on a small machine). Not sled's `flush_async`: its
    /// small IO pool deadlocks when many flushes wait on each other.
    pub async fn flush_async(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let gate = &self.flushes;
        let mine = gate.requested.fetch_add(1, Ordering::SeqCst) + 1;
        // Runs started together write their records in the same scheduling
        // turn: one turn's wait lets them all ask before the first fsync
        // starts, and share it, instead of the first run flushing alone and
        // the rest queueing behind it.
        tokio::task::yield_now().await;
        let mut covered = gate.done.subscribe();
        let flusher = tokio::select! {
            biased;
            // A flush that started after our writes has finished.
            _ = covered.wait_for(|done| *done >= mine) => return Ok(()),
            flusher = gate.flusher.lock() => flusher,
        };
        if *gate.done.borrow() >= mine {
            return Ok(());
        }
        let covers = gate.requested.load(Ordering::SeqCst);
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(flushed) => {
                flushed?;
            }
            // The blocking pool is gone only when the runtime shuts down:
            // flush here instead.
            Err(_) => self.flush()?,
        }
        gate.done.send_modify(|done| *done = (*done).max(covers));
        drop(flusher);
        Ok(())
    }

    /// One run by id.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let key = run_key(id);
        self.runs.get(key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Runs matching the query, newest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<RunRecord>> {
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.newest_first(q.job.as_deref(), q.since, |key, value| {
            let rec: RunRecord = decode(key, value)?;
            let keep = q.status.is_none_or(|s| s == rec.status)
                && q.since.is_none_or(|s| rec.started >= s)
                && !(q.real_only && rec.dry_run);
            if keep {
                out.push(rec);
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Up to `limit` runs of every job started since `since`, newest
    /// first, each decoded as `T`: a caller that reads a few fields of
    /// many runs (a report reads 10,000) names only those in `T`, and the
    /// rest of each record is skipped, not built. `started` is the run's
    /// `started`, read from `T`.
    pub fn runs_since<T: serde::de::DeserializeOwned>(
        &self,
        since: DateTime<Utc>,
        limit: usize,
        started: impl Fn(&T) -> DateTime<Utc>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.newest_first(None, Some(since), |key, value| {
            let run: T = decode(key, value)?;
            if started(&run) >= since {
                out.push(run);
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Hands `visit` each stored run (its key and record) of `job`, or of
    /// every job, newest first, until it says stop or the runs are older
    /// than `since`. A run is keyed by the ULID opsd took it up with,
    /// before it started, so the scan stops a second early and the caller
    /// checks `started` itself.
    fn newest_first(
        &self,
        job: Option<&str>,
        since: Option<DateTime<Utc>>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let too_old =
            |key: &[u8]| since.is_some_and(|s| key_time(key) < s - chrono::Duration::seconds(1));
        match job {
            Some(job) => {
                let prefix = job_prefix(job);
                for item in self.job_runs.scan_prefix(&prefix).rev() {
                    let (k, _) = item?;
                    let key = &k[prefix.len()..];
                    if too_old(key) {
                        break;
                    }
                    // An index entry whose run retention has just removed
                    // is passed over.
                    if let Some(v) = self.runs.get(key)?
                        && !visit(key, &v)?
                    {
                        break;
                    }
                }
            }
            None => {
                // The value comes with the key: no second lookup.
                for item in self.runs.iter().rev() {
                    let (k, v) = item?;
                    if too_old(&k) || !visit(&k, &v)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores a run's captured log.
    pub fn put_log(&self, id: &str, lines: &[LogLine]) -> Result<()> {
        let value = serde_json::to_vec(lines).map_err(|e| StoreError::Corrupt {
            key: id.into(),
            source: e,
        })?;
        self.logs.insert(run_key(id), value)?;
        Ok(())
    }

    /// A run's captured log, if the run exists.
    pub fn log(&self, id: &str) -> Result<Option<Vec<LogLine>>> {
        let key = run_key(id);
        self.logs.get(key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// What the store remembers about a job.
    pub fn job_state(&self, job: &str) -> Result<Option<JobState>> {
        self.jobs
            .get(job)?
            .map(|v| decode(job.as_bytes(), &v))
            .transpose()
    }

    /// Replaces what the store remembers about a job.
    pub fn put_job_state(&self, job: &str, state: &JobState) -> Result<()> {
        let value = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt {
            key: job.into(),
            source: e,
        })?;
        self.jobs.insert(job, value)?;
        Ok(())
    }

    /// What an `[[alert]]` remembered when last saved.
    pub fn alert_memory(&self, alert: &str) -> Result<Option<crate::record::AlertMemory>> {
        self.alerts
            .get(alert)?
            .map(|v| decode(alert.as_bytes(), &v))
            .transpose()
    }

    /// Replaces what an `[[alert]]` remembers.
    pub fn put_alert_memory(&self, alert: &str, memory: &crate::record::AlertMemory) -> Result<()> {
        let value = serde_json::to_vec(memory).map_err(|e| StoreError::Corrupt {
            key: alert.into(),
            source: e,
        })?;
        self.alerts.insert(alert, value)?;
        Ok(())
    }

    /// Writes and flushes a small record, to tell a healthy store from one
    /// on a full or read-only disk.
    pub fn probe_write(&self) -> Result<()> {
        self.db.open_tree("meta")?.insert(
            "health_probe",
            &chrono::Utc::now().timestamp_millis().to_be_bytes(),
        )?;
        self.db.flush()?;
        Ok(())
    }

    /// Every job the store has state or runs for.
    pub fn job_names(&self) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for item in self.jobs.iter() {
            let (k, _) = item?;
            names.insert(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(names.into_iter().collect())
    }

    /// Deletes a job's runs (and their logs) beyond the newest `keep` and
    /// those started before `cutoff`. Runs still going are kept.
    pub fn prune(&self, job: &str, keep: usize, cutoff: DateTime<Utc>) -> Result<usize> {
        let prefix = job_prefix(job);
        let mut seen = 0;
        let mut removed = 0;
        for item in self.job_runs.scan_prefix(&prefix).rev() {
            let (index_key, _) = item?;
            let run_key = &index_key[prefix.len()..];
            let Some(value) = self.runs.get(run_key)? else {
                self.job_runs.remove(&index_key)?;
                continue;
            };
            seen += 1;
            if self.running.contains_key(run_key)? {
                continue;
            }
            // Only the newest `keep` need reading (for their age); the
            // rest go whatever they hold.
            if seen <= keep && decode::<RunRecord>(run_key, &value)?.started >= cutoff {
                continue;
            }
            self.runs.remove(run_key)?;
            self.logs.remove(run_key)?;
            self.job_runs.remove(&index_key)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Keeps a system sample; samples older than `keep` are dropped.
    pub fn put_sample(
        &self,
        sample: &crate::record::SystemSample,
        keep: chrono::Duration,
    ) -> Result<()> {
        let key = sample.taken.timestamp().max(0).to_be_bytes();
        let value = serde_json::to_vec(sample).map_err(|e| StoreError::Corrupt {
            key: "sample".into(),
            source: e,
        })?;
        self.samples.insert(key, value)?;
        let cutoff = (sample.taken - keep).timestamp().max(0).to_be_bytes();
        for item in self.samples.range(..cutoff.to_vec()) {
            let (k, _) = item?;
            self.samples.remove(k)?;
        }
        Ok(())
    }

    /// System samples taken at or after `since`, oldest first.
    pub fn samples(&self, since: DateTime<Utc>) -> Result<Vec<crate::record::SystemSample>> {
        let from = since.timestamp().max(0).to_be_bytes();
        let mut out = Vec::new();
        for item in self.samples.range(from.to_vec()..) {
            let (k, v) = item?;
            let mut sample: crate::record::SystemSample = decode(&k, &v)?;
            // A disk's figures from before they were kept as `df` counts
            // would read as a jump in use: no trend across it.
            sample.disks.retain(|d| d.df_basis);
            out.push(sample);
        }
        Ok(out)
    }

    /// Reads, changes and writes a job's state in one step.
    pub fn update_job_state(&self, job: &str, f: impl FnOnce(&mut JobState)) -> Result<JobState> {
        let mut state = self.job_state(job)?.unwrap_or_default();
        f(&mut state);
        self.put_job_state(job, &state)?;
        Ok(state)
    }
}

/// One page of history for the web console: runs taken up before
/// `before` (a run id, exclusive) and `until`, newest first, filtered.
/// Its cost is bounded whatever the store holds: times are key ranges, a
/// job is its index, and at most `budget` records are examined; a page
/// that stops there says where to go on from.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub job: Option<String>,
    pub status: Option<RunStatus>,
    pub trigger: Option<crate::record::Trigger>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<String>,
    pub limit: usize,
    pub budget: usize,
}

/// What [`Store::history_page`] found.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub runs: Vec<RunRecord>,
    /// Run id to pass as `before` for the next page; none at the end.
    pub next: Option<String>,
    /// Records looked at.
    pub examined: usize,
    /// The page stopped at the budget before it was full: the search
    /// reached back only to this time.
    pub searched_to: Option<DateTime<Utc>>,
}

impl Store {
    /// A page of history; see [`PageQuery`].
    pub fn history_page(&self, q: &PageQuery) -> Result<HistoryPage> {
        let mut upper: [u8; 16] = [0xff; 16];
        if let Some(b) = &q.before {
            upper = upper.min(run_key(b));
        }
        if let Some(u) = q.until {
            let ms = u.timestamp_millis().max(0) as u64;
            upper = upper.min(Ulid::from_parts(ms, 0).0.to_be_bytes());
        }
        // Pre-filters on the stored JSON (serde writes `"status":"ok"`):
        // a record without the words is skipped undecoded; one with them
        // is decoded and checked properly.
        let status_words = q.status.map(|s| format!("\"status\":\"{s}\""));
        let trigger_words = q
            .trigger
            .and_then(|t| serde_json::to_string(&t).ok())
            .map(|t| format!("\"trigger\":{t}"));
        let has = |v: &[u8], words: &Option<String>| {
            words.as_ref().is_none_or(|w| {
                // std's substring search (and UTF-8 check) is compiled
                // optimised even in a debug build.
                std::str::from_utf8(v).map_or(true, |text| text.contains(w.as_str()))
            })
        };
        let mut page = HistoryPage::default();
        let limit = q.limit.max(1);
        let mut last_key: Option<[u8; 16]> = None;
        let mut consider = |key: &[u8], value: Option<sled::IVec>| -> Result<bool> {
            if let Some(since) = q.since
                && key_time(key) < since
            {
                return Ok(false);
            }
            if page.examined >= q.budget.max(limit) {
                page.searched_to = last_key.map(|k| key_time(&k));
                page.next = last_key.map(|k| key_id(&k));
                return Ok(false);
            }
            page.examined += 1;
            last_key = key.try_into().ok();
            let value = match value {
                Some(v) => Some(v),
                None => self.runs.get(key)?,
            };
            if let Some(v) = value
                && has(&v, &status_words)
                && has(&v, &trigger_words)
            {
                let rec: RunRecord = decode(key, &v)?;
                if q.status.is_none_or(|s| s == rec.status)
                    && q.trigger.is_none_or(|t| t == rec.trigger)
                {
                    page.runs.push(rec);
                    if page.runs.len() >= limit {
                        page.next = Some(key_id(key));
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        };
        match &q.job {
            Some(job) => {
                let prefix = job_prefix(job);
                let mut end = prefix.clone();
                end.extend_from_slice(&upper);
                for item in self.job_runs.range(prefix.clone()..end).rev() {
                    let (k, _) = item?;
                    if !consider(&k[prefix.len()..], None)? {
                        break;
                    }
                }
            }
            None => {
                for item in self.runs.range(..upper).rev() {
                    let (k, v) = item?;
                    if !consider(&k, Some(v))? {
                        break;
                    }
                }
            }
        }
        Ok(page)
    }
}

/// A new run id: a ULID, unique and ordered by creation time.
pub fn new_run_id() -> String {
    use std::sync::Mutex;
    static GEN: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GEN.locked();
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    generator
        .generate()
        .unwrap_or_else(|_| Ulid::new())
        .to_string()
}

/// Run ids are ULID strings; anything else maps to a key no run has, so a
/// mistyped id is simply not found.
fn run_key(id: &str) -> [u8; 16] {
    Ulid::from_string(id)
        .map(|u| u.0.to_be_bytes())
        .unwrap_or([0; 16])
}

/// A run key as the run's id, for messages.
fn key_id(key: &[u8]) -> String {
    let bytes: [u8; 16] = key.try_into().unwrap_or([0; 16]);
    Ulid(u128::from_be_bytes(bytes)).to_string()
}

fn key_time(key: &[u8]) -> DateTime<Utc> {
    let bytes: [u8; 16] = key.try_into().unwrap_or([0; 16]);
    let ms = Ulid(u128::from_be_bytes(bytes)).timestamp_ms();
    DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

fn job_prefix(job: &str) -> Vec<u8> {
    let mut k = job.as_bytes().to_vec();
    k.push(0);
    k
}

fn job_key(job: &str, run: &[u8; 16]) -> Vec<u8> {
    let mut k = job_prefix(job);
    k.extend_from_slice(run);
    k
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: match <[u8; 16]>::try_from(key) {
            Ok(b) => Ulid(u128::from_be_bytes(b)).to_string(),
            Err(_) => String::from_utf8_lossy(key).into_owned(),
        },
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Trigger;

    /// Opens a store this process had open a moment ago. sled drops its
    /// file lock from a background IO thread shortly after the last handle
    /// goes, so an immediate reopen in the same process can see it held.
    fn reopen(path: &Path) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(path) {
                Ok(s) => return s,
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("reopening {}: {e}", path.display()),
            }
        }
    }

    fn rec(job: &str, status: RunStatus) -> RunRecord {
        let now = Utc::now();
        let mut r = RunRecord::begin(&new_run_id(), job, "p", Trigger::Manual, now, now, false);
        r.status = status;
        r
    }

    /// The outbox takes finished runs only, hands them out by size, and
    /// a record it cannot read or that retention removed holds nothing
    /// back.
    #[test]
    fn the_outbox_holds_finished_runs_in_batches_bounded_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_run(&rec("before", RunStatus::Ok)).unwrap();
        s.enable_outbox();
        s.put_run(&rec("running", RunStatus::Running)).unwrap();
        let mut big = Vec::new();
        for _ in 0..3 {
            let mut r = rec("big", RunStatus::Ok);
            r.details = "x".repeat(10_000);
            s.put_run(&r).unwrap();
            big.push(r.id);
        }
        assert_eq!(s.outbox_len(), 3, "only finished runs, once a fleet is set");
        let batch = s.outbox_batch(10, 15_000).unwrap();
        assert_eq!(batch.len(), 1, "one large record fills the batch");
        assert_eq!(batch[0].id, big[0]);
        assert_eq!(s.outbox_batch(10, 1 << 20).unwrap().len(), 3);

        // A record that no longer decodes, and one retention removed.
        s.runs.insert(run_key(&big[0]), &b"{not json"[..]).unwrap();
        s.runs.remove(run_key(&big[1])).unwrap();
        let batch = s.outbox_batch(10, 1 << 20).unwrap();
        assert_eq!(
            batch.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            [big[2].as_str()]
        );
        assert_eq!(s.outbox_len(), 1);
        s.outbox_done(&[big[2].clone()]).unwrap();
        assert_eq!(s.outbox_len(), 0);

        // A crash between a finished run's outbox entry and its record:
        // the entry waits while the record says running, and recovery's
        // interrupted record goes.
        let r = rec("crashed", RunStatus::Running);
        s.put_run(&r).unwrap();
        s.outbox.insert(run_key(&r.id), &[]).unwrap();
        assert!(s.outbox_batch(10, 1 << 20).unwrap().is_empty());
        assert_eq!(s.outbox_len(), 1, "still waiting");
        s.recover_interrupted(Utc::now()).unwrap();
        // (with the run left `running` at the start of this test)
        let batch = s.outbox_batch(10, 1 << 20).unwrap();
        let crashed = batch.iter().find(|b| b.id == r.id).expect("sent now");
        assert_eq!(crashed.status, RunStatus::Interrupted);
    }

    #[test]
    fn history_is_newest_first_and_filtered() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let ids: Vec<String> = (0..5)
            .map(|i| {
                let r = rec(
                    if i % 2 == 0 { "a" } else { "b" },
                    if i == 4 {
                        RunStatus::Failed
                    } else {
                        RunStatus::Ok
                    },
                );
                s.put_run(&r).unwrap();
                r.id
            })
            .collect();
        let all = s.history(&HistoryQuery::default()).unwrap();
        assert_eq!(
            all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            ids.iter().rev().cloned().collect::<Vec<_>>()
        );
        let a = s
            .history(&HistoryQuery {
                job: Some("a".into()),
                limit: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            a.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            [ids[4].as_str(), ids[2].as_str()]
        );
        let failed = s
            .history(&HistoryQuery {
                status: Some(RunStatus::Failed),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert!(s.run("not-a-ulid").unwrap().is_none());
    }

    /// A run recorded `running` and then finished, and one recorded
    /// finished at once (a skipped slot), are each under their job once.
    #[test]
    fn a_run_is_indexed_under_its_job_however_it_was_first_written() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut ran = rec("a", RunStatus::Running);
        s.put_run(&ran).unwrap();
        ran.status = RunStatus::Ok;
        s.put_run(&ran).unwrap();
        let skipped = rec("a", RunStatus::Skipped);
        s.put_run(&skipped).unwrap();
        let of_a = s
            .history(&HistoryQuery {
                job: Some("a".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            of_a.iter()
                .map(|r| (r.id.as_str(), r.status))
                .collect::<Vec<_>>(),
            [
                (skipped.id.as_str(), RunStatus::Skipped),
                (ran.id.as_str(), RunStatus::Ok)
            ]
        );
        assert_eq!(s.job_runs.scan_prefix(job_prefix("a")).count(), 2);
        assert!(s.running.is_empty());
    }

    /// A narrow read: only the runs started since the cut, newest first,
    /// at most the limit, each decoded as the caller's own struct.
    #[test]
    fn runs_since_reads_the_newest_runs_as_the_callers_struct() {
        #[derive(serde::Deserialize)]
        struct Few {
            id: String,
            started: DateTime<Utc>,
        }
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let now = Utc::now();
        let cut = now - chrono::Duration::days(10);
        let mut ids = Vec::new();
        // (age of its key, age of its start)
        let ages = [
            (chrono::Duration::days(50), chrono::Duration::days(50)),
            (chrono::Duration::days(40), chrono::Duration::days(40)),
            // Taken up just inside the second of grace before the cut,
            // started after it: in.
            (
                chrono::Duration::days(10) + chrono::Duration::milliseconds(500),
                chrono::Duration::days(9),
            ),
            // Taken up after the cut but started (a record says) before:
            // out, though the scan reads it.
            (chrono::Duration::days(5), chrono::Duration::days(11)),
            (chrono::Duration::days(3), chrono::Duration::days(3)),
            (chrono::Duration::days(1), chrono::Duration::days(1)),
        ];
        for (key_age, start_age) in ages {
            let mut r = rec("a", RunStatus::Ok);
            // Keyed by when opsd took the run up, as a real run is.
            r.id = Ulid::from_datetime((now - key_age).into()).to_string();
            r.started = now - start_age;
            s.put_run(&r).unwrap();
            ids.push(r.id);
        }
        let got = s.runs_since(cut, 10, |r: &Few| r.started).unwrap();
        assert_eq!(
            got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            [ids[5].as_str(), ids[4].as_str(), ids[2].as_str()]
        );
        assert!(got.iter().all(|r| r.started >= cut));
        let got = s.runs_since(cut, 2, |r: &Few| r.started).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, ids[5]);
        assert!(
            s.runs_since(cut, 0, |r: &Few| r.started)
                .unwrap()
                .is_empty()
        );
    }

    /// The console's pages: newest first, filtered, continued from a run
    /// id, and stopped at the budget with a place to go on from.
    #[test]
    fn history_pages_follow_on_and_stop_at_their_budget() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut ids = Vec::new();
        for i in 0..30 {
            let mut r = rec(if i % 3 == 0 { "a" } else { "b" }, RunStatus::Ok);
            if i % 10 == 9 {
                r.status = RunStatus::Failed;
                r.trigger = Trigger::Schedule;
                // Words in the summary alone do not make a match.
            } else if i == 4 {
                r.summary = "\"status\":\"failed\"".into();
            }
            s.put_run(&r).unwrap();
            ids.push(r.id);
        }
        let ids_of = |p: &HistoryPage| p.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let first = s
            .history_page(&PageQuery {
                limit: 10,
                budget: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            ids_of(&first),
            ids[20..].iter().rev().cloned().collect::<Vec<_>>()
        );
        let second = s
            .history_page(&PageQuery {
                limit: 10,
                budget: 1000,
                before: first.next.clone(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            ids_of(&second),
            ids[10..20].iter().rev().cloned().collect::<Vec<_>>()
        );
        let failed = s
            .history_page(&PageQuery {
                status: Some(RunStatus::Failed),
                trigger: Some(Trigger::Schedule),
                limit: 10,
                budget: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            ids_of(&failed),
            [ids[29].clone(), ids[19].clone(), ids[9].clone()]
        );
        assert_eq!(failed.next, None);
        let a = s
            .history_page(&PageQuery {
                job: Some("a".into()),
                limit: 3,
                budget: 1000,
                before: Some(ids[27].clone()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            ids_of(&a),
            [ids[24].clone(), ids[21].clone(), ids[18].clone()]
        );
        // A budget of 12 records finds the failure at 29 and 19, and
        // stops, saying where to go on from.
        let bounded = s
            .history_page(&PageQuery {
                status: Some(RunStatus::Failed),
                limit: 10,
                budget: 12,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(bounded.runs.len(), 2);
        assert_eq!(bounded.examined, 12);
        assert_eq!(bounded.next.as_deref(), Some(ids[18].as_str()));
        assert!(bounded.searched_to.is_some());
    }

    #[test]
    fn prune_keeps_the_newest_and_the_recent() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let now = Utc::now();
        let mut ids = Vec::new();
        for age in [10, 9, 8, 3, 2, 1, 0] {
            let mut r = rec("a", RunStatus::Ok);
            r.started = now - chrono::Duration::days(age);
            s.put_log(&r.id, &[]).unwrap();
            s.put_run(&r).unwrap();
            ids.push(r.id);
        }
        s.put_run(&rec("b", RunStatus::Ok)).unwrap();
        // Keep 5, and nothing older than 5 days: the three oldest go.
        assert_eq!(s.prune("a", 5, now - chrono::Duration::days(5)).unwrap(), 3);
        let left: Vec<String> = s
            .history(&HistoryQuery {
                job: Some("a".into()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, ids[3..].iter().rev().cloned().collect::<Vec<_>>());
        assert!(s.log(&ids[0]).unwrap().is_none());
        // Keep 2: two more go; job b is untouched.
        assert_eq!(s.prune("a", 2, now - chrono::Duration::days(5)).unwrap(), 2);
        assert_eq!(s.history(&HistoryQuery::default()).unwrap().len(), 3);
    }

    #[test]
    fn a_version_1_store_gets_its_index_of_runs_in_progress() {
        let d = tempfile::tempdir().unwrap();
        let id = {
            let s = Store::open(d.path()).unwrap();
            let r = rec("a", RunStatus::Running);
            s.put_run(&r).unwrap();
            s.put_run(&rec("a", RunStatus::Ok)).unwrap();
            // As version 1 wrote it: no index.
            s.running.clear().unwrap();
            s.db.open_tree("meta")
                .unwrap()
                .insert("schema_version", &1u64.to_be_bytes())
                .unwrap();
            s.flush().unwrap();
            r.id
        };
        let s = reopen(d.path());
        let fixed = s.recover_interrupted(Utc::now()).unwrap();
        assert_eq!(fixed.iter().map(|r| &r.id).collect::<Vec<_>>(), [&id]);
        assert!(s.running.is_empty());
        let version =
            s.db.open_tree("meta")
                .unwrap()
                .get("schema_version")
                .unwrap();
        assert_eq!(version.as_deref(), Some(&SCHEMA_VERSION.to_be_bytes()[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_share_fsyncs_and_lose_nothing() {
        let d = tempfile::tempdir().unwrap();
        let ids = {
            let s = Store::open(d.path()).unwrap();
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let r = rec("a", RunStatus::Ok);
                    s.put_run(&r).unwrap();
                    s.flush_async().await.unwrap();
                    r.id
                }));
            }
            let mut ids = Vec::new();
            for t in tasks {
                ids.push(t.await.unwrap());
            }
            // Every request is covered by a finished flush.
            let done = *s.flushes.done.borrow();
            assert_eq!(done, 64);
            ids
        };
        let s = reopen(d.path());
        for id in ids {
            assert!(s.run(&id).unwrap().is_some(), "{id}");
        }
    }

    #[test]
    fn running_records_become_interrupted_on_reopen() {
        let d = tempfile::tempdir().unwrap();
        let id = {
            let s = Store::open(d.path()).unwrap();
            let r = rec("a", RunStatus::Running);
            s.put_run(&r).unwrap();
            s.flush().unwrap();
            r.id
        };
        let s = reopen(d.path());
        let fixed = s.recover_interrupted(Utc::now()).unwrap();
        assert_eq!(fixed.len(), 1);
        assert_eq!(s.run(&id).unwrap().unwrap().status, RunStatus::Interrupted);
    }

    #[test]
    fn a_second_opener_is_told_the_store_is_locked() {
        let d = tempfile::tempdir().unwrap();
        let _s = Store::open(d.path()).unwrap();
        // sled's lock is per process via flock; a second open in the same
        // process is refused the same way another process would be.
        match Store::open(d.path()) {
            Err(StoreError::Locked { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("a second open succeeded"),
        }
    }

    #[test]
    fn disk_figures_kept_on_the_raw_size_are_left_out_of_trends() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let disk = |df_basis| crate::record::DiskSample {
            mount_point: "/".into(),
            total_bytes: 100,
            available_bytes: 40,
            df_basis,
        };
        let old = r#"{"taken":"2026-11-30T08:00:00Z","cpu_percent":1.0,"memory_total_bytes":1,"memory_used_bytes":1,"disks":[{"mount_point":"/","total_bytes":100,"available_bytes":40}]}"#;
        let old: crate::record::SystemSample = serde_json::from_str(old).unwrap();
        assert!(!old.disks[0].df_basis, "a sample from before has no basis");
        s.put_sample(&old, chrono::Duration::days(400)).unwrap();
        let mut new = old.clone();
        new.taken += chrono::Duration::minutes(10);
        new.disks = vec![disk(true)];
        s.put_sample(&new, chrono::Duration::days(400)).unwrap();
        let kept = s.samples(old.taken).unwrap();
        assert_eq!(kept.len(), 2);
        assert!(kept[0].disks.is_empty(), "{kept:?}");
        assert_eq!(kept[1].disks, [disk(true)]);
    }
}
