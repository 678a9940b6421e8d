//! cert-renew against a real ACME server (Pebble): issue, leave alone,
//! renew near expiry (the clock moved with faketime), verify the chain with
//! `openssl verify`; grants that deny; certbot mode; scanning.

use crate::pebble::{VALIDITY_SECS, pebble};
use crate::util::{Env, text};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn assert_summary(rec: &serde_json::Value, start: &str) {
    assert!(
        rec["summary"].as_str().unwrap_or("").starts_with(start),
        "summary should start with {start:?}: {rec:#}"
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn public_key_of(args: &[&str], path: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(path)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cert-renew job against Pebble; `extra` goes into `[job.config]`,
/// `deploy_dir` (a host directory the deploy hook writes to) is granted.
fn acme_env(net: &str, with_ca: bool, extra: &str, deploy_dir: Option<&Path>) -> Env {
    let p = pebble();
    let ca = if with_ca {
        format!("ca = [\"{}\"]\n", p.tls_ca.display())
    } else {
        String::new()
    };
    let deploy = deploy_dir
        .map(|d| {
            format!(
                "  {{ host = \"{0}\", guest = \"{0}\", access = \"rw\" }},\n",
                d.display()
            )
        })
        .unwrap_or_default();
    let env = Env::new(&format!(
        r#"
[[job]]
name = "certs"
plugin = "cert-renew"
schedule = "17 3 * * *"
[job.grants]
fs = [
  {{ host = "ssl", guest = "/etc/ssl/opsd", access = "rw", create = true }},
  {{ host = "www", guest = "/var/www/html", access = "rw", create = true }},
{deploy}]
net = ["{net}"]
{ca}exec = ["touch"]
[job.config]
{extra}
[job.config.acme]
directory = "{dir}"
email = "ops@opsd.test"
account_key = "/etc/ssl/opsd/account.key"
webroot = "/var/www/html"
[[job.config.certs]]
domains = ["opsd.test", "www.opsd.test"]
cert = "/etc/ssl/opsd/opsd.test/fullchain.pem"
key = "/etc/ssl/opsd/opsd.test/privkey.pem"
"#,
        dir = p.directory,
    ));
    std::fs::create_dir_all(env.path("ssl/opsd.test")).unwrap();
    env
}

#[test]
fn issues_leaves_alone_and_renews_near_expiry() {
    let p = pebble();
    let deployed = tempfile::tempdir().unwrap();
    let marker = deployed.path().join("deployed");
    let env = acme_env(
        &p.origin,
        true,
        &format!("deploy_hook = [\"touch\", \"{}\"]", marker.display()),
        Some(deployed.path()),
    );
    let chain = env.path("ssl/opsd.test/fullchain.pem");
    let key = env.path("ssl/opsd.test/privkey.pem");

    // 1. No certificate yet: issue one.
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_summary(&rec, "renewed 1 of 1 certificates");
    pebble().verify_chain(env.dir.path(), &chain);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&env.path("ssl/account.key")), 0o600);
    assert_eq!(
        public_key_of(&["x509", "-noout", "-pubkey", "-in"], &chain),
        public_key_of(&["pkey", "-pubout", "-in"], &key),
        "the key written is the certificate's"
    );
    let names = public_key_of(&["x509", "-noout", "-ext", "subjectAltName", "-in"], &chain);
    assert!(
        names.contains("DNS:opsd.test") && names.contains("DNS:www.opsd.test"),
        "{names}"
    );
    assert!(marker.exists(), "the deploy hook ran");
    // The challenge files are cleaned up.
    let challenges = env.path("www/.well-known/acme-challenge");
    assert_eq!(std::fs::read_dir(&challenges).unwrap().count(), 0);
    let first = std::fs::read(&chain).unwrap();

    // 2. Fresh certificate: left alone, no deploy.
    std::fs::remove_file(&marker).unwrap();
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_summary(&rec, "renewed 0 of 1 certificates");
    assert_eq!(std::fs::read(&chain).unwrap(), first);
    assert!(!marker.exists());

    // 3. Later, with under a third of the lifetime left: renewed.
    let later = format!("+{}", VALIDITY_SECS * 5 / 6);
    let out = env
        .cmd(&["run", "certs", "--json"])
        .env("FAKETIME", &later)
        .env(
            "LD_PRELOAD",
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        )
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("NO_FAKE_STAT", "1")
        .output()
        .unwrap();
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_summary(&rec, "renewed 1 of 1 certificates");
    assert_ne!(std::fs::read(&chain).unwrap(), first, "a new certificate");
    pebble().verify_chain(env.dir.path(), &chain);
    assert_eq!(mode(&key), 0o600);
    assert!(marker.exists(), "the deploy hook ran again");
}

#[test]
fn a_dry_run_writes_nothing() {
    let env = acme_env(&pebble().origin, true, "", None);
    let out = env.run(&["run", "certs", "--dry-run", "--json"]);
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_summary(&rec, "would renew 1 of 1 certificates");
    assert!(!env.path("ssl/opsd.test/fullchain.pem").exists());
    assert!(!env.path("ssl/account.key").exists());
}

/// A certificate directory that cannot take the files is found before
/// anything is ordered (an issued certificate that cannot be saved is
/// thrown away and counts against the CA's rate limit); the dry run says
/// so too. (One that does not exist yet is made by the first install.)
#[test]
fn nothing_is_ordered_that_cannot_be_saved() {
    let env = acme_env(&pebble().origin, true, "", None);
    std::fs::remove_dir(env.path("ssl/opsd.test")).unwrap();
    std::fs::write(env.path("ssl/opsd.test"), "not a directory").unwrap();
    let out = env.run(&["run", "certs", "--dry-run", "--json"]);
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains("was not ordered: /etc/ssl/opsd/opsd.test is not a directory"),
        "{error}"
    );
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("no certificate was requested"),
        "{rec:#}"
    );
    assert!(
        !env.path("ssl/account.key").exists(),
        "not even an account was made: {rec:#}"
    );
}

