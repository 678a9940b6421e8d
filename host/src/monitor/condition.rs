//! Threshold conditions (`when = { metric = "disk_used_percent", mount =
//! "/var", above = 90, for = "5m" }`) and the episode logic that turns a
//! stream of samples into "run the job now", once per episode.

use super::Sample;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;

/// A job's `when` as written: one table or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawWhen {
    One(RawCondition),
    Many(Vec<RawCondition>),
}

impl RawWhen {
    pub(crate) fn into_vec(self) -> Vec<RawCondition> {
        match self {
            RawWhen::One(c) => vec![c],
            RawWhen::Many(v) => v,
        }
    }
}

/// One condition as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCondition {
    metric: String,
    mount: Option<String>,
    url: Option<String>,
    above: Option<f64>,
    below: Option<f64>,
    #[serde(rename = "for")]
    for_: Option<String>,
    cooldown: Option<String>,
}

impl RawCondition {
    /// Whether it sets `cooldown` (which alerts do not take).
    pub(crate) fn has_cooldown(&self) -> bool {
        self.cooldown.is_some()
    }
}

/// What a condition measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// All CPUs, percent busy since the previous sample.
    CpuPercent,
    /// One-minute load average.
    Load1,
    MemoryUsedPercent,
    SwapUsedPercent,
    /// The filesystem holding this path, as `df` counts it.
    DiskUsedPercent(String),
    /// Receive and transmit errors of all interfaces in the last hour of
    /// samples (so far, in the first hour).
    NetworkErrorsPerHour,
    /// Seconds an HTTP GET of this URL takes to answer; a probe that fails
    /// or times out counts as infinitely slow.
    HttpLatencySeconds(String),
    /// The status code a GET of this URL answers with (redirects not
    /// followed); a probe that gets no answer counts as infinitely high,
    /// so `above = 499` holds for a server that is down as well as one
    /// that answers 5xx.
    HttpStatus(String),
}

/// The metric names a `when` may use.
pub const METRICS: &[&str] = &[
    "cpu_percent",
    "load1",
    "memory_used_percent",
    "swap_used_percent",
    "disk_used_percent",
    "network_errors_per_hour",
    "http_latency_seconds",
    "http_status",
];

impl Metric {
    /// The figure in `sample`, with `history` (oldest first) for rates.
    pub fn value(&self, sample: &Sample, history: &[Sample]) -> Option<f64> {
        match self {
            Metric::CpuPercent => Some(sample.cpu_percent),
            Metric::Load1 => Some(sample.load[0]),
            Metric::MemoryUsedPercent => {
                percent(sample.memory_used_bytes, sample.memory_total_bytes)
            }
            Metric::SwapUsedPercent => {
                percent(sample.swap_used_bytes, sample.swap_total_bytes).or(Some(0.0))
            }
            Metric::DiskUsedPercent(path) => sample
                .watched
                .iter()
                .find(|w| w.path == *path)
                .and_then(|w| w.used_percent),
            Metric::NetworkErrorsPerHour => super::network_errors_per_hour(sample, history),
            Metric::HttpLatencySeconds(url) => sample
                .probes
                .iter()
                .find(|p| p.url == *url)
                .map(|p| p.seconds.unwrap_or(f64::INFINITY)),
            Metric::HttpStatus(url) => sample
                .probes
                .iter()
                .find(|p| p.url == *url)
                .map(|p| p.status.map_or(f64::INFINITY, f64::from)),
        }
    }

    /// Whether it is a percentage (0 to 100).
    pub fn is_percent(&self) -> bool {
        matches!(
            self,
            Metric::CpuPercent
                | Metric::MemoryUsedPercent
                | Metric::SwapUsedPercent
                | Metric::DiskUsedPercent(_)
        )
    }

