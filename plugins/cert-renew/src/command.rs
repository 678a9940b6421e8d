//! `mode = "command"`: what `certbot renew` (or a program that reports the
//! same way) said it did.

/// Counts from certbot's summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertbotSummary {
    /// Certificate paths renewed.
    pub renewed: Vec<String>,
    /// Certificate paths not due yet.
    pub skipped: Vec<String>,
    /// Certificate paths that failed to renew.
    pub failed: Vec<String>,
    /// certbot's own one-line verdict, when it printed one.
    pub verdict: Option<String>,
}

/// Reads certbot's end-of-run summary: lines ending in `(success)`,
/// `(skipped)` or `(failure)`, and the verdict lines around them.
pub fn parse_certbot(output: &str) -> CertbotSummary {
    let mut s = CertbotSummary::default();
    for line in output.lines() {
        let t = line.trim();
        let path = || t.split_whitespace().next().unwrap_or("").to_owned();
        if t.ends_with("(success)") {
            s.renewed.push(path());
        } else if t.ends_with("(skipped)") {
            s.skipped.push(path());
        } else if t.ends_with("(failure)") {
            s.failed.push(path());
        } else if t.starts_with("Congratulations, all")
            || t.starts_with("No renewals were attempted")
            || t.starts_with("All renewals failed")
            || t.starts_with("All simulated renewals succeeded")
            || t.contains("renew failure(s)")
        {
            s.verdict = Some(t.trim_end_matches(':').to_owned());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_mixed_run() {
        // certbot 2.x's summary after one renewal, one skip, one failure.
        let out = "\
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Processing /etc/letsencrypt/renewal/a.example.conf
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
The following certificates are not due for renewal yet:
  /etc/letsencrypt/live/b.example/fullchain.pem expires on 2027-01-30 (skipped)
Congratulations, all renewals succeeded:
  /etc/letsencrypt/live/a.example/fullchain.pem (success)
The following renewals failed:
  /etc/letsencrypt/live/c.example/fullchain.pem (failure)
1 renew failure(s), 0 parse failure(s)
";
        let s = parse_certbot(out);
        assert_eq!(s.renewed, ["/etc/letsencrypt/live/a.example/fullchain.pem"]);
        assert_eq!(s.skipped, ["/etc/letsencrypt/live/b.example/fullchain.pem"]);
        assert_eq!(s.failed, ["/etc/letsencrypt/live/c.example/fullchain.pem"]);
        assert_eq!(
            s.verdict.as_deref(),
            Some("1 renew failure(s), 0 parse failure(s)")
        );
    }

    #[test]
    fn nothing_due() {
        let s = parse_certbot(
            "The following certificates are not due for renewal yet:\n  /etc/letsencrypt/live/x/fullchain.pem expires on 2027-01-01 (skipped)\nNo renewals were attempted.\n",
        );
        assert_eq!(s.skipped.len(), 1);
        assert!(s.renewed.is_empty());
        assert_eq!(s.verdict.as_deref(), Some("No renewals were attempted."));
    }
}
