//! cert-renew: reports how long every certificate has left and renews the
//! ones it manages before they expire, with its own ACME client (HTTP-01
//! through a web root, or DNS-01 through RFC 2136 updates, which wildcard
//! names need) or through `certbot renew`.

pub mod acme;
pub mod command;
pub mod config;
pub mod dns;
/// The SDK's HTTP client over wasi:http (it began here, for ACME).
pub use opsd_sdk::http;
pub mod keys;
pub mod pair;

use config::{Challenge, Config, Mode};
use opsd_sdk::{Artifact, Command, Context, ContextExt, Description, Outcome, Plugin, PluginError};
use opsd_x509 as certs;
use opsd_x509::CertInfo;
use std::time::{Duration, SystemTime};

const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "mode": {"enum": ["acme", "command"], "default": "acme"},
    "renew_before_days": {"type": "integer", "minimum": 0, "description": "renew this many days before expiry (default: when a third of the lifetime remains)"},
    "scan": {"type": "array", "items": {"type": "string"}, "description": "more PEM files or directories to report on"},
    "acme": {"type": "object", "required": ["directory", "account_key"], "additionalProperties": false,
      "properties": {"directory": {"type": "string", "description": "the ACME directory URL"}, "email": {"type": "string"},
        "account_key": {"type": "string", "description": "guest path of the account key, made on first use"},
        "webroot": {"type": "string", "description": "guest path serving /.well-known/acme-challenge/ (http-01)"},
        "challenge": {"enum": ["http-01", "dns-01"], "default": "http-01"},
        "timeout": {"type": "integer", "minimum": 0, "default": 120},
        "dns": {"type": "object", "required": ["server", "zone", "tsig_key"], "additionalProperties": false,
          "description": "the DNS server dns-01 sends RFC 2136 updates to, over TCP",
          "properties": {"server": {"type": "string", "description": "host:port, in the net grant"},
            "zone": {"type": "string"}, "tsig_key": {"type": "string", "description": "the TSIG key's name"},
            "tsig_algorithm": {"enum": ["hmac-sha256", "hmac-sha512"], "default": "hmac-sha256"},
            "tsig_secret_env": {"type": "string", "description": "a granted variable holding the base64 secret"},
            "tsig_secret_file": {"type": "string", "description": "guest path of a file holding it"},
            "ttl": {"type": "integer", "minimum": 0, "default": 60}}}}},
    "certs": {"type": "array", "items": {"type": "object", "required": ["domains", "cert", "key"], "additionalProperties": false,
      "properties": {"domains": {"type": "array", "items": {"type": "string"}}, "cert": {"type": "string"},
        "key": {"type": "string", "description": "in the same directory as cert: the two are replaced together"},
        "webroot": {"type": "string"}, "challenge": {"enum": ["http-01", "dns-01"]},
        "key_type": {"enum": ["p256", "p384", "rsa2048", "rsa3072", "rsa4096"], "default": "p256"}}}},
    "command": {"type": "array", "items": {"type": "string"}},
    "deploy_hook": {"type": "array", "items": {"type": "string"}}
  }
}"#;

struct CertRenew;

/// What happened to one certificate, for the outcome.
#[derive(Debug, Default)]
struct Report {
    lines: Vec<String>,
    errors: Vec<String>,
    warnings: Vec<String>,
    checked: usize,
    renewed: Vec<String>,
    /// (days left, path) of the certificate closest to expiry.
    soonest: Option<(i64, String)>,
}

impl Report {
    fn saw(&mut self, info: &CertInfo, now: i64) {
        self.checked += 1;
        let days = info.days_left(now);
        if self.soonest.as_ref().is_none_or(|(d, _)| days < *d) {
            self.soonest = Some((days, info.path.clone()));
        }
    }
}

