//! The configuration file: TOML in, a validated [`Config`] out.
//!
//! Two steps, as ripgrep does with its flags: serde reads the raw shape
//! (unknown keys are errors, with line and column), then [`Config::load`]
//! checks meaning (schedules, zones, paths, programs) and resolves
//! everything once. Code downstream never re-validates and never sees a
//! relative path. Every problem found is reported at once, each naming the
//! file, the line and the job.

use crate::diag::{Lines, Problems};
pub use crate::diag::{Problem, parse_duration};
use crate::grants::{self, Grants};
use crate::policy::{CatchUp, Overlap, Policy};
use crate::schedule::Schedule;
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// A configuration that passed validation; paths are absolute.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub path: PathBuf,
    /// sled store, compile cache and control socket live here.
    pub data_dir: PathBuf,
    /// `.wasm` plugins dropped here are loaded besides the built-ins.
    pub plugin_dir: PathBuf,
    /// The control socket the CLI talks to while a daemon runs.
    pub socket: PathBuf,
    /// Where `/health` and `/metrics` are served; none when disabled.
    pub http: Option<std::net::SocketAddr>,
    /// `[http] token` or `token_file`: the web console's buttons, and its
    /// pages off loopback, need it.
    pub http_token: Option<crate::http_token::HttpToken>,
    /// How long runs in progress may take to finish on SIGTERM.
    pub shutdown_grace: Duration,
    /// Webhooks for failures, recoveries, missed slots and alerts.
    pub notify: Vec<crate::notify::Target>,
    /// `[[alert]]`s: conditions that notify people, without a job.
    pub alerts: Vec<crate::monitor::alert::Alert>,
    /// Built-in plugins a file in `plugin_dir` may replace.
    pub override_builtin: Vec<String>,
    /// Runs that may execute at once; the rest wait their turn, so a burst
    /// of due jobs cannot exhaust memory.
    pub max_concurrent_runs: usize,
    /// A plugin's compiled code unused this long is handed back to the
    /// kernel (it is paged in again from the compile cache file when next
    /// run), so a daemon whose jobs run daily does not hold it all day;
    /// once every plugin's is, so are the pages of opsd's own binary.
    pub release_idle_code_after: Duration,
    /// How often the machine is sampled for `when` conditions, `opsd
    /// status` and `/metrics`.
    pub monitor_interval: Duration,
    /// The jobs that run. Set jobs aside with `set_aside`, which keeps
    /// `find_job`'s places in step; a list changed otherwise is searched.
    pub jobs: Vec<Job>,
    /// Jobs that cannot run as written; the others run without them.
    pub broken: Vec<BrokenJob>,
    /// The text this was read from: read again (not the file, which may
    /// have changed since) to see whether a broken job's cause went away.
    pub source: Arc<str>,
    /// The sha256 of `source`, hex.
    pub source_sha256: String,
    /// `[fleet]`: this host's part in a fleet that shares a PostgreSQL.
    pub fleet: Option<FleetSettings>,
    /// Each job's place in `jobs`, by name: every run looks its job up by
    /// name, and a search of the list made a burst of 10,000 due runs cost
    /// 10,000 searches of 10,000 jobs.
    job_places: HashMap<String, usize>,
}

/// `[fleet]`: where the fleet's PostgreSQL is, and who this host is in it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    pub postgres: FleetUrl,
    /// This host's name in the fleet (default: the hostname).
    pub host: String,
    /// What fleet jobs may ask of the hosts that run them (`role = "db"`).
    pub labels: BTreeMap<String, String>,
    /// CA certificates (PEM) the server's certificate may chain to,
    /// besides the public ones.
    pub ca: Option<PathBuf>,
    /// How long a claim on a fleet job's slot holds without renewal: a
    /// host that dies mid-run frees its slot after this long.
    pub lease: Duration,
}

/// Unless `[fleet] lease` says.
pub const DEFAULT_FLEET_LEASE: Duration = Duration::from_secs(30);

/// `scope = "fleet"`: the job runs once per fleet, on one eligible host.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetScope {
    /// `on = { role = "db" }`: labels a host must have to run it.
    pub on: BTreeMap<String, String>,
    /// A digest of the job as written (not as this host resolved it:
    /// program paths differ between machines) and its settings after
    /// `[defaults]`; hosts that disagree on it are not running one job.
    pub written: String,
}

impl FleetScope {
    /// Whether a host with `labels` may run the job.
    pub fn admits(&self, labels: &BTreeMap<String, String>) -> bool {
        self.on.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// `role=db, region=eu`, or `any host`.
    pub fn on_text(&self) -> String {
        if self.on.is_empty() {
            return "any host".into();
        }
        self.on
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where the connection string comes from.
#[derive(Clone, PartialEq)]
pub enum FleetUrl {
    /// Written in the file (`postgres = "..."`).
    Inline(String),
    /// In this environment variable (`postgres_env = "..."`), so a
    /// password stays out of the file.
    Env(String),
}

impl std::fmt::Debug for FleetUrl {
    /// Never the string itself: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetUrl::Inline(_) => f.write_str("Inline(..)"),
            FleetUrl::Env(name) => write!(f, "Env({name})"),
        }
    }
}

impl FleetSettings {
    /// The connection string, read from the environment when it is there.
    pub fn url(&self) -> Result<String, String> {
        match &self.postgres {
            FleetUrl::Inline(url) => Ok(url.clone()),
            FleetUrl::Env(name) => std::env::var(name).map_err(|_| {
                format!(
                    "postgres_env names {name}, which is not set in opsd's environment; set it (systemd: Environment= or EnvironmentFile=) or write postgres = \"...\""
                )
            }),
        }
    }

    /// The extra CA certificates, read now.
    pub fn ca_certs(&self) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
        match &self.ca {
            None => Ok(Vec::new()),
            Some(path) => {
                grants::net::read_ca_file(path).map_err(|e| format!("ca {}: {e}", path.display()))
            }
        }
    }
}

/// Runs at once unless `max_concurrent_runs` says: four per CPU, at least
/// eight.
pub fn default_max_concurrent_runs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(8)
        .max(8)
}

/// Where `/health` and `/metrics` listen unless `[http] listen` says
/// otherwise: loopback only.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9779";

/// Unless `release_idle_code_after` says.
pub const DEFAULT_RELEASE_IDLE_CODE_AFTER: Duration = Duration::from_secs(300);

/// Grace for runs in progress at SIGTERM, unless `shutdown_grace` says.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// One URL the monitor probes, and the certificate authorities its probe
/// trusts besides the public ones.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTarget {
    pub url: String,
    pub ca_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// One scheduled chore.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// Name of the plugin (built-in or from `plugin_dir`).
    pub plugin: String,
    /// [`Schedule::never`] for a job that runs only on `when`.
    pub schedule: Schedule,
    /// Conditions on the machine that run the job when they hold.
    pub when: Vec<crate::monitor::condition::Condition>,
    pub timezone: Tz,
    /// Wall-clock limit for one run.
    pub timeout: Duration,
    /// Catch-up, overlap, retries, jitter, retention.
    pub policy: Policy,
    /// Whether the scheduler fires it; `opsd schedule disable` overrides.
    pub enabled: bool,
    /// Refuse to run any plugin but the one with this content hash.
    pub plugin_sha256: Option<String>,
    pub grants: Grants,
    /// `[job.config]`, handed to the plugin as JSON.
    pub config: serde_json::Value,
    /// Line of each top-level key of `[job.config]`, for messages.
    pub config_lines: std::collections::BTreeMap<String, usize>,
    /// Line of the job's `[[job]]` header, for messages.
    pub line: usize,
    /// `scope = "fleet"`: once per fleet rather than on this host.
    pub fleet: Option<FleetScope>,
}

impl Job {
    /// A stable digest of what the job is, so the store can tell when a
    /// definition changed across restarts.
    pub fn definition_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let when: Vec<String> = self.when.iter().map(|c| format!("{c:?}")).collect();
        let text = format!(
            "{}\n{}\n{}\n{:?}\n{}\n{:?}\n{}\n{:?}\n{:?}",
            self.name,
            self.plugin,
            self.schedule.as_str(),
            when,
            self.timezone,
            self.timeout,
            self.config,
            self.grants,
            self.policy
        );
        let text = match &self.fleet {
            // Only then: a host job's hash stays what it was before
            // fleets, so an upgrade does not look like a changed job.
            Some(f) => format!("{text}\nfleet {:?}", f.on),
            None => text,
        };
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }

    /// What hosts of a fleet compare before running the job: the job as
    /// written, its settings, and the plugin's content.
    pub fn fleet_definition(&self, plugin_sha256: &str) -> Option<String> {
        use sha2::{Digest, Sha256};
        let f = self.fleet.as_ref()?;
        let text = format!(
            "{}\n{}\n{:?}\n{:?}\n{plugin_sha256}",
            f.written, self.timezone, self.timeout, self.policy
        );
        Some(hex::encode(&Sha256::digest(text.as_bytes())[..8]))
    }
}

/// Everything wrong with a configuration file, each naming file, line and
/// job, so an operator fixes them in one pass.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} has {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", self.path.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
            if let Some(job) = &p.job {
                write!(f, "job `{job}`: ")?;
            }
            f.write_str(&p.message)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<Spanned<String>>,
    plugin_dir: Option<Spanned<String>>,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    http: RawHttp,
    shutdown_grace: Option<Spanned<String>>,
    max_concurrent_runs: Option<Spanned<i64>>,
    release_idle_code_after: Option<Spanned<String>>,
    #[serde(default)]
    monitor: RawMonitor,
    #[serde(default)]
    notify: Vec<Spanned<RawNotify>>,
    #[serde(default)]
    alert: Vec<Spanned<crate::monitor::alert::RawAlert>>,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    sandbox: grants::RawSandbox,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    job: Vec<Spanned<RawJob>>,
    fleet: Option<Spanned<RawFleet>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    postgres: Option<Spanned<String>>,
    postgres_env: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    ca: Option<Spanned<String>>,
    lease: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    #[serde(default)]
    override_builtin: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    interval: Option<Spanned<String>>,
}

