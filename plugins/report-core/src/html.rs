//! One self-contained HTML page: inline CSS, charts drawn as inline SVG,
//! no scripts and nothing fetched, so it opens from a mail attachment or
//! an air-gapped share the same.

use crate::model::*;
use crate::render::{
    age, bytes, change, full_by, host_jobs, last_success, peak_note, rate, span_ms,
};
use std::fmt::Write;

const OK: &str = "#2e7d32";
const WARN: &str = "#f9a825";
const FAIL: &str = "#c62828";
const SKIP: &str = "#9e9e9e";
const PALETTE: [&str; 6] = [
    "#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#5d4037", "#ad1457",
];

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal stacked bars of run outcomes per job.
fn runs_chart(jobs: &[JobReport]) -> String {
    let rows: Vec<&JobReport> = jobs.iter().filter(|j| j.runs + j.missed > 0).collect();
    if rows.is_empty() {
        return "<p class=\"muted\">No runs in this period.</p>".into();
    }
    let max = rows
        .iter()
        .map(|j| j.runs + j.missed)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (label_w, bar_w, row_h) = (170.0, 460.0, 24.0);
    let h = row_h * rows.len() as f64 + 30.0;
    let mut s = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"Runs per job by outcome\" viewBox=\"0 0 700 {h}\" width=\"700\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, j) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"label\">{}</text>",
            label_w - 8.0,
            y + 14.0,
            esc(&j.name)
        );
        let mut x = label_w;
        for (n, color, what) in [
            (j.ok, OK, "ok"),
            (j.warning, WARN, "warning"),
            (j.failed, FAIL, "failed"),
            (j.missed, SKIP, "skipped"),
        ] {
            if n == 0 {
                continue;
            }
            let w = bar_w * n as f64 / max;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"><title>{} {what}: {n}</title></rect>",
                row_h - 6.0,
                esc(&j.name)
            );
            x += w;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" class=\"label\">{} · {}</text>",
            x + 6.0,
            y + 14.0,
            j.runs,
            rate(j.success_rate)
        );
    }
    let y = h - 8.0;
    for (i, (color, what)) in [
        (OK, "ok"),
        (WARN, "warning"),
        (FAIL, "failed"),
        (SKIP, "skipped"),
    ]
    .iter()
    .enumerate()
    {
        let x = label_w + i as f64 * 90.0;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{y}\" class=\"label\">{what}</text>",
            y - 9.0,
            x + 14.0
        );
    }
    s.push_str("</svg>");
    s
}

/// A line chart of several series over time, with optional dashed limit
/// lines. `fmt` labels the y axis.
fn line_chart(
    label: &str,
    series: &[(String, Vec<(i64, f64)>)],
    y_max: Option<f64>,
    limits: &[(f64, &str)],
    fmt: fn(f64) -> String,
) -> String {
    let points: Vec<(i64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if points.len() < 2 {
        return format!(
            "<p class=\"muted\">{}: not enough samples yet.</p>",
            esc(label)
        );
    }
    let (w, h, left, top, bottom) = (700.0, 220.0, 70.0, 10.0, 40.0);
    let t0 = points.iter().map(|p| p.0).min().unwrap_or(0) as f64;
    let t1 = (points.iter().map(|p| p.0).max().unwrap_or(1) as f64).max(t0 + 1.0);
    let ymax = y_max.unwrap_or_else(|| {
        points
            .iter()
            .map(|p| p.1)
            .chain(limits.iter().map(|l| l.0))
            .fold(0.0, f64::max)
            * 1.1
    });
    let ymax = if ymax <= 0.0 { 1.0 } else { ymax };
    let px = |t: f64| left + (t - t0) / (t1 - t0) * (w - left - 20.0);
    let py = |v: f64| top + (1.0 - v / ymax) * (h - top - bottom);
    let mut s = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(label)
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = py(v);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"label\">{}</text>",
            w - 20.0,
            left - 6.0,
            y + 4.0,
            esc(&fmt(v))
        );
    }
    for (v, name) in limits {
        let y = py(*v);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"limit\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" class=\"label limit-label\">{}</text>",
            w - 20.0,
            w - 22.0,
            y - 4.0,
            esc(name)
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let color = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", px(*t as f64), py(*v)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            path.join(" "),
            esc(name)
        );
        if pts.len() == 1 {
            let (t, v) = pts[0];
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                px(t as f64),
                py(v)
            );
        }
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" class=\"label\">{}</text>",
            left + i as f64 * 150.0,
            h - 16.0,
            left + 14.0 + i as f64 * 150.0,
            h - 7.0,
            esc(name)
        );
    }
    let first = crate::build::rfc3339(t0 as i64);
    let last = crate::build::rfc3339(t1 as i64);
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{}\" class=\"label\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"label\">{}</text></svg>",
        h - 24.0,
        esc(&first[..16.min(first.len())]),
        w - 20.0,
        h - 24.0,
        esc(&last[..16.min(last.len())])
    );
    s
}

fn pct(v: f64) -> String {
    format!("{v:.0} %")
}

fn size(v: f64) -> String {
    bytes(v)
}

