//! Plugin text made safe to show: a plugin (and every program it starts)
//! chooses the bytes of its summary, errors, log lines, metric names and
//! description, and an operator's terminal or log reader must not take
//! any of them for a command (ANSI and OSC sequences that set the title,
//! clear the screen or rewrite a line) or for a line the host wrote. As
//! `systemctl` and `journalctl` do, control characters are shown escaped;
//! `--json` output keeps the exact text, JSON-escaped.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters a terminal acts on or that reorder what it shows: C0 and
/// C1 controls, DEL, and Unicode's bidirectional and invisible format
/// characters (a right-to-left override makes `gpj.exe` read `exe.jpg`).
fn is_unsafe(c: char) -> bool {
    c.is_control() || opsd_report_core::render::is_format_char(c)
}

fn escaped(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_unsafe(c) || keep(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// One line of plugin text (a summary, a log message, a name): every
/// control character escaped, newlines included, so it cannot start a
/// line of its own.
pub fn line(s: &str) -> Cow<'_, str> {
    escaped(s, |_| false)
}

/// Text that may span lines (a whole command's output): newlines and tabs
/// kept, every other control character escaped.
pub fn block(s: &str) -> Cow<'_, str> {
    escaped(s, |c| c == '\n' || c == '\t')
}

/// Plugin text that may span lines, shown under a label: each line after
/// the first indented by `indent`, so none can pass for a line of the
/// host's own.
pub fn indented(s: &str, indent: &str) -> String {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.split('\n')
        .map(|l| line(l).into_owned())
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

/// A JSON document for a terminal: the characters [`line`] escapes but
/// JSON itself does not (DEL, C1, bidirectional) written as `\uXXXX`,
/// which every JSON reader decodes back to the same text. Outside strings
/// a JSON document holds only ASCII punctuation, so this touches strings
/// only.
pub fn json(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_in_json) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_in_json(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_unsafe_in_json(c: char) -> bool {
    // serde_json escapes the C0 controls itself; the newlines and tabs
    // left are its own layout.
    is_unsafe(c) && !matches!(c, '\0'..='\u{1f}')
}

/// The daemon's log writer: each event is written as one line, with the
/// newlines and carriage returns inside it (a plugin's message, a path it
/// named in a refusal) shown escaped, so no text a plugin chose starts a
/// line that reads like one of the host's, and every other control or
/// direction character is escaped too, tabs included (with colours on,
/// the formatter's own colour sequences pass, and no other).
pub struct LogLines<W> {
    pub out: W,
    pub colours: bool,
    /// JSON lines (`--log-format json`): already one line each, kept
    /// valid with [`json`].
    pub json: bool,
}

impl<W: std::io::Write> std::io::Write for LogLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, "\n"),
            None => (buf, ""),
        };
        let text = String::from_utf8_lossy(body);
        let shown = if self.json {
            json(&text).into_owned()
        } else if self.colours {
            colour_sequences_kept(&text)
        } else {
            escaped(&text, |_| false).into_owned()
        };
        // All of `buf` is taken in one go: an event is never split.
        self.out.write_all(format!("{shown}{end}").as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Like [`line`], but the formatter's colour sequences
/// (`ESC [ digits ; m`, SGR) pass: any other escape sequence (a title,
/// the clipboard, cursor moves) is shown escaped.
fn colour_sequences_kept(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\u{1b}') {
        out.push_str(&escaped(&rest[..at], |_| false));
        let after = &rest[at + 1..];
        let sgr = after.strip_prefix('[').and_then(|a| {
            let len = a.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            a[len..].starts_with('m').then_some(len + 2)
        });
        match sgr {
            Some(len) => {
                out.push_str(&rest[at..at + 1 + len]);
                rest = &after[len..];
            }
            None => {
                out.push_str("\\x1b");
                rest = after;
            }
        }
    }
    out.push_str(&escaped(rest, |_| false));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_shown_not_obeyed() {
        let title = "\u{1b}]0;pwned\u{7}";
        assert_eq!(line(title), "\\x1b]0;pwned\\x07");
        assert_eq!(line("ok\r\nERROR forged"), "ok\\r\\nERROR forged");
        assert_eq!(block("a\nb\tc\u{1b}[2J"), "a\nb\tc\\x1b[2J");
        assert_eq!(line("\u{9b}31m"), "\\x9b31m");
        assert_eq!(line("gpj\u{202e}.exe"), "gpj\\u{202e}.exe");
        assert_eq!(line("plain ünïcode ✓"), "plain ünïcode ✓");
        assert!(matches!(line("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_log_event_stays_one_line() {
        use std::io::Write;
        let mut w = LogLines {
            out: Vec::new(),
            colours: false,
            json: false,
        };
        w.write_all("INFO msg\nERROR opsd::grants forged\r\x1b[2J\u{202e}\n".as_bytes())
            .unwrap();
        assert_eq!(
            String::from_utf8(w.out).unwrap(),
            "INFO msg\\nERROR opsd::grants forged\\r\\x1b[2J\\u{202e}\n"
        );
    }

    #[test]
    fn with_colours_only_colour_sequences_pass() {
        use std::io::Write;
        let mut w = LogLines {
            out: Vec::new(),
            colours: true,
            json: false,
        };
        w.write_all("\x1b[33mWARN\x1b[0m denied=\x1b]0;title\x1b\\\x1b[2J\x1b[31mred\n".as_bytes())
            .unwrap();
        assert_eq!(
            String::from_utf8(w.out).unwrap(),
            "\x1b[33mWARN\x1b[0m denied=\\x1b]0;title\\x1b\\\\x1b[2J\x1b[31mred\n"
        );
    }

    #[test]
    fn continuation_lines_are_indented() {
        assert_eq!(
            indented("first\ndenied: forged\n", "  "),
            "first\n  denied: forged"
        );
    }

    #[test]
    fn json_stays_json_and_carries_the_same_text() {
        let text = "a\u{1b}[2J\u{9b}b\u{202e}c\u{7f}";
        let doc = serde_json::to_string(&serde_json::json!({ "s": text })).unwrap();
        let safe = json(&doc);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["s"], text);
    }
}
