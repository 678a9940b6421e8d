//! A crontab line's schedule as opsd must write it to fire when cron
//! fires: Vixie cron's fields read into sets, and its day-of-month /
//! day-of-week rule (AND when either field starts with `*`, OR
//! otherwise) said in opsd's dialect, or refused when opsd cannot say it.

use super::words::split_word;
use std::collections::BTreeSet;

/// A schedule translated for opsd, with what to review about it.
pub(super) struct Translated {
    pub(super) text: String,
    pub(super) review: Vec<String>,
}

/// The schedule at the start of a line (`@daily` or five fields) and the
/// rest of the line.
pub(super) fn schedule(line: &str) -> Result<(Translated, &str), String> {
    if let Some(at) = line.strip_prefix('@') {
        let (word, rest) = split_word(at);
        let known = [
            "reboot", "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
        ];
        if !known.contains(&word) {
            return Err(format!(
                "`@{word}` is not a schedule cron knows (@reboot, @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
            ));
        }
        let review = if word == "reboot" {
            vec!["@reboot: opsd runs it once when the daemon starts, not only when the machine boots".into()]
        } else {
            Vec::new()
        };
        return Ok((
            Translated {
                text: format!("@{word}"),
                review,
            },
            rest,
        ));
    }
    let mut fields = Vec::new();
    let mut rest = line;
    for _ in 0..5 {
        let (f, r) = split_word(rest);
        if f.is_empty() {
            return Err("a crontab line has five time fields, then the command".into());
        }
        fields.push(f);
        rest = r;
    }
    Ok((translate(&fields)?, rest))
}

/// The five fields as opsd must write them to fire when cron fires.
fn translate(f: &[&str]) -> Result<Translated, String> {
    let names = ["minute", "hour", "day of month", "month", "day of week"];
    let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    let mut sets = Vec::new();
    for i in 0..5 {
        let set =
            field(f[i], ranges[i], i).map_err(|e| format!("{} field `{}`: {e}", names[i], f[i]))?;
        sets.push(set);
    }
    let full = |i: usize| {
        let (lo, hi) = ranges[i];
        let hi = if i == 4 { 6 } else { hi };
        (lo..=hi).all(|v| sets[i].contains(&v))
    };
    let mut dow_set = sets[4].clone();
    if dow_set.remove(&7) {
        dow_set.insert(0);
    }
    let dow_full = (0..=6).all(|v| dow_set.contains(&v));
    let dom_full = full(2);
    let and = f[2].starts_with('*') || f[4].starts_with('*');
    let mut review = Vec::new();
    let (dom, dow) = if and {
        match (dom_full, dow_full) {
            (true, true) => ("*".to_owned(), "*".to_owned()),
            (true, false) => ("*".to_owned(), f[4].to_owned()),
            (false, true) => (f[2].to_owned(), "*".to_owned()),
            (false, false) => {
                return Err(format!(
                    "cron fires on days that match both `{}` (day of month) and `{}` (day of week), because one of them starts with `*`; opsd ORs two restricted day fields and has no way to say AND, so this line would fire on other days; write it as one job per weekday-of-month (`mon#1`...) or check the day in the command",
                    f[2], f[4]
                ));
            }
        }
    } else if dom_full || dow_full {
        review.push(format!(
            "cron ORs `{}` and `{}`, which is every day; written as `* *`",
            f[2], f[4]
        ));
        ("*".to_owned(), "*".to_owned())
    } else {
        (f[2].to_owned(), f[4].to_owned())
    };
    let text = format!("{} {} {dom} {} {dow}", f[0], f[1], f[3]);
    crate::schedule::Schedule::parse(&text)
        .map_err(|e| format!("`{text}` as opsd reads it: {e}"))?;
    Ok(Translated { text, review })
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 8] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A field as Vixie cron reads it: `*`, numbers, names (month and day
/// fields), ranges, `/step` after `*` or a range, lists.
fn field(text: &str, (lo, hi): (u32, u32), which: usize) -> Result<BTreeSet<u32>, String> {
    let number = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        let named = match which {
            3 => MONTHS
                .iter()
                .position(|m| *m == lower)
                .map(|i| i as u32 + 1),
            4 => DAYS.iter().position(|d| *d == lower).map(|i| i as u32),
            _ => None,
        };
        let n = match named {
            Some(n) => n,
            None => s
                .parse::<u32>()
                .map_err(|_| format!("`{s}` is not a number cron accepts here"))?,
        };
        if n < lo || n > hi {
            return Err(format!("{n} is outside {lo}-{hi}"));
        }
        Ok(n)
    };
    let mut set = BTreeSet::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step `{s}` is not a positive number"))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a)?, number(b)?)
        } else if step > 1 {
            return Err(format!(
                "`{item}`: cron steps only `*` or a range (`{range}-{hi}/{step}`)"
            ));
        } else {
            let n = number(range)?;
            (n, n)
        };
        if a > b {
            return Err(format!("range `{range}` runs backwards"));
        }
        set.extend((a..=b).step_by(step as usize));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_fields_follow_crons_or_and_and_rule() {
        let t = |s: &str| {
            let f: Vec<&str> = s.split(' ').collect();
            translate(&f).map(|t| t.text)
        };
        assert_eq!(t("0 0 1,15 * mon").unwrap(), "0 0 1,15 * mon");
        assert_eq!(t("0 0 * * mon-fri").unwrap(), "0 0 * * mon-fri");
        assert_eq!(t("*/15 * */1 * mon").unwrap(), "*/15 * * * mon");
        assert_eq!(t("0 0 */2 * *").unwrap(), "0 0 */2 * *");
        assert_eq!(t("0 0 */2 * 0-7").unwrap(), "0 0 */2 * *");
        assert_eq!(t("0 0 1-31 * mon").unwrap(), "0 0 * * *");
        assert!(
            t("0 0 */2 * mon")
                .unwrap_err()
                .contains("has no way to say AND")
        );
        assert!(t("0 0 1 * */2").is_err());
        assert!(t("0 0 L * *").is_err());
        assert!(t("0 0 * * 5#3").is_err());
        assert!(t("0 24 * * *").unwrap_err().contains("outside 0-23"));
        assert!(t("0 0 * * fri-mon").unwrap_err().contains("backwards"));
    }
}
