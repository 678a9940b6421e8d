//! What each `opsd` command does. Commands that read or change state go
//! to the running daemon through its control socket when there is one,
//! and open the store themselves when there is not ([`Backend`]); the
//! answers are the same either way.

use crate::api::Client;
use crate::cli::{
    self, Cli, Command, FleetCommand, ImportCommand, PluginsCommand, ScheduleCommand,
};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::ops::{Ops, Start};
use crate::record::ScheduleEntry;
use crate::record::{LogLine, RunRecord, Trigger};
use crate::runtime::log::LogEvent;
use crate::store::HistoryQuery;
use anyhow::Context as _;

/// `opsd run --set` values by dotted key.
type Overrides = std::collections::BTreeMap<String, serde_json::Value>;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Where a command's answers come from.
enum Backend {
    Daemon(Client),
    Local(LocalOps),
}

/// The store and plugins a command works on in this process, when no
/// daemon answers. Closing sled costs: it frees its page table entry by
/// entry, a fifth of `opsd schedule list` on a store of a million runs
/// (BENCHMARKS.md, CLI against a stored history). So on drop the store is
/// made durable here, as sled's own drop would, and torn down on a thread
/// of its own: the command's output does not wait for it, and a process
/// that exits first leaves the memory and the store's lock to the exit.
/// Commands close it before they print (output may wait on a pager), and
/// each opens it once: a second open could find it still closing.
struct LocalOps(Option<Arc<Ops>>);

impl std::ops::Deref for LocalOps {
    type Target = Arc<Ops>;

    fn deref(&self) -> &Arc<Ops> {
        // Empty only once `drop` has taken it.
        self.0
            .as_ref()
            .expect("a command's Ops is taken only on drop")
    }
}

impl Drop for LocalOps {
    fn drop(&mut self) {
        let Some(ops) = self.0.take() else { return };
        if let Err(e) = ops.store().sync_all() {
            tracing::error!(
                store = %ops.store().path().display(),
                error = %e,
                "could not make the store durable on exit: this command's changes may be lost; check the disk under it (space, I/O errors) and run the command again"
            );
        }
        // A thread that cannot start leaves the teardown here.
        let _ = std::thread::Builder::new()
            .name("opsd-close-store".into())
            .spawn(move || drop(ops));
    }
}

impl Backend {
    /// The running daemon when one answers, whatever the file on disk
    /// says now (it runs what it loaded, and the answers should be its);
    /// otherwise this process, on the file's configuration. When the file
    /// differs from what the daemon runs, or does not load at all, a note
    /// on stderr says so and how to apply it.
    async fn open(path: Option<PathBuf>) -> anyhow::Result<Backend> {
        let path = path.unwrap_or_else(cli::default_config_path);
        let loaded = load_config(Some(path.clone()));
        let socket = match &loaded {
            Ok(c) => c.socket.clone(),
            Err(_) => crate::config::socket_hint(&path),
        };
        if let Some(client) = Client::connect(&socket).await {
            note_differences(&client, &path, loaded.as_ref().err()).await;
            return Ok(Backend::Daemon(client));
        }
        Ok(Backend::local(Ops::open(loaded?, Arc::new(SystemClock))?))
    }

    async fn connect(config: Config) -> anyhow::Result<Backend> {
        if let Some(client) = Client::connect(&config.socket).await {
            return Ok(Backend::Daemon(client));
        }
        Ok(Backend::local(Ops::open(config, Arc::new(SystemClock))?))
    }

    /// Works on the store here, saying on stderr when a plugin compiles.
    fn local(ops: Ops) -> Backend {
        say_compiles(ops.registry().runtime());
        Backend::Local(LocalOps(Some(Arc::new(ops))))
    }

    async fn status(&self) -> anyhow::Result<crate::monitor::MachineStatus> {
        match self {
            Backend::Daemon(c) => c.status().await,
            Backend::Local(ops) => {
                let ops = Arc::clone(ops);
                Ok(tokio::task::spawn_blocking(move || ops.status()).await?)
            }
        }
    }

    async fn schedule(&self) -> anyhow::Result<Vec<ScheduleEntry>> {
        match self {
            Backend::Daemon(c) => c.schedule().await,
            Backend::Local(ops) => Ok(ops.schedule()?),
        }
    }

