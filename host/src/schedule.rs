//! Schedule expressions and next-fire times.
//!
//! The crontab(5) dialect: five fields (a sixth, leading seconds field is
//! accepted), names, ranges, steps, `0`/`7` for Sunday, Vixie's rule that
//! day-of-month and day-of-week are ORed when both are restricted, the
//! `L`/`W`/`#` extensions and the `@` nicknames. Parsing and matching come
//! from `croner`, which implements that dialect (the `cron` crate needs
//! seconds, numbers Sunday 1 and ANDs the day fields).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed schedule expression.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron(Box<Cron>),
    /// `@reboot`: once each time the daemon starts.
    Reboot,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Schedule").field(&self.text).finish()
    }
}

/// An expression that is not a valid schedule.
#[derive(Debug, thiserror::Error)]
#[error(
    "schedule `{expr}` is not valid: {reason}; write five fields `minute hour day-of-month month day-of-week` (e.g. `0 2 * * sun`) or @hourly/@daily/@weekly/@monthly/@yearly"
)]
pub struct ScheduleError {
    pub expr: String,
    pub reason: String,
}

impl Schedule {
    /// Parses a crontab expression or `@` nickname.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let text = expr.trim().to_owned();
        let err = |reason: String| ScheduleError {
            expr: text.clone(),
            reason,
        };
        let lower = text.to_ascii_lowercase();
        if lower == "@reboot" {
            return Ok(Schedule {
                text,
                kind: Kind::Reboot,
            });
        }
        let effective = match lower.as_str() {
            "@midnight" => "@daily",
            _ => text.as_str(),
        };
        if effective.starts_with('@')
            && !matches!(
                effective.to_ascii_lowercase().as_str(),
                "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@hourly"
            )
        {
            return Err(err(format!("unknown nickname `{effective}`")));
        }
        let fields = effective.split_whitespace().count();
        if !effective.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(err(format!(
                "it has {fields} fields, not 5 (or 6 with seconds)"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(effective)
            .map_err(|e| err(e.to_string()))?;
        Ok(Schedule {
            text,
            kind: Kind::Cron(Box::new(cron)),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for `@reboot`, which has no calendar times.
    pub fn is_reboot(&self) -> bool {
        matches!(self.kind, Kind::Reboot)
    }

    /// The first fire time strictly after `after`, in the zone `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Reboot => None,
            Kind::Cron(cron) => cron
                .find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ordinary_expressions() {
        let s = Schedule::parse("0 2 * * sun").unwrap();
        // 2026-11-28 is a Saturday.
        assert_eq!(
            s.next_after(t("2026-11-28T12:00:00Z"), Tz::UTC),
            Some(t("2026-11-29T02:00:00Z"))
        );
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            s.next_after(t("2026-11-28T12:00:00Z"), Tz::UTC),
            Some(t("2026-11-28T12:15:00Z"))
        );
        let s = Schedule::parse("@monthly").unwrap();
        assert_eq!(
            s.next_after(t("2026-11-28T12:00:00Z"), Tz::UTC),
            Some(t("2026-12-01T00:00:00Z"))
        );
    }

    #[test]
    fn zones_shift_the_wall_clock() {
        let s = Schedule::parse("@daily").unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            s.next_after(t("2026-11-28T12:00:00Z"), berlin),
            Some(t("2026-11-28T23:00:00Z"))
        );
    }

    #[test]
    fn vixie_or_of_day_fields() {
        // 1st of the month OR any Monday.
        let s = Schedule::parse("0 0 1 * mon").unwrap();
        // 2026-11-28 is Saturday; next Monday is Nov 30, before Dec 1.
        assert_eq!(
            s.next_after(t("2026-11-28T00:00:00Z"), Tz::UTC),
            Some(t("2026-11-30T00:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-11-30T00:00:00Z"), Tz::UTC),
            Some(t("2026-12-01T00:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_what_to_write() {
        let e = Schedule::parse("61 * * * *").unwrap_err().to_string();
        assert!(e.contains("`61 * * * *`"), "{e}");
        assert!(
            Schedule::parse("* * *")
                .unwrap_err()
                .to_string()
                .contains("3 fields")
        );
        assert!(Schedule::parse("@fortnightly").is_err());
        assert!(Schedule::parse("@reboot").unwrap().is_reboot());
    }
}