    /// Name and argument, as config and records write it.
    pub fn label(&self) -> String {
        match self {
            Metric::CpuPercent => "cpu_percent".into(),
            Metric::Load1 => "load1".into(),
            Metric::MemoryUsedPercent => "memory_used_percent".into(),
            Metric::SwapUsedPercent => "swap_used_percent".into(),
            Metric::DiskUsedPercent(p) => format!("disk_used_percent({p})"),
            Metric::NetworkErrorsPerHour => "network_errors_per_hour".into(),
            Metric::HttpLatencySeconds(u) => format!("http_latency_seconds({u})"),
            Metric::HttpStatus(u) => format!("http_status({u})"),
        }
    }

    /// The URL an HTTP metric probes.
    pub fn url(&self) -> Option<&str> {
        match self {
            Metric::HttpLatencySeconds(u) | Metric::HttpStatus(u) => Some(u),
            _ => None,
        }
    }
}

fn percent(used: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| used as f64 * 100.0 / total as f64)
}

/// Which side of the threshold fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Above(f64),
    Below(f64),
}

/// A checked condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub metric: Metric,
    pub bound: Bound,
    /// How long it must hold, sample after sample, before the job runs.
    pub hold: Duration,
    /// Least time between two runs it starts.
    pub cooldown: Duration,
}

/// Cooldown unless a condition says: long enough that a flapping
/// threshold does not run a job every few minutes.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(15 * 60);

impl Condition {
    /// Checks a condition as written; the error says what to write.
    pub(crate) fn from_raw(raw: &RawCondition) -> Result<Condition, String> {
        let need = |what: &Option<String>, key: &str| {
            what.clone().ok_or_else(|| {
                format!(
                    "when: metric `{}` needs `{key}` (e.g. {key} = \"{}\")",
                    raw.metric,
                    if key == "mount" {
                        "/var"
                    } else {
                        "http://127.0.0.1:8080/health"
                    }
                )
            })
        };
        let metric = match raw.metric.as_str() {
            "cpu_percent" => Metric::CpuPercent,
            "load1" => Metric::Load1,
            "memory_used_percent" => Metric::MemoryUsedPercent,
            "swap_used_percent" => Metric::SwapUsedPercent,
            "disk_used_percent" => {
                let mount = need(&raw.mount, "mount")?;
                if !mount.starts_with('/') {
                    return Err(format!("when: mount `{mount}` must be an absolute path"));
                }
                Metric::DiskUsedPercent(mount)
            }
            "network_errors_per_hour" => Metric::NetworkErrorsPerHour,
            "http_latency_seconds" | "http_status" => {
                let url = need(&raw.url, "url")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "when: url `{url}` must start with http:// or https://"
                    ));
                }
                let parsed = url.parse::<http::Uri>().ok().filter(|u| u.host().is_some());
                if parsed.is_none() || crate::outbound::has_user_part(&url) {
                    return Err(format!(
                        "when: url `{url}` must be scheme://host[:port]/path, without a user or password (the probe sends none)"
                    ));
                }
                if raw.metric == "http_status" {
                    Metric::HttpStatus(url)
                } else {
                    Metric::HttpLatencySeconds(url)
                }
            }
            other => {
                return Err(format!(
                    "when: unknown metric `{other}`; use one of {}",
                    METRICS.join(", ")
                ));
            }
        };
        if raw.mount.is_some() && !matches!(metric, Metric::DiskUsedPercent(_)) {
            return Err(format!(
                "when: `mount` applies to disk_used_percent, not {}",
                raw.metric
            ));
        }
        if raw.url.is_some() && metric.url().is_none() {
            return Err(format!(
                "when: `url` applies to http_latency_seconds and http_status, not {}",
                raw.metric
            ));
        }
        let bound = match (raw.above, raw.below) {
            (Some(a), None) if a.is_finite() => Bound::Above(a),
            (None, Some(b)) if b.is_finite() => Bound::Below(b),
            (Some(_), Some(_)) => {
                return Err("when: give `above` or `below`, not both".into());
            }
            _ => {
                return Err(format!(
                    "when: metric `{}` needs a threshold: `above = N` or `below = N`",
                    raw.metric
                ));
            }
        };
        let (Bound::Above(t) | Bound::Below(t)) = bound;
        if metric.is_percent() && !(0.0..=100.0).contains(&t) {
            return Err(format!(
                "when: {} is a percentage; a threshold of {t} can never be met, write one from 0 to 100",
                raw.metric
            ));
        }
        if t < 0.0 {
            return Err(format!(
                "when: {} is never negative; a threshold of {t} is always or never met",
                raw.metric
            ));
        }
        let duration = |v: &Option<String>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(t) => crate::diag::parse_duration(t).map_err(|e| format!("when: {key}: {e}")),
        };
        Ok(Condition {
            metric,
            bound,
            hold: duration(&raw.for_, "for", Duration::ZERO)?,
            cooldown: duration(&raw.cooldown, "cooldown", DEFAULT_COOLDOWN)?,
        })
    }

    /// Like [`Condition::describe`], for a message that leaves the
    /// machine (a webhook): a probed URL without its query or fragment,
    /// where health-check tokens live.
    pub fn describe_shown(&self) -> String {
        let text = self.describe();
        match self.metric.url() {
            Some(url) => {
                let cut = url.find(['?', '#']).map_or(url, |i| &url[..i]);
                text.replacen(url, cut, 1)
            }
            None => text,
        }
    }

    /// Whether `value` is past the threshold.
    pub fn holds(&self, value: f64) -> bool {
        match self.bound {
            Bound::Above(t) => value > t,
            Bound::Below(t) => value < t,
        }
    }

    /// `disk_used_percent(/var) > 90 for 5m`, as `schedule list` and run
    /// records show it.
    pub fn describe(&self) -> String {
        let (op, t) = match self.bound {
            Bound::Above(t) => (">", t),
            Bound::Below(t) => ("<", t),
        };
        let mut s = format!("{} {op} {t}", self.metric.label());
        if !self.hold.is_zero() {
            s.push_str(&format!(" for {}", humantime::format_duration(self.hold)));
        }
        s
    }
}

