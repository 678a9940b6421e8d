//! Crontab expressions as sets: parsing and wall-clock matching.
//!
//! The dialect is crontab(5) with the common extensions: five fields
//! (`minute hour day-of-month month day-of-week`) or six with a leading
//! seconds field; `*`, `?` (day fields), lists, ranges, steps (`*/n`,
//! `a-b/n`, `a/n`), month and weekday names, `0` or `7` for Sunday, `L`
//! (last day of the month; `5L`, `L5` or `5#L` for the last Friday), `15W`
//! (the weekday nearest the 15th) and `5#3` (the third Friday).
//!
//! Day-of-month and day-of-week are ORed when both are restricted (Vixie's
//! rule), with "restricted" decided as croniter does: a field written `*`
//! (or `?`) is not, nor is one that names every value while the other field
//! contains a `*`.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// Which wall-clock times an expression names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    pub(super) seconds: u64,
    pub(super) minutes: u64,
    pub(super) hours: u32,
    days: u32,
    last_day: bool,
    nearest_weekday: Option<u32>,
    months: u16,
    weekdays: u8,
    /// (weekday, n): the n-th such weekday of the month.
    nth_weekdays: Vec<(u32, u32)>,
    /// Weekdays whose last occurrence in the month matches.
    last_weekdays: u8,
    dom_star: bool,
    dow_star: bool,
    /// Six fields: fire times fall on seconds, not minutes.
    pub(super) has_seconds: bool,
    /// The hour field names every hour (croniter's test for skipping
    /// spring-forward gaps instead of moving past them).
    pub(super) hour_every: bool,
    /// The hour field has no `*` in it: a repeated wall-clock time fires
    /// once.
    pub(super) hour_fixed: bool,
}