/// How often the machine is sampled unless `[monitor] interval` says.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    enabled: Option<bool>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    url: Spanned<String>,
    #[serde(default = "all_events")]
    on: Vec<crate::notify::Event>,
    #[serde(default)]
    jobs: Vec<Spanned<String>>,
    #[serde(default)]
    severities: Vec<Spanned<String>>,
    #[serde(default)]
    format: crate::notify::Format,
    max_per_minute: Option<Spanned<i64>>,
}

fn all_events() -> Vec<crate::notify::Event> {
    crate::notify::ALL_EVENTS.to_vec()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    socket: Option<Spanned<String>>,
}

/// Declares a raw struct with the settings a job may set itself or
/// inherit from `[defaults]` (serde cannot flatten and also refuse unknown
/// keys, so the fields are spelled out once here for both).
macro_rules! with_job_settings {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        struct $name {
            $($(#[$fmeta])* $field: $ty,)*
            #[serde(default)]
            timezone: Option<Spanned<String>>,
            #[serde(default)]
            timeout: Option<Spanned<String>>,
            #[serde(default)]
            catch_up: Option<Spanned<CatchUp>>,
            #[serde(default)]
            catch_up_deadline: Option<Spanned<String>>,
            #[serde(default)]
            overlap: Option<Spanned<Overlap>>,
            #[serde(default)]
            retries: Option<Spanned<u32>>,
            #[serde(default)]
            retry_backoff: Option<Spanned<String>>,
            #[serde(default)]
            retry_backoff_max: Option<Spanned<String>>,
            #[serde(default)]
            jitter: Option<Spanned<String>>,
            #[serde(default)]
            jitter_fixed: Option<Spanned<bool>>,
            #[serde(default)]
            keep_runs: Option<Spanned<usize>>,
            #[serde(default)]
            keep_days: Option<Spanned<u32>>,
        }
    };
}

with_job_settings! {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct RawDefaults {}
}

with_job_settings! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawJob {
        name: Spanned<String>,
        plugin: Spanned<String>,
        #[serde(default)]
        schedule: Option<Spanned<String>>,
        #[serde(default)]
        when: Option<Spanned<crate::monitor::condition::RawWhen>>,
        #[serde(default)]
        plugin_sha256: Option<Spanned<String>>,
        #[serde(default = "yes")]
        enabled: bool,
        #[serde(default)]
        grants: grants::RawGrants,
        #[serde(default)]
        sandbox: grants::RawSandbox,
        #[serde(default)]
        config: Option<Spanned<toml::Table>>,
        #[serde(default)]
        scope: Option<Spanned<String>>,
        #[serde(default)]
        on: Option<Spanned<BTreeMap<String, String>>>,
    }
}

/// A job's own setting, else the `[defaults]` one.
macro_rules! setting {
    ($job:expr, $defaults:expr, $field:ident) => {
        $job.$field.as_ref().or($defaults.$field.as_ref())
    };
}

/// Settings of one job after `[defaults]`: zone, timeout, policies.
struct Settings {
    timezone: Tz,
    timeout: Duration,
    policy: Policy,
}

fn job_settings(
    job: &RawJob,
    defaults: &RawDefaults,
    lines: &Lines,
    name: &str,
    problems: &mut Problems,
) -> Option<Settings> {
    let before = problems.list.len();
    let duration =
        |value: Option<&Spanned<String>>, key: &str, default: Duration, problems: &mut Problems| {
            match value {
                None => default,
                Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
                    problems.push(lines.at(v), Some(name), format!("{key}: {e}"));
                    default
                }),
            }
        };
    let timezone = match setting!(job, defaults, timezone) {
        None => Tz::UTC,
        Some(tz) => tz.get_ref().parse::<Tz>().unwrap_or_else(|_| {
            problems.push(
                lines.at(tz),
                Some(name),
                format!(
                    "unknown time zone `{}`: use an IANA name such as `Europe/Berlin` or `UTC`",
                    tz.get_ref()
                ),
            );
            Tz::UTC
        }),
    };
    let d = Policy::default();
    let timeout = duration(
        setting!(job, defaults, timeout),
        "timeout",
        DEFAULT_TIMEOUT,
        problems,
    );
    let deadline = setting!(job, defaults, catch_up_deadline)
        .map(|v| duration(Some(v), "catch_up_deadline", Duration::ZERO, problems));
    let policy = Policy {
        catch_up: setting!(job, defaults, catch_up).map_or(d.catch_up, |v| *v.get_ref()),
        catch_up_deadline: deadline,
        overlap: setting!(job, defaults, overlap).map_or(d.overlap, |v| *v.get_ref()),
        retries: setting!(job, defaults, retries).map_or(d.retries, |v| *v.get_ref()),
        retry_backoff: duration(
            setting!(job, defaults, retry_backoff),
            "retry_backoff",
            d.retry_backoff,
            problems,
        ),
        retry_backoff_max: duration(
            setting!(job, defaults, retry_backoff_max),
            "retry_backoff_max",
            d.retry_backoff_max,
            problems,
        ),
        jitter: duration(
            setting!(job, defaults, jitter),
            "jitter",
            d.jitter,
            problems,
        ),
        jitter_fixed: setting!(job, defaults, jitter_fixed)
            .map_or(d.jitter_fixed, |v| *v.get_ref()),
        keep_runs: setting!(job, defaults, keep_runs).map_or(d.keep_runs, |v| *v.get_ref()),
        keep_days: setting!(job, defaults, keep_days).map_or(d.keep_days, |v| *v.get_ref()),
    };
    check_settings(job, defaults, lines, name, (timeout, &policy), problems);
    (problems.list.len() == before).then_some(Settings {
        timezone,
        timeout,
        policy,
    })
}

/// Settings that parse but make no sense together.
fn check_settings(
    job: &RawJob,
    defaults: &RawDefaults,
    lines: &Lines,
    name: &str,
    (timeout, policy): (Duration, &Policy),
    problems: &mut Problems,
) {
    if timeout.is_zero() {
        let line = setting!(job, defaults, timeout).and_then(|t| lines.at(t));
        problems.push(line, Some(name), "timeout must be more than zero");
    }
    if policy.retry_backoff > policy.retry_backoff_max {
        let line = setting!(job, defaults, retry_backoff).and_then(|t| lines.at(t));
        problems.push(
            line,
            Some(name),
            "retry_backoff is longer than retry_backoff_max",
        );
    }
    if let Some(k) = setting!(job, defaults, keep_runs)
        && *k.get_ref() == 0
    {
        problems.push(
            lines.at(k),
            Some(name),
            "keep_runs = 0 would delete every run as it finishes; keep at least 1",
        );
    }
}

fn yes() -> bool {
    true
}

/// One hour: long enough for a backup, short enough that a hung plugin is
/// noticed the same day.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The name of the `[[job]]` whose block holds byte `offset` of `text`,
/// for errors TOML reports before there are jobs to name (unknown keys,
/// wrong types). Read from the text, since it did not deserialize.
fn job_at(text: &str, offset: usize) -> Option<String> {
    job_block(text, offset).and_then(|(_, name)| name)
}

/// The bytes of the `[[job]]` block (its sub-tables included) that holds
/// byte `offset` of `text`, and the job's name when the block gives one.
fn job_block(text: &str, offset: usize) -> Option<(std::ops::Range<usize>, Option<String>)> {
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        lines.push((at, line.trim()));
        at += line.len();
    }
    let top_header =
        |l: &str| l.starts_with('[') && !l.starts_with("[job.") && !l.starts_with("[[job.");
    let here = lines.iter().rposition(|(start, _)| *start <= offset)?;
    // The nearest header above decides; a job's sub-tables belong to the
    // `[[job]]` above them.
    let header = lines[..=here].iter().rposition(|(_, l)| top_header(l))?;
    if !lines[header].1.starts_with("[[job]]") {
        return None;
    }
    let end = lines[header + 1..]
        .iter()
        .find(|(_, l)| top_header(l))
        .map_or(text.len(), |(start, _)| *start);
    let name = lines[header + 1..]
        .iter()
        .take_while(|(_, l)| !l.starts_with('['))
        .find_map(|(_, l)| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "name").then_some(())?;
            toml_string(value)
        });
    Some((lines[header].0..end, name))
}

/// The string a `key = VALUE` line's value is, read on its own (for files
/// that did not parse as a whole).
fn toml_string(value: &str) -> Option<String> {
    toml::from_str::<toml::Table>(&format!("v = {}", value.trim()))
        .ok()?
        .remove("v")?
        .as_str()
        .map(str::to_owned)
}

