//! Process grants: an allow-list of programs, resolved to absolute paths
//! when the config loads, and the host side of the plugin's
//! `process.run` import.
//!
//! A child gets exactly the argv the plugin passed (no shell), which a
//! grant may pin; an environment cleared down to the granted variables; a
//! working directory inside a grant (an empty, unreadable one when the
//! job has none); a time limit that never outlives the job's; and output
//! capped or sent straight to a granted file. It runs confined to the
//! job's grants ([`super::confine`]). It and everything it starts are
//! capped in number (`grants.limits.processes`) and killed when the call
//! returns, times out or its run ends: a program may not leave processes
//! behind, as systemd does not let a oneshot service.

use super::confine::{self, rules};
use super::{Grants, Violations, fs};
use crate::bindings::opsd::plugin::process::{Command, ExecError, Exit, Input};
use crate::diag::{Lines, Problems, toml_strings};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use toml::Spanned;

mod refusals;
mod stdio;

use refusals::{note_cap, note_refusals};
use stdio::{FileRelay, io_error, join_capture, output_stdio, read_capped};

/// The arguments an exec grant entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `exec = ["gzip"]`: any.
    Any,
    /// `{ program = "systemctl", args = ["reload", "nginx"] }`: exactly.
    Exactly(Vec<String>),
    /// `args = ["-C", "/srv", "*"]`: this prefix, then anything.
    Prefix(Vec<String>),
}

impl Args {
    /// Whether `args` (without argv\[0\]) are allowed.
    pub fn allows(&self, args: &[String]) -> bool {
        match self {
            Args::Any => true,
            Args::Exactly(want) => want == args,
            Args::Prefix(want) => args.starts_with(want),
        }
    }

    fn describe(&self) -> String {
        match self {
            Args::Any => "any arguments".into(),
            Args::Exactly(a) => format!("args = {}", toml_strings(a)),
            Args::Prefix(a) => format!(
                "args = {}",
                toml_strings(&[&a[..], &["*".to_owned()]].concat())
            ),
        }
    }
}

/// One allowed program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// As written in the config: `pg_dump` or `/usr/bin/pg_dump`.
    pub name: String,
    /// Absolute path found when the config loaded; this is what runs.
    pub path: PathBuf,
    /// `path` with every symlink resolved: what the kernel runs, and what
    /// a confined child's exec is compared with.
    pub real: PathBuf,
    /// What the kernel needs to start it: a script's interpreter, an ELF
    /// file's loader (execute rights, never run on their own).
    pub needs: Vec<PathBuf>,
    /// Programs it starts in its stead: what `#!/usr/bin/env X` runs, and
    /// what a known wrapper runs (Debian's `pg_dump` is `pg_wrapper`,
    /// which runs `/usr/lib/postgresql/N/bin/pg_dump`).
    pub runs: Vec<PathBuf>,
    pub args: Args,
}

/// The programs a job may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecPolicy {
    pub programs: Vec<Program>,
}

impl super::Kind for ExecPolicy {
    fn key(&self) -> &'static str {
        "exec"
    }

    fn explain(&self) -> super::Explained {
        super::Explained::Each(
            self.programs
                .iter()
                .map(|p| format!("{} ({})", p.name, p.path.display()))
                .collect(),
        )
    }
}

impl ExecPolicy {
    /// Reads `exec = [...]`; `fs` are the job's grants, for refusing a
    /// program the plugin could rewrite.
    pub(crate) fn from_raw(
        raw: &[Spanned<toml::Value>],
        base: &Path,
        fs: &[fs::FsGrant],
        lines: &Lines,
        job: &str,
        problems: &mut Problems,
    ) -> ExecPolicy {
        let mut programs = Vec::new();
        for entry in raw {
            let parsed = parse_entry(entry.get_ref()).and_then(|(name, args)| {
                let path = resolve_program(&name, base)?;
                let real = path
                    .canonicalize()
                    .map_err(|e| format!("exec grant `{name}`: {}: {e}", path.display()))?;
                let mut needs = Vec::new();
                let mut runs = wrapped(&real, &name);
                interpreters(&real, &mut needs, &mut runs, 0);
                for r in runs.clone() {
                    interpreters(&r, &mut needs, &mut runs, 0);
                }
                writable_by_job(&name, [&path, &real].into_iter().chain(&needs), fs)?;
                Ok(Program {
                    name,
                    path,
                    real,
                    needs,
                    runs,
                    args,
                })
            });
            match parsed {
                Ok(p) => programs.push(p),
                Err(e) => problems.push(lines.at(entry), Some(job), e),
            }
        }
        ExecPolicy { programs }
    }

