//! The `opsd` command. Errors are printed with their whole chain; exit
//! status 0 is success, 1 a failed run or a failed check, 2 any other
//! error. A closed stdout (`opsd history | head`) is not an error.

use anyhow::Context as _;
use clap::Parser;
use opsd::api::Client;
use opsd::cli::{self, Cli, Command, LogFormat, ScheduleCommand};
use opsd::config::Config;
use opsd::ops::{Ops, ScheduleEntry, Start};
use opsd::record::{LogLine, RunRecord, Trigger};
use opsd::store::HistoryQuery;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.verbose, matches!(cli.command, Command::Daemon)) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Where a command's answers come from: the running daemon, or the store
/// opened directly when no daemon runs. Both return the same records.
enum Backend {
    Daemon(Client),
    Local(Arc<Ops>),
}

impl Backend {
    async fn connect(config: Config) -> anyhow::Result<Backend> {
        if let Some(client) = Client::connect(&config.socket).await {
            return Ok(Backend::Daemon(client));
        }
        let clock = Arc::new(opsd::clock::SystemClock);
        Ok(Backend::Local(Arc::new(Ops::open(config, clock)?)))
    }

    async fn schedule(&self) -> anyhow::Result<Vec<ScheduleEntry>> {
        match self {
            Backend::Daemon(c) => c.schedule().await,
            Backend::Local(ops) => Ok(ops.schedule()?),
        }
    }

    async fn run_job(&self, job: &str, dry_run: bool) -> anyhow::Result<RunRecord> {
        match self {
            Backend::Daemon(c) => c.run_job(job, dry_run).await,
            Backend::Local(ops) => {
                let start = Start {
                    dry_run,
                    ..Start::new(Trigger::Manual, chrono::Utc::now())
                };
                Ok(ops.run_job(job, start).await?)
            }
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

    async fn run_log(&self, id: &str) -> anyhow::Result<Vec<LogLine>> {
        match self {
            Backend::Daemon(c) => c.run_log(id).await,
            Backend::Local(ops) => Ok(ops.run_log(id)?),
        }
    }
}

fn load_config(path: Option<std::path::PathBuf>) -> anyhow::Result<Config> {
    let path = path.unwrap_or_else(cli::default_config_path);
    if !path.exists() {
        anyhow::bail!(
            "no configuration at {}; pass --config FILE or set OPSD_CONFIG (examples/opsd.toml is a place to start)",
            path.display()
        );
    }
    Ok(Config::load(&path)?)
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    print(&(serde_json::to_string_pretty(value)? + "\n"))
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
    let schedule = opsd::schedule::Schedule::parse(expr)?;
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

async fn set_enabled(config: Config, job: &str, enabled: bool) -> anyhow::Result<ExitCode> {
    let entry = Backend::connect(config)
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

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Configuration is read lazily: `schedule next` needs none.
    let config = || load_config(cli.config.clone());
    match cli.command {
        Command::Daemon => {
            opsd::daemon::run(config()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let config = config()?;
            print(&format!(
                "{}: ok, {} job{}\n",
                config.path.display(),
                config.jobs.len(),
                if config.jobs.len() == 1 { "" } else { "s" }
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule {
            command:
                ScheduleCommand::Next {
                    expr,
                    tz,
                    after,
                    count,
                    json,
                },
        } => schedule_next(&expr, &tz, after.as_deref(), count, json),
        Command::Schedule {
            command: ScheduleCommand::Enable { job },
        } => set_enabled(config()?, &job, true).await,
        Command::Schedule {
            command: ScheduleCommand::Disable { job },
        } => set_enabled(config()?, &job, false).await,
        Command::Schedule {
            command: ScheduleCommand::List { json },
        } => {
            let entries = Backend::connect(config()?).await?.schedule().await?;
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
        Command::Run { job, dry_run, json } => {
            let rec = Backend::connect(config()?)
                .await?
                .run_job(&job, dry_run)
                .await?;
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
        Command::History {
            job,
            status,
            since,
            limit,
            json,
        } => {
            let since = since
                .map(|s| {
                    opsd::config::parse_duration(&s)
                        .map_err(anyhow::Error::msg)
                        .and_then(|d| Ok(chrono::Utc::now() - chrono::Duration::from_std(d)?))
                })
                .transpose()
                .context("--since")?;
            let q = HistoryQuery {
                job,
                status,
                since,
                limit: Some(limit),
            };
            let runs = Backend::connect(config()?).await?.history(&q).await?;
            if json {
                print_json(&runs)?;
            } else {
                print(&cli::history_table(&runs, cli::terminal_width()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs { run_id, json } => {
            let lines = Backend::connect(config()?).await?.run_log(&run_id).await?;
            if json {
                print_json(&lines)?;
            } else {
                print(&cli::log_text(&lines))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
