//! Which backups to keep, with restic's `forget` semantics.
//!
//! Backups are considered newest first, per source. Each rule keeps the
//! newest backup of each of its last N periods that has one:
//!
//! - `keep_last = n`: the n newest backups;
//! - `keep_hourly`, `keep_daily`, `keep_weekly` (ISO weeks),
//!   `keep_monthly`, `keep_yearly = n`: the newest backup in each of the
//!   last n hours/days/weeks/months/years that have backups (periods with
//!   none do not count), in UTC;
//! - a backup is kept when any rule keeps it; `-1` means unlimited (as in
//!   restic 0.15 and later; 0.14 has no such value).
//!
//! This is restic 0.14's `forget` (the version Debian ships, which the
//! tests compare against); restic 0.15 and later also keep the oldest
//! snapshot while a rule has counts left, which opsd does not.
//!
//! On top, `max_age` removes backups older than that even when a rule
//! would keep them; the newest backup is never removed. With no rule and no
//! `max_age`, everything is kept.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;

/// A kept backup and the rules that keep it.
pub type Kept = (DateTime<Utc>, Vec<&'static str>);

/// One keep rule: its name, how many periods, and a backup's period (the
/// snapshot's position for `last`).
struct Rule {
    name: &'static str,
    count: i64,
    bucket: fn(DateTime<Utc>, usize) -> i64,
}

/// The `[job.config.retention]` table.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub keep_last: Option<i64>,
    #[serde(default)]
    pub keep_hourly: Option<i64>,
    #[serde(default)]
    pub keep_daily: Option<i64>,
    #[serde(default)]
    pub keep_weekly: Option<i64>,
    #[serde(default)]
    pub keep_monthly: Option<i64>,
    #[serde(default)]
    pub keep_yearly: Option<i64>,
    /// `30d`, `2y`: backups older than this go.
    #[serde(default, deserialize_with = "de_duration")]
    pub max_age: Option<std::time::Duration>,
}

fn de_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| {
            humantime::parse_duration(&s)
                .map_err(|e| serde::de::Error::custom(format!("max_age `{s}`: {e}")))
        })
        .transpose()
}

impl Retention {
    /// True when no rule asks to remove anything.
    pub fn keeps_everything(&self) -> bool {
        self.max_age.is_none() && self.rules().is_empty()
    }

    fn rules(&self) -> Vec<Rule> {
        let mut v: Vec<Rule> = Vec::new();
        let mut add = |name, n: Option<i64>, bucket| {
            if let Some(count) = n.filter(|n| *n != 0) {
                v.push(Rule {
                    name,
                    count,
                    bucket,
                });
            }
        };
        add("last", self.keep_last, |_, nr| nr as i64);
        add("hourly", self.keep_hourly, |t, _| {
            i64::from(t.year()) * 1_000_000
                + i64::from(t.month()) * 10_000
                + i64::from(t.day()) * 100
                + i64::from(t.hour())
        });
        add("daily", self.keep_daily, |t, _| {
            i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
        });
        add("weekly", self.keep_weekly, |t, _| {
            let w = t.iso_week();
            i64::from(w.year()) * 100 + i64::from(w.week())
        });
        add("monthly", self.keep_monthly, |t, _| {
            i64::from(t.year()) * 100 + i64::from(t.month())
        });
        add("yearly", self.keep_yearly, |t, _| i64::from(t.year()));
        v
    }

