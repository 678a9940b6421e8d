//! The one HTTP(S) client in opsd. Webhooks, `when` probes and plugins'
//! wasi:http requests all connect, verify TLS and frame their requests
//! here, so a fix (an IPv6 literal, a root store, a timeout) reaches all
//! three; three hand-built clients had drifted apart.
//!
//! HTTP/1.1 over TCP, TLS by rustls with the public web PKI plus any
//! roots the caller adds (a job's `ca` grant). No proxy, no redirects, no
//! pooling: each request is its own connection, which is what a webhook,
//! a probe or one plugin call needs.

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a request got no answer. Callers tell these apart: wasi:http maps
/// each to its own error code, and a TLS failure gets a hint about `ca`.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("`{0}` is not an http or https URL with a host")]
    BadUrl(String),
    #[error("connecting to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {authority}: no connection within {}", humantime::format_duration(*.after))]
    ConnectTimeout { authority: String, after: Duration },
    #[error("TLS with {authority}: {source}")]
    Tls {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// Where a URL points, as a connection needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// The host as resolved and verified: an IPv6 literal without its
    /// brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// The endpoint of an absolute `http`/`https` URI (no scheme reads as
    /// https, as wasi:http does).
    pub fn of(uri: &http::Uri) -> Result<Endpoint, SendError> {
        let https = match uri.scheme_str() {
            None | Some("https") => true,
            Some("http") => false,
            Some(_) => return Err(SendError::BadUrl(uri.to_string())),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| SendError::BadUrl(uri.to_string()))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Ok(Endpoint {
            https,
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }

    /// `host:port` as written in a URL (an IPv6 literal in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A URL as opsd may print it or show it to a plugin: scheme, host and
/// port only. User, password, path, query and fragment are where
/// webhook and health-check URLs carry their tokens (`/ping/<uuid>`,
/// `?token=`).
pub fn url_without_secrets(url: &str) -> String {
    const HIDDEN: &str = "(a URL)";
    let Ok(uri) = url.parse::<http::Uri>() else {
        return HIDDEN.into();
    };
    if has_user_part(url) {
        return HIDDEN.into();
    }
    match (uri.scheme_str(), uri.host()) {
        (Some(scheme), Some(host)) => match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        },
        _ => HIDDEN.into(),
    }
}

/// Whether a URL names a user before its host (anything with `@` before
/// the path): such a URL reads two ways, and opsd sends no credentials.
pub fn has_user_part(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or_default().contains('@')
}

/// What a connection reads and writes: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// An open HTTP/1.1 connection; its I/O runs on a task of its own, which
/// ends when the connection closes.
pub struct Connection<B> {
    sender: http1::SendRequest<B>,
    driver: tokio::task::JoinHandle<Result<(), hyper::Error>>,
}

/// Opens a connection to `endpoint` (TLS for https, trusting the public
/// roots and `extra_roots`) and shakes hands, all within `within`.
pub async fn connect<B>(
    endpoint: &Endpoint,
    extra_roots: &[CertificateDer<'static>],
    within: Duration,
) -> Result<Connection<B>, SendError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let authority = endpoint.authority();
    let open = async {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| SendError::Connect {
                authority: authority.clone(),
                source,
            })?;
        let io: Box<dyn Io> = if endpoint.https {
            let tls = tls_connector(extra_roots)?
                .connect(server_name(&endpoint.host)?, tcp)
                .await
                .map_err(|source| SendError::Tls {
                    authority: authority.clone(),
                    source,
                })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        Ok::<_, SendError>(http1::handshake(TokioIo::new(io)).await?)
    };
    let (sender, conn) =
        tokio::time::timeout(within, open)
            .await
            .map_err(|_| SendError::ConnectTimeout {
                authority: authority.clone(),
                after: within,
            })??;
    Ok(Connection {
        sender,
        driver: tokio::spawn(conn),
    })
}

impl<B> Connection<B>
where
    B: hyper::body::Body + Send + 'static,
{
    /// Sends `request`, whose URI is absolute, as a direct request: the
    /// path and query on the request line and the authority (without any
    /// user part) as `Host`, unless the caller set one. Returns the head;
    /// the body streams in as it is read.
    pub async fn send(
        &mut self,
        mut request: http::Request<B>,
    ) -> Result<http::Response<hyper::body::Incoming>, SendError> {
        let uri = request.uri().clone();
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(target)
            .build()
            .map_err(|_| SendError::BadUrl(url_without_secrets(&uri.to_string())))?;
        if !request.headers().contains_key(http::header::HOST)
            && let Some(authority) = uri.authority()
        {
            let host = authority.as_str().rsplit('@').next().unwrap_or_default();
            if let Ok(v) = http::HeaderValue::from_str(host) {
                request.headers_mut().insert(http::header::HOST, v);
            }
        }
        Ok(self.sender.send_request(request).await?)
    }

    /// The connection's I/O task: await it to learn how the connection
    /// ended, or abort it once the answer is all the caller wants.
    pub fn into_driver(self) -> tokio::task::JoinHandle<Result<(), hyper::Error>> {
        self.driver
    }
}

/// A connector trusting the public web PKI and `extra_roots`. A
/// certificate that is no usable anchor was reported when the config
/// loaded, and is skipped here.
fn tls_connector(
    extra_roots: &[CertificateDer<'static>],
) -> Result<tokio_rustls::TlsConnector, SendError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for cert in extra_roots {
        let _ = roots.add(cert.clone());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SendError::TlsSetup(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name a certificate must carry: an IP address for a literal, a DNS
/// name otherwise.
fn server_name(host: &str) -> Result<ServerName<'static>, SendError> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ServerName::from(ip)),
        Err(_) => ServerName::try_from(host.to_owned())
            .map_err(|_| SendError::BadUrl(format!("https://{host}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn endpoints_strip_ipv6_brackets_and_default_ports() {
        let e = |u: &str| Endpoint::of(&u.parse().unwrap());
        let v6 = e("http://[::1]:8080/x").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.https), ("::1", 8080, false));
        assert_eq!(v6.authority(), "[::1]:8080");
        assert_eq!(e("https://example.org/").unwrap().port, 443);
        assert_eq!(e("http://example.org").unwrap().port, 80);
        assert!(e("ftp://example.org/").is_err());
        assert!(e("/only/a/path").is_err());
    }

    #[test]
    fn a_url_shown_has_no_credentials_or_query() {
        use super::url_without_secrets as u;
        assert_eq!(
            u("https://host:8443/health?token=abc#x"),
            "https://host:8443"
        );
        assert_eq!(u("https://user:pw@host:8443/health"), "(a URL)");
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

    /// A one-shot server: answers 204 and hands back the request it read.
    async fn serve_once(listener: tokio::net::TcpListener) -> String {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 4096];
        let mut got = 0;
        while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            got += s.read(&mut buf[got..]).await.unwrap();
        }
        s.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&buf[..got]).into_owned()
    }

    #[tokio::test]
    async fn requests_go_out_in_origin_form_over_ipv4_and_ipv6() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = tokio::net::TcpListener::bind(bind).await else {
                continue; // no IPv6 on this machine
            };
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(serve_once(listener));
            let url = format!("http://{addr}/hook?x=1");
            let uri: http::Uri = url.parse().unwrap();
            let mut conn = connect(&Endpoint::of(&uri).unwrap(), &[], Duration::from_secs(5))
                .await
                .unwrap();
            let answer = conn
                .send(
                    http::Request::post(uri)
                        .body(Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(answer.status(), 204);
            let seen = server.await.unwrap();
            assert!(seen.starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{seen}");
            assert!(
                seen.to_ascii_lowercase()
                    .contains(&format!("host: {addr}\r\n")),
                "{seen}"
            );
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_named() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        let e = connect::<Empty<bytes::Bytes>>(
            &Endpoint::of(&uri).unwrap(),
            &[],
            Duration::from_secs(5),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(e, SendError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
