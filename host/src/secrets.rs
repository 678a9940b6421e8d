//! The values of a job's granted environment variables, kept out of every
//! log line, record, refusal and report: they are usually credentials.
//! At the bottom of the crate so the grants (refusals) and the runtime
//! (logs) mask the same way.

/// Values to keep out of logs, records and reports, with their names.
#[derive(Clone, Debug, Default)]
pub struct Secrets(Vec<(String, String)>);

/// Shorter values are not masked: they would mangle ordinary text, and
/// are no secret.
const MIN_SECRET_LEN: usize = 4;

impl Secrets {
    /// The values of `vars` worth masking.
    pub fn new(vars: Vec<(String, String)>) -> Secrets {
        let mut v: Vec<(String, String)> = Vec::new();
        for (name, value) in vars {
            // As the host itself may quote it (a program's arguments are
            // shown as a TOML array, which escapes `"`, `\` and control
            // characters; tracing's `{:?}` escapes a little differently),
            // and line by line when it spans lines (a PEM key): logs are
            // split at newlines before they are masked.
            let json = serde_json::to_string(&value).unwrap_or_default();
            let debug = format!("{value:?}");
            let quoted: Vec<String> = [json, debug]
                .into_iter()
                .filter(|q| q.len() >= 2)
                .map(|q| q[1..q.len() - 1].to_owned())
                .filter(|q| *q != value)
                .collect();
            let lines: Vec<String> = if value.contains('\n') {
                value
                    .lines()
                    .map(|l| l.trim_end_matches('\r').to_owned())
                    .filter(|l| l.len() >= 8)
                    .collect()
            } else {
                Vec::new()
            };
            for q in quoted {
                v.push((name.clone(), q));
            }
            v.extend(lines.into_iter().map(|l| (name.clone(), l)));
            v.push((name, value));
        }
        v.retain(|(_, value)| value.len() >= MIN_SECRET_LEN);
        // Longest first, so a value containing another is masked whole.
        v.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        Secrets(v)
    }

    /// Length of the longest value masked (0 without any): how far back a
    /// cut must look for a value it may have split.
    pub fn longest(&self) -> usize {
        self.0.iter().map(|(_, v)| v.len()).max().unwrap_or(0)
    }

    /// `text` with every secret value replaced by `[NAME]`.
    pub fn mask(&self, text: &str) -> String {
        self.masked(text).into_owned()
    }

    /// Like [`Secrets::mask`], copying only when something is masked:
    /// every log line passes through here.
    pub fn masked<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for (name, value) in &self.0 {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("[{name}]")).into();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Secrets;

    /// However the host quotes a value (a program's arguments as a TOML
    /// array, tracing's `{:?}`), the secret is masked in that form too.
    #[test]
    fn a_secret_is_masked_as_it_is_quoted() {
        let value = "pa\"ss\\wo\u{1}rd-42";
        let s = Secrets::new(vec![("DB_PASSWORD".into(), value.into())]);
        for shown in [
            crate::diag::toml_strings(&["-p", value]),
            format!("{:?}", [value]),
            value.to_owned(),
        ] {
            let masked = s.mask(&shown);
            assert!(masked.contains("[DB_PASSWORD]"), "{shown} -> {masked}");
            assert!(!masked.contains("wo"), "{shown} -> {masked}");
        }
    }
}
