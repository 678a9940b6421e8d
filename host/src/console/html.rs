//! HTML for the console, made by code: [`esc`] is the one way any text
//! reaches a page, so a plugin's summary, log line, metric name, artifact
//! path or error (and a job's or plugin's name) is shown, never obeyed,
//! by the browser. Terminal escape sequences and other control and
//! direction characters are shown as inert `\x1b` escapes, as `opsd
//! logs` shows them.

use chrono::{DateTime, Local, Utc};
use std::fmt::Write as _;

/// Text for HTML element content or a quoted attribute value: terminal
/// controls made visible (newlines too unless `multiline`), then `&`,
/// `<`, `>`, `"` and `'` as entities.
pub fn esc_text(s: &str, multiline: bool) -> String {
    let shown = if multiline {
        crate::escape::block(s)
    } else {
        crate::escape::line(s)
    };
    let mut out = String::with_capacity(shown.len() + 16);
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of text, escaped (see [`esc_text`]).
pub fn esc(s: &str) -> String {
    esc_text(s, false)
}

/// Text that may span lines (details, a config), for a `<pre>`.
pub fn esc_block(s: &str) -> String {
    esc_text(s, true)
}

/// A path segment or query value, percent-encoded: safe in a URL and,
/// being ASCII letters, digits and `%-_.~`, in an attribute.
pub fn url(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time as the terminal tables show it (local, with weekday), in a
/// `<time>` element carrying the exact instant.
pub fn time(t: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        t.with_timezone(&Local).format("%a %Y-%m-%d %H:%M:%S %Z")
    )
}

pub use crate::diag::human_duration;

/// Milliseconds for people: `850 ms`, `12.4 s`, `3min 2s`.
pub fn millis(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => human_duration((ms / 1000) as i64),
    }
}

/// The CSS class of a status word: the terminal's colours (green ok,
/// yellow warning, red failed and timeout, blue running, grey the rest).
pub fn status_class(word: &str) -> &'static str {
    match word {
        "ok" | "ready" => "st-ok",
        "warning" | "high" | "shadowed" => "st-warn",
        "failed" | "timeout" | "broken" | "rejected" | "OVER" | "ACTIVE" => "st-fail",
        "running" => "st-run",
        _ => "st-other",
    }
}

/// A status word as a coloured badge.
pub fn badge(word: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        status_class(word),
        esc(word)
    )
}

/// A table from a header and rows of cells already made HTML.
pub fn table(class: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table class=\"{}\"><thead><tr>",
        esc(class)
    );
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let label = header.get(i).copied().unwrap_or("");
            let _ = write!(out, "<td data-label=\"{}\">{cell}</td>", esc(label));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_terminal_sequences_are_inert() {
        let hostile =
            "\"><img src=x onerror=alert(1)><script>x</script>\u{1b}[31mred\u{1b}]0;t\u{7}'";
        let shown = esc(hostile);
        assert!(!shown.contains('<') && !shown.contains('>') && !shown.contains('"'));
        assert!(!shown.contains('\'') && !shown.contains('\u{1b}'));
        assert!(shown.contains("\\x1b[31mred"), "{shown}");
        assert_eq!(esc("a\nb"), "a\\nb");
        assert_eq!(esc_block("a\nb<"), "a\nb&lt;");
        assert_eq!(url("a b/\"<"), "a%20b%2F%22%3C");
    }
}
