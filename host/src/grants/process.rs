//! Process grants: an allow-list of programs, resolved to absolute paths
//! when the config loads, and the host side of the plugin's
//! `process.run` import.
//!
//! A child gets exactly the argv the plugin passed (no shell), an
//! environment cleared down to the granted variables, a working directory
//! inside a grant, a time limit that never outlives the job's, and output
//! capped or sent straight to a granted file. It and everything it starts
//! are capped in number (`grants.limits.processes`) and killed when the
//! call returns, times out or its run ends: a program may not leave
//! processes behind, as systemd does not let a oneshot service.

use super::{Grants, Violations, fs};
use crate::bindings::opsd::plugin::process::{Command, ExecError, Exit, Input, Output};
use crate::config::{Lines, Problems};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use toml::Spanned;

/// One allowed program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// As written in the config: `pg_dump` or `/usr/bin/pg_dump`.
    pub name: String,
    /// Absolute path found when the config loaded; this is what runs.
    pub path: PathBuf,
}

/// The programs a job may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecPolicy {
    pub programs: Vec<Program>,
}

impl ExecPolicy {
    pub(crate) fn from_raw(
        raw: &[Spanned<String>],
        base: &Path,
        lines: &Lines<'_>,
        job: &str,
        problems: &mut Problems,
    ) -> ExecPolicy {
        let mut programs = Vec::new();
        for entry in raw {
            match resolve_program(entry.get_ref(), base) {
                Ok(path) => programs.push(Program {
                    name: entry.get_ref().clone(),
                    path,
                }),
                Err(e) => problems.push(lines.at(entry), Some(job), e),
            }
        }
        ExecPolicy { programs }
    }

    /// The program a plugin asked for, matched exactly against the name
    /// or the resolved path; anything else (`/usr/bin/../bin/sh`) is
    /// refused.
    pub fn lookup(&self, requested: &str) -> Result<&Program, String> {
        self.programs
            .iter()
            .find(|p| p.name == requested || p.path.as_os_str() == requested)
            .ok_or_else(|| {
                format!(
                    "program `{requested}` is not in the job's exec grant ({}); add it to `exec = [...]`",
                    if self.programs.is_empty() {
                        "empty".to_string()
                    } else {
                        self.programs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                    }
                )
            })
    }
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
}

fn deny(ctx: &ProcessContext<'_>, message: String) -> ExecError {
    ctx.violations.record(message.clone());
    ExecError::Denied(message)
}

/// Runs one command on a plugin's behalf, as far as the grants allow.
pub async fn run(ctx: &ProcessContext<'_>, cmd: Command) -> Result<Exit, ExecError> {
    let program = ctx
        .grants
        .exec
        .lookup(&cmd.program)
        .map_err(|m| deny(ctx, m))?
        .clone();
    let mut child = tokio::process::Command::new(&program.path);
    child.args(&cmd.args).env_clear().kill_on_drop(true);
    let mut contained = super::contain::Containment::new(ctx.grants.limits.processes);
    contained.apply(&mut child);
    for (name, value) in ctx.grants.env_values() {
        child.env(name, value);
    }
    for (name, value) in &cmd.env {
        if !ctx.grants.env.iter().any(|n| n == name) {
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
            .map_or_else(|| PathBuf::from("/"), |g| g.host.clone()),
    };
    child.current_dir(&cwd);

    let mut stdin_bytes = None;
    child.stdin(match &cmd.stdin {
        Input::None => Stdio::null(),
        Input::Bytes(b) => {
            stdin_bytes = Some(b.clone());
            Stdio::piped()
        }
        Input::File(p) => Stdio::from(fs::open_read(&ctx.grants.fs, p).map_err(|m| deny(ctx, m))?),
    });
    child.stdout(output_stdio(ctx, &cmd.stdout)?);
    child.stderr(output_stdio(ctx, &cmd.stderr)?);

    let budget = ctx.deadline.saturating_duration_since(Instant::now());
    let limit = cmd
        .timeout_ms
        .map(std::time::Duration::from_millis)
        .map_or(budget, |t| t.min(budget));
    let started = Instant::now();
    let mut proc = child
        .spawn()
        .map_err(|e| ExecError::Spawn(format!("{}: {e}", program.path.display())))?;
    let pid = proc.id();
    contained.started(pid);
    tracing::debug!(program = %program.path.display(), args = ?cmd.args, pid, "exec");

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

    let status = match tokio::time::timeout(limit, proc.wait()).await {
        Ok(status) => {
            status.map_err(|e| ExecError::Io(format!("waiting for {}: {e}", program.name)))?
        }
        Err(_) => {
            contained.kill_all();
            let _ = proc.wait().await;
            note_cap(ctx, &contained, &program);
            return Err(ExecError::Timeout(limit.as_millis() as u64));
        }
    };
    // Whatever it left running would hold its output pipes open.
    contained.kill_all();
    note_cap(ctx, &contained, &program);
    let (stdout, t1) = join_capture(out_task).await;
    let (stderr, t2) = join_capture(err_task).await;
    use std::os::unix::process::ExitStatusExt;
    Ok(Exit {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
        truncated: t1 || t2,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Fails the run if the program ran into its process cap: what it did
/// next (a shell's "Cannot fork") would not say which limit it was.
fn note_cap(ctx: &ProcessContext<'_>, contained: &super::contain::Containment, program: &Program) {
    if contained.hit_cap() {
        ctx.violations.record(format!(
            "process limit: `{}` and what it started tried to run more than {} processes at once; raise grants.limits.processes if the job needs more",
            program.name, ctx.grants.limits.processes
        ));
    }
}

fn output_stdio(ctx: &ProcessContext<'_>, out: &Output) -> Result<Stdio, ExecError> {
    Ok(match out {
        Output::Capture => Stdio::piped(),
        Output::Discard => Stdio::null(),
        Output::File(p) => {
            Stdio::from(fs::open_write(&ctx.grants.fs, p, false).map_err(|m| deny(ctx, m))?)
        }
        Output::Append(p) => {
            Stdio::from(fs::open_write(&ctx.grants.fs, p, true).map_err(|m| deny(ctx, m))?)
        }
    })
}

/// Reads a stream to its end, keeping at most `cap` bytes so a flood
/// neither blocks the child nor fills memory.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if room < n {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

async fn join_capture(task: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>) -> (Vec<u8>, bool) {
    match task {
        Some(t) => t.await.unwrap_or_default(),
        None => (Vec::new(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_bare_names_on_path_and_refuses_tricks() {
        let p = resolve_program("sh", Path::new("/")).unwrap();
        assert!(p.is_absolute());
        let policy = ExecPolicy {
            programs: vec![Program {
                name: "sh".into(),
                path: p.clone(),
            }],
        };
        assert!(policy.lookup("sh").is_ok());
        assert!(policy.lookup(p.to_str().unwrap()).is_ok());
        let e = policy.lookup("/usr/bin/../bin/sh").unwrap_err();
        assert!(e.contains("not in the job's exec grant"), "{e}");
        assert!(
            resolve_program("no-such-program-opsd", Path::new("/"))
                .unwrap_err()
                .contains("PATH")
        );
    }
}