#[derive(Clone, Copy)]
enum Field {
    Second,
    Minute,
    Hour,
    Dom,
    Month,
    Dow,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::Dom => "day-of-month",
            Field::Month => "month",
            Field::Dow => "day-of-week",
        }
    }

    fn range(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::Dom => (1, 31),
            Field::Month => (1, 12),
            Field::Dow => (0, 7),
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// What a day field holds besides plain values.
#[derive(Default)]
struct Parsed {
    bits: u64,
    last_day: bool,
    nearest_weekday: Option<u32>,
    nth: Vec<(u32, u32)>,
    last_weekdays: u8,
}

impl CronExpr {
    /// Parses five or six whitespace-separated fields (nicknames are
    /// expanded by the caller).
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "it has {n} fields, not 5 (or 6 with a leading seconds field)"
                ));
            }
        };
        let [min, hour, dom, mon, dow] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
        let seconds = parse_field(sec, Field::Second)?.bits;
        let minutes = parse_field(min, Field::Minute)?.bits;
        let hours = parse_field(hour, Field::Hour)?.bits as u32;
        let d = parse_field(dom, Field::Dom)?;
        let months = parse_field(mon, Field::Month)?.bits as u16;
        let w = parse_field(dow, Field::Dow)?;
        let mut weekdays = w.bits as u8;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & 0x7f) | 1;
        }
        let is_star = |f: &str| f == "*" || f == "?";
        let dom_full = d.bits == ALL_DAYS && !d.last_day && d.nearest_weekday.is_none();
        let dow_full = weekdays == 0x7f && w.nth.is_empty() && w.last_weekdays == 0;
        let expr = CronExpr {
            seconds,
            minutes,
            hours,
            days: d.bits as u32,
            last_day: d.last_day,
            nearest_weekday: d.nearest_weekday,
            months,
            weekdays,
            nth_weekdays: w.nth,
            last_weekdays: w.last_weekdays,
            dom_star: is_star(dom) || (dom_full && dow.contains('*')),
            dow_star: is_star(dow) || (dow_full && dom.contains('*')),
            has_seconds: fields.len() == 6,
            hour_every: hours == (1 << 24) - 1,
            hour_fixed: !hour.contains('*'),
        };
        if expr.days != 0 && !expr.last_day && expr.nearest_weekday.is_none() && expr.dow_star {
            // `0 0 30 2 *` can never fire; say so now rather than search forever.
            let possible = (1..=12u32)
                .filter(|m| expr.months & (1 << m) != 0)
                .any(|m| (expr.days >> 1).trailing_zeros() < days_in_month(2000, m));
            if !possible {
                return Err(format!("day {dom} never occurs in month {mon}"));
            }
        }
        Ok(expr)
    }

    /// Whether the date's day passes the day-of-month/day-of-week rule.
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = || {
            let day = date.day();
            let last = days_in_month(date.year(), date.month());
            self.days & (1 << day) != 0
                || (self.last_day && day == last)
                || self
                    .nearest_weekday
                    .is_some_and(|w| nearest_weekday(date.year(), date.month(), w) == day)
        };
        let dow = || {
            let wd = date.weekday().num_days_from_sunday();
            let day = date.day();
            self.weekdays & (1 << wd) != 0
                || self
                    .nth_weekdays
                    .iter()
                    .any(|&(w, n)| w == wd && (day - 1) / 7 + 1 == n)
                || (self.last_weekdays & (1 << wd) != 0
                    && day + 7 > days_in_month(date.year(), date.month()))
        };
        match (self.dom_star, self.dow_star) {
            (true, true) => true,
            (true, false) => dow(),
            (false, true) => dom(),
            (false, false) => dom() || dow(),
        }
    }

    /// The first wall-clock time at or after `start` that the expression
    /// names, searching at most 50 years ahead (as croniter does).
    pub fn next_at_or_after(&self, start: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = start.date();
        let mut from = start.time();
        let limit = start.date().year() + 50;
        while date.year() <= limit {
            if self.months & (1 << date.month()) == 0 {
                date = first_of_next_month(date)?;
                from = NaiveTime::MIN;
                continue;
            }
            if self.day_matches(date)
                && let Some(t) = self.first_time_at_or_after(from)
            {
                return Some(date.and_time(t));
            }
            date = date.succ_opt()?;
            from = NaiveTime::MIN;
        }
        None
    }

    fn first_time_at_or_after(&self, t: NaiveTime) -> Option<NaiveTime> {
        let (h0, m0, s0) = (t.hour(), t.minute(), t.second());
        let mut h = next_bit(self.hours as u64, h0)?;
        loop {
            let m_from = if h == h0 { m0 } else { 0 };
            let mut m = next_bit(self.minutes, m_from);
            while let Some(min) = m {
                let s_from = if h == h0 && min == m0 { s0 } else { 0 };
                if let Some(s) = next_bit(self.seconds, s_from) {
                    return NaiveTime::from_hms_opt(h, min, s);
                }
                m = next_bit(self.minutes, min + 1);
            }
            h = next_bit(self.hours as u64, h + 1)?;
        }
    }
}

const ALL_DAYS: u64 = ((1u64 << 32) - 1) & !1;

fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let masked = bits & (u64::MAX << from);
    (masked != 0).then(|| masked.trailing_zeros())
}

fn first_of_next_month(d: NaiveDate) -> Option<NaiveDate> {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
}

/// Days in a month of a year.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// The weekday (Monday to Friday) nearest `day` within the month, as
/// Quartz's `W` defines it: Saturday moves to Friday and Sunday to Monday,
/// unless that leaves the month.
pub fn nearest_weekday(year: i32, month: u32, day: u32) -> u32 {
    let last = days_in_month(year, month);
    let day = day.min(last);
    let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
        return day;
    };
    match date.weekday().num_days_from_monday() {
        5 if day > 1 => day - 1,
        5 => day + 2,
        6 if day < last => day + 1,
        6 => day - 2,
        _ => day,
    }
}