    /// The program a plugin asked for, matched exactly against the name
    /// or the resolved path (anything else, such as `/usr/bin/../bin/sh`,
    /// is refused), with arguments its grant allows.
    pub fn lookup(&self, requested: &str, args: &[String]) -> Result<&Program, String> {
        let named: Vec<&Program> = self
            .programs
            .iter()
            .filter(|p| p.name == requested || p.path.as_os_str() == requested)
            .collect();
        if named.is_empty() {
            return Err(format!(
                "program `{requested}` is not in the job's exec grant ({}); add it to `exec = [...]`",
                self.describe()
            ));
        }
        named
            .iter()
            .find(|p| p.args.allows(args))
            .copied()
            .ok_or_else(|| {
                let allowed: Vec<String> = named.iter().map(|p| p.args.describe()).collect();
                format!(
                    "`{requested}` with arguments {} is not allowed by the job's exec grant, which pins it to {}; add an entry such as {{ program = \"{requested}\", args = {} }} if the job needs it",
                    toml_strings(args),
                    allowed.join(" or "),
                    toml_strings(args)
                )
            })
    }

    /// Whether some entry names `program`, whatever its arguments.
    pub fn names(&self, program: &str) -> bool {
        self.programs
            .iter()
            .any(|p| p.name == program || p.path.as_os_str() == program)
    }