/// `text` with the bytes of `range` made spaces (newlines kept), so the
/// rest parses without them and keeps its line numbers.
fn blank(text: &str, range: std::ops::Range<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..range.start]);
    // A space per byte, not per character: offsets after the block, which
    // errors and line numbers are counted in, stay where they were.
    for c in text[range.clone()].chars() {
        if c == '\n' {
            out.push('\n');
        } else {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    out.push_str(&text[range.end..]);
    out
}

/// Parses the file's TOML; a `[[job]]` whose block does not deserialize
/// (an unknown key, a wrong type) is set aside as broken with the error,
/// and the rest is parsed without it. An error outside every job is the
/// file's.
fn parse_raw(text: &str) -> Result<(RawConfig, Vec<BrokenJob>), Problem> {
    let lines = Lines::new(text);
    let mut work = text.to_owned();
    let mut broken = Vec::new();
    loop {
        let e = match toml::from_str::<RawConfig>(&work) {
            Ok(raw) => return Ok((raw, broken)),
            Err(e) => e,
        };
        let problem = Problem {
            line: e.span().map(|s| lines.of(s.start)),
            job: e.span().and_then(|s| job_at(&work, s.start)),
            message: e.message().trim().to_string(),
        };
        let Some((range, name)) = e.span().and_then(|s| job_block(&work, s.start)) else {
            return Err(problem);
        };
        if work[range.clone()].trim().is_empty() {
            return Err(problem);
        }
        let line = lines.of(range.start);
        broken.push(BrokenJob {
            name: name.unwrap_or_else(|| format!("(the job at line {line})")),
            plugin: None,
            line,
            problems: vec![problem],
        });
        work = blank(&work, range);
    }
}

/// A job the configuration defines that cannot run as written. The rest
/// of the configuration runs without it; it is shown broken, with why,
/// wherever jobs are listed, until it is fixed or its cause goes away.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokenJob {
    pub name: String,
    pub plugin: Option<String>,
    /// The line of its `[[job]]`.
    pub line: usize,
    pub problems: Vec<Problem>,
}

impl BrokenJob {
    /// Its problems in words, each with its line.
    pub fn reasons(&self) -> Vec<String> {
        self.problems
            .iter()
            .map(|p| match p.line {
                Some(line) => format!("line {line}: {}", p.message),
                None => p.message.clone(),
            })
            .collect()
    }
}

impl Config {
    /// Loads the configuration at `path`. As root, whoever may write the
    /// config or the data directory (the compile cache) is root too: they are
    /// refused, as cron and sshd do. A user's own opsd has no more rights
    /// than the user, so a group-writable checkout (umask 002) is the user's
    /// business. Used at start and on every reload.
    pub fn load_trusted(path: &Path) -> anyhow::Result<Config> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            crate::trust::check(path).map_err(|why| {
                anyhow::anyhow!("not reading the configuration {}: {why}", path.display())
            })?;
        }
        let config = Config::load(path)?;
        if root {
            crate::trust::check(&config.data_dir).map_err(|why| {
                anyhow::anyhow!(
                    "not using data_dir {} (from {}): {why}",
                    config.data_dir.display(),
                    path.display()
                )
            })?;
        }
        Ok(config)
    }

    /// Jobs that have `when` conditions, with them.
    pub fn conditions(&self) -> Vec<(&str, &[crate::monitor::condition::Condition])> {
        self.jobs
            .iter()
            .filter(|j| !j.when.is_empty())
            .map(|j| (j.name.as_str(), j.when.as_slice()))
            .collect()
    }

    /// What the monitor must measure besides the machine's own figures:
    /// the paths disk conditions (of jobs and alerts) watch, and the URLs
    /// they probe, each once, with the certificate authorities its probe
    /// trusts besides the public ones: the `ca` grants of the jobs whose
    /// conditions name it.
    pub fn watched(&self) -> (Vec<String>, Vec<ProbeTarget>) {
        use crate::monitor::condition::Metric;
        let (mut paths, mut urls): (Vec<String>, Vec<ProbeTarget>) = (Vec::new(), Vec::new());
        let of_jobs = self.jobs.iter().flat_map(|j| {
            j.when
                .iter()
                .map(move |c| (c, j.grants.net.ca_roots.as_slice()))
        });
        let of_alerts = self
            .alerts
            .iter()
            .map(|a| (&a.condition, a.ca_roots.as_slice()));
        for (c, roots) in of_jobs.chain(of_alerts) {
            if let Metric::DiskUsedPercent(p) = &c.metric
                && !paths.contains(p)
            {
                paths.push(p.clone());
            }
            if let Some(u) = c.metric.url() {
                let i = match urls.iter().position(|t| t.url == u) {
                    Some(i) => i,
                    None => {
                        urls.push(ProbeTarget {
                            url: u.to_owned(),
                            ca_roots: Vec::new(),
                        });
                        urls.len() - 1
                    }
                };
                for r in roots {
                    if !urls[i].ca_roots.contains(r) {
                        urls[i].ca_roots.push(r.clone());
                    }
                }
            }
        }
        (paths, urls)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            problems: vec![Problem {
                line: None,
                job: None,
                message: format!("cannot read it: {e}"),
            }],
        })?;
        Self::parse(path, &text)
    }

    /// Validates configuration text that came from `path`; relative paths
    /// in it are taken relative to the file's directory. Section by
    /// section, then the checks that span jobs; every problem is kept, so
    /// the operator fixes them in one pass.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let fail = |problems| ConfigError {
            path: path.clone(),
            problems,
        };
        let lines = Lines::new(text);
        let (raw, unparsed) = parse_raw(text).map_err(|p| fail(vec![p]))?;
        let mut problems = Problems { list: Vec::new() };
        let p = &mut problems;

        let places = Places::read(&raw, &base, &lines, p);
        let http = http_listen(&raw.http, &lines, p);
        let http_token = crate::http_token::read(
            raw.http.token.as_ref(),
            raw.http.token_file.as_ref(),
            &path,
            &base,
            &lines,
            p,
        );
        let setting = |value: &Option<Spanned<String>>, key: &str, default, p: &mut Problems| {
            duration_setting(value.as_ref(), key, default, &lines, p)
        };
        let shutdown_grace = setting(
            &raw.shutdown_grace,
            "shutdown_grace",
            DEFAULT_SHUTDOWN_GRACE,
            p,
        );
        let release_idle_code_after = setting(
            &raw.release_idle_code_after,
            "release_idle_code_after",
            DEFAULT_RELEASE_IDLE_CODE_AFTER,
            p,
        );
        let monitor_interval = monitor_interval(&raw.monitor, &lines, p);
        let notify = notify_targets(&raw.notify, &lines, p);
        let alerts = alerts(&raw.alert, &base, &lines, p);
        let fleet = raw
            .fleet
            .as_ref()
            .and_then(|f| fleet_settings(f, &base, &lines, p));

        let mut names = BTreeSet::new();
        let written = written_fleet_jobs(&raw, text);
        let jobs: Vec<Job> = raw
            .job
            .iter()
            .filter_map(|spanned| {
                job(
                    spanned,
                    &raw,
                    (text, &lines),
                    &base,
                    fleet.as_ref(),
                    &written,
                    &mut names,
                    p,
                )
            })
            .collect();
        names.extend(unparsed.iter().map(|b| b.name.clone()));
        places.check_grants(&jobs, p);
        check_program_writers(&jobs, p);
        if let Some(listen) = http {
            check_http_reach(&jobs, listen, p);
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            check_program_owners(&jobs, p);
        }
        check_override_builtin(&raw.plugins, &lines, p);
        check_notify_jobs(&raw.notify, &names, &lines, p);
        let max_concurrent_runs = max_concurrent_runs(raw.max_concurrent_runs.as_ref(), &lines, p);
        let (jobs, broken) =
            set_aside_broken(jobs, unparsed, problems.list, &raw, &lines).map_err(fail)?;
        Ok(Config {
            job_places: job_places(&jobs),
            max_concurrent_runs,
            release_idle_code_after,
            monitor_interval,
            path,
            data_dir: places.data_dir,
            plugin_dir: places.plugin_dir,
            socket: places.socket,
            http,
            http_token,
            shutdown_grace,
            notify,
            alerts,
            override_builtin: raw
                .plugins
                .override_builtin
                .iter()
                .map(|o| o.get_ref().clone())
                .collect(),
            jobs,
            broken,
            source: Arc::from(text),
            source_sha256: source_sha256(text),
            fleet,
        })
    }

    /// The job with this name, if there is one: found by its place, so as
    /// cheap with 10,000 jobs as with ten. A name with no place (no such
    /// job, or `jobs` changed other than by `set_aside`) is searched for.
    pub fn find_job(&self, name: &str) -> Option<&Job> {
        match self.job_places.get(name).and_then(|&i| self.jobs.get(i)) {
            Some(job) if job.name == name => Some(job),
            // `jobs` is public: a list changed after parsing is searched.
            _ => self.jobs.iter().find(|j| j.name == name),
        }
    }

    /// Moves jobs found unable to run after parsing (their plugin refuses
    /// their config, say) from `jobs` to `broken`, in file order.
    pub fn set_aside(&mut self, broken: Vec<BrokenJob>) {
        let names: BTreeSet<&str> = broken.iter().map(|b| b.name.as_str()).collect();
        self.jobs.retain(|j| !names.contains(j.name.as_str()));
        self.job_places = job_places(&self.jobs);
        self.broken.extend(broken);
        self.broken.sort_by_key(|b| b.line);
    }

    /// The job with this name, or an error listing the names there are.
    pub fn job(&self, name: &str) -> Result<&Job, UnknownJob> {
        self.find_job(name).ok_or_else(|| UnknownJob {
            name: name.to_owned(),
            config: self.path.clone(),
            known: self.jobs.iter().map(|j| j.name.clone()).collect(),
            broken: self
                .broken
                .iter()
                .find(|b| b.name == name)
                .cloned()
                .map(Box::new),
        })
    }
}

/// Splits the problems found: any that is not one job's is the file's,
/// and the file is refused with every problem listed; otherwise each job
/// with a problem is set aside as broken, with its problems, and the
/// others run.
fn set_aside_broken(
    mut jobs: Vec<Job>,
    mut broken: Vec<BrokenJob>,
    problems: Vec<Problem>,
    raw: &RawConfig,
    lines: &Lines,
) -> Result<(Vec<Job>, Vec<BrokenJob>), Vec<Problem>> {
    if problems.iter().any(|p| p.job.is_none()) {
        let mut all: Vec<Problem> = broken.into_iter().flat_map(|b| b.problems).collect();
        all.extend(problems);
        all.sort_by_key(|p| p.line);
        return Err(all);
    }
    for p in problems {
        let name = p.job.clone().unwrap_or_default();
        match broken.iter_mut().find(|b| b.name == name) {
            Some(b) => b.problems.push(p),
            None => {
                let raw_job = raw.job.iter().find(|j| *j.get_ref().name.get_ref() == name);
                broken.push(BrokenJob {
                    plugin: raw_job.map(|j| j.get_ref().plugin.get_ref().clone()),
                    line: raw_job.and_then(|j| lines.at(j)).or(p.line).unwrap_or(0),
                    name,
                    problems: vec![p],
                });
            }
        }
    }
    jobs.retain(|j| !broken.iter().any(|b| b.name == j.name));
    broken.sort_by_key(|b| b.line);
    Ok((jobs, broken))
}