    /// Splits backup times into (kept, removed), each newest first, with the
    /// reasons each kept one is kept.
    pub fn apply(
        &self,
        times: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> (Vec<Kept>, Vec<DateTime<Utc>>) {
        let mut list: Vec<DateTime<Utc>> = times.to_vec();
        list.sort_by(|a, b| b.cmp(a));
        list.dedup();
        if self.keeps_everything() {
            return (
                list.into_iter()
                    .map(|t| (t, vec!["no retention rule"]))
                    .collect(),
                Vec::new(),
            );
        }
        let rules = self.rules();
        let mut counts: Vec<i64> = rules.iter().map(|r| r.count).collect();
        let mut last: Vec<Option<i64>> = vec![None; rules.len()];
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for (nr, t) in list.iter().enumerate() {
            let mut reasons = Vec::new();
            for (i, rule) in rules.iter().enumerate() {
                if counts[i] > 0 || counts[i] == -1 {
                    let val = (rule.bucket)(*t, nr);
                    if last[i] != Some(val) {
                        last[i] = Some(val);
                        if counts[i] > 0 {
                            counts[i] -= 1;
                        }
                        reasons.push(rule.name);
                    }
                }
            }
            let too_old = nr > 0
                && self
                    .max_age
                    .is_some_and(|max| (now - *t).to_std().is_ok_and(|age| age > max));
            if too_old {
                removed.push(*t);
            } else if rules.is_empty() {
                kept.push((*t, vec!["within max_age"]));
            } else if reasons.is_empty() {
                removed.push(*t);
            } else {
                kept.push((*t, reasons));
            }
        }
        (kept, removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 2, 0, 0).unwrap()
    }

    fn kept(r: &Retention, times: &[DateTime<Utc>], now: DateTime<Utc>) -> Vec<String> {
        r.apply(times, now)
            .0
            .iter()
            .map(|(t, _)| t.format("%Y-%m-%d").to_string())
            .collect()
    }

    #[test]
    fn keep_last_and_daily() {
        let times: Vec<_> = (1..=10).map(|d| day(2026, 11, d)).collect();
        let r = Retention {
            keep_last: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(&r, &times, day(2026, 11, 10)),
            ["2026-11-10", "2026-11-09", "2026-11-08"]
        );
        let r = Retention {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(
            kept(&r, &times, day(2026, 11, 10)),
            ["2026-11-10", "2026-11-09"]
        );
        let r = Retention {
            keep_daily: Some(20),
            ..Default::default()
        };
        assert_eq!(kept(&r, &times, day(2026, 11, 10)).len(), 10);
    }

    #[test]
    fn two_years_of_dailies_under_a_gfs_policy() {
        // One backup a day for two years.
        let start = day(2024, 11, 1);
        let times: Vec<_> = (0..730)
            .map(|i| start + chrono::Duration::days(i))
            .collect();
        let now = *times.last().unwrap();
        let r = Retention {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            keep_yearly: Some(2),
            ..Default::default()
        };
        let (keep, removed) = r.apply(&times, now);
        assert_eq!(keep.len() + removed.len(), 730);
        let k: Vec<String> = keep
            .iter()
            .map(|(t, _)| t.format("%Y-%m-%d").to_string())
            .collect();
        // 7 dailies: 2026-10-25 .. 2026-10-31.
        assert_eq!(
            &k[..7],
            [
                "2026-10-31",
                "2026-10-30",
                "2026-10-29",
                "2026-10-28",
                "2026-10-27",
                "2026-10-26",
                "2026-10-25"
            ]
        );
        // Weekly: the newest of the last 4 ISO weeks (Sundays before).
        for sunday in ["2026-10-25", "2026-10-18", "2026-10-11"] {
            assert!(k.contains(&sunday.to_string()), "{sunday} in {k:?}");
        }
        // Monthly: the last day of each of the 12 newest months.
        for eom in ["2026-09-30", "2026-01-31", "2025-11-30"] {
            assert!(k.contains(&eom.to_string()), "{eom} in {k:?}");
        }
        assert!(
            !k.contains(&"2025-10-31".to_string()),
            "a 13th month is not kept"
        );
        // Yearly: the newest of 2026 and of 2025.
        assert!(k.contains(&"2025-12-31".to_string()));
        assert!(!k.contains(&"2024-11-01".to_string()));
        // 7 daily; weekly adds 10-18 and 10-11 (10-31 and 10-25 are
        // dailies); monthly adds 11 (October is 10-31); yearly adds none
        // (2026 is 10-31, 2025 is 12-31, both monthly).
        assert_eq!(keep.len(), 7 + 2 + 11, "{k:?}");
    }

    #[test]
    fn max_age_wins_but_never_removes_the_newest() {
        let times = vec![day(2026, 11, 10), day(2026, 1, 1), day(2025, 1, 1)];
        let r = Retention {
            keep_yearly: Some(5),
            max_age: Some(std::time::Duration::from_secs(200 * 86_400)),
            ..Default::default()
        };
        assert_eq!(kept(&r, &times, day(2026, 11, 10)), ["2026-11-10"]);
        let only_old = vec![day(2020, 1, 1)];
        assert_eq!(kept(&r, &only_old, day(2026, 11, 10)), ["2020-01-01"]);
        assert!(Retention::default().keeps_everything());
    }
}
