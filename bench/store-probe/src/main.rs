//! sled against redb for opsd's history: N runs (sequential 16-byte keys,
//! as run ids are, with 600-byte records) and a per-job index (job name +
//! run key, 20 jobs); and, as the floor under any command while sled holds
//! the history, sled with the runs alone (no index, no other tree).
//! Measured, each open from a fresh process:
//!
//! - open: what every command without a daemon pays first;
//! - open + the newest 50 runs of one job (`opsd history --job J --limit
//!   50`); without an index, the newest 50 runs of any job;
//! - one run written durably on its own, p50 / p99 of 2,000 (a run writes
//!   its record twice); sled's `flush` is its durability point, redb's
//!   commit with its default `Durability::Immediate`.
//!
//! `cargo run --release --manifest-path bench/store-probe/Cargo.toml -- DIR`
//! (`RUNS=100000` for fewer; DIR keeps both databases for a later run).

use redb::TableDefinition;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const JOBS: u64 = 20;
const RECORD: [u8; 600] = [b'x'; 600];
const REDB_RUNS: TableDefinition<u128, &[u8]> = TableDefinition::new("runs");
const REDB_JOB_RUNS: TableDefinition<(&str, u128), ()> = TableDefinition::new("job_runs");

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn key(i: u64) -> u128 {
    (1u128 << 100) + u128::from(i) * 1_000_003
}

fn job(i: u64) -> String {
    format!("job-{}", i % JOBS)
}

fn sled_index_key(job: &str, key: u128) -> Vec<u8> {
    let mut k = job.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&key.to_be_bytes());
    k
}

fn sled_write(dir: &Path, n: u64, indexed: bool) -> Result<()> {
    let db = sled::open(dir)?;
    let runs = db.open_tree("runs")?;
    let index = if indexed {
        Some(db.open_tree("job_runs")?)
    } else {
        None
    };
    for i in 0..n {
        runs.insert(key(i).to_be_bytes(), &RECORD[..])?;
        if let Some(index) = &index {
            index.insert(sled_index_key(&job(i), key(i)), &[])?;
        }
    }
    db.flush()?;
    Ok(())
}

