//! audit: the runbook's security checks as findings with stable IDs, the
//! runbook's severities (P0-P3) and a line saying how to fix each, diffed
//! against the previous run so an operator sees what is new and what was
//! resolved.

pub mod advisories;
pub mod config;
pub mod findings;
pub mod logwatch;
pub mod rate;
pub mod scan;

use config::Config;
use findings::{Finding, Severity, State};
use opsd_sdk::{Command, Context, ContextExt, Description, Outcome, Plugin, PluginError, Status};
use std::collections::BTreeMap;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["state_file"],
  "additionalProperties": false,
  "properties": {
    "state_file": {"type": "string", "description": "guest path where findings, the SUID baseline and log positions are kept"},
    "secrets": {"type": "object", "required": ["paths"], "additionalProperties": false,
      "properties": {"paths": {"type": "array", "items": {"type": "string"}},
        "names": {"type": "array", "items": {"type": "string"}, "description": "file name globs that hold secrets"}}},
    "backups": {"type": "object", "required": ["paths"], "additionalProperties": false,
      "properties": {"paths": {"type": "array", "items": {"type": "string"}}}},
    "world_writable": {"type": "object", "required": ["paths"], "additionalProperties": false,
      "properties": {"paths": {"type": "array", "items": {"type": "string"}}}},
    "suid": {"type": "object", "required": ["paths"], "additionalProperties": false,
      "properties": {"paths": {"type": "array", "items": {"type": "string"}}, "allow": {"type": "array", "items": {"type": "string"}}}},
    "certs": {"type": "object", "required": ["paths"], "additionalProperties": false,
      "properties": {"paths": {"type": "array", "items": {"type": "string"}},
        "warn_days": {"type": "integer", "default": 30}, "critical_days": {"type": "integer", "default": 7}}},
    "logs": {"type": "array", "items": {"type": "object", "required": ["path"], "additionalProperties": false,
      "properties": {"path": {"type": "string"},
        "patterns": {"type": "array", "items": {"type": "object", "required": ["name", "regex"], "additionalProperties": false,
          "properties": {"name": {"type": "string"}, "regex": {"type": "string"},
            "threshold": {"type": "integer", "minimum": 0, "default": 1}, "severity": {"enum": ["P0", "P1", "P2", "P3"]},
            "rate": {"type": "object", "required": ["above"], "additionalProperties": false, "description": "judge by a rate instead of a count: above = \"5%\" of the lines, or above = 30 with per = \"minute\"",
              "properties": {"above": {"type": ["string", "number"]}, "of": {"type": "string"}, "per": {"type": "string"},
                "window": {"type": "string", "description": "a duration such as \"1h\"; default: since the last run"},
                "min_lines": {"type": "integer", "minimum": 0, "default": 20}}}}}}}}},
    "npm_audit": {"type": "object", "required": ["dirs"], "additionalProperties": false,
      "properties": {"dirs": {"type": "array", "items": {"type": "string"}}, "program": {"type": "string"}}},
    "cargo_audit": {"type": "object", "required": ["dirs"], "additionalProperties": false,
      "properties": {"dirs": {"type": "array", "items": {"type": "string"}}, "program": {"type": "string"}}},
    "osv_scanner": {"type": "object", "required": ["dirs"], "additionalProperties": false,
      "properties": {"dirs": {"type": "array", "items": {"type": "string"}}, "program": {"type": "string"}}},
    "apt": {"type": "object", "additionalProperties": false,
      "properties": {"program": {"type": "string"}, "severity": {"enum": ["P0", "P1", "P2", "P3"]}}}
  }
}"#;

struct Audit;

/// What the run saw besides findings.
#[derive(Default)]
struct Run {
    findings: Vec<Finding>,
    /// Checks that could not be done: the run fails.
    errors: Vec<String>,
    /// Parts that could not be looked at (an unreadable directory).
    warnings: Vec<String>,
    notes: Vec<String>,
    metrics: BTreeMap<String, f64>,
}

