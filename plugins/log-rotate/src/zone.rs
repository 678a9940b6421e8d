//! The job's time zone as logrotate's C library sees it. logrotate makes
//! every calendar decision with `localtime()` and `mktime()` under `TZ`,
//! so across a daylight-saving change an hour, a day and a week are what
//! those two functions say they are, odd corners included. This module
//! answers as glibc does: [`Zone::localtime`] with the zone's rules, and
//! [`Zone::mktime`] by the same probing glibc's `__mktime_internal` does
//! (including its guess carried from one call to the next, which decides
//! a repeated local time whose DST flag is unknown, and its answers for a
//! local time that does not exist).
//!
//! The zone comes from `TZ`, which opsd sets to the job's IANA zone. An
//! older host does not set it; then the scheduled time's one UTC offset is
//! used all year ([`Zone::Fixed`]), which is right except across a change.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike};
use chrono_tz::{OffsetComponents, Tz};

/// A time zone: named (with its rules), or one fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// An IANA zone, as `TZ=Europe/Berlin` names it.
    Named(Tz),
    /// Seconds east of UTC, all year; never daylight-saving time.
    Fixed(i64),
}

/// A moment as `localtime()` gives it: the wall-clock fields, the instant
/// and the DST flag (`tm_isdst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub wall: NaiveDateTime,
    /// Seconds since the Unix epoch.
    pub unix: i64,
    pub isdst: bool,
}

/// The fields of a `struct tm` handed to `mktime()`: they need not be in
/// range (day 0 is the last of the month before, hour -1 the last of the
/// day before), and `isdst` is `None` for glibc's "unknown" (-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tm {
    pub year: i64,
    /// January is 1, as people write it (glibc's `tm_mon + 1`).
    pub month: i64,
    pub mday: i64,
    pub hour: i64,
    pub min: i64,
    pub sec: i64,
    pub isdst: Option<bool>,
}

impl Tm {
    /// The fields of a wall-clock time, with a DST flag.
    pub fn of(wall: NaiveDateTime, isdst: Option<bool>) -> Tm {
        use chrono::Datelike;
        Tm {
            year: i64::from(wall.year()),
            month: i64::from(wall.month()),
            mday: i64::from(wall.day()),
            hour: i64::from(wall.hour()),
            min: i64::from(wall.minute()),
            sec: i64::from(wall.second()),
            isdst,
        }
    }

    /// Seconds from 1970-01-01 00:00 to these fields read as UTC, after
    /// normalising them as mktime does.
    fn wall_seconds(&self) -> Option<i64> {
        let m0 = self.month - 1;
        let year = i32::try_from(self.year + m0.div_euclid(12)).ok()?;
        let month = u32::try_from(m0.rem_euclid(12) + 1).ok()?;
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let days = first.signed_duration_since(NaiveDate::default()).num_days() + self.mday - 1;
        Some(days * 86_400 + self.hour * 3600 + self.min * 60 + self.sec)
    }
}

/// Seconds from 1970-01-01 00:00 to a wall-clock time read as UTC.
fn seconds_of(wall: NaiveDateTime) -> i64 {
    wall.and_utc().timestamp()
}

/// The distance between probes for a wanted DST flag, and how far to
/// look, as glibc has them (its comments: the shortest DST period in the
/// tz database, and half the longest plus one stride).
const STRIDE: i64 = 601_200;
const DELTA_BOUND: i64 = 536_454_000 / 2 + STRIDE;

impl Zone {
    /// The zone `TZ` names (a leading `:` is allowed, as glibc allows it);
    /// `None` when unset or not an IANA zone name chrono-tz knows.
    pub fn from_tz(tz: Option<&str>) -> Option<Zone> {
        let name = tz?.trim();
        let name = name.strip_prefix(':').unwrap_or(name);
        name.parse::<Tz>().ok().map(Zone::Named)
    }

    /// What the run log calls this zone.
    pub fn describe(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_owned(),
            Zone::Fixed(off) => {
                let sign = if *off < 0 { '-' } else { '+' };
                let a = off.unsigned_abs();
                format!("UTC{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
            }
        }
    }

    /// `localtime()`: the wall clock and DST flag at `unix`. None only
    /// for instants chrono cannot represent (hundreds of millennia away).
    pub fn localtime(&self, unix: i64) -> Option<Local> {
        match self {
            Zone::Named(tz) => {
                let t = DateTime::from_timestamp(unix, 0)?.with_timezone(tz);
                Some(Local {
                    wall: t.naive_local(),
                    unix,
                    isdst: t.offset().dst_offset().num_seconds() != 0,
                })
            }
            Zone::Fixed(off) => Some(Local {
                wall: DateTime::from_timestamp(unix.checked_add(*off)?, 0)?.naive_utc(),
                unix,
                isdst: false,
            }),
        }
    }