impl Plugin for CertRenew {
    fn describe() -> Description {
        Description::new(
            "cert-renew",
            env!("CARGO_PKG_VERSION"),
            "Reports certificate expiry and renews with a built-in ACME client or certbot",
        )
        .wants_dir("/etc/ssl/opsd", true, "certificates and keys it writes")
        .wants_dir(
            "/var/www/html",
            true,
            "the web root serving HTTP-01 challenges",
        )
        .wants_net()
        .wants_exec("certbot")
        .config_schema(SCHEMA)
        .suggested_schedule("17 3 * * *")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        cfg.validate().map_err(|e| ctx.bad_config(e))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut report = Report::default();
        match cfg.mode {
            Mode::Acme => run_acme(&cfg, now, ctx.dry_run, &mut report),
            Mode::Command => run_command(&cfg, ctx.dry_run, &mut report),
        }
        // Expiry as it stands after this run.
        for spec in &cfg.certs {
            if std::path::Path::new(&spec.cert).exists()
                && let Some(info) = read_cert(&spec.cert, &mut report)
            {
                report.saw(&info, now);
            }
        }
        scan(&cfg, now, &mut report);
        if !report.renewed.is_empty()
            && let Some(hook) = &cfg.deploy_hook
        {
            deploy(hook, ctx.dry_run, &mut report);
        }
        Ok(outcome(&report, &cfg, ctx.dry_run))
    }
}

/// Reads a certificate file; None (and an error noted) when it is not one.
fn read_cert(path: &str, report: &mut Report) -> Option<CertInfo> {
    match std::fs::read(path) {
        Ok(bytes) => match certs::parse_pem(path, &bytes) {
            Ok(info) => Some(info),
            Err(e) => {
                report.errors.push(e);
                None
            }
        },
        Err(e) => {
            report.errors.push(format!("{path}: {e}"));
            None
        }
    }
}

/// Why a managed certificate needs issuing now, if it does.
fn due_reason(spec: &config::Cert, cfg: &Config, now: i64, report: &mut Report) -> Option<String> {
    let bytes = match std::fs::read(&spec.cert) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("no certificate yet".into());
        }
        Err(e) => return Some(format!("cannot read it ({e})")),
    };
    let info = match certs::parse_pem(&spec.cert, &bytes) {
        Ok(i) => i,
        Err(e) => return Some(format!("unreadable ({e})")),
    };
    let mut want: Vec<&str> = spec.domains.iter().map(String::as_str).collect();
    let mut have: Vec<&str> = info.dns_names.iter().map(String::as_str).collect();
    want.sort_unstable();
    have.sort_unstable();
    if want != have {
        return Some(format!(
            "its names ({}) differ from the configured domains ({})",
            have.join(", "),
            want.join(", ")
        ));
    }
    match std::fs::read_to_string(&spec.key) {
        Err(_) => return Some(format!("its key {} is missing", spec.key)),
        Ok(pem) => match keys::CertKey::parse(&spec.key, &pem) {
            Err(e) => return Some(e),
            Ok(k) => match k.spki_der() {
                Ok(spki) if spki != info.spki_der => {
                    return Some(format!("its key {} does not match it", spec.key));
                }
                Err(e) => return Some(e),
                Ok(_) if k.key_type() != Some(spec.key_type) => {
                    return Some(format!(
                        "its key is {}, the config asks for {}",
                        k.describe(),
                        spec.key_type.name()
                    ));
                }
                Ok(_) => {}
            },
        },
    }
    let renew_at = info.renew_at(cfg.renew_before_days);
    let days = info.days_left(now);
    if now >= renew_at {
        Some(if now >= info.not_after {
            format!("it expired {} days ago", -days)
        } else {
            format!("{days} days left")
        })
    } else {
        report.lines.push(format!(
            "{}: {days} days left, renews from {}",
            spec.cert,
            date(renew_at)
        ));
        None
    }
}

