//! The job's `[job.config]` table for cert-renew.

use serde::Deserialize;

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
    /// `/.well-known/acme-challenge/` for every domain.
    pub webroot: String,
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
                    absolute("acme.webroot", &acme.webroot)?;
                }
                for c in &self.certs {
                    if c.domains.is_empty() {
                        return Err(format!("certificate {}: `domains` is empty", c.cert));
                    }
                    for d in &c.domains {
                        if !valid_domain(d) {
                            return Err(format!("certificate {}: `{d}` is not a DNS name", c.cert));
                        }
                        if d.starts_with("*.") {
                            return Err(format!(
                                "certificate {}: `{d}` is a wildcard, which needs a DNS-01 challenge; this plugin answers HTTP-01",
                                c.cert
                            ));
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
        ] {
            let e = cfg(&format!(r#"{{{base},"certs":{certs}}}"#)).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
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