/// Each job's place in `jobs` by name; the first, should a name repeat.
fn job_places(jobs: &[Job]) -> HashMap<String, usize> {
    let mut places = HashMap::with_capacity(jobs.len());
    for (place, job) in jobs.iter().enumerate() {
        places.entry(job.name.clone()).or_insert(place);
    }
    places
}

/// The hex sha256 of a configuration's text: how the CLI tells whether
/// the file on disk is what a daemon runs.
pub fn source_sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Where the control socket of the configuration at `path` is, read as
/// leniently as can be: a CLI command finds the running daemon even when
/// the file does not load (a broken edit not yet applied).
pub fn socket_hint(path: &Path) -> PathBuf {
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Line by line: the file may not parse as TOML at all.
    let mut section = String::new();
    let (mut data_dir, mut socket) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = toml_string(value);
        match (section.as_str(), key.trim()) {
            ("", "data_dir") => data_dir = value,
            ("[api]", "socket") => socket = value,
            _ => {}
        }
    }
    let data_dir = data_dir.map_or_else(default_data_dir, |d| base.join(d));
    socket.map_or_else(|| data_dir.join("opsd.sock"), |s| base.join(s))
}

/// Where opsd keeps what it trusts: its store and compile cache, the
/// plugins it loads, its control socket.
struct Places {
    data_dir: PathBuf,
    plugin_dir: PathBuf,
    socket: PathBuf,
}

impl Places {
    fn read(raw: &RawConfig, base: &Path, lines: &Lines, problems: &mut Problems) -> Places {
        let data_dir = match &raw.data_dir {
            Some(d) => base.join(d.get_ref()),
            None => default_data_dir(),
        };
        let plugin_dir = match &raw.plugin_dir {
            Some(d) => base.join(d.get_ref()),
            None => data_dir.join("plugins"),
        };
        let socket = match &raw.api.socket {
            Some(s) => base.join(s.get_ref()),
            None => data_dir.join("opsd.sock"),
        };
        if socket.as_os_str().len() >= 100 {
            problems.push(
                raw.api.socket.as_ref().and_then(|s| lines.at(s)),
                None,
                format!(
                    "control socket path {} is too long for a Unix socket; set [api] socket to a shorter path",
                    socket.display()
                ),
            );
        }
        for (key, raw_path, path) in [
            ("data_dir", &raw.data_dir, &data_dir),
            ("plugin_dir", &raw.plugin_dir, &plugin_dir),
        ] {
            if path.exists() && !path.is_dir() {
                problems.push(
                    raw_path.as_ref().and_then(|p| lines.at(p)),
                    None,
                    format!(
                        "{key} {} is not a directory; point {key} at a directory (opsd makes it when it is missing)",
                        path.display()
                    ),
                );
            }
        }
        Places {
            data_dir,
            plugin_dir,
            socket,
        }
    }

    /// Nothing a plugin or its programs may write or reach is something
    /// the daemon trusts.
    fn check_grants(&self, jobs: &[Job], problems: &mut Problems) {
        let Places {
            data_dir,
            plugin_dir,
            socket,
        } = self;
        // Nothing a plugin may write is something the daemon trusts: its
        // store and compile cache (data_dir, which holds other jobs'
        // history too: not even read), its control socket, the plugins it
        // loads.
        let real = |q: &Path| q.canonicalize().unwrap_or_else(|_| q.to_owned());
        let overlaps = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        for job in jobs {
            for g in &job.grants.fs {
                let host = real(&g.host);
                let rw = g.access == grants::Access::ReadWrite;
                let clash = if overlaps(&host, &real(data_dir)) {
                    Some(format!(
                        "opsd's data directory {} (its store, with every job's history, its compile cache and control socket)",
                        data_dir.display()
                    ))
                } else if rw && overlaps(&host, &real(plugin_dir)) {
                    Some(format!(
                        "opsd's plugin directory {} (the code it loads)",
                        plugin_dir.display()
                    ))
                } else if rw && real(socket).starts_with(&host) {
                    Some(format!("opsd's control socket {}", socket.display()))
                } else {
                    None
                };
                if let Some(what) = clash {
                    problems.push(
                        Some(job.line),
                        Some(&job.name),
                        format!(
                            "fs grant {} -> {} ({}) reaches {what}; a plugin may never touch what opsd trusts: grant a directory outside it",
                            g.guest,
                            g.host.display(),
                            if rw { "rw" } else { "ro" }
                        ),
                    );
                }
            }
        }
        // A job's programs never reach what the daemon trusts through a
        // Unix socket grant: its control socket drives every job.
        let trusted = |p: &Path| {
            let real = |q: &Path| q.canonicalize().unwrap_or_else(|_| q.to_owned());
            p == socket
                || p == real(socket)
                || p.starts_with(real(data_dir))
                || p.starts_with(data_dir)
        };
        for job in jobs {
            for u in job.grants.children.unix.iter().filter(|u| trusted(&u.path)) {
                problems.push(
                    Some(job.line),
                    Some(&job.name),
                    format!(
                        "net grant `unix:{}` is opsd's own control socket or data directory; a job's programs may never reach it",
                        u.path.display()
                    ),
                );
            }
        }
    }
}

/// `[http] listen`, unless `enabled = false`.
fn http_listen(
    raw: &RawHttp,
    lines: &Lines,
    problems: &mut Problems,
) -> Option<std::net::SocketAddr> {
    if raw.enabled == Some(false) {
        None
    } else {
        let text = raw
            .listen
            .as_ref()
            .map_or(DEFAULT_HTTP_LISTEN, |l| l.get_ref().as_str());
        match text.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(
                    raw.listen.as_ref().and_then(|l| lines.at(l)),
                    None,
                    format!(
                        "[http] listen `{text}` is not an address:port such as `127.0.0.1:9779`"
                    ),
                );
                None
            }
        }
    }
}

/// A duration setting: its default when absent, a problem naming the
/// key when it does not parse.
fn duration_setting(
    value: Option<&Spanned<String>>,
    key: &str,
    default: Duration,
    lines: &Lines,
    problems: &mut Problems,
) -> Duration {
    match value {
        None => default,
        Some(g) => parse_duration(g.get_ref()).unwrap_or_else(|e| {
            problems.push(lines.at(g), None, format!("{key}: {e}"));
            default
        }),
    }
}

/// `[fleet]`, checked: one source for the connection string, a host name
/// and labels that can be matched, a CA file that is there.
fn fleet_settings(
    raw: &Spanned<RawFleet>,
    base: &Path,
    lines: &Lines,
    problems: &mut Problems,
) -> Option<FleetSettings> {
    let f = raw.get_ref();
    let at = lines.at(raw);
    let postgres = match (&f.postgres, &f.postgres_env) {
        (Some(url), None) => {
            let u = url.get_ref();
            if parse_fleet_url(u).is_err() {
                problems.push(
                    lines.at(url),
                    None,
                    "[fleet] postgres is not a PostgreSQL connection string; write postgres://USER@HOST:PORT/DB?sslmode=require (or keep it out of the file with postgres_env = \"VARIABLE\")",
                );
                return None;
            }
            FleetUrl::Inline(u.clone())
        }
        (None, Some(name)) => {
            let n = name.get_ref();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                problems.push(
                    lines.at(name),
                    None,
                    format!("[fleet] postgres_env `{n}` is not an environment variable name"),
                );
                return None;
            }
            FleetUrl::Env(n.clone())
        }
        (Some(_), Some(_)) => {
            problems.push(
                at,
                None,
                "[fleet] has both postgres and postgres_env; keep one",
            );
            return None;
        }
        (None, None) => {
            problems.push(
                at,
                None,
                "[fleet] needs postgres = \"postgres://...\" or postgres_env = \"VARIABLE\" holding it",
            );
            return None;
        }
    };
    let host = match &f.host {
        Some(h) => h.get_ref().clone(),
        None => crate::system::hostname(),
    };
    if host.is_empty()
        || host.len() > 253
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        problems.push(
            f.host.as_ref().and_then(|h| lines.at(h)).or(at),
            None,
            format!("[fleet] host {host:?} cannot name a host in the fleet: 1 to 253 characters, no spaces; set host = \"NAME\""),
        );
        return None;
    }
    let mut labels = BTreeMap::new();
    for (k, v) in &f.labels {
        let key_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        let value = v.get_ref();
        if !key_ok || value.is_empty() || value.chars().any(char::is_control) {
            problems.push(
                lines.at(v),
                None,
                format!("[fleet] labels: `{k} = {value:?}`: a label is a lowercase name (letters, digits, `_`, `-`) and a non-empty value"),
            );
            continue;
        }
        labels.insert(k.clone(), value.clone());
    }
    let ca = f.ca.as_ref().map(|c| base.join(c.get_ref()));
    if let (Some(path), Some(c)) = (&ca, &f.ca)
        && let Err(e) = grants::net::read_ca_file(path)
    {
        problems.push(
            lines.at(c),
            None,
            format!("[fleet] ca {}: {e}", path.display()),
        );
    }
    let lease = duration_setting(
        f.lease.as_ref(),
        "[fleet] lease",
        DEFAULT_FLEET_LEASE,
        lines,
        problems,
    );
    if let Some(l) = &f.lease
        && !(MIN_FLEET_LEASE..=MAX_FLEET_LEASE).contains(&lease)
    {
        problems.push(
            lines.at(l),
            None,
            format!(
                "[fleet] lease = {:?}: a lease is between {} and {} (renewed every third of it while a run goes on)",
                l.get_ref(),
                humantime::format_duration(MIN_FLEET_LEASE),
                humantime::format_duration(MAX_FLEET_LEASE)
            ),
        );
    }
    Some(FleetSettings {
        postgres,
        host,
        labels,
        ca,
        lease,
    })
}

