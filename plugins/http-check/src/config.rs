//! The job's `[job.config]`: a list of checks, each a URL and what its
//! answer must be. Parsed and checked before any request goes out, so a
//! typo is a `bad-config` error naming the check, not a failed probe.

use serde::Deserialize;

/// `[job.config]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[[job.config.checks]]`: one per endpoint.
    pub checks: Vec<Check>,
}

/// One `[[job.config.checks]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// What summaries and metrics call it; the URL without its query
    /// (where tokens live) when absent.
    pub name: Option<String>,
    pub url: String,
    /// Status codes that count as healthy: one or a list; any 2xx when
    /// absent.
    pub expect_status: Option<StatusList>,
    /// Text the body must contain (read up to 1 MiB).
    pub expect_body: Option<String>,
    /// Slower than this to the response head: failed.
    pub max_latency_ms: Option<u64>,
    /// Slower than this: warning.
    pub warn_latency_ms: Option<u64>,
    /// The whole check (connect, head, the body read for `expect_body`).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Follow up to five 3xx `Location`s, each still inside the `net`
    /// grant; off by default, as `curl` without `-L`.
    #[serde(default)]
    pub follow_redirects: bool,
    /// HTTPS: a certificate expiring within this many days is a warning.
    /// Read with `openssl s_client`, which the job's `exec` grant must
    /// name.
    pub cert_warn_days: Option<u64>,
    /// HTTPS: within this many days (or expired) is a failure.
    pub cert_fail_days: Option<u64>,
}

/// `expect_status = 200` or `expect_status = [200, 204]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusList {
    One(u16),
    Many(Vec<u16>),
}

fn default_timeout() -> u64 {
    10_000
}

/// The pieces of an `http(s)://authority/path?query` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    pub https: bool,
    /// `host[:port]` as written (an IPv6 literal in brackets).
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    /// Parses an absolute http or https URL without a user part.
    pub fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an absolute http:// or https:// URL"))?;
        let https = match scheme {
            "https" => true,
            "http" => false,
            _ => {
                return Err(format!(
                    "`{url}`: only http:// and https:// URLs are checked"
                ));
            }
        };
        let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(cut);
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        if authority.contains('@') {
            return Err(format!(
                "`{url}` names a user; opsd sends no credentials in URLs"
            ));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "`{url}`: the host contains a space or control character"
            ));
        }
        let tail = tail.split('#').next().unwrap_or_default();
        let path = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{url}`: the path contains a space or control character"
            ));
        }
        Ok(Url {
            https,
            authority: authority.to_owned(),
            path,
        })
    }

    /// `https://host:port`: what the job's `net` grant must name.
    pub fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }

    /// The URL without its query: what is shown (queries carry tokens).
    pub fn shown(&self) -> String {
        format!(
            "{}{}",
            self.origin(),
            self.path.split('?').next().unwrap_or("/")
        )
    }

    /// The host without brackets and the port (443 or 80 by default).
    pub fn host_port(&self) -> (String, u16) {
        let default = if self.https { 443 } else { 80 };
        if let Some(rest) = self.authority.strip_prefix('[') {
            let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default);
            return (host.to_owned(), port);
        }
        match self.authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(default)),
            None => (self.authority.clone(), default),
        }
    }

    /// Where a `Location` header points, from this URL: absolute, or a
    /// path on the same origin.
    pub fn follow(&self, location: &str) -> Result<Url, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Url::parse(location)
        } else if location.starts_with("//") {
            Url::parse(&format!(
                "{}:{location}",
                if self.https { "https" } else { "http" }
            ))
        } else if location.starts_with('/') {
            Url::parse(&format!("{}{location}", self.origin()))
        } else {
            let dir = self
                .path
                .split('?')
                .next()
                .and_then(|p| p.rsplit_once('/'))
                .map_or("", |(d, _)| d);
            Url::parse(&format!("{}{dir}/{location}", self.origin()))
        }
    }
}

/// One check, checked: what a run acts on.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub url: Url,
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
    pub max_latency_ms: Option<u64>,
    pub warn_latency_ms: Option<u64>,
    pub timeout_ms: u64,
    pub follow_redirects: bool,
    pub cert_warn_days: Option<u64>,
    pub cert_fail_days: Option<u64>,
}

/// Longest a check may take: longer than any job timeout is a mistake.
const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;

