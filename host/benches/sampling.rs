//! What watching the machine costs: one monitor sample (CPU, load,
//! memory, swap, every filesystem, network counters, plus WATCHED paths
//! for disk conditions), in wall time and CPU time, and the share of one
//! CPU that sampling every 15 s (the default interval) takes. Measured in
//! the same run against the alternative a cron job would use: fork/exec
//! of a shell script that reads the same figures with `df`, `free` and
//! /proc.
//!
//!     cargo bench -p opsd --bench sampling
//!     SAMPLES=2000 WATCHED=8 cargo bench -p opsd --bench sampling

use opsd::monitor::Sampler;
use std::process::Command;
use std::time::{Duration, Instant};

/// CPU time (user + system) of `who`: this process (`RUSAGE_SELF`) or
/// its waited-for children (`RUSAGE_CHILDREN`).
fn cpu_time(who: libc::c_int) -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage(2) writes the struct before it is read, when it
    // returns 0.
    let u = unsafe {
        if libc::getrusage(who, u.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        u.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let samples = env_or("SAMPLES", 500);
    let watched: Vec<String> = [
        "/", "/tmp", "/var", "/usr", "/home", "/opt", "/srv", "/boot",
    ]
    .iter()
    .take(env_or("WATCHED", 2))
    .map(|s| s.to_string())
    .collect();
    let mut sampler = Sampler::new();
    std::thread::sleep(Duration::from_millis(250));
    let mut walls = Vec::with_capacity(samples);
    let cpu0 = cpu_time(libc::RUSAGE_SELF);
    for _ in 0..samples {
        let t = Instant::now();
        let s = sampler.sample(chrono::Utc::now(), &watched, Vec::new());
        walls.push(t.elapsed());
        std::hint::black_box(s);
    }
    let cpu = (cpu_time(libc::RUSAGE_SELF) - cpu0).as_secs_f64() * 1e3 / samples as f64;
    let disks = sampler
        .sample(chrono::Utc::now(), &watched, Vec::new())
        .disks
        .len();

    // The cron alternative: a script reading the same figures.
    let script = "cat /proc/loadavg /proc/stat /proc/net/dev >/dev/null; free -b >/dev/null; df -P >/dev/null";
    let runs = (samples / 5).max(20);
    let mut shell = Vec::with_capacity(runs);
    let child0 = cpu_time(libc::RUSAGE_CHILDREN);
    for _ in 0..runs {
        let t = Instant::now();
        let ok = Command::new("sh")
            .args(["-c", script])
            .status()
            .is_ok_and(|s| s.success());
        shell.push(t.elapsed());
        assert!(ok, "the shell alternative failed: {script}");
    }
    let shell_cpu = (cpu_time(libc::RUSAGE_CHILDREN) - child0).as_secs_f64() * 1e3 / runs as f64;

    let (p50, p99) = (percentile(&mut walls, 0.5), percentile(&mut walls, 0.99));
    let (s50, s99) = (percentile(&mut shell, 0.5), percentile(&mut shell, 0.99));
    println!(
        "monitor sample ({disks} filesystems, {} watched paths), {samples} samples:",
        watched.len()
    );
    println!("  wall p50 {p50:.3} ms  p99 {p99:.3} ms;  CPU {cpu:.3} ms a sample");
    println!(
        "  every 15 s: {:.4} % of one CPU; every 1 s: {:.3} %",
        cpu / 15_000.0 * 100.0,
        cpu / 1_000.0 * 100.0
    );
    println!("shell script (df, free, /proc), {runs} runs:");
    println!("  wall p50 {s50:.3} ms  p99 {s99:.3} ms;  CPU {shell_cpu:.3} ms a run");
    println!(
        "ratio opsd/shell: wall p50 {:.2}x, CPU {:.2}x",
        p50 / s50,
        cpu / shell_cpu.max(1e-9)
    );
}