/// The shortest lease: renewals every second, no shorter.
const MIN_FLEET_LEASE: Duration = Duration::from_secs(3);

/// The longest lease: a dead host's slot waits no longer than this.
const MAX_FLEET_LEASE: Duration = Duration::from_secs(3600);

/// `scope` and `on` of one job: `None` for a host job.
fn fleet_scope(
    raw_job: &RawJob,
    written: Option<&toml::Table>,
    fleet: Option<&FleetSettings>,
    lines: &Lines,
    name: &str,
    problems: &mut Problems,
) -> Option<FleetScope> {
    let scope = raw_job.scope.as_ref();
    let is_fleet = match scope.map(|s| s.get_ref().as_str()) {
        None | Some("host") => false,
        Some("fleet") => true,
        Some(other) => {
            problems.push(
                scope.and_then(|s| lines.at(s)),
                Some(name),
                format!("scope = {other:?}: a job's scope is \"host\" (runs on this host, the default) or \"fleet\" (once per fleet)"),
            );
            return None;
        }
    };
    if !is_fleet {
        if let Some(on) = &raw_job.on {
            problems.push(
                lines.at(on),
                Some(name),
                "`on` says which hosts of a fleet may run a fleet job; add scope = \"fleet\" or remove it",
            );
        }
        return None;
    }
    let at = scope.and_then(|s| lines.at(s));
    if fleet.is_none() {
        problems.push(
            at,
            Some(name),
            "scope = \"fleet\" needs a [fleet] section naming the fleet's PostgreSQL (postgres_env = \"VARIABLE\")",
        );
    }
    if raw_job.when.is_some() {
        problems.push(
            at,
            Some(name),
            "a `when` condition watches this machine, and a fleet job runs once for all of them; keep the condition on a scope = \"host\" job",
        );
    }
    if raw_job
        .schedule
        .as_ref()
        .is_some_and(|s| s.get_ref().trim() == "@reboot")
    {
        problems.push(
            at,
            Some(name),
            "@reboot is each host's own start; a fleet job needs a schedule all hosts share",
        );
    }
    let mut on = BTreeMap::new();
    if let Some(raw_on) = &raw_job.on {
        for (k, v) in raw_on.get_ref() {
            on.insert(k.clone(), v.clone());
        }
    }
    let mut table = written.cloned().unwrap_or_default();
    table.remove("enabled");
    let written =
        serde_json::to_string(&toml_to_json(toml::Value::Table(table))).unwrap_or_default();
    Some(FleetScope { on, written })
}

/// A connection string as opsd means it. `sslmode=verify-full` and
/// `verify-ca` (libpq's names, which tokio-postgres does not know) are
/// `require`: rustls always checks the chain and the host name. `prefer`
/// (also tokio-postgres's default when no sslmode is written) would fall
/// back to plaintext whenever the server, or anyone in the middle, says
/// "no TLS", and hand it the password; so it means `require` for every
/// host off this machine. Plaintext there takes `sslmode=disable`.
pub fn parse_fleet_url(url: &str) -> Result<tokio_postgres::Config, String> {
    use tokio_postgres::config::{Host, SslMode};
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        format!(
            "the PostgreSQL connection string does not parse ({e}); write postgres://USER@HOST:PORT/DB?sslmode=require"
        )
    })?;
    let local = |h: &Host| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    if config.get_ssl_mode() == SslMode::Prefer && !config.get_hosts().iter().all(local) {
        config.ssl_mode(SslMode::Require);
    }
    Ok(config)
}

/// `[monitor] interval`, at least a second.
fn monitor_interval(raw: &RawMonitor, lines: &Lines, problems: &mut Problems) -> Duration {
    match &raw.interval {
        None => DEFAULT_MONITOR_INTERVAL,
        Some(g) => match parse_duration(g.get_ref()) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                problems.push(lines.at(g), None, "[monitor] interval must be at least 1s");
                DEFAULT_MONITOR_INTERVAL
            }
            Err(e) => {
                problems.push(lines.at(g), None, format!("[monitor] interval: {e}"));
                DEFAULT_MONITOR_INTERVAL
            }
        },
    }
}

/// `[[notify]]` webhooks: each an http or https URL.
fn notify_targets(
    raw: &[Spanned<RawNotify>],
    lines: &Lines,
    problems: &mut Problems,
) -> Vec<crate::notify::Target> {
    let mut notify = Vec::new();
    for n in raw {
        let url_text = n.get_ref().url.get_ref();
        match url_text.parse::<hyper::Uri>() {
            Ok(url)
                if matches!(url.scheme_str(), Some("http" | "https")) && url.host().is_some() =>
            {
                let mut severities = Vec::new();
                for s in &n.get_ref().severities {
                    match crate::record::Severity::parse(s.get_ref()) {
                        Ok(s) => severities.push(s),
                        Err(e) => {
                            problems.push(lines.at(s), None, format!("[[notify]] severities: {e}"))
                        }
                    }
                }
                let max_per_minute = match &n.get_ref().max_per_minute {
                    None => crate::notify::DEFAULT_MAX_PER_MINUTE,
                    Some(m) => match u32::try_from(*m.get_ref()) {
                        Ok(v @ 1..=10_000) => v,
                        _ => {
                            problems.push(
                                lines.at(m),
                                None,
                                format!(
                                    "[[notify]] max_per_minute must be from 1 to 10000, not {}",
                                    m.get_ref()
                                ),
                            );
                            crate::notify::DEFAULT_MAX_PER_MINUTE
                        }
                    },
                };
                notify.push(crate::notify::Target {
                    url,
                    on: n.get_ref().on.clone(),
                    jobs: n
                        .get_ref()
                        .jobs
                        .iter()
                        .map(|j| j.get_ref().clone())
                        .collect(),
                    severities,
                    format: n.get_ref().format,
                    max_per_minute,
                });
            }
            _ => problems.push(
                lines.at(&n.get_ref().url),
                None,
                format!("[[notify]] url `{url_text}` is not an http:// or https:// URL"),
            ),
        }
    }
    notify
}

/// `[[alert]]`s: each checked, names unique.
fn alerts(
    raw: &[Spanned<crate::monitor::alert::RawAlert>],
    base: &Path,
    lines: &Lines,
    problems: &mut Problems,
) -> Vec<crate::monitor::alert::Alert> {
    let mut out: Vec<crate::monitor::alert::Alert> = Vec::new();
    let mut seen = BTreeSet::new();
    for a in raw {
        // Named twice is a problem even when the first is refused too.
        if let Some(name) = &a.get_ref().name
            && !seen.insert(name.get_ref().trim().to_owned())
        {
            problems.push(
                lines.at(a),
                None,
                format!(
                    "[[alert]] `{}` is defined twice; alert names must be unique",
                    name.get_ref().trim()
                ),
            );
            continue;
        }
        let alert = crate::monitor::alert::Alert::from_raw(a.get_ref()).map(|mut alert| {
            for entry in &a.get_ref().ca {
                let path = base.join(entry.get_ref());
                match grants::net::read_ca_file(&path) {
                    Ok(c) if !c.is_empty() => alert.ca_roots.extend(c),
                    Ok(_) => problems.push(
                        lines.at(entry),
                        None,
                        format!(
                            "[[alert]] `{}`: ca `{}`: {} holds no PEM certificate",
                            alert.name,
                            entry.get_ref(),
                            path.display()
                        ),
                    ),
                    Err(e) => problems.push(
                        lines.at(entry),
                        None,
                        format!(
                            "[[alert]] `{}`: ca `{}`: cannot read {}: {e}",
                            alert.name,
                            entry.get_ref(),
                            path.display()
                        ),
                    ),
                }
            }
            alert
        });
        match alert {
            Ok(alert) => out.push(alert),
            Err(e) => problems.push(lines.at(a), None, e),
        }
    }
    out
}

/// A job's `when` conditions.
fn job_when(
    raw_job: &RawJob,
    lines: &Lines,
    name: &str,
    problems: &mut Problems,
) -> Vec<crate::monitor::condition::Condition> {
    let mut when = Vec::new();
    if let Some(raw_when) = &raw_job.when {
        let at = lines.at(raw_when);
        for c in raw_when.get_ref().clone().into_vec() {
            match crate::monitor::condition::Condition::from_raw(&c) {
                Ok(c) => when.push(c),
                Err(e) => problems.push(at, Some(name), e),
            }
        }
    }
    when
}

/// Each fleet job's `[[job]]` table as written, by name: what hosts
/// compare. Read only when the file has a fleet job.
fn written_fleet_jobs(raw: &RawConfig, text: &str) -> HashMap<String, toml::Table> {
    let mut out = HashMap::new();
    if !raw.job.iter().any(|j| j.get_ref().scope.is_some()) {
        return out;
    }
    let Ok(whole) = text.parse::<toml::Table>() else {
        return out;
    };
    if let Some(toml::Value::Array(jobs)) = whole.get("job") {
        for j in jobs {
            if let toml::Value::Table(t) = j
                && let Some(toml::Value::String(name)) = t.get("name")
            {
                out.insert(name.clone(), t.clone());
            }
        }
    }
    out
}

