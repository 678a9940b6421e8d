//! A private authoritative DNS server for the DNS-01 tests: Debian's BIND
//! `named`, started once per test process on a free loopback port, in the
//! foreground, as part of the test's process tree, and stopped at exit.
//!
//! It serves two zones, both updatable (TXT only) with the TSIG key
//! [`KEY_NAME`]: `dns.opsd.test` answers anyone, `hidden.opsd.test`
//! answers only queries signed with the key (so a plugin's unsigned
//! check is refused after its update went in).

use crate::pebble::free_port;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The TSIG key the zones accept updates from.
pub const KEY_NAME: &str = "opsd-acme";
/// Its secret (base64), HMAC-SHA256.
pub const SECRET: &str = "b3BzZC10ZXN0LXRzaWctc2VjcmV0LWZvci1hY21lLTI1Ng==";

/// The running server.
pub struct Named {
    pub dir: PathBuf,
    /// `127.0.0.1:PORT`, UDP and TCP.
    pub addr: String,
    pub port: u16,
}

static NAMED: OnceLock<Result<Named, String>> = OnceLock::new();
static PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_server() {
    let pid = PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling the server we started.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// The shared server, started on first use.
pub fn named() -> &'static Named {
    match NAMED.get_or_init(start) {
        Ok(n) => n,
        Err(e) => panic!("cannot start named for the tests: {e}"),
    }
}

fn start() -> Result<Named, String> {
    let dir = tempfile::Builder::new()
        .prefix("opsd-named")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        r#"options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  session-keyfile "{d}/session.key";
  managed-keys-directory "{d}";
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "dns.opsd.test" {{ type primary; file "{d}/dns.zone";
  update-policy {{ grant {KEY_NAME} zonesub TXT; }}; }};
zone "hidden.opsd.test" {{ type primary; file "{d}/hidden.zone";
  update-policy {{ grant {KEY_NAME} zonesub TXT; }}; allow-query {{ key {KEY_NAME}; }}; }};
"#
    );
    std::fs::write(dir.join("named.conf"), conf).map_err(|e| e.to_string())?;
    for zone in ["dns", "hidden"] {
        std::fs::write(
            dir.join(format!("{zone}.zone")),
            format!(
                "$TTL 60\n@ IN SOA ns.{zone}.opsd.test. hostmaster.{zone}.opsd.test. 1 60 60 600 60\n\
                 @ IN NS ns.{zone}.opsd.test.\nns IN A 127.0.0.1\n"
            ),
        )
        .map_err(|e| e.to_string())?;
    }
    let log = std::fs::File::create(dir.join("named.log")).map_err(|e| e.to_string())?;
    let child = Command::new("named")
        .arg("-g")
        .arg("-c")
        .arg(dir.join("named.conf"))
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("named (Debian package bind9): {e}"))?;
    PID.store(child.id() as i32, Ordering::SeqCst);
    // SAFETY: registering a plain extern "C" function with no state.
    unsafe {
        libc::atexit(stop_server);
    }
    let n = Named {
        addr: format!("127.0.0.1:{port}"),
        port,
        dir,
    };
    let start = Instant::now();
    while !n
        .dig(false, "ns.dns.opsd.test", "A")
        .is_ok_and(|a| a.contains("127.0.0.1"))
    {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("named did not answer in 30s:\n{}", n.log()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(n)
}

impl Named {
    /// `dig +short` against this server, signed with the key when `signed`.
    pub fn dig(&self, signed: bool, name: &str, typ: &str) -> Result<String, String> {
        let mut c = Command::new("dig");
        c.args(["+short", "+tcp", "+time=2", "+tries=1", "-p"])
            .arg(self.port.to_string())
            .arg("@127.0.0.1");
        if signed {
            c.arg("-y").arg(format!("hmac-sha256:{KEY_NAME}:{SECRET}"));
        }
        let out = c
            .args([name, typ])
            .output()
            .map_err(|e| format!("dig (Debian package bind9-dnsutils): {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() || text.contains(";;") {
            return Err(format!("dig {name} {typ}: {text}"));
        }
        Ok(text)
    }

    /// The server's log so far (it logs every update it applies).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("named.log")).unwrap_or_default()
    }
}
