//! What a finished program's exit and output mean for the run: pure
//! functions, so every rule is tested without a host.

use regex::{Regex, RegexBuilder};

/// Compiles an output pattern; `^` and `$` match at each line.
pub fn pattern(p: &str) -> Result<Regex, String> {
    RegexBuilder::new(p)
        .multi_line(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// `text` with each secret value replaced by `[NAME]`, longest first, so
/// a tail cut later can never split one.
pub fn mask(text: &str, secrets: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = secrets.iter().filter(|(_, v)| v.len() >= 4).collect();
    sorted.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let mut out = text.to_owned();
    for (name, value) in sorted {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), &format!("[{name}]"));
        }
    }
    out
}

/// The last `lines` lines of `text`, at most `max_bytes` of them, cut at
/// a line's start; and how many lines were left out before them.
pub fn tail(text: &str, lines: usize, max_bytes: usize) -> (String, usize) {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() || lines == 0 {
        return (String::new(), trimmed.lines().count());
    }
    let all: Vec<&str> = trimmed.split('\n').collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for line in all.iter().rev() {
        if kept.len() == lines || (bytes + line.len() + 1 > max_bytes && !kept.is_empty()) {
            break;
        }
        // One line longer than the cap: keep its end.
        let line = if line.len() + 1 > max_bytes {
            let mut start = line.len() - (max_bytes - 1);
            while !line.is_char_boundary(start) {
                start += 1;
            }
            &line[start..]
        } else {
            line
        };
        bytes += line.len() + 1;
        kept.push(line);
    }
    let skipped = all.len() - kept.len();
    kept.reverse();
    (kept.join("\n"), skipped)
}

/// How the run ended, before it is written up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exited with a success code; no pattern objected.
    Ok,
    /// Success by its code and patterns, but the output passed the cap,
    /// so `fail_on` did not see all of it.
    Unsure(String),
    /// Did not succeed; why, in one line.
    Failed(String),
}

/// The inputs of [`judge`].
pub struct Judged<'a> {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub success_codes: &'a [i32],
    /// Both streams, masked.
    pub output: &'a str,
    pub fail_on: Option<&'a Regex>,
    pub ok_if: Option<&'a Regex>,
    pub truncated: bool,
}

/// Judges a finished program: its exit code first, then `fail_on`, then
/// `ok_if`.
pub fn judge(j: &Judged<'_>) -> Verdict {
    match j.code {
        None => {
            return Verdict::Failed(format!(
                "was killed by signal {}",
                j.signal.unwrap_or_default()
            ));
        }
        Some(code) if !j.success_codes.contains(&code) => {
            let codes = if j.success_codes == [0] {
                String::new()
            } else {
                format!(" (success_codes = {:?})", j.success_codes)
            };
            return Verdict::Failed(format!("exited with {code}{codes}"));
        }
        Some(_) => {}
    }
    if let Some(re) = j.fail_on
        && let Some(m) = re.find(j.output)
    {
        let line = line_around(j.output, m.start());
        return Verdict::Failed(format!(
            "output matched fail_on `{}`: {}",
            re.as_str(),
            clip(line, 200)
        ));
    }
    if let Some(re) = j.ok_if
        && !re.is_match(j.output)
    {
        let cut = if j.truncated {
            " in the output kept (it passed the job's output cap)"
        } else {
            ""
        };
        return Verdict::Failed(format!("output never matched ok_if `{}`{cut}", re.as_str()));
    }
    if j.truncated && j.fail_on.is_some() {
        return Verdict::Unsure(
            "its output passed the job's output cap (grants.limits.output), so fail_on saw only the start".into(),
        );
    }
    Verdict::Ok
}

/// The whole line `at` falls in.
fn line_around(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[start..end].trim()
}

/// At most `max` bytes of `s`, cut at a character, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged<'a>(code: Option<i32>, output: &'a str) -> Judged<'a> {
        Judged {
            code,
            signal: Some(9),
            success_codes: &[0],
            output,
            fail_on: None,
            ok_if: None,
            truncated: false,
        }
    }

    #[test]
    fn the_exit_code_decides_first() {
        assert_eq!(judge(&judged(Some(0), "")), Verdict::Ok);
        assert_eq!(
            judge(&judged(Some(3), "")),
            Verdict::Failed("exited with 3".into())
        );
        assert_eq!(
            judge(&judged(None, "")),
            Verdict::Failed("was killed by signal 9".into())
        );
        let mut j = judged(Some(1), "");
        j.success_codes = &[0, 1];
        assert_eq!(judge(&j), Verdict::Ok);
    }

    #[test]
    fn patterns_fail_a_clean_exit() {
        let fail = pattern("(?i)^error").unwrap();
        let ok = pattern("^done$").unwrap();
        let mut j = judged(Some(0), "starting\nERROR: disk full\ndone\n");
        j.fail_on = Some(&fail);
        assert_eq!(
            judge(&j),
            Verdict::Failed("output matched fail_on `(?i)^error`: ERROR: disk full".into())
        );
        let mut j = judged(Some(0), "starting\nnot done yet\n");
        j.ok_if = Some(&ok);
        assert!(matches!(judge(&j), Verdict::Failed(m) if m.contains("never matched ok_if")));
        j.output = "starting\ndone\n";
        assert_eq!(judge(&j), Verdict::Ok);
        let mut j = judged(Some(0), "fine");
        j.fail_on = Some(&fail);
        j.truncated = true;
        assert!(matches!(judge(&j), Verdict::Unsure(_)));
    }

    #[test]
    fn the_tail_is_the_last_lines_within_the_byte_cap() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let (t, skipped) = tail(&text, 3, 1000);
        assert_eq!(t, "line 98\nline 99\nline 100");
        assert_eq!(skipped, 97);
        let (t, _) = tail(&text, 50, 20);
        assert_eq!(t, "line 99\nline 100");
        let long = "é".repeat(100);
        let (t, skipped) = tail(&long, 5, 11);
        assert!(t.len() <= 10 && long.ends_with(&t), "{t}");
        assert_eq!(skipped, 0);
        assert_eq!(tail("", 5, 100), (String::new(), 0));
    }

    #[test]
    fn secrets_are_masked_before_any_cut() {
        let secrets = vec![
            ("TOKEN".to_owned(), "s3cr3t-token-value".to_owned()),
            ("SHORT".to_owned(), "abc".to_owned()),
        ];
        let out = mask("token=s3cr3t-token-value abc\n", &secrets);
        assert_eq!(out, "token=[TOKEN] abc\n");
        // A tail that would begin inside the secret begins after its mask.
        let (t, _) = tail(&mask("x s3cr3t-token-value", &secrets), 1, 8);
        assert!(!t.contains("token-value"), "{t}");
    }
}