/// `plugin_sha256`, lower-cased: 64 hex digits.
fn plugin_pin(
    raw_job: &RawJob,
    lines: &Lines,
    name: &str,
    problems: &mut Problems,
) -> Option<String> {
    let pin = raw_job
        .plugin_sha256
        .as_ref()
        .map(|p| p.get_ref().to_ascii_lowercase());
    if let (Some(p), Some(raw_pin)) = (&pin, &raw_job.plugin_sha256)
        && (p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        problems.push(
            lines.at(raw_pin),
            Some(name),
            "plugin_sha256 must be 64 hex digits (`opsd plugins list` shows each plugin's)",
        );
    }
    pin
}

/// One `[[job]]`: `None` when it has problems (they are in `problems`).
/// `names` collects the names seen, to refuse a second job by one.
#[allow(clippy::too_many_arguments)]
fn job(
    spanned: &Spanned<RawJob>,
    raw: &RawConfig,
    (text, lines): (&str, &Lines),
    base: &Path,
    fleet: Option<&FleetSettings>,
    written: &HashMap<String, toml::Table>,
    names: &mut BTreeSet<String>,
    problems: &mut Problems,
) -> Option<Job> {
    let raw_job = spanned.get_ref();
    let line = lines.at(spanned);
    let name = raw_job.name.get_ref().clone();
    let name_line = lines.at(&raw_job.name);
    if !valid_job_name(&name) {
        problems.push(
            name_line,
            Some(&name),
            "a job name uses letters, digits, `-`, `_` and `.` only",
        );
    }
    if !names.insert(name.clone()) {
        problems.push(
            name_line,
            Some(&name),
            "a job with this name is already defined above",
        );
    }
    let schedule = match &raw_job.schedule {
        Some(text) => match Schedule::parse(text.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(lines.at(text), Some(&name), e.to_string());
                None
            }
        },
        None if raw_job.when.is_some() => Some(Schedule::never()),
        None => {
            problems.push(
                line,
                Some(&name),
                "a job needs a `schedule` (e.g. schedule = \"0 2 * * *\"), a `when` condition, or both",
            );
            None
        }
    };
    let when = job_when(raw_job, lines, &name, problems);
    let settings = job_settings(raw_job, &raw.defaults, lines, &name, problems);
    let pin = plugin_pin(raw_job, lines, &name, problems);
    let fleet = fleet_scope(raw_job, written.get(&name), fleet, lines, &name, problems);
    let mode = raw_job
        .sandbox
        .exec
        .or(raw.sandbox.exec)
        .unwrap_or_default();
    let grants = grants::Grants::from_raw(&raw_job.grants, mode, base, lines, &name, problems);
    let config = raw_job
        .config
        .as_ref()
        .map(|t| toml_to_json(toml::Value::Table(t.get_ref().clone())))
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    let config_lines = raw_job
        .config
        .as_ref()
        .map(|t| key_lines((text, lines), t))
        .unwrap_or_default();
    let (Some(schedule), Some(settings), Some(mut grants)) = (schedule, settings, grants) else {
        return None;
    };
    grants.env.set_zone(settings.timezone);
    Some(Job {
        name,
        plugin: raw_job.plugin.get_ref().clone(),
        schedule,
        when,
        timezone: settings.timezone,
        timeout: settings.timeout,
        policy: settings.policy,
        enabled: raw_job.enabled,
        plugin_sha256: pin,
        grants,
        config,
        config_lines,
        line: line.unwrap_or(0),
        fleet,
    })
}

/// No job may rewrite a program another job runs: a program inside any
/// job's rw grant would run what that job's plugin put there, with the
/// other job's grants.
fn check_program_writers(jobs: &[Job], problems: &mut Problems) {
    let real = |q: &Path| q.canonicalize().unwrap_or_else(|_| q.to_owned());
    for job in jobs {
        for p in &job.grants.exec.programs {
            let files: Vec<&PathBuf> = std::iter::once(&p.real).chain(&p.needs).collect();
            // (the job's own grants are checked where its exec grant
            // is read, with the entry's line)
            let writer = jobs
                .iter()
                .filter(|o| o.name != job.name)
                .find_map(|other| {
                    other
                        .grants
                        .fs
                        .iter()
                        .filter(|g| g.access == grants::Access::ReadWrite)
                        .find(|g| files.iter().any(|f| f.starts_with(real(&g.host))))
                        .map(|g| (other, g))
                });
            if let Some((other, g)) = writer {
                problems.push(
                    Some(job.line),
                    Some(&job.name),
                    format!(
                        "exec grant `{}` ({}) lies in job `{}`'s read-write grant {} -> {}, so that job's plugin could replace what this job runs; install the program outside what any job may write",
                        p.name,
                        p.real.display(),
                        other.name,
                        g.guest,
                        g.host.display()
                    ),
                );
            }
        }
    }
}

/// No net grant reaches opsd's own HTTP endpoint: its /metrics names
/// every job's probes and conditions.
fn check_http_reach(jobs: &[Job], listen: std::net::SocketAddr, problems: &mut Problems) {
    for job in jobs.iter().filter(|j| j.grants.net.may_reach_local(listen)) {
        problems.push(
            Some(job.line),
            Some(&job.name),
            format!(
                "net grant {} reaches opsd's own HTTP endpoint {listen} (its /metrics shows every job's probes); narrow the grant's ports or move [http] listen",
                job.grants.net.describe()
            ),
        );
    }
}

/// As root, a program whose owner is not root (or opsd's user), or that
/// others may write, is chosen by them: refuse it as cron would a
/// crontab.
fn check_program_owners(jobs: &[Job], problems: &mut Problems) {
    // The groups once per load, not once per job: each lookup goes
    // through NSS and reads /etc/group (0.6 s for 1,000 jobs).
    let groups = crate::trust::Trusted::program_groups();
    for job in jobs.iter().filter(|j| !j.grants.exec.programs.is_empty()) {
        let trusted = crate::trust::Trusted {
            uid: job.grants.children.run_as.as_ref().map(|r| r.uid),
            groups: groups.clone(),
        };
        for p in &job.grants.exec.programs {
            // The path as named (its directories may hold a link
            // to swap) and every file it starts.
            let files = [&p.path, &p.real]
                .into_iter()
                .chain(&p.needs)
                .chain(&p.runs);
            let named = p.path.parent().map(|d| crate::trust::check_as(d, &trusted));
            if let Some(why) = named
                .into_iter()
                .chain(files.map(|f| crate::trust::check_as(f, &trusted)))
                .filter_map(Result::err)
                .next()
            {
                problems.push(
                    Some(job.line),
                    Some(&job.name),
                    format!("exec grant `{}`: {why}", p.name),
                );
            }
        }
    }
}

/// `[plugins] override_builtin` names built-ins only.
fn check_override_builtin(raw: &RawPlugins, lines: &Lines, problems: &mut Problems) {
    let builtin_names: Vec<&str> = crate::builtins::builtins().iter().map(|b| b.name).collect();
    for o in &raw.override_builtin {
        if !builtin_names.contains(&o.get_ref().as_str()) {
            problems.push(
                lines.at(o),
                None,
                format!(
                    "[plugins] override_builtin names `{}`, which is not a built-in plugin ({})",
                    o.get_ref(),
                    builtin_names.join(", ")
                ),
            );
        }
    }
}

/// `[[notify]] jobs` name jobs that exist.
fn check_notify_jobs(
    raw: &[Spanned<RawNotify>],
    names: &BTreeSet<String>,
    lines: &Lines,
    problems: &mut Problems,
) {
    for n in raw {
        for j in &n.get_ref().jobs {
            if !names.contains(j.get_ref()) {
                problems.push(
                    lines.at(j),
                    None,
                    format!(
                        "[[notify]] names job `{}`, which is not defined",
                        j.get_ref()
                    ),
                );
            }
        }
    }
}

/// `max_concurrent_runs`, 1 to 100000.
fn max_concurrent_runs(
    raw: Option<&Spanned<i64>>,
    lines: &Lines,
    problems: &mut Problems,
) -> usize {
    match raw {
        None => default_max_concurrent_runs(),
        Some(n) if (1..=100_000).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            problems.push(
                lines.at(n),
                None,
                format!(
                    "max_concurrent_runs = {}: write a number from 1 to 100000 (default {})",
                    n.get_ref(),
                    default_max_concurrent_runs()
                ),
            );
            1
        }
    }
}

/// A job name that names no job that runs: not in the configuration, or
/// broken there.
#[derive(Debug, thiserror::Error)]
pub struct UnknownJob {
    pub name: String,
    pub config: PathBuf,
    pub known: Vec<String>,
    /// Why, when the configuration defines it but it cannot run.
    pub broken: Option<Box<BrokenJob>>,
}

impl fmt::Display for UnknownJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.broken {
            Some(b) => write!(
                f,
                "job `{}` is broken and does not run: {}; fix it in {} and reload (`opsd check` lists every problem)",
                self.name,
                b.reasons().join("; "),
                self.config.display()
            ),
            None => write!(
                f,
                "no job named `{}` in {}; jobs there: {}",
                self.name,
                self.config.display(),
                if self.known.is_empty() {
                    "none".to_string()
                } else {
                    self.known.join(", ")
                }
            ),
        }
    }
}

fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A system path for root, an XDG path otherwise: `$XDG_VAR/rel`, or
/// `$HOME/home_default/rel` when the variable is unset. Lets opsd run
/// without root with no configuration of paths.
pub fn system_or_user_path(system: &str, xdg_var: &str, home_default: &str, rel: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from(system);
    }
    if let Some(dir) = std::env::var_os(xdg_var).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(rel);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(home_default).join(rel),
        None => PathBuf::from(system),
    }
}

/// Where state lives when the config does not say: `/var/lib/opsd` for
/// root, the XDG state directory otherwise.
pub fn default_data_dir() -> PathBuf {
    system_or_user_path("/var/lib/opsd", "XDG_STATE_HOME", ".local/state", "opsd")
}