impl Config {
    /// Every check, validated; the error names the check by its place.
    pub fn plans(&self) -> Result<Vec<Plan>, String> {
        if self.checks.is_empty() {
            return Err("no checks: add a [[job.config.checks]] table with a `url`".to_owned());
        }
        let mut plans: Vec<Plan> = Vec::new();
        for (i, c) in self.checks.iter().enumerate() {
            let at = format!("checks[{}]", i + 1);
            let url = Url::parse(&c.url).map_err(|e| format!("{at}: url {e}"))?;
            let expect_status = match &c.expect_status {
                None => Vec::new(),
                Some(StatusList::One(s)) => vec![*s],
                Some(StatusList::Many(v)) => v.clone(),
            };
            if c.expect_status.is_some() && expect_status.is_empty() {
                return Err(format!(
                    "{at}: expect_status is an empty list; leave it out for any 2xx"
                ));
            }
            if let Some(bad) = expect_status.iter().find(|s| !(100..=599).contains(*s)) {
                return Err(format!(
                    "{at}: expect_status {bad} is not an HTTP status (100 to 599)"
                ));
            }
            if c.timeout_ms == 0 || c.timeout_ms > MAX_TIMEOUT_MS {
                return Err(format!(
                    "{at}: timeout_ms must be from 1 to {MAX_TIMEOUT_MS}, not {}",
                    c.timeout_ms
                ));
            }
            if let (Some(w), Some(f)) = (c.warn_latency_ms, c.max_latency_ms)
                && w > f
            {
                return Err(format!(
                    "{at}: warn_latency_ms ({w}) is above max_latency_ms ({f}); the warning could never show"
                ));
            }
            if let Some(limit) = c.max_latency_ms.or(c.warn_latency_ms)
                && limit >= c.timeout_ms
            {
                return Err(format!(
                    "{at}: the latency limit ({limit} ms) must be below timeout_ms ({})",
                    c.timeout_ms
                ));
            }
            if (c.cert_warn_days.is_some() || c.cert_fail_days.is_some()) && !url.https {
                return Err(format!(
                    "{at}: cert_warn_days and cert_fail_days apply to https:// URLs, not {}",
                    url.shown()
                ));
            }
            if let (Some(w), Some(f)) = (c.cert_warn_days, c.cert_fail_days)
                && w < f
            {
                return Err(format!(
                    "{at}: cert_warn_days ({w}) is below cert_fail_days ({f}); the warning could never show"
                ));
            }
            if matches!(&c.expect_body, Some(b) if b.is_empty()) {
                return Err(format!(
                    "{at}: expect_body is empty; leave it out to not check the body"
                ));
            }
            let name = match &c.name {
                Some(n) if n.trim().is_empty() => {
                    return Err(format!("{at}: name is empty"));
                }
                Some(n) => n.clone(),
                None => url.shown(),
            };
            if plans.iter().any(|p| p.name == name) {
                return Err(format!(
                    "{at}: a second check named `{name}`; give one a `name`"
                ));
            }
            plans.push(Plan {
                name,
                url,
                expect_status,
                expect_body: c.expect_body.clone(),
                max_latency_ms: c.max_latency_ms,
                warn_latency_ms: c.warn_latency_ms,
                timeout_ms: c.timeout_ms,
                follow_redirects: c.follow_redirects,
                cert_warn_days: c.cert_warn_days,
                cert_fail_days: c.cert_fail_days,
            });
        }
        Ok(plans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(json: &str) -> Result<Vec<Plan>, String> {
        opsd_sdk::config::parse::<Config>(json)?.plans()
    }

    #[test]
    fn urls_split_and_show_no_query() {
        let u = Url::parse("https://[::1]:8443/health?token=s3cret#x").unwrap();
        assert_eq!(u.origin(), "https://[::1]:8443");
        assert_eq!(u.path, "/health?token=s3cret");
        assert_eq!(u.shown(), "https://[::1]:8443/health");
        assert_eq!(u.host_port(), ("::1".into(), 8443));
        let u = Url::parse("http://example.org?x").unwrap();
        assert_eq!((u.path.as_str(), u.host_port().1), ("/?x", 80));
        assert_eq!(
            u.follow("/moved").unwrap().shown(),
            "http://example.org/moved"
        );
        let deep = Url::parse("http://h/a/b").unwrap();
        assert_eq!(deep.follow("c").unwrap().path, "/a/c");
        assert_eq!(
            deep.follow("https://other:1/x").unwrap().origin(),
            "https://other:1"
        );
        for bad in [
            "ftp://x/",
            "example.org/health",
            "http:///x",
            "http://u:p@h/",
            "http://h/a b",
            "http://h/a\r\nX-Injected: 1",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_checks_are_refused_with_their_place() {
        for (json, says) in [
            (r#"{"checks":[]}"#, "no checks"),
            (r#"{"checks":[{"url":"x"}]}"#, "checks[1]: url"),
            (
                r#"{"checks":[{"url":"http://h/","expect_status":700}]}"#,
                "not an HTTP status",
            ),
            (
                r#"{"checks":[{"url":"http://h/","cert_warn_days":5}]}"#,
                "apply to https://",
            ),
            (
                r#"{"checks":[{"url":"http://h/","warn_latency_ms":9,"max_latency_ms":5}]}"#,
                "could never show",
            ),
            (
                r#"{"checks":[{"url":"http://h/","max_latency_ms":20000}]}"#,
                "below timeout_ms",
            ),
            (
                r#"{"checks":[{"url":"http://h/"},{"url":"http://h/?b"}]}"#,
                "checks[2]: a second check named",
            ),
            (
                r#"{"checks":[{"url":"http://h/","urls":1}]}"#,
                "unknown field",
            ),
        ] {
            let e = plans(json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
        let p =
            plans(r#"{"checks":[{"url":"https://h/x?t=1","expect_status":[200,204]}]}"#).unwrap();
        assert_eq!(p[0].name, "https://h/x");
        assert_eq!(p[0].expect_status, [200, 204]);
    }
}
