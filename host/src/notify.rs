//! Webhook notifications on failures, recoveries and missed slots.
//!
//! Events go into a bounded queue and a background task posts them, with
//! retries; a slow or dead endpoint delays nothing else and a full queue
//! drops events (and says so in the log) rather than grow.

use crate::record::RunRecord;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A run ended failed or timed out, with no retry left.
    Failure,
    /// A run succeeded after the job's previous run had failed.
    Recovered,
    /// Slots were not run (overlap skip, catch-up policy, deadline).
    Missed,
    /// The job was set aside as broken and does not run (`reason` says
    /// why).
    Broken,
}

/// One `[[notify]]` target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub url: hyper::Uri,
    pub on: Vec<Event>,
    /// Only these jobs; all when empty.
    pub jobs: Vec<String>,
}

/// What is posted, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub event: Event,
    pub job: String,
    /// The run that caused it; absent for missed slots that never got a
    /// record (catch-up).
    pub run: Option<RunRecord>,
    /// How many slots were missed, for `missed`.
    pub missed: Option<u64>,
    /// Why, for `broken`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub host: String,
}

/// The sending side, cheap to clone; with no targets it does nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notification>>,
    targets: Arc<Vec<Target>>,
}

/// Attempts per delivery, and the waits between them.
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(25),
];

impl Notifier {
    /// Starts the delivery task for `targets` (none when empty).
    pub fn start(targets: Vec<Target>) -> Notifier {
        if targets.is_empty() {
            return Notifier::default();
        }
        let targets = Arc::new(targets);
        let (tx, mut rx) = mpsc::channel::<Notification>(1000);
        let t = targets.clone();
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                for target in t.iter().filter(|t| t.wants(&n)) {
                    let target = target.clone();
                    let n = n.clone();
                    // Each delivery retries on its own, so one dead
                    // endpoint does not hold up another.
                    tokio::spawn(async move { deliver(&target, &n).await });
                }
            }
        });
        Notifier {
            tx: Some(tx),
            targets,
        }
    }

    /// Queues a notification; never waits.
    pub fn send(&self, event: Event, job: &str, run: Option<RunRecord>, missed: Option<u64>) {
        self.queue(Notification {
            event,
            job: job.to_owned(),
            run,
            missed,
            reason: None,
            host: sysinfo::System::host_name().unwrap_or_default(),
        });
    }

    /// Queues a `broken` notification: the job does not run, and why.
    pub fn send_broken(&self, job: &str, reason: String) {
        self.queue(Notification {
            event: Event::Broken,
            job: job.to_owned(),
            run: None,
            missed: None,
            reason: Some(reason),
            host: sysinfo::System::host_name().unwrap_or_default(),
        });
    }

    fn queue(&self, n: Notification) {
        let Some(tx) = &self.tx else { return };
        let (job, event) = (n.job.clone(), n.event);
        if !self.targets.iter().any(|t| t.wants(&n)) {
            return;
        }
        if tx.try_send(n).is_err() {
            tracing::warn!(job, ?event, "notification queue full; notification dropped");
        }
    }
}

impl Target {
    fn wants(&self, n: &Notification) -> bool {
        self.on.contains(&n.event) && (self.jobs.is_empty() || self.jobs.contains(&n.job))
    }
}

async fn deliver(target: &Target, n: &Notification) {
    let body = match serde_json::to_vec(n) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode notification");
            return;
        }
    };
    for (attempt, wait) in std::iter::once(Duration::ZERO).chain(BACKOFF).enumerate() {
        tokio::time::sleep(wait).await;
        match tokio::time::timeout(Duration::from_secs(10), post(&target.url, &body)).await {
            Ok(Ok(())) => {
                tracing::debug!(url = %crate::outbound::url_without_secrets(&target.url.to_string()), event = ?n.event, job = %n.job, "notification delivered");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(url = %crate::outbound::url_without_secrets(&target.url.to_string()), attempt = attempt + 1, error = %format!("{e:#}"), "notification failed")
            }
            Err(_) => {
                tracing::warn!(url = %crate::outbound::url_without_secrets(&target.url.to_string()), attempt = attempt + 1, "notification timed out after 10s")
            }
        }
    }
    tracing::error!(url = %crate::outbound::url_without_secrets(&target.url.to_string()), event = ?n.event, job = %n.job, "notification given up after {} attempts", BACKOFF.len() + 1);
}

/// POSTs JSON to an http or https URL; a 2xx answer is success.
async fn post(url: &hyper::Uri, body: &[u8]) -> anyhow::Result<()> {
    use crate::outbound::{self, Endpoint};
    let endpoint = Endpoint::of(url)?;
    let mut conn = outbound::connect(&endpoint, &[], Duration::from_secs(10)).await?;
    let req = hyper::Request::post(url.clone())
        .header("content-type", "application/json")
        .header("user-agent", concat!("opsd/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body,
        )))?;
    let res = conn.send(req).await?;
    let status = res.status();
    let _ = res.into_body().collect().await;
    anyhow::ensure!(status.is_success(), "answered {status}");
    Ok(())
}
