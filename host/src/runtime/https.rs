//! Sends a plugin's wasi:http request over HTTPS trusting the job's `ca`
//! grant as well as the public web PKI, so a plugin can talk to a private
//! ACME server or an internal API without turning verification off.
//!
//! Shaped after wasmtime-wasi-http's `default_send_request`, which only
//! knows the webpki roots; timeouts and connection handling are the same.

use http_body_util::BodyExt;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The response and the connection's I/O future, as wasi:http hooks
/// return them.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `request` (scheme https) trusting `extra_roots` besides the
/// public roots.
pub async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Sent, Error> {
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(Duration::from_secs(600));
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));

    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = tokio::time::timeout(
        connect_timeout,
        TcpStream::connect((bare_host.as_str(), port)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(Error::Connect)?;

    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for cert in extra_roots {
        // A certificate that is not a usable anchor was reported when the
        // config loaded; skip it here.
        let _ = roots.add(cert.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::ConfigurationError)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = match bare_host.parse::<std::net::IpAddr>() {
        Ok(ip) => ServerName::from(ip),
        Err(_) => {
            ServerName::try_from(bare_host.clone()).map_err(|_| Error::HttpRequestUriInvalid)?
        }
    };
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(Error::Tls)?;
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(hyper_util::rt::TokioIo::new(tls)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // Only the path goes on the wire, as for any non-proxy request.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    if !request.headers().contains_key(http::header::HOST)
        && let Some(authority) = uri.authority()
        && let Ok(v) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, v);
    }

    let conn = tokio::spawn(conn);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io = async move {
        match conn.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Ok(()),
        }
    };
    Ok((response, Box::new(io)))
}
