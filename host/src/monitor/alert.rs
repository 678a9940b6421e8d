//! Alerts without a job: `[[alert]]` tables, each a `when` condition, a
//! severity (P0 to P3) and a message for people. An alert becomes active
//! when its condition has held for its `for`, is sent to the notify
//! targets then, again every `repeat` while it stays active (a reminder),
//! and once more when it clears. Samples it holds in between reminders are
//! counted as suppressed repeats, for `opsd status`.

use super::condition::{Condition, RawCondition, RawWhen};
use crate::record::{AlertMemory, Severity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An `[[alert]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    pub(crate) name: Option<toml::Spanned<String>>,
    pub(crate) severity: Option<toml::Spanned<String>>,
    pub(crate) message: Option<toml::Spanned<String>>,
    pub(crate) when: Option<toml::Spanned<RawWhen>>,
    pub(crate) repeat: Option<toml::Spanned<String>>,
    /// PEM files of CAs its HTTPS probe trusts besides the public ones.
    #[serde(default)]
    pub(crate) ca: Vec<toml::Spanned<String>>,
}

/// How long an active alert waits before it is sent again, unless
/// `repeat` says: a person on call is reminded, not flooded.
pub const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);

/// The least `repeat`: anything shorter floods a channel (and the
/// targets' `max_per_minute` holds back the rest).
pub const MIN_REPEAT: Duration = Duration::from_secs(10);

/// A checked alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub name: String,
    pub severity: Severity,
    pub message: String,
    pub condition: Condition,
    /// Time between reminders while it stays active.
    pub repeat: Duration,
    /// Its `ca` files' certificates, read when the config loads.
    pub ca_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// The longest message: a notification is a line, not a document.
const MAX_MESSAGE: usize = 1000;

impl Alert {
    /// Checks an alert as written. Each error says which key and what to
    /// write, for the caller to place at the alert's line.
    pub(crate) fn from_raw(raw: &RawAlert) -> Result<Alert, String> {
        let name = raw
            .name
            .as_ref()
            .map(|n| n.get_ref().trim().to_owned())
            .filter(|n| !n.is_empty())
            .ok_or("[[alert]] needs a `name` (e.g. name = \"api-down\")")?;
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "[[alert]] name `{name}`: use letters, digits, `-`, `_` and `.` only"
            ));
        }
        let at = |what: &str| format!("[[alert]] `{name}`: {what}");
        let severity = match &raw.severity {
            None => return Err(at("needs a `severity`: P0, P1, P2 or P3")),
            Some(s) => Severity::parse(s.get_ref()).map_err(|e| at(&e))?,
        };
        let message = raw
            .message
            .as_ref()
            .map(|m| m.get_ref().trim().to_owned())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                at("needs a `message` for the people it is sent to (e.g. message = \"the API answers 5xx\")")
            })?;
        if message.chars().count() > MAX_MESSAGE {
            return Err(at(&format!(
                "the message is longer than {MAX_MESSAGE} characters"
            )));
        }
        if message.chars().any(|c| c.is_control() && c != '\n') {
            return Err(at("the message holds a control character"));
        }
        let conditions: Vec<RawCondition> = match &raw.when {
            None => {
                return Err(at(
                    "needs a `when` condition (e.g. when = { metric = \"memory_used_percent\", above = 85, for = \"5m\" })",
                ));
            }
            Some(w) => w.get_ref().clone().into_vec(),
        };
        let [one] = conditions.as_slice() else {
            return Err(at(
                "`when` must be one condition; write one [[alert]] for each",
            ));
        };
        if one.has_cooldown() {
            return Err(at(
                "`cooldown` applies to jobs' conditions; an alert is reminded every `repeat`",
            ));
        }
        let condition = Condition::from_raw(one).map_err(|e| at(&e))?;
        let repeat = match &raw.repeat {
            None => DEFAULT_REPEAT,
            Some(r) => {
                let d = crate::diag::parse_duration(r.get_ref())
                    .map_err(|e| at(&format!("repeat: {e}")))?;
                if d < MIN_REPEAT {
                    return Err(at(&format!(
                        "repeat must be at least {}",
                        humantime::format_duration(MIN_REPEAT)
                    )));
                }
                d
            }
        };
        if !raw.ca.is_empty()
            && !condition
                .metric
                .url()
                .is_some_and(|u| u.starts_with("https://"))
        {
            return Err(at("`ca` applies to an https:// URL's probe"));
        }
        Ok(Alert {
            name,
            severity,
            message,
            condition,
            repeat,
            ca_roots: Vec::new(),
        })
    }
}

/// What changed with an alert, to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// It became active.
    Firing,
    /// Still active after `repeat`: sent again.
    Reminder,
    /// It stopped holding.
    Resolved,
}

/// Where one alert stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertState {
    /// Since when the condition has held, sample after sample.
    pub since: Option<DateTime<Utc>>,
    /// Since when it has been active (held for its `for`, and sent).
    pub active_since: Option<DateTime<Utc>>,
    /// When it was last sent (firing or reminder).
    pub last_sent: Option<DateTime<Utc>>,
    /// Samples it held in since `last_sent` without being sent.
    pub suppressed: u64,
    /// The latest figure.
    pub value: Option<f64>,
}

impl AlertState {
    /// Takes in one sample's figure and says what to send, if anything.
    /// A sample without the figure (a mount gone) changes nothing: an
    /// alert is not resolved by not knowing.
    pub fn observe(
        &mut self,
        alert: &Alert,
        at: DateTime<Utc>,
        value: Option<f64>,
    ) -> Option<Change> {
        self.value = value;
        let v = value?;
        if !alert.condition.holds(v) {
            self.since = None;
            if self.active_since.take().is_some() {
                self.suppressed = 0;
                return Some(Change::Resolved);
            }
            return None;
        }
        let since = match self.since {
            Some(s) if s <= at => s,
            _ => at,
        };
        self.since = Some(since);
        let elapsed = |from: DateTime<Utc>| (at - from).to_std().unwrap_or_default();
        if self.active_since.is_none() {
            if elapsed(since) < alert.condition.hold {
                return None;
            }
            self.active_since = Some(at);
            self.last_sent = Some(at);
            self.suppressed = 0;
            return Some(Change::Firing);
        }
        // A clock stepped back counts as time passed, not as a new alert.
        if self
            .last_sent
            .is_none_or(|l| l > at || elapsed(l) >= alert.repeat)
        {
            self.last_sent = Some(at);
            self.suppressed = 0;
            return Some(Change::Reminder);
        }
        self.suppressed += 1;
        None
    }

    /// What to keep across a restart.
    pub fn memory(&self, alert: &Alert) -> AlertMemory {
        AlertMemory {
            condition: alert.condition.describe(),
            active_since: self.active_since,
            last_sent: self.last_sent,
            suppressed: self.suppressed,
        }
    }

    /// The state a restart comes back to: active or not, and when it was
    /// last sent; a condition written differently starts afresh. How long
    /// it has held is counted again (nobody watched meanwhile).
    pub fn restored(alert: &Alert, memory: &AlertMemory) -> Option<AlertState> {
        (memory.condition == alert.condition.describe()).then(|| AlertState {
            active_since: memory.active_since,
            last_sent: memory.last_sent,
            suppressed: memory.suppressed,
            ..AlertState::default()
        })
    }
}

/// One alert change to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub alert: String,
    pub severity: Severity,
    pub message: String,
    /// As `opsd status` shows it: `http_status(URL) > 499 for 1m`.
    pub condition: String,
    pub change: Change,
    pub value: Option<f64>,
    /// When it became active (for a resolved one, when it had).
    pub active_since: Option<DateTime<Utc>>,
    /// The sample that changed it.
    pub at: DateTime<Utc>,
    /// For a reminder: samples it held in since the last one was sent.
    pub suppressed: u64,
}

/// Where one alert stands, for `opsd status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertStatus {
    pub alert: String,
    pub severity: Severity,
    pub message: String,
    pub condition: String,
    pub value: Option<f64>,
    pub active: bool,
    pub active_since: Option<DateTime<Utc>>,
    pub last_sent: Option<DateTime<Utc>>,
    /// When the next reminder goes out if it stays active.
    pub next_reminder: Option<DateTime<Utc>>,
    /// Samples it held in since the last notification, not sent again
    /// (the `repeat` interval holds them back).
    pub suppressed: u64,
}

impl AlertStatus {
    /// `state` of `alert`, as shown.
    pub fn of(alert: &Alert, state: &AlertState) -> AlertStatus {
        AlertStatus {
            alert: alert.name.clone(),
            severity: alert.severity,
            message: alert.message.clone(),
            condition: alert.condition.describe(),
            value: state.value,
            active: state.active_since.is_some(),
            active_since: state.active_since,
            last_sent: state.last_sent.filter(|_| state.active_since.is_some()),
            next_reminder: state
                .active_since
                .and(state.last_sent)
                .and_then(|l| chrono::Duration::from_std(alert.repeat).ok().map(|r| l + r)),
            suppressed: if state.active_since.is_some() {
                state.suppressed
            } else {
                0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(text: &str) -> Result<Alert, String> {
        let raw: RawAlert = toml::from_str(text).map_err(|e| e.to_string())?;
        Alert::from_raw(&raw)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    const MEMORY: &str = "name = \"mem\"\nseverity = \"P1\"\nmessage = \"memory is short\"\nrepeat = \"10m\"\nwhen = { metric = \"memory_used_percent\", above = 85, for = \"2m\" }";

    #[test]
    fn alerts_are_checked_with_clear_errors() {
        let a = alert(MEMORY).unwrap();
        assert_eq!(a.severity, Severity::P1);
        assert_eq!(a.condition.describe(), "memory_used_percent > 85 for 2m");
        for (text, says) in [
            ("severity = \"P1\"\nmessage = \"m\"", "needs a `name`"),
            (
                "name = \"a\"\nseverity = \"P5\"\nmessage = \"m\"",
                "[[alert]] `a`: unknown severity `P5`; use P0, P1, P2 or P3",
            ),
            ("name = \"a\"\nmessage = \"m\"", "needs a `severity`"),
            (
                "name = \"a\"\nseverity = \"p2\"\nwhen = { metric = \"load1\", above = 4 }",
                "[[alert]] `a`: needs a `message`",
            ),
            (
                "name = \"a\"\nseverity = \"P2\"\nmessage = \" \"\nwhen = { metric = \"load1\", above = 4 }",
                "needs a `message`",
            ),
            (
                "name = \"a\"\nseverity = \"P2\"\nmessage = \"m\"",
                "needs a `when`",
            ),
            (
                "name = \"a\"\nseverity = \"P2\"\nmessage = \"m\"\nwhen = { metric = \"disk\", above = 4 }",
                "[[alert]] `a`: when: unknown metric `disk`",
            ),
            (
                "name = \"a\"\nseverity = \"P2\"\nmessage = \"m\"\nwhen = { metric = \"load1\", above = 4, cooldown = \"1h\" }",
                "`cooldown` applies to jobs",
            ),
            (
                "name = \"a\"\nseverity = \"P2\"\nmessage = \"m\"\nrepeat = \"5s\"\nwhen = { metric = \"load1\", above = 4 }",
                "repeat must be at least 10s",
            ),
            (
                "name = \"a b\"\nseverity = \"P2\"\nmessage = \"m\"\nwhen = { metric = \"load1\", above = 4 }",
                "letters, digits",
            ),
            (
                "name = \"a\"\nseverity = \"P2\"\nmessage = \"m\\u001b[2J\"\nwhen = { metric = \"load1\", above = 4 }",
                "control character",
            ),
        ] {
            let e = alert(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn an_alert_fires_once_reminds_every_repeat_and_resolves() {
        let a = alert(MEMORY).unwrap();
        let mut s = AlertState::default();
        assert_eq!(s.observe(&a, at(0), Some(90.0)), None);
        assert_eq!(s.observe(&a, at(60), Some(90.0)), None);
        assert_eq!(s.observe(&a, at(120), Some(90.0)), Some(Change::Firing));
        for t in (180..720).step_by(60) {
            assert_eq!(s.observe(&a, at(t), Some(95.0)), None, "{t}");
        }
        assert_eq!(s.suppressed, 9);
        // A figure missing changes nothing.
        assert_eq!(s.observe(&a, at(700), None), None);
        assert_eq!(s.observe(&a, at(720), Some(95.0)), Some(Change::Reminder));
        assert_eq!(s.suppressed, 0);
        assert_eq!(s.observe(&a, at(780), Some(50.0)), Some(Change::Resolved));
        assert_eq!(s.observe(&a, at(840), Some(50.0)), None);
        // A second outage is a new alert, sent at once when it has held.
        assert_eq!(s.observe(&a, at(900), Some(90.0)), None);
        assert_eq!(s.observe(&a, at(1020), Some(90.0)), Some(Change::Firing));
    }

    #[test]
    fn an_active_alert_survives_a_restart_without_being_sent_again() {
        let a = alert(MEMORY).unwrap();
        let mut s = AlertState::default();
        s.observe(&a, at(0), Some(90.0));
        assert_eq!(s.observe(&a, at(120), Some(90.0)), Some(Change::Firing));
        let memory = s.memory(&a);
        let mut back = AlertState::restored(&a, &memory).unwrap();
        assert_eq!(back.observe(&a, at(300), Some(90.0)), None, "not new");
        assert_eq!(
            back.observe(&a, at(360), Some(10.0)),
            Some(Change::Resolved)
        );
        // Written differently: afresh.
        let other = alert(&MEMORY.replace("above = 85", "above = 80")).unwrap();
        assert!(AlertState::restored(&other, &memory).is_none());
    }
}
