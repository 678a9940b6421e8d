//! An ACME (RFC 8555) client: account, order, HTTP-01 or DNS-01 challenges, finalize
//! with a CSR, download the chain. Requests are JWS-signed with an ES256
//! (P-256) account key; every URL it follows must stay on the directory's
//! origin, which is also the only origin the job's net grant needs.

use crate::http::{self, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// The directory's endpoints.
#[derive(Debug, Clone)]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
}

/// An order as the server describes it.
#[derive(Debug, Clone)]
pub struct Order {
    pub url: String,
    pub status: String,
    pub authorizations: Vec<String>,
    pub finalize: String,
    pub certificate: Option<String>,
}

/// One pending challenge (HTTP-01 or DNS-01).
#[derive(Debug, Clone)]
pub struct Challenge {
    /// `http-01` or `dns-01`.
    pub kind: &'static str,
    /// The identifier; for a wildcard, the name without `*.`.
    pub domain: String,
    /// Whether the authorization is for `*.domain`.
    pub wildcard: bool,
    pub authz_url: String,
    pub challenge_url: String,
    pub token: String,
}

/// A logged-in ACME client.
pub struct Client {
    origin: String,
    dir: Directory,
    key: SigningKey,
    jwk: Value,
    kid: Option<String>,
    nonce: Option<String>,
    /// How long to wait for authorizations and orders.
    pub patience: Duration,
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The account key's public JWK, members in the order RFC 7638 needs for
/// the thumbprint.
pub fn jwk(key: &SigningKey) -> Value {
    let point = key.verifying_key().to_encoded_point(false);
    let x = point.x().map(|x| b64(x)).unwrap_or_default();
    let y = point.y().map(|y| b64(y)).unwrap_or_default();
    json!({"crv": "P-256", "kty": "EC", "x": x, "y": y})
}

/// RFC 7638 thumbprint of the JWK.
pub fn thumbprint(jwk: &Value) -> String {
    let canonical = format!(
        r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
        jwk["crv"].as_str().unwrap_or(""),
        jwk["kty"].as_str().unwrap_or(""),
        jwk["x"].as_str().unwrap_or(""),
        jwk["y"].as_str().unwrap_or("")
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// A flattened JWS (RFC 7515) over `payload` (empty for POST-as-GET).
pub fn sign(key: &SigningKey, protected: &Value, payload: &str) -> Value {
    let protected = b64(protected.to_string().as_bytes());
    let payload = b64(payload.as_bytes());
    let signature: Signature = key.sign(format!("{protected}.{payload}").as_bytes());
    json!({
        "protected": protected,
        "payload": payload,
        "signature": b64(&signature.to_bytes()),
    })
}

/// An ACME problem document as one line for the operator.
fn problem(what: &str, resp: &Response) -> String {
    let doc: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let kind = doc["type"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("urn:ietf:params:acme:error:");
    let detail = doc["detail"].as_str().unwrap_or("");
    let mut text = if kind.is_empty() && detail.is_empty() {
        format!("{what}: HTTP {} {}", resp.status, resp.text().trim())
    } else {
        format!("{what}: {kind}: {detail} (HTTP {})", resp.status)
    };
    if let Some(subs) = doc["subproblems"].as_array() {
        for s in subs {
            text.push_str(&format!(
                "; {}: {}",
                s["identifier"]["value"].as_str().unwrap_or("?"),
                s["detail"].as_str().unwrap_or("")
            ));
        }
    }
    text
}

fn json_of(what: &str, resp: &Response) -> Result<Value, String> {
    serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "{what}: the server's answer is not JSON ({e}): {}",
            resp.text()
        )
    })
}

fn order_of(url: &str, v: &Value) -> Order {
    Order {
        url: url.to_owned(),
        status: v["status"].as_str().unwrap_or("").to_owned(),
        authorizations: v["authorizations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        finalize: v["finalize"].as_str().unwrap_or("").to_owned(),
        certificate: v["certificate"].as_str().map(str::to_owned),
    }
}

impl Client {
    /// Reads the directory at `url` (whose origin every later request must
    /// share).
    pub fn connect(url: &str, key: SigningKey) -> Result<Client, String> {
        let origin = http::origin(url)?;
        let resp = http::request("GET", url, &[], None)
            .map_err(|e| format!("ACME directory {url}: {e}"))?;
        if resp.status != 200 {
            return Err(format!(
                "ACME directory {url}: HTTP {} {}",
                resp.status,
                resp.text().trim()
            ));
        }
        let v = json_of("ACME directory", &resp)?;
        let field = |name: &str| -> Result<String, String> {
            v[name].as_str().map(str::to_owned).ok_or_else(|| {
                format!("ACME directory {url} has no `{name}`: is this an ACME server?")
            })
        };
        let dir = Directory {
            new_nonce: field("newNonce")?,
            new_account: field("newAccount")?,
            new_order: field("newOrder")?,
        };
        let jwk = jwk(&key);
        let client = Client {
            origin,
            dir,
            key,
            jwk,
            kid: None,
            nonce: None,
            patience: Duration::from_secs(120),
        };
        for u in [
            &client.dir.new_nonce,
            &client.dir.new_account,
            &client.dir.new_order,
        ] {
            client.same_origin(u)?;
        }
        Ok(client)
    }

    /// Refuses a URL on another origin than the directory's.
    fn same_origin(&self, url: &str) -> Result<(), String> {
        let o = http::origin(url)?;
        if o != self.origin {
            return Err(format!(
                "the ACME server sent {url}, which is not on the directory's origin {}; refusing to follow it",
                self.origin
            ));
        }
        Ok(())
    }

    /// The key authorization the HTTP-01 file must hold for `token`.
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", thumbprint(&self.jwk))
    }

    fn nonce(&mut self) -> Result<String, String> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let resp = http::request("HEAD", &self.dir.new_nonce, &[], None)?;
        resp.header("replay-nonce")
            .map(str::to_owned)
            .ok_or_else(|| format!("{} gave no Replay-Nonce", self.dir.new_nonce))
    }