    /// `mktime()` as glibc does it: the instant whose local time has the
    /// fields of `tm`, found by probing from `*guess` (seconds west of
    /// UTC that the previous call found, 0 in a fresh process) and then
    /// updating it. Where the time occurs twice and the DST flag is
    /// unknown, the guess decides; where it does not occur, the answer is
    /// an hour (the gap) away, as glibc's is. None where glibc returns -1.
    pub fn mktime(&self, tm: &Tm, guess: &mut i64) -> Option<Local> {
        let w = tm.wall_seconds()?;
        let diff = |l: &Local| w - seconds_of(l.wall);
        let t0 = w.checked_add(*guess)?;
        let (mut t, mut t1, mut t2) = (t0, t0, t0);
        let mut dst2 = false;
        let mut remaining = 6;
        let mut found = self.localtime(t)?;
        let mut matched = false;
        loop {
            let dt = diff(&found);
            if dt == 0 {
                matched = true;
                break;
            }
            // Oscillating between two instants: the time falls in a gap.
            // glibc stops here, an hour from the time asked for, on the
            // side whose flag differs from the one asked for (or, with
            // none asked for, preferring the DST side).
            let stop = match tm.isdst {
                None => !dst2 || found.isdst,
                Some(want) => want != found.isdst,
            };
            if t == t1 && t != t2 && stop {
                break;
            }
            remaining -= 1;
            if remaining == 0 {
                return None;
            }
            t1 = t2;
            t2 = t;
            t = t.checked_add(dt)?;
            dst2 = found.isdst;
            found = self.localtime(t)?;
        }
        if matched && let Some(want) = tm.isdst.filter(|w| *w != found.isdst) {
            // The flag asked for is not the one in effect: use the UTC
            // offset of the nearest instant that has it, probing a stride
            // earlier, then later, then two strides, and so on.
            let mut delta = STRIDE;
            let mut probed = None;
            'probe: while delta < DELTA_BOUND {
                for direction in [-1, 1] {
                    let ot = t + delta * direction;
                    let other = self.localtime(ot)?;
                    if other.isdst == want {
                        let gt = ot + diff(&other);
                        probed = Some(self.localtime(gt)?);
                        break 'probe;
                    }
                }
                delta += STRIDE;
            }
            found = match probed {
                Some(p) => p,
                // None has it (DST asked for in a zone without): glibc
                // 2.36, Debian 12's, takes DST to be one hour.
                None => {
                    let hours = i64::from(!want) - i64::from(!found.isdst);
                    self.localtime(t + 3600 * hours)?
                }
            };
            t = found.unix;
        }
        *guess = t - w;
        Some(found)
    }

    /// A local time and flag as an instant, as logrotate's `mktime` calls
    /// on a `struct tm` that `localtime` filled make it; glibc's guess is
    /// not needed for a flag that is known.
    pub fn mktime_known(&self, tm: &Tm) -> Option<Local> {
        let mut guess = 0;
        self.mktime(tm, &mut guess)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Zone {
        Zone::from_tz(Some(name)).unwrap()
    }

    fn tm(y: i64, mo: i64, d: i64, h: i64, mi: i64, isdst: Option<bool>) -> Tm {
        Tm {
            year: y,
            month: mo,
            mday: d,
            hour: h,
            min: mi,
            sec: 0,
            isdst,
        }
    }

    fn shown(l: &Local) -> String {
        format!(
            "{} {} dst={}",
            l.unix,
            l.wall.format("%Y-%-m-%-d %-H:%-M:%-S"),
            u8::from(l.isdst)
        )
    }

    // Every expected line below is what glibc 2.36 (Debian 12) printed for
    // the same calls, in the same order, in one process (mktime keeps its
    // guess between calls).
    fn check(z: &str, calls: &[Tm], want: &[&str]) {
        let z = zone(z);
        let mut guess = 0;
        let got: Vec<String> = calls
            .iter()
            .map(|c| shown(&z.mktime(c, &mut guess).unwrap()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_spring_forward_gap_is_left_as_glibc_leaves_it() {
        check(
            "Europe/Berlin",
            &[
                tm(2030, 3, 31, 2, 30, None),
                tm(2030, 3, 31, 2, 30, Some(true)),
                tm(2030, 3, 31, 2, 30, Some(false)),
            ],
            &[
                "1901151000 2030-3-31 3:30:0 dst=1",
                "1901147400 2030-3-31 1:30:0 dst=0",
                "1901151000 2030-3-31 3:30:0 dst=1",
            ],
        );
        check(
            "America/New_York",
            &[tm(2030, 3, 10, 2, 30, None)],
            &["1899358200 2030-3-10 3:30:0 dst=1"],
        );
    }

    #[test]
    fn a_repeated_hour_with_no_flag_follows_the_previous_call() {
        // A fresh process reads Berlin's second 02:30 (CET); after a
        // summer time was read, the first (CEST).
        check(
            "Europe/Berlin",
            &[tm(2030, 10, 27, 2, 30, None)],
            &["1919295000 2030-10-27 2:30:0 dst=0"],
        );
        check(
            "Europe/Berlin",
            &[tm(2030, 7, 1, 0, 0, None), tm(2030, 10, 27, 2, 30, None)],
            &[
                "1909087200 2030-7-1 0:0:0 dst=1",
                "1919291400 2030-10-27 2:30:0 dst=1",
            ],
        );
        check(
            "America/New_York",
            &[tm(2030, 11, 3, 1, 10, None)],
            &["1919913000 2030-11-3 1:10:0 dst=1"],
        );
    }

    #[test]
    fn lord_howe_half_hour_shifts() {
        check(
            "Australia/Lord_Howe",
            &[
                tm(2030, 10, 6, 2, 0, Some(true)),
                tm(2030, 4, 7, 1, 0, Some(false)),
                tm(2030, 10, 6, 2, 15, None),
                tm(2030, 4, 7, 1, 45, None),
            ],
            &[
                "1917442800 2030-10-6 1:30:0 dst=0",
                "1901716200 2030-4-7 1:30:0 dst=1",
                "1917445500 2030-10-6 2:45:0 dst=1",
                "1901718900 2030-4-7 1:45:0 dst=0",
            ],
        );
    }

    #[test]
    fn dst_asked_for_in_a_zone_without_it_is_taken_as_one_hour() {
        check(
            "Asia/Kolkata",
            &[
                tm(2030, 3, 10, 0, 0, Some(true)),
                tm(2030, 3, 10, 0, 0, None),
            ],
            &[
                "1899307800 2030-3-9 23:0:0 dst=0",
                "1899311400 2030-3-10 0:0:0 dst=0",
            ],
        );
    }

    #[test]
    fn out_of_range_fields_are_normalised() {
        let z = zone("Europe/Berlin");
        // Noon of day 0 of April is noon of March 31 (CEST).
        let l = z.mktime_known(&tm(2030, 4, 0, 12, 0, Some(true))).unwrap();
        assert_eq!(shown(&l), "1901181600 2030-3-31 12:0:0 dst=1");
        // Hour -1 of January 1 is 23:00 on December 31 of the year before.
        let l = z.mktime_known(&tm(2031, 1, 1, -1, 0, Some(false))).unwrap();
        assert_eq!(l.wall.format("%F %T").to_string(), "2030-12-31 23:00:00");
        // Month 13 is January of the next year.
        let l = z.mktime_known(&tm(2030, 13, 1, 0, 0, None)).unwrap();
        assert_eq!(l.wall.format("%F").to_string(), "2031-01-01");
    }

    #[test]
    fn localtime_knows_the_rules() {
        let z = zone("Australia/Lord_Howe");
        // 2030-10-05 15:30 UTC: 02:00 standard time becomes 02:30 DST.
        let l = z.localtime(1_917_444_599).unwrap();
        assert!(!l.isdst);
        assert_eq!(l.wall.format("%H:%M:%S").to_string(), "01:59:59");
        let l = z.localtime(1_917_444_600).unwrap();
        assert!(l.isdst);
        assert_eq!(l.wall.format("%H:%M:%S").to_string(), "02:30:00");
    }

    #[test]
    fn a_fixed_offset_never_has_dst() {
        let z = Zone::Fixed(19_800);
        let l = z.localtime(0).unwrap();
        assert_eq!(l.wall.format("%F %T").to_string(), "1970-01-01 05:30:00");
        assert!(!l.isdst);
        let back = z.mktime_known(&Tm::of(l.wall, Some(false))).unwrap();
        assert_eq!(back.unix, 0);
        assert_eq!(z.describe(), "UTC+05:30");
    }

    #[test]
    fn tz_values() {
        assert_eq!(Zone::from_tz(Some(":UTC")), Some(Zone::Named(Tz::UTC)));
        assert_eq!(Zone::from_tz(Some("Nowhere/Special")), None);
        assert_eq!(Zone::from_tz(None), None);
    }
}
