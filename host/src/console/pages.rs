//! The console's pages, each from the data `opsd` commands show: what
//! ran, what failed and why, and what runs next. Every string goes
//! through [`esc`] (or [`esc_block`]); numbers and times are formatted
//! here.

use super::html::{badge, esc, esc_block, human_duration, millis, table, time, url};
use super::{Access, html_response};
use crate::ops::Ops;
use crate::record::{RunRecord, RunStatus, ScheduleEntry, Trigger};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// Runs on a history page.
const PAGE_SIZE: usize = 50;

/// Records a history page examines at most: what keeps it fast on a
/// store of a million runs whatever the filter (see `bench/console_history.sh`).
const PAGE_BUDGET: usize = 20_000;

/// A whole page: the navigation, who is signed in, then `body`.
pub(crate) fn frame(title: &str, here: &str, access: Option<&Access>, body: &str) -> String {
    let mut nav = String::new();
    for (path, label) in [
        ("/", "Schedule"),
        ("/history", "History"),
        ("/status", "Status"),
        ("/plugins", "Plugins"),
        ("/reports", "Reports"),
    ] {
        let _ = write!(
            nav,
            "<a href=\"{path}\"{}>{label}</a>",
            if path == here { " class=\"here\"" } else { "" }
        );
    }
    let who = match access {
        Some(a) if a.can_act() => format!(
            "<span>signed in</span>{}",
            a.button("/logout", "Sign out", "")
        ),
        Some(a) if a.token_set => "<a href=\"/login\">Sign in</a>".to_owned(),
        Some(_) => "<span class=\"muted\">read-only</span>".to_owned(),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · opsd</title><link rel=\"stylesheet\" href=\"/console/console.css\"></head><body><header class=\"top\"><span class=\"brand\">opsd</span><nav>{nav}</nav><span class=\"who\">{who}</span></header><main>{body}</main></body></html>",
        esc(title)
    )
}

fn ok_page(title: &str, here: &str, access: &Access, body: &str) -> Response {
    html_response(StatusCode::OK, frame(title, here, Some(access), body))
}

fn error_page(code: StatusCode, title: &str, access: &Access, message: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><div class=\"error\"><p>{}</p></div>",
        esc(title),
        esc(message)
    );
    html_response(code, frame(title, "", Some(access), &body))
}

fn ops_error(access: &Access, e: crate::ops::OpsError) -> Response {
    use crate::ops::OpsError;
    let code = match e {
        OpsError::UnknownJob(_) | OpsError::UnknownRun(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_page(code, "Not found", access, &e.to_string())
}

fn job_link(job: &str) -> String {
    format!("<a href=\"/jobs/{}\">{}</a>", url(job), esc(job))
}

fn run_link(id: &str, text: &str) -> String {
    format!("<a href=\"/runs/{}\">{}</a>", url(id), text)
}

fn or_dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
}

/// Where a fleet job runs (`scope = "fleet"`, and `on`): once per fleet,
/// on a host with those labels. None for a job of this host.
fn scope(job: &crate::config::Job) -> Option<String> {
    let fleet = job.fleet.as_ref()?;
    Some(if fleet.on.is_empty() {
        "fleet: one host of the fleet".to_owned()
    } else {
        let labels: Vec<String> = fleet.on.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("fleet: one host with {}", labels.join(", "))
    })
}

/// `/`: every job as `opsd schedule list` shows it, soonest first.
pub(crate) fn schedule(ops: &Ops, access: &Access) -> Response {
    let entries = match ops.schedule() {
        Ok(e) => e,
        Err(e) => return ops_error(access, e),
    };
    let config = ops.config();
    let now = ops.clock().now();
    let running = ops.running();
    let mut sorted: Vec<&ScheduleEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (!a.broken.is_empty(), a.next.is_none(), a.next, &a.job).cmp(&(
            !b.broken.is_empty(),
            b.next.is_none(),
            b.next,
            &b.job,
        ))
    });
    let any_scope = config.jobs.iter().any(|j| scope(j).is_some());
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|e| {
            let next = match e.next {
                _ if !e.broken.is_empty() => badge("broken"),
                Some(n) => time(n),
                None if !e.enabled => "disabled".into(),
                None if !e.when.is_empty() => format!("on condition: {}", esc(&e.when.join("; "))),
                None => "-".into(),
            };
            let left = e.next.map_or("-".into(), |n| {
                format!("{} left", human_duration((n - now).num_seconds()))
            });
            let passed = e.last.map_or("-".into(), |l| {
                format!("{} ago", human_duration((now - l).num_seconds()))
            });
            let status = match (running.get(&e.job), e.last_status, &e.last_run) {
                (Some(r), _, _) if !r.is_empty() => run_link(&r[0].run_id, &badge("running")),
                (_, Some(s), Some(id)) => run_link(id, &badge(s.as_str())),
                (_, Some(s), None) => badge(s.as_str()),
                _ => "-".into(),
            };
            let mut actions = String::new();
            if access.can_act() && e.broken.is_empty() {
                let base = format!("/jobs/{}", url(&e.job));
                actions.push_str(&access.button(&format!("{base}/run"), "Run now", ""));
                actions.push_str(&if e.enabled {
                    access.button(&format!("{base}/disable"), "Disable", "")
                } else {
                    access.button(&format!("{base}/enable"), "Enable", "")
                });
            }
            let mut row = vec![
                next,
                left,
                e.last.map_or("-".into(), time),
                passed,
                job_link(&e.job),
                esc(&e.plugin),
            ];
            if any_scope {
                let s = config.job(&e.job).ok().and_then(scope);
                row.push(s.map_or("this host".into(), |s| esc(&s)));
            }
            row.push(status);
            row.push(if e.enabled { "yes" } else { "no" }.into());
            if access.can_act() {
                row.push(actions);
            }
            row
        })
        .collect();
    let mut header = vec!["Next", "Left", "Last", "Passed", "Job", "Plugin"];
    if any_scope {
        header.push("Runs on");
    }
    header.extend(["Status", "Enabled"]);
    if access.can_act() {
        header.push("Actions");
    }
    let mut body = format!(
        "<h1>Schedule</h1><p class=\"muted\">{} job{} · now {}</p>",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        time(now)
    );
    body.push_str(&table("stack schedule", &header, &rows));
    let broken: Vec<&&ScheduleEntry> = sorted.iter().filter(|e| !e.broken.is_empty()).collect();
    if !broken.is_empty() {
        body.push_str("<h2>Broken jobs</h2><ul>");
        for e in broken {
            let _ = write!(
                body,
                "<li><b>{}</b> does not run: {}</li>",
                esc(&e.job),
                esc(&e.broken.join("; "))
            );
        }
        body.push_str("</ul>");
    }
    ok_page("Schedule", "/", access, &body)
}