impl Plugin for Audit {
    fn describe() -> Description {
        Description::new(
            "audit",
            env!("CARGO_PKG_VERSION"),
            "Security audit: secrets, permissions, SUID, certificates, log patterns, advisories, updates",
        )
        .wants_dir("/srv", false, "what to audit")
        .wants_dir("/var/lib/opsd", true, "the audit's state between runs")
        .wants_exec("npm")
        .wants_exec("apt")
        // apt asks dpkg for the machine's architectures.
        .wants_exec("dpkg")
        .config_schema(SCHEMA)
        .suggested_schedule("30 6 * * *")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        cfg.validate().map_err(|e| ctx.bad_config(e))?;
        let mut state = State::load(&cfg.state_file).map_err(|e| PluginError::other("state", e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut run = Run::default();
        check_files(&cfg, &mut state, now, &mut run);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        check_logs(&cfg, &mut state, now_ms, &mut run);
        check_scanners(&cfg, &mut run);
        run.findings
            .sort_by(|a, b| (a.severity, &a.id, &a.key).cmp(&(b.severity, &b.id, &b.key)));
        let diff = findings::diff(&state.findings, &run.findings);
        if !ctx.dry_run {
            state.findings = run.findings.clone();
            state
                .save(&cfg.state_file)
                .map_err(|e| PluginError::other("state", format!("saving the audit state: {e}")))?;
        }
        Ok(outcome(&run, &diff))
    }
}

fn check_files(cfg: &Config, state: &mut State, now: i64, run: &mut Run) {
    let (findings, warnings) = (&mut run.findings, &mut run.warnings);
    if let Some(s) = &cfg.secrets {
        scan::secrets(&s.paths, &s.names, findings, warnings);
    }
    if let Some(b) = &cfg.backups {
        scan::backups(&b.paths, findings, warnings);
    }
    if let Some(w) = &cfg.world_writable {
        scan::world_writable(&w.paths, findings, warnings);
    }
    if let Some(s) = &cfg.suid {
        let present = scan::suid_files(&s.paths, warnings);
        run.metrics
            .insert("suid_files".into(), present.len() as f64);
        match &state.suid_baseline {
            None => {
                run.notes.push(format!(
                    "SUID/SGID baseline recorded: {} files; later runs report any other",
                    present.len()
                ));
                state.suid_baseline = Some(present);
            }
            Some(base) => findings.extend(scan::suid_findings(&present, base, &s.allow)),
        }
    }
    if let Some(c) = &cfg.certs {
        scan::certs(c, now, findings, warnings);
    }
}

/// Counts patterns in each log and judges rates; `now` in unix milliseconds.
fn check_logs(cfg: &Config, state: &mut State, now: i64, run: &mut Run) {
    let mut lines = 0u64;
    for log in &cfg.logs {
        let patterns: Vec<regex::Regex> = log
            .patterns
            .iter()
            .filter_map(|p| regex::Regex::new(&p.regex).ok())
            .collect();
        let cursor = state.logs.entry(log.path.clone()).or_default();
        let scanned = match logwatch::scan(&log.path, cursor, &patterns) {
            Ok(s) => s,
            Err(e) => {
                run.errors.push(format!("reading {}: {e}", log.path));
                continue;
            }
        };
        lines += scanned.lines;
        run.notes.push(format!(
            "read {} lines: {}",
            scanned.lines,
            scanned.sources.join(", ")
        ));
        let samples = record_sample(log, state, &scanned, now);
        for (p, n) in log.patterns.iter().zip(&scanned.counts) {
            *run.metrics
                .entry(format!("log_matches_{}", p.name.replace('-', "_")))
                .or_default() += *n as f64;
            if let Some(spec) = &p.rate {
                // Checked by validate(); a rule that fails here is skipped.
                if let Ok(rate) = spec.check() {
                    judge_rate(log, p, &rate, samples, now, run);
                }
                continue;
            }
            if *n >= p.threshold {
                run.findings.push(Finding {
                    id: "log-pattern".into(),
                    key: format!("{}:{}", log.path, p.name),
                    severity: p.severity,
                    title: format!(
                        "{n} lines matched {} (/{}/) since the last run (threshold {})",
                        p.name, p.regex, p.threshold
                    ),
                    fix: format!("look at them: grep -E '{}' {}", p.regex, log.path),
                });
            }
        }
    }
    if !cfg.logs.is_empty() {
        run.metrics.insert("log_lines_read".into(), lines as f64);
    }
}

/// Adds this run's reading of `log` to the state's samples (pruned to the
/// longest window its patterns ask for) and returns them, oldest first.
fn record_sample<'s>(
    log: &config::Log,
    state: &'s mut State,
    scanned: &logwatch::Scanned,
    now: i64,
) -> &'s [rate::Sample] {
    let samples = state.log_samples.entry(log.path.clone()).or_default();
    let from = samples.last().map(|s| s.to);
    samples.push(rate::Sample {
        from,
        to: now,
        lines: scanned.lines,
        matches: log
            .patterns
            .iter()
            .zip(&scanned.counts)
            .map(|(p, n)| (p.name.clone(), *n))
            .collect(),
    });
    let longest = log
        .patterns
        .iter()
        .filter_map(|p| p.rate.as_ref()?.check().ok()?.window)
        .max();
    rate::prune(samples, longest, now);
    samples
}

