//! The capability policy: what one job's plugin may touch.
//!
//! Default deny. Each kind of grant is its own module with the same life,
//! as in Spin's factors: parsed and checked when the config loads
//! ([`Grants::from_raw`]), turned into per-run state when a run starts, and
//! enforced on every call. Allow-lists are typed at load time (resolved
//! program paths, parsed addresses), never matched as strings at call time.
//!
//! A denial is recorded in the run's [`Violations`] as well as returned to
//! the guest, so a plugin that swallows the error still has its run marked
//! failed, with a message that says which grant to add.

pub mod confine;
mod contain;
pub mod env;
pub mod fs;
pub mod history;
pub mod limits;
pub mod net;
pub mod process;

use crate::diag::{Lines, Problems};
use serde::Deserialize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use toml::Spanned;

pub use contain::raise_descriptor_limit;
pub use env::EnvGrant;
pub use fs::{Access, FsGrant};
pub use history::HistoryScope;
pub use limits::Limits;
pub use net::NetPolicy;
pub use process::ExecPolicy;

/// `[job.grants]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrants {
    #[serde(default)]
    fs: Vec<Spanned<fs::RawFsGrant>>,
    #[serde(default)]
    exec: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    net: Vec<Spanned<String>>,
    #[serde(default)]
    ca: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default)]
    limits: Option<Spanned<limits::RawLimits>>,
    /// Run the job's programs as this user (opsd as root only).
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    /// More paths the job's programs may read besides the system base.
    #[serde(default)]
    system_paths: Vec<Spanned<String>>,
    /// A private /tmp of this size for the job's programs.
    tmp: Option<Spanned<String>>,
    /// Whose runs the plugin may read: "own" (default) or "all".
    history: Option<Spanned<String>>,
}

/// `[sandbox]` and `[job.sandbox]`: how strictly programs are confined.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSandbox {
    pub(crate) exec: Option<confine::Mode>,
}

/// Everything one job may use, validated and resolved.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub fs: Vec<FsGrant>,
    pub exec: ExecPolicy,
    pub net: NetPolicy,
    /// The daemon's environment variables passed to the plugin and its
    /// child processes.
    pub env: EnvGrant,
    pub limits: Limits,
    /// What the programs it starts run as and may read besides the grants.
    pub children: confine::ChildPolicy,
    /// Whose run history the plugin may read.
    pub history: HistoryScope,
}

/// What a grant allows, in words: an entry each, or one sentence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Explained {
    Each(Vec<String>),
    Whole(String),
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Explained::Each(v) if v.is_empty() => f.write_str("none"),
            Explained::Each(v) => f.write_str(&v.join(", ")),
            Explained::Whole(s) => f.write_str(s),
        }
    }
}

/// What putting a grant into a run's WASI context returns.
pub type Wiring<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// One kind of grant, each in its own file, as Spin's factors are: it is
/// parsed and checked when the config loads (its `from_raw`), says in
/// words what it allows (for `opsd check`, `schedule show` and messages),
/// puts itself into a run's WASI context, and words its own refusals
/// where it checks a call. A new kind is its file plus a line in
/// [`Grants::kinds`] and in [`Grants::from_raw`].
pub trait Kind: Send + Sync {
    /// Its key under `[job.grants]`.
    fn key(&self) -> &'static str;

    /// What it allows, in words.
    fn explain(&self) -> Explained;

    /// Puts the grant into a run's WASI context. Most kinds are checked on
    /// each host call instead, and add nothing here.
    fn wire<'a>(
        &'a self,
        _wasi: &'a mut wasmtime_wasi::WasiCtxBuilder,
        _violations: &'a Violations,
    ) -> Wiring<'a> {
        Box::pin(async { Ok(()) })
    }
}

