//! A plugin that does what its config's `action` says, including things a
//! plugin must not be able to do. Tests use it to show containment.

use opsd_sdk::{Command, Context, ContextExt, Description, Outcome, Plugin, PluginError};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    action: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    seconds: u64,
    /// For `exec`: send stdout to this guest file instead of capturing it.
    #[serde(default)]
    stdout: Option<String>,
    /// For `exec`: send stderr to this guest file (appended to).
    #[serde(default)]
    stderr: Option<String>,
    /// `host:port` for `tcp` and `http`.
    #[serde(default)]
    address: String,
}

struct Hostile;

impl Plugin for Hostile {
    fn describe() -> Description {
        Description::new(
            "test-hostile",
            env!("CARGO_PKG_VERSION"),
            "Misbehaves on request (tests only)",
        )
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        match cfg.action.as_str() {
            "ok" => Ok(Outcome::ok("fine")),
            // Logs and reports progress in steps, `seconds` apart (as
            // milliseconds x 100, for quick tests).
            "chatty" => {
                let steps = 5u64;
                for i in 1..=steps {
                    opsd_sdk::info!("step {i} of {steps}");
                    opsd_sdk::progress(i, Some(steps), "stepping");
                    std::thread::sleep(std::time::Duration::from_millis(cfg.seconds * 100));
                }
                Ok(Outcome::ok(format!("{steps} steps")))
            }
            "fail" => Ok(Outcome::failed("failed on purpose")),
            // Fails while `path` exists: a switch a test flips from outside.
            "fail-if" => match std::fs::metadata(&cfg.path) {
                Ok(_) => Ok(Outcome::failed(format!("{} exists", cfg.path))),
                Err(_) => Ok(Outcome::ok(format!("{} is gone", cfg.path))),
            },
            // Writes where it is told; outside a grant this fails and the
            // error is passed back as the plugin's own.
            "write" => {
                std::fs::write(&cfg.path, b"hostile\n")
                    .map_err(|e| PluginError::io(format!("writing {}", cfg.path), &e))?;
                Ok(Outcome::ok(format!("wrote {}", cfg.path)))
            }
            // Runs a program and swallows any denial, returning ok: the
            // host must still fail the run.
            "exec-swallow" => {
                let r = Command::new(&cfg.program).args(cfg.args.clone()).run();
                opsd_sdk::info!("exec result: {r:?}");
                Ok(Outcome::ok("pretended all was well"))
            }
            "exec" => {
                let mut cmd = Command::new(&cfg.program).args(cfg.args.clone());
                if cfg.seconds > 0 {
                    cmd = cmd.timeout_ms(cfg.seconds * 1000);
                }
                if let Some(file) = &cfg.stdout {
                    cmd = cmd.stdout(opsd_sdk::Output::File(file.clone()));
                }
                if let Some(file) = &cfg.stderr {
                    cmd = cmd.stderr(opsd_sdk::Output::Append(file.clone()));
                }
                match cmd.run() {
                    Ok(exit) if exit.success() => Ok(Outcome::ok(
                        String::from_utf8_lossy(&exit.stdout).trim().to_string(),
                    )),
                    Ok(exit) => Ok(Outcome::failed(format!(
                        "exit {:?}: {}",
                        exit.code,
                        exit.stderr_text()
                    ))),
                    Err(e) => Err(PluginError::other("exec", format!("{e:?}"))),
                }
            }
            // Runs a program and reports how much of its output came back.
            "exec-count" => match Command::new(&cfg.program).args(cfg.args.clone()).run() {
                Ok(exit) => Ok(Outcome::ok(format!(
                    "kept {} bytes of stdout, truncated {}",
                    exit.stdout.len(),
                    exit.truncated
                ))),
                Err(e) => Err(PluginError::other("exec", format!("{e:?}"))),
            },
            // Reports what the daemon's monitor measures (contract 0.1.2).
            "monitor" => {
                let m = opsd_sdk::system::monitor();
                let probes: Vec<String> = m
                    .probes
                    .iter()
                    .map(|(url, s)| {
                        format!(
                            "{url}={}",
                            s.map_or("failed".into(), |s| format!("{s:.3}s"))
                        )
                    })
                    .collect();
                Ok(Outcome::ok(format!(
                    "network errors {} total, {:?} in the last hour; probes {}",
                    m.network_errors_total,
                    m.network_errors_last_hour,
                    probes.join(" ")
                )))
            }
            // Deletes `path`: a cleanup job.
            "remove" => {
                let len = std::fs::metadata(&cfg.path).map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(&cfg.path)
                    .map_err(|e| PluginError::io(format!("removing {}", cfg.path), &e))?;
                Ok(Outcome::ok(format!("removed {} ({len} bytes)", cfg.path)))
            }
            // Writes `seconds` MiB to `path`, a MiB at a time.
            "fill" => {
                use std::io::Write;
                let mut f = std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                let chunk = vec![0x5au8; 1 << 20];
                for _ in 0..cfg.seconds {
                    f.write_all(&chunk)
                        .map_err(|e| PluginError::io(format!("writing {}", cfg.path), &e))?;
                }
                Ok(Outcome::ok(format!("wrote {} MiB", cfg.seconds)))
            }
            // Grows a file to `seconds` MiB without writing it (a sparse
            // file's length counts against a quota as it is measured).
            "grow" => {
                let f = std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                f.set_len(cfg.seconds << 20)
                    .map_err(|e| PluginError::io(format!("growing {}", cfg.path), &e))?;
                Ok(Outcome::ok(format!("grew to {} MiB", cfg.seconds)))
            }
            // One byte `seconds` MiB into a new file.
            "write-far" => {
                use std::io::{Seek, SeekFrom, Write};
                let mut f = std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                f.seek(SeekFrom::Start(cfg.seconds << 20))
                    .and_then(|_| f.write_all(b"x"))
                    .map_err(|e| PluginError::io(format!("writing {}", cfg.path), &e))?;
                Ok(Outcome::ok(format!("wrote at {} MiB", cfg.seconds)))
            }
            // Opens `path`, renames it to `program` (into a grant with a
            // quota), then writes `seconds` MiB through the handle it kept.
            "rename-then-fill" => {
                use std::io::Write;
                let mut f = std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                std::fs::rename(&cfg.path, &cfg.program)
                    .map_err(|e| PluginError::io(format!("renaming {}", cfg.path), &e))?;
                let chunk = vec![0x5au8; 1 << 20];
                for _ in 0..cfg.seconds {
                    f.write_all(&chunk)
                        .map_err(|e| PluginError::io(format!("writing {}", cfg.program), &e))?;
                }
                Ok(Outcome::ok(format!("wrote {} MiB", cfg.seconds)))
            }
            // Writes `seconds` MiB into `path` (a grant without a quota),
            // then moves it to `program` (into one with a quota) whole: by
            // rename, or by a hard link when `args` is ["link"].
            "move-in" => {
                fill(&cfg.path, cfg.seconds)?;
                let r = if cfg.args.first().map(String::as_str) == Some("link") {
                    std::fs::hard_link(&cfg.path, &cfg.program)
                } else {
                    std::fs::rename(&cfg.path, &cfg.program)
                };
                r.map_err(|e| PluginError::io(format!("moving to {}", cfg.program), &e))?;
                Ok(Outcome::ok(format!("moved {} MiB in", cfg.seconds)))
            }
            // Opens `path`/f.bin (`path` a new directory), then buries
            // `path` 18 directories of 250 bytes deep by renames (each
            // short), so the file's host path is longer than PATH_MAX and
            // /proc/self/fd cannot name it; then writes `seconds` MiB
            // through the handle it kept.
            "bury-then-fill" => {
                use std::io::Write;
                let io = |what: &str, e: std::io::Error| PluginError::io(what.to_string(), &e);
                std::fs::create_dir(&cfg.path).map_err(|e| io("mkdir", e))?;
                let mut f = std::fs::File::create(format!("{}/f.bin", cfg.path))
                    .map_err(|e| io("creating", e))?;
                let (parent, name) = cfg.path.rsplit_once('/').unwrap_or(("", &cfg.path));
                let mut top = name.to_string();
                for i in 0..18 {
                    let next = (if i % 2 == 0 { "A" } else { "B" }).repeat(250);
                    std::fs::create_dir(format!("{parent}/{next}")).map_err(|e| io("mkdir", e))?;
                    std::fs::rename(format!("{parent}/{top}"), format!("{parent}/{next}/{top}"))
                        .map_err(|e| io("burying", e))?;
                    top = next;
                }
                let chunk = vec![0x5au8; 1 << 20];
                for _ in 0..cfg.seconds {
                    f.write_all(&chunk).map_err(|e| io("writing", e))?;
                }
                Ok(Outcome::ok(format!("wrote {} MiB buried", cfg.seconds)))
            }
            // Creates `seconds` files of 4 MiB under `path`, unlinking each
            // and keeping it open: the tree stays empty while the disk
            // holds them all until the run ends.
            "hoard-unlinked" => {
                use std::io::Write;
                let chunk = vec![0x5au8; 4 << 20];
                let mut kept = Vec::new();
                for i in 0..cfg.seconds {
                    let p = format!("{}{i}", cfg.path);
                    let mut f = std::fs::File::create(&p)
                        .map_err(|e| PluginError::io(format!("creating {p}"), &e))?;
                    std::fs::remove_file(&p)
                        .map_err(|e| PluginError::io(format!("unlinking {p}"), &e))?;
                    f.write_all(&chunk)
                        .map_err(|e| PluginError::io(format!("writing {p}"), &e))?;
                    kept.push(f);
                }
                Ok(Outcome::ok(format!(
                    "held {} MiB in unlinked files",
                    kept.len() * 4
                )))
            }
            // Creates `path` empty, hard-links it as `program`, then writes
            // `seconds` MiB through a handle opened by the name `args`
            // names ("path" or "program"): a file with a name in a grant
            // with a quota, written through its name in one without.
            "link-then-fill" => {
                use std::io::Write;
                std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                std::fs::hard_link(&cfg.path, &cfg.program)
                    .map_err(|e| PluginError::io(format!("linking {}", cfg.program), &e))?;
                let via = match cfg.args.first().map(String::as_str) {
                    Some("path") => &cfg.path,
                    _ => &cfg.program,
                };
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(via)
                    .map_err(|e| PluginError::io(format!("opening {via}"), &e))?;
                let chunk = vec![0x5au8; 1 << 20];
                for _ in 0..cfg.seconds {
                    f.write_all(&chunk)
                        .map_err(|e| PluginError::io(format!("writing {via}"), &e))?;
                }
                Ok(Outcome::ok(format!(
                    "wrote {} MiB through {via}",
                    cfg.seconds
                )))
            }
            // Writes `seconds` MiB to `path`, truncates it to nothing
            // through the same handle, waits for the quota's watcher, then
            // writes `seconds` MiB more where it left off (a hole before).
            "truncate-under" => {
                use std::io::Write;
                let mut f = std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                let chunk = vec![0x5au8; 1 << 20];
                for round in 0..2 {
                    for _ in 0..cfg.seconds {
                        f.write_all(&chunk)
                            .map_err(|e| PluginError::io(format!("writing {}", cfg.path), &e))?;
                    }
                    if round == 0 {
                        f.set_len(0)
                            .map_err(|e| PluginError::io(format!("truncating {}", cfg.path), &e))?;
                        std::thread::sleep(std::time::Duration::from_millis(300));
                    }
                }
                Ok(Outcome::ok(format!("wrote {} MiB twice", cfg.seconds)))
            }
            // Creates `path` empty and hard-links it as `address`, then
            // runs `program` with `args`, its stdout sent to `stdout`.
            "link-then-exec" => {
                std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                std::fs::hard_link(&cfg.path, &cfg.address)
                    .map_err(|e| PluginError::io(format!("linking {}", cfg.address), &e))?;
                let mut cmd = Command::new(&cfg.program).args(cfg.args.clone());
                if let Some(file) = &cfg.stdout {
                    cmd = cmd.stdout(opsd_sdk::Output::Append(file.clone()));
                }
                match cmd.run() {
                    Ok(exit) => Ok(Outcome::ok(format!("exit {:?}", exit.code))),
                    Err(e) => Err(PluginError::other("exec", format!("{e:?}"))),
                }
            }
            // Makes /free/d, opens `seconds` files in it, hands a 64 KiB
            // write to each one's stream without waiting, then renames
            // /free/d into /q at once: writes still landing land in /q.
            "streams-then-move" => {
                use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
                let dirs = wasi::filesystem::preopens::get_directories();
                let find = |g: &str| dirs.iter().find(|(_, p)| p == g).map(|(d, _)| d);
                let (Some(free), Some(q)) = (find("/free"), find("/q")) else {
                    return Ok(Outcome::failed("no /free or /q"));
                };
                let e = |what: &str, e: String| PluginError::other(what, e);
                free.create_directory_at("d")
                    .map_err(|x| e("mkdir", format!("{x:?}")))?;
                let d = free
                    .open_at(
                        PathFlags::empty(),
                        "d",
                        OpenFlags::DIRECTORY,
                        DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
                    )
                    .map_err(|x| e("open d", format!("{x:?}")))?;
                let mut streams = Vec::new();
                for i in 0..cfg.seconds {
                    let f = d
                        .open_at(
                            PathFlags::empty(),
                            &i.to_string(),
                            OpenFlags::CREATE,
                            DescriptorFlags::WRITE,
                        )
                        .map_err(|x| e("open", format!("{x:?}")))?;
                    let s = f
                        .write_via_stream(0)
                        .map_err(|x| e("stream", format!("{x:?}")))?;
                    streams.push((f, s));
                }
                let chunk = vec![0x5au8; 65536];
                for (_, s) in &streams {
                    let _ = s.check_write();
                    s.write(&chunk).map_err(|x| e("write", format!("{x:?}")))?;
                }
                free.rename_at("d", q, "d")
                    .map_err(|x| e("rename", format!("{x:?}")))?;
                for (_, s) in &streams {
                    let _ = s.blocking_flush();
                }
                Ok(Outcome::ok(format!("moved {} streams in", streams.len())))
            }
            // Makes `path` a chain of `seconds` nested directories, then
            // runs `program` with `args`.
            "nest-then-exec" => {
                let deep: String = (0..cfg.seconds).map(|_| "/d").collect();
                std::fs::create_dir_all(format!("{}{deep}", cfg.path))
                    .map_err(|e| PluginError::io(format!("nesting {}", cfg.path), &e))?;
                exec_ok(&cfg.program, &cfg.args)
            }
            // Writes `seconds` MiB into `path`, then runs `program` with
            // `args` (a workload that fills its grant, then runs a tool).
            "fill-then-exec" => {
                fill(&cfg.path, cfg.seconds)?;
                exec_ok(&cfg.program, &cfg.args)
            }
            // Writes a 1 MiB file `seconds` times, deleting each before the
            // next: never holding more than 1 MiB, it must never be refused.
            "churn" => {
                let chunk = vec![0x5au8; 1 << 20];
                for i in 0..cfg.seconds {
                    std::fs::write(&cfg.path, &chunk)
                        .and_then(|_| std::fs::remove_file(&cfg.path))
                        .map_err(|e| PluginError::io(format!("round {i} on {}", cfg.path), &e))?;
                }
                Ok(Outcome::ok(format!("churned {} MiB", cfg.seconds)))
            }
            // Reads `path` and writes `program` (a path too), ignoring
            // what either says: a plugin that catches the refusal.
            "try-quietly" => {
                let read = std::fs::read_to_string(&cfg.path).is_ok();
                let wrote = !cfg.program.is_empty() && std::fs::write(&cfg.program, b"x").is_ok();
                Ok(Outcome::ok(format!("read {read}, wrote {wrote}")))
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = x.wrapping_add(1);
                    std::hint::black_box(x);
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(cfg.seconds));
                Ok(Outcome::ok("slept"))
            }
            // A plain socket, the way any language's std connects.
            "tcp" => match std::net::TcpStream::connect(&cfg.address) {
                Ok(_) => Ok(Outcome::ok(format!("connected to {}", cfg.address))),
                Err(e) => Err(PluginError::other(
                    "net",
                    format!("connect {}: {e}", cfg.address),
                )),
            },
            // wasi:http, which never passes the socket check.
            "http" => http_get(&cfg.address)
                .map(|status| Outcome::ok(format!("HTTP {status}")))
                .map_err(|e| {
                    PluginError::other("net", format!("GET http://{}/: {e}", cfg.address))
                }),
            "panic" => panic!("deliberate panic for a containment test"),
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            // Reads `path` (through whatever symlink is there).
            "read" => {
                let text = std::fs::read_to_string(&cfg.path)
                    .map_err(|e| PluginError::io(format!("reading {}", cfg.path), &e))?;
                Ok(Outcome::ok(text.lines().next().unwrap_or("").to_string()))
            }
            // Makes `path` a symlink to `program` inside its grant, then
            // reads through it.
            "symlink" => {
                symlink(&cfg.program, &cfg.path)
                    .map_err(|e| PluginError::other("fs", format!("linking {}: {e}", cfg.path)))?;
                let text = std::fs::read_to_string(&cfg.path)
                    .map_err(|e| PluginError::io(format!("reading {}", cfg.path), &e))?;
                Ok(Outcome::ok(text.lines().next().unwrap_or("").to_string()))
            }
            // Asks the host to hash `path` (contract 0.1.3).
            "sha256" => match opsd_sdk::files::sha256(&cfg.path) {
                Ok(d) => Ok(Outcome::ok(format!("sha256 {} {}", d.sha256, d.size))),
                Err(e) => Err(PluginError::other(
                    "io",
                    format!("sha256 of {}: {e}", cfg.path),
                )),
            },
            "recurse" => Ok(Outcome::ok(format!("depth {}", recurse(0)))),
            // A summary of `seconds` MiB.
            "huge-summary" => Ok(Outcome::ok("x".repeat((cfg.seconds as usize) << 20))),
            // `seconds` x 1,000 log lines of 100 bytes.
            "log-spam" => {
                let line = "y".repeat(100);
                for _ in 0..cfg.seconds * 1000 {
                    opsd_sdk::info!("{line}");
                }
                Ok(Outcome::ok("spammed"))
            }
            // Writes half of a file, then traps.
            "trap-mid-write" => {
                use std::io::Write;
                let mut f = std::fs::File::create(&cfg.path)
                    .map_err(|e| PluginError::io(format!("creating {}", cfg.path), &e))?;
                let _ = f.write_all(&[b'z'; 1 << 20]);
                std::process::abort()
            }
            // Resolves `address` `seconds` times.
            "lookups" => {
                use std::net::ToSocketAddrs;
                for i in 0..cfg.seconds {
                    cfg.address.to_socket_addrs().map_err(|e| {
                        PluginError::other("net", format!("lookup {i} of {}: {e}", cfg.address))
                    })?;
                }
                Ok(Outcome::ok(format!("{} lookups", cfg.seconds)))
            }
            // Runs the program named by environment variable `program`
            // and swallows the refusal.
            "exec-env" => {
                let program = std::env::var(&cfg.program).unwrap_or_default();
                let r = Command::new(&program).run();
                opsd_sdk::info!("exec result: {}", r.is_ok());
                Ok(Outcome::ok("pretended all was well"))
            }
            // Opens `path` `seconds` times and keeps every handle.
            "hoard" => {
                std::fs::write(&cfg.path, b"x")
                    .map_err(|e| PluginError::io(format!("writing {}", cfg.path), &e))?;
                let mut held = Vec::new();
                for _ in 0..cfg.seconds {
                    held.push(
                        std::fs::File::open(&cfg.path)
                            .map_err(|e| PluginError::io(format!("opening {}", cfg.path), &e))?,
                    );
                }
                Ok(Outcome::ok(format!("holding {} handles", held.len())))
            }
            // Reads the history of job `path` (empty: "every job") and
            // says which jobs' runs came back.
            "history" => {
                let job = (!cfg.path.is_empty()).then_some(cfg.path.as_str());
                let runs = opsd_sdk::history::runs(job, None, 1000);
                let mut jobs: Vec<String> = runs.iter().map(|r| r.job.clone()).collect();
                jobs.sort();
                jobs.dedup();
                let listed: Vec<String> = opsd_sdk::history::jobs()
                    .into_iter()
                    .map(|j| j.name)
                    .collect();
                Ok(Outcome::ok(format!(
                    "runs of [{}]; jobs listed [{}]",
                    jobs.join(","),
                    listed.join(",")
                )))
            }
            // Reads one run's record by the id in file `path`.
            "history-detail" => {
                let id = std::fs::read_to_string(&cfg.path)
                    .map_err(|e| PluginError::io(format!("reading {}", cfg.path), &e))?;
                Ok(match opsd_sdk::history::detail(id.trim()) {
                    Some(d) => {
                        Outcome::ok(format!("read {}: {}", d.summary.job, d.summary.summary))
                    }
                    None => Outcome::ok("no such run"),
                })
            }
            // Puts the value of environment variable `program` in every
            // field a run returns.
            "leak-fields" => {
                let v = std::env::var(&cfg.program).unwrap_or_default();
                Ok(Outcome::ok(format!("summary {v}"))
                    .details(format!("details {v}"))
                    .metric(&format!("m_{v}"), 1.0, Some(&format!("unit {v}")))
                    .artifact(opsd_sdk::Artifact {
                        path: format!("/data/{v}"),
                        kind: format!("kind {v}"),
                        size_bytes: Some(1),
                        sha256: Some(format!("sha {v}")),
                    }))
            }
            // Says `path` everywhere it can: log, progress, summary,
            // details and a metric; fails with it when `seconds` is 1.
            "say" => {
                opsd_sdk::info!("{}", cfg.path);
                opsd_sdk::progress(1, Some(2), &cfg.path);
                if cfg.seconds == 1 {
                    return Err(PluginError::other("say", cfg.path.clone()));
                }
                Ok(Outcome::ok(cfg.path.clone())
                    .details(cfg.path.clone())
                    .metric("said", 1.0, Some(&cfg.path)))
            }
            // Says `path` in every field a run returns: log lines,
            // progress, summary, details, a metric's name and unit, an
            // artifact's path, kind and hash; with `seconds` = 1, fails
            // with it as the error. Logs a line every `seconds` x 100 ms
            // for `args.len()` more steps first, so a test can follow it.
            "say-all" => {
                let p = &cfg.path;
                opsd_sdk::info!("{p}");
                opsd_sdk::warn!("{p}");
                for (i, step) in cfg.args.iter().enumerate() {
                    opsd_sdk::progress(i as u64 + 1, Some(cfg.args.len() as u64), p);
                    opsd_sdk::info!("{step}");
                    std::thread::sleep(std::time::Duration::from_millis(cfg.seconds * 100));
                }
                if cfg.seconds == 1 {
                    return Err(PluginError::other("say-all", p.clone()));
                }
                Ok(Outcome::warning(p.clone())
                    .details(format!("{p}\nsecond line {p}"))
                    .metric(p, 1.0, Some(p))
                    .artifact(opsd_sdk::Artifact {
                        path: format!("/data/{p}"),
                        kind: p.clone(),
                        size_bytes: Some(1),
                        sha256: Some(p.clone()),
                    }))
            }
            // Each of `args` a file step ("op path [more]"), its error
            // caught and kept in the summary: only the host's refusal can
            // fail the run.
            "fs-steps" => Ok(Outcome::ok(
                cfg.args
                    .iter()
                    .map(|step| format!("{step}: {}", fs_step(step).err().unwrap_or("ok".into())))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )),
            other => Err(PluginError::bad_config(format!("unknown action `{other}`"))),
        }
    }
}

