//! HTTP probes for `http_latency_seconds`: how long a GET takes to get its
//! response head, the "response time" of the runbook's table.

use crate::outbound::{self, Endpoint};
use http_body_util::Empty;
use std::time::{Duration, Instant};

/// Seconds until the response head of a GET to `url`, or why not.
pub async fn latency(url: &str, limit: Duration) -> Result<f64, String> {
    let began = Instant::now();
    match tokio::time::timeout(limit, get(url, limit)).await {
        Ok(Ok(())) => Ok(began.elapsed().as_secs_f64()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

async fn get(url: &str, limit: Duration) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let endpoint = Endpoint::of(&uri).map_err(|e| e.to_string())?;
    let mut conn = outbound::connect(&endpoint, &[], limit)
        .await
        .map_err(|e| e.to_string())?;
    let request = http::Request::get(uri)
        .header(http::header::USER_AGENT, "opsd-probe")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = conn.send(request).await;
    conn.into_driver().abort();
    answer.map(|_| ()).map_err(|e| e.to_string())
}
