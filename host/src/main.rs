//! The `opsd` command. Errors are printed with their whole chain; exit
//! status 0 is success, 1 a failed run or a failed check, 2 any other
//! error. A closed stdout (`opsd history | head`) is not an error.

use clap::Parser;
use opsd::cli::{Cli, Command, LogFormat};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    limit_malloc_arenas();
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
    match runtime.block_on(opsd::commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // An error can quote what a plugin or the configuration said
            // (a broken job's reasons, a refusal from the daemon): its
            // control characters are shown escaped, as in every output.
            eprintln!("error: {}", opsd::escape::indented(&format!("{e:#}"), ""));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Two glibc malloc arenas instead of one per thread: compiling a plugin
/// on many threads otherwise leaves each thread's arena holding freed
/// memory for the life of the daemon (bench/daemon_footprint.py).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before the
    // async runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Human lines on a terminal (no colour when piped), JSON lines for
/// collectors; the daemon logs at info, other commands only warnings.
fn init_tracing(cli: &Cli) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match (cli.verbose, matches!(cli.command, Command::Daemon)) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let colours = std::io::stderr().is_terminal() && matches!(cli.log_format, LogFormat::Human);
    let json = matches!(cli.log_format, LogFormat::Json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || opsd::escape::LogLines {
            out: std::io::stderr(),
            colours,
            json,
        })
        .with_ansi(colours);
    match cli.log_format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
