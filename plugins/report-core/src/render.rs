//! Markdown and plain-text renderings of a [`Report`].

use crate::model::*;
use std::fmt::Write;

/// A byte count for people.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n.abs();
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let sign = if n < 0.0 { "-" } else { "" };
    if u == 0 {
        format!("{sign}{v:.0} B")
    } else {
        format!("{sign}{v:.1} {}", UNITS[u])
    }
}

/// A duration for people (`850 ms`, `12.3 s`, `4 min`, `3.5 h`, `2.1 d`).
pub fn span_ms(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// A percentage, or `-` when unknown.
pub fn rate(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.1} %")).unwrap_or_else(|| "-".into())
}

/// A job's last success for people: how long ago, `never`, or for a job
/// whose first slot has not come, when it is due.
pub fn last_success(j: &JobReport) -> String {
    match (&j.first_run_due, j.since_last_success_s) {
        (Some(due), _) => format!("new, first run due at {due}"),
        (None, Some(s)) => format!("{} ago", age(s)),
        (None, None) => "never".into(),
    }
}

/// What the peaks are, said once beside them: `peaks are levels
/// sustained over 5 min`, and when there are none, why.
pub fn peak_note(s: &SystemReport) -> String {
    let mut note = format!(
        "peaks are levels sustained over {} min",
        s.peak_window_s / 60
    );
    if s.cpu_peak.is_none() && s.memory_peak.is_none() {
        note.push_str(", and the samples span less");
    }
    note
}

/// Where a disk is heading: when it fills, why no trend, or not growing.
pub fn full_by(d: &DiskReport) -> &str {
    d.projected_full
        .as_deref()
        .or(d.trend_note.as_deref())
        .unwrap_or("not growing")
}

fn dur(d: Option<Durations>) -> [String; 3] {
    match d {
        Some(d) => [span_ms(d.p50), span_ms(d.p95), span_ms(d.max)],
        None => ["-".into(), "-".into(), "-".into()],
    }
}

/// Change of a duration against the previous period, as `+12 %`.
pub fn change(now: Option<Durations>, before: Option<Durations>) -> String {
    match (now, before) {
        (Some(n), Some(b)) if b.p95 > 0 => {
            format!(
                "{:+.0} %",
                100.0 * (n.p95 as f64 - b.p95 as f64) / b.p95 as f64
            )
        }
        _ => "-".into(),
    }
}

/// `12d 3h` style ages.
pub fn age(s: i64) -> String {
    let s = s.max(0);
    if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 86_400 {
        format!("{}h {}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}d {}h", s / 86_400, s % 86_400 / 3600)
    }
}

/// Text from the history (plugin output among it) as inert Markdown: no
/// HTML gets through (`<`, `>`, `&` become entities, as CommonMark
/// renderers then show them), no emphasis, link, code span or table cell
/// break, and no control character; one line.
pub fn md_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' | '@' => {
                o.push('\\');
                o.push(c);
            }
            // No autolink: `https://...`, `www....` and addresses stay
            // text.
            ':' => o.push_str("\\:"),
            '.' if o
                .get(o.len().saturating_sub(3)..)
                .is_some_and(|t| t.eq_ignore_ascii_case("www")) =>
            {
                o.push_str("\\.")
            }
            '\n' | '\r' | '\t' => o.push(' '),
            c if c.is_control() || is_format_char(c) => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// Text from the history for a terminal: one line, control characters