fn run_acme(cfg: &Config, now: i64, dry_run: bool, report: &mut Report) {
    let due: Vec<(&config::Cert, String)> = cfg
        .certs
        .iter()
        .filter_map(|spec| due_reason(spec, cfg, now, report).map(|why| (spec, why)))
        .collect();
    if due.is_empty() {
        return;
    }
    let Some(acme_cfg) = &cfg.acme else { return };
    // Where a certificate will be written is checked before it is ordered:
    // an issued certificate that cannot be saved is thrown away (and
    // counts against the CA's rate limit).
    let (due, unwritable): (Vec<_>, Vec<_>) = due
        .into_iter()
        .map(|(spec, why)| {
            // The files' directory's parent takes the versioned copies and
            // the link; the directory itself is made by the first
            // install (certbot's live/NAME is too), or, if it is there,
            // must take the files.
            let pair_dir = pair::Layout::of(&spec.key, &spec.cert).map(|l| l.dir);
            let blocked = match &pair_dir {
                Err(e) => Some(e.clone()),
                Ok(dir) if std::fs::symlink_metadata(dir).is_err() => {
                    keys::check_writable(dir, dry_run).err()
                }
                Ok(dir) => [&spec.key, &spec.cert, dir]
                    .into_iter()
                    .find_map(|f| keys::check_writable(f, dry_run).err()),
            };
            (spec, why, blocked)
        })
        .partition(|(_, _, blocked)| blocked.is_none());
    for (spec, why, blocked) in unwritable {
        report.errors.push(format!(
            "{} ({why}) was not ordered: {}; no certificate was requested",
            spec.cert,
            blocked.unwrap_or_default()
        ));
    }
    let due: Vec<(&config::Cert, String)> = due.into_iter().map(|(s, w, _)| (s, w)).collect();
    if due.is_empty() {
        return;
    }
    if dry_run {
        for (spec, why) in &due {
            report.lines.push(format!(
                "would renew {} ({}): {why}",
                spec.cert,
                spec.domains.join(", ")
            ));
        }
        // Check the server is reachable through the grants, changing
        // nothing.
        if let Err(e) = acme::Client::connect(&acme_cfg.directory, keys::generate()) {
            report.errors.push(e);
        }
        // And that the DNS server answers, and the TSIG secret is there.
        if let Some(dns_cfg) = &acme_cfg.dns
            && due
                .iter()
                .any(|(s, _)| s.challenge(acme_cfg) == Challenge::Dns01)
        {
            let server = dns::Server {
                addr: dns_cfg.server.clone(),
                timeout: Duration::from_secs(10),
            };
            if let Err(e) = dns_cfg
                .key()
                .and_then(|_| server.txt(&config::challenge_name(&dns_cfg.zone)))
            {
                report.errors.push(e);
            }
        }
        return;
    }
    let client = account(acme_cfg).and_then(|key| {
        let mut c = acme::Client::connect(&acme_cfg.directory, key)?;
        c.patience = Duration::from_secs(acme_cfg.timeout);
        c.register(acme_cfg.email.as_deref())?;
        Ok(c)
    });
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            for (spec, why) in &due {
                report
                    .errors
                    .push(format!("{} ({why}) was not renewed: {e}", spec.cert));
            }
            return;
        }
    };
    for (spec, why) in due {
        opsd_sdk::info!(
            "renewing {} ({}): {why}",
            spec.cert,
            spec.domains.join(", ")
        );
        match issue(&mut client, spec, acme_cfg, &mut report.warnings) {
            Ok(info) => {
                report.lines.push(format!(
                    "renewed {} ({}): valid until {} ({} days)",
                    spec.cert,
                    spec.domains.join(", "),
                    date(info.not_after),
                    info.days_left(now)
                ));
                report.renewed.push(spec.cert.clone());
            }
            Err(e) => report
                .errors
                .push(format!("{} ({why}) was not renewed: {e}", spec.cert)),
        }
    }
}

