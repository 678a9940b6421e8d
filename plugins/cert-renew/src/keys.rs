//! Keys, CSRs and writing secrets to disk: P-256 keys in PKCS#8 PEM, a CSR
//! naming every domain, and files replaced atomically with the mode set
//! before any secret byte is written.

use der::Encode;
use der::asn1::Ia5String;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature;
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

/// The type of a certificate's key (`key_type` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA on P-256 (the default: small and fast everywhere).
    #[default]
    P256,
    /// ECDSA on P-384.
    P384,
    /// RSA, 2048 bits: for clients that speak no ECDSA.
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
        }
    }
}

/// A certificate's private key, of any supported type.
pub enum CertKey {
    P256(SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl CertKey {
    /// A fresh key of `kind` from the host's random source. RSA keys take
    /// a second or more to find (4096 bits: many).
    pub fn generate(kind: KeyType) -> Result<CertKey, String> {
        let rsa = |bits: usize| {
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits)
                .map(|k| CertKey::Rsa(Box::new(k)))
                .map_err(|e| format!("generating an RSA-{bits} key: {e}"))
        };
        match kind {
            KeyType::P256 => Ok(CertKey::P256(generate())),
            KeyType::P384 => Ok(CertKey::P384(p384::ecdsa::SigningKey::random(
                &mut rand_core::OsRng,
            ))),
            KeyType::Rsa2048 => rsa(2048),
            KeyType::Rsa3072 => rsa(3072),
            KeyType::Rsa4096 => rsa(4096),
        }
    }

    /// Reads a PKCS#8 PEM key of any supported type (or a P-256 SEC1 one).
    pub fn parse(path: &str, pem: &str) -> Result<CertKey, String> {
        if let Ok(k) = parse_key(path, pem) {
            return Ok(CertKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(CertKey::P384(k));
        }
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            return Ok(CertKey::Rsa(Box::new(k)));
        }
        if let Ok(k) = <rsa::RsaPrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_pem(pem)
        {
            return Ok(CertKey::Rsa(Box::new(k)));
        }
        Err(format!(
            "{path}: not a private key in PEM (P-256, P-384 or RSA; PKCS#8, SEC1 or PKCS#1)"
        ))
    }

    /// The configured type this key is, if it is one.
    pub fn key_type(&self) -> Option<KeyType> {
        use rsa::traits::PublicKeyParts;
        match self {
            CertKey::P256(_) => Some(KeyType::P256),
            CertKey::P384(_) => Some(KeyType::P384),
            CertKey::Rsa(k) => match k.size() * 8 {
                2048 => Some(KeyType::Rsa2048),
                3072 => Some(KeyType::Rsa3072),
                4096 => Some(KeyType::Rsa4096),
                _ => None,
            },
        }
    }

    /// The key's type for people: `p256`, `rsa2048`, `rsa1024`.
    pub fn describe(&self) -> String {
        use rsa::traits::PublicKeyParts;
        match self {
            CertKey::Rsa(k) => format!("rsa{}", k.size() * 8),
            _ => self
                .key_type()
                .map(|t| t.name().to_owned())
                .unwrap_or_default(),
        }
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, String> {
        let pem = match self {
            CertKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            CertKey::P384(k) => k.to_pkcs8_pem(LineEnding::LF),
            CertKey::Rsa(k) => k.to_pkcs8_pem(LineEnding::LF),
        };
        pem.map(|z| z.to_string())
            .map_err(|e| format!("encoding a key: {e}"))
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> Result<Vec<u8>, String> {
        let der = match self {
            CertKey::P256(k) => k.verifying_key().to_public_key_der(),
            CertKey::P384(k) => k.verifying_key().to_public_key_der(),
            CertKey::Rsa(k) => k.to_public_key().to_public_key_der(),
        };
        der.map(|d| d.as_bytes().to_vec())
            .map_err(|e| format!("encoding a public key: {e}"))
    }

    /// A CSR (DER) for `domains`, the first as the subject's CN, signed
    /// with ES256, ES384 or RS256.
    pub fn csr_der(&self, domains: &[String]) -> Result<Vec<u8>, String> {
        match self {
            CertKey::P256(k) => csr_with::<_, DerSignature>(k, domains),
            CertKey::P384(k) => csr_with::<_, p384::ecdsa::DerSignature>(k, domains),
            CertKey::Rsa(k) => {
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**k).clone());
                csr_with::<_, rsa::pkcs1v15::Signature>(&signer, domains)
            }
        }
    }
}

/// A CSR (DER) for `domains` with a P-256 key.
pub fn csr_der(key: &SigningKey, domains: &[String]) -> Result<Vec<u8>, String> {
    csr_with::<_, DerSignature>(key, domains)
}

fn csr_with<S, Sig>(key: &S, domains: &[String]) -> Result<Vec<u8>, String>
where
    S: signature::Keypair + x509_cert::spki::DynSignatureAlgorithmIdentifier,
    S::VerifyingKey: EncodePublicKey,
    S: signature::Signer<Sig>,
    Sig: x509_cert::spki::SignatureBitStringEncoding,
{
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
        .build::<Sig>()
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
            Ok(_) => Err(format!("{dir} is not a directory")),
            Err(_) => Err(format!(
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