    /// The entries as written, for messages.
    pub fn describe(&self) -> String {
        if self.programs.is_empty() {
            return "empty".into();
        }
        self.programs
            .iter()
            .map(|p| match &p.args {
                Args::Any => p.name.clone(),
                a => format!("{} ({})", p.name, a.describe()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What a confined child may run on its own: canonical paths with the
    /// arguments each entry allows (what a program runs in its stead takes
    /// any).
    pub fn runnable(&self) -> Vec<(PathBuf, Args)> {
        let mut out: Vec<(PathBuf, Args)> = Vec::new();
        for p in &self.programs {
            out.push((p.real.clone(), p.args.clone()));
            out.extend(p.runs.iter().map(|r| (r.clone(), Args::Any)));
        }
        out.dedup();
        out
    }

    /// Every file a confined child needs execute rights on.
    pub fn executable(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.runnable().into_iter().map(|(p, _)| p).collect();
        out.extend(self.programs.iter().flat_map(|p| p.needs.iter().cloned()));
        out.sort();
        out.dedup();
        out
    }
}

/// Refuses a program inside the job's read-write grants: the plugin
/// could replace what runs.
fn writable_by_job<'a>(
    name: &str,
    files: impl Iterator<Item = &'a PathBuf>,
    fs: &[fs::FsGrant],
) -> Result<(), String> {
    let roots: Vec<(&fs::FsGrant, PathBuf)> = fs
        .iter()
        .filter(|g| g.access == fs::Access::ReadWrite)
        .map(|g| (g, g.host.canonicalize().unwrap_or_else(|_| g.host.clone())))
        .collect();
    for file in files {
        if let Some((g, _)) = roots
            .iter()
            .find(|(g, root)| file.starts_with(root) || file.starts_with(&g.host))
        {
            return Err(format!(
                "exec grant `{name}`: {} is inside the job's read-write grant {} -> {}, so the plugin could replace what runs; install the program outside what the job may write",
                file.display(),
                g.guest,
                g.host.display()
            ));
        }
    }
    Ok(())
}

/// `"gzip"` or `{ program = "systemctl", args = ["reload", "nginx"] }`.
fn parse_entry(v: &toml::Value) -> Result<(String, Args), String> {
    match v {
        toml::Value::String(s) => Ok((s.clone(), Args::Any)),
        toml::Value::Table(t) => {
            if let Some(k) = t.keys().find(|k| *k != "program" && *k != "args") {
                return Err(format!(
                    "exec grant: unknown key `{k}`; an entry is \"program\" or {{ program = \"...\", args = [...] }}"
                ));
            }
            let program = t
                .get("program")
                .and_then(toml::Value::as_str)
                .ok_or("exec grant: a table entry needs `program = \"...\"`")?
                .to_owned();
            let args = match t.get("args") {
                None => Args::Any,
                Some(toml::Value::Array(a)) => {
                    let mut list = a
                        .iter()
                        .map(|x| {
                            x.as_str().map(str::to_owned).ok_or_else(|| {
                                format!("exec grant `{program}`: every argument is a string")
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if list.last().is_some_and(|l| l == "*") {
                        list.pop();
                        Args::Prefix(list)
                    } else {
                        Args::Exactly(list)
                    }
                }
                Some(_) => {
                    return Err(format!(
                        "exec grant `{program}`: `args` is a list of strings, ending in \"*\" to allow anything after"
                    ));
                }
            };
            Ok((program, args))
        }
        _ => Err(
            "exec grant: an entry is a program name or { program = \"...\", args = [...] }".into(),
        ),
    }
}

/// What the kernel runs to start `file` (a script's interpreter and its
/// own, an ELF file's loader) into `needs`, and what `#!/usr/bin/env X`
/// makes env run into `runs`. Canonical paths.
fn interpreters(file: &Path, needs: &mut Vec<PathBuf>, runs: &mut Vec<PathBuf>, depth: u8) {
    use std::io::Read;
    if depth > 4 {
        return;
    }
    let mut head = vec![0u8; 64 << 10];
    let n = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head.truncate(n);
    let (interp, via_env) = if head.starts_with(b"#!") {
        let line = head[2..].split(|b| *b == b'\n').next().unwrap_or_default();
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        let interp = words.next().map(PathBuf::from);
        let via_env = interp
            .as_ref()
            .filter(|i| i.ends_with("env"))
            .and(words.find(|w| !w.starts_with('-')))
            .and_then(|name| resolve_program(name, Path::new("/")).ok());
        (interp, via_env)
    } else {
        (elf_interpreter(&head), None)
    };
    for (f, run) in [(interp, false), (via_env, true)] {
        let Some(real) = f.and_then(|f| f.canonicalize().ok()) else {
            continue;
        };
        let list = if run { &mut *runs } else { &mut *needs };
        if !list.contains(&real) {
            list.push(real.clone());
            interpreters(&real, needs, runs, depth + 1);
        }
    }
}

/// The `PT_INTERP` of a little-endian ELF file (its dynamic loader).
fn elf_interpreter(b: &[u8]) -> Option<PathBuf> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let wide = b[4] == 2;
    let (phoff, size, count) = if wide {
        (u64_at(0x20)? as usize, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u32_at(0x1c)? as usize, u16_at(0x2a)?, u16_at(0x2c)?)
    };
    for i in 0..usize::from(count) {
        let at = phoff + i * usize::from(size);
        if u32_at(at)? != 3 {
            continue; // not PT_INTERP
        }
        let (off, len) = if wide {
            (u64_at(at + 8)? as usize, u64_at(at + 32)? as usize)
        } else {
            (u32_at(at + 4)? as usize, u32_at(at + 16)? as usize)
        };
        let raw = b.get(off..off + len)?;
        let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
        return Some(PathBuf::from(
            String::from_utf8_lossy(&raw[..end]).into_owned(),
        ));
    }
    None
}

/// Known wrappers that run another program in their stead: Debian's
/// `pg_wrapper` behind `pg_dump`, `psql`, `vacuumdb`... runs the tool of
/// each installed PostgreSQL version. Granting the name grants those.
fn wrapped(real: &Path, name: &str) -> Vec<PathBuf> {
    const PG_WRAPPER: &str = "/usr/share/postgresql-common/pg_wrapper";
    if real != Path::new(PG_WRAPPER) {
        return Vec::new();
    }
    let tool = Path::new(name)
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    let mut out: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|v| v.path().join("bin").join(&tool))
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    out.sort();
    out
}

/// Finds a program as the config names it: an absolute path (or one
/// relative to the config file), or a bare name searched on the daemon's
/// PATH.
pub fn resolve_program(name: &str, base: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = base.join(name);
        if is_exec(&p) {
            return Ok(p);
        }
        return Err(format!(
            "exec grant `{name}`: {} is not an executable file",
            p.display()
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if dir.is_absolute() && is_exec(&p) {
            return Ok(p);
        }
    }
    Err(format!(
        "exec grant `{name}`: not found on PATH ({}); install it or write its absolute path",
        path.to_string_lossy()
    ))
}

/// What a run lends to each process call.
pub struct ProcessContext<'a> {
    pub grants: &'a Grants,
    pub violations: &'a Violations,
    /// The job's own deadline; no child outlives it.
    pub deadline: Instant,
    /// An empty directory children of a job without fs grants start in
    /// (not `/`, where relative paths would name the whole system).
    pub idle_dir: &'a Path,
    /// Notes for the run's log (what best-effort confinement left out).
    pub notes: &'a (dyn Fn(&str) + Sync),
    /// The largest file the program may write (`RLIMIT_FSIZE`): what is
    /// left of the job's quotas, when every rw grant has one.
    pub file_size_cap: Option<u64>,
    /// What the file at a host path (none: a path /proc/self/fd cannot
    /// name) may still grow by under the job's quotas (measured when
    /// asked), shared by every relay of the call; none outside any quota.
    pub quota_room: Option<&'a QuotaRoom<'a>>,
}

/// What a file at a host path may still grow by under the job's quotas:
/// one shared room for all of a program's relayed output.
pub type QuotaRoom<'a> =
    dyn Fn(Option<&Path>) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> + Sync + 'a;

fn deny(ctx: &ProcessContext<'_>, message: String) -> ExecError {
    ctx.violations.record(message.clone());
    ExecError::Denied(message)
}

/// How long output may still arrive after the program exited and what it
/// left was killed; a descriptor passed somewhere else cannot hold the
/// call open longer.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs one command on a plugin's behalf, as far as the grants allow.
///
/// Long on purpose: a program's life in the order it happens (look up,
/// prepare, confine, spawn, feed, capture, wait, kill what it left,
/// account), each step undoing what the earlier ones set up if it fails.
pub async fn run(ctx: &ProcessContext<'_>, cmd: Command) -> Result<Exit, ExecError> {
    let program = ctx
        .grants
        .exec
        .lookup(&cmd.program, &cmd.args)
        .map_err(|m| deny(ctx, m))?
        .clone();
    let Prepared {
        mut child,
        cwd,
        stdin_bytes,
        relays,
    } = prepare(ctx, &cmd, &program)?;
    let mut contained = super::contain::Containment::new(ctx.grants.limits.processes);
    contained.apply(&mut child, ctx.file_size_cap);
    let mut launch = confined(ctx, &program, &cwd)
        .await
        .map_err(|m| deny(ctx, m))?;
    for note in &launch.notes {
        (ctx.notes)(&format!("`{}` runs {note}", program.name));
    }
    launch.apply(&mut child);

    let budget = ctx.deadline.saturating_duration_since(Instant::now());
    let limit = cmd
        .timeout_ms
        .map(Duration::from_millis)
        .map_or(budget, |t| t.min(budget));
    let started = Instant::now();
    let mut proc = match child.spawn() {
        Ok(p) => p,
        Err(e) => {
            let step = launch
                .failed_step()
                .map(|s| format!(" (confining it: {s})"))
                .unwrap_or_default();
            return Err(ExecError::Spawn(format!(
                "{}{step}: {e}",
                program.path.display()
            )));
        }
    };
    launch.spawned();
    // The command holds the program's ends of the relays' pipes: they
    // must close here for a relay to see the end of its stream.
    drop(child);
    let pid = proc.id();
    contained.started(pid);
    tracing::debug!(
        program = %program.path.display(),
        args = %crate::escape::line(&ctx.violations.masked(&toml_strings(&cmd.args))),
        pid,
        "exec"
    );

    if let (Some(bytes), Some(mut stdin)) = (stdin_bytes, proc.stdin.take()) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let cap = ctx.grants.limits.output_bytes;
    let out_task = proc
        .stdout
        .take()
        .map(|s| tokio::spawn(read_capped(s, cap)));
    let err_task = proc
        .stderr
        .take()
        .map(|s| tokio::spawn(read_capped(s, cap)));

    let waited = tokio::time::timeout(limit, proc.wait()).await;
    // Whatever it left running would hold its output pipes open.
    contained.kill_all();
    launch.finish();
    note_cap(ctx, &contained, &program);
    let status = match waited {
        Ok(status) => {
            status.map_err(|e| ExecError::Io(format!("waiting for {}: {e}", program.name)))?
        }
        Err(_) => {
            let _ = proc.wait().await;
            return Err(ExecError::Timeout(limit.as_millis() as u64));
        }
    };
    let (stdout, t1) = join_capture(out_task).await;
    let (stderr, t2) = join_capture(err_task).await;
    for relay in relays {
        relay.finish(&program).await.inspect_err(|e| {
            // A copy stopped by a quota fails the run, whatever the plugin
            // makes of the error.
            if let ExecError::Denied(m) = e {
                ctx.violations.record(m.clone());
            }
        })?;
    }
    note_refusals(ctx, &program, &cwd, &stderr);
    use std::os::unix::process::ExitStatusExt;
    if let (Some(cap), Some(libc::SIGXFSZ)) = (ctx.file_size_cap, status.signal()) {
        ctx.violations.record(format!(
            "quota: `{}` was stopped writing a file past the {} KiB its job's quotas had left (SIGXFSZ); free space there or raise the grant's `quota`",
            program.name,
            cap >> 10
        ));
    }
    Ok(Exit {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        truncated: t1 || t2,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// A program's command before its confinement: its environment (only the
/// env grant's), working directory (in a grant) and standard streams
/// (granted files through relays, never handed over).
struct Prepared {
    child: tokio::process::Command,
    cwd: std::path::PathBuf,
    stdin_bytes: Option<Vec<u8>>,
    relays: Vec<FileRelay>,
}

fn prepare(
    ctx: &ProcessContext<'_>,
    cmd: &Command,
    program: &Program,
) -> Result<Prepared, ExecError> {
    let mut child = tokio::process::Command::new(&program.path);
    child.args(&cmd.args).env_clear().kill_on_drop(true);
    for (name, value) in ctx.grants.env_values() {
        child.env(name, value);
    }
    for (name, value) in &cmd.env {
        if !ctx.grants.env.allows(name) {
            return Err(deny(
                ctx,
                format!(
                    "environment variable `{name}` is not in the job's env grant; add it to `env = [...]`"
                ),
            ));
        }
        child.env(name, value);
    }
    let cwd = match &cmd.cwd {
        Some(dir) => fs::host_dir(&ctx.grants.fs, dir).map_err(|m| deny(ctx, m))?,
        None => ctx
            .grants
            .fs
            .first()
            .map_or_else(|| ctx.idle_dir.to_owned(), |g| g.host.clone()),
    };
    child.current_dir(&cwd);

    let mut stdin_bytes = None;
    let mut relays: Vec<FileRelay> = Vec::new();
    child.stdin(match &cmd.stdin {
        Input::None => Stdio::null(),
        Input::Bytes(b) => {
            stdin_bytes = Some(b.clone());
            Stdio::piped()
        }
        Input::File(p) => {
            let file = fs::open_read(&ctx.grants.fs, p).map_err(|m| deny(ctx, m))?;
            let (stdio, relay) = FileRelay::input(file, p).map_err(|e| io_error(program, e))?;
            relays.push(relay);
            stdio
        }
    });
    child.stdout(output_stdio(ctx, &cmd.stdout, program, &mut relays)?);
    child.stderr(output_stdio(ctx, &cmd.stderr, program, &mut relays)?);
    Ok(Prepared {
        child,
        cwd,
        stdin_bytes,
        relays,
    })
}

/// Prepares the confinement of one call of `program` from the job's
/// grants.
async fn confined(
    ctx: &ProcessContext<'_>,
    program: &Program,
    cwd: &Path,
) -> Result<confine::Launch, String> {
    let g = ctx.grants;
    let mut plan = rules::Plan::with_base(&g.children.system_paths);
    for grant in &g.fs {
        let allow = match grant.access {
            fs::Access::ReadOnly => rules::Allow::Read,
            fs::Access::ReadWrite => rules::Allow::ReadWrite,
        };
        plan.grants.push((grant.host.clone(), allow));
    }
    plan.paths.extend(
        g.exec
            .executable()
            .into_iter()
            .map(|p| (p, rules::Allow::Execute)),
    );
    let network = !g.net.is_empty();
    let net = if network {
        let (resolved, ports) = g.net.resolve_for_children().await;
        plan.tcp_connect = rules::ports(&ports).map(|mut p| {
            // DNS over TCP, for answers too long for UDP.
            p.push(53);
            p
        });
        Some(resolved)
    } else {
        // No network namespace to leave: connecting and binding TCP is
        // refused by Landlock too, in case namespaces are unavailable.
        plan.tcp_connect = Some(Vec::new());
        None
    };
    confine::Launch::prepare(confine::launch::Request {
        mode: g.children.mode,
        plan: &plan,
        network,
        run_as: g.children.run_as.as_ref(),
        unix_granted: !g.children.unix.is_empty(),
        writable: g
            .fs
            .iter()
            .filter(|f| f.access == fs::Access::ReadWrite)
            .map(|f| f.host.clone())
            .collect(),
        processes: g.limits.processes,
        cwd,
        tmp: g.children.tmp,
        rules: confine::supervisor::Rules {
            program: program.name.clone(),
            exec: g.exec.runnable(),
            exec_described: g.exec.describe(),
            net,
            net_described: g.net.describe(),
            resolvers: confine::supervisor::resolvers(),
            unix: g.children.unix.clone(),
            writable: g
                .fs
                .iter()
                .filter(|f| f.access == fs::Access::ReadWrite)
                .map(|f| f.host.canonicalize().unwrap_or_else(|_| f.host.clone()))
                .collect(),
            env: g.env.names().to_vec(),
            violations: ctx.violations.clone(),
            refused: Default::default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(name: &str, args: Args) -> Program {
        let path = resolve_program(name, Path::new("/")).unwrap();
        Program {
            name: name.into(),
            real: path.canonicalize().unwrap(),
            path,
            needs: Vec::new(),
            runs: Vec::new(),
            args,
        }
    }

    #[test]
    fn resolves_bare_names_on_path_and_refuses_tricks() {
        let p = resolve_program("sh", Path::new("/")).unwrap();
        assert!(p.is_absolute());
        let policy = ExecPolicy {
            programs: vec![program("sh", Args::Any)],
        };
        assert!(policy.lookup("sh", &[]).is_ok());
        assert!(policy.lookup(p.to_str().unwrap(), &[]).is_ok());
        let e = policy.lookup("/usr/bin/../bin/sh", &[]).unwrap_err();
        assert!(e.contains("not in the job's exec grant"), "{e}");
        assert!(
            resolve_program("no-such-program-opsd", Path::new("/"))
                .unwrap_err()
                .contains("PATH")
        );
    }

    #[test]
    fn pinned_arguments_match_exactly_or_by_prefix() {
        let reload = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let policy = ExecPolicy {
            programs: vec![
                program("sh", Args::Exactly(reload(&["-c", "true"]))),
                program("env", Args::Prefix(reload(&["-i"]))),
            ],
        };
        assert!(policy.lookup("sh", &reload(&["-c", "true"])).is_ok());
        let e = policy.lookup("sh", &reload(&["-c", "id"])).unwrap_err();
        assert!(e.contains("pins it to args = [\"-c\", \"true\"]"), "{e}");
        assert!(policy.lookup("env", &reload(&["-i", "x=1"])).is_ok());
        assert!(policy.lookup("env", &reload(&["x=1"])).is_err());
        assert_eq!(
            parse_entry(&toml::Value::Table(
                toml::from_str("program = \"env\"\nargs = [\"-i\", \"*\"]").unwrap()
            ))
            .unwrap()
            .1,
            Args::Prefix(reload(&["-i"]))
        );
        assert!(
            parse_entry(&toml::Value::Table(
                toml::from_str("program = \"env\"\nargv = []").unwrap()
            ))
            .unwrap_err()
            .contains("unknown key `argv`")
        );
    }

    #[test]
    fn finds_what_the_kernel_needs_to_start_a_program() {
        let sh = resolve_program("sh", Path::new("/"))
            .unwrap()
            .canonicalize()
            .unwrap();
        let (mut needs, mut runs) = (Vec::new(), Vec::new());
        interpreters(&sh, &mut needs, &mut runs, 0);
        assert!(
            needs
                .iter()
                .any(|n| n.to_string_lossy().contains("ld-linux")),
            "{needs:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hook");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let (mut needs, mut runs) = (Vec::new(), Vec::new());
        interpreters(&script, &mut needs, &mut runs, 0);
        assert_eq!(needs.first(), Some(&sh), "{needs:?}");
        assert!(runs.is_empty());
        std::fs::write(&script, "#!/usr/bin/env -S sh -e\necho hi\n").unwrap();
        let (mut needs, mut runs) = (Vec::new(), Vec::new());
        interpreters(&script, &mut needs, &mut runs, 0);
        assert_eq!(runs, [sh], "env runs sh: {needs:?}");
    }
}
