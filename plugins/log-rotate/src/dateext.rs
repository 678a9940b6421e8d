//! `dateext` names: the suffix a rotation gets (`-20261128` by default),
//! the glob that finds earlier ones, and their order. logrotate accepts
//! only `%Y %m %d %H %M %S %V %s` in `dateformat`; any other `%x` is
//! taken literally, as here.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

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

    /// The suffix for local time `t`; `offset_secs` east of UTC makes `%s`.
    pub fn render(&self, t: NaiveDateTime, offset_secs: i64) -> String {
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
                Tok::Conv('s') => {
                    out.push_str(&(t.and_utc().timestamp() - offset_secs).to_string())
                }
                Tok::Conv(_) => {}
            }
        }
        out
    }

    /// A sort key for the text after the log's base name, read the way
    /// strptime(3) reads it with this format: fields not read stay zero.
    pub fn sort_key(&self, text: &str, offset_secs: i64) -> i64 {
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
        // mktime-style normalisation: day 0 is the last day of the month
        // before, and so on.
        let month_start = NaiveDate::from_ymd_opt(
            (y + mo.div_euclid(12)) as i32,
            (mo.rem_euclid(12) + 1) as u32,
            1,
        )
        .unwrap_or(NaiveDate::MIN);
        let days = month_start.num_days_from_ce() as i64 + d - 1;
        days * 86_400 + h * 3600 + mi * 60 + s - offset_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(f.sort_key(".01-03-2026_07", 0) > f.sort_key(".28-02-2026_23", 0));
        let s = DateFormat::new(Some("-%s"), false).unwrap();
        assert_eq!(s.render(at(2026, 3, 1, 0), 3600), "-1772319909");
    }
}
