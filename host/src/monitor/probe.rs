//! HTTP probes for `http_latency_seconds`: how long a GET takes to get its
//! response head, the "response time" of the runbook's table.

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Seconds until the response head of a GET to `url`, or why not.
pub async fn latency(url: &str, limit: Duration) -> Result<f64, String> {
    let began = Instant::now();
    match tokio::time::timeout(limit, get(url)).await {
        Ok(Ok(())) => Ok(began.elapsed().as_secs_f64()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

/// A probe URL as a plugin may see it: scheme, host and port only. User,
/// password, path, query and fragment are where health-check URLs carry
/// their tokens (`/ping/<uuid>`, `?token=`); another job's condition is
/// the operator's, not the plugin's.
pub fn url_without_secrets(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "(a probe)".into();
    };
    if has_user_part(url) {
        return "(a probe)".into();
    }
    match (uri.scheme_str(), uri.host()) {
        (Some(scheme), Some(host)) => match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        },
        _ => "(a probe)".into(),
    }
}

/// Whether a URL names a user before its host (anything with `@` before
/// the path): such a URL reads two ways, and a probe sends no credentials.
pub fn has_user_part(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or_default().contains('@')
}

async fn get(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = http::Request::get(path)
        .header(http::header::HOST, &host)
        .header(http::header::USER_AGENT, "opsd-probe")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    if https {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        send(TokioIo::new(tls), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<T>(io: T, request: http::Request<Empty<bytes::Bytes>>) -> Result<(), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let answer = sender.send_request(request).await;
    driver.abort();
    answer.map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_shown_to_plugins_has_no_credentials_or_query() {
        use super::url_without_secrets as u;
        assert_eq!(
            u("https://host:8443/health?token=abc#x"),
            "https://host:8443"
        );
        assert_eq!(u("https://user:pw@host:8443/health"), "(a probe)");
        assert_eq!(u("http://127.0.0.1:3000/health"), "http://127.0.0.1:3000");
        assert_eq!(u("http://h?k=v"), "http://h");
        assert_eq!(u("http://[::1]:8080/x"), "http://[::1]:8080");
        for tricky in [
            "http://admin:pa?ss@127.0.0.1:1/health",
            "http://user:p/w@127.0.0.1:1/h",
            "https://hc.example/ping/uuid-7;sig=abc/x#frag",
            "http://a@b@host/p@q",
            "http:\\\\admin:pw@host/",
        ] {
            let shown = u(tricky);
            for secret in ["admin", "pa", "p/w", "uuid", "sig", "frag", "a@", "pw"] {
                assert!(!shown.contains(secret), "{tricky} -> {shown}");
            }
        }
    }
}