/// Loads the account key, or makes and saves one (mode 0600).
fn account(acme_cfg: &config::Acme) -> Result<p256::ecdsa::SigningKey, String> {
    let path = &acme_cfg.account_key;
    match std::fs::read_to_string(path) {
        Ok(pem) => keys::parse_key(path, &pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = keys::generate();
            keys::write_atomic(path, keys::key_pem(&key)?.as_bytes(), 0o600)
                .map_err(|e| format!("saving the new account key: {e}"))?;
            opsd_sdk::info!("created ACME account key {path}");
            Ok(key)
        }
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// One order from start to files on disk.
fn issue(
    client: &mut acme::Client,
    spec: &config::Cert,
    acme_cfg: &config::Acme,
    warnings: &mut Vec<String>,
) -> Result<CertInfo, String> {
    let order = client.new_order(&spec.domains)?;
    let kind = spec.challenge(acme_cfg);
    let challenges = client.challenges(&order, kind.name())?;
    for ch in &challenges {
        if ch.token.is_empty()
            || !ch
                .token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "the ACME server sent a challenge token that is not base64url: {:?}",
                ch.token
            ));
        }
    }
    match kind {
        Challenge::Http01 => {
            let webroot = spec
                .webroot
                .as_deref()
                .or(acme_cfg.webroot.as_deref())
                .ok_or("http-01 needs a webroot")?;
            answer_http01(client, &challenges, webroot)?
        }
        Challenge::Dns01 => {
            let dns_cfg = acme_cfg
                .dns
                .as_ref()
                .ok_or("dns-01 needs [job.config.acme.dns]")?;
            answer_dns01(client, &challenges, dns_cfg, warnings)?
        }
    }
    let key = keys::CertKey::generate(spec.key_type)?;
    let csr = key.csr_der(&spec.domains)?;
    let order = client.finalize(&order, &csr)?;
    let pem = client.download(&order)?;
    let info = certs::parse_pem(&spec.cert, pem.as_bytes())?;
    if info.spki_der != key.spki_der()? {
        return Err("the issued certificate is not for the key this run made".into());
    }
    for d in &spec.domains {
        if !info.dns_names.contains(d) {
            return Err(format!("the issued certificate does not name {d}"));
        }
    }
    // Key and chain change together: a new versioned directory, then one
    // rename of the link to it (see pair.rs).
    let key_pem = key.to_pem()?;
    let saved = pair::Layout::of(&spec.key, &spec.cert)
        .and_then(|layout| pair::install(&layout, key_pem.as_bytes(), pem.as_bytes()));
    if let Err(e) = saved {
        // Issued and paid for in rate limit: kept beside the account key
        // (a directory the job writes), and the error says where.
        return Err(
            match keys::rescue(&acme_cfg.account_key, &spec.cert, &key_pem, &pem) {
                Ok((k, c)) => format!(
                    "the certificate was issued but could not be saved ({e}); it is kept in {c} with its key in {k}: move them into place"
                ),
                Err(e2) => format!(
                    "the certificate was issued but could not be saved ({e}), nor kept beside the account key ({e2})"
                ),
            },
        );
    }
    Ok(info)
}

/// Writes the HTTP-01 files, answers, and removes the files again.
fn answer_http01(
    client: &mut acme::Client,
    challenges: &[acme::Challenge],
    webroot: &str,
) -> Result<(), String> {
    let dir = format!(
        "{}/.well-known/acme-challenge",
        webroot.trim_end_matches('/')
    );
    if !challenges.is_empty() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
    }
    let mut written = Vec::new();
    let answered = (|| {
        for ch in challenges {
            let file = format!("{dir}/{}", ch.token);
            std::fs::write(&file, client.key_authorization(&ch.token))
                .map_err(|e| format!("writing the challenge {file}: {e}"))?;
            written.push(file);
        }
        for ch in challenges {
            client.complete(ch)?;
        }
        Ok(())
    })();
    for f in &written {
        let _ = std::fs::remove_file(f);
    }
    answered
}