/// A `log-rate` finding when the pattern's rate is past its threshold.
fn judge_rate(
    log: &config::Log,
    p: &config::Pattern,
    rate: &rate::Rate,
    samples: &[rate::Sample],
    now: i64,
    run: &mut Run,
) {
    let judged = rate.judge(&p.name, samples, now);
    let Some(value) = judged.value else {
        run.notes.push(format!(
            "{} rate of {} not judged: {}",
            log.path,
            p.name,
            judged.why_none.unwrap_or_default()
        ));
        return;
    };
    run.metrics.insert(
        format!("log_rate_{}", p.name.replace('-', "_")),
        (value * 100.0).round() / 100.0,
    );
    run.notes.push(format!(
        "{} {}: {} ({} matches in {} lines {}; threshold {})",
        log.path,
        p.name,
        rate.show(value),
        judged.matches,
        judged.lines,
        rate.window_text(),
        rate.show(rate.above)
    ));
    if value > rate.above && judged.matches >= p.threshold.max(1) {
        let of = match rate.basis {
            rate::Basis::Lines => format!("{} of {} lines", judged.matches, judged.lines),
            rate::Basis::Time { .. } => format!(
                "{} matches in {}",
                judged.matches,
                humantime::format_duration(std::time::Duration::from_millis(
                    judged.span.unwrap_or(0).max(0) as u64 / 100 * 100
                ))
            ),
        };
        run.findings.push(Finding {
            id: "log-rate".into(),
            key: format!("{}:{}", log.path, p.name),
            severity: p.severity,
            title: format!(
                "{} (/{}/) at {} ({of}) {}, above {}",
                p.name,
                p.regex,
                rate.show(value),
                rate.window_text(),
                rate.show(rate.above)
            ),
            fix: format!("look at them: grep -E '{}' {}", p.regex, log.path),
        });
    }
}

/// Runs a scanner in a project directory and returns its standard output.
/// Scanners exit non-zero when they find something, so only output that is
/// not what they print is an error.
fn scanner_output(program: &str, args: &[&str], dir: &str) -> Result<String, String> {
    let exit = Command::new(program)
        .args(args.iter().copied())
        .cwd(dir)
        .run()
        .map_err(|e| format!("{program} in {dir} could not run: {}", e.text()))?;
    let out = String::from_utf8_lossy(&exit.stdout).into_owned();
    if out.trim().is_empty() && !exit.success() {
        return Err(format!(
            "{program} in {dir} exited with {} and printed nothing: {}",
            exit.status_text(),
            exit.stderr_text()
        ));
    }
    Ok(out)
}

/// A dependency scanner: its config, default program, arguments, output
/// parser and metric name.
struct ScannerKind<'a> {
    cfg: &'a Option<config::Scanner>,
    program: &'static str,
    args: &'static [&'static str],
    parse: fn(&str, &str) -> Result<Vec<Finding>, String>,
    metric: &'static str,
}

fn check_scanners(cfg: &Config, run: &mut Run) {
    let scanners = [
        ScannerKind {
            cfg: &cfg.npm_audit,
            program: "npm",
            args: &["audit", "--json"],
            parse: advisories::npm,
            metric: "npm_advisories",
        },
        ScannerKind {
            cfg: &cfg.cargo_audit,
            program: "cargo",
            args: &["audit", "--json"],
            parse: advisories::cargo,
            metric: "cargo_advisories",
        },
        ScannerKind {
            cfg: &cfg.osv_scanner,
            program: "osv-scanner",
            args: &["--format", "json", "--recursive", "."],
            parse: advisories::osv,
            metric: "osv_advisories",
        },
    ];
    for kind in scanners {
        let Some(s) = kind.cfg else { continue };
        let program = s.program.as_deref().unwrap_or(kind.program);
        let mut count = 0;
        for dir in &s.dirs {
            match scanner_output(program, kind.args, dir).and_then(|out| (kind.parse)(dir, &out)) {
                Ok(found) => {
                    count += found.len();
                    run.findings.extend(found);
                }
                Err(e) => run.errors.push(e),
            }
        }
        run.metrics.insert(kind.metric.into(), count as f64);
    }
    if let Some(apt) = &cfg.apt {
        let program = apt.program.as_deref().unwrap_or("apt");
        match Command::new(program).args(["list", "--upgradable"]).run() {
            Ok(exit) if exit.success() => {
                let (all, security) = advisories::apt(&String::from_utf8_lossy(&exit.stdout));
                run.metrics
                    .insert("apt_upgradable".into(), all.len() as f64);
                run.metrics
                    .insert("apt_security".into(), security.len() as f64);
                if !security.is_empty() {
                    run.findings.push(Finding {
                        id: "apt-security-updates".into(),
                        key: "apt".into(),
                        severity: apt.severity,
                        title: format!(
                            "{} security updates pending: {}",
                            security.len(),
                            security.join(", ")
                        ),
                        fix: "apt update && apt upgrade (or unattended-upgrades)".into(),
                    });
                }
            }
            Ok(exit) => run.errors.push(format!(
                "{program} list --upgradable exited with {}: {}",
                exit.status_text(),
                exit.stderr_text()
            )),
            Err(e) => run.errors.push(format!(
                "{program} list --upgradable could not run: {}",
                e.text()
            )),
        }
    }
}

