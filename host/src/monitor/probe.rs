//! HTTP probes for `http_latency_seconds` and `http_status`: how long a
//! GET takes to get its response head (the "response time" of the
//! runbook's table) and which status it answers with. Only the head is
//! read, so a huge or endless body costs nothing; redirects are not
//! followed (a 3xx is the answer).

use crate::outbound::{self, Endpoint};
use http_body_util::Empty;
use rustls::pki_types::CertificateDer;
use std::time::{Duration, Instant};

/// What one probe got back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// Seconds until the response head.
    pub seconds: f64,
    pub status: u16,
}

/// GETs `url` within `limit`, trusting the public roots and `roots` (the
/// `ca` grants of the jobs and alerts that name it), or says why not.
pub async fn probe(
    url: &str,
    limit: Duration,
    roots: &[CertificateDer<'static>],
) -> Result<Answer, String> {
    let began = Instant::now();
    match tokio::time::timeout(limit, get(url, limit, roots)).await {
        Ok(Ok(status)) => Ok(Answer {
            seconds: began.elapsed().as_secs_f64(),
            status,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

async fn get(url: &str, limit: Duration, roots: &[CertificateDer<'static>]) -> Result<u16, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let endpoint = Endpoint::of(&uri).map_err(|e| e.to_string())?;
    let mut conn = outbound::connect(&endpoint, roots, limit)
        .await
        .map_err(|e| e.to_string())?;
    let request = http::Request::get(uri)
        .header(http::header::USER_AGENT, "opsd-probe")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = conn.send(request).await;
    conn.into_driver().abort();
    answer
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}
