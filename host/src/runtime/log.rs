//! A run's captured log: the plugin's log calls, its stdout and stderr,
//! and the host's own notes, in one capped list. Every line also goes to
//! tracing with the job and run id, and to anyone following the run live.

use crate::record::{Level, LogLine, Source};
pub use crate::secrets::Secrets;
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::broadcast;

/// Something a follower of a live run sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum LogEvent {
    Line(LogLine),
    Progress {
        done: u64,
        total: Option<u64>,
        message: String,
    },
}

struct Inner {
    lines: Vec<LogLine>,
    bytes: usize,
    dropped: u64,
    last_progress: Option<(u64, Option<u64>, String)>,
}

/// Shared handle to one run's log.
#[derive(Clone)]
pub struct RunLog {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
    cap: usize,
    job: Arc<str>,
    run_id: Arc<str>,
    /// Made when someone follows the run: a 1,024-event channel per run
    /// cost more than a trivial plugin's whole run.
    events: Arc<std::sync::OnceLock<broadcast::Sender<LogEvent>>>,
    /// Values of the job's granted environment variables, masked in
    /// every line: they are usually credentials.
    secrets: Arc<std::sync::OnceLock<Secrets>>,
}

/// What one log line costs against the cap besides its text (its time,
/// level and source, and the daemon log event it makes).
const LINE_COST: usize = 64;

impl RunLog {
    /// A log that keeps at most `cap` bytes of messages.
    pub fn new(job: &str, run_id: &str, cap: usize) -> RunLog {
        RunLog {
            inner: Arc::new(Mutex::new(Inner {
                lines: Vec::new(),
                bytes: 0,
                dropped: 0,
                last_progress: None,
            })),
            started: Instant::now(),
            cap,
            job: job.into(),
            run_id: run_id.into(),
            events: Default::default(),
            secrets: Default::default(),
        }
    }

    /// Masks these values in every line from now on (set once, before the
    /// plugin runs).
    pub fn mask(&self, secrets: Secrets) {
        let _ = self.secrets.set(secrets);
    }

    /// Length of the longest value masked (0 without secrets).
    fn longest_secret(&self) -> usize {
        self.secrets.get().map(Secrets::longest).unwrap_or(0)
    }