/// A bar per run, its height the run's duration, its colour the status.
fn duration_chart(runs: &[RunRecord]) -> String {
    let runs: Vec<&RunRecord> = runs.iter().rev().collect();
    if runs.is_empty() {
        return "<p class=\"muted\">No runs yet.</p>".into();
    }
    let max = runs
        .iter()
        .filter_map(|r| r.duration_ms)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (w, h, pad) = (600.0, 140.0, 20.0);
    let step = (w - pad) / runs.len() as f64;
    let mut s = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"Duration of recent runs\" viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        h + pad,
        h + pad
    );
    let _ = write!(
        s,
        "<text x=\"2\" y=\"12\">{}</text>",
        esc(&millis(max as u64))
    );
    for (i, r) in runs.iter().enumerate() {
        let d = r.duration_ms.unwrap_or(0) as f64;
        let bh = (d / max * (h - 16.0)).max(2.0);
        let x = pad + i as f64 * step;
        let class = match r.status {
            RunStatus::Ok => "ok",
            RunStatus::Warning => "warning",
            RunStatus::Failed | RunStatus::Timeout => "failed",
            RunStatus::Running => "running",
            _ => "other",
        };
        let _ = write!(
            s,
            "<a href=\"/runs/{}\"><rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\"><title>{} {} {}</title></rect></a>",
            url(&r.id),
            h - bh,
            (step * 0.8).clamp(1.0, 40.0),
            esc(&r.started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            esc(r.status.as_str()),
            esc(&r.duration_ms.map_or("-".into(), millis)),
        );
    }
    s.push_str("</svg>");
    s
}

fn runs_table(runs: &[RunRecord], with_job: bool) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut summary = esc(&r.summary);
            if let Some(e) = &r.error {
                let _ = write!(summary, " <span class=\"muted\">— {}</span>", esc(e));
            }
            let mut row = vec![run_link(&r.id, &time(r.started))];
            if with_job {
                row.push(job_link(&r.job));
            }
            row.extend([
                badge(r.status.as_str()),
                esc(&trigger_word(r.trigger)),
                r.duration_ms.map_or("-".into(), millis),
                format!("{}{}", summary, if r.dry_run { " (dry run)" } else { "" }),
            ]);
            row
        })
        .collect();
    let header: &[&str] = if with_job {
        &["Started", "Job", "Status", "Trigger", "Took", "Summary"]
    } else {
        &["Started", "Status", "Trigger", "Took", "Summary"]
    };
    table("stack runs", header, &rows)
}

