//! Schedule expressions and next-fire times in a time zone.
//!
//! [`expr`] turns an expression into sets of wall-clock times. This module
//! turns wall-clock times into instants in a job's IANA zone, and that is
//! where daylight saving time makes things hard. opsd follows croniter's
//! results (the reference its tests compare against), with one rule on
//! top for expressions whose hour field is fixed (has no `*`), so a
//! nightly job runs once a night:
//!
//! - a wall-clock time repeated by a fall-back transition fires once, the
//!   first time;
//! - a time inside a spring-forward gap fires once, at the first valid
//!   instant after the gap.
//!
//! Expressions with `*` in the hour field follow elapsed time: `30 * * * *`
//! fires at both 01:30s of a fall-back night and skips the 02:30 that does
//! not exist on a spring-forward night.

mod expr;

pub use expr::{CronExpr, days_in_month, nearest_weekday};

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Cron(Box<CronExpr>),
    /// `@reboot`: once each time the daemon starts.
    Reboot,
    /// No schedule: the job runs on its `when` conditions or by hand.
    Never,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Schedule").field(&self.text).finish()
    }
}

/// An expression that is not a valid schedule.
#[derive(Debug, thiserror::Error)]
#[error(
    "schedule `{expr}` is not valid: {reason}; write `minute hour day-of-month month day-of-week` (e.g. `0 2 * * sun`) or @hourly/@daily/@weekly/@monthly/@yearly/@reboot"
)]
pub struct ScheduleError {
    pub expr: String,
    pub reason: String,
}

impl Schedule {
    /// Parses a crontab expression or `@` nickname.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim().to_owned();
        let err = |reason: String| ScheduleError {
            expr: text.clone(),
            reason,
        };
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@reboot" => {
                return Ok(Schedule {
                    text,
                    kind: Kind::Reboot,
                });
            }
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(err(format!("unknown nickname `{other}`")));
            }
            _ => text.as_str(),
        };
        let expr = CronExpr::parse(expanded).map_err(err)?;
        Ok(Schedule {
            kind: Kind::Cron(Box::new(expr)),
            text,
        })
    }

    /// The schedule of a job that has none (it runs on conditions or by
    /// hand); it never fires.
    pub fn never() -> Schedule {
        Schedule {
            text: String::new(),
            kind: Kind::Never,
        }
    }

    /// Whether this is [`Schedule::never`].
    pub fn is_never(&self) -> bool {
        matches!(self.kind, Kind::Never)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for `@reboot`, which has no calendar times.
    pub fn is_reboot(&self) -> bool {
        matches!(self.kind, Kind::Reboot)
    }

    /// The first fire time strictly after `after`, in zone `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let Kind::Cron(expr) = &self.kind else {
            return None;
        };
        let mut t = after;
        // A fixed-hour expression skips the second pass over a repeated
        // wall-clock time; there is at most one such pass per fire time.
        for _ in 0..1000 {
            let next = croniter_next(expr, t, tz)?;
            if expr.hour_fixed && is_second_occurrence(next, tz) {
                t = next;
                continue;
            }
            return Some(next);
        }
        None
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut t = after;
        while out.len() < count {
            match self.next_after(t, tz) {
                Some(n) => {
                    out.push(n);
                    t = n;
                }
                None => break,
            }
        }
        out
    }
}

/// One step of croniter's `get_next` for a zone-aware start: the next
/// matching wall-clock time after `now`'s, turned into an instant, with
/// croniter's handling of gaps and of UTC-offset changes in between.
fn croniter_next(expr: &CronExpr, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    let unit = if expr.has_seconds {
        Duration::seconds(1)
    } else {
        Duration::minutes(1)
    };
    let floor = |t: NaiveDateTime| {
        let t = t.with_nanosecond(0).unwrap_or(t);
        if expr.has_seconds {
            t
        } else {
            t.with_second(0).unwrap_or(t)
        }
    };
    let local = now.with_timezone(&tz);
    let wall = local.naive_local();
    let mut w = expr.next_at_or_after(floor(wall + unit))?;
    let (mut aware, mut exists) = localize(w, now, tz);
    if !exists && (aware <= now || expr.hour_every) {
        // The time is in a gap, and moving past the gap is not right here:
        // look for the next time that exists.
        while !exists {
            w = expr.next_at_or_after(floor(w + unit))?;
            (aware, exists) = localize(w, now, tz);
        }
    }
    let delta = offset_seconds(aware, tz) - offset_seconds(now, tz);
    if delta == 0 {
        return Some(aware);
    }
    // The offset changed between `now` and the candidate: the same
    // search from `now`'s wall time shifted by the change may find an
    // earlier instant.
    let alt_w = expr.next_at_or_after(floor(wall + Duration::seconds(delta) + unit))?;
    let (alt, alt_exists) = localize(alt_w, now, tz);
    if !alt_exists || alt <= now {
        return Some(aware);
    }
    Some(if aware > alt { alt } else { aware })
}