    /// A signed POST (POST-as-GET when `payload` is None). A rejected
    /// nonce is retried with a fresh one, as RFC 8555 section 6.5 asks.
    fn post(&mut self, what: &str, url: &str, payload: Option<&Value>) -> Result<Response, String> {
        self.same_origin(url)?;
        let body_text = payload.map(|p| p.to_string()).unwrap_or_default();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let nonce = self.nonce()?;
            let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
            match &self.kid {
                Some(kid) => protected["kid"] = json!(kid),
                None => protected["jwk"] = self.jwk.clone(),
            }
            let jws = sign(&self.key, &protected, &body_text).to_string();
            let length = jws.len().to_string();
            let resp = http::request(
                "POST",
                url,
                &[
                    ("content-type", "application/jose+json"),
                    ("content-length", &length),
                ],
                Some(jws.as_bytes()),
            )
            .map_err(|e| format!("{what}: {e}"))?;
            self.nonce = resp.header("replay-nonce").map(str::to_owned);
            if resp.status < 300 {
                return Ok(resp);
            }
            let bad_nonce = serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| v["type"].as_str().map(|t| t.ends_with(":badNonce")))
                .unwrap_or(false);
            if bad_nonce && attempts < 5 {
                continue;
            }
            return Err(problem(what, &resp));
        }
    }

    /// Creates the account (or finds the existing one for this key).
    pub fn register(&mut self, email: Option<&str>) -> Result<String, String> {
        let mut payload = json!({"termsOfServiceAgreed": true});
        if let Some(e) = email {
            payload["contact"] = json!([format!("mailto:{e}")]);
        }
        let url = self.dir.new_account.clone();
        let resp = self.post("creating the ACME account", &url, Some(&payload))?;
        let kid = resp
            .header("location")
            .ok_or("the ACME server gave the account no URL (Location)")?
            .to_owned();
        self.kid = Some(kid.clone());
        Ok(kid)
    }

    /// Places an order for these names.
    pub fn new_order(&mut self, domains: &[String]) -> Result<Order, String> {
        let ids: Vec<Value> = domains
            .iter()
            .map(|d| json!({"type": "dns", "value": d}))
            .collect();
        let url = self.dir.new_order.clone();
        let resp = self.post(
            "placing the order",
            &url,
            Some(&json!({"identifiers": ids})),
        )?;
        let order_url = resp
            .header("location")
            .ok_or("the ACME server gave the order no URL (Location)")?
            .to_owned();
        let v = json_of("the new order", &resp)?;
        Ok(order_of(&order_url, &v))
    }

    /// The DNS-01 TXT value for `token` (RFC 8555 8.4): the key
    /// authorization's SHA-256, base64url.
    pub fn dns01_value(&self, token: &str) -> String {
        b64(&Sha256::digest(self.key_authorization(token).as_bytes()))
    }

    /// The challenge of type `kind` (`http-01`, `dns-01`) of each
    /// authorization still pending.
    pub fn challenges(
        &mut self,
        order: &Order,
        kind: &'static str,
    ) -> Result<Vec<Challenge>, String> {
        let mut out = Vec::new();
        for authz_url in &order.authorizations {
            let resp = self.post("reading an authorization", authz_url, None)?;
            let v = json_of("an authorization", &resp)?;
            let domain = v["identifier"]["value"].as_str().unwrap_or("?").to_owned();
            if v["status"] == "valid" {
                continue;
            }
            let ch = v["challenges"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
                .ok_or_else(|| {
                    format!("the ACME server offers no {kind} challenge for {domain}")
                })?;
            out.push(Challenge {
                kind,
                domain,
                wildcard: v["wildcard"] == true,
                authz_url: authz_url.clone(),
                challenge_url: ch["url"].as_str().unwrap_or("").to_owned(),
                token: ch["token"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(out)
    }

    /// Tells the server the challenge is ready and waits for the
    /// authorization to become valid.
    pub fn complete(&mut self, ch: &Challenge) -> Result<(), String> {
        self.post(
            &format!("answering the {} challenge for {}", ch.kind, ch.domain),
            &ch.challenge_url,
            Some(&json!({})),
        )?;
        let deadline = Instant::now() + self.patience;
        let mut wait = Duration::from_millis(250);
        loop {
            let resp = self.post("polling an authorization", &ch.authz_url, None)?;
            let v = json_of("an authorization", &resp)?;
            match v["status"].as_str().unwrap_or("") {
                "valid" => return Ok(()),
                "pending" | "processing" => {}
                other => {
                    let detail = v["challenges"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["type"] == ch.kind))
                        .map(|c| c["error"]["detail"].as_str().unwrap_or("").to_owned())
                        .unwrap_or_default();
                    return Err(format!(
                        "the authorization for {} is {other}: {detail}",
                        ch.domain
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the authorization for {} was still pending after {} s",
                    ch.domain,
                    self.patience.as_secs()
                ));
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Sends the CSR and waits for the certificate to be issued.
    pub fn finalize(&mut self, order: &Order, csr_der: &[u8]) -> Result<Order, String> {
        let resp = self.post(
            "finalizing the order",
            &order.finalize,
            Some(&json!({"csr": b64(csr_der)})),
        )?;
        let mut current = order_of(&order.url, &json_of("the order", &resp)?);
        let deadline = Instant::now() + self.patience;
        let mut wait = Duration::from_millis(250);
        loop {
            match current.status.as_str() {
                "valid" if current.certificate.is_some() => return Ok(current),
                "invalid" => return Err("the ACME server marked the order invalid".into()),
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the order was still {} after {} s",
                    current.status,
                    self.patience.as_secs()
                ));
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
            let url = current.url.clone();
            let resp = self.post("polling the order", &url, None)?;
            current = order_of(&url, &json_of("the order", &resp)?);
        }
    }

    /// Downloads the issued chain (PEM, leaf first).
    pub fn download(&mut self, order: &Order) -> Result<String, String> {
        let url = order
            .certificate
            .clone()
            .ok_or("the order has no certificate URL")?;
        let resp = self.post("downloading the certificate", &url, None)?;
        let pem = resp.text();
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "the certificate download is not PEM: {}",
                pem.chars().take(200).collect::<String>()
            ));
        }
        Ok(pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{VerifyingKey, signature::Verifier};

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn jws_verifies_with_the_account_key() {
        let k = key();
        let jws = sign(&k, &json!({"alg": "ES256", "nonce": "n", "url": "u"}), "{}");
        let input = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let sig_bytes = B64.decode(jws["signature"].as_str().unwrap()).unwrap();
        assert_eq!(sig_bytes.len(), 64, "ES256 signatures are r||s, 64 bytes");
        let sig = Signature::from_slice(&sig_bytes).unwrap();
        VerifyingKey::from(&k)
            .verify(input.as_bytes(), &sig)
            .unwrap();
        assert_eq!(jws["payload"], b64(b"{}"));
    }

    #[test]
    fn thumbprint_is_rfc7638() {
        // RFC 7638 section 3.1's canonical form, computed for a fixed key.
        let j = jwk(&key());
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        assert_eq!(thumbprint(&j), b64(&Sha256::digest(canonical.as_bytes())));
        assert_eq!(j["x"].as_str().unwrap().len(), 43);
    }
}
