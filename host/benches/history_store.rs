//! The history store at scale: write N run records (default 1,000,000,
//! 20 jobs, spread over the last 60 days), then measure what an operator
//! waits for: `opsd history --job J --limit 50` and `opsd report --since
//! 30d`, as processes against that store, and the bytes each record takes
//! on disk.
//!
//!     cargo bench -p opsd --bench history_store
//!     RECORDS=100000 cargo bench -p opsd --bench history_store
//!     STORE_DIR=/tmp/h1m cargo bench -p opsd --bench history_store
//!
//! `STORE_DIR` keeps the store (and its `opsd.toml`) there, and a later
//! run with the same `RECORDS` measures it again without writing it: for
//! profiling a command against it by hand.
//!
//! The floor under any such command while sled holds the history (sled
//! alone opening N keys, with and without an index) is measured by
//! `bench/store-probe`, beside redb.

#[path = "common/spread.rs"]
mod spread;

use chrono::{Duration as Span, Utc};
use opsd::record::{Metric, PluginLoad, RunRecord, RunStatus, Trigger};
use opsd::store::{HistoryQuery, Store};
use std::process::Command;
use std::time::{Duration, Instant};

fn dir_bytes(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Wall time of `opsd ARGS` against the store, `times` runs, median.
fn cli(config: &std::path::Path, args: &[&str], times: usize) -> anyhow::Result<Duration> {
    let mut v = Vec::new();
    for _ in 0..times {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_opsd"))
            .arg("--config")
            .arg(config)
            .args(args)
            .output()?;
        v.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "opsd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(median(v))
}

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let jobs = 20u64;
    let temp = tempfile::tempdir()?;
    let root = match std::env::var_os("STORE_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => temp.path().to_path_buf(),
    };
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let config = root.join("opsd.toml");
    let written = root.join(format!("written-{n}"));
    let mut text = String::from("data_dir = \"data\"\n\n");
    for j in 0..jobs {
        text.push_str(&format!(
            "[[job]]\nname = \"job-{j}\"\nplugin = \"log-rotate\"\nschedule = \"@yearly\"\n[job.config]\npaths = [\"/logs/*.log\"]\n\n"
        ));
    }
    std::fs::write(&config, text)?;

    let store = Store::open(&data)?;
    let now = Utc::now();
    let t = Instant::now();
    let already = written.exists();
    for i in (0..n).filter(|_| !already) {
        let (at, id) = spread::run_at(now, i, n);
        let job = format!("job-{}", i % jobs);
        let mut rec = RunRecord::begin(&id, &job, "log-rotate", Trigger::Schedule, at, at, false);
        let failed = i % 20 == 0;
        rec.status = if failed {
            RunStatus::Failed
        } else {
            RunStatus::Ok
        };
        rec.finished = Some(at + Span::milliseconds(120));
        rec.duration_ms = Some(120);
        rec.plugin_version = "0.1.0".into();
        rec.plugin_sha256 =
            "3cfd8b32676c735060fb335b7757d65f68fc4f4e9f67f6e3434fbebd8ca4a426".into();
        rec.summary = "rotated 3 of 3 logs, 12.4 MiB compressed to 1.9 MiB".into();
        if failed {
            rec.error = Some("/logs/app.log: permission denied (is the grant read-write?)".into());
        }
        rec.metrics = vec![
            Metric {
                name: "logs_rotated".into(),
                value: 3.0,
                unit: None,
            },
            Metric {
                name: "bytes_in".into(),
                value: 13_002_342.0,
                unit: Some("bytes".into()),
            },
            Metric {
                name: "bytes_out".into(),
                value: 1_992_113.0,
                unit: Some("bytes".into()),
            },
        ];
        rec.plugin_load = Some(PluginLoad {
            source: opsd::record::LoadSource::Memory,
            ms: 0.0,
        });
        store.put_run(&rec)?;
    }
    store.flush()?;
    std::fs::write(&written, b"")?;
    let write = t.elapsed();
    let q = HistoryQuery {
        job: Some("job-7".into()),
        limit: Some(50),
        ..HistoryQuery::default()
    };
    let mut in_process = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let got = store.history(&q)?;
        in_process.push(t.elapsed());
        anyhow::ensure!(got.len() == 50);
    }
    drop(store);
    let bytes = dir_bytes(&data.join("store"));
    // What every command without a daemon pays first: sled's open.
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let s = Store::open(&data)?;
        opens.push(t.elapsed());
        drop(s);
    }

    let history = cli(
        &config,
        &["history", "--job", "job-7", "--limit", "50", "--json"],
        10,
    )?;
    let report = cli(
        &config,
        &["report", "--since", "30d", "--format", "json"],
        3,
    )?;
    let baseline = cli(&config, &["schedule", "list", "--json"], 10)?;

    println!("{n} run records, {jobs} jobs, over 60 days");
    if already {
        println!("write:   the store in STORE_DIR was written by an earlier run");
    } else {
        println!(
            "write:   {:.1} s, {:.0} records/s (put_run each, one flush at the end)",
            write.as_secs_f64(),
            n as f64 / write.as_secs_f64()
        );
    }
    println!(
        "disk:    {:.1} MiB, {:.0} bytes/record",
        bytes as f64 / 1048576.0,
        bytes as f64 / n as f64
    );
    println!(
        "history --job J --limit 50: in process {:.2} ms, `opsd history` {:.0} ms",
        ms(median(in_process)),
        ms(history)
    );
    println!("report --since 30d: `opsd report` {:.0} ms", ms(report));
    println!(
        "Store::open (sled's open: recovery and its page table), in process: {:.0} ms",
        ms(median(opens))
    );
    println!(
        "for scale, `opsd schedule list` (opens the store, no history): {:.0} ms",
        ms(baseline)
    );
    Ok(())
}
