//! `dateext` names: the suffix a rotation gets (`-20261128` by default),
//! the glob that finds earlier ones, and their order. logrotate accepts
//! only `%Y %m %d %H %M %S %V %s` in `dateformat`; any other `%x` is
//! taken literally, as here.

use crate::zone::{Tm, Zone};
use chrono::{Datelike, NaiveDateTime, Timelike};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Conv(char),
}

/// A parsed `dateformat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    toks: Vec<Tok>,
    /// Glob matching any suffix this format makes.
    pub glob: String,
    /// Earlier rotations are ordered by the date in their names only for
    /// an explicit `dateformat`; otherwise by name, as logrotate does.
    pub sort_by_date: bool,
}

impl DateFormat {
    /// The format for a log set: its `dateformat`, or `-%Y%m%d`
    /// (`-%Y%m%d%H` when rotating hourly).
    pub fn new(dateformat: Option<&str>, hourly: bool) -> Result<DateFormat, String> {
        let (text, explicit) = match dateformat {
            Some(f) => (f.trim_start_matches(' '), true),
            None if hourly => ("-%Y%m%d%H", false),
            None => ("-%Y%m%d", false),
        };
        let mut toks = Vec::new();
        let mut glob = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                toks.push(Tok::Lit(c));
                glob.push(c);
                continue;
            }
            match chars.clone().next() {
                Some(conv @ ('Y' | 'm' | 'd' | 'H' | 'M' | 'S' | 'V')) => {
                    chars.next();
                    toks.push(Tok::Conv(conv));
                    glob.push_str(if conv == 'Y' {
                        "[0-9][0-9][0-9][0-9]"
                    } else {
                        "[0-9][0-9]"
                    });
                }
                Some('s') => {
                    chars.next();
                    toks.push(Tok::Conv('s'));
                    glob.push_str(&"[0-9]".repeat(10));
                }
                _ => {
                    toks.push(Tok::Lit('%'));
                    glob.push('%');
                }
            }
        }
        if glob.len() >= 127 {
            return Err(format!("Date format {text} is too long"));
        }
        Ok(DateFormat {
            toks,
            glob,
            sort_by_date: explicit,
        })
    }

    /// The suffix for local time `t`, which is the instant `unix` (for
    /// `%s`).
    pub fn render(&self, t: NaiveDateTime, unix: i64) -> String {
        let mut out = String::new();
        for tok in &self.toks {
            match tok {
                Tok::Lit(c) => out.push(*c),
                Tok::Conv('Y') => out.push_str(&format!("{:04}", t.year())),
                Tok::Conv('m') => out.push_str(&format!("{:02}", t.month())),
                Tok::Conv('d') => out.push_str(&format!("{:02}", t.day())),
                Tok::Conv('H') => out.push_str(&format!("{:02}", t.hour())),
                Tok::Conv('M') => out.push_str(&format!("{:02}", t.minute())),
                Tok::Conv('S') => out.push_str(&format!("{:02}", t.second())),
                Tok::Conv('V') => out.push_str(&format!("{:02}", t.iso_week().week())),
                Tok::Conv('s') => out.push_str(&unix.to_string()),
                Tok::Conv(_) => {}
            }
        }
        out
    }

    /// A sort key for the text after the log's base name, read the way
    /// logrotate reads it: strptime(3) with this format into a zeroed
    /// `struct tm` (fields not read stay zero, the DST flag says standard
    /// time), then mktime in `zone`; -1 where mktime fails, as there.
    pub fn sort_key(&self, text: &str, zone: &Zone) -> i64 {
        let (mut y, mut mo, mut d, mut h, mut mi, mut s) = (1900i64, 0i64, 0i64, 0i64, 0i64, 0i64);
        let mut epoch = None;
        let b = text.as_bytes();
        let mut i = 0;
        let digits = |i: &mut usize, max: usize| -> Option<i64> {
            let start = *i;
            while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
                *i += 1;
            }
            text[start..*i].parse().ok()
        };
        for tok in &self.toks {
            let ok = match tok {
                Tok::Lit(c) => {
                    let mut buf = [0u8; 4];
                    let enc = c.encode_utf8(&mut buf).as_bytes();
                    if b[i..].starts_with(enc) {
                        i += enc.len();
                        true
                    } else {
                        false
                    }
                }
                Tok::Conv('Y') => digits(&mut i, 4).map(|v| y = v).is_some(),
                Tok::Conv('m') => digits(&mut i, 2).map(|v| mo = v - 1).is_some(),
                Tok::Conv('d') => digits(&mut i, 2).map(|v| d = v).is_some(),
                Tok::Conv('H') => digits(&mut i, 2).map(|v| h = v).is_some(),
                Tok::Conv('M') => digits(&mut i, 2).map(|v| mi = v).is_some(),
                Tok::Conv('S') => digits(&mut i, 2).map(|v| s = v).is_some(),
                Tok::Conv('V') => digits(&mut i, 2).is_some(),
                Tok::Conv('s') => digits(&mut i, 20).map(|v| epoch = Some(v)).is_some(),
                Tok::Conv(_) => true,
            };
            if !ok {
                break;
            }
        }
        if let Some(e) = epoch {
            return e;
        }
        // mktime normalises: day 0 is the last day of the month before,
        // and so on.
        let tm = Tm {
            year: y,
            month: mo + 1,
            mday: d,
            hour: h,
            min: mi,
            sec: s,
            isdst: Some(false),
        };
        zone.mktime_known(&tm).map_or(-1, |l| l.unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 5, 9)
            .unwrap()
    }

    #[test]
    fn default_and_hourly_suffixes() {
        let f = DateFormat::new(None, false).unwrap();
        assert_eq!(f.render(at(2026, 3, 1, 7), 0), "-20260301");
        assert_eq!(f.glob, "-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]");
        assert!(!f.sort_by_date);
        let h = DateFormat::new(None, true).unwrap();
        assert_eq!(h.render(at(2026, 3, 1, 7), 0), "-2026030107");
    }

    #[test]
    fn custom_formats_render_glob_and_sort() {
        let f = DateFormat::new(Some(" .%d-%m-%Y_%H%%x"), false).unwrap();
        assert_eq!(f.render(at(2026, 3, 1, 7), 0), ".01-03-2026_07%%x");
        assert_eq!(
            f.glob,
            ".[0-9][0-9]-[0-9][0-9]-[0-9][0-9][0-9][0-9]_[0-9][0-9]%%x"
        );
        let utc = Zone::Fixed(0);
        assert!(f.sort_key(".01-03-2026_07", &utc) > f.sort_key(".28-02-2026_23", &utc));
        let s = DateFormat::new(Some("-%s"), false).unwrap();
        assert_eq!(s.render(at(2026, 3, 1, 0), 1_772_319_909), "-1772319909");
    }

    #[test]
    fn names_sort_as_logrotate_sorts_them_across_a_dst_change() {
        // Read with the standard-time flag, as strptime leaves it: the
        // order is the order of the local times, even around the
        // repeated hour, and a day 0 is the last of the month before.
        let berlin = Zone::from_tz(Some("Europe/Berlin")).unwrap();
        let f = DateFormat::new(Some("-%Y%m%d%H"), true).unwrap();
        let keys: Vec<i64> = ["-2030102701", "-2030102702", "-2030102703"]
            .iter()
            .map(|n| f.sort_key(n, &berlin))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(keys[1] - keys[0], 3600);
        let d = DateFormat::new(Some("-%Y%m%d"), false).unwrap();
        assert_eq!(
            d.sort_key("-20300400", &berlin),
            d.sort_key("-20300331", &berlin)
        );
    }
}