fn trigger_word(t: Trigger) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `/jobs/{job}`: its definition, grants in words, next fires, recent
/// runs with a duration chart.
pub(crate) fn job(ops: &Ops, access: &Access, name: &str) -> Response {
    let d = match ops.job_detail(name) {
        Ok(d) => d,
        Err(e) => return ops_error(access, e),
    };
    let config = ops.config();
    let recent = ops
        .history(&crate::store::HistoryQuery {
            job: Some(name.to_owned()),
            limit: Some(40),
            ..Default::default()
        })
        .unwrap_or_default();
    let running = ops.running_of(name);
    let mut body = format!("<h1>Job {}</h1>", esc(&d.job));
    if access.can_act() {
        let base = format!("/jobs/{}", url(&d.job));
        body.push_str("<div class=\"actions\">");
        body.push_str(&access.button(&format!("{base}/run"), "Run now", ""));
        body.push_str(&if d.enabled {
            access.button(&format!("{base}/disable"), "Disable", "")
        } else {
            access.button(&format!("{base}/enable"), "Enable", "")
        });
        body.push_str("</div>");
    }
    for r in &running {
        let _ = write!(
            body,
            "<p class=\"notice\">Running now: {}</p>",
            run_link(&r.run_id, &esc(&r.run_id))
        );
    }
    let schedule = if d.schedule.is_empty() {
        "-".to_owned()
    } else {
        d.schedule.clone()
    };
    let mut facts: Vec<(&str, String)> = vec![
        ("Plugin", esc(&d.plugin)),
        (
            "Schedule",
            format!("{} ({})", esc(&schedule), esc(&d.timezone)),
        ),
        (
            "When",
            if d.when.is_empty() {
                "-".into()
            } else {
                esc(&d.when.join("; "))
            },
        ),
        ("Enabled", if d.enabled { "yes" } else { "no" }.into()),
        (
            "Last",
            match (d.last, d.last_status) {
                (Some(t), Some(s)) => format!("{} {}", time(t), badge(s.as_str())),
                _ => "never ran".into(),
            },
        ),
        ("Timeout", human_duration(d.timeout_seconds as i64)),
        (
            "Catch-up",
            format!(
                "{}{}",
                esc(&d.catch_up),
                d.catch_up_deadline_seconds
                    .map_or(String::new(), |s| format!(
                        " (within {})",
                        human_duration(s as i64)
                    ))
            ),
        ),
        ("Overlap", esc(&d.overlap)),
        (
            "Retries",
            format!(
                "{} (backoff {} up to {})",
                d.retries,
                human_duration(d.retry_backoff_seconds as i64),
                human_duration(d.retry_backoff_max_seconds as i64)
            ),
        ),
        (
            "Jitter",
            format!(
                "{}{}",
                human_duration(d.jitter_seconds as i64),
                if d.jitter_fixed { " (fixed)" } else { "" }
            ),
        ),
        (
            "Keeps",
            format!("{} runs, {} days", d.keep_runs, d.keep_days),
        ),
    ];
    if let Some(s) = config.job(name).ok().and_then(scope) {
        facts.push(("Runs on", esc(&s)));
    }
    body.push_str(&facts_list(&facts));
    body.push_str("<h2>What it may touch</h2>");
    let grants: Vec<(&str, String)> = d
        .grants
        .kinds
        .iter()
        .map(|(k, e)| (k.as_str(), esc(&e.to_string())))
        .collect();
    body.push_str(&facts_list(&grants));
    if !d.grants.programs.is_empty() {
        body.push_str("<p>The programs it starts:</p><ul>");
        for p in &d.grants.programs {
            let _ = write!(body, "<li>{}</li>", esc(p));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Next fires</h2>");
    if d.next.is_empty() {
        body.push_str("<p class=\"muted\">None scheduled.</p>");
    } else {
        body.push_str("<ul>");
        for n in &d.next {
            let _ = write!(body, "<li>{}</li>", time(*n));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Recent runs</h2>");
    body.push_str(&duration_chart(&recent));
    body.push_str(&runs_table(&recent, false));
    let _ = write!(
        body,
        "<p><a href=\"/history?job={}\">All runs of this job</a></p>",
        url(&d.job)
    );
    body.push_str("<h2>Configuration</h2>");
    let _ = write!(
        body,
        "<pre>{}</pre>",
        esc_block(&serde_json::to_string_pretty(&d.config).unwrap_or_default())
    );
    ok_page(&format!("Job {}", d.job), "", access, &body)
}

fn facts_list(facts: &[(&str, String)]) -> String {
    let mut s = String::from("<dl class=\"facts\">");
    for (k, v) in facts {
        let _ = write!(s, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    s.push_str("</dl>");
    s
}

/// `/runs/{id}`: the whole record and its log; while it runs, the log
/// follows live (with JavaScript) or the page refreshes (without).
pub(crate) fn run(ops: &Ops, access: &Access, id: &str) -> Response {
    let rec = match ops.run_record(id) {
        Ok(r) => r,
        Err(e) => {
            // Taken up, its record not written yet: a moment.
            if let Some((job, _)) = ops
                .running()
                .into_iter()
                .find(|(_, runs)| runs.iter().any(|r| r.run_id == id))
            {
                let body = format!(
                    "<h1>Run of {} {}</h1><p class=\"notice\">Starting…</p>",
                    job_link(&job),
                    badge("running")
                );
                let page = frame(&format!("Run of {job}"), "", Some(access), &body).replacen(
                    "</head>",
                    "<meta http-equiv=\"refresh\" content=\"1\"></head>",
                    1,
                );
                return html_response(StatusCode::OK, page);
            }
            return ops_error(access, e);
        }
    };
    let log = ops.run_log(id).unwrap_or_default();
    let running = ops
        .running_of(&rec.job)
        .into_iter()
        .find(|r| r.run_id == rec.id && rec.status == RunStatus::Running);
    let live = running.is_some();
    let progress = running.as_ref().and_then(|r| r.log.last_progress());
    let mut body = format!(
        "<h1>Run of {} {}</h1>",
        job_link(&rec.job),
        badge(rec.status.as_str())
    );
    if live && access.can_act() {
        body.push_str("<div class=\"actions\">");
        body.push_str(&access.button(
            &format!("/runs/{}/cancel", url(&rec.id)),
            "Cancel",
            "danger",
        ));
        body.push_str("</div>");
    }
    let mut facts: Vec<(&str, String)> = vec![
        ("Run", esc(&rec.id)),
        (
            "Plugin",
            format!(
                "{} {} <span class=\"muted\">sha256 {}</span>",
                esc(&rec.plugin),
                esc(&rec.plugin_version),
                esc(&rec.plugin_sha256)
            ),
        ),
        ("Trigger", esc(&trigger_word(rec.trigger))),
        ("Scheduled", time(rec.scheduled)),
        ("Started", time(rec.started)),
        ("Finished", or_dash(rec.finished.map(time))),
        ("Took", or_dash(rec.duration_ms.map(millis))),
        ("Attempt", rec.attempt.to_string()),
    ];
    if let Some(c) = &rec.condition {
        facts.push(("Condition", esc(c)));
    }
    if rec.dry_run {
        facts.push(("Dry run", "yes: a preview, it changed nothing".into()));
    }
    if !rec.overrides.is_empty() {
        facts.push((
            "Set for this run",
            esc(&crate::record::overrides_text(&rec.overrides)),
        ));
    }
    if let Some(f) = &rec.fleet {
        let mut claim = format!("slot {}", esc(&f.slot));
        if let Some(t) = &f.took_over {
            let _ = write!(claim, "; took over run {} of {}", esc(&t.run), esc(&t.host));
        }
        if let Some(lost) = &f.lease_lost {
            let _ = write!(claim, "; lost its lease: {}", esc(lost));
        }
        facts.push(("Fleet claim", claim));
    }
    if let Some(l) = &rec.plugin_load {
        facts.push((
            "Plugin load",
            format!("{} in {:.1} ms", esc(l.source.as_str()), l.ms),
        ));
    }
    facts.push(("Summary", esc(&rec.summary)));
    if let Some(e) = &rec.error {
        facts.push(("Error", format!("<span class=\"err\">{}</span>", esc(e))));
    }
    body.push_str(&facts_list(&facts));
    if !rec.details.is_empty() {
        let _ = write!(
            body,
            "<h2>Details</h2><pre>{}</pre>",
            esc_block(&rec.details)
        );
    }
    if !rec.metrics.is_empty() {
        body.push_str("<h2>Metrics</h2>");
        let rows: Vec<Vec<String>> = rec
            .metrics
            .iter()
            .map(|m| {
                vec![
                    esc(&m.name),
                    esc(&format!("{}", m.value)),
                    esc(m.unit.as_deref().unwrap_or("")),
                ]
            })
            .collect();
        body.push_str(&table("metrics", &["Name", "Value", "Unit"], &rows));
    }
    if !rec.artifacts.is_empty() {
        body.push_str("<h2>Artifacts</h2>");
        let rows: Vec<Vec<String>> = rec
            .artifacts
            .iter()
            .map(|a| {
                vec![
                    esc(&a.path),
                    esc(&a.kind),
                    a.size_bytes
                        .map_or("-".into(), |b| opsd_report_core::render::bytes(b as f64)),
                    esc(a.sha256.as_deref().unwrap_or("-")),
                ]
            })
            .collect();
        body.push_str(&table(
            "stack artifacts",
            &["Path", "Kind", "Size", "sha256"],
            &rows,
        ));
    }
    body.push_str("<h2>Log</h2>");
    if live {
        // The progress so far, so the page says it without JavaScript.
        let (bar, note) = match &progress {
            Some((done, Some(total), message)) => (
                format!("<progress id=\"progress\" max=\"{total}\" value=\"{done}\"></progress>"),
                format!("{done} of {total} {}", esc(message)),
            ),
            Some((done, None, message)) => (
                "<progress id=\"progress\"></progress>".to_owned(),
                format!("{done} {}", esc(message)),
            ),
            None => (
                "<progress id=\"progress\"></progress>".to_owned(),
                String::new(),
            ),
        };
        let _ = write!(
            body,
            "<div id=\"live\" data-events=\"/runs/{}/events\">{bar} <span id=\"progress-note\">{note}</span> <span id=\"live-state\" class=\"muted\">refreshing every 3 s</span></div>",
            url(&rec.id)
        );
    }
    body.push_str("<div class=\"log\" id=\"log\">");
    for l in &log {
        let _ = write!(
            body,
            "<div class=\"lv-{}\"><span class=\"src\">{} {} {} </span>{}</div>",
            l.level.as_str(),
            esc(&millis(l.ms)),
            l.level.as_str(),
            l.source.as_str(),
            esc(&l.message)
        );
    }
    body.push_str("</div>");
    if log.is_empty() && !live {
        body.push_str("<p class=\"muted\">No log lines.</p>");
    }
    let mut page = frame(&format!("Run of {}", rec.job), "", Some(access), &body);
    if live {
        // With JavaScript the log follows live; without, the page
        // refreshes itself while the run lasts.
        page = page.replacen(
            "</head>",
            "<script src=\"/console/live.js\" defer></script><noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript></head>",
            1,
        );
    }
    html_response(StatusCode::OK, page)
}

/// The history page's filters, as the form sends them.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct HistoryForm {
    #[serde(default)]
    job: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    trigger: String,
    /// `YYYY-MM-DDTHH:MM` (a datetime-local field), UTC.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// A run id: show runs older than it.
    #[serde(default)]
    before: String,
}

fn parse_when(s: &str) -> Result<Option<DateTime<Utc>>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(Some(t.and_utc()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
    }
    Err(format!(
        "`{s}` is not a time; write 2026-05-01T14:30 (UTC) or 2026-05-01"
    ))
}

/// `/history`: runs filtered by job, status, trigger and time, a page at
/// a time, newest first.
pub(crate) fn history(ops: &Ops, access: &Access, f: &HistoryForm) -> Response {
    let started = std::time::Instant::now();
    let mut problems = Vec::new();
    let status = match f.status.as_str() {
        "" => None,
        s => match serde_json::from_value::<RunStatus>(serde_json::Value::String(s.into())) {
            Ok(s) => Some(s),
            Err(_) => {
                problems.push(format!("unknown status `{s}`"));
                None
            }
        },
    };
    let trigger = match f.trigger.as_str() {
        "" => None,
        t => match serde_json::from_value::<Trigger>(serde_json::Value::String(t.into())) {
            Ok(t) => Some(t),
            Err(_) => {
                problems.push(format!("unknown trigger `{t}`"));
                None
            }
        },
    };
    let since = parse_when(&f.from).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let until = parse_when(&f.to).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let q = crate::store::PageQuery {
        job: (!f.job.is_empty()).then(|| f.job.clone()),
        status,
        trigger,
        since,
        until,
        before: (!f.before.is_empty()).then(|| f.before.clone()),
        limit: PAGE_SIZE,
        budget: PAGE_BUDGET,
    };
    let page = match ops.store().history_page(&q) {
        Ok(p) => p,
        Err(e) => return ops_error(access, e.into()),
    };
    let config = ops.config();
    let mut jobs: Vec<String> = config.jobs.iter().map(|j| j.name.clone()).collect();
    jobs.extend(config.broken.iter().map(|b| b.name.clone()));
    if !f.job.is_empty() && !jobs.contains(&f.job) {
        jobs.push(f.job.clone());
    }
    jobs.sort();
    let option = |value: &str, label: &str, chosen: &str| {
        format!(
            "<option value=\"{}\"{}>{}</option>",
            esc(value),
            if value == chosen { " selected" } else { "" },
            esc(label)
        )
    };
    let mut form = String::from("<form class=\"filters\" method=\"get\" action=\"/history\">");
    form.push_str("<label>Job<select name=\"job\">");
    form.push_str(&option("", "any", &f.job));
    for j in &jobs {
        form.push_str(&option(j, j, &f.job));
    }
    form.push_str("</select></label><label>Status<select name=\"status\">");
    form.push_str(&option("", "any", &f.status));
    for s in std::iter::once(RunStatus::Running).chain(RunStatus::ENDINGS) {
        form.push_str(&option(s.as_str(), s.as_str(), &f.status));
    }
    form.push_str("</select></label><label>Trigger<select name=\"trigger\">");
    form.push_str(&option("", "any", &f.trigger));
    for t in [
        Trigger::Schedule,
        Trigger::Manual,
        Trigger::CatchUp,
        Trigger::Retry,
        Trigger::Condition,
    ] {
        let w = trigger_word(t);
        form.push_str(&option(&w, &w, &f.trigger));
    }
    let _ = write!(
        form,
        "</select></label><label>From (UTC)<input type=\"datetime-local\" name=\"from\" value=\"{}\"></label><label>To (UTC)<input type=\"datetime-local\" name=\"to\" value=\"{}\"></label><button type=\"submit\">Show</button> <a href=\"/history\">clear</a></form>",
        esc(&f.from),
        esc(&f.to)
    );
    let mut body = String::from("<h1>History</h1>");
    body.push_str(&form);
    for p in &problems {
        let _ = write!(body, "<div class=\"error\">{}</div>", esc(p));
    }
    if page.runs.is_empty() {
        body.push_str("<p class=\"muted\">No runs match on this page.</p>");
    } else {
        body.push_str(&runs_table(&page.runs, true));
    }
    if let Some(t) = page.searched_to {
        let _ = write!(
            body,
            "<p class=\"notice\">Looked through {} runs, back to {}; older ones follow on the next page.</p>",
            page.examined,
            time(t)
        );
    }
    let mut keep = Vec::new();
    for (k, v) in [
        ("job", &f.job),
        ("status", &f.status),
        ("trigger", &f.trigger),
        ("from", &f.from),
        ("to", &f.to),
    ] {
        if !v.is_empty() {
            keep.push(format!("{k}={}", url(v)));
        }
    }
    let base = keep.join("&");
    body.push_str("<div class=\"pager\">");
    let _ = write!(
        body,
        "<span>{}</span>",
        if f.before.is_empty() {
            String::new()
        } else {
            format!("<a href=\"/history?{}\">« newest</a>", esc(&base))
        }
    );
    if let Some(next) = &page.next {
        let _ = write!(
            body,
            "<a href=\"/history?{}{}before={}\">older »</a>",
            esc(&base),
            if base.is_empty() { "" } else { "&amp;" },
            url(next)
        );
    }
    body.push_str("</div>");
    let _ = write!(
        body,
        "<p class=\"muted\">{} runs shown · {} examined · {:.1} ms</p>",
        page.runs.len(),
        page.examined,
        started.elapsed().as_secs_f64() * 1000.0
    );
    ok_page("History", "/history", access, &body)
}

/// A small line chart of an hour of one figure, with its limit dashed.
fn spark(title: &str, points: &[(DateTime<Utc>, f64)], limit: Option<f64>, unit: &str) -> String {
    let (w, h) = (300.0, 80.0);
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title),
        esc(title)
    );
    if points.len() >= 2 {
        let t0 = points[0].0.timestamp() as f64;
        let t1 = points[points.len() - 1].0.timestamp() as f64;
        let span = (t1 - t0).max(1.0);
        let top = points
            .iter()
            .map(|p| p.1)
            .chain(limit)
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.1;
        let y = |v: f64| h - 4.0 - v / top * (h - 16.0);
        if let Some(l) = limit {
            let _ = write!(
                s,
                "<line class=\"limit\" x1=\"0\" x2=\"{w}\" y1=\"{:.1}\" y2=\"{:.1}\"></line>",
                y(l),
                y(l)
            );
        }
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", (t.timestamp() as f64 - t0) / span * w, y(*v)))
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"line\" points=\"{}\"></polyline>",
            path.join(" ")
        );
        let last = points[points.len() - 1].1;
        let _ = write!(
            s,
            "<text x=\"4\" y=\"12\">{}</text>",
            esc(&format!("now {last:.1}{unit}"))
        );
    } else {
        s.push_str("<text x=\"4\" y=\"40\">not enough samples yet</text>");
    }
    s.push_str("</svg></figure>");
    s
}

/// `/status`: the monitor's figures against the runbook's limits, an
/// hour of each, and where each `when` condition and alert stands.
pub(crate) fn status(ops: &Ops, access: &Access) -> Response {
    use crate::monitor::{
        CPU_LIMIT, CPU_LIMIT_FOR, DISK_LIMIT, MEMORY_LIMIT, NETWORK_ERRORS_LIMIT,
    };
    let st = ops.status();
    let history = ops.monitor().history();
    let s = &st.sample;
    let mut rows: Vec<Vec<String>> = Vec::new();
    let standing = |over: bool| badge(if over { "OVER" } else { "ok" });
    let cpu_state = match st.cpu_above_limit_for_seconds {
        Some(secs) if secs >= CPU_LIMIT_FOR.as_secs() => {
            format!("{} for {}", badge("OVER"), human_duration(secs as i64))
        }
        Some(secs) => format!("{} for {}", badge("high"), human_duration(secs as i64)),
        None => badge("ok"),
    };
    rows.push(vec![
        "cpu".into(),
        format!("{:.1} %", s.cpu_percent),
        format!(
            "{CPU_LIMIT} % for {}",
            humantime::format_duration(CPU_LIMIT_FOR)
        ),
        cpu_state,
    ]);
    rows.push(vec![
        "load".into(),
        format!(
            "{:.2} {:.2} {:.2} ({} CPUs)",
            s.load[0], s.load[1], s.load[2], s.cpu_count
        ),
        "-".into(),
        String::new(),
    ]);
    let memory = s.memory_used_percent();
    rows.push(vec![
        "memory".into(),
        format!(
            "{} of {}",
            memory.map_or("-".into(), |m| format!("{m:.1} %")),
            opsd_report_core::render::bytes(s.memory_total_bytes as f64)
        ),
        format!("{MEMORY_LIMIT} %"),
        memory.map_or(String::new(), |m| standing(m > MEMORY_LIMIT)),
    ]);
    let mounted = |d: &crate::monitor::DiskUse| s.disks.iter().any(|m| std::ptr::eq(m, d));
    for d in s
        .filesystems()
        .into_iter()
        .filter(|d| d.total_bytes > 0 || !mounted(d))
    {
        rows.push(vec![
            format!("disk {}", esc(&d.path)),
            format!(
                "{} ({} free)",
                d.used_percent.map_or("-".into(), |p| format!("{p:.1} %")),
                opsd_report_core::render::bytes(d.available_bytes as f64)
            ),
            format!("{DISK_LIMIT} %"),
            d.used_percent
                .map_or(String::new(), |p| standing(p > DISK_LIMIT)),
        ]);
    }
    rows.push(vec![
        "network errors".into(),
        st.network_errors_per_hour
            .map_or("- (no hour of samples yet)".into(), |r| {
                format!("{r:.0} /h")
            }),
        format!("{NETWORK_ERRORS_LIMIT} /h"),
        st.network_errors_per_hour
            .map_or(String::new(), |r| standing(r > NETWORK_ERRORS_LIMIT)),
    ]);
    for p in &s.probes {
        rows.push(vec![
            format!("probe {}", esc(&p.url)),
            match (p.seconds, &p.error) {
                (Some(v), _) => format!("{v:.3} s"),
                (None, Some(e)) => format!("failed: {}", esc(e)),
                (None, None) => "failed".into(),
            },
            "-".into(),
            String::new(),
        ]);
    }
    let source = match st.source {
        crate::monitor::SampleSource::Daemon => format!(
            "the daemon's sample of {} (every {}s)",
            time(s.taken),
            st.interval_seconds
        ),
        crate::monitor::SampleSource::Now => format!("read now, {}", time(s.taken)),
    };
    let mut body = format!("<h1>Status</h1><p class=\"muted\">Machine: {source}</p>");
    body.push_str(&table(
        "stack machine",
        &["Metric", "Now", "Limit", "State"],
        &rows,
    ));
    body.push_str("<h2>The last hour</h2><div class=\"charts\">");
    let series = |f: &dyn Fn(&crate::monitor::Sample) -> Option<f64>| -> Vec<(DateTime<Utc>, f64)> {
        history
            .iter()
            .filter_map(|x| f(x).map(|v| (x.taken, v)))
            .collect()
    };
    body.push_str(&spark(
        "cpu %",
        &series(&|x| Some(x.cpu_percent)),
        Some(CPU_LIMIT),
        " %",
    ));
    body.push_str(&spark(
        "memory %",
        &series(&|x| x.memory_used_percent()),
        Some(MEMORY_LIMIT),
        " %",
    ));
    body.push_str(&spark(
        "load (1 min)",
        &series(&|x| Some(x.load[0])),
        None,
        "",
    ));
    for d in s.filesystems().into_iter().filter(|d| d.total_bytes > 0) {
        let path = d.path.clone();
        body.push_str(&spark(
            &format!("disk {path} %"),
            &series(&|x| {
                x.filesystems()
                    .into_iter()
                    .find(|e| e.path == path)
                    .and_then(|e| e.used_percent)
            }),
            Some(DISK_LIMIT),
            " %",
        ));
    }
    body.push_str("</div>");
    if !st.conditions.is_empty() {
        body.push_str("<h2>When conditions</h2>");
        let rows: Vec<Vec<String>> = st
            .conditions
            .iter()
            .map(|c| {
                let holds = c.past_threshold();
                let state = match (c.holding_since, holds) {
                    (Some(since), _) => format!(
                        "{} since {}",
                        badge("OVER"),
                        human_duration((s.taken - since).num_seconds())
                    ),
                    (None, true) => badge("high"),
                    (None, false) => badge("ok"),
                };
                let last = c.last_fired.map_or(String::new(), |t| {
                    format!(
                        " (last ran the job {} ago)",
                        human_duration((s.taken - t).num_seconds())
                    )
                });
                vec![
                    job_link(&c.job),
                    esc(&c.condition),
                    c.value.map_or("-".into(), |v| format!("{v:.1}")),
                    format!("{state}{last}"),
                ]
            })
            .collect();
        body.push_str(&table(
            "stack conditions",
            &["Job", "When", "Now", "State"],
            &rows,
        ));
    }
    if !st.alerts.is_empty() {
        body.push_str("<h2>Alerts</h2>");
        let rows: Vec<Vec<String>> = st
            .alerts
            .iter()
            .map(|a| {
                vec![
                    esc(&a.alert),
                    esc(&a.severity.to_string()),
                    esc(&a.condition),
                    a.value.map_or("-".into(), |v| format!("{v:.1}")),
                    match a.active_since {
                        Some(t) => format!(
                            "{} since {}",
                            badge("ACTIVE"),
                            human_duration((s.taken - t).num_seconds())
                        ),
                        None => badge("ok"),
                    },
                ]
            })
            .collect();
        body.push_str(&table(
            "stack alerts",
            &["Alert", "Severity", "When", "Now", "State"],
            &rows,
        ));
    }
    ok_page("Status", "/status", access, &body)
}

/// `/plugins`: ready, rejected (why) and shadowed plugins, with their
/// versions, hashes and capabilities.
pub(crate) fn plugins(list: &[crate::plugins::PluginEntry], access: &Access) -> Response {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let caps = match &p.capabilities {
                None => "-".to_owned(),
                Some(c) => {
                    let mut parts: Vec<String> =
                        c.fs.iter()
                            .map(|f| {
                                format!(
                                    "{} {} ({})",
                                    if f.write { "writes" } else { "reads" },
                                    esc(&f.guest),
                                    esc(&f.reason)
                                )
                            })
                            .collect();
                    if !c.exec.is_empty() {
                        parts.push(format!("runs {}", esc(&c.exec.join(", "))));
                    }
                    if c.net {
                        parts.push("uses the network".into());
                    }
                    if parts.is_empty() {
                        "nothing".into()
                    } else {
                        parts.join("<br>")
                    }
                }
            };
            let mut status = badge(p.status.as_str());
            if let Some(e) = &p.error {
                let _ = write!(status, " {}", esc(e));
            }
            vec![
                esc(&p.name),
                if p.version.is_empty() {
                    "<span class=\"muted\">not loaded yet</span>".into()
                } else {
                    esc(&p.version)
                },
                status,
                esc(&p.source),
                format!(
                    "<code title=\"{}\">{}…</code>",
                    esc(&p.sha256),
                    esc(&p.sha256.chars().take(12).collect::<String>())
                ),
                caps,
                esc(&p.description),
            ]
        })
        .collect();
    let mut body = format!(
        "<h1>Plugins</h1><p class=\"muted\">{} found</p>",
        list.len()
    );
    body.push_str(&table(
        "stack plugins",
        &[
            "Name",
            "Version",
            "Status",
            "Source",
            "sha256",
            "Capabilities",
            "Description",
        ],
        &rows,
    ));
    ok_page("Plugins", "/plugins", access, &body)
}