/// Makes `link` (inside a preopened directory) a symlink to `target`,
/// through wasi:filesystem as std has no stable call for it.
fn symlink(target: &str, link: &str) -> Result<(), String> {
    for (dir, guest) in wasi::filesystem::preopens::get_directories() {
        if let Some(rest) = link.strip_prefix(&format!("{}/", guest.trim_end_matches('/'))) {
            return dir.symlink_at(target, rest).map_err(|e| format!("{e:?}"));
        }
    }
    Err(format!("{link} is in no preopened directory"))
}

/// The preopened directory deepest above guest `path`, and the rest.
fn preopen_for(path: &str) -> Option<(wasi::filesystem::types::Descriptor, String)> {
    let mut best: Option<(wasi::filesystem::types::Descriptor, String, usize)> = None;
    for (dir, guest) in wasi::filesystem::preopens::get_directories() {
        let g = guest.trim_end_matches('/').to_owned();
        let rest = if path == g {
            Some(String::new())
        } else {
            path.strip_prefix(&format!("{g}/")).map(str::to_owned)
        };
        if let Some(rest) = rest
            && best.as_ref().is_none_or(|b| g.len() >= b.2)
        {
            best = Some((dir, rest, g.len()));
        }
    }
    best.map(|(d, r, _)| (d, if r.is_empty() { ".".into() } else { r }))
}