    async fn run_job(
        &self,
        job: &str,
        dry_run: bool,
        set: &Overrides,
        follow: Option<&mut dyn FnMut(&LogEvent)>,
    ) -> anyhow::Result<RunRecord> {
        match (self, follow) {
            (Backend::Daemon(c), None) => c.run_job(job, dry_run, set).await,
            (Backend::Daemon(c), Some(f)) => c.run_job_follow(job, dry_run, set, f).await,
            (Backend::Local(ops), follow) => {
                let start = Start {
                    dry_run,
                    overrides: set.clone(),
                    ..Start::new(Trigger::Manual, chrono::Utc::now())
                };
                let Some(on_event) = follow else {
                    return Ok(ops.run_job(job, start).await?);
                };
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let run = ops.run_job_following(job, start, Some(tx));
                tokio::pin!(run);
                loop {
                    tokio::select! {
                        result = &mut run => {
                            while let Ok(ev) = rx.try_recv() {
                                on_event(&ev);
                            }
                            return Ok(result?);
                        }
                        Some(ev) = rx.recv() => on_event(&ev),
                    }
                }
            }
        }
    }

    async fn job_detail(&self, job: &str) -> anyhow::Result<crate::jobs::JobDetail> {
        match self {
            Backend::Daemon(c) => c.job_detail(job).await,
            Backend::Local(ops) => Ok(ops.job_detail(job)?),
        }
    }

    async fn set_enabled(&self, job: &str, enabled: bool) -> anyhow::Result<ScheduleEntry> {
        match self {
            Backend::Daemon(c) => c.set_enabled(job, enabled).await,
            Backend::Local(ops) => Ok(ops.set_enabled(job, enabled)?),
        }
    }

    async fn history(&self, q: &HistoryQuery) -> anyhow::Result<Vec<RunRecord>> {
        match self {
            Backend::Daemon(c) => c.history(q).await,
            Backend::Local(ops) => Ok(ops.history(q)?),
        }
    }

    async fn report_input(&self, seconds: i64) -> anyhow::Result<opsd_report_core::input::Input> {
        match self {
            Backend::Daemon(c) => c.report_input(seconds).await,
            Backend::Local(ops) => Ok(ops.report_input(chrono::Duration::seconds(seconds))?),
        }
    }

    async fn run_record(&self, id: &str) -> anyhow::Result<RunRecord> {
        match self {
            Backend::Daemon(c) => c.run_record(id).await,
            Backend::Local(ops) => Ok(ops.run_record(id)?),
        }
    }

    async fn run_log(&self, id: &str) -> anyhow::Result<Vec<LogLine>> {
        match self {
            Backend::Daemon(c) => c.run_log(id).await,
            Backend::Local(ops) => Ok(ops.run_log(id)?),
        }
    }
}

