//! Webhook notifications on failures, recoveries, missed slots, broken
//! jobs and alerts.
//!
//! Events go into a bounded queue and a background task posts them, with
//! retries; a slow or dead endpoint delays nothing else and a full queue
//! drops events (and says so in the log) rather than grow. Each target
//! takes at most `max_per_minute` notifications: beyond that (alerts
//! flapping, a burst of failures) they are dropped, counted, and the next
//! one delivered says how many were. A target gets generic JSON, or a
//! Slack-compatible `{"text": ...}` whose text has every `&`, `<` and `>`
//! escaped, so no message or plugin summary can mention `@channel` or
//! smuggle in a link.

use crate::record::{RunRecord, Severity};
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
    /// An `[[alert]]` became active, or is still active after its
    /// `repeat` (a reminder).
    Alert,
    /// An active alert cleared.
    Resolved,
}

/// Every event, what a target gets unless `on` says.
pub const ALL_EVENTS: [Event; 6] = [
    Event::Failure,
    Event::Recovered,
    Event::Missed,
    Event::Broken,
    Event::Alert,
    Event::Resolved,
];

/// How a target wants its notifications written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The [`Notification`] as JSON.
    #[default]
    Json,
    /// `{"text": "..."}`, as Slack's (and Mattermost's, Rocket.Chat's)
    /// incoming webhooks take it.
    Slack,
}

/// Notifications a target takes a minute unless `max_per_minute` says.
pub const DEFAULT_MAX_PER_MINUTE: u32 = 30;

/// One `[[notify]]` target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub url: hyper::Uri,
    pub on: Vec<Event>,
    /// Only these jobs; all when empty. Alerts belong to no job.
    pub jobs: Vec<String>,
    /// Only alerts of these severities; all when empty.
    pub severities: Vec<Severity>,
    pub format: Format,
    /// Notifications a minute at most; the rest are dropped and counted.
    pub max_per_minute: u32,
}

/// An alert as a notification carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    pub name: String,
    pub severity: Severity,
    pub message: String,
    /// `memory_used_percent > 85 for 5m`.
    pub condition: String,
    /// The figure in the sample that changed it.
    pub value: Option<f64>,
    /// When it became active.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// True for a reminder of an alert already sent.
    pub reminder: bool,
    /// For a reminder: samples it held in since the previous one.
    pub suppressed: u64,
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
    /// The alert, for `alert` and `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertPayload>,
    /// Notifications this target did not get since the last one it got,
    /// held back by its `max_per_minute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
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
            let mut limits: Vec<Limiter> = t.iter().map(|_| Limiter::default()).collect();
            while let Some(n) = rx.recv().await {
                for (target, limit) in t.iter().zip(limits.iter_mut()) {
                    if !target.wants(&n) {
                        continue;
                    }
                    let Some(dropped) =
                        limit.admit(std::time::Instant::now(), target.max_per_minute)
                    else {
                        tracing::warn!(
                            url = %crate::outbound::url_without_secrets(&target.url.to_string()),
                            event = ?n.event, job = %n.job,
                            "notification dropped: the target's max_per_minute ({}) is reached", target.max_per_minute
                        );
                        continue;
                    };
                    let target = target.clone();
                    let mut n = n.clone();
                    n.dropped = (dropped > 0).then_some(dropped);
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
            alert: None,
            dropped: None,
            host: this_host(),
        });
    }

    /// Queues an alert's change: `alert` (firing or a reminder) or
    /// `resolved`.
    pub fn send_alert(&self, event: Event, alert: AlertPayload) {
        self.queue(Notification {
            event,
            job: String::new(),
            run: None,
            missed: None,
            reason: None,
            alert: Some(alert),
            dropped: None,
            host: this_host(),
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
            alert: None,
            dropped: None,
            host: this_host(),
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
        if !self.on.contains(&n.event) {
            return false;
        }
        match &n.alert {
            Some(a) => self.severities.is_empty() || self.severities.contains(&a.severity),
            None => self.jobs.is_empty() || self.jobs.contains(&n.job),
        }
    }
}

/// One target's sends in the last minute.
#[derive(Default)]
struct Limiter {
    sent: std::collections::VecDeque<std::time::Instant>,
    /// Dropped since the last one sent.
    dropped: u64,
}

impl Limiter {
    /// Whether one more may go at `now`: Some(how many were dropped
    /// before it), or None (dropped, and counted).
    fn admit(&mut self, now: std::time::Instant, per_minute: u32) -> Option<u64> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= per_minute as usize {
            self.dropped += 1;
            return None;
        }
        self.sent.push_back(now);
        Some(std::mem::take(&mut self.dropped))
    }
}

/// This machine's name for the `host` field. `system::hostname` says the
/// same, but `system` sits above `notify` in the layers, so the one-line
/// call is repeated here rather than imported upward.
fn this_host() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