/// croniter's `_add_tzinfo`: a wall-clock time as an instant. A repeated
/// time is its first occurrence unless that is not after `now`; a time in
/// a gap moves forward minute by minute to the first that exists, and is
/// reported as not existing.
fn localize(w: NaiveDateTime, now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, bool) {
    match tz.from_local_datetime(&w) {
        LocalResult::Single(t) => (t.with_timezone(&Utc), true),
        LocalResult::Ambiguous(a, b) => {
            let (early, late) = if a < b { (a, b) } else { (b, a) };
            let early = early.with_timezone(&Utc);
            (
                if early > now {
                    early
                } else {
                    late.with_timezone(&Utc)
                },
                true,
            )
        }
        LocalResult::None => {
            let mut x = w;
            for _ in 0..(48 * 60) {
                x += Duration::minutes(1);
                match tz.from_local_datetime(&x) {
                    LocalResult::Single(t) => return (t.with_timezone(&Utc), false),
                    LocalResult::Ambiguous(a, b) => return (a.min(b).with_timezone(&Utc), false),
                    LocalResult::None => {}
                }
            }
            // No zone has a gap this long; keep the UTC reading of it.
            (Utc.from_utc_datetime(&w), false)
        }
    }
}

fn offset_seconds(t: DateTime<Utc>, tz: Tz) -> i64 {
    i64::from(t.with_timezone(&tz).offset().fix().local_minus_utc())
}

/// True when `t` is the later of two instants sharing a wall-clock time.
fn is_second_occurrence(t: DateTime<Utc>, tz: Tz) -> bool {
    match tz.from_local_datetime(&t.with_timezone(&tz).naive_local()) {
        LocalResult::Ambiguous(a, b) => t == a.max(b).with_timezone(&Utc),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
        let tz: Tz = tz.parse().unwrap();
        Schedule::parse(expr)
            .unwrap()
            .upcoming(t(after), tz, n)
            .into_iter()
            .map(|x| x.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn zones_shift_the_wall_clock() {
        assert_eq!(
            fires("@daily", "Europe/Berlin", "2026-11-28T12:00:00Z", 1),
            ["2026-11-29T00:00:00+01:00"]
        );
        assert_eq!(
            fires("30 5 * * *", "Asia/Kolkata", "2026-11-27T23:00:00Z", 1),
            ["2026-11-28T05:30:00+05:30"]
        );
    }

    #[test]
    fn fall_back_fixed_hour_fires_once_the_first_time() {
        // New York falls back at 02:00 EDT on 2026-11-01.
        assert_eq!(
            fires(
                "30 1 * * *",
                "America/New_York",
                "2026-11-01T00:00:00-04:00",
                2
            ),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        // An hourly expression follows elapsed time: both 01:30s.
        assert_eq!(
            fires(
                "30 * * * *",
                "America/New_York",
                "2026-11-01T00:00:00-04:00",
                4
            ),
            [
                "2026-11-01T00:30:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:30:00-05:00"
            ]
        );
    }

    #[test]
    fn spring_forward_gap_fires_at_the_first_valid_instant() {
        // New York springs forward at 02:00 EST on 2026-03-08.
        assert_eq!(
            fires(
                "30 2 * * *",
                "America/New_York",
                "2026-03-08T00:00:00-05:00",
                2
            ),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
        assert_eq!(
            fires(
                "30 * * * *",
                "America/New_York",
                "2026-03-08T00:00:00-05:00",
                3
            ),
            [
                "2026-03-08T00:30:00-05:00",
                "2026-03-08T01:30:00-05:00",
                "2026-03-08T03:30:00-04:00"
            ]
        );
        // Lord Howe moves by half an hour: 02:00 becomes 02:30.
        assert_eq!(
            fires(
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2026-10-04T00:00:00+10:30",
                1
            ),
            ["2026-10-04T02:30:00+11:00"]
        );
    }

    #[test]
    fn reboot_and_nicknames() {
        assert!(Schedule::parse("@reboot").unwrap().is_reboot());
        assert!(
            Schedule::parse("@reboot")
                .unwrap()
                .next_after(Utc::now(), Tz::UTC)
                .is_none()
        );
        assert_eq!(
            fires("@midnight", "UTC", "2026-11-28T12:00:00Z", 1),
            ["2026-11-29T00:00:00+00:00"]
        );
        assert!(
            Schedule::parse("@fortnightly")
                .unwrap_err()
                .to_string()
                .contains("unknown nickname")
        );
        let e = Schedule::parse("61 * * * *").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "schedule `61 * * * *` is not valid: minute field `61`: 61 is out of range 0-59"
            ),
            "{e}"
        );
    }
}
