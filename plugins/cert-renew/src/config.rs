//! The job's `[job.config]` table for cert-renew.

use crate::keys::KeyType;
use serde::Deserialize;

/// How the ACME server checks that we control a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Challenge {
    /// A file under the web root (`/.well-known/acme-challenge/`).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A TXT record `_acme-challenge.NAME`, added by an RFC 2136 update;
    /// the only way to a wildcard certificate.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl Challenge {
    /// The ACME spelling.
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::Dns01 => "dns-01",
        }
    }
}

/// The DNS server DNS-01 updates (`[job.config.acme.dns]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsUpdate {
    /// `host:port` of the zone's primary server, reached over TCP; the
    /// job's `net` grant must name it.
    pub server: String,
    /// The zone the `_acme-challenge` records go into.
    pub zone: String,
    /// The TSIG key's name as the server knows it.
    pub tsig_key: String,
    /// `hmac-sha256` (the default) or `hmac-sha512`.
    #[serde(default = "default_tsig_algorithm")]
    pub tsig_algorithm: String,
    /// An environment variable (granted with `env = [...]`) holding the
    /// base64 secret.
    #[serde(default)]
    pub tsig_secret_env: Option<String>,
    /// Or a file in a granted directory holding it (the secret alone, or
    /// the `key { ... };` block `tsig-keygen` prints).
    #[serde(default)]
    pub tsig_secret_file: Option<String>,
    /// TTL of the TXT records, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".into()
}

fn default_ttl() -> u32 {
    60
}

impl DnsUpdate {
    /// The TSIG key, its secret read from the variable or file.
    pub fn key(&self) -> Result<crate::dns::TsigKey, String> {
        let algorithm = crate::dns::Algorithm::parse(&self.tsig_algorithm)?;
        let (text, from) = match (&self.tsig_secret_env, &self.tsig_secret_file) {
            (Some(var), _) => (
                std::env::var(var).map_err(|_| {
                    format!("acme.dns.tsig_secret_env: the variable {var} is not set; grant it with env = [\"{var}\"] and set it in opsd's environment")
                })?,
                format!("the variable {var}"),
            ),
            (None, Some(file)) => (
                std::fs::read_to_string(file).map_err(|e| format!("acme.dns.tsig_secret_file {file}: {e}"))?,
                file.clone(),
            ),
            (None, None) => return Err("acme.dns needs tsig_secret_env or tsig_secret_file".into()),
        };
        let secret = crate::dns::parse_secret(&text)
            .map_err(|e| format!("TSIG key `{}` from {from}: {e}", self.tsig_key))?;
        Ok(crate::dns::TsigKey {
            name: self.tsig_key.clone(),
            algorithm,
            secret,
        })
    }
}

/// How certificates are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The built-in ACME client.
    #[default]
    Acme,
    /// An external program such as `certbot renew`.
    Command,
}

/// The ACME account and server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// The directory URL, such as
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// Contact address for the account (expiry mail from the CA).
    #[serde(default)]
    pub email: Option<String>,
    /// Guest path of the account key (PKCS#8 PEM, P-256); made on first
    /// use with mode 0600.
    pub account_key: String,
    /// Guest path of the web root that serves
    /// `/.well-known/acme-challenge/` for every domain (HTTP-01).
    #[serde(default)]
    pub webroot: Option<String>,
    /// The challenge certificates answer unless they say otherwise.
    #[serde(default)]
    pub challenge: Challenge,
    /// The DNS server for DNS-01.
    #[serde(default)]
    pub dns: Option<DnsUpdate>,
    /// Seconds to wait for validation and issuance.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn default_timeout() -> u64 {
    120
}

/// One certificate this job keeps issued.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cert {
    /// The names on it; the first is the subject.
    pub domains: Vec<String>,
    /// Guest path of the full chain (PEM, leaf first).
    pub cert: String,
    /// Guest path of the private key (written with mode 0600).
    pub key: String,
    /// A web root for this certificate's challenges instead of the
    /// account's.
    #[serde(default)]
    pub webroot: Option<String>,
    /// The challenge for this certificate instead of the account's.
    #[serde(default)]
    pub challenge: Option<Challenge>,
    /// The type of the certificate's key.
    #[serde(default)]
    pub key_type: KeyType,
}