/// Slack's escaping for text: `&`, `<` and `>` as entities, so nothing
/// reads as a mention (`<!channel>`) or a link; control characters but
/// the newline go.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push('\n'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The text of a Slack-compatible message for `n`, every part escaped.
pub fn slack_text(n: &Notification) -> String {
    let e = slack_escape;
    let host = if n.host.is_empty() {
        String::new()
    } else {
        format!(" on {}", e(&n.host))
    };
    let mut text = match (&n.alert, n.event) {
        (Some(a), Event::Resolved) => format!(
            ":white_check_mark: *[{}] {} resolved*{host}: {}\n{}{}",
            a.severity,
            e(&a.name),
            e(&a.message),
            e(&a.condition),
            a.value.map_or(String::new(), |v| format!(" (now {v:.1})")),
        ),
        (Some(a), _) => format!(
            ":rotating_light: *[{}] {}{}*{host}: {}\n{}{}{}",
            a.severity,
            e(&a.name),
            if a.reminder { " still active" } else { "" },
            e(&a.message),
            e(&a.condition),
            a.value.map_or(String::new(), |v| format!(": {v:.1}")),
            a.since.map_or(String::new(), |s| format!(
                " (since {})",
                s.format("%Y-%m-%d %H:%M UTC")
            )),
        ),
        (None, event) => {
            let what = match event {
                Event::Failure => "failed",
                Event::Recovered => "recovered",
                Event::Missed => "missed slots",
                Event::Broken => "is broken and does not run",
                Event::Alert | Event::Resolved => "alert",
            };
            let mut t = format!(
                "{} job `{}` {what}{host}",
                match event {
                    Event::Recovered => ":white_check_mark:",
                    _ => ":warning:",
                },
                e(&n.job)
            );
            if let Some(m) = n.missed {
                t.push_str(&format!(" ({m})"));
            }
            if let Some(r) = &n.run {
                t.push_str(&format!(": {}", e(&r.summary)));
            }
            if let Some(r) = &n.reason {
                t.push_str(&format!(": {}", e(r)));
            }
            t
        }
    };
    if let Some(d) = n.dropped {
        text.push_str(&format!(
            "\n({d} earlier notifications were dropped by this target's max_per_minute)"
        ));
    }
    text
}

/// The body posted to `target` for `n`.
pub fn body_for(target: &Target, n: &Notification) -> serde_json::Result<Vec<u8>> {
    match target.format {
        Format::Json => serde_json::to_vec(n),
        Format::Slack => serde_json::to_vec(&serde_json::json!({ "text": slack_text(n) })),
    }
}

async fn deliver(target: &Target, n: &Notification) {
    let body = match body_for(target, n) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(message: &str) -> Notification {
        Notification {
            event: Event::Alert,
            job: String::new(),
            run: None,
            missed: None,
            reason: None,
            alert: Some(AlertPayload {
                name: "api".into(),
                severity: Severity::P1,
                message: message.into(),
                condition: "http_status(http://h/) > 499".into(),
                value: Some(503.0),
                since: None,
                reminder: false,
                suppressed: 0,
            }),
            dropped: Some(2),
            host: "web1".into(),
        }
    }

    #[test]
    fn slack_text_escapes_mentions_links_and_json() {
        let n = alert("down <!channel> & <http://evil|click> \"quoted\"\u{1b}[2J\r\nX-Injected: 1");
        let target = Target {
            url: "http://h/".parse().unwrap(),
            on: ALL_EVENTS.to_vec(),
            jobs: Vec::new(),
            severities: Vec::new(),
            format: Format::Slack,
            max_per_minute: 30,
        };
        let body = body_for(&target, &n).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1, "only text: {v}");
        assert!(text.starts_with(":rotating_light: *[P1] api* on web1: down &lt;!channel&gt; &amp; &lt;http://evil|click&gt; \"quoted\"[2J\nX-Injected: 1"), "{text}");
        assert!(
            !text.contains('<') && !text.contains('\u{1b}') && !text.contains('\r'),
            "{text}"
        );
        assert!(
            text.contains("http_status(http://h/) &gt; 499: 503.0"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "(2 earlier notifications were dropped by this target's max_per_minute)"
            ),
            "{text}"
        );
    }

    #[test]
    fn targets_choose_alerts_by_severity_and_jobs_do_not_filter_them() {
        let mut t = Target {
            url: "http://h/".parse().unwrap(),
            on: vec![Event::Alert, Event::Failure],
            jobs: vec!["backup".into()],
            severities: vec![Severity::P0, Severity::P1],
            format: Format::Json,
            max_per_minute: 30,
        };
        assert!(t.wants(&alert("m")));
        t.severities = vec![Severity::P0];
        assert!(!t.wants(&alert("m")));
        t.on = vec![Event::Failure];
        t.severities.clear();
        assert!(!t.wants(&alert("m")), "not an event it takes");
    }

    #[test]
    fn the_limiter_drops_beyond_the_rate_and_counts() {
        let mut l = Limiter::default();
        let t0 = std::time::Instant::now();
        assert_eq!(l.admit(t0, 2), Some(0));
        assert_eq!(l.admit(t0, 2), Some(0));
        assert_eq!(l.admit(t0, 2), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(30), 2), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(61), 2), Some(2));
    }
}