/// Where one condition of one job stands in its current episode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Episode {
    /// When the condition started holding, sample after sample.
    pub since: Option<DateTime<Utc>>,
    /// Whether this episode already ran the job.
    pub fired: bool,
    /// When it last ran the job, for the cooldown.
    pub last_fired: Option<DateTime<Utc>>,
    /// The latest value seen, for `opsd status`.
    pub value: Option<f64>,
    /// Its run did not start (the job was still running under `overlap =
    /// "forbid"`): it fires again once the job is idle, if it still holds.
    pub waiting: bool,
}

impl Episode {
    /// Takes in one sample's value. Returns true when the job should run
    /// now: the condition has held for its duration, this episode has not
    /// run the job yet and the cooldown is over. An episode ends when the
    /// condition stops holding; a sample without the figure (a mount gone,
    /// no history yet for a rate) ends it too.
    ///
    /// `busy`: the job is running and may not start another run; an
    /// episode waiting for it to end does not fire meanwhile.
    pub fn observe(
        &mut self,
        cond: &Condition,
        at: DateTime<Utc>,
        value: Option<f64>,
        busy: bool,
    ) -> bool {
        self.value = value;
        if !value.is_some_and(|v| cond.holds(v)) {
            self.since = None;
            self.fired = false;
            self.waiting = false;
            return false;
        }
        // A clock stepped back restarts the count rather than stretching it.
        let since = match self.since {
            Some(s) if s <= at => s,
            _ => at,
        };
        self.since = Some(since);
        let held = (at - since).to_std().unwrap_or_default();
        let cooled = self
            .last_fired
            .is_none_or(|l| l > at || (at - l).to_std().unwrap_or_default() >= cond.cooldown);
        if self.fired || held < cond.hold || !cooled || (busy && self.waiting) {
            return false;
        }
        self.waiting = false;
        self.fired = true;
        self.last_fired = Some(at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(text: &str) -> Result<Condition, String> {
        let raw: RawCondition = toml::from_str(text).map_err(|e| e.to_string())?;
        Condition::from_raw(&raw)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    #[test]
    fn conditions_parse_and_describe_themselves() {
        let c = cond("metric = \"disk_used_percent\"\nmount = \"/var\"\nabove = 90\nfor = \"5m\"")
            .unwrap();
        assert_eq!(c.describe(), "disk_used_percent(/var) > 90 for 5m");
        assert_eq!(c.cooldown, DEFAULT_COOLDOWN);
        let c = cond("metric = \"memory_used_percent\"\nbelow = 10.5\ncooldown = \"1h\"").unwrap();
        assert_eq!(c.describe(), "memory_used_percent < 10.5");
        for (text, says) in [
            (
                "metric = \"disk\"\nabove = 1",
                "unknown metric `disk`; use one of cpu_percent",
            ),
            ("metric = \"disk_used_percent\"\nabove = 1", "needs `mount`"),
            ("metric = \"cpu_percent\"", "needs a threshold"),
            ("metric = \"cpu_percent\"\nabove = 1\nbelow = 2", "not both"),
            (
                "metric = \"memory_used_percent\"\nabove = 185",
                "from 0 to 100",
            ),
            ("metric = \"load1\"\nbelow = -1", "never negative"),
            (
                "metric = \"cpu_percent\"\nabove = 1\nmount = \"/\"",
                "`mount` applies to disk_used_percent",
            ),
            (
                "metric = \"http_latency_seconds\"\nurl = \"ftp://x\"\nabove = 2",
                "must start with http://",
            ),
            (
                "metric = \"cpu_percent\"\nabove = 80\nfor = \"soon\"",
                "when: for:",
            ),
            ("metric = \"http_status\"\nabove = 499", "needs `url`"),
            (
                "metric = \"load1\"\nurl = \"http://h/\"\nabove = 1",
                "`url` applies to http_latency_seconds and http_status",
            ),
        ] {
            let e = cond(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_condition_fires_once_it_has_held_for_its_duration_and_once_per_episode() {
        let c =
            cond("metric = \"cpu_percent\"\nabove = 80\nfor = \"5m\"\ncooldown = \"0s\"").unwrap();
        let mut e = Episode::default();
        // Busy for four minutes, a dip, then busy again: the clock restarts.
        for s in (0..=240).step_by(60) {
            assert!(!e.observe(&c, at(s), Some(95.0), false), "{s}");
        }
        assert!(!e.observe(&c, at(300), Some(50.0), false));
        for s in (360..660).step_by(60) {
            assert!(!e.observe(&c, at(s), Some(95.0), false), "{s}");
        }
        // Five minutes after 360: fires, then not again while it holds.
        assert!(e.observe(&c, at(660), Some(95.0), false));
        for s in (720..3600).step_by(60) {
            assert!(!e.observe(&c, at(s), Some(99.0), false), "{s}");
        }
        // A new episode fires again once it has held long enough.
        assert!(!e.observe(&c, at(3660), Some(10.0), false));
        assert!(!e.observe(&c, at(3720), Some(90.0), false));
        assert!(e.observe(&c, at(3720 + 300), Some(90.0), false));
    }

    #[test]
    fn the_cooldown_holds_back_a_flapping_condition() {
        let c = cond("metric = \"memory_used_percent\"\nabove = 85\ncooldown = \"10m\"").unwrap();
        let mut e = Episode::default();
        assert!(e.observe(&c, at(0), Some(90.0), false));
        assert!(!e.observe(&c, at(60), Some(80.0), false));
        // A new episode inside the cooldown waits for it to pass...
        assert!(!e.observe(&c, at(120), Some(90.0), false));
        assert!(!e.observe(&c, at(540), Some(90.0), false));
        // ...and fires when it has, if the condition still holds.
        assert!(e.observe(&c, at(600), Some(90.0), false));
        // A missing figure ends an episode without firing.
        assert!(!e.observe(&c, at(660), None, false));
        assert_eq!(e.since, None);
    }
}