impl Grants {
    /// Validates `[job.grants]`; problems are added to `problems` and
    /// `None` returned when any were found.
    pub(crate) fn from_raw(
        raw: &RawGrants,
        mode: confine::Mode,
        base: &Path,
        lines: &Lines<'_>,
        job: &str,
        problems: &mut Problems,
    ) -> Option<Grants> {
        let before = problems.list.len();
        let fs = fs::from_raw(&raw.fs, base, lines, job, problems);
        let exec = process::ExecPolicy::from_raw(&raw.exec, base, &fs, lines, job, problems);
        let (unix_raw, net_raw): (Vec<_>, Vec<_>) = raw
            .net
            .iter()
            .cloned()
            .partition(|e| e.get_ref().starts_with("unix:"));
        let mut unix = Vec::new();
        for entry in &unix_raw {
            let path = Path::new(&entry.get_ref()["unix:".len()..]);
            if path.is_absolute() {
                unix.push(confine::UnixGrant {
                    path: path.canonicalize().unwrap_or_else(|_| path.to_owned()),
                });
            } else {
                problems.push(
                    lines.at(entry),
                    Some(job),
                    format!(
                        "net grant `{}`: a Unix socket is named by its absolute path, such as \"unix:/run/postgresql/.s.PGSQL.5432\"",
                        entry.get_ref()
                    ),
                );
            }
        }
        let mut net = net::NetPolicy::from_raw(&net_raw, lines, job, problems);
        net.load_ca(&raw.ca, base, lines, job, problems);
        let env = EnvGrant::from_raw(&raw.env, lines, job, problems);
        let limits = match &raw.limits {
            None => Limits::default(),
            Some(l) => match Limits::from_raw(l.get_ref()) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(lines.at(l), Some(job), e);
                    Limits::default()
                }
            },
        };
        let run_as = raw.user.as_ref().and_then(|u| {
            confine::RunAs::lookup(
                u.get_ref(),
                raw.group.as_ref().map(|g| g.get_ref().as_str()),
            )
            .map_err(|e| problems.push(lines.at(u), Some(job), format!("grants.user: {e}")))
            .ok()
        });
        if let (None, Some(g)) = (&raw.user, &raw.group) {
            problems.push(
                lines.at(g),
                Some(job),
                "grants.group needs grants.user: name the user the programs run as",
            );
        }
        let mut system_paths = Vec::new();
        for p in &raw.system_paths {
            let path = Path::new(p.get_ref());
            if path.is_absolute() {
                system_paths.push(path.to_owned());
            } else {
                problems.push(
                    lines.at(p),
                    Some(job),
                    format!(
                        "system_paths entry `{}` must be absolute, such as \"/etc/postgresql-common\"",
                        p.get_ref()
                    ),
                );
            }
        }
        let tmp = raw.tmp.as_ref().and_then(|t| {
            let size = crate::diag::parse_size(t.get_ref())
                .map_err(|e| problems.push(lines.at(t), Some(job), format!("grants.tmp: {e}")))
                .ok()?;
            // The private /tmp covers the host's: nothing the job names
            // may live there.
            let hidden = fs
                .iter()
                .map(|g| g.host.clone())
                .chain(system_paths.iter().cloned())
                .chain(exec.programs.iter().map(|p| p.path.clone()))
                .find(|p| p.starts_with("/tmp"));
            match hidden {
                Some(p) => {
                    problems.push(
                        lines.at(t),
                        Some(job),
                        format!(
                            "grants.tmp gives the job's programs a /tmp of their own, which would hide {}; move it out of /tmp or drop `tmp`",
                            p.display()
                        ),
                    );
                    None
                }
                None => Some(size),
            }
        });
        let history = HistoryScope::from_raw(raw.history.as_ref(), lines, job, problems);
        (problems.list.len() == before).then_some(Grants {
            fs,
            exec,
            net,
            env,
            limits,
            children: confine::ChildPolicy {
                mode,
                run_as,
                system_paths,
                unix,
                tmp,
            },
            history,
        })
    }

    /// What the programs this job starts may do, in words, one line per
    /// kind, for `opsd check`, `opsd schedule show` and a run's log.
    pub fn child_sandbox(&self) -> Vec<String> {
        let support = confine::Support::get();
        let mut out = Vec::new();
        out.push(match (&self.children.run_as, support.root) {
            (Some(r), _) => format!(
                "run as user {} (uid {}, gid {}), with no capabilities and no way to gain any (no_new_privs)",
                r.user, r.uid, r.gid
            ),
            (None, true) => "run as root with no capabilities and no way to gain any (no_new_privs); set grants.user to run them as another user".into(),
            (None, false) => "run as opsd's own user, with no way to gain privileges (no_new_privs)".into(),
        });
        let mut reads: Vec<String> = vec!["the system base".into()];
        reads.extend(self.fs.iter().map(|g| g.host.display().to_string()));
        reads.extend(
            self.children
                .system_paths
                .iter()
                .map(|p| p.display().to_string()),
        );
        out.push(format!("read {}", reads.join(", ")));
        let writes: Vec<String> = self
            .fs
            .iter()
            .filter(|g| g.access == Access::ReadWrite)
            .map(|g| g.host.display().to_string())
            .collect();
        let mut writes = writes;
        if let Some(size) = self.children.tmp {
            writes.push(format!("a private /tmp of {} MiB", size >> 20));
        }
        out.push(if writes.is_empty() {
            "write nothing".into()
        } else {
            format!("write {} only", writes.join(", "))
        });
        out.push(format!(
            "run {} only (and what the kernel needs to start them)",
            self.exec.describe()
        ));
        let mut net = if self.net.is_empty() {
            "connect nowhere: no network at all".to_owned()
        } else {
            format!(
                "connect by TCP only to {} (UDP stays open, for DNS among others)",
                self.net.describe()
            )
        };
        if !self.children.unix.is_empty() {
            let unix: Vec<String> = self
                .children
                .unix
                .iter()
                .map(|u| u.path.display().to_string())
                .collect();
            net.push_str(&format!("; Unix sockets {}", unix.join(", ")));
        }
        out.push(net);
        out.push(
            "see and signal only processes they started (own PID namespace); no descriptor but stdin, stdout and stderr".into(),
        );
        let missing = support.missing();
        if !missing.is_empty() {
            out.push(match self.children.mode {
                confine::Mode::Strict => format!(
                    "cannot start on this machine, which lacks {} (set `[sandbox] exec = \"best-effort\"` to run them with less)",
                    missing.join("; ")
                ),
                confine::Mode::BestEffort => {
                    format!("run with less on this machine (best-effort): it lacks {}", missing.join("; "))
                }
            });
        }
        out
    }

    /// The granted environment variables that the daemon has, with values.
    pub fn env_values(&self) -> Vec<(String, String)> {
        self.env.values()
    }

    /// Every kind of grant a job has, in the order people read them: the
    /// one list a new kind joins.
    pub fn kinds(&self) -> [&dyn Kind; 5] {
        [&self.fs, &self.exec, &self.net, &self.env, &self.history]
    }

    /// Puts every kind into a run's WASI context.
    pub async fn wire(
        &self,
        wasi: &mut wasmtime_wasi::WasiCtxBuilder,
        violations: &Violations,
    ) -> Result<(), String> {
        for kind in self.kinds() {
            kind.wire(wasi, violations).await?;
        }
        Ok(())
    }
}