/// Lines of a table's top-level keys. toml gives a table's span as its
/// header (`[job.config]`) or its inline braces, so the keys are found by
/// scanning from there: to the next header for a header table, within the
/// braces for an inline one.
fn key_lines(
    (text, lines): (&str, &Lines),
    table: &Spanned<toml::Table>,
) -> std::collections::BTreeMap<String, usize> {
    let span = table.span();
    let start = span.start.min(text.len());
    let inline = text[start..].starts_with('{');
    let (body, mut offset) = if inline {
        (&text[start..span.end.min(text.len())], start)
    } else {
        // Skip the header line itself.
        let after = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        (&text[after..], after)
    };
    let mut out = std::collections::BTreeMap::new();
    let separators: &[char] = if inline { &['\n', ','] } else { &['\n'] };
    for line in body.split_inclusive(separators) {
        let trimmed = line.trim_start().trim_start_matches('{').trim_start();
        if !inline && trimmed.starts_with('[') {
            // The next table's header.
            break;
        }
        if let Some((key, _)) = trimmed.split_once('=') {
            let key = key.trim().trim_matches('"');
            if table.get_ref().contains_key(key) && !out.contains_key(key) {
                out.insert(key.to_owned(), lines.of(offset));
            }
        }
        offset += line.len();
    }
    out
}