/// `/reports?since=7d`: the report `opsd report --since 7d --format html`
/// writes, with the console's navigation and a span chooser on top.
pub(crate) fn report(ops: &Ops, access: &Access, since: Option<&str>) -> Response {
    let since = since.unwrap_or("24h");
    let Some(seconds) = opsd_report_core::parse_span(since) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Report",
            access,
            &format!("`{since}` is not a span; write one such as 24h, 7d or 30d (at most 36500d)"),
        );
    };
    let input = match ops.report_input(chrono::Duration::seconds(seconds.max(1))) {
        Ok(i) => i,
        Err(e) => return ops_error(access, e),
    };
    let period = opsd_report_core::Period::last(seconds, input.now);
    let report = opsd_report_core::build(&input, period);
    // The report escapes markup; terminal controls it leaves as they
    // are, and here they are made visible as everywhere else in the
    // console (markup itself holds none).
    let page = crate::escape::block(&opsd_report_core::render(
        &report,
        opsd_report_core::Format::Html,
    ))
    .into_owned();
    let mut chooser = String::from(
        // The report's own stylesheet styles the page; the console's
        // bar brings a few rules of its own (this page allows inline
        // style, never script).
        "<style>.console-bar{display:flex;flex-wrap:wrap;gap:.3rem 1rem;align-items:center;background:#263238;color:#fff;padding:.5rem 1rem;margin:0 0 1rem;border-radius:4px;font:15px system-ui,sans-serif}.console-bar a{color:#fff;text-decoration:none}.console-bar a.here{border-bottom:2px solid #90caf9}.console-bar form{margin-left:auto}</style><header class=\"console-bar\"><b>opsd</b><a href=\"/\">Schedule</a><a href=\"/history\">History</a><a href=\"/status\">Status</a><a href=\"/plugins\">Plugins</a><a class=\"here\" href=\"/reports\">Reports</a><form method=\"get\" action=\"/reports\"><label>Span <select name=\"since\">",
    );
    let mut spans = vec!["24h", "7d", "30d", "90d"];
    if !spans.contains(&since) {
        spans.push(since);
    }
    for s in spans {
        let _ = write!(
            chooser,
            "<option value=\"{}\"{}>last {}</option>",
            esc(s),
            if s == since { " selected" } else { "" },
            esc(s)
        );
    }
    chooser.push_str("</select></label> <button type=\"submit\">Show</button></form></header>");
    let page = match page.find("<body>") {
        Some(at) => format!("{}{chooser}{}", &page[..at + 6], &page[at + 6..]),
        None => page,
    };
    html_response(StatusCode::OK, page)
}

