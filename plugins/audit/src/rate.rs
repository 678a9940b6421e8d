//! Error rates over a window: a log pattern with `rate` is judged by how
//! often it matched, as a share of the lines read (`above = "5%"`) or per
//! minute/hour (`above = 30, per = "minute"`), not by a count, as the
//! runbook's "error rate > 5 %" reads. Each run adds a sample (lines and
//! matches read since the run before, and when) to the audit's state, so a
//! `window` longer than the gap between runs sums the runs inside it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `rate = { ... }` on a pattern, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// `"5%"` (of the lines read) or a number of matches `per` unit.
    pub above: Above,
    /// What a percentage is of; only `"lines"`.
    #[serde(default)]
    pub of: Option<String>,
    /// `minute`, `hour` or `second`: a rate in time rather than in lines.
    #[serde(default)]
    pub per: Option<String>,
    /// `"1h"`: sum the runs that ended within it; default: since the last run.
    #[serde(default)]
    pub window: Option<String>,
    /// Fewer lines than this in the window judge no percentage (three
    /// lines, one an error, are no 33 % error rate). Default 20.
    #[serde(default)]
    pub min_lines: Option<u64>,
}

/// A threshold as written: `"5%"` or `30`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Above {
    Number(f64),
    Text(String),
}

/// What a rate counts against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Basis {
    /// Percent of the lines read.
    Lines,
    /// Matches per this many seconds (60: per minute).
    Time { seconds: u64, unit: &'static str },
}

/// A checked rate rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub above: f64,
    pub basis: Basis,
    /// Seconds; `None`: since the last run.
    pub window: Option<u64>,
    pub min_lines: u64,
}

impl RateSpec {
    /// Checks the rule; the message says what to write instead.
    pub fn check(&self) -> Result<Rate, String> {
        let min_lines = self.min_lines.unwrap_or(20);
        let window = match &self.window {
            None => None,
            Some(w) if w == "since-last-run" => None,
            Some(w) => {
                let d = humantime::parse_duration(w).map_err(|e| {
                    format!("rate.window `{w}`: {e} (write a duration such as \"1h\", or leave it out for since the last run)")
                })?;
                if d.as_secs() == 0 {
                    return Err(format!("rate.window `{w}` is shorter than a second"));
                }
                Some(d.as_secs())
            }
        };
        if let Some(of) = &self.of
            && of != "lines"
        {
            return Err(format!(
                "rate.of `{of}`: only \"lines\" (a percentage of the lines read)"
            ));
        }
        let (above, basis) = match (&self.above, &self.per) {
            (Above::Text(t), None) => {
                let n = t
                    .trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .filter(|n| n.is_finite() && (0.0..100.0).contains(n))
                    .ok_or_else(|| {
                        format!("rate.above `{t}`: write a percentage below 100, such as \"5%\", or a number with per = \"minute\"")
                    })?;
                (n, Basis::Lines)
            }
            (Above::Text(t), Some(_)) => {
                return Err(format!(
                    "rate.above `{t}` with per: write a number of matches, such as above = 30, per = \"minute\""
                ));
            }
            (Above::Number(n), None) => {
                return Err(format!(
                    "rate.above {n} needs per = \"minute\" (matches per minute) or a percentage such as \"5%\""
                ));
            }
            (Above::Number(n), Some(per)) => {
                if self.of.is_some() {
                    return Err("rate: `of` and `per` exclude each other".into());
                }
                if !n.is_finite() || *n < 0.0 {
                    return Err(format!("rate.above {n}: a number of matches, 0 or more"));
                }
                let (seconds, unit) = match per.as_str() {
                    "second" => (1, "second"),
                    "minute" => (60, "minute"),
                    "hour" => (3600, "hour"),
                    other => {
                        return Err(format!(
                            "rate.per `{other}`: \"second\", \"minute\" or \"hour\""
                        ));
                    }
                };
                (*n, Basis::Time { seconds, unit })
            }
        };
        Ok(Rate {
            above,
            basis,
            window,
            min_lines,
        })
    }
}