/// One field of a cron expression: a list of `*`, values, ranges and
/// steps, and the day fields' `L`, `W`, `#` and `?`.
///
/// Long on purpose: one pass over the field's grammar, each form an arm,
/// so what the field accepts reads in one place.
fn parse_field(text: &str, field: Field) -> Result<Parsed, String> {
    let err = |msg: String| format!("{} field `{text}`: {msg}", field.name());
    let mut out = Parsed::default();
    let (lo, hi) = field.range();
    let items: Vec<&str> = text.split(',').collect();
    for item in &items {
        let item = item.trim().to_ascii_lowercase();
        if item.is_empty() {
            return Err(err("an empty list item".into()));
        }
        if item == "?" {
            if !matches!(field, Field::Dom | Field::Dow) || items.len() > 1 {
                return Err(err("`?` stands alone, in a day field".into()));
            }
            out.bits = bits_range(lo, hi, 1);
            continue;
        }
        if let Field::Dom = field {
            if item == "l" {
                out.last_day = true;
                continue;
            }
            if let Some(n) = item.strip_suffix('w').or_else(|| item.strip_prefix('w')) {
                let day = value(n, field).map_err(err)?;
                if items.len() > 1 {
                    return Err(err("`W` takes a single day, not a list".into()));
                }
                out.nearest_weekday = Some(day);
                continue;
            }
        }
        if let Field::Dow = field {
            if let Some((day, nth)) = item.split_once('#') {
                let wd = value(day, field).map_err(err)? % 7;
                if nth == "l" {
                    out.last_weekdays |= 1 << wd;
                } else {
                    let n: u32 = nth
                        .parse()
                        .ok()
                        .filter(|n| (1..=5).contains(n))
                        .ok_or_else(|| err(format!("`#{nth}` must be #1 to #5 or #L")))?;
                    out.nth.push((wd, n));
                }
                continue;
            }
            let last = item
                .strip_suffix('l')
                .filter(|d| !d.is_empty() && *d != "l");
            let last = last.or_else(|| item.strip_prefix('l').filter(|d| !d.is_empty()));
            if let Some(day) = last {
                out.last_weekdays |= 1 << (value(day, field).map_err(err)? % 7);
                continue;
            }
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| err(format!("step `{s}` must be a whole number above 0")))?;
                (r.to_owned(), Some(step))
            }
            None => (item.clone(), None),
        };
        let (a, b) = if range == "*" {
            (lo, if matches!(field, Field::Dow) { 6 } else { hi })
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, field).map_err(err)?;
            // `sat-sun`: a range ending in Sunday means 7.
            let b = if matches!(field, Field::Dow) && b == "sun" {
                7
            } else {
                value(b, field).map_err(err)?
            };
            if a > b {
                return Err(err(format!(
                    "range {a}-{b} runs backwards; write it as two ranges"
                )));
            }
            (a, b)
        } else {
            let a = value(&range, field).map_err(err)?;
            // `a/n` means from a to the end of the field (Saturday, for
            // weekdays: 7 is only another name for Sunday).
            let end = if matches!(field, Field::Dow) { 6 } else { hi };
            (a, if step.is_some() { end } else { a })
        };
        out.bits |= bits_range(a, b, step.unwrap_or(1));
    }
    Ok(out)
}

fn bits_range(a: u32, b: u32, step: u32) -> u64 {
    (a..=b)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | (1 << v))
}