/// Says on stderr when the configuration file is not what the daemon
/// runs: the answers are the daemon's.
async fn note_differences(client: &Client, path: &std::path::Path, failed: Option<&anyhow::Error>) {
    let Ok(health) = client.health().await else {
        return;
    };
    let Some(running) = health.config else {
        return;
    };
    if let Some(e) = failed {
        eprintln!(
            "note: {} does not load, so these answers are the running daemon's, from the configuration it loaded before:\n{}",
            path.display(),
            crate::escape::indented(&format!("{e:#}"), "  ")
        );
        return;
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    if crate::config::source_sha256(&on_disk) != running.sha256 {
        eprintln!(
            "note: {} has changed since the daemon loaded it; these answers are what runs now. Reload the daemon to apply it (`systemctl reload opsd`, or SIGHUP); `opsd check` checks it first",
            path.display()
        );
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let path = path.unwrap_or_else(cli::default_config_path);
    if !path.exists() {
        anyhow::bail!(
            "no configuration at {}; pass --config FILE or set OPSD_CONFIG (examples/opsd.toml is a place to start)",
            path.display()
        );
    }
    crate::config::Config::load_trusted(&path)
}

/// Writes a command's text output; whatever plugin text is in it shows
/// its control characters escaped (each render escapes the newlines of
/// one-line fields itself).
fn print(text: &str) -> anyhow::Result<()> {
    write_out(&crate::escape::block(text))
}

fn write_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let doc = serde_json::to_string_pretty(value)? + "\n";
    write_out(&crate::escape::json(&doc))
}

/// Runs one parsed command line: one arm per command, each command in its
/// own function.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Configuration is read lazily: some commands need none.
    let config = || load_config(cli.config.clone());
    match cli.command {
        Command::Daemon => {
            crate::daemon::run(config()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        // A configuration that does not load is a failed check (exit 1),
        // like the problems `check` finds in one that does.
        Command::Check => match config() {
            Ok(config) => check(config).await,
            Err(e) if e.downcast_ref::<crate::config::ConfigError>().is_some() => {
                eprintln!("error: {}", crate::escape::indented(&format!("{e:#}"), ""));
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e),
        },
        Command::Status { json } => status(cli.config.clone(), json).await,
        Command::Schedule { command } => match command {
            ScheduleCommand::List { json, fleet: true } => fleet_schedule(&config()?, json).await,
            ScheduleCommand::List { json, fleet: false } => {
                schedule_list(cli.config.clone(), json).await
            }
            ScheduleCommand::Show { job, json } => show(cli.config.clone(), &job, json).await,
            ScheduleCommand::Next {
                expr,
                tz,
                after,
                count,
                json,
            } => schedule_next(&expr, &tz, after.as_deref(), count, json),
            ScheduleCommand::Enable { job } => set_enabled(cli.config.clone(), &job, true).await,
            ScheduleCommand::Disable { job } => set_enabled(cli.config.clone(), &job, false).await,
        },
        Command::Run {
            job,
            dry_run,
            set,
            json,
            follow,
        } => {
            let set = set
                .iter()
                .map(|a| crate::check::parse_set(a))
                .collect::<Result<Overrides, String>>()
                .map_err(anyhow::Error::msg)?;
            run(cli.config.clone(), &job, (dry_run, &set), follow, json).await
        }
        Command::History {
            job,
            status,
            since,
            limit,
            json,
            fleet,
            host,
        } => {
            let since = since_arg(since)?;
            if fleet {
                let q = crate::fleet::FleetQuery {
                    host: host.as_deref(),
                    job: job.as_deref(),
                    status: status.map(|s| s.as_str()),
                    since,
                    limit,
                };
                fleet_history(&config()?, &q, json).await
            } else {
                history(cli.config.clone(), job, status, since, limit, json).await
            }
        }
        Command::Fleet {
            command: FleetCommand::Status { json },
        } => fleet_status(&config()?, json).await,
        Command::Report {
            since,
            format,
            output,
            fleet,
        } => report(cli.config.clone(), &since, &format, output, fleet).await,
        Command::Logs { run_id, json } => logs(cli.config.clone(), &run_id, json).await,
        // Needs no configuration: it only writes a project.
        Command::Plugins {
            command: PluginsCommand::New { name, lang, dir },
        } => new_plugin(&name, lang, dir),
        // A project on disk, not the daemon's state: no configuration.
        Command::Plugins {
            command: PluginsCommand::Test { dir },
        } => {
            let project = crate::project::Project::detect(&project_dir(dir))?;
            project.test()?;
            print(&format!(
                "{} ({}): tests passed\n",
                project.name,
                lang_name(project.lang)
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins {
            command: PluginsCommand::Build { dir },
        } => build_plugin(&project_dir(dir)).await,
        Command::Plugins { command } => plugins(config()?, command).await,
        // Needs no configuration: it reads crontabs and prints one.
        Command::Import {
            command: ImportCommand::Crontab { files, system },
        } => {
            let sources = crontab_sources(&files, system)?;
            write_out(&crate::crontab::import(
                &sources,
                &crate::crontab::Machine::here(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error,
            // and a closed pipe (`| head`) is no error.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "opsd", &mut out);
            write_out(&String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            write_out(&String::from_utf8_lossy(&man_page()?))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The crontabs `opsd import crontab` reads: the files named (a
/// directory as cron reads /etc/cron.d: each file whose name is letters,
/// digits, `-` and `_`), or the user's own.
fn crontab_sources(files: &[PathBuf], system: bool) -> anyhow::Result<Vec<crate::crontab::Source>> {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok();
    if files.is_empty() {
        let listed = std::process::Command::new("crontab").arg("-l").output();
        let text = match listed {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            Ok(out) => anyhow::bail!(
                "`crontab -l` failed: {}; name a crontab file instead (opsd import crontab FILE)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(_) => {
                let spool = PathBuf::from("/var/spool/cron/crontabs")
                    .join(user.as_deref().unwrap_or("root"));
                std::fs::read_to_string(&spool).with_context(|| {
                    format!(
                        "`crontab` is not installed and {} cannot be read; name a crontab file (opsd import crontab FILE)",
                        spool.display()
                    )
                })?
            }
        };
        return Ok(vec![crate::crontab::Source {
            name: format!("crontab of {}", user.as_deref().unwrap_or("this user")),
            text,
            system: false,
            user,
        }]);
    }
    let mut out = Vec::new();
    for file in files {
        let mut paths = Vec::new();
        let dir = file.is_dir();
        if dir {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(file)
                .with_context(|| format!("reading {}", file.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.file_name().is_some_and(|n| {
                            n.to_string_lossy()
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                        })
                })
                .collect();
            entries.sort();
            paths.extend(entries);
        } else {
            paths.push(file.clone());
        }
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let is_system = system
                || dir
                || path == std::path::Path::new("/etc/crontab")
                || path.parent() == Some(std::path::Path::new("/etc/cron.d"));
            out.push(crate::crontab::Source {
                name: path.display().to_string(),
                text,
                system: is_system,
                user: if is_system { None } else { user.clone() },
            });
        }
    }
    Ok(out)
}

/// The one man page: clap_mangen's sections, with every command listed
/// in it (`opsd schedule list`) where clap_mangen would cite a page per
/// subcommand (`opsd-schedule(1)`) that is never installed.
fn man_page() -> std::io::Result<Vec<u8>> {
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(b".SH COMMANDS\n");
    fn list(cmd: &clap::Command, path: &str, out: &mut Vec<u8>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{path} {}", sub.get_name());
            if sub.has_subcommands() {
                list(sub, &name, out);
                continue;
            }
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.extend_from_slice(
                format!(".TP\n\\fB{}\\fR\n{}\n", roff_text(&name), roff_text(&about)).as_bytes(),
            );
        }
    }
    list(&cmd, "opsd", &mut out);
    out.extend_from_slice(
        b".PP\n\\fBopsd\\fR \\fICOMMAND\\fR \\fB--help\\fR shows a command's options.\n",
    );
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Text safe in a roff line: backslashes doubled, and no line starting
/// with a control character.
fn roff_text(text: &str) -> String {
    text.replace('\\', "\\e")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `opsd status`.
async fn status(config: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let status = Backend::open(config).await?.status().await?;
    if json {
        print_json(&status)?;
    } else {
        use std::io::IsTerminal;
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        write_out(&cli::status_table(&status, colour))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `opsd schedule list`.
async fn schedule_list(config: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let entries = Backend::open(config).await?.schedule().await?;
    if json {
        print_json(&entries)?;
    } else {
        print(&cli::schedule_table(
            &entries,
            chrono::Utc::now(),
            cli::terminal_width(),
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `opsd run`: exits 1 when the run did not succeed.
async fn run(
    config: Option<PathBuf>,
    job: &str,
    (dry_run, set): (bool, &Overrides),
    follow: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let backend = Backend::open(config).await?;
    let rec = if follow {
        let mut printer = cli::FollowPrinter::new();
        let mut on_event = |ev: &crate::runtime::log::LogEvent| printer.event(ev);
        let rec = {
            let run = backend.run_job(job, dry_run, set, Some(&mut on_event));
            tokio::pin!(run);
            tokio::select! {
            rec = &mut run => rec,
            _ = tokio::signal::ctrl_c() => match &backend {
                // The daemon runs it: only the following stops.
                Backend::Daemon(_) => {
                    eprintln!(
                        "\nopsd: stopped following; the run goes on in the daemon (`opsd history --job {job}` shows it, `opsd logs RUN` its log)"
                    );
                    return Ok(ExitCode::from(130));
                }
                // This process runs it: stop it, and record so.
                Backend::Local(ops) => {
                    eprintln!("\nopsd: interrupting the run (no daemon runs this job)");
                    ops.cancel_all(
                        crate::record::RunStatus::Interrupted,
                        "interrupted by Ctrl-C on `opsd run --follow`",
                    );
                    run.await
                }
            },
            }
        };
        printer.finish();
        rec?
    } else {
        backend.run_job(job, dry_run, set, None).await?
    };
    // Closed before the output, which may wait on a pager.
    drop(backend);
    if json {
        print_json(&rec)?;
    } else {
        print(&cli::run_report(&rec))?;
    }
    Ok(if rec.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `opsd history`.
async fn history(
    config: Option<PathBuf>,
    job: Option<String>,
    status: Option<crate::record::RunStatus>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let q = HistoryQuery {
        job,
        status,
        since,
        limit: Some(limit),
        real_only: false,
    };
    let runs = Backend::open(config).await?.history(&q).await?;
    if json {
        print_json(&runs)?;
    } else {
        print(&cli::history_table(&runs, cli::terminal_width()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--since AGE` as the instant that long ago.
fn since_arg(since: Option<String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    since
        .map(|s| {
            crate::diag::parse_duration(&s)
                .map_err(anyhow::Error::msg)
                .and_then(|d| Ok(chrono::Utc::now() - chrono::Duration::from_std(d)?))
        })
        .transpose()
        .context("--since")
}

/// The fleet's PostgreSQL, from the configuration's `[fleet]`.
async fn central(config: &Config) -> anyhow::Result<crate::fleet::Central> {
    let Some(settings) = &config.fleet else {
        anyhow::bail!(
            "{} has no [fleet] section: add one with postgres = \"postgres://...\" (or postgres_env) to share history with other hosts",
            config.path.display()
        );
    };
    Ok(crate::fleet::Central::connect(settings).await?)
}

/// `opsd history --fleet`: every host's runs, newest first.
async fn fleet_history(
    config: &Config,
    q: &crate::fleet::FleetQuery<'_>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let runs = central(config).await?.history(q).await?;
    if json {
        print_json(&runs)?;
    } else {
        print(&cli::fleet_history_table(&runs, cli::terminal_width()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `opsd fleet status`: the hosts PostgreSQL has heard from, and the
/// fleet jobs with their next slot and last host.
async fn fleet_status(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let central = central(config).await?;
    let hosts = central.hosts().await?;
    let jobs = central.jobs().await?;
    if json {
        print_json(&serde_json::json!({ "hosts": hosts, "jobs": jobs }))?;
    } else {
        print(&cli::fleet_hosts_table(&hosts, chrono::Utc::now()))?;
        if !jobs.is_empty() {
            print("\n")?;
            print(&cli::fleet_jobs_table(&jobs))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `opsd schedule list --fleet`: the fleet jobs as the fleet sees them.
async fn fleet_schedule(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let jobs = central(config).await?.jobs().await?;
    if json {
        print_json(&jobs)?;
    } else {
        print(&cli::fleet_jobs_table(&jobs))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `opsd report --fleet` is built from: every host's runs in the
/// central history, and the hosts.
async fn fleet_report_input(
    config: &Config,
    seconds: i64,
) -> anyhow::Result<opsd_report_core::input::Input> {
    let central = central(config).await?;
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::seconds(seconds.saturating_mul(2));
    let runs = central
        .history(&crate::fleet::FleetQuery {
            since: Some(since),
            limit: 100_000,
            ..Default::default()
        })
        .await?;
    let hosts = central.hosts().await?;
    Ok(opsd_report_core::input::Input {
        hostname: format!("fleet of {} hosts", hosts.len()),
        now: now.timestamp(),
        runs: runs
            .into_iter()
            .map(|f| {
                let mut run = crate::ops::run_in(f.record);
                run.host = Some(f.host);
                run
            })
            .collect(),
        jobs: Vec::new(),
        samples: Vec::new(),
        current: None,
        hosts: hosts
            .into_iter()
            .map(|h| opsd_report_core::input::HostIn {
                labels: h
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                name: h.name,
                last_seen: h.last_seen.timestamp(),
                outbox: h.outbox,
            })
            .collect(),
    })
}

/// `opsd report`: to a file (written whole, then renamed) or stdout.
async fn report(
    config: Option<PathBuf>,
    since: &str,
    format: &str,
    output: Option<std::path::PathBuf>,
    fleet: bool,
) -> anyhow::Result<ExitCode> {
    let seconds = opsd_report_core::parse_span(since).with_context(|| {
        format!("--since `{since}`: write a span such as 24h, 7d or 30d (at most 36500d)")
    })?;
    let format = opsd_report_core::Format::parse(format)
        .with_context(|| format!("--format `{format}`: use text, md, html or json"))?;
    let input = if fleet {
        fleet_report_input(&load_config(config)?, seconds).await?
    } else {
        Backend::open(config).await?.report_input(seconds).await?
    };
    let period = opsd_report_core::Period::last(seconds, input.now);
    let report = opsd_report_core::build(&input, period);
    let text = opsd_report_core::render(&report, format);
    match output {
        Some(path) => {
            let tmp = path.with_extension("opsd-tmp");
            std::fs::write(&tmp, &text)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None if format == opsd_report_core::Format::Json => write_out(&crate::escape::json(&text))?,
        None => print(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `opsd logs`.
async fn logs(config: Option<PathBuf>, run_id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let backend = Backend::open(config).await?;
    let lines = backend.run_log(run_id).await?;
    // What the plugin reported beside its summary, after the log.
    let details = if json {
        None
    } else {
        backend.run_record(run_id).await.ok().map(|rec| rec.details)
    };
    // Closed before the output, which may wait on a pager.
    drop(backend);
    if json {
        print_json(&lines)?;
    } else {
        print(&cli::log_text(&lines))?;
        if let Some(details) = details.filter(|d| !d.trim().is_empty()) {
            print(&cli::details_text(&details))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `opsd schedule next`: needs no configuration.
fn schedule_next(
    expr: &str,
    tz: &str,
    after: Option<&str>,
    count: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let zone: chrono_tz::Tz = tz.parse().map_err(|_| {
        anyhow::anyhow!(
            "unknown time zone `{tz}`: use an IANA name such as `Europe/Berlin` or `UTC`"
        )
    })?;
    let schedule = crate::schedule::Schedule::parse(expr)?;
    if schedule.is_reboot() {
        anyhow::bail!("`@reboot` has no calendar times: it fires once each time the daemon starts");
    }
    let now = chrono::Utc::now();
    let after = match after {
        Some(a) => chrono::DateTime::parse_from_rfc3339(a)
            .map_err(|e| anyhow::anyhow!("--after `{a}` is not an RFC 3339 time ({e}); write e.g. 2026-03-08T00:00:00-05:00"))?
            .to_utc(),
        None => now,
    };
    let fires = schedule.upcoming(after, zone, count);
    if json {
        let times: Vec<String> = fires
            .iter()
            .map(|f| f.with_timezone(&zone).to_rfc3339())
            .collect();
        print_json(&times)?;
    } else {
        print(&cli::next_fires_text(expr, zone, &fires, now))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_enabled(
    config: Option<PathBuf>,
    job: &str,
    enabled: bool,
) -> anyhow::Result<ExitCode> {
    let entry = Backend::open(config)
        .await?
        .set_enabled(job, enabled)
        .await?;
    let next = entry
        .next
        .map(|n| format!("; next run {n}"))
        .unwrap_or_default();
    print(&format!(
        "{}: {}{next}\n",
        entry.job,
        if entry.enabled { "enabled" } else { "disabled" }
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `opsd schedule show JOB`.
async fn show(config: Option<PathBuf>, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let detail = Backend::open(config).await?.job_detail(name).await?;
    if json {
        print_json(&detail)?;
    } else {
        print(&detail.text(chrono::Utc::now()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr when a plugin compiles: a Python or JavaScript plugin
/// takes seconds the first time, which look like a hang in silence.
fn say_compiles(runtime: &crate::runtime::Runtime) {
    use crate::runtime::CompileEvent;
    runtime.on_compile(Arc::new(|e| match e {
        CompileEvent::Started { what, bytes } => eprintln!(
            "opsd: compiling {} ({:.1} MiB) for this machine; once per file, later commands and runs load it from the cache",
            crate::escape::line(what),
            bytes as f64 / 1048576.0
        ),
        CompileEvent::Finished { plugin, ms, .. } => eprintln!(
            "opsd: compiled plugin {plugin} in {}",
            crate::diag::human_ms(ms)
        ),
    }));
}

/// `opsd check`: the configuration loaded (or this was not reached); now
/// each job against its plugin.
async fn check(config: Config) -> anyhow::Result<ExitCode> {
    let runtime = Arc::new(crate::runtime::Runtime::new(config.data_dir.join("cache"))?);
    say_compiles(&runtime);
    let registry = crate::plugins::Registry::new(
        runtime,
        config.plugin_dir.clone(),
        config.override_builtin.clone(),
    );
    let findings = crate::check::check(&config, &registry).await;
    let file = config.path.display().to_string();
    let mut text = String::new();
    for f in &findings {
        // A finding can quote a plugin's description: its continuation
        // lines are indented, so none passes for a finding of its own.
        text.push_str(&format!(
            "{file}:{}\n",
            crate::escape::indented(&f.to_string(), "    ")
        ));
    }
    let errors = findings
        .iter()
        .filter(|f| f.level == crate::check::Level::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.level == crate::check::Level::Warning)
        .count();
    text.push_str(&format!(
        "{file}: {} job{}, {errors} error{}, {warnings} warning{}\n",
        config.jobs.len(),
        if config.jobs.len() == 1 { "" } else { "s" },
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    ));
    print(&text)?;
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `opsd plugin new`: writes the project and says how to build it.
fn new_plugin(
    name: &str,
    lang: crate::scaffold::Lang,
    dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let written = crate::scaffold::create(name, lang, &dir)?;
    print(&format!(
        "created {} ({} files)\n\ntest and build:\n  cd {}\n  opsd plugin test\n  opsd plugin build\ninstall:\n  cp {} DATA_DIR/plugins/\n",
        dir.display(),
        written.len(),
        dir.display(),
        crate::scaffold::artifact(name, lang),
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn project_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from("."))
}

fn lang_name(lang: crate::scaffold::Lang) -> &'static str {
    match lang {
        crate::scaffold::Lang::Rust => "Rust",
        crate::scaffold::Lang::Python => "Python",
        crate::scaffold::Lang::Js => "JavaScript",
    }
}

/// `opsd plugin build`: the component, then the same load and checks a
/// dropped-in file gets (compiled in a cache of its own, removed after).
async fn build_plugin(dir: &Path) -> anyhow::Result<ExitCode> {
    let project = crate::project::Project::detect(dir)?;
    let started = std::time::Instant::now();
    let wasm = project.build()?;
    let built = started.elapsed();
    let cache = std::env::temp_dir().join(format!("opsd-plugin-build-{}", std::process::id()));
    let runtime = Arc::new(crate::runtime::Runtime::new(cache.clone())?);
    let registry = crate::plugins::Registry::new(runtime, cache.clone(), Vec::new());
    eprintln!(
        "opsd: checking {} as a dropped-in plugin (compiling it)",
        wasm.display()
    );
    let checked = std::time::Instant::now();
    let report = registry.inspect(&wasm.to_string_lossy()).await;
    let compile = checked.elapsed();
    // Best effort: a cache left in the temp directory is only space.
    let _ = std::fs::remove_dir_all(&cache);
    if !report.accepted {
        print(&cli::inspection_text(&report))?;
        eprintln!(
            "opsd: {} was built but opsd would not load it: {}",
            wasm.display(),
            report.error.as_deref().unwrap_or("see above")
        );
        return Ok(ExitCode::from(1));
    }
    let (name, version) = report
        .info
        .as_ref()
        .map(|i| (i.name.as_str(), i.version.as_str()))
        .unwrap_or((project.name.as_str(), "?"));
    let mib = report.size as f64 / 1048576.0;
    print(&format!(
        "built {} ({}) in {}: {}, {mib:.1} MiB\naccepted as plugin {name} {version} ({}), compiled in {}\ninstall:\n  cp {} DATA_DIR/plugins/\n",
        project.name,
        lang_name(project.lang),
        crate::diag::human_ms(built.as_secs_f64() * 1000.0),
        wasm.display(),
        report
            .contract
            .as_deref()
            .map_or("opsd:plugin".into(), |v| format!("opsd:plugin@{v}")),
        crate::diag::human_ms(compile.as_secs_f64() * 1000.0),
        wasm.display(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

async fn plugins(config: Config, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::New { name, lang, dir } => new_plugin(&name, lang, dir),
        PluginsCommand::Build { dir } => build_plugin(&project_dir(dir)).await,
        PluginsCommand::Test { dir } => {
            crate::project::Project::detect(&project_dir(dir))?.test()?;
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::List { json } => {
            let list = match &Backend::connect(config).await? {
                Backend::Daemon(c) => c.plugins().await?,
                Backend::Local(ops) => ops.registry().list().await,
            };
            if json {
                print_json(&list)?;
            } else {
                print(&cli::plugins_table(&list, cli::terminal_width()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Inspect { file, json } => {
            // About a file, not the daemon's state: no store needed.
            let runtime = Arc::new(crate::runtime::Runtime::new(config.data_dir.join("cache"))?);
            let registry = crate::plugins::Registry::new(
                runtime,
                config.plugin_dir.clone(),
                config.override_builtin.clone(),
            );
            let report = registry.inspect(&file).await;
            if json {
                print_json(&report)?;
            } else {
                print(&cli::inspection_text(&report))?;
            }
            Ok(if report.accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