#[test]
fn a_denied_origin_fails_and_says_which_grant() {
    let env = acme_env("https://acme.opsd.test", true, "", None);
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap();
    let origin = &pebble().origin;
    assert!(
        error.contains(origin.as_str()) && error.contains("net"),
        "the error names the origin and the net grant: {error}"
    );
    assert!(!env.path("ssl/opsd.test/fullchain.pem").exists());
}

#[test]
fn an_untrusted_server_certificate_points_at_the_ca_grant() {
    let env = acme_env(&pebble().origin, false, "", None);
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let logs = env.json(&["logs", rec["id"].as_str().unwrap(), "--json"]);
    let all = logs.to_string();
    assert!(
        all.contains("ca = [...]"),
        "the run log says to grant the CA: {all}"
    );
}

#[test]
fn command_mode_runs_certbot_and_reads_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let certbot = dir.path().join("certbot");
    std::fs::write(
        &certbot,
        "#!/bin/sh\n\
         echo 'Processing /etc/letsencrypt/renewal/a.example.conf'\n\
         echo 'Congratulations, all renewals succeeded:'\n\
         echo '  /etc/letsencrypt/live/a.example/fullchain.pem (success)'\n\
         echo \"args: $*\" >&2\n",
    )
    .unwrap();
    std::fs::set_permissions(&certbot, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The deploy hook writes elsewhere: a program inside a read-write
    // grant is refused (the plugin could rewrite it).
    let hook_dir = tempfile::tempdir().unwrap();
    let marker = hook_dir.path().join("reloaded");
    let env = Env::new(&format!(
        r#"
[[job]]
name = "certbot"
plugin = "cert-renew"
schedule = "@daily"
[job.grants]
exec = ["{certbot}", "touch"]
fs = [{{ host = "{dir}", guest = "/hook", access = "rw" }}]
[job.config]
mode = "command"
command = ["{certbot}", "renew"]
deploy_hook = ["touch", "{marker}"]
"#,
        certbot = certbot.display(),
        marker = marker.display(),
        dir = hook_dir.path().display()
    ));
    let rec = env.run_job("certbot");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert_summary(&rec, "renewed 1 of 1");
    assert!(marker.exists());
    // A failing certbot fails the run.
    std::fs::write(
        &certbot,
        "#!/bin/sh\necho 'All renewals failed. The following certificates could not be renewed:'\necho '  /etc/letsencrypt/live/a.example/fullchain.pem (failure)'\nexit 1\n",
    )
    .unwrap();
    let rec = env.run_job("certbot");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("failed to renew /etc/letsencrypt/live/a.example/fullchain.pem"),
        "{rec:#}"
    );
}

#[test]
fn scanning_reports_days_left_and_fails_on_an_expired_certificate() {
    let env = Env::new(
        r#"
[[job]]
name = "watch"
plugin = "cert-renew"
schedule = "@daily"
[job.grants]
fs = [{ host = "certs", guest = "/certs", access = "ro", create = true }]
[job.config]
scan = ["/certs"]
"#,
    );
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-days",
            "365",
            "-subj",
            "/CN=fresh.test",
        ])
        .arg("-out")
        .arg(certs.join("fresh.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rec = env.run_job("watch");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    // 365 whole days when openssl and the plugin read the clock in the
    // same second, 364 once a second has passed.
    let details = rec["details"].as_str().unwrap();
    assert!(
        details.contains("fresh.pem (CN=fresh.test): 364 days left")
            || details.contains("fresh.pem (CN=fresh.test): 365 days left"),
        "{rec:#}"
    );
    // An expired one (Jan-Apr 2026) fails the run and says so.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/x509/tests/data/ab-test.pem"),
        certs.join("old.pem"),
    )
    .unwrap();
    let rec = env.run_job("watch");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains("/certs/old.pem (a.test, b.test) expired"),
        "{error}"
    );
}
