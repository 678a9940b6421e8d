//! A real ACME server for the tests: Debian's Pebble, started once per test
//! process on free ports with a TLS certificate made here by openssl (the
//! package ships none), every challenge taken as valid
//! (`PEBBLE_VA_ALWAYS_VALID`), no nonce rejection, and a one-hour
//! certificate lifetime so renewal can be exercised; and a second one that
//! really checks DNS-01 records against the tests' `named`. Stopped when
//! the process exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Lifetime of the certificates Pebble issues, in seconds.
pub const VALIDITY_SECS: u64 = 3600;

/// The running server.
pub struct Pebble {
    pub dir: PathBuf,
    /// The ACME directory URL.
    pub directory: String,
    /// The origin to grant (`https://localhost:PORT`).
    pub origin: String,
    /// The CA that signed Pebble's own TLS certificate (the `ca` grant).
    pub tls_ca: PathBuf,
    mgmt_port: u16,
}

static PEBBLE: OnceLock<Result<Pebble, String>> = OnceLock::new();
static PEBBLE_DNS: OnceLock<Result<Pebble, String>> = OnceLock::new();
static PIDS: [AtomicI32; 2] = [AtomicI32::new(0), AtomicI32::new(0)];

extern "C" fn stop_server() {
    for pid in &PIDS {
        let pid = pid.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: signalling a server we started.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// The shared server, started on first use.
pub fn pebble() -> &'static Pebble {
    match PEBBLE.get_or_init(|| start(None)) {
        Ok(p) => p,
        Err(e) => panic!("cannot start Pebble for the tests: {e}"),
    }
}

/// A second shared server that really validates challenges (no
/// `PEBBLE_VA_ALWAYS_VALID`), looking names up at `dns_server`
/// (`host:port`, the tests' own `named`): DNS-01 passes only when the TXT
/// record is there.
pub fn pebble_validating(dns_server: &str) -> &'static Pebble {
    match PEBBLE_DNS.get_or_init(|| start(Some(dns_server))) {
        Ok(p) => p,
        Err(e) => panic!("cannot start the validating Pebble for the tests: {e}"),
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl (package openssl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A small CA and a `localhost` certificate it signs, for Pebble's HTTPS.
fn make_tls(dir: &Path) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=opsd test TLS CA",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            "/CN=localhost",
        ],
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
        ],
    )
}

fn start(dns_server: Option<&str>) -> Result<Pebble, String> {
    let dir = tempfile::Builder::new()
        .prefix("opsd-pebble")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    make_tls(&dir)?;
    let port = free_port()?;
    let mgmt_port = free_port()?;
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": dir.join("cert.pem"),
            "privateKey": dir.join("key.pem"),
            "httpPort": free_port()?,
            "tlsPort": free_port()?,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": VALIDITY_SECS,
        }
    });
    std::fs::write(dir.join("pebble.json"), config.to_string()).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("pebble.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("pebble");
    cmd.arg("-config").arg(dir.join("pebble.json"));
    match dns_server {
        Some(server) => cmd.arg("-dnsserver").arg(server),
        None => cmd.env("PEBBLE_VA_ALWAYS_VALID", "1"),
    };
    let child = cmd
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("pebble (Debian package pebble): {e}"))?;
    PIDS[usize::from(dns_server.is_some())].store(child.id() as i32, Ordering::SeqCst);
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering a plain extern "C" function with no state.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(stop_server);
    });
    let p = Pebble {
        directory: format!("https://localhost:{port}/dir"),
        origin: format!("https://localhost:{port}"),
        tls_ca: dir.join("ca.pem"),
        dir,
        mgmt_port,
    };
    let start = Instant::now();
    while p.get(&p.directory).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            let log = std::fs::read_to_string(p.dir.join("pebble.log")).unwrap_or_default();
            return Err(format!("Pebble did not answer in 30s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(p)
}

impl Pebble {
    fn get(&self, url: &str) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(&self.tls_ca)
            .arg(url)
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes the root that signs Pebble's issued certificates (it is made
    /// fresh each start) to a file.
    pub fn root_pem(&self, to: &Path) {
        let pem = self
            .get(&format!("https://localhost:{}/roots/0", self.mgmt_port))
            .expect("Pebble's root");
        std::fs::write(to, pem).expect("write root");
    }

    /// `openssl verify` of the leaf in `chain` against this server's root
    /// (written into `scratch`), with the rest of the file as
    /// intermediates.
    pub fn verify_chain(&self, scratch: &Path, chain: &Path) {
        let root = scratch.join("pebble-root.pem");
        self.root_pem(&root);
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&root)
            .arg("-untrusted")
            .arg(chain)
            .arg(chain)
            .output()
            .expect("openssl verify");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK"),
            "openssl verify: {}",
            crate::util::text(&out)
        );
    }
}