/// One step of `fs-steps`.
fn fs_step(step: &str) -> Result<(), String> {
    use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let words: Vec<&str> = step.split(' ').collect();
    let (op, path) = (words[0], words.get(1).copied().unwrap_or(""));
    let more = words.get(2).copied().unwrap_or("");
    let e = |e: std::io::Error| e.to_string();
    let w = |e: wasi::filesystem::types::ErrorCode| format!("{e:?}");
    match op {
        "write" => std::fs::write(path, b"x").map_err(e),
        "mkdir" => std::fs::create_dir_all(path).map_err(e),
        "rmtree" => std::fs::remove_dir_all(path).map_err(e),
        "read" => std::fs::read(path).map(drop).map_err(e),
        "symlink" => symlink(more, path),
        "rename" => std::fs::rename(path, more).map_err(e),
        // Opens `path` as a directory, then removes `more` below it.
        "open-unlink" => {
            let (dir, rest) = preopen_for(path).ok_or("no preopen")?;
            let sub = dir
                .open_at(
                    PathFlags::empty(),
                    &rest,
                    OpenFlags::DIRECTORY,
                    DescriptorFlags::READ,
                )
                .map_err(w)?;
            sub.unlink_file_at(more).map_err(w)
        }
        // open-at with create and write, exactly as named.
        "open-write" => {
            let (dir, rest) = preopen_for(path).ok_or("no preopen")?;
            dir.open_at(
                PathFlags::empty(),
                &rest,
                OpenFlags::CREATE,
                DescriptorFlags::WRITE,
            )
            .map(drop)
            .map_err(w)
        }
        // Directories below `path` whose host path passes PATH_MAX, each
        // opened from the last, then a link `l` -> `more` in the deepest.
        "deep-link" => {
            let (mut dir, rest) = preopen_for(path).ok_or("no preopen")?;
            let name = "d".repeat(250);
            for step in 0..20 {
                let at = if step == 0 {
                    rest.as_str()
                } else {
                    name.as_str()
                };
                let _ = dir.create_directory_at(at);
                dir = dir
                    .open_at(
                        PathFlags::empty(),
                        at,
                        OpenFlags::DIRECTORY,
                        DescriptorFlags::READ | DescriptorFlags::MUTATE_DIRECTORY,
                    )
                    .map_err(w)?;
            }
            dir.symlink_at(more, "l").map_err(w)
        }
        other => Err(format!("unknown step {other}")),
    }
}

