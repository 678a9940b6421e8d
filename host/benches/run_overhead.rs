//! Per-run overhead: what opsd pays to run a trivial plugin (find it,
//! instantiate it in a fresh store, call `run`, write the run record and
//! its log, durably), with the compiled component already in memory, as a
//! daemon runs scheduled jobs; beside fork/exec of `/bin/sh -c true`, the
//! least a cron + shell setup pays per job. Both measured in this process,
//! one after the other; opsd twice, with instances from a pool (a daemon
//! with `OPSD_INSTANCE_POOL=on`) and mapped per run (the default).
//!
//!     cargo bench -p opsd --bench run_overhead            # 2000 runs each
//!     RUNS=10000 cargo bench -p opsd --bench run_overhead
//!     ONLY=opsd perf record -g target/release/deps/run_overhead-*   # profile
//!     HISTORY=1000000 cargo bench -p opsd --bench run_overhead   # on a full store
//!
//! `HISTORY=N` first writes N finished runs (20 jobs, over the last 60
//! days) into each store, to show whether a run costs more as the history
//! grows.

#[path = "common/spread.rs"]
mod spread;

use opsd::clock::SystemClock;
use opsd::config::Config;
use opsd::ops::{Ops, Start};
use opsd::record::{RunStatus, Trigger};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{name:<44} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
    (p50, p99)
}

/// A store with the trivial plugin as job `trivial`, in its own directory.
fn trivial_setup(dir: &std::path::Path) -> anyhow::Result<Config> {
    std::fs::create_dir_all(dir.join("plugins"))?;
    let guest = opsd_test_guests::path("opsd-test-hostile");
    std::fs::copy(&guest, dir.join("plugins/trivial.wasm"))?;
    let config_path = dir.join("opsd.toml");
    std::fs::write(
        &config_path,
        "data_dir = \"data\"\nplugin_dir = \"plugins\"\n\n[[job]]\nname = \"trivial\"\nplugin = \"test-hostile\"\nschedule = \"@yearly\"\n[job.config]\naction = \"ok\"\n",
    )?;
    Ok(Config::load(&config_path)?)
}

/// Writes `n` finished runs of 20 jobs, oldest first over the last 60
/// days, as a daemon would have left them, with one flush at the end.
fn prefill(store: &opsd::store::Store, n: u64) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    for i in 0..n {
        let (at, id) = spread::run_at(now, i, n);
        let job = if i % 20 == 0 {
            "trivial".to_owned()
        } else {
            format!("job-{}", i % 20)
        };
        let mut rec = opsd::record::RunRecord::begin(
            &id,
            &job,
            "test-hostile",
            Trigger::Schedule,
            at,
            at,
            false,
        );
        rec.status = RunStatus::Ok;
        rec.finished = Some(at + chrono::Duration::milliseconds(1));
        rec.duration_ms = Some(1);
        rec.summary = "ok".into();
        store.put_run(&rec)?;
    }
    store.flush()?;
    Ok(())
}

/// The size of the history `HISTORY` asks for (0 by default).
fn history_size() -> u64 {
    std::env::var("HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `runs` runs of `trivial` one after another, after a warm-up.
async fn run_trivial(ops: &Ops, runs: usize) -> anyhow::Result<Vec<Duration>> {
    // The first run compiles the component; a few more warm the caches.
    for _ in 0..20 {
        let rec = ops
            .run_job("trivial", Start::new(Trigger::Schedule, chrono::Utc::now()))
            .await?;
        anyhow::ensure!(rec.status == RunStatus::Ok, "warm-up run: {:?}", rec.error);
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let rec = ops
            .run_job("trivial", Start::new(Trigger::Schedule, chrono::Utc::now()))
            .await?;
        samples.push(t.elapsed());
        anyhow::ensure!(rec.status == RunStatus::Ok, "run: {:?}", rec.error);
    }
    Ok(samples)
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let pooled_dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Instances from the pool a daemon reserves at start with
    // OPSD_INSTANCE_POOL=on.
    let ops = Arc::new(Ops::open_for_daemon(
        trivial_setup(pooled_dir.path())?,
        Arc::new(SystemClock),
        true,
    )?);

    let history = history_size();
    prefill(ops.store(), history)?;
    println!(
        "{runs} runs each, after warming up, on a store holding {history} earlier runs; {} CPUs",
        std::thread::available_parallelism()?
    );
    let opsd = rt.block_on(run_trivial(&ops, runs))?;
    if std::env::var("ONLY").as_deref() == Ok("opsd") {
        summary("opsd: instantiate + run + durable history", opsd);
        return Ok(());
    }
    // As a command and (by default) the daemon run one: each instance's
    // memory and stack mapped for the run and unmapped after it.
    let on_demand_dir = tempfile::tempdir()?;
    let on_demand = {
        let ops = Ops::open(trivial_setup(on_demand_dir.path())?, Arc::new(SystemClock))?;
        prefill(ops.store(), history)?;
        rt.block_on(run_trivial(&ops, runs))?
    };
    // The floor under a run: its record written and synced before and
    // after, as `run_job` does, with nothing run between.
    let floor = rt.block_on(async {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs {
            let t = Instant::now();
            let id = format!("floor-{i}");
            let mut rec = opsd::record::RunRecord::begin(
                &id,
                "trivial",
                "test-hostile",
                Trigger::Schedule,
                chrono::Utc::now(),
                chrono::Utc::now(),
                false,
            );
            ops.store().put_run(&rec)?;
            ops.store().flush_async().await?;
            rec.status = RunStatus::Ok;
            ops.store().put_run(&rec)?;
            ops.store().flush_async().await?;
            samples.push(t.elapsed());
        }
        anyhow::Ok(samples)
    })?;
    let mut shell = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()?;
        shell.push(t.elapsed());
        anyhow::ensure!(status.success());
    }
    let (o50, o99) = summary("opsd, pooled: instantiate + run + durable history", opsd);
    let (d50, d99) = summary("the same, instances mapped per run (default)", on_demand);
    summary("of which the floor: two record writes + syncs", floor);
    let (s50, s99) = summary("fork/exec /bin/sh -c true", shell);
    println!(
        "ratio opsd/shell: pooled p50 {:.2}x, p99 {:.2}x; mapped per run p50 {:.2}x, p99 {:.2}x",
        o50.as_secs_f64() / s50.as_secs_f64(),
        o99.as_secs_f64() / s99.as_secs_f64(),
        d50.as_secs_f64() / s50.as_secs_f64(),
        d99.as_secs_f64() / s99.as_secs_f64()
    );
    Ok(())
}
