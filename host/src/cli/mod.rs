//! Command-line arguments. What people read is in [`render`] (tables in
//! the style of `systemctl list-timers`) and [`follow`] (a run streamed
//! live); `--json` prints the records the control socket returns.

mod follow;
mod render;

pub use follow::FollowPrinter;
pub use render::*;

use crate::record::RunStatus;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// opsd: a maintenance scheduler that runs sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "opsd", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: /etc/opsd/opsd.toml for root,
    /// ~/.config/opsd/opsd.toml otherwise]
    #[arg(long, global = true, env = "OPSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How the daemon's own log lines are written to stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More log output (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For a terminal
    Human,
    /// One JSON object a line, for journald and collectors
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler until SIGINT or SIGTERM
    Daemon,
    /// Show the schedule
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Run a job now and wait for it (exit 1 if it fails)
    Run {
        /// Job name from the configuration
        job: String,
        /// Ask the plugin to report what it would do, changing nothing
        #[arg(long)]
        dry_run: bool,
        /// Set a [job.config] key for this run only (repeatable; VALUE is a
        /// TOML value, else a string), e.g. --set force=true
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Print the run record as JSON
        #[arg(long)]
        json: bool,
        /// Stream the plugin's log lines as they happen, with a progress bar
        #[arg(long, short)]
        follow: bool,
    },
    /// Show past runs, newest first
    History {
        /// Only this job's runs
        #[arg(long)]
        job: Option<String>,
        /// Only runs that ended this way
        #[arg(long, value_enum)]
        status: Option<RunStatus>,
        /// Only runs started within this long ago (`7d`, `12h`)
        #[arg(long, value_name = "AGE")]
        since: Option<String>,
        /// At most this many runs
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print records as a JSON array
        #[arg(long)]
        json: bool,
        /// Every host's runs, from the fleet's PostgreSQL (`[fleet]`)
        #[arg(long)]
        fleet: bool,
        /// With --fleet: only this host's runs
        #[arg(long, requires = "fleet")]
        host: Option<String>,
    },
    /// A report over run history and the machine: per-job success,
    /// failures, durations against the previous period, backups,
    /// certificates, audit findings, CPU/memory/disk against the runbook's
    /// limits
    Report {
        /// The span covered, ending now (`24h`, `7d`, `30d`)
        #[arg(long, default_value = "1d", value_name = "SPAN")]
        since: String,
        /// text, md, html or json
        #[arg(long, default_value = "text")]
        format: String,
        /// Write here (atomically) instead of standard output
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The whole fleet's runs, per host and per job, from the fleet's
        /// PostgreSQL (`[fleet]`)
        #[arg(long)]
        fleet: bool,
    },
    /// Show the captured log of one run
    Logs {
        /// Run id, as `opsd history` shows it
        run_id: String,
        /// Print lines as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// The machine now against the runbook's thresholds and the jobs' `when` conditions
    Status {
        /// Print it as JSON
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration, and each job against what its plugin asks for
    Check,
    /// Plugins: built in, and dropped into plugin_dir; `plugin new` starts one
    #[command(visible_alias = "plugin")]
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// The fleet sharing this host's `[fleet]` PostgreSQL
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Turn existing schedules into opsd jobs: prints a config to review
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): `opsd man > /usr/local/share/man/man1/opsd.1`
    Man,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Every host the fleet has heard from: labels, version, when last
    /// seen, runs waiting in its outbox
    Status {
        /// Print a JSON object with a `hosts` array
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A crontab as `command` jobs: your own (`crontab -l`) with no FILE;
    /// /etc/crontab and /etc/cron.d/* (or a directory) with a user field
    Crontab {
        /// Crontab files or cron.d-style directories
        files: Vec<PathBuf>,
        /// Read every FILE as a system crontab (a user field after the
        /// schedule), as /etc/crontab and /etc/cron.d/* are read anyway
        #[arg(long)]
        system: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Every plugin opsd knows, with version, source and hash
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Create a plugin project (Rust, Python or JavaScript) that builds, tests and runs as it is
    New {
        /// The plugin's name: lowercase letters, digits and dashes
        name: String,
        /// The language to write it in
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// Where to create it (default: ./NAME); must not exist
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Build a plugin project (Rust, Python or JavaScript) into a component
    /// and check it as a dropped-in file would be
    Build {
        /// The project directory [default: .]
        dir: Option<std::path::PathBuf>,
    },
    /// Run a plugin project's own tests, installing what they need first
    Test {
        /// The project directory [default: .]
        dir: Option<std::path::PathBuf>,
    },
    /// What a .wasm file is and whether opsd would accept it
    Inspect {
        /// Path to a .wasm file, or the name of a known plugin
        file: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Every job with its next and last run
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
        /// The fleet's jobs (scope = "fleet"): next slot, last host, the
        /// hosts that may run each, from the fleet's PostgreSQL
        #[arg(long)]
        fleet: bool,
    },
    /// One job in detail: schedule, next fires, last run, policies, grants
    Show {
        /// Job name from the configuration
        job: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Let the scheduler fire a job again (persists across restarts)
    Enable {
        /// Job name from the configuration
        job: String,
    },
    /// Stop the scheduler firing a job (persists across restarts; `opsd run` still works)
    Disable {
        /// Job name from the configuration
        job: String,
    },
    /// When an expression fires, like `systemd-analyze calendar`
    Next {
        /// A crontab expression or @nickname, e.g. "0 2 * * sun"
        expr: String,
        /// IANA time zone the expression is read in
        #[arg(long, default_value = "UTC", value_name = "ZONE")]
        tz: String,
        /// List fire times strictly after this instant [default: now]
        #[arg(long, value_name = "RFC3339")]
        after: Option<String>,
        /// How many fire times
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Print a JSON array of RFC 3339 times with the zone's offset
        #[arg(long)]
        json: bool,
    },
}

/// Where the configuration is when `--config` is not given.
pub fn default_config_path() -> PathBuf {
    crate::config::system_or_user_path(
        "/etc/opsd/opsd.toml",
        "XDG_CONFIG_HOME",
        ".config",
        "opsd/opsd.toml",
    )
}
