//! Keys, CSRs and writing secrets to disk: P-256 keys in PKCS#8 PEM, a CSR
//! naming every domain, and files replaced atomically with the mode set
//! before any secret byte is written.

use der::Encode;
use der::asn1::Ia5String;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use std::io::Write;
use std::str::FromStr;
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::name::Name;

/// A fresh P-256 key from the host's random source.
pub fn generate() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

/// Reads a key in PKCS#8 or SEC1 ("EC PRIVATE KEY") PEM.
pub fn parse_key(path: &str, pem: &str) -> Result<SigningKey, String> {
    if let Ok(k) = SigningKey::from_pkcs8_pem(pem) {
        return Ok(k);
    }
    p256::SecretKey::from_sec1_pem(pem)
        .map(SigningKey::from)
        .map_err(|_| format!("{path}: not a P-256 private key in PEM (PKCS#8 or SEC1)"))
}

/// The key as PKCS#8 PEM.
pub fn key_pem(key: &SigningKey) -> Result<String, String> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|z| z.to_string())
        .map_err(|e| format!("encoding a key: {e}"))
}

/// The public key as SubjectPublicKeyInfo DER, to compare with a
/// certificate's.
pub fn spki_der(key: &SigningKey) -> Result<Vec<u8>, String> {
    key.verifying_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| format!("encoding a public key: {e}"))
}

/// A CSR (DER) for `domains`, the first as the subject's CN.
pub fn csr_der(key: &SigningKey, domains: &[String]) -> Result<Vec<u8>, String> {
    let first = domains.first().ok_or("a CSR needs at least one name")?;
    let subject =
        Name::from_str(&format!("CN={first}")).map_err(|e| format!("subject CN={first}: {e}"))?;
    let mut builder =
        RequestBuilder::new(subject, key).map_err(|e| format!("building the CSR: {e}"))?;
    let names = domains
        .iter()
        .map(|d| {
            Ia5String::new(d)
                .map(GeneralName::DnsName)
                .map_err(|e| format!("`{d}`: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    builder
        .add_extension(&SubjectAltName(names))
        .map_err(|e| format!("building the CSR: {e}"))?;
    let req = builder
        .build::<DerSignature>()
        .map_err(|e| format!("signing the CSR: {e}"))?;
    req.to_der().map_err(|e| format!("encoding the CSR: {e}"))
}

/// Replaces `path` with `data`: a temp file beside it gets `mode` before
/// the first byte, is written and fsynced, then renamed over `path`, and
/// the directory is synced. A crash leaves the old file or the new one.
pub fn write_atomic(path: &str, data: &[u8], mode: u32) -> Result<(), String> {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..i.max(1)], &path[i + 1..]),
        None => (".", path),
    };
    let tmp = format!("{dir}/.{name}.opsd-tmp");
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::File::create_new(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
        opsd_sdk::fsinfo::set_mode(&tmp, mode)?;
        f.write_all(data).map_err(|e| format!("{tmp}: {e}"))?;
        f.sync_all().map_err(|e| format!("{tmp}: {e}"))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))?;
        let _ = opsd_sdk::fsinfo::sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `path` can be written: its directory exists and (unless
/// `look_only`, for a dry run that changes nothing) takes a new file,
/// made and removed again; so nothing is ordered that cannot be saved.
pub fn check_writable(path: &str, look_only: bool) -> Result<(), String> {
    let dir = match path.rfind('/') {
        Some(i) => &path[..i.max(1)],
        None => ".",
    };
    if look_only {
        return match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(format!(
                "its directory {dir} does not exist; create it (or grant it with `create = true`)"
            )),
        };
    }
    let probe = format!("{dir}/.opsd-write-check");
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "its directory {dir} does not exist; create it (or grant it with `create = true`)"
        )),
        Err(e) => Err(format!(
            "{dir} cannot be written ({e}); it must lie in a read-write grant"
        )),
    }
}

/// Keeps an issued certificate and its key that could not be saved where
/// they belong: beside the account key, as `rescued-NAME.key` (0600) and
/// `rescued-NAME.pem`. Returns (key path, certificate path).
pub fn rescue(
    account_key: &str,
    cert: &str,
    key_pem: &str,
    cert_pem: &str,
) -> Result<(String, String), String> {
    let dir = match account_key.rfind('/') {
        Some(i) => &account_key[..i.max(1)],
        None => ".",
    };
    let name = cert.rsplit('/').next().unwrap_or("cert");
    let key_path = format!("{dir}/rescued-{name}.key");
    let cert_path = format!("{dir}/rescued-{name}.pem");
    write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert_pem.as_bytes(), 0o600)?;
    Ok((key_path, cert_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;
    use x509_cert::request::CertReq;

    #[test]
    fn keys_round_trip_through_pem() {
        let k = generate();
        let pem = key_pem(&k).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = parse_key("k", &pem).unwrap();
        assert_eq!(spki_der(&back).unwrap(), spki_der(&k).unwrap());
        assert!(
            parse_key("/x/k.pem", "nope")
                .unwrap_err()
                .starts_with("/x/k.pem:")
        );
    }

    #[test]
    fn csr_names_every_domain_and_carries_the_key() {
        let k = generate();
        let der = csr_der(&k, &["a.test".into(), "www.a.test".into()]).unwrap();
        let req = CertReq::from_der(&der).unwrap();
        assert_eq!(req.info.subject.to_string(), "CN=a.test");
        assert_eq!(req.info.public_key.to_der().unwrap(), spki_der(&k).unwrap());
        let attrs = format!("{:?}", req.info.attributes);
        assert!(
            attrs.contains("1.2.840.113549.1.9.14"),
            "extensionRequest: {attrs}"
        );
    }

    #[test]
    fn atomic_write_sets_the_mode_and_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pem");
        let p = p.to_str().unwrap();
        std::fs::write(p, "old").unwrap();
        write_atomic(p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "new");
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