/// Grant violations seen during one run, shared by every checker (some run
/// outside the store, such as the socket address check).
#[derive(Clone, Default)]
pub struct Violations {
    seen: Arc<Mutex<Vec<String>>>,
    /// The run's granted secrets: a refusal quotes what the plugin asked
    /// for (a program's arguments, a path), which may hold one.
    secrets: Arc<std::sync::OnceLock<crate::secrets::Secrets>>,
}

impl std::fmt::Debug for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Violations").finish_non_exhaustive()
    }
}

impl Violations {
    /// Masks these values in every refusal recorded from now on (set once,
    /// before the plugin runs).
    pub fn mask(&self, secrets: crate::secrets::Secrets) {
        let _ = self.secrets.set(secrets);
    }

    /// `text` with the run's secrets masked, for anything else that
    /// quotes the plugin (a debug line with a program's arguments).
    pub fn masked(&self, text: &str) -> String {
        match self.secrets.get() {
            Some(s) => s.mask(text),
            None => text.to_owned(),
        }
    }

    /// Records a denial; the first hundred of a run are kept and logged, so
    /// a plugin looping on refused calls cannot flood the daemon's log.
    pub fn record(&self, message: String) {
        let message = self.masked(&message);
        if let Ok(mut v) = self.seen.lock()
            && v.len() < 100
        {
            tracing::warn!(denied = %crate::escape::line(&message), "grant violation");
            v.push(message);
        }
    }

    /// Everything denied so far.
    pub fn take(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}