/// Converts a TOML value to JSON; datetimes become RFC 3339 strings.
pub fn toml_to_json(v: toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            J::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every problem one way: the file's as its error, and those of jobs
    /// set aside as broken as if they were too, so the checks below read
    /// the same messages whichever they are.
    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse(Path::new("/etc/opsd/opsd.toml"), text)?;
        if c.broken.is_empty() {
            return Ok(c);
        }
        let mut problems: Vec<Problem> = c.broken.iter().flat_map(|b| b.problems.clone()).collect();
        problems.sort_by_key(|p| p.line);
        Err(ConfigError {
            path: c.path.clone(),
            problems,
        })
    }

    /// Found by the config fuzz target: a block set aside that holds
    /// multi-byte characters kept every later offset in place.
    #[test]
    fn a_broken_block_with_wide_characters_keeps_offsets() {
        let text = "data_dir = \"/tmp/x\"\n[[job]]\nname = \"a\"\nplugin = \"p\"\nschedul = \"折折折\"\n[[job]]\nname = \"b\"\nplugin = \"p\"\nschedule = \"@daily\"\nbad = 1\n";
        let c = Config::parse(Path::new("/etc/opsd/opsd.toml"), text).unwrap();
        let lines: Vec<usize> = c.broken.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 6]);
        assert_eq!(c.broken[1].problems[0].line, Some(10), "{:?}", c.broken[1]);
    }

    #[test]
    fn a_job_is_found_by_name_among_many_and_after_the_list_changed() {
        let mut text = String::from("data_dir = \"/tmp/x\"\n");
        for i in 0..300 {
            // Job 3 parses but its schedule does not: it is set aside after
            // parsing, so every later job's place differs from its place in
            // the file.
            let schedule = if i == 3 { "nope" } else { "@daily" };
            text.push_str(&format!(
                "[[job]]\nname = \"j{i}\"\nplugin = \"p\"\nschedule = \"{schedule}\"\n"
            ));
        }
        let mut c = Config::parse(Path::new("/etc/opsd/opsd.toml"), &text).unwrap();
        let in_step = |c: &Config| {
            assert_eq!(c.job_places.len(), c.jobs.len());
            for (place, job) in c.jobs.iter().enumerate() {
                assert_eq!(c.job_places[&job.name], place, "{}", job.name);
            }
        };
        assert_eq!(c.jobs.len(), 299);
        in_step(&c);
        for i in [0, 2, 4, 150, 299] {
            assert_eq!(c.find_job(&format!("j{i}")).unwrap().name, format!("j{i}"));
        }
        assert!(c.find_job("j3").is_none(), "a broken job is not a job");
        assert!(c.find_job("j300").is_none());
        assert!(c.job("j3").unwrap_err().to_string().contains("is broken"));
        // Set aside later (as `opsd check`'s plugin checks do): the places
        // move with the list.
        let mut later = c.broken[0].clone();
        later.name = "j10".into();
        c.set_aside(vec![later]);
        in_step(&c);
        assert!(c.find_job("j10").is_none());
        assert_eq!(c.find_job("j11").unwrap().name, "j11");
        let broken: Vec<&str> = c.broken.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(broken, ["j3", "j10"]);
        // `jobs` is public: what is found follows the list, not the places
        // it had.
        c.jobs.swap(0, 297);
        c.jobs.remove(150);
        assert_eq!(c.find_job("j0").unwrap().name, "j0");
        assert_eq!(c.find_job("j299").unwrap().name, "j299");
        assert!(c.find_job(&c.jobs[150].name.clone()).is_some());
    }

    #[test]
    fn a_broken_job_is_set_aside_and_the_others_run() {
        let text = "data_dir = \"/tmp/x\"\n\
             [[job]]\nname = \"good\"\nplugin = \"p\"\nschedule = \"@daily\"\n\
             [[job]]\nname = \"nfs\"\nplugin = \"backup\"\nschedule = \"@daily\"\n[job.grants]\nfs = [{ host = \"/nonexistent/mnt\", guest = \"/m\", access = \"ro\" }]\n\
             [[job]]\nname = \"typo\"\nplugin = \"p\"\nschedul = \"@daily\"\n\
             [[job]]\nname = \"late\"\nplugin = \"p\"\nschedule = \"@hourly\"\n";
        let c = Config::parse(Path::new("/etc/opsd/opsd.toml"), text).unwrap();
        let names: Vec<&str> = c.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["good", "late"]);
        let broken: Vec<(&str, usize)> =
            c.broken.iter().map(|b| (b.name.as_str(), b.line)).collect();
        assert_eq!(broken, [("nfs", 6), ("typo", 12)]);
        assert_eq!(c.broken[0].plugin.as_deref(), Some("backup"));
        assert!(
            c.broken[0].reasons()[0]
                .starts_with("line 11: fs grant host directory /nonexistent/mnt does not exist"),
            "{:?}",
            c.broken[0]
        );
        assert!(
            c.broken[1].reasons()[0].contains("unknown field `schedul`"),
            "{:?}",
            c.broken[1]
        );
        let e = c.job("nfs").unwrap_err().to_string();
        assert!(
            e.starts_with("job `nfs` is broken and does not run: line 11: "),
            "{e}"
        );
        // A problem of the file's own refuses it, every problem listed.
        let e = Config::parse(
            Path::new("/etc/opsd/opsd.toml"),
            &format!("max_concurrent_runs = 0\n{text}"),
        )
        .unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains(":1: max_concurrent_runs = 0") && e.contains("unknown field `schedul`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e = parse("data_dir = \"/tmp/x\"\n[[job]]\nname = \"a\"\nplugin = \"p\"\nschedule = \"@daily\"\nschedul = \"x\"\n")
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/etc/opsd/opsd.toml:6"), "{text}");
        assert!(text.contains("schedul"), "{text}");
        assert!(text.contains("job `a`"), "{text}");
    }

    #[test]
    fn quotas_apply_to_rw_grants_and_take_sizes() {
        let job = |grant: &str| {
            format!(
                "data_dir = \"/var/lib/opsd-test\"\n[[job]]\nname = \"q\"\nplugin = \"p\"\nschedule = \"@daily\"\n[job.grants]\nfs = [{grant}]\n"
            )
        };
        let c = parse(&job(
            "{ host = \"/tmp\", guest = \"/t\", access = \"rw\", quota = \"8M\" }",
        ))
        .unwrap();
        assert_eq!(c.jobs[0].grants.fs[0].quota, Some(8 << 20));
        let e = parse(&job(
            "{ host = \"/tmp\", guest = \"/t\", access = \"ro\", quota = \"8M\" }",
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains(
                ":7: job `q`: fs grant `/t` is read-only; a quota applies to `rw` grants only"
            ),
            "{e}"
        );
        let e = parse(&job(
            "{ host = \"/tmp\", guest = \"/t\", access = \"rw\", quota = \"lots\" }",
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("fs grant `/t` quota: `lots` is not a size"),
            "{e}"
        );
    }

    #[test]
    fn sandbox_modes_users_and_program_grants_are_checked() {
        let job = |grants: &str, extra: &str| {
            format!(
                "data_dir = \"/tmp/x\"\n{extra}\n[[job]]\nname = \"j\"\nplugin = \"p\"\nschedule = \"@daily\"\n[job.grants]\n{grants}\n"
            )
        };
        use crate::grants::confine::Mode;
        let c = parse(&job("exec = [\"sh\"]", "")).unwrap();
        assert_eq!(c.jobs[0].grants.children.mode, Mode::Strict);
        let c = parse(&job("exec = [\"sh\"]", "[sandbox]\nexec = \"best-effort\"")).unwrap();
        assert_eq!(c.jobs[0].grants.children.mode, Mode::BestEffort);
        let c = parse(&format!(
            "{}[job.sandbox]\nexec = \"best-effort\"\n",
            job("exec = [\"sh\"]", "")
        ))
        .unwrap();
        assert_eq!(c.jobs[0].grants.children.mode, Mode::BestEffort);
        assert!(parse(&job("", "[sandbox]\nexec = \"lax\"")).is_err());

        let c = parse(&job("user = \"nobody\"\nexec = [\"id\"]", "")).unwrap();
        let r = c.jobs[0].grants.children.run_as.as_ref().unwrap();
        assert_eq!((r.uid, r.user.as_str()), (65534, "nobody"));
        let cases = [
            (
                "user = \"no-such-user-opsd\"",
                "grants.user: user `no-such-user-opsd` does not exist",
            ),
            ("group = \"nogroup\"", "grants.group needs grants.user"),
            (
                "system_paths = [\"etc/pg\"]",
                "system_paths entry `etc/pg` must be absolute",
            ),
            (
                "net = [\"unix:run/pg.sock\"]",
                "a Unix socket is named by its absolute path",
            ),
            (
                "fs = [{ host = \"/tmp/x/cache\", guest = \"/c\", access = \"ro\", create = true }]",
                "reaches opsd's data directory /tmp/x (its store",
            ),
            (
                "fs = [{ host = \"/tmp\", guest = \"/t\", access = \"rw\" }]",
                "fs grant /t -> /tmp (rw) reaches opsd's data directory",
            ),
            (
                "net = [\"unix:/tmp/x/opsd.sock\"]",
                "is opsd's own control socket or data directory",
            ),
            (
                "exec = [{ program = \"sh\", argv = [] }]",
                "exec grant: unknown key `argv`",
            ),
            (
                "exec = [{ program = \"sh\", args = \"-c\" }]",
                "`args` is a list of strings",
            ),
            ("exec = [{ args = [] }]", "a table entry needs `program"),
            (
                "net = [\"127.0.0.1:9000-9999\"]",
                "reaches opsd's own HTTP endpoint 127.0.0.1:9779",
            ),
            (
                "net = [\"localhost:9779\"]",
                "reaches opsd's own HTTP endpoint 127.0.0.1:9779",
            ),
        ];
        for (grants, want) in cases {
            let e = parse(&job(grants, "")).unwrap_err().to_string();
            assert!(e.contains(want), "{grants}: {e}");
        }
        // A program the plugin may rewrite is refused.
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let grants = format!(
            "fs = [{{ host = \"{d}\", guest = \"/d\", access = \"rw\" }}]\nexec = [\"{t}\"]",
            d = dir.path().display(),
            t = tool.display()
        );
        let e = parse(&job(&grants, "")).unwrap_err().to_string();
        assert!(
            e.contains("is inside the job's read-write grant /d")
                && e.contains("could replace what runs"),
            "{e}"
        );
        let ro = grants.replace("\"rw\"", "\"ro\"");
        assert!(parse(&job(&ro, "")).is_ok());
        // As root, a program someone else owns is theirs to change.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&tool, Some(65534), None).unwrap();
            let e = parse(&job(&ro, "")).unwrap_err().to_string();
            assert!(e.contains("is owned by uid 65534"), "{e}");
            std::os::unix::fs::chown(&tool, Some(0), None).unwrap();
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o757)).unwrap();
            let e = parse(&job(&ro, "")).unwrap_err().to_string();
            assert!(e.contains("may be written by others (mode 757)"), "{e}");
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Nor may another job's plugin rewrite it.
        let two = format!(
            "data_dir = \"/tmp/x\"\n[[job]]\nname = \"writer\"\nplugin = \"p\"\nschedule = \"@daily\"\n[job.grants]\nfs = [{{ host = \"{d}\", guest = \"/d\", access = \"rw\" }}]\n[[job]]\nname = \"runner\"\nplugin = \"p\"\nschedule = \"@daily\"\n[job.grants]\nexec = [\"{t}\"]\n",
            d = dir.path().display(),
            t = tool.display()
        );
        let e = parse(&two).unwrap_err().to_string();
        assert!(
            e.contains("job `runner`") && e.contains("lies in job `writer`'s read-write grant /d"),
            "{e}"
        );
        // A grant above the data directory would read the store.
        let e = parse(&job(
            "fs = [{ host = \"/tmp\", guest = \"/t\", access = \"ro\" }]",
            "",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("fs grant /t -> /tmp (ro) reaches opsd's data directory"),
            "{e}"
        );
    }

    #[test]
    fn the_http_listener_is_loopback_unless_configured() {
        let c = parse("data_dir = \"/tmp/x\"\n").unwrap();
        let addr = c.http.expect("on by default");
        assert!(addr.ip().is_loopback(), "{addr}");
        let c = parse("data_dir = \"/tmp/x\"\n[http]\nenabled = false\n");
        assert!(c.is_ok_and(|c| c.http.is_none()));
    }

    #[test]
    fn a_key_error_in_a_jobs_sub_table_names_the_job() {
        let e = parse(
            "data_dir = \"/tmp/x\"\n[[job]]\nname = \"first\"\nplugin = \"p\"\nschedule = \"@daily\"\n\
             [[job]]\nname = \"second\" # the one\nplugin = \"p\"\nschedule = \"@daily\"\n[job.grants]\nfss = []\n",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(":11: job `second`: unknown field `fss`"),
            "{text}"
        );
        // Outside any job, no job is named.
        let e = parse("data_dir = \"/tmp/x\"\n[defaults]\nkeep = 3\n").unwrap_err();
        assert!(!e.to_string().contains("job `"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_job_and_line() {
        let e = parse(
            "data_dir = \"/tmp/x\"\n\
             [[job]]\nname = \"a\"\nplugin = \"p\"\nschedule = \"61 * * * *\"\n\
             [[job]]\nname = \"a\"\nplugin = \"p\"\nschedule = \"@daily\"\ntimezone = \"Mars/Olympus\"\ntimeout = \"soon\"\n",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
        let text = e.to_string();
        assert!(text.contains(":5: job `a`: "), "{text}");
        assert!(
            text.contains(":7: job `a`: a job with this name is already defined"),
            "{text}"
        );
        assert!(
            text.contains(":10: job `a`: unknown time zone `Mars/Olympus`"),
            "{text}"
        );
        assert!(text.contains(":11: job `a`: timeout: `soon`"), "{text}");
    }

    #[test]
    fn max_concurrent_runs_is_checked_and_defaults_by_cpus() {
        let c = parse("data_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(c.max_concurrent_runs, default_max_concurrent_runs());
        assert!(c.max_concurrent_runs >= 8);
        assert_eq!(
            parse("data_dir = \"/tmp/x\"\nmax_concurrent_runs = 3\n")
                .unwrap()
                .max_concurrent_runs,
            3
        );
        let e = parse("data_dir = \"/tmp/x\"\nmax_concurrent_runs = 0\n").unwrap_err();
        assert!(
            e.to_string()
                .contains(":2: max_concurrent_runs = 0: write a number from 1 to 100000"),
            "{e}"
        );
    }

    #[test]
    fn config_keys_know_their_lines() {
        let c = parse(
            "data_dir = \"/tmp/x\"\n[[job]]\nname = \"a\"\nplugin = \"p\"\nschedule = \"@daily\"\n[job.config]\npaths = [\"/l/*\",\n  \"/m/*\"]\nrotate = 3\n[job.grants]\nenv = [\"rotate\"]\n\n[[job]]\nname = \"b\"\nplugin = \"p\"\nschedule = \"@daily\"\nconfig = { x = 1, y = 2 }\n",
        )
        .unwrap();
        assert_eq!(c.jobs[0].config_lines.get("paths"), Some(&7));
        assert_eq!(c.jobs[0].config_lines.get("rotate"), Some(&9));
        assert_eq!(c.jobs[1].config_lines.get("y"), Some(&17));
    }

    #[test]
    fn error_messages_snapshot() {
        let e = parse(
            "data_dir = \"/tmp/x\"\n\
             [http]\nlisten = \"localhost\"\n\
             [[job]]\nname = \"nightly backup\"\nplugin = \"backup\"\nschedule = \"0 2 * * mon-sun/0\"\n\
             retry_backoff = \"2h\"\n\
             [job.grants]\nfs = [{ host = \"/nonexistent/opsd\", guest = \"/data\", access = \"rw\" }]\n\
             exec = [\"no-such-program-opsd\"]\nnet = [\"db.internal\"]\nenv = [\"LD_PRELOAD\"]\n",
        )
                .unwrap_err();
        insta::with_settings!({filters => vec![(r"on PATH \([^)]*\)", "on PATH ([the daemon's PATH])")]}, {
            insta::assert_snapshot!(e.to_string());
        });
    }

    /// Issue 23 (13): each smaller mistake an operator made gets a message
    /// that names the file and line and says what to write.
    #[test]
    fn operator_mistakes_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").expect("file");
        let job = |extra: &str| {
            format!(
                "data_dir = \"/tmp/x\"\n[[job]]\nname = \"j\"\nplugin = \"p\"\nschedule = \"@daily\"\n{extra}\n"
            )
        };
        let cases = [
            job("timeout = \"99999999999d\""),
            job("when = { metric = \"memory_used_percent\", above = 185 }"),
            job("[job.grants]\nnet = [\"10.0.0.0/33:80\"]"),
            format!("data_dir = \"{}\"\n", file.display()),
            format!(
                "data_dir = \"/tmp/x\"\nplugin_dir = \"{}\"\n",
                file.display()
            ),
        ];
        let said: Vec<String> = cases
            .iter()
            .map(|text| match parse(text) {
                Ok(_) => "accepted".to_owned(),
                Err(e) => e.to_string(),
            })
            .collect();
        let said = said
            .join("\n")
            .replace(&file.display().to_string(), "[FILE]");
        insta::assert_snapshot!(said);
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = parse("data_dir = \"state\"\n").unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/opsd/state"));
        assert_eq!(c.plugin_dir, Path::new("/etc/opsd/state/plugins"));
        assert_eq!(c.socket, Path::new("/etc/opsd/state/opsd.sock"));
    }

    #[test]
    fn job_config_becomes_json() {
        let c = parse(
            "data_dir = \"/tmp/x\"\n[[job]]\nname = \"a\"\nplugin = \"p\"\nschedule = \"@hourly\"\n[job.config]\npaths = [\"/l/*\"]\nrotate = 3\n",
        )
        .unwrap();
        assert_eq!(
            c.jobs[0].config,
            serde_json::json!({"paths": ["/l/*"], "rotate": 3})
        );
        assert_eq!(c.jobs[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.jobs[0].line, 2);
    }
}
