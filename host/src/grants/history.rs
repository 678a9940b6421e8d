//! `history = "own" | "all"`: whose run history the plugin may read. A
//! run's record can hold what another job's plugin saw (paths, hosts, a
//! database's name), so a plugin reads only its own job's history unless
//! the job is granted every job's, as a report is. Checked on each
//! `history` host call.

use super::{Explained, Kind};
use crate::diag::{Lines, Problems};
use toml::Spanned;

/// Whose run history the plugin may read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HistoryScope {
    #[default]
    Own,
    All,
}

words!(HistoryScope {
    Own => "own",
    All => "all",
});

impl HistoryScope {
    /// `own` (the default) or `all`; anything else is a problem naming
    /// both.
    pub(crate) fn from_raw(
        raw: Option<&Spanned<String>>,
        lines: &Lines,
        job: &str,
        problems: &mut Problems,
    ) -> HistoryScope {
        match raw.map(|h| (h, h.get_ref().as_str())) {
            None | Some((_, "own")) => HistoryScope::Own,
            Some((_, "all")) => HistoryScope::All,
            Some((h, other)) => {
                problems.push(
                    lines.at(h),
                    Some(job),
                    format!(
                        "grants.history = \"{other}\": say \"own\" (the job's own runs, the default) or \"all\" (every job's, for a report)"
                    ),
                );
                HistoryScope::Own
            }
        }
    }
}

impl Kind for HistoryScope {
    fn key(&self) -> &'static str {
        "history"
    }

    fn explain(&self) -> Explained {
        Explained::Whole(self.as_str().into())
    }
}