/// and bidirectional overrides replaced by U+FFFD.
pub fn plain(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || is_format_char(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Unicode's bidirectional and invisible format characters: what a
/// terminal or renderer reorders or hides (a right-to-left override makes
/// `gpj.exe` read `exe.jpg`). The host's escaping uses the same set.
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{ad}'
        | '\u{61c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
}

/// The report as Markdown.
/// `backup x3, tick x120`: what a host ran.
pub fn host_jobs(h: &HostReport) -> String {
    if h.jobs.is_empty() {
        return "-".into();
    }
    h.jobs
        .iter()
        .map(|(j, n)| format!("{j} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# opsd {} report: {}\n\n{} to {} (compared with {} to {}), generated {}\n",
        r.period.kind,
        md_escape(&r.host),
        r.period.from,
        r.period.to,
        r.period.previous_from,
        r.period.previous_to,
        r.generated
    );
    let t = &r.totals;
    let _ = writeln!(
        o,
        "**{} runs, {} ok, {} warning, {} failed, {} skipped; success rate {}.**\n",
        t.runs,
        t.ok,
        t.warning,
        t.failed,
        t.missed,
        rate(t.success_rate)
    );
    o.push_str("## Needs attention\n\n");
    if r.attention.is_empty() {
        o.push_str("Nothing.\n\n");
    } else {
        for a in &r.attention {
            let _ = writeln!(o, "- {}", md_escape(a));
        }
        o.push('\n');
    }
    o.push_str("## Jobs\n\n| job | plugin | runs | ok | warn | failed | skipped | success | before | p50 | p95 | max | p95 vs before | last success |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for j in &r.jobs {
        let [p50, p95, max] = dur(j.duration_ms);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            md_escape(&j.name),
            md_escape(&j.plugin),
            j.runs,
            j.ok,
            j.warning,
            j.failed,
            j.missed,
            rate(j.success_rate),
            rate(j.previous_success_rate),
            p50,
            p95,
            max,
            change(j.duration_ms, j.previous_duration_ms),
            md_escape(&last_success(j))
        );
    }
    let failures: Vec<_> = r
        .jobs
        .iter()
        .flat_map(|j| j.failures.iter().map(move |f| (j, f)))
        .collect();
    if !failures.is_empty() {
        o.push_str("\n### Failures\n\n");
        for (j, f) in failures {
            let _ = writeln!(
                o,
                "- {} {} {} ({}): {}",
                md_escape(&f.at),
                md_escape(&j.name),
                md_escape(&f.status),
                md_escape(&f.run),
                md_escape(&f.error)
            );
        }
    }
    if !r.backups.is_empty() {
        o.push_str("\n## Backups\n\n| job | last good | age | size | growth/day |\n|---|---|---|---|---|\n");
        for b in &r.backups {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                md_escape(&b.job),
                md_escape(b.last_ok.as_deref().unwrap_or("never")),
                b.age_s.map(age).unwrap_or_else(|| "-".into()),
                b.bytes_last.map(bytes).unwrap_or_else(|| "-".into()),
                b.growth_bytes_per_day
                    .map(bytes)
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    if !r.hosts.is_empty() {
        o.push_str("\n## Hosts\n\n| host | labels | last seen | runs | failed | success | outbox | jobs run |\n|---|---|---|---|---|---|---|---|\n");
        for h in &r.hosts {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                md_escape(&h.name),
                md_escape(&h.labels),
                h.last_seen_age_s
                    .map(|a| format!("{} ago", age(a)))
                    .unwrap_or_else(|| "-".into()),
                h.runs,
                h.failed,
                rate(h.success_rate),
                h.outbox,
                md_escape(&host_jobs(h))
            );
        }
    }
    if !r.drills.is_empty() {
        o.push_str("\n## Restore drills\n\n| backup set | last good drill | age | dump restored | tables | rows | job |\n|---|---|---|---|---|---|---|\n");
        for d in &r.drills {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md_escape(&d.set),
                md_escape(&d.at),
                age(d.age_s),
                md_escape(d.dump_time.as_deref().unwrap_or("-")),
                d.tables,
                d.rows,
                md_escape(&d.job)
            );
        }
    }
    if !r.certificates.is_empty() {
        o.push_str("\n## Certificates\n\n| job | soonest expiry | renewed | last run |\n|---|---|---|---|\n");
        for c in &r.certificates {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                md_escape(&c.job),
                c.min_days_left
                    .map(|d| format!("{d:.0} days"))
                    .unwrap_or_else(|| "-".into()),
                c.renewed_in_period,
                md_escape(&c.summary)
            );
        }
    }
    if !r.vacuum.is_empty() {
        o.push_str(
            "\n## Vacuum\n\n| job | measure | before | after | change |\n|---|---|---|---|---|\n",
        );
        for v in &r.vacuum {
            for (name, before, after) in &v.effects {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {:+} |",
                    md_escape(&v.job),
                    md_escape(name),
                    before,
                    after,
                    after - before
                );
            }
        }
    }
    if !r.audit.is_empty() {
        o.push_str("\n## Audit\n\n| job | P0 | P1 | P2 | P3 | new | resolved |\n|---|---|---|---|---|---|---|\n");
        for a in &r.audit {
            let [p0, p1, p2, p3] = a.by_severity;
            let _ = writeln!(
                o,
                "| {} | {p0} | {p1} | {p2} | {p3} | {} | {} |",
                md_escape(&a.job),
                a.new,
                a.resolved
            );
        }
        for a in &r.audit {
            for l in &a.new_lines {
                let _ = writeln!(o, "- new in {}: {}", md_escape(&a.job), md_escape(l));
            }
        }
    }
    let s = &r.system;
    let th = s.thresholds;
    let _ = writeln!(
        o,
        "\n## System\n\nCPU {} now, peak {} (limit {:.0} %); memory {} now, peak {} (limit {:.0} %); {}.\n",
        rate(s.cpu_percent),
        rate(s.cpu_peak),
        th.cpu_percent,
        rate(s.memory_percent),
        rate(s.memory_peak),
        th.memory_percent,
        peak_note(s)
    );
    if !s.disks.is_empty() {
        let _ = writeln!(
            o,
            "| disk | size | used | limit | growth/day | full by |\n|---|---|---|---|---|---|"
        );
        for d in &s.disks {
            let _ = writeln!(
                o,
                "| {} | {} | {:.1} % | {:.0} % | {} | {} |",
                md_escape(&d.mount),
                bytes(d.total_bytes as f64),
                d.used_percent,
                th.disk_percent,
                d.growth_bytes_per_day
                    .map(bytes)
                    .unwrap_or_else(|| "-".into()),
                full_by(d)
            );
        }
    }
    o
}