/// `/login`: the form that takes the token.
pub(crate) fn login(token_set: bool, next: &str, error: Option<&str>) -> Response {
    let mut body = String::from("<h1>Sign in</h1>");
    if !token_set {
        body.push_str("<p class=\"notice\">This console is read-only: [http] has no token. Set <code>token_file</code> under <code>[http]</code> in opsd's config (then <code>systemctl reload opsd</code>) to offer run now, cancel, enable and disable here.</p>");
        return html_response(StatusCode::OK, frame("Sign in", "", None, &body));
    }
    if let Some(e) = error {
        let _ = write!(body, "<div class=\"error\">{}</div>", esc(e));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login\" class=\"filters\"><input type=\"hidden\" name=\"next\" value=\"{}\"><label>Token ([http] token)<input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label><button type=\"submit\">Sign in</button></form>",
        esc(next)
    );
    let code = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    html_response(code, frame("Sign in", "", None, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_jobs_say_where_they_run() {
        let text = "data_dir = \"/tmp/opsd-console-test\"\n\
            [fleet]\npostgres = \"postgres://opsd@db.internal:5432/opsd?sslmode=require\"\nhost = \"a\"\n\
            [[job]]\nname = \"here\"\nplugin = \"clean\"\nschedule = \"@daily\"\n\
            [job.config]\npaths = [\"/x\"]\nolder_than = \"1d\"\n\
            [[job]]\nname = \"once\"\nplugin = \"clean\"\nschedule = \"@daily\"\nscope = \"fleet\"\non = { role = \"db\" }\n\
            [job.config]\npaths = [\"/x\"]\nolder_than = \"1d\"\n";
        let config = crate::config::Config::parse(std::path::Path::new("/etc/opsd.toml"), text)
            .expect("a config");
        let job = |n: &str| config.jobs.iter().find(|j| j.name == n).expect("the job");
        assert_eq!(scope(job("here")), None);
        assert_eq!(
            scope(job("once")).as_deref(),
            Some("fleet: one host with role=db")
        );
    }
}
