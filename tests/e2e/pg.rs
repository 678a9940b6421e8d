//! A real PostgreSQL server for the tests: initdb in a temp dir, run as
//! the `postgres` user when the tests run as root (initdb refuses root),
//! listening on a Unix socket only, autovacuum off so dead tuples stay
//! until a test vacuums them. Started once per test process, stopped
//! when the process exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The running server.
pub struct Pg {
    /// Directory of its Unix socket: the `host` for libpq programs.
    pub socket_dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

static PG: OnceLock<Result<Pg, String>> = OnceLock::new();
static PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_server() {
    let pid = PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling the server we started; SIGQUIT is an
        // immediate shutdown.
        unsafe {
            libc::kill(pid, libc::SIGQUIT);
        }
    }
}

/// The shared server, started on first use.
pub fn pg() -> &'static Pg {
    match PG.get_or_init(start) {
        Ok(pg) => pg,
        Err(e) => panic!("cannot start PostgreSQL for the tests: {e}"),
    }
}

fn bindir() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed (Debian package postgresql)".to_string())?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql/*/bin".into())
}

/// Prefixes a command so it runs as `postgres` when we are root.
fn as_postgres(program: &std::path::Path) -> Command {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> Result<Pg, String> {
    let (pg, child) = launch()?;
    PID.store(child.id() as i32, Ordering::SeqCst);
    // SAFETY: registering a plain extern "C" function with no state.
    unsafe {
        libc::atexit(stop_server);
    }
    Ok(pg)
}

/// A server of its own, in a new directory: initdb, then started.
fn launch() -> Result<(Pg, std::process::Child), String> {
    let bin = bindir()?;
    let base = tempfile::Builder::new()
        .prefix("opsd-pg")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&base)
            .status()
            .map(|s| s.success());
        if !ok.is_ok_and(|s| s) {
            return Err("chown to postgres failed (is there a postgres user?)".into());
        }
    }
    let data = base.join("data");
    let out = as_postgres(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let pg = Pg {
        socket_dir: base,
        port,
        bin,
    };
    let child = pg.serve()?;
    Ok((pg, child))
}

/// A server a test may stop and start again (the shared one must stay
/// up for the others): stopped for good when dropped.
pub struct PrivatePg {
    pub pg: Pg,
    child: Option<std::process::Child>,
}

impl PrivatePg {
    pub fn new() -> PrivatePg {
        let (pg, child) = launch().unwrap_or_else(|e| panic!("a private PostgreSQL: {e}"));
        PrivatePg {
            pg,
            child: Some(child),
        }
    }

    /// Fast shutdown (SIGINT), waiting for the server to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling the server we started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGINT);
            }
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn start(&mut self) {
        if self.child.is_none() {
            self.child = Some(self.pg.serve().unwrap_or_else(|e| panic!("{e}")));
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // SAFETY: signalling the server we started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGQUIT);
            }
        }
    }
}

impl Pg {
    /// Starts the server on its data directory and waits until it answers.
    fn serve(&self) -> Result<std::process::Child, String> {
        let base = &self.socket_dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(base.join("postgres.log"))
            .map_err(|e| e.to_string())?;
        let mut child = as_postgres(&self.bin.join("postgres"))
            .arg("-D")
            .arg(base.join("data"))
            .arg("-k")
            .arg(base)
            .args(["-p", &self.port.to_string()])
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "autovacuum=off",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let start = Instant::now();
        loop {
            if self.try_sql("postgres", "SELECT 1").is_ok() {
                return Ok(child);
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let log = std::fs::read_to_string(base.join("postgres.log")).unwrap_or_default();
                return Err(format!("the server did not come up in 30s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs SQL in `db`; returns unaligned, tuples-only output.
    pub fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-h",
            ])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs SQL, panicking with the server's message on failure.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A new, empty database with a unique name.
    pub fn create_db(&self, prefix: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// A PostgreSQL program (pg_restore, ...) from the server's version.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// The `postgres = {...}` connection table for a job config.
    /// The net grant that lets a job's programs reach this server's socket.
    pub fn unix_grant(&self) -> String {
        format!(
            "unix:{}",
            self.socket_dir
                .join(format!(".s.PGSQL.{}", self.port))
                .display()
        )
    }

    pub fn conn_toml(&self) -> String {
        format!(
            "{{ host = \"{}\", port = {}, user = \"postgres\" }}",
            self.socket_dir.display(),
            self.port
        )
    }
}