/// The report as plain text for a terminal.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    let t = &r.totals;
    let _ = writeln!(
        o,
        "{} report for {}, {} to {}\n{} runs: {} ok, {} warning, {} failed, {} skipped; success {}\n",
        r.period.kind,
        plain(&r.host),
        r.period.from,
        r.period.to,
        t.runs,
        t.ok,
        t.warning,
        t.failed,
        t.missed,
        rate(t.success_rate)
    );
    if r.attention.is_empty() {
        o.push_str("Needs attention: nothing\n\n");
    } else {
        o.push_str("Needs attention:\n");
        for a in &r.attention {
            let _ = writeln!(o, "  ! {}", plain(a));
        }
        o.push('\n');
    }
    let _ = writeln!(
        o,
        "{:<20} {:>5} {:>7} {:>8} {:>9} {:>9}  LAST SUCCESS",
        "JOB", "RUNS", "FAILED", "SUCCESS", "P50", "P95"
    );
    for j in &r.jobs {
        let [p50, p95, _] = dur(j.duration_ms);
        let _ = writeln!(
            o,
            "{:<20} {:>5} {:>7} {:>8} {:>9} {:>9}  {}",
            plain(&j.name),
            j.runs,
            j.failed,
            rate(j.success_rate),
            p50,
            p95,
            plain(&last_success(j))
        );
    }
    for h in &r.hosts {
        let _ = writeln!(
            o,
            "\nhost {} ({}): last seen {}, {} runs, {} failed, success {}, outbox {}; ran {}",
            plain(&h.name),
            plain(if h.labels.is_empty() {
                "no labels"
            } else {
                &h.labels
            }),
            h.last_seen_age_s
                .map(|a| format!("{} ago", age(a)))
                .unwrap_or_else(|| "never".into()),
            h.runs,
            h.failed,
            rate(h.success_rate),
            h.outbox,
            plain(&host_jobs(h))
        );
    }
    for d in &r.drills {
        let _ = writeln!(
            o,
            "\nrestore drill of {}: last good {} ({} ago, job {}): the dump of {} restored, {} tables, {} rows",
            plain(&d.set),
            d.at,
            age(d.age_s),
            plain(&d.job),
            d.dump_time.as_deref().unwrap_or("-"),
            d.tables,
            d.rows
        );
    }
    let s = &r.system;
    let _ = writeln!(
        o,
        "\nCPU {} now, peak {}; memory {} now, peak {} ({})",
        rate(s.cpu_percent),
        rate(s.cpu_peak),
        rate(s.memory_percent),
        rate(s.memory_peak),
        peak_note(s)
    );
    for d in &s.disks {
        let _ = writeln!(
            o,
            "disk {}: {:.1} % of {} used{}",
            plain(&d.mount),
            d.used_percent,
            bytes(d.total_bytes as f64),
            match (&d.projected_full, &d.trend_note) {
                (Some(f), _) => format!(", full by {f} at the current rate"),
                (None, Some(note)) => format!("; {note}"),
                (None, None) => String::new(),
            }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_is_inert_markdown_and_plain_text() {
        let said = md_escape(
            "<img src=x onerror=alert(1)> [a](javascript:x) **b** https://evil.example/x www.evil.example me@evil.example |\n\u{1b}[2J\u{202e}",
        );
        for bad in [
            "<img", "[a](", "**", "https://", "www.e", "me@", "\n", "\u{1b}", "\u{202e}",
        ] {
            assert!(!said.contains(bad), "{bad:?} in {said}");
        }
        assert!(said.contains("&lt;img"), "{said}");
        let shown = plain("a\r\nb\u{1b}[31m\u{9b}c\u{202e}d\u{ad}");
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}' || c == '\u{ad}'),
            "{shown:?}"
        );
    }
}
