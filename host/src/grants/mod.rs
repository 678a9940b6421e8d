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

mod children;
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        lines: &Lines,
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
        let unix = children::unix_grants(&unix_raw, lines, job, problems);
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
        let children = children::from_raw(
            &children::RawChildren {
                user: raw.user.as_ref(),
                group: raw.group.as_ref(),
                system_paths: &raw.system_paths,
                tmp: raw.tmp.as_ref(),
            },
            (mode, unix),
            (&fs, &exec),
            lines,
            job,
            problems,
        );
        let history = HistoryScope::from_raw(raw.history.as_ref(), lines, job, problems);
        (problems.list.len() == before).then_some(Grants {
            fs,
            exec,
            net,
            env,
            limits,
            children,
            history,
        })
    }

    /// What the programs this job starts may do, in words, one line per
    /// kind, for `opsd check`, `opsd schedule show` and a run's log.
    pub fn child_sandbox(&self) -> Vec<String> {
        children::explain(self)
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