fn redb_write(path: &Path, n: u64) -> Result<()> {
    let db = redb::Database::create(path)?;
    let mut i = 0;
    while i < n {
        let tx = db.begin_write()?;
        {
            let mut runs = tx.open_table(REDB_RUNS)?;
            let mut index = tx.open_table(REDB_JOB_RUNS)?;
            for _ in 0..10_000.min(n - i) {
                runs.insert(key(i), &RECORD[..])?;
                index.insert((job(i).as_str(), key(i)), ())?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// In the fresh process: open, then the newest 50 runs of job-7; prints
/// both times in microseconds.
fn open_and_query(engine: &str, path: &Path) -> Result<(u128, u128)> {
    let t = Instant::now();
    let mut bytes = 0;
    let opened;
    if engine == "sled" {
        let db = sled::open(path)?;
        let (runs, index) = (db.open_tree("runs")?, db.open_tree("job_runs")?);
        opened = t.elapsed();
        for item in index.scan_prefix(b"job-7\0").rev().take(50) {
            let (k, _) = item?;
            bytes += runs.get(&k[6..])?.map_or(0, |v| v.len());
        }
    } else if engine == "sled-bare" {
        let db = sled::open(path)?;
        let runs = db.open_tree("runs")?;
        opened = t.elapsed();
        for item in runs.iter().rev().take(50) {
            bytes += item?.1.len();
        }
    } else {
        let db = redb::Database::open(path)?;
        opened = t.elapsed();
        let tx = db.begin_read()?;
        let (runs, index) = (tx.open_table(REDB_RUNS)?, tx.open_table(REDB_JOB_RUNS)?);
        for item in index
            .range(("job-7", 0)..("job-7", u128::MAX))?
            .rev()
            .take(50)
        {
            let (k, _) = item?;
            bytes += runs.get(k.value().1)?.map_or(0, |v| v.value().len());
        }
    }
    if bytes != 50 * RECORD.len() {
        return Err(format!("{engine}: read {bytes} bytes, not 50 records").into());
    }
    Ok((opened.as_micros(), t.elapsed().as_micros()))
}

/// Median open and open + query over five fresh processes, after one that
/// is not counted (sled's first open after a write replays its log).
fn fresh_opens(engine: &str, path: &Path) -> Result<(f64, f64)> {
    let mut open = Vec::new();
    let mut query = Vec::new();
    for _ in 0..6 {
        let out = Command::new(std::env::current_exe()?)
            .args(["--open", engine])
            .arg(path)
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        let text = String::from_utf8(out.stdout)?;
        let mut words = text.split_whitespace();
        open.push(words.next().ok_or("no open time")?.parse::<f64>()? / 1e3);
        query.push(words.next().ok_or("no query time")?.parse::<f64>()? / 1e3);
    }
    Ok((median(&open[1..]), median(&query[1..])))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// p50 and p99 of 2,000 runs each written and made durable on its own.
fn durable_writes(engine: &str, dir: &Path) -> Result<(f64, f64)> {
    let mut took = Vec::new();
    if engine.starts_with("sled") {
        let db = sled::open(dir)?;
        let runs = db.open_tree("runs")?;
        let index = if engine == "sled" {
            Some(db.open_tree("job_runs")?)
        } else {
            None
        };
        for i in 0..2000 {
            let t = Instant::now();
            runs.insert(key(i).to_be_bytes(), &RECORD[..])?;
            if let Some(index) = &index {
                index.insert(sled_index_key("job-7", key(i)), &[])?;
            }
            db.flush()?;
            took.push(t.elapsed());
        }
    } else {
        let db = redb::Database::create(dir.join("db.redb"))?;
        for i in 0..2000 {
            let t = Instant::now();
            let tx = db.begin_write()?;
            {
                tx.open_table(REDB_RUNS)?.insert(key(i), &RECORD[..])?;
                tx.open_table(REDB_JOB_RUNS)?
                    .insert(("job-7", key(i)), ())?;
            }
            tx.commit()?;
            took.push(t.elapsed());
        }
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((ms(took[1000]), ms(took[1980])))
}

fn dir_bytes(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| dir_bytes(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--open") {
        let (open, query) = open_and_query(&args[2], Path::new(&args[3]))?;
        println!("{open} {query}");
        // As an opsd command leaves it: to the exit.
        std::process::exit(0);
    }
    let root = Path::new(args.get(1).ok_or("usage: store-probe DIR")?);
    let n: u64 = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    std::fs::create_dir_all(root)?;
    let (sled_dir, bare_dir, redb_file) = (
        root.join(format!("sled-{n}")),
        root.join(format!("sled-bare-{n}")),
        root.join(format!("redb-{n}.redb")),
    );
    for (dir, indexed) in [(&sled_dir, true), (&bare_dir, false)] {
        if !dir.join("written").exists() {
            let _ = std::fs::remove_dir_all(dir);
            sled_write(dir, n, indexed)?;
            std::fs::write(dir.join("written"), b"")?;
        }
    }
    if !root.join(format!("redb-{n}.written")).exists() {
        let _ = std::fs::remove_file(&redb_file);
        redb_write(&redb_file, n)?;
        std::fs::write(root.join(format!("redb-{n}.written")), b"")?;
    }
    println!(
        "{n} runs of {JOBS} jobs, a 600-byte record each, and a per-job index (sled-bare: none)"
    );
    for (engine, path) in [
        ("sled", &sled_dir),
        ("sled-bare", &bare_dir),
        ("redb", &redb_file),
    ] {
        let (open, query) = fresh_opens(engine, path)?;
        let scratch = root.join(format!("{engine}-durable"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let (p50, p99) = durable_writes(engine, &scratch)?;
        std::fs::remove_dir_all(&scratch)?;
        let read = if engine == "sled-bare" {
            "newest 50 runs"
        } else {
            "newest 50 of a job"
        };
        println!(
            "{engine}: open {open:.1} ms, open + {read} {query:.1} ms (fresh process, median of 5); \
             one run written durably p50 {p50:.3} ms, p99 {p99:.3} ms; on disk {:.0} MiB",
            dir_bytes(path) as f64 / 1048576.0
        );
    }
    Ok(())
}