/// Adds the DNS-01 TXT records with one signed update, waits until the
/// server answers them, answers the challenges, and deletes exactly
/// those records again whatever happened (a failed delete is a warning
/// naming the records left behind).
fn answer_dns01(
    client: &mut acme::Client,
    challenges: &[acme::Challenge],
    dns_cfg: &config::DnsUpdate,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    if challenges.is_empty() {
        return Ok(());
    }
    let key = dns_cfg.key()?;
    let server = dns::Server {
        addr: dns_cfg.server.clone(),
        timeout: Duration::from_secs(10),
    };
    let records: Vec<dns::Txt> = challenges
        .iter()
        .map(|ch| dns::Txt {
            name: config::challenge_name(&ch.domain),
            value: client.dns01_value(&ch.token),
        })
        .collect();
    for r in &records {
        if !config::in_zone(&r.name, &dns_cfg.zone) {
            return Err(format!(
                "the ACME server asks about {}, which is not in the zone {}",
                r.name, dns_cfg.zone
            ));
        }
    }
    let added = server.update(&key, &dns_cfg.zone, &records, true, dns_cfg.ttl);
    let answered = added.and_then(|()| {
        wait_for_records(&server, &records, client.patience)?;
        for ch in challenges {
            client.complete(ch)?;
        }
        Ok(())
    });
    // Deleting records that were never added is harmless (RFC 2136
    // 3.4.2.4), so this runs after a failed add too.
    if let Err(e) = server.update(&key, &dns_cfg.zone, &records, false, 0) {
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        let text = format!(
            "the DNS-01 records ({}) could not be removed: {e}; delete them by hand",
            names.join(", ")
        );
        if answered.is_ok() {
            warnings.push(text);
        } else {
            opsd_sdk::warn!("{text}");
        }
    }
    answered
}

/// Polls the server until every record is there.
fn wait_for_records(
    server: &dns::Server,
    records: &[dns::Txt],
    patience: Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(200);
    loop {
        let mut missing = None;
        for r in records {
            if !server.txt(&r.name)?.contains(&r.value) {
                missing = Some(&r.name);
                break;
            }
        }
        let Some(name) = missing else { return Ok(()) };
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "DNS server {} still does not answer the TXT record at {name} after {} s",
                server.addr,
                patience.as_secs()
            ));
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

fn run_command(cfg: &Config, dry_run: bool, report: &mut Report) {
    let argv = cfg.command_line(dry_run);
    let (program, args) = argv.split_first().expect("validated non-empty");
    match Command::new(program).args(args.iter().cloned()).run() {
        Ok(exit) => {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&exit.stdout),
                String::from_utf8_lossy(&exit.stderr)
            );
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                opsd_sdk::debug!("{program}: {line}");
            }
            let s = command::parse_certbot(&text);
            report.checked += s.renewed.len() + s.skipped.len() + s.failed.len();
            report.renewed.extend(s.renewed.iter().cloned());
            for p in &s.renewed {
                report.lines.push(format!("{program} renewed {p}"));
            }
            for p in &s.skipped {
                report.lines.push(format!("{program}: {p} not due"));
            }
            for p in &s.failed {
                report.errors.push(format!("{program} failed to renew {p}"));
            }
            if let Some(v) = &s.verdict {
                report.lines.push(format!("{program}: {v}"));
            }
            if !exit.success() && s.failed.is_empty() {
                report.errors.push(format!(
                    "{} exited with {}: {}",
                    argv.join(" "),
                    exit.code.map_or("a signal".into(), |c| c.to_string()),
                    exit.stderr_text().lines().last().unwrap_or("")
                ));
            }
        }
        Err(e) => report
            .errors
            .push(format!("{} could not run: {}", argv.join(" "), e.text())),
    }
}