/// The run as the operator reads it. Findings of one kind and severity
/// are told as one (278 readable backups are one finding listing them), in
/// the summary, the counts and the details' `new`, `resolved` and
/// `findings` sections; `each finding` then lists every one in full.
fn outcome(run: &Run, diff: &findings::Diff) -> Outcome {
    let found = findings::group(&run.findings);
    let new = findings::group(&diff.new);
    let resolved = findings::group(&diff.resolved);
    for g in &new {
        opsd_sdk::warn!("new: {}", g.line());
    }
    for g in &resolved {
        opsd_sdk::info!("resolved: {}", g.line());
    }
    for e in &run.errors {
        opsd_sdk::error!("{e}");
    }
    let by = |s: Severity| found.iter().filter(|g| g.severity == s).count();
    let counts: Vec<String> = Severity::ALL
        .iter()
        .map(|s| format!("{} {}", s.as_str(), by(*s)))
        .collect();
    let mut summary = format!("{} findings ({})", found.len(), counts.join(", "));
    if run.findings.len() != found.len() {
        summary.push_str(&format!(" in {} places", run.findings.len()));
    }
    summary.push_str(&format!("; {} new, {} resolved", new.len(), resolved.len()));
    if let Some(first) = new.first() {
        summary.push_str(&format!("; new: {}", first.head()));
    }
    if let Some(first) = run.errors.first() {
        summary.push_str(&format!("; could not check: {first}"));
    }
    let urgent = by(Severity::P0) + by(Severity::P1) > 0;
    let status = if !run.errors.is_empty() || urgent {
        Status::Failed
    } else if !run.findings.is_empty() || !run.warnings.is_empty() {
        Status::Warning
    } else {
        Status::Ok
    };
    let mut details = Vec::new();
    let mut section = |title: &str, lines: Vec<String>| {
        if !lines.is_empty() {
            details.push(format!("{title}:"));
            details.extend(lines.into_iter().map(|l| format!("  {l}")));
        }
    };
    let lines = |groups: &[findings::Group<'_>]| groups.iter().map(|g| g.line()).collect();
    section("new", lines(&new));
    section("resolved", lines(&resolved));
    section("findings", lines(&found));
    section("could not check", run.errors.clone());
    section("not looked at", run.warnings.clone());
    section("notes", run.notes.clone());
    if found.iter().any(|g| g.members.len() > 1) {
        section(
            "each finding",
            run.findings.iter().map(Finding::line).collect(),
        );
    }
    let mut out = Outcome::with_status(status, summary).details(details.join("\n"));
    out = out
        .metric("findings_total", found.len() as f64, None)
        .metric("findings_instances", run.findings.len() as f64, None)
        .metric("findings_new", new.len() as f64, None)
        .metric("findings_resolved", resolved.len() as f64, None);
    for s in Severity::ALL {
        out = out.metric(
            &format!("findings_{}", s.as_str().to_ascii_lowercase()),
            by(s) as f64,
            None,
        );
    }
    for (name, value) in &run.metrics {
        out = out.metric(name, *value, None);
    }
    out
}

opsd_sdk::export_plugin!(Audit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        let paths = serde_json::json!({"paths": ["/srv/app"]});
        let scanner = serde_json::json!({"dirs": ["/srv/app"], "program": "scanner"});
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({
                "state_file": "/var/lib/opsd/audit.json",
                "secrets": {"paths": ["/srv/app"], "names": [".env"]},
                "backups": paths, "world_writable": paths,
                "suid": {"paths": ["/usr/bin"], "allow": ["/usr/bin/sudo"]},
                "certs": {"paths": ["/etc/ssl/opsd"], "warn_days": 30, "critical_days": 7},
                "logs": [{"path": "/srv/app/app.log", "patterns": [
                    {"name": "auth-failures", "regex": "Authentication failed", "threshold": 10, "severity": "P2",
                     "rate": {"above": "5%", "of": "lines", "per": "minute", "window": "1h", "min_lines": 20}}
                ]}],
                "npm_audit": scanner, "cargo_audit": scanner, "osv_scanner": scanner,
                "apt": {"program": "apt", "severity": "P1"}
            }),
        );
    }
}
