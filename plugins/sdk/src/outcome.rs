//! Builders for [`Outcome`], so a plugin reads as what it reports.

use crate::{Artifact, Metric, Outcome, Status};

impl Outcome {
    /// A run that did its chore.
    pub fn ok(summary: impl Into<String>) -> Self {
        Self::with_status(Status::Ok, summary)
    }

    /// A run that did its chore but found something worth a look.
    pub fn warning(summary: impl Into<String>) -> Self {
        Self::with_status(Status::Warning, summary)
    }

    /// A run that did not do its chore, with metrics still worth keeping.
    pub fn failed(summary: impl Into<String>) -> Self {
        Self::with_status(Status::Failed, summary)
    }

    /// The outcome of a run that collects problems as it goes: failed
    /// when there are errors (the count and the first one appended to the
    /// summary), warning when there are only warnings (the first one
    /// appended), ok otherwise; the details list every error, then every
    /// warning, then `notes`.
    pub fn from_findings(
        summary: impl Into<String>,
        errors: &[String],
        warnings: &[String],
        notes: &[String],
    ) -> Self {
        let mut summary = summary.into();
        let status = if let Some(first) = errors.first() {
            let plural = if errors.len() == 1 { "" } else { "s" };
            summary.push_str(&format!("; {} error{plural}: {first}", errors.len()));
            Status::Failed
        } else if let Some(first) = warnings.first() {
            summary.push_str(&format!("; {first}"));
            Status::Warning
        } else {
            Status::Ok
        };
        let details: Vec<&str> = errors
            .iter()
            .chain(warnings)
            .chain(notes)
            .map(String::as_str)
            .collect();
        Self::with_status(status, summary).details(details.join("\n"))
    }

    /// An outcome with the given status and nothing else yet.
    pub fn with_status(status: Status, summary: impl Into<String>) -> Self {
        Self {
            status,
            summary: summary.into(),
            details: String::new(),
            metrics: Vec::new(),
            artifacts: Vec::new(),
        }
    }

    /// Adds free-text details.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Adds a metric; `unit` is for people (`bytes`, `seconds`).
    pub fn metric(mut self, name: &str, value: f64, unit: Option<&str>) -> Self {
        self.metrics.push(Metric {
            name: name.into(),
            value,
            unit: unit.map(str::to_owned),
        });
        self
    }

    /// Adds an artifact the run produced.
    pub fn artifact(mut self, artifact: Artifact) -> Self {
        self.artifacts.push(artifact);
        self
    }
}
