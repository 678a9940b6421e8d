//! What confinement adds to one exec: `process.run` of `/usr/bin/true`
//! as a plugin's exec grant runs it (pids cgroup, PID/mount/network
//! namespaces, no capabilities, Landlock, the seccomp supervisor), beside
//! a plain fork/exec of the same program from the same process, one after
//! the other.
//!
//!     cargo bench -p opsd --bench exec_confinement            # 1000 each
//!     RUNS=5000 cargo bench -p opsd --bench exec_confinement

use opsd::bindings::opsd::plugin::process::{Command, Input, Output};
use opsd::config::Config;
use opsd::grants::Violations;
use opsd::grants::process::{ProcessContext, run};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{name:<48} p50 {:>7.3} ms   p99 {:>7.3} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    (p50, p99)
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("opsd.toml");
    std::fs::write(
        &config_path,
        "data_dir = \"data\"\n\n[[job]]\nname = \"t\"\nplugin = \"p\"\nschedule = \"@yearly\"\n[job.grants]\nexec = [\"/usr/bin/true\"]\n",
    )?;
    let config = Config::load(&config_path)?;
    let grants = config.jobs[0].grants.clone();
    let idle = dir.path().join("idle");
    std::fs::create_dir_all(&idle)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let violations = Violations::default();
    let note = |_: &str| {};
    let ctx = ProcessContext {
        grants: &grants,
        violations: &violations,
        deadline: Instant::now() + Duration::from_secs(3600),
        idle_dir: &idle,
        notes: &note,
        file_size_cap: None,
        quota_room: None,
    };
    let command = || Command {
        program: "/usr/bin/true".into(),
        args: Vec::new(),
        env: Vec::new(),
        cwd: None,
        stdin: Input::None,
        stdout: Output::Capture,
        stderr: Output::Capture,
        timeout_ms: None,
    };
    println!(
        "{runs} execs each, after warming up; {} CPUs",
        std::thread::available_parallelism()?
    );
    let (plain, confined) = rt.block_on(async {
        for _ in 0..20 {
            let exit = run(&ctx, command())
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            anyhow::ensure!(exit.code == Some(0), "warm-up exec: {exit:?}");
            tokio::process::Command::new("/usr/bin/true")
                .status()
                .await?;
        }
        let mut plain = Vec::with_capacity(runs);
        let mut confined = Vec::with_capacity(runs);
        // Interleaved, so both see the same machine.
        for _ in 0..runs {
            let t = Instant::now();
            let status = tokio::process::Command::new("/usr/bin/true")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .output()
                .await?;
            plain.push(t.elapsed());
            anyhow::ensure!(status.status.success());
            let t = Instant::now();
            let exit = run(&ctx, command())
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            confined.push(t.elapsed());
            anyhow::ensure!(exit.code == Some(0), "exec: {exit:?}");
        }
        anyhow::ensure!(violations.take().is_empty(), "a violation in the bench");
        Ok((plain, confined))
    })?;
    let (p50, p99) = summary("fork/exec /usr/bin/true (tokio, piped output)", plain);
    let (c50, c99) = summary("process.run /usr/bin/true, confined", confined);
    println!(
        "confinement adds: p50 {:.3} ms, p99 {:.3} ms ({:.2}x, {:.2}x)",
        (c50.as_secs_f64() - p50.as_secs_f64()) * 1e3,
        (c99.as_secs_f64() - p99.as_secs_f64()) * 1e3,
        c50.as_secs_f64() / p50.as_secs_f64(),
        c99.as_secs_f64() / p99.as_secs_f64()
    );
    Ok(())
}