    fn masked<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        match self.secrets.get() {
            Some(s) => s.masked(text),
            None => text.into(),
        }
    }

    /// Receives lines and progress as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<LogEvent> {
        self.events
            .get_or_init(|| broadcast::channel(1024).0)
            .subscribe()
    }

    fn send(&self, event: LogEvent) {
        if let Some(events) = self.events.get() {
            let _ = events.send(event);
        }
    }

    /// Adds one line.
    pub fn push(&self, level: Level, source: Source, message: &str) {
        let message: &str = &self.masked(message);
        let job = &*self.job;
        let run = &*self.run_id;
        // Past the cap nothing more is kept or logged: a plugin that
        // floods its log floods neither the daemon's log nor the journal.
        // Each line costs its bytes and a line's bookkeeping, so empty
        // lines are no way around the cap.
        let cost = message.len() + LINE_COST;
        if let Ok(mut inner) = self.inner.lock()
            && inner.bytes + cost > self.cap
        {
            inner.dropped += 1;
            return;
        }
        {
            // The daemon's own log: one line per message, so a plugin
            // cannot write a line that reads like one of the host's.
            let message = crate::escape::line(message);
            let source = source.as_str();
            match level {
                Level::Error => tracing::error!(job, run, source, "{message}"),
                Level::Warn => tracing::warn!(job, run, source, "{message}"),
                Level::Info => tracing::info!(job, run, source, "{message}"),
                Level::Debug | Level::Trace => tracing::debug!(job, run, source, "{message}"),
            }
        }
        let line = LogLine {
            ms: self.started.elapsed().as_millis() as u64,
            level,
            source,
            message: message.into(),
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.bytes + cost > self.cap {
            inner.dropped += 1;
            return;
        }
        inner.bytes += cost;
        inner.lines.push(line.clone());
        drop(inner);
        self.send(LogEvent::Line(line));
    }

    /// Records progress; only the latest is kept.
    pub fn progress(&self, done: u64, total: Option<u64>, message: &str) {
        let message: &str = &self.masked(message);
        if let Ok(mut inner) = self.inner.lock() {
            inner.last_progress = Some((done, total, message.to_owned()));
        }
        self.send(LogEvent::Progress {
            done,
            total,
            message: message.into(),
        });
    }

    /// The latest progress report (done, total, message), if any: what a
    /// page opened mid-run shows before the next one arrives.
    pub fn last_progress(&self) -> Option<(u64, Option<u64>, String)> {
        self.inner.lock().ok()?.last_progress.clone()
    }

    /// Lines refused because the log had reached its cap.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().map(|i| i.dropped).unwrap_or(0)
    }

    /// The captured lines, with a note at the end when the cap cut some.
    pub fn lines(&self) -> Vec<LogLine> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let mut lines = inner.lines.clone();
        if inner.dropped > 0 {
            lines.push(LogLine {
                ms: self.started.elapsed().as_millis() as u64,
                level: Level::Warn,
                source: Source::Host,
                message: format!(
                    "{} more lines dropped: the run's log passed its cap of {} bytes (grants.limits.log)",
                    inner.dropped, self.cap
                ),
            });
        }
        lines
    }

    /// What the plugin last said on stderr before dying: a Rust panic's
    /// "panicked at FILE:LINE:" and its message when there is one,
    /// otherwise the last line that is not a hint about backtraces.
    pub fn last_words(&self) -> Option<String> {
        let inner = self.inner.lock().ok()?;
        let stderr: Vec<&str> = inner
            .lines
            .iter()
            .filter(|l| l.source == Source::Stderr && !l.message.trim().is_empty())
            .map(|l| l.message.trim())
            .collect();
        if let Some(i) = stderr.iter().rposition(|l| l.contains("panicked at")) {
            let at = stderr[i]
                .split("panicked at")
                .nth(1)
                .unwrap_or("")
                .trim()
                .trim_end_matches(':');
            let message = stderr
                .get(i + 1)
                .filter(|m| !m.starts_with("note: run with"));
            return Some(match message {
                Some(m) => format!("panicked at {at}: {m}"),
                None => format!("panicked at {at}"),
            });
        }
        stderr
            .iter()
            .rev()
            .find(|l| !l.starts_with("note: run with"))
            .map(|l| l.to_string())
    }

    /// A writer that turns bytes into lines from `source`.
    pub fn stream(&self, source: Source) -> LogStream {
        LogStream {
            log: self.clone(),
            source,
            partial: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// Guest stdout or stderr, split into log lines. Writes never fail, so a
/// chatty plugin is capped, not crashed.
#[derive(Clone)]
pub struct LogStream {
    log: RunLog,
    source: Source,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    fn write_bytes(&self, buf: &[u8]) {
        let Ok(mut partial) = self.partial.lock() else {
            return;
        };
        partial.extend_from_slice(buf);
        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            self.log
                .push(self.level(), self.source, text.trim_end_matches('\r'));
        }
        if partial.len() > 64 * 1024 {
            // A line too long to wait for is cut, but never inside a
            // secret: mask what is here, and keep back a tail that could
            // be the start of one still arriving.
            let text = self
                .log
                .masked(&String::from_utf8_lossy(&partial))
                .into_owned();
            let keep = self.log.longest_secret().saturating_sub(1).min(text.len());
            let mut cut = text.len() - keep;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = text.split_at(cut);
            *partial = tail.as_bytes().to_vec();
            self.log.push(Level::Info, self.source, head);
        }
    }

    /// Stderr lines are warnings: that is where programs complain.
    fn level(&self) -> Level {
        if self.source == Source::Stderr {
            Level::Warn
        } else {
            Level::Info
        }
    }

    /// Emits a last line that had no newline.
    pub fn flush_partial(&self) {
        let Ok(mut partial) = self.partial.lock() else {
            return;
        };
        if !partial.is_empty() {
            let text = String::from_utf8_lossy(&partial).into_owned();
            partial.clear();
            drop(partial);
            self.log.push(self.level(), self.source, &text);
        }
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first_and_short_values_left_alone() {
        let s = Secrets::new(vec![
            ("PW".into(), "hunter2".into()),
            ("PW_LONG".into(), "hunter2hunter2".into()),
            ("FLAG".into(), "1".into()),
        ]);
        assert_eq!(
            s.mask("a=hunter2hunter2 b=hunter2 c=1"),
            "a=[PW_LONG] b=[PW] c=1"
        );
        let log = RunLog::new("j", "r", 1 << 20);
        log.mask(s);
        log.push(Level::Info, Source::Stderr, "password hunter2 rejected");
        assert_eq!(log.lines()[0].message, "password [PW] rejected");
    }

    #[test]
    fn a_secret_across_a_long_lines_cut_is_still_masked() {
        let log = RunLog::new("j", "r", 1 << 20);
        log.mask(Secrets::new(vec![("PW".into(), "hunter2secret".into())]));
        let s = log.stream(Source::Stdout);
        // The secret straddles the 64 KiB point where a line is cut.
        let mut first = vec![b'x'; 64 * 1024 - 3];
        first.extend_from_slice(b"hunter2s");
        s.write_bytes(&first);
        s.write_bytes(b"ecret and more\n");
        let all: String = log.lines().iter().map(|l| l.message.clone()).collect();
        assert!(
            !all.contains("hunter2") && !all.contains("ecret"),
            "a piece leaked"
        );
        assert!(all.contains("[PW] and more"), "{}", &all[all.len() - 40..]);
    }

    #[test]
    fn a_secret_is_masked_as_the_host_quotes_it_and_line_by_line() {
        let s = Secrets::new(vec![
            ("PW".into(), "ab\"cd\\1234".into()),
            (
                "KEY".into(),
                "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\n-----END KEY-----".into(),
            ),
        ]);
        let args = vec!["--password=ab\"cd\\1234".to_string()];
        assert_eq!(s.mask(&format!("{args:?}")), "[\"--password=[PW]\"]");
        assert_eq!(s.mask("line: MIIEvQIBADANBgkq"), "line: [KEY]");
    }

    #[test]
    fn empty_lines_count_against_the_cap() {
        let log = RunLog::new("j", "r", 64 * 100);
        for _ in 0..10_000 {
            log.push(Level::Info, Source::Plugin, "");
        }
        assert_eq!(log.dropped(), 10_000 - 100);
    }

    #[test]
    fn splits_lines_and_caps_volume() {
        // Each line costs its text and 64 bytes: two fit, not a third.
        let log = RunLog::new("j", "r", 200);
        let s = log.stream(Source::Stdout);
        s.write_bytes(b"hello\nwor");
        s.write_bytes(b"ld\n0123456789012345\n");
        s.flush_partial();
        let lines = log.lines();
        assert_eq!(lines[0].message, "hello");
        assert_eq!(lines[1].message, "world");
        assert_eq!(lines.len(), 3);
        assert!(
            lines[2].message.contains("1 more lines dropped"),
            "{:?}",
            lines[2]
        );
    }

    #[test]
    fn finds_a_panic_message() {
        let log = RunLog::new("j", "r", 1 << 20);
        let s = log.stream(Source::Stderr);
        s.write_bytes(b"\nthread '<unnamed>' panicked at src/lib.rs:60:24:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n");
        assert_eq!(
            log.last_words().unwrap(),
            "panicked at src/lib.rs:60:24: boom"
        );
    }
}
