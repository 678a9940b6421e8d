//! What one check's answer means: healthy, a warning or a failure, in
//! one line an operator reads in a webhook at 3 a.m. No WebAssembly here,
//! so every rule is unit-tested natively.

use crate::config::Plan;

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warning,
    Failed,
}

/// What a check saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The final answer's status; none when no answer came.
    pub status: Option<u16>,
    /// Why no answer came.
    pub error: Option<String>,
    /// Milliseconds to the final response head.
    pub latency_ms: f64,
    /// The final response's `Location`, for a 3xx not followed.
    pub location: Option<String>,
    /// Whether `expect_body` was found, and how much was read looking.
    pub body: Option<BodyRead>,
    /// Whole days the server's certificate has left, or why unknown.
    pub cert_days: Option<Result<i64, String>>,
}

/// The body as far as it was read.
#[derive(Debug, Clone, Default)]
pub struct BodyRead {
    pub found: bool,
    pub bytes: usize,
    /// Why reading stopped before the end (the size cap, the deadline).
    pub stopped: Option<String>,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub level: Level,
    /// `NAME: answered 200 in 12 ms` or what was wrong.
    pub line: String,
}

/// Judges what `plan` saw. Every problem found is named, worst first.
pub fn judge(plan: &Plan, seen: &Seen) -> Verdict {
    let mut failed: Vec<String> = Vec::new();
    let mut warned: Vec<String> = Vec::new();
    match (&seen.cert_days, plan.cert_fail_days, plan.cert_warn_days) {
        (Some(Ok(days)), fail, warn) => {
            let left = if *days < 0 {
                format!("the certificate expired {} days ago", -days)
            } else {
                format!("the certificate expires in {days} days")
            };
            if *days < 0 || fail.is_some_and(|f| *days < f as i64) {
                failed.push(left);
            } else if warn.is_some_and(|w| *days < w as i64) {
                warned.push(left);
            }
        }
        (Some(Err(why)), fail, _) => {
            let text = format!("certificate expiry unknown: {why}");
            if fail.is_some() {
                failed.push(text);
            } else {
                warned.push(text);
            }
        }
        (None, ..) => {}
    }
    let Some(status) = seen.status else {
        let why = seen.error.clone().unwrap_or_else(|| "no answer".into());
        failed.insert(0, format!("no answer: {why}"));
        return Verdict {
            level: Level::Failed,
            line: format!("{}: {}", plan.name, failed.join("; ")),
        };
    };
    let said = format!("answered {status} in {:.0} ms", seen.latency_ms);
    let status_ok = if plan.expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        plan.expect_status.contains(&status)
    };
    if !status_ok {
        let expected = if plan.expect_status.is_empty() {
            "2xx".to_owned()
        } else {
            plan.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let mut text = format!("expected {expected}");
        if (300..400).contains(&status) {
            match &seen.location {
                Some(to) => text.push_str(&format!(
                    " (a redirect to {}; set follow_redirects = true to follow it)",
                    shown_location(to)
                )),
                None => text.push_str(" (a redirect without a Location)"),
            }
        }
        failed.insert(0, text);
    }
    if let (Some(want), Some(body)) = (&plan.expect_body, &seen.body)
        && !body.found
    {
        let mut text = format!("the body does not contain {want:?}");
        if let Some(stopped) = &body.stopped {
            text.push_str(&format!(" (in the first {} bytes; {stopped})", body.bytes));
        }
        failed.push(text);
    }
    if let Some(max) = plan.max_latency_ms
        && seen.latency_ms > max as f64
    {
        failed.push(format!("slower than max_latency_ms ({max} ms)"));
    } else if let Some(warn) = plan.warn_latency_ms
        && seen.latency_ms > warn as f64
    {
        warned.push(format!("slower than warn_latency_ms ({warn} ms)"));
    }
    let (level, notes) = if !failed.is_empty() {
        (Level::Failed, failed)
    } else if !warned.is_empty() {
        (Level::Warning, warned)
    } else {
        (Level::Ok, Vec::new())
    };
    let mut line = format!("{}: {said}", plan.name);
    for n in notes {
        line.push_str("; ");
        line.push_str(&n);
    }
    if level == Level::Ok
        && let Some(Ok(days)) = &seen.cert_days
    {
        line.push_str(&format!("; certificate valid {days} more days"));
    }
    Verdict { level, line }
}