/// What one run read from one log: kept in the state for windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When the run before read the log (unix milliseconds); `None` on
    /// the first run, whose lines may span any time.
    pub from: Option<i64>,
    /// When this run read it (unix milliseconds).
    pub to: i64,
    pub lines: u64,
    /// Matches per pattern name.
    pub matches: BTreeMap<String, u64>,
}

/// The figures a rule was judged on.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub matches: u64,
    pub lines: u64,
    /// Milliseconds the figures cover, when known.
    pub span: Option<i64>,
    /// The rate (percent, or matches per unit); `None` when it cannot be
    /// told yet (too few lines, no span).
    pub value: Option<f64>,
    /// Why there is no value.
    pub why_none: Option<String>,
}

impl Rate {
    /// Judges `name` over `samples` (oldest first, this run's last) at
    /// `now` (unix milliseconds): the last sample alone without a window,
    /// else every sample that ended within it.
    pub fn judge(&self, name: &str, samples: &[Sample], now: i64) -> Judged {
        let used: Vec<&Sample> = match self.window {
            None => samples.last().into_iter().collect(),
            Some(w) => {
                let newest = samples.len().saturating_sub(1);
                samples
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| *i == newest || s.to > now - w as i64 * 1000)
                    .map(|(_, s)| s)
                    .collect()
            }
        };
        let matches: u64 = used
            .iter()
            .map(|s| s.matches.get(name).copied().unwrap_or(0))
            .sum();
        let lines: u64 = used.iter().map(|s| s.lines).sum();
        // A span is known only when every sample used has a start.
        let span = if used.iter().all(|s| s.from.is_some()) {
            used.iter().filter_map(|s| s.from).min().map(|f| now - f)
        } else {
            None
        };
        let mut judged = Judged {
            matches,
            lines,
            span,
            value: None,
            why_none: None,
        };
        match self.basis {
            Basis::Lines => {
                if lines < self.min_lines.max(1) {
                    judged.why_none = Some(format!(
                        "{lines} lines read, fewer than min_lines ({})",
                        self.min_lines.max(1)
                    ));
                } else {
                    judged.value = Some(matches as f64 * 100.0 / lines as f64);
                }
            }
            Basis::Time { seconds, unit } => match span {
                Some(s) if s > 0 => {
                    judged.value = Some(matches as f64 * seconds as f64 * 1000.0 / s as f64)
                }
                Some(_) => judged.why_none = Some("no time has passed since the last run".into()),
                None => {
                    judged.why_none = Some(format!(
                        "no span of time yet for a rate per {unit} (the first run reads the log from its start); judged from the next run on"
                    ))
                }
            },
        }
        judged
    }

    /// `5 %` or `30 per minute`, for titles.
    pub fn show(&self, value: f64) -> String {
        match self.basis {
            Basis::Lines => format!("{} %", round(value)),
            Basis::Time { unit, .. } => format!("{} per {unit}", round(value)),
        }
    }

    /// The metric's unit.
    pub fn unit(&self) -> &'static str {
        match self.basis {
            Basis::Lines => "percent",
            Basis::Time { unit: "second", .. } => "per second",
            Basis::Time { unit: "hour", .. } => "per hour",
            Basis::Time { .. } => "per minute",
        }
    }

    /// `since the last run` or `over the last 1h`.
    pub fn window_text(&self) -> String {
        match self.window {
            None => "since the last run".into(),
            Some(w) => format!(
                "over the last {}",
                humantime::format_duration(std::time::Duration::from_secs(w))
            ),
        }
    }
}

