//! cert-renew's DNS-01 against real servers: the tests' own BIND `named`
//! takes the RFC 2136 updates (TSIG-signed), and a Pebble that really
//! validates (no `PEBBLE_VA_ALWAYS_VALID`) looks the TXT records up
//! there. Wildcard plus apex through a daemon job, the key types checked
//! with openssl, a wrong TSIG secret, records removed after success and
//! after failure; and the key and chain replaced together.

use crate::named::{KEY_NAME, SECRET, named};
use crate::pebble::{pebble, pebble_validating};
use crate::util::{Env, far_off, text};
use std::path::Path;
use std::process::Command;

fn openssl(args: &[&str], path: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(path)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The key written is the certificate's.
fn assert_pair(dir: &Path) {
    assert_eq!(
        openssl(
            &["x509", "-noout", "-pubkey", "-in"],
            &dir.join("fullchain.pem")
        ),
        openssl(&["pkey", "-pubout", "-in"], &dir.join("privkey.pem")),
        "the key in {} is the certificate's",
        dir.display()
    );
}

/// A DNS-01 job against the validating Pebble; `secret` goes into
/// `[job.config.acme.dns]` (tsig_secret_env or tsig_secret_file).
fn dns_env(domains: &str, zone: &str, key_type: &str, secret: &str, timeout: u64) -> Env {
    let n = named();
    let p = pebble_validating(&n.addr);
    let env = Env::new(&format!(
        r#"
[[job]]
name = "certs"
plugin = "cert-renew"
schedule = "{far}"
[job.grants]
fs = [
  {{ host = "ssl", guest = "/etc/ssl/opsd", access = "rw", create = true }},
  {{ host = "tsig", guest = "/etc/opsd/tsig", access = "ro", create = true }},
]
net = ["{origin}", "{dns}"]
ca = ["{ca}"]
env = ["OPSD_TEST_TSIG"]
[job.config.acme]
directory = "{dir}"
account_key = "/etc/ssl/opsd/account.key"
challenge = "dns-01"
timeout = {timeout}
[job.config.acme.dns]
server = "{dns}"
zone = "{zone}"
tsig_key = "{KEY_NAME}"
{secret}
[[job.config.certs]]
domains = {domains}
cert = "/etc/ssl/opsd/site/fullchain.pem"
key = "/etc/ssl/opsd/site/privkey.pem"
key_type = "{key_type}"
"#,
        far = far_off(),
        origin = p.origin,
        dns = n.addr,
        ca = p.tls_ca.display(),
        dir = p.directory,
    ));
    std::fs::create_dir_all(env.path("ssl/site")).unwrap();
    std::fs::create_dir_all(env.path("tsig")).unwrap();
    env
}

/// Wildcard plus apex, issued through a running daemon: the records go
/// into named, Pebble finds them there, and they are gone afterwards.
#[test]
fn dns01_issues_a_wildcard_and_the_apex_that_pebble_really_checked() {
    let n = named();
    let env = dns_env(
        r#"["*.dns.opsd.test", "dns.opsd.test"]"#,
        "dns.opsd.test",
        "p384",
        r#"tsig_secret_env = "OPSD_TEST_TSIG""#,
        60,
    );
    let _daemon = env.daemon_with_env(&[("OPSD_TEST_TSIG", SECRET)]);
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "ok", "{rec:#}\nnamed:\n{}", n.log());
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .starts_with("renewed 1 of 1 certificates"),
        "{rec:#}"
    );
    let site = env.path("ssl/site");
    let chain = site.join("fullchain.pem");
    let p = pebble_validating(&n.addr);
    p.verify_chain(env.dir.path(), &chain);
    // Pebble looked the records up itself (no always-valid shortcut).
    let pebble_log = std::fs::read_to_string(p.dir.join("pebble.log")).unwrap();
    assert!(
        !pebble_log.contains("ALWAYS_VALID")
            && pebble_log
                .matches("set VALID by completed challenge")
                .count()
                >= 2,
        "{pebble_log}"
    );
    assert_pair(&site);
    let names = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in"], &chain);
    assert!(
        names.contains("DNS:*.dns.opsd.test") && names.contains("DNS:dns.opsd.test"),
        "{names}"
    );
    let key = openssl(
        &["pkey", "-noout", "-text", "-in"],
        &site.join("privkey.pem"),
    );
    assert!(key.contains("NIST CURVE: P-384"), "a P-384 key: {key}");
    // Both authorizations (wildcard and apex) put a value at the same
    // name; named logged both adds and both deletes, and holds none now.
    let log = n.log();
    let owner = "_acme-challenge.dns.opsd.test";
    assert_eq!(
        log.matches(&format!("adding an RR at '{owner}' TXT"))
            .count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches(&format!("deleting an RR at {owner} TXT"))
            .count(),
        2,
        "{log}"
    );
    assert_eq!(
        n.dig(false, "_acme-challenge.dns.opsd.test", "TXT")
            .unwrap(),
        ""
    );
    // The pair's directory is now a link to a versioned copy.
    assert!(
        std::fs::symlink_metadata(&site)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A TSIG secret the server does not share: the run fails, naming the
/// server and the key, and nothing is left in the zone.
#[test]
fn a_wrong_tsig_secret_fails_naming_the_server_and_the_key() {
    let n = named();
    let env = dns_env(
        r#"["wrongkey.dns.opsd.test"]"#,
        "dns.opsd.test",
        "p256",
        r#"tsig_secret_file = "/etc/opsd/tsig/acme.key""#,
        30,
    );
    // The block tsig-keygen prints, with another secret.
    std::fs::write(
        env.path("tsig/acme.key"),
        format!(
            "key \"{KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE="
        ),
    )
    .unwrap();
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("DNS server {}", n.addr))
            && error.contains(&format!("TSIG key `{KEY_NAME}`"))
            && error.contains("BADSIG"),
        "the error names the server, the key and why: {error}"
    );
    assert_eq!(
        n.dig(false, "_acme-challenge.wrongkey.dns.opsd.test", "TXT")
            .unwrap(),
        ""
    );
    assert!(!env.path("ssl/site/fullchain.pem").exists());
    assert!(
        !n.log()
            .contains("adding an RR at '_acme-challenge.wrongkey.dns.opsd.test'")
    );
}