impl Cert {
    /// The challenge this certificate answers.
    pub fn challenge(&self, acme: &Acme) -> Challenge {
        self.challenge.unwrap_or(acme.challenge)
    }
}

/// `[job.config]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    /// Renew this many days before expiry instead of when a third of the
    /// lifetime remains.
    #[serde(default)]
    pub renew_before_days: Option<u64>,
    /// More certificate files or directories to report on (not renewed).
    #[serde(default)]
    pub scan: Vec<String>,
    #[serde(default)]
    pub acme: Option<Acme>,
    #[serde(default)]
    pub certs: Vec<Cert>,
    /// `mode = "command"`: the program and arguments.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Run after at least one certificate was renewed, such as
    /// `["systemctl", "reload", "nginx"]`.
    #[serde(default)]
    pub deploy_hook: Option<Vec<String>>,
}

fn absolute(what: &str, p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{what} `{p}` is relative: write the guest path, such as \"/etc/ssl/opsd/site.pem\""
        ))
    }
}

/// A DNS name the way ACME accepts it: labels of letters, digits and
/// hyphens, optionally a leading `*.`.
fn valid_domain(d: &str) -> bool {
    let d = d.strip_prefix("*.").unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The owner of a name's DNS-01 record: `_acme-challenge.` and the name
/// without any `*.` (RFC 8555 8.4).
pub fn challenge_name(domain: &str) -> String {
    format!(
        "_acme-challenge.{}",
        domain
            .strip_prefix("*.")
            .unwrap_or(domain)
            .trim_end_matches('.')
    )
}

/// Whether `name` lies in `zone` (or is its apex).
pub fn in_zone(name: &str, zone: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    zone.is_empty() || name == zone || name.ends_with(&format!(".{zone}"))
}

fn validate_dns(d: &DnsUpdate) -> Result<(), String> {
    let port = d.server.rsplit_once(':').map(|(_, p)| p);
    if port.is_none_or(|p| p.parse::<u16>().is_err()) {
        return Err(format!(
            "acme.dns.server `{}` needs a port, such as \"192.0.2.53:53\"",
            d.server
        ));
    }
    if !valid_domain(d.zone.trim_end_matches('.')) || d.zone.starts_with("*.") {
        return Err(format!("acme.dns.zone `{}` is not a DNS name", d.zone));
    }
    let key = d.tsig_key.trim_end_matches('.');
    if key.is_empty() || key.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!(
            "acme.dns.tsig_key `{}` is not a key name",
            d.tsig_key
        ));
    }
    crate::dns::Algorithm::parse(&d.tsig_algorithm)
        .map_err(|e| format!("acme.dns.tsig_algorithm: {e}"))?;
    match (&d.tsig_secret_env, &d.tsig_secret_file) {
        (Some(_), Some(_)) => Err("acme.dns: set tsig_secret_env or tsig_secret_file, not both".into()),
        (None, None) => Err("acme.dns needs the TSIG secret: tsig_secret_env (a granted variable) or tsig_secret_file".into()),
        (None, Some(f)) => absolute("acme.dns.tsig_secret_file", f),
        (Some(_), None) => Ok(()),
    }
}