/// Reports on `scan` paths: days left, and a warning for certificates due
/// or expired (which this job does not renew itself).
fn scan(cfg: &Config, now: i64, report: &mut Report) {
    for path in &cfg.scan {
        let files = match certs::find_cert_files(path) {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        for file in files {
            let Some(info) = read_cert(&file, report) else {
                continue;
            };
            report.saw(&info, now);
            let days = info.days_left(now);
            let names = if info.dns_names.is_empty() {
                info.subject.clone()
            } else {
                info.dns_names.join(", ")
            };
            if now >= info.not_after {
                report
                    .errors
                    .push(format!("{file} ({names}) expired {} days ago", -days));
            } else if now >= info.renew_at(cfg.renew_before_days) {
                report.warnings.push(format!(
                    "{file} ({names}) expires in {days} days ({})",
                    date(info.not_after)
                ));
            } else {
                report
                    .lines
                    .push(format!("{file} ({names}): {days} days left"));
            }
        }
    }
}

fn deploy(hook: &[String], dry_run: bool, report: &mut Report) {
    if dry_run {
        report
            .lines
            .push(format!("would run the deploy hook: {}", hook.join(" ")));
        return;
    }
    let (program, args) = hook.split_first().expect("validated non-empty");
    match Command::new(program).args(args.iter().cloned()).run() {
        Ok(exit) if exit.success() => report
            .lines
            .push(format!("deploy hook `{}` ran", hook.join(" "))),
        Ok(exit) => report.errors.push(format!(
            "renewed, but the deploy hook `{}` exited with {}: {}",
            hook.join(" "),
            exit.code.map_or("a signal".into(), |c| c.to_string()),
            exit.stderr_text()
        )),
        Err(e) => report.errors.push(format!(
            "renewed, but the deploy hook `{}` could not run: {}",
            hook.join(" "),
            e.text()
        )),
    }
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

fn outcome(r: &Report, cfg: &Config, dry_run: bool) -> Outcome {
    for l in &r.lines {
        opsd_sdk::info!("{l}");
    }
    for w in &r.warnings {
        opsd_sdk::warn!("{w}");
    }
    for e in &r.errors {
        opsd_sdk::error!("{e}");
    }
    let mut summary = format!(
        "{} {} of {} certificates",
        if dry_run { "would renew" } else { "renewed" },
        if dry_run {
            r.lines
                .iter()
                .filter(|l| l.starts_with("would renew"))
                .count()
        } else {
            r.renewed.len()
        },
        r.checked.max(cfg.certs.len())
    );
    if let Some((days, path)) = &r.soonest {
        summary.push_str(&format!("; soonest expiry in {days} days ({path})"));
    }
    let mut out = Outcome::from_findings(summary, &r.errors, &r.warnings, &r.lines)
        .metric("certificates_checked", r.checked as f64, None)
        .metric("certificates_renewed", r.renewed.len() as f64, None)
        .metric("renew_errors", r.errors.len() as f64, None);
    if let Some((days, _)) = &r.soonest {
        out = out.metric("min_days_left", *days as f64, Some("days"));
    }
    if !dry_run {
        for path in &r.renewed {
            if let Ok(m) = std::fs::metadata(path) {
                out = out.artifact(Artifact {
                    path: path.clone(),
                    kind: "certificate".into(),
                    size_bytes: Some(m.len()),
                    sha256: None,
                });
            }
        }
    }
    out
}

opsd_sdk::export_plugin!(CertRenew);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "mode": "acme", "renew_before_days": 30, "scan": ["/etc/ssl/certs"],
                "acme": {"directory": "https://acme.test/dir", "email": "ops@example.org",
                         "account_key": "/etc/ssl/opsd/account.key", "webroot": "/var/www/html", "timeout": 60,
                         "challenge": "http-01",
                         "dns": {"server": "192.0.2.53:53", "zone": "a.test", "tsig_key": "acme",
                                 "tsig_algorithm": "hmac-sha256", "tsig_secret_env": "TSIG_SECRET",
                                 "tsig_secret_file": "/etc/opsd/tsig.key", "ttl": 30}},
                "certs": [{"domains": ["a.test"], "cert": "/etc/ssl/opsd/a/fullchain.pem", "key": "/etc/ssl/opsd/a/privkey.pem",
                           "webroot": "/var/www/a", "key_type": "p384"},
                          {"domains": ["*.a.test", "a.test"], "cert": "/etc/ssl/opsd/w/fullchain.pem",
                           "key": "/etc/ssl/opsd/w/privkey.pem", "challenge": "dns-01", "key_type": "rsa2048"}],
                "command": ["certbot", "renew"], "deploy_hook": ["systemctl", "reload", "nginx"]
            }),
        );
    }
}