/// The report as one HTML page.
pub fn page(r: &Report) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>opsd {} report: {}</title><style>{}</style></head><body>",
        esc(&r.period.kind),
        esc(&r.host),
        STYLE
    );
    let t = &r.totals;
    let _ = write!(
        b,
        "<header><h1>opsd {} report <span class=\"muted\">{}</span></h1><p>{} to {} · compared with {} to {} · generated {}</p><p class=\"totals\"><b>{}</b> runs · <span class=\"ok\">{} ok</span> · <span class=\"warn\">{} warning</span> · <span class=\"fail\">{} failed</span> · {} skipped · success rate <b>{}</b></p></header>",
        esc(&r.period.kind),
        esc(&r.host),
        esc(&r.period.from),
        esc(&r.period.to),
        esc(&r.period.previous_from),
        esc(&r.period.previous_to),
        esc(&r.generated),
        t.runs,
        t.ok,
        t.warning,
        t.failed,
        t.missed,
        rate(t.success_rate)
    );
    b.push_str("<section><h2>Needs attention</h2>");
    if r.attention.is_empty() {
        b.push_str("<p class=\"ok\">Nothing.</p>");
    } else {
        b.push_str("<ul class=\"attention\">");
        for a in &r.attention {
            let _ = write!(b, "<li>{}</li>", esc(a));
        }
        b.push_str("</ul>");
    }
    b.push_str("</section><section><h2>Runs</h2>");
    b.push_str(&runs_chart(&r.jobs));
    b.push_str("<table><thead><tr><th>job</th><th>plugin</th><th>runs</th><th>failed</th><th>skipped</th><th>success</th><th>before</th><th>p50</th><th>p95</th><th>max</th><th>p95 vs before</th><th>last success</th><th>next</th></tr></thead><tbody>");
    for j in &r.jobs {
        let d = j.duration_ms;
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&j.name),
            esc(&j.plugin),
            j.runs,
            if j.failed > 0 { "fail" } else { "" },
            j.failed,
            j.missed,
            rate(j.success_rate),
            rate(j.previous_success_rate),
            d.map(|d| span_ms(d.p50)).unwrap_or_else(|| "-".into()),
            d.map(|d| span_ms(d.p95)).unwrap_or_else(|| "-".into()),
            d.map(|d| span_ms(d.max)).unwrap_or_else(|| "-".into()),
            change(j.duration_ms, j.previous_duration_ms),
            esc(&last_success(j)),
            esc(j.next_fire.as_deref().unwrap_or("-"))
        );
    }
    b.push_str("</tbody></table>");
    let failures: Vec<_> = r
        .jobs
        .iter()
        .flat_map(|j| j.failures.iter().map(move |f| (j, f)))
        .collect();
    if !failures.is_empty() {
        b.push_str("<h3>Failures</h3><ul>");
        for (j, f) in failures {
            let _ = write!(
                b,
                "<li><code>{}</code> <b>{}</b> {}: {}</li>",
                esc(&f.at),
                esc(&j.name),
                esc(&f.status),
                esc(&f.error)
            );
        }
        b.push_str("</ul>");
    }
    b.push_str("</section>");
    if !r.backups.is_empty() {
        b.push_str("<section><h2>Backups</h2>");
        let series: Vec<(String, Vec<(i64, f64)>)> = r
            .backups
            .iter()
            .map(|x| (x.job.clone(), x.series.clone()))
            .collect();
        b.push_str(&line_chart("Backup size", &series, None, &[], size));
        b.push_str("<table><thead><tr><th>job</th><th>last good</th><th>age</th><th>size</th><th>growth/day</th></tr></thead><tbody>");
        for x in &r.backups {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.job),
                esc(x.last_ok.as_deref().unwrap_or("never")),
                x.age_s.map(age).unwrap_or_else(|| "-".into()),
                x.bytes_last.map(bytes).unwrap_or_else(|| "-".into()),
                x.growth_bytes_per_day
                    .map(bytes)
                    .unwrap_or_else(|| "-".into())
            );
        }
        b.push_str("</tbody></table></section>");
    }
    if !r.hosts.is_empty() {
        b.push_str("<section><h2>Hosts</h2><table><thead><tr><th>host</th><th>labels</th><th>last seen</th><th>runs</th><th>failed</th><th>success</th><th>outbox</th><th>jobs run</th></tr></thead><tbody>");
        for h in &r.hosts {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&h.name),
                esc(&h.labels),
                h.last_seen_age_s
                    .map(|a| format!("{} ago", age(a)))
                    .unwrap_or_else(|| "-".into()),
                h.runs,
                h.failed,
                rate(h.success_rate),
                h.outbox,
                esc(&host_jobs(h))
            );
        }
        b.push_str("</tbody></table></section>");
    }
    if !r.drills.is_empty() {
        b.push_str("<section><h2>Restore drills</h2><table><thead><tr><th>backup set</th><th>last good drill</th><th>age</th><th>dump restored</th><th>tables</th><th>rows</th><th>job</th></tr></thead><tbody>");
        for d in &r.drills {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.set),
                esc(&d.at),
                age(d.age_s),
                esc(d.dump_time.as_deref().unwrap_or("-")),
                d.tables,
                d.rows,
                esc(&d.job)
            );
        }
        b.push_str("</tbody></table></section>");
    }
    if !r.certificates.is_empty() {
        b.push_str("<section><h2>Certificates</h2><table><thead><tr><th>job</th><th>soonest expiry</th><th>renewed</th><th>last run</th></tr></thead><tbody>");
        for c in &r.certificates {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.job),
                c.min_days_left
                    .map(|d| format!("{d:.0} days"))
                    .unwrap_or_else(|| "-".into()),
                c.renewed_in_period,
                esc(&c.summary)
            );
        }
        b.push_str("</tbody></table></section>");
    }
    if !r.vacuum.is_empty() {
        b.push_str("<section><h2>Vacuum</h2><table><thead><tr><th>job</th><th>measure</th><th>before</th><th>after</th><th>change</th></tr></thead><tbody>");
        for v in &r.vacuum {
            for (name, before, after) in &v.effects {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{before}</td><td>{after}</td><td>{:+}</td></tr>",
                    esc(&v.job),
                    esc(name),
                    after - before
                );
            }
        }
        b.push_str("</tbody></table></section>");
    }
    if !r.audit.is_empty() {
        b.push_str("<section><h2>Audit</h2><table><thead><tr><th>job</th><th>P0</th><th>P1</th><th>P2</th><th>P3</th><th>new</th><th>resolved</th></tr></thead><tbody>");
        for a in &r.audit {
            let [p0, p1, p2, p3] = a.by_severity;
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=\"{}\">{p0}</td><td class=\"{}\">{p1}</td><td>{p2}</td><td>{p3}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.job),
                if p0 > 0 { "fail" } else { "" },
                if p1 > 0 { "fail" } else { "" },
                a.new,
                a.resolved
            );
        }
        b.push_str("</tbody></table><ul>");
        for a in &r.audit {
            for l in &a.new_lines {
                let _ = write!(b, "<li>new in {}: {}</li>", esc(&a.job), esc(l));
            }
        }
        b.push_str("</ul></section>");
    }
    let s = &r.system;
    let th = s.thresholds;
    b.push_str("<section><h2>System</h2>");
    let _ = write!(
        b,
        "<p>CPU {} now, peak {} (limit {:.0} %) · memory {} now, peak {} (limit {:.0} %) · {}</p>",
        rate(s.cpu_percent),
        rate(s.cpu_peak),
        th.cpu_percent,
        rate(s.memory_percent),
        rate(s.memory_peak),
        th.memory_percent,
        esc(&peak_note(s))
    );
    let cpu: Vec<(i64, f64)> = s.series.iter().map(|x| (x.0, x.1)).collect();
    let mem: Vec<(i64, f64)> = s.series.iter().map(|x| (x.0, x.2)).collect();
    b.push_str(&line_chart(
        "CPU and memory",
        &[("CPU %".into(), cpu), ("memory %".into(), mem)],
        Some(100.0),
        &[
            (th.cpu_percent, "CPU limit"),
            (th.memory_percent, "memory limit"),
        ],
        pct,
    ));
    let disks: Vec<(String, Vec<(i64, f64)>)> = s
        .disks
        .iter()
        .map(|d| (d.mount.clone(), d.series.clone()))
        .collect();
    b.push_str(&line_chart(
        "Disk used",
        &disks,
        Some(100.0),
        &[(th.disk_percent, "disk limit")],
        pct,
    ));
    b.push_str("<table><thead><tr><th>disk</th><th>size</th><th>used</th><th>growth/day</th><th>full by</th></tr></thead><tbody>");
    for d in &s.disks {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{:.1} %</td><td>{}</td><td>{}</td></tr>",
            esc(&d.mount),
            bytes(d.total_bytes as f64),
            if d.used_percent > th.disk_percent {
                "fail"
            } else {
                ""
            },
            d.used_percent,
            d.growth_bytes_per_day
                .map(bytes)
                .unwrap_or_else(|| "-".into()),
            esc(full_by(d))
        );
    }
    b.push_str("</tbody></table></section>");
    let _ = writeln!(
        b,
        "<footer class=\"muted\">{} · made by opsd</footer></body></html>",
        esc(&r.schema)
    );
    b
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1000px;color:#212121;padding:0 16px}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;border-bottom:1px solid #e0e0e0;padding-bottom:4px;margin-top:28px}table{border-collapse:collapse;width:100%;margin:10px 0}th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;font-variant-numeric:tabular-nums}th{background:#fafafa;font-weight:600}.muted{color:#757575}.ok{color:#2e7d32}.warn{color:#b26a00}.fail{color:#c62828;font-weight:600}.attention li{color:#c62828}.chart{max-width:100%;height:auto;display:block;margin:8px 0}.chart .label{font-size:11px;fill:#424242}.chart .grid{stroke:#eee}.chart .limit{stroke:#c62828;stroke-dasharray:5 4}.chart .limit-label{fill:#c62828}code{font-size:12px}footer{margin-top:32px;font-size:12px}";