impl Config {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        for p in &self.scan {
            absolute("scan path", p)?;
        }
        if let Some(hook) = &self.deploy_hook
            && hook.is_empty()
        {
            return Err("`deploy_hook` is empty: name the program, such as [\"systemctl\", \"reload\", \"nginx\"]".into());
        }
        match self.mode {
            Mode::Acme => {
                if let Some(cmd) = &self.command {
                    return Err(format!(
                        "`command` ({}) is only used with mode = \"command\"",
                        cmd.join(" ")
                    ));
                }
                if self.certs.is_empty() && self.scan.is_empty() {
                    return Err("nothing to do: add [[job.config.certs]] to renew, or `scan` paths to watch".into());
                }
                if !self.certs.is_empty() {
                    let acme = self.acme.as_ref().ok_or(
                        "[[job.config.certs]] needs [job.config.acme] (directory, account_key, webroot)",
                    )?;
                    crate::http::split_url(&acme.directory)
                        .map_err(|e| format!("acme.directory: {e}"))?;
                    absolute("acme.account_key", &acme.account_key)?;
                    if let Some(w) = &acme.webroot {
                        absolute("acme.webroot", w)?;
                    }
                    if let Some(d) = &acme.dns {
                        validate_dns(d)?;
                    }
                }
                let acme = self.acme.as_ref();
                for c in &self.certs {
                    let challenge = acme.map(|a| c.challenge(a)).unwrap_or_default();
                    if c.domains.is_empty() {
                        return Err(format!("certificate {}: `domains` is empty", c.cert));
                    }
                    for d in &c.domains {
                        if !valid_domain(d) {
                            return Err(format!("certificate {}: `{d}` is not a DNS name", c.cert));
                        }
                        if d.starts_with("*.") && challenge != Challenge::Dns01 {
                            return Err(format!(
                                "certificate {}: `{d}` is a wildcard, which needs a DNS-01 challenge: set challenge = \"dns-01\" and [job.config.acme.dns]",
                                c.cert
                            ));
                        }
                        if challenge == Challenge::Dns01
                            && let Some(dns) = acme.and_then(|a| a.dns.as_ref())
                        {
                            let owner = challenge_name(d);
                            if !in_zone(&owner, &dns.zone) {
                                return Err(format!(
                                    "certificate {}: {owner} is not in the zone {} (acme.dns.zone) that DNS-01 updates",
                                    c.cert, dns.zone
                                ));
                            }
                        }
                    }
                    match challenge {
                        Challenge::Http01 => {
                            if c.webroot.is_none()
                                && acme.and_then(|a| a.webroot.as_ref()).is_none()
                            {
                                return Err(format!(
                                    "certificate {}: http-01 needs a `webroot` (in [job.config.acme] or the certificate), or set challenge = \"dns-01\"",
                                    c.cert
                                ));
                            }
                        }
                        Challenge::Dns01 => {
                            if acme.and_then(|a| a.dns.as_ref()).is_none() {
                                return Err(format!(
                                    "certificate {}: dns-01 needs [job.config.acme.dns] (server, zone, tsig_key, tsig_secret_env or tsig_secret_file)",
                                    c.cert
                                ));
                            }
                        }
                    }
                    absolute("cert", &c.cert)?;
                    absolute("key", &c.key)?;
                    if let Some(w) = &c.webroot {
                        absolute("webroot", w)?;
                    }
                    if c.cert == c.key {
                        return Err(format!(
                            "certificate {}: `cert` and `key` are the same file",
                            c.cert
                        ));
                    }
                    crate::pair::Layout::of(&c.key, &c.cert)
                        .map_err(|e| format!("certificate {}: {e}", c.cert))?;
                }
            }
            Mode::Command => {
                if !self.certs.is_empty() || self.acme.is_some() {
                    return Err("mode = \"command\" renews through the program (certbot); drop [job.config.acme] and [[job.config.certs]], or use `scan` to watch the files".into());
                }
                if let Some(cmd) = &self.command
                    && cmd.is_empty()
                {
                    return Err(
                        "`command` is empty: name the program, such as [\"certbot\", \"renew\"]"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The renewal program and its arguments.
    pub fn command_line(&self, dry_run: bool) -> Vec<String> {
        let mut cmd = self.command.clone().unwrap_or_else(|| {
            [
                "certbot",
                "renew",
                "--non-interactive",
                "--no-random-sleep-on-renew",
            ]
            .map(str::to_owned)
            .to_vec()
        });
        if dry_run {
            cmd.push("--dry-run".into());
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<Config, String> {
        let c: Config = serde_json::from_str(json).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn acme_certs_need_the_account_table() {
        let e = cfg(r#"{"certs":[{"domains":["a.test"],"cert":"/c/a.pem","key":"/c/a.key"}]}"#)
            .unwrap_err();
        assert!(e.contains("[job.config.acme]"), "{e}");
        cfg(r#"{"acme":{"directory":"https://acme.test/dir","account_key":"/c/acct.key","webroot":"/www"},
                "certs":[{"domains":["a.test","www.a.test"],"cert":"/c/a.pem","key":"/c/a.key"}]}"#)
        .unwrap();
    }

    #[test]
    fn bad_names_wildcards_and_relative_paths_are_refused() {
        let base =
            r#""acme":{"directory":"https://acme.test/dir","account_key":"/k","webroot":"/w"}"#;
        for (certs, want) in [
            (
                r#"[{"domains":["bad_name"],"cert":"/c","key":"/k2"}]"#,
                "not a DNS name",
            ),
            (
                r#"[{"domains":["*.a.test"],"cert":"/c","key":"/k2"}]"#,
                "DNS-01",
            ),
            (
                r#"[{"domains":["a.test"],"cert":"c.pem","key":"/k2"}]"#,
                "relative",
            ),
            (
                r#"[{"domains":["a.test"],"cert":"/c","key":"/c"}]"#,
                "same file",
            ),
            (
                r#"[{"domains":["a.test"],"cert":"/c/a.pem","key":"/k/a.key"}]"#,
                "same directory",
            ),
        ] {
            let e = cfg(&format!(r#"{{{base},"certs":{certs}}}"#)).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn dns01_takes_wildcards_in_its_zone_and_needs_a_secret() {
        let acme = |dns: &str| {
            format!(
                r#""acme":{{"directory":"https://acme.test/dir","account_key":"/k","challenge":"dns-01","dns":{dns}}}"#
            )
        };
        let dns = r#"{"server":"192.0.2.53:53","zone":"a.test","tsig_key":"acme","tsig_secret_env":"TSIG"}"#;
        let certs = |domains: &str, key: &str| {
            format!(
                r#""certs":[{{"domains":{domains},"cert":"/c/x/full.pem","key":"{key}","key_type":"p384"}}]"#
            )
        };
        let c = cfg(&format!(
            "{{{},{}}}",
            acme(dns),
            certs(r#"["*.a.test","a.test"]"#, "/c/x/key.pem")
        ))
        .unwrap();
        assert_eq!(c.certs[0].key_type, KeyType::P384);
        for (acme_t, certs_t, want) in [
            (acme(dns), certs(r#"["b.test"]"#, "/c/x/key.pem"), "not in the zone a.test"),
            (acme(dns), certs(r#"["a.test"]"#, "/c/y/key.pem"), "same directory"),
            (acme(&dns.replace("192.0.2.53:53", "192.0.2.53")), certs(r#"["a.test"]"#, "/c/x/key.pem"), "needs a port"),
            (
                acme(&dns.replace(r#","tsig_secret_env":"TSIG""#, "")),
                certs(r#"["a.test"]"#, "/c/x/key.pem"),
                "tsig_secret_env",
            ),
            (
                r#""acme":{"directory":"https://acme.test/dir","account_key":"/k","challenge":"dns-01"}"#.into(),
                certs(r#"["a.test"]"#, "/c/x/key.pem"),
                "needs [job.config.acme.dns]",
            ),
            (
                r#""acme":{"directory":"https://acme.test/dir","account_key":"/k"}"#.into(),
                certs(r#"["a.test"]"#, "/c/x/key.pem"),
                "needs a `webroot`",
            ),
        ] {
            let e = cfg(&format!("{{{acme_t},{certs_t}}}")).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert_eq!(challenge_name("*.a.test"), "_acme-challenge.a.test");
        assert!(in_zone("_acme-challenge.a.test", "A.test.") && !in_zone("xa.test", "a.test"));
    }

    #[test]
    fn command_mode_defaults_to_certbot_renew() {
        let c = cfg(r#"{"mode":"command"}"#).unwrap();
        assert_eq!(c.command_line(false)[..2], ["certbot", "renew"]);
        assert_eq!(c.command_line(true).last().unwrap(), "--dry-run");
        assert!(
            cfg(r#"{"mode":"command","certs":[{"domains":["a.test"],"cert":"/c","key":"/k"}]}"#)
                .is_err()
        );
    }
}