/// Recurses until the stack runs out.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    1 + recurse(pad[depth as usize % 64] + 1)
}

fn http_get(authority: &str) -> Result<u16, String> {
    use wasi::http::{outgoing_handler, types};
    let req = types::OutgoingRequest::new(types::Fields::new());
    req.set_scheme(Some(&types::Scheme::Http))
        .map_err(|_| "bad scheme")?;
    req.set_authority(Some(authority))
        .map_err(|_| "bad authority")?;
    req.set_path_with_query(Some("/")).map_err(|_| "bad path")?;
    let pending = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|_| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    Ok(response.status())
}

/// Writes `mib` MiB to a new file at `path`.
fn fill(path: &str, mib: u64) -> Result<(), PluginError> {
    use std::io::Write;
    let mut f =
        std::fs::File::create(path).map_err(|e| PluginError::io(format!("creating {path}"), &e))?;
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&chunk)
            .map_err(|e| PluginError::io(format!("writing {path}"), &e))?;
    }
    Ok(())
}

/// Runs `program`: ok with its stdout when it succeeds.
fn exec_ok(program: &str, args: &[String]) -> Result<Outcome, PluginError> {
    match Command::new(program).args(args.to_vec()).run() {
        Ok(exit) if exit.success() => Ok(Outcome::ok(format!(
            "ran {program}: {}",
            String::from_utf8_lossy(&exit.stdout).trim()
        ))),
        Ok(exit) => Ok(Outcome::failed(format!(
            "exit {:?}, signal {:?}: {}",
            exit.code,
            exit.signal,
            exit.stderr_text()
        ))),
        Err(e) => Err(PluginError::other("exec", format!("{e:?}"))),
    }
}

opsd_sdk::export_plugin!(Hostile);
