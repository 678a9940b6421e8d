//! Sends a plugin's wasi:http request through opsd's one client
//! ([`crate::outbound`]), trusting the job's `ca` grant as well as the
//! public web PKI, so a plugin can talk to a private ACME server or an
//! internal API without turning verification off.
//!
//! Timeouts and error codes follow wasmtime-wasi-http's
//! `default_send_request`.

use crate::outbound::{self, Endpoint, SendError};
use http_body_util::BodyExt;
use rustls::pki_types::CertificateDer;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The response and the connection's I/O future, as wasi:http hooks
/// return them.
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `request` (http or https) trusting `extra_roots` besides the
/// public roots.
pub async fn send(
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    extra_roots: &[CertificateDer<'static>],
) -> Result<Sent, Error> {
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(Duration::from_secs(600));
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));
    let endpoint = Endpoint::of(request.uri()).map_err(code)?;
    let mut conn = outbound::connect(&endpoint, extra_roots, connect_timeout)
        .await
        .map_err(code)?;
    let response = tokio::time::timeout(first_byte_timeout, conn.send(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(code)?;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let driver = conn.into_driver();
    let io = async move {
        match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Ok(()),
        }
    };
    Ok((response, Box::new(io)))
}

/// The wasi:http error code for why the client got no answer.
fn code(e: SendError) -> Error {
    match e {
        SendError::BadUrl(_) => Error::HttpRequestUriInvalid,
        SendError::Connect { source, .. } => Error::Connect(source),
        SendError::ConnectTimeout { .. } => Error::ConnectionTimeout,
        SendError::Tls { source, .. } => Error::Tls(source),
        SendError::TlsSetup(_) => Error::ConfigurationError,
        SendError::Http(e) => Error::from(e),
    }
}
