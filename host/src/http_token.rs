//! `[http] token` / `token_file`: the secret that lets a browser use the
//! web console's buttons (run now, cancel, enable, disable), and read its
//! pages at all on a listener off loopback. Kept out of `Debug` output
//! and compared in constant time.

use crate::diag::{Lines, Problems};
use sha2::{Digest, Sha256};
use std::path::Path;
use toml::Spanned;

/// Shorter tokens are refused: a guessable token guards nothing.
pub const MIN_TOKEN_LEN: usize = 16;

/// The console's token, as configured.
#[derive(Clone, PartialEq)]
pub struct HttpToken(String);

impl std::fmt::Debug for HttpToken {
    /// Never the token itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpToken(..)")
    }
}

impl HttpToken {
    /// A token from text already checked (tests, benches).
    pub fn new(text: &str) -> Result<HttpToken, String> {
        check(text).map(|()| HttpToken(text.to_owned()))
    }

    /// Whether `given` is the token, in time that does not depend on
    /// where they differ (both are hashed first, so not on their lengths
    /// either).
    pub fn matches(&self, given: &str) -> bool {
        same_secret(&self.0, given)
    }

    /// The token's bytes, to key the console's session MACs.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Compares two secrets in constant time: their SHA-256 digests, folded
/// with XOR so no early exit tells where they part.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn check(text: &str) -> Result<(), String> {
    if text.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "is shorter than {MIN_TOKEN_LEN} characters; make a long random one, e.g. `openssl rand -hex 32`"
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "holds spaces or control characters; use a long random one, e.g. `openssl rand -hex 32`"
                .into(),
        );
    }
    Ok(())
}

/// Reads `[http] token` or `token_file` (relative to the config's
/// directory); every problem names the line and says what to do. A token
/// written in `config` itself is refused when others may read that file:
/// on loopback the token is what keeps local accounts to reading.
pub(crate) fn read(
    token: Option<&Spanned<String>>,
    token_file: Option<&Spanned<String>>,
    config: &Path,
    base: &Path,
    lines: &Lines,
    problems: &mut Problems,
) -> Option<HttpToken> {
    match (token, token_file) {
        (None, None) => None,
        (Some(t), Some(_)) => {
            problems.push(
                lines.at(t),
                None,
                "[http] has both token and token_file; keep one (token_file keeps the secret out of this file)",
            );
            None
        }
        (Some(t), None) => match check(t.get_ref()) {
            Ok(()) => {
                use std::os::unix::fs::MetadataExt;
                if let Ok(m) = std::fs::metadata(config)
                    && m.mode() & 0o077 != 0
                {
                    let shown = config.display();
                    problems.push(
                        lines.at(t),
                        None,
                        format!(
                            "[http] token is in {shown}, which other users may read (mode {:o}); move it to token_file (mode 0600) or `chmod 600 {shown}`",
                            m.mode() & 0o777
                        ),
                    );
                    return None;
                }
                Some(HttpToken(t.get_ref().clone()))
            }
            Err(e) => {
                problems.push(lines.at(t), None, format!("[http] token {e}"));
                None
            }
        },
        (None, Some(f)) => {
            let path = base.join(f.get_ref());
            let shown = path.display();
            let fail = |problems: &mut Problems, message: String| {
                problems.push(lines.at(f), None, message);
                None
            };
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    return fail(
                        problems,
                        format!(
                            "[http] token_file {shown}: {e}; write the token there (e.g. `openssl rand -hex 32 > {shown}; chmod 600 {shown}`)"
                        ),
                    );
                }
            };
            {
                use std::os::unix::fs::MetadataExt;
                if let Ok(m) = std::fs::metadata(&path)
                    && m.mode() & 0o077 != 0
                {
                    return fail(
                        problems,
                        format!(
                            "[http] token_file {shown} may be read by other users (mode {:o}); `chmod 600 {shown}`",
                            m.mode() & 0o777
                        ),
                    );
                }
            }
            let text = text.trim_end_matches(['\n', '\r']);
            match check(text) {
                Ok(()) => Some(HttpToken(text.to_owned())),
                Err(e) => fail(
                    problems,
                    format!("[http] token_file {shown}: the token {e}"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_never_show() {
        let t = HttpToken::new("0123456789abcdef-xyz").unwrap();
        assert!(t.matches("0123456789abcdef-xyz"));
        assert!(!t.matches("0123456789abcdef-xy"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "HttpToken(..)");
        assert!(HttpToken::new("short").is_err());
        assert!(HttpToken::new("0123456789abcdef xyz").is_err());
    }

    /// A token written in a config file others may read is any local
    /// account's: refused, saying to move it to token_file or chmod 600.
    #[test]
    fn a_token_in_a_config_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("opsd.toml");
        let text = "data_dir = \"state\"\n[http]\ntoken = \"0123456789abcdef-xyz\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = crate::config::Config::parse(&path, text)
            .expect_err("a token in a world-readable config")
            .to_string();
        assert!(err.contains("other users may read"), "{err}");
        assert!(err.contains("token_file"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = crate::config::Config::parse(&path, text).expect("a private config");
        assert!(config.http_token.is_some());
    }
}
