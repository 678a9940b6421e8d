//! `opsd run --follow`: the plugin's log lines as they happen on stdout,
//! and its progress reports as a bar on stderr (when stderr is a
//! terminal; otherwise a line each tenth of the way).

use crate::record::LogLine;
use crate::runtime::log::LogEvent;
use std::io::{IsTerminal, Write};

/// Prints a followed run.
pub struct FollowPrinter {
    tty: bool,
    bar_shown: bool,
    last_tenth: Option<u64>,
}

impl Default for FollowPrinter {
    fn default() -> Self {
        Self::new()
    }
}

impl FollowPrinter {
    pub fn new() -> FollowPrinter {
        FollowPrinter {
            tty: std::io::stderr().is_terminal(),
            bar_shown: false,
            last_tenth: None,
        }
    }

    /// Shows one event.
    pub fn event(&mut self, ev: &LogEvent) {
        match ev {
            LogEvent::Line(line) => {
                self.clear_bar();
                let mut out = std::io::stdout().lock();
                let _ = out
                    .write_all(super::log_text(std::slice::from_ref::<LogLine>(line)).as_bytes());
                let _ = out.flush();
            }
            LogEvent::Progress {
                done,
                total,
                message,
            } => self.progress(*done, *total, message),
        }
    }

    fn progress(&mut self, done: u64, total: Option<u64>, message: &str) {
        let message = &*crate::escape::line(message);
        let mut err = std::io::stderr().lock();
        match total.filter(|t| *t > 0) {
            Some(total) if self.tty => {
                let width = 30usize;
                let filled = ((done.min(total) as f64 / total as f64) * width as f64) as usize;
                let _ = write!(
                    err,
                    "\r\x1b[2K[{}{}] {:>3}% {done}/{total} {message}",
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    done.min(total) * 100 / total
                );
                self.bar_shown = true;
            }
            Some(total) => {
                let tenth = done.min(total) * 10 / total;
                if self.last_tenth != Some(tenth) {
                    self.last_tenth = Some(tenth);
                    let _ = writeln!(err, "progress {}% ({done}/{total}) {message}", tenth * 10);
                }
            }
            None if self.tty => {
                let _ = write!(err, "\r\x1b[2K{done} {message}");
                self.bar_shown = true;
            }
            None => {}
        }
        let _ = err.flush();
    }

    fn clear_bar(&mut self) {
        if self.bar_shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.bar_shown = false;
        }
    }

    /// Clears the bar before the final report.
    pub fn finish(&mut self) {
        self.clear_bar();
    }
}