/// A `Location` as shown: no query (tokens), no control characters, at
/// most 200 characters; it is the server's text.
pub fn shown_location(location: &str) -> String {
    let no_query = location.split(['?', '#']).next().unwrap_or_default();
    let clean: String = no_query
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn plan(json: &str) -> Plan {
        opsd_sdk::config::parse::<Config>(&format!(r#"{{"checks":[{json}]}}"#))
            .unwrap()
            .plans()
            .unwrap()
            .remove(0)
    }

    fn seen(status: u16, ms: f64) -> Seen {
        Seen {
            status: Some(status),
            latency_ms: ms,
            ..Seen::default()
        }
    }

    #[test]
    fn status_latency_and_body_each_decide() {
        let p = plan(r#"{"url":"http://h/health","max_latency_ms":500,"warn_latency_ms":100}"#);
        let v = judge(&p, &seen(200, 12.0));
        assert_eq!(v.level, Level::Ok);
        assert_eq!(v.line, "http://h/health: answered 200 in 12 ms");
        let v = judge(&p, &seen(500, 12.0));
        assert_eq!(v.level, Level::Failed);
        assert_eq!(
            v.line,
            "http://h/health: answered 500 in 12 ms; expected 2xx"
        );
        assert_eq!(judge(&p, &seen(200, 150.0)).level, Level::Warning);
        let v = judge(&p, &seen(200, 900.0));
        assert_eq!(v.level, Level::Failed);
        assert!(
            v.line.ends_with("slower than max_latency_ms (500 ms)"),
            "{}",
            v.line
        );
        let p = plan(r#"{"url":"http://h/","expect_body":"\"ok\""}"#);
        let mut s = seen(200, 1.0);
        s.body = Some(BodyRead {
            found: false,
            bytes: 1 << 20,
            stopped: Some("read no further than 1 MiB".into()),
        });
        let v = judge(&p, &s);
        assert_eq!(v.level, Level::Failed);
        assert!(
            v.line
                .contains(r#"does not contain "\"ok\"" (in the first 1048576 bytes"#),
            "{}",
            v.line
        );
    }

    #[test]
    fn a_redirect_not_followed_says_where_without_its_query() {
        let p = plan(r#"{"url":"http://h/"}"#);
        let mut s = seen(302, 3.0);
        s.location = Some("https://login.example/sso?token=abc\u{1b}[2J".into());
        let v = judge(&p, &s);
        assert_eq!(v.level, Level::Failed);
        assert!(
            v.line
                .contains("a redirect to https://login.example/sso; set follow_redirects"),
            "{}",
            v.line
        );
        assert!(!v.line.contains("token"));
    }

    #[test]
    fn certificate_days_warn_then_fail() {
        let p = plan(r#"{"url":"https://h/","cert_warn_days":30,"cert_fail_days":7}"#);
        let with = |days: Result<i64, String>| {
            let mut s = seen(200, 1.0);
            s.cert_days = Some(days);
            judge(&p, &s)
        };
        assert_eq!(with(Ok(90)).level, Level::Ok);
        assert!(
            with(Ok(90))
                .line
                .ends_with("certificate valid 90 more days")
        );
        let v = with(Ok(10));
        assert_eq!(v.level, Level::Warning);
        assert!(
            v.line.ends_with("the certificate expires in 10 days"),
            "{}",
            v.line
        );
        assert_eq!(with(Ok(3)).level, Level::Failed);
        assert!(with(Ok(-2)).line.contains("expired 2 days ago"));
        assert_eq!(with(Err("openssl refused".into())).level, Level::Failed);
        // No answer at all: failed, the reason first.
        let v = judge(
            &p,
            &Seen {
                error: Some("connection refused".into()),
                ..Seen::default()
            },
        );
        assert_eq!(v.line, "https://h/: no answer: connection refused");
    }
}