fn value(text: &str, field: Field) -> Result<u32, String> {
    let (lo, hi) = field.range();
    let names: &[&str] = match field {
        Field::Month => &MONTHS,
        Field::Dow => &WEEKDAYS,
        _ => &[],
    };
    if let Some(i) = names.iter().position(|n| *n == text) {
        return Ok(i as u32 + if matches!(field, Field::Month) { 1 } else { 0 });
    }
    let n: u32 = text.parse().map_err(|_| {
        if names.is_empty() {
            format!("`{text}` is not a number")
        } else {
            format!(
                "`{text}` is not a number or a name ({}…)",
                names[..3].join(", ")
            )
        }
    })?;
    if n < lo || n > hi {
        return Err(format!("{n} is out of range {lo}-{hi}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(expr: &str, start: &str) -> String {
        let e = CronExpr::parse(expr).unwrap();
        let s = NaiveDateTime::parse_from_str(start, "%Y-%m-%d %H:%M:%S").unwrap();
        e.next_at_or_after(s)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S %a")
            .to_string()
    }

    #[test]
    fn plain_fields() {
        assert_eq!(
            next("*/15 * * * *", "2026-11-28 12:01:00"),
            "2026-11-28 12:15:00 Sat"
        );
        assert_eq!(
            next("0 2 * * sun", "2026-11-28 12:00:00"),
            "2026-11-29 02:00:00 Sun"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-11-28 12:00:00"),
            "2026-11-29 00:00:00 Sun"
        );
        assert_eq!(
            next("30 8 * jan-mar mon-fri", "2026-11-28 12:00:00"),
            "2027-01-01 08:30:00 Fri"
        );
        assert_eq!(
            next("15 */6 * * *", "2026-11-28 12:16:00"),
            "2026-11-28 18:15:00 Sat"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-11-28 12:00:00"),
            "2026-11-28 12:05:00 Sat"
        );
        assert_eq!(
            next("*/10 * * * * *", "2026-11-28 12:00:01"),
            "2026-11-28 12:00:10 Sat"
        );
    }

    #[test]
    fn day_fields_are_ored_when_both_restricted() {
        // The 1st, or any Monday.
        assert_eq!(
            next("0 0 1 * mon", "2026-11-28 00:00:00"),
            "2026-11-30 00:00:00 Mon"
        );
        assert_eq!(
            next("0 0 1 * mon", "2026-11-30 00:00:01"),
            "2026-12-01 00:00:00 Tue"
        );
        // `*` in the day-of-week field: only the day of month counts.
        assert_eq!(
            next("0 0 13 * *", "2026-11-28 00:00:00"),
            "2026-12-13 00:00:00 Sun"
        );
    }

    #[test]
    fn extensions() {
        assert_eq!(
            next("0 0 L * *", "2026-02-01 00:00:00"),
            "2026-02-28 00:00:00 Sat"
        );
        assert_eq!(
            next("0 0 L 2 *", "2027-03-01 00:00:00"),
            "2028-02-29 00:00:00 Tue"
        );
        // 2026-11-15 is a Sunday: the nearest weekday is Monday the 16th.
        assert_eq!(
            next("0 0 15W * *", "2026-11-01 00:00:00"),
            "2026-11-16 00:00:00 Mon"
        );
        // 2026-08-01 is a Saturday at the month's start: Monday the 3rd.
        assert_eq!(
            next("0 0 1W * *", "2026-07-31 00:00:00"),
            "2026-08-03 00:00:00 Mon"
        );
        assert_eq!(
            next("0 0 * * fri#3", "2026-11-01 00:00:00"),
            "2026-11-20 00:00:00 Fri"
        );
        assert_eq!(
            next("0 0 * * 5L", "2026-11-01 00:00:00"),
            "2026-11-27 00:00:00 Fri"
        );
        assert_eq!(
            next("0 0 * * L5", "2026-11-01 00:00:00"),
            "2026-11-27 00:00:00 Fri"
        );
        assert_eq!(
            next("0 0 * * 5#L", "2026-11-01 00:00:00"),
            "2026-11-27 00:00:00 Fri"
        );
        assert_eq!(
            next("0 0 * * sat-sun", "2026-11-23 00:00:00"),
            "2026-11-28 00:00:00 Sat"
        );
    }

    #[test]
    fn errors_name_the_field_and_fix() {
        let e = |x: &str| CronExpr::parse(x).unwrap_err();
        assert_eq!(
            e("61 * * * *"),
            "minute field `61`: 61 is out of range 0-59"
        );
        assert_eq!(e("* 24 * * *"), "hour field `24`: 24 is out of range 0-23");
        assert_eq!(
            e("* * * foo *"),
            "month field `foo`: `foo` is not a number or a name (jan, feb, mar…)"
        );
        assert_eq!(
            e("* * * * 5-1"),
            "day-of-week field `5-1`: range 5-1 runs backwards; write it as two ranges"
        );
        assert_eq!(
            e("*/0 * * * *"),
            "minute field `*/0`: step `0` must be a whole number above 0"
        );
        assert_eq!(e("0 0 30 2 *"), "day 30 never occurs in month 2");
        assert_eq!(
            e("* * *"),
            "it has 3 fields, not 5 (or 6 with a leading seconds field)"
        );
    }
}
