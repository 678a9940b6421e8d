//! Reading certificates for plugins that watch them: the leaf of a PEM
//! file, its names and validity, its public key, and certbot's rule for
//! when it is due.

use der::{Decode, Encode};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// What the run needs to know about one certificate file.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub path: String,
    /// Subject, as RFC 4514 text.
    pub subject: String,
    /// DNS names in subjectAltName.
    pub dns_names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The leaf's public key (SubjectPublicKeyInfo, DER), to match a key.
    pub spki_der: Vec<u8>,
    /// Certificates in the file (leaf first).
    pub chain_len: usize,
}

impl CertInfo {
    /// Whole days until expiry (negative once expired).
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }

    /// When renewal is due: `renew_before_days` before expiry when set,
    /// otherwise when a third of the lifetime remains (certbot's rule).
    pub fn renew_at(&self, renew_before_days: Option<u64>) -> i64 {
        match renew_before_days {
            Some(days) => self.not_after - days as i64 * 86_400,
            None => self.not_after - (self.not_after - self.not_before) / 3,
        }
    }
}

/// Parses the PEM file's certificates; the first is the leaf.
pub fn parse_pem(path: &str, pem: &[u8]) -> Result<CertInfo, String> {
    let chain = Certificate::load_pem_chain(pem)
        .map_err(|e| format!("{path}: not a PEM certificate file: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{path}: holds no certificate"))?;
    let tbs = &leaf.tbs_certificate;
    let mut dns_names = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id == const_oid_san() {
            let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                .map_err(|e| format!("{path}: bad subjectAltName: {e}"))?;
            for name in san.0 {
                if let GeneralName::DnsName(d) = name {
                    dns_names.push(d.as_str().to_owned());
                }
            }
        }
    }
    let spki_der = tbs
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("{path}: public key: {e}"))?;
    Ok(CertInfo {
        path: path.to_owned(),
        subject: tbs.subject.to_string(),
        dns_names,
        not_before: tbs.validity.not_before.to_unix_duration().as_secs() as i64,
        not_after: tbs.validity.not_after.to_unix_duration().as_secs() as i64,
        spki_der,
        chain_len: chain.len(),
    })
}

fn const_oid_san() -> der::asn1::ObjectIdentifier {
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17")
}

/// Certificate files under a path: the file itself, or the `.pem`/`.crt`
/// files of a directory (not recursing, skipping keys).
pub fn find_cert_files(path: &str) -> Result<Vec<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{path}: {e}"))? {
        let entry = entry.map_err(|e| format!("{path}: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_cert = name.ends_with(".pem") || name.ends_with(".crt");
        let is_key = name.contains("key");
        if is_cert && !is_key && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            out.push(format!("{}/{name}", path.trim_end_matches('/')));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed ECDSA certificate for `a.test` and `b.test`, valid
    /// 2026-01-01 to 2026-04-01 (90 days).
    pub const PEM: &str = include_str!("../tests/data/ab-test.pem");

    #[test]
    fn reads_names_and_validity() {
        let c = parse_pem("x.pem", PEM.as_bytes()).unwrap();
        assert_eq!(c.dns_names, ["a.test", "b.test"]);
        assert_eq!(c.subject, "CN=a.test");
        assert_eq!(c.not_after - c.not_before, 90 * 86_400);
        assert_eq!(c.chain_len, 1);
    }

    #[test]
    fn certbot_rule_is_a_third_of_the_lifetime() {
        let c = parse_pem("x.pem", PEM.as_bytes()).unwrap();
        assert_eq!(c.renew_at(None), c.not_after - 30 * 86_400);
        assert_eq!(c.renew_at(Some(10)), c.not_after - 10 * 86_400);
        assert_eq!(c.days_left(c.not_after - 86_400 - 1), 1);
        assert_eq!(c.days_left(c.not_after + 1), -1);
    }

    #[test]
    fn garbage_is_refused_with_the_path() {
        let e = parse_pem("/etc/ssl/x.pem", b"hello").unwrap_err();
        assert!(e.starts_with("/etc/ssl/x.pem: "), "{e}");
    }
}