/// Two decimals at most, no trailing zeros: `7.5`, `400`, `0.33`.
fn round(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Drops samples no window needs: older than the longest window
/// (seconds), but always the newest (the next run's "since the last
/// run"). `now` in unix milliseconds.
pub fn prune(samples: &mut Vec<Sample>, longest_window: Option<u64>, now: i64) {
    let keep_from = now - longest_window.unwrap_or(0) as i64 * 1000;
    let last = samples.len().saturating_sub(1);
    let mut i = 0;
    samples.retain(|s| {
        let keep = i == last || s.to > keep_from;
        i += 1;
        keep
    });
    // A state file cannot grow without end on a job run every second.
    const MAX: usize = 10_000;
    if samples.len() > MAX {
        samples.drain(..samples.len() - MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Rate, String> {
        serde_json::from_str::<RateSpec>(json)
            .map_err(|e| e.to_string())?
            .check()
    }

    fn sample(from: Option<i64>, to: i64, lines: u64, errors: u64) -> Sample {
        Sample {
            from,
            to,
            lines,
            matches: [("errors".to_owned(), errors)].into(),
        }
    }

    #[test]
    fn rules_parse_and_refuse_with_what_to_write() {
        let r = spec(r#"{"above":"5%","of":"lines"}"#).unwrap();
        assert_eq!(
            (r.above, r.basis, r.window, r.min_lines),
            (5.0, Basis::Lines, None, 20)
        );
        let r = spec(r#"{"above":30,"per":"minute","window":"1h"}"#).unwrap();
        assert_eq!(
            r.basis,
            Basis::Time {
                seconds: 60,
                unit: "minute"
            }
        );
        assert_eq!(r.window, Some(3600));
        for (bad, says) in [
            (r#"{"above":"5"}"#, "percentage"),
            (r#"{"above":"150%"}"#, "below 100"),
            (r#"{"above":5}"#, "needs per"),
            (r#"{"above":"5%","per":"minute"}"#, "number of matches"),
            (r#"{"above":5,"per":"fortnight"}"#, "\"minute\""),
            (r#"{"above":"5%","of":"bytes"}"#, "only \"lines\""),
            (r#"{"above":"5%","window":"soon"}"#, "duration"),
            (r#"{"above":-1,"per":"minute"}"#, "0 or more"),
        ] {
            let e = spec(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_share_of_lines_since_the_last_run_and_over_a_window() {
        let r = spec(r#"{"above":"5%"}"#).unwrap();
        let s = [
            sample(None, 100_000, 200, 15),
            sample(Some(100_000), 200_000, 200, 2),
        ];
        let j = r.judge("errors", &s[..1], 100_000);
        assert_eq!((j.matches, j.lines, j.value), (15, 200, Some(7.5)));
        let j = r.judge("errors", &s, 200_000);
        assert_eq!(j.value, Some(1.0));
        let r = spec(r#"{"above":"5%","window":"1h"}"#).unwrap();
        let j = r.judge("errors", &s, 200_000);
        assert_eq!((j.matches, j.lines), (17, 400));
        assert_eq!(j.value, Some(4.25));
        // A sample that ended before the window is left out.
        let j = r.judge("errors", &s, 100_000 + 3_600_000);
        assert_eq!((j.matches, j.lines), (2, 200));
        // Too few lines: no rate.
        let j = r.judge("errors", &[sample(None, 1, 3, 1)], 1);
        assert_eq!(j.value, None);
        assert!(j.why_none.unwrap().contains("min_lines"));
    }

    #[test]
    fn a_rate_in_time_needs_a_span() {
        let r = spec(r#"{"above":30,"per":"minute"}"#).unwrap();
        let j = r.judge("errors", &[sample(None, 100, 50, 50)], 100);
        assert_eq!(j.value, None);
        assert!(j.why_none.unwrap().contains("next run"));
        let j = r.judge("errors", &[sample(Some(100_000), 130_000, 50, 20)], 130_000);
        assert_eq!(j.value, Some(40.0));
        let j = r.judge("errors", &[sample(Some(100_000), 100_000, 50, 20)], 100_000);
        assert_eq!(
            j.why_none.as_deref(),
            Some("no time has passed since the last run")
        );
        assert_eq!(r.show(40.0), "40 per minute");
        assert_eq!(spec(r#"{"above":"5%"}"#).unwrap().show(7.5), "7.5 %");
    }

    #[test]
    fn pruning_keeps_the_window_and_the_newest() {
        let mut s = vec![
            sample(None, 0, 1, 0),
            sample(Some(0), 100_000, 1, 0),
            sample(Some(100_000), 5_000_000, 1, 0),
        ];
        prune(&mut s, Some(3600), 5_000_000);
        assert_eq!(s.iter().map(|s| s.to).collect::<Vec<_>>(), [5_000_000]);
        let mut s = vec![sample(None, 0, 1, 0), sample(Some(0), 10, 1, 0)];
        prune(&mut s, None, 10);
        assert_eq!(s.len(), 1);
    }
}