/// The update goes in but the plugin's own (unsigned) check of it is
/// refused: the run fails, and the record it added is deleted again.
#[test]
fn a_record_is_removed_when_the_run_fails_after_adding_it() {
    let n = named();
    let env = dns_env(
        r#"["hidden.opsd.test"]"#,
        "hidden.opsd.test",
        "p256",
        r#"tsig_secret_file = "/etc/opsd/tsig/acme.key""#,
        30,
    );
    std::fs::write(env.path("tsig/acme.key"), format!("{SECRET}\n")).unwrap();
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "failed", "{rec:#}");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("DNS server {}", n.addr)) && error.contains("REFUSED"),
        "{error}"
    );
    let log = n.log();
    let owner = "_acme-challenge.hidden.opsd.test";
    assert!(
        log.contains(&format!("adding an RR at '{owner}' TXT")),
        "{log}"
    );
    assert!(
        log.contains(&format!("deleting an RR at {owner} TXT")),
        "{log}"
    );
    assert_eq!(
        n.dig(true, "_acme-challenge.hidden.opsd.test", "TXT")
            .unwrap(),
        "",
        "no record left (asked with the key, which may query)"
    );
}

/// An RSA key (made inside the wasm guest) through HTTP-01, and a P-384
/// one replacing it: `key_type` changes trigger a renewal, and each time
/// the key and the chain match.
#[test]
fn rsa_and_p384_keys_are_issued_and_a_changed_type_renews() {
    let p = pebble();
    let job = |key_type: &str| {
        format!(
            r#"
[[job]]
name = "certs"
plugin = "cert-renew"
schedule = "{far}"
[job.grants]
fs = [
  {{ host = "ssl", guest = "/etc/ssl/opsd", access = "rw", create = true }},
  {{ host = "www", guest = "/var/www/html", access = "rw", create = true }},
]
net = ["{origin}"]
ca = ["{ca}"]
[job.config.acme]
directory = "{dir}"
account_key = "/etc/ssl/opsd/account.key"
webroot = "/var/www/html"
[[job.config.certs]]
domains = ["rsa.opsd.test"]
cert = "/etc/ssl/opsd/site/fullchain.pem"
key = "/etc/ssl/opsd/site/privkey.pem"
key_type = "{key_type}"
"#,
            far = far_off(),
            origin = p.origin,
            ca = p.tls_ca.display(),
            dir = p.directory,
        )
    };
    let env = Env::new(&job("rsa2048"));
    std::fs::create_dir_all(env.path("ssl/site")).unwrap();
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    let site = env.path("ssl/site");
    let key = openssl(
        &["pkey", "-noout", "-text", "-in"],
        &site.join("privkey.pem"),
    );
    assert!(key.contains("Private-Key: (2048 bit, 2 primes)"), "{key}");
    let cert = openssl(
        &["x509", "-noout", "-text", "-in"],
        &site.join("fullchain.pem"),
    );
    assert!(cert.contains("Public-Key: (2048 bit)"), "{cert}");
    assert_pair(&site);
    // Asking for another type renews at once, though the certificate is
    // fresh.
    env.write_config(&job("p384"));
    let rec = env.run_job("certs");
    assert_eq!(rec["status"], "ok", "{rec:#}");
    assert!(
        rec["details"]
            .as_str()
            .unwrap_or("")
            .contains("renewed /etc/ssl/opsd/site/fullchain.pem"),
        "{rec:#}"
    );
    let key = openssl(
        &["pkey", "-noout", "-text", "-in"],
        &site.join("privkey.pem"),
    );
    assert!(key.contains("NIST CURVE: P-384"), "{key}");
    assert_pair(&site);
    // The previous pair is kept beside, for a rollback by hand.
    let versions = std::fs::read_dir(env.path("ssl/.site.opsd"))
        .unwrap()
        .count();
    assert_eq!(versions, 2, "the rsa and the p384 versions");
}
