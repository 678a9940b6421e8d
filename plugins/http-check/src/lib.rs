//! http-check: GETs each configured URL and checks its status, body,
//! latency and (for HTTPS, through `openssl s_client`) how long its
//! certificate has left. Any unhealthy check fails the run with a summary
//! naming what is wrong, so `failure` and `recovered` webhooks tell of an
//! outage and its end; the runbook's daily `curl /health`, automated.

pub mod cert;
pub mod config;
pub mod fetch;
pub mod verdict;

use config::Config;
use opsd_sdk::{Context, ContextExt, Description, Outcome, Plugin, PluginError, Status};
use verdict::Level;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["checks"],
  "additionalProperties": false,
  "properties": {
    "checks": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["url"], "additionalProperties": false,
      "properties": {
        "name": {"type": "string"},
        "url": {"type": "string"},
        "expect_status": {"type": ["integer", "array"], "items": {"type": "integer"}},
        "expect_body": {"type": "string"},
        "max_latency_ms": {"type": "integer", "minimum": 0},
        "warn_latency_ms": {"type": "integer", "minimum": 0},
        "timeout_ms": {"type": "integer", "minimum": 1},
        "follow_redirects": {"type": "boolean"},
        "cert_warn_days": {"type": "integer", "minimum": 0},
        "cert_fail_days": {"type": "integer", "minimum": 0}}}}
  }
}"#;

struct HttpCheck;

impl Plugin for HttpCheck {
    fn describe() -> Description {
        Description::new(
            "http-check",
            env!("CARGO_PKG_VERSION"),
            "Checks HTTP(S) endpoints: status, body, latency and certificate expiry",
        )
        .wants_net()
        // Only for cert_warn_days / cert_fail_days: wasi:http does not
        // show the server's certificate.
        .wants_exec("openssl")
        .config_schema(SCHEMA)
        .suggested_schedule("*/5 * * * *")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: Config = ctx.config()?;
        let plans = cfg.plans().map_err(|e| ctx.bad_config(e))?;
        if ctx.dry_run {
            let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
            return Ok(Outcome::ok(format!("would check {}", names.join(", "))));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let total = plans.len() as u64;
        let mut verdicts = Vec::new();
        let mut metrics: Vec<(String, f64, Option<&str>)> = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            opsd_sdk::progress(i as u64, Some(total), &format!("checking {}", plan.name));
            let mut seen = fetch::fetch(plan);
            if plan.cert_warn_days.is_some() || plan.cert_fail_days.is_some() {
                seen.cert_days = Some(cert::days_left(&plan.url, plan.timeout_ms, now));
            }
            let v = verdict::judge(plan, &seen);
            match v.level {
                Level::Ok => opsd_sdk::info!("{}", v.line),
                Level::Warning => opsd_sdk::warn!("{}", v.line),
                Level::Failed => opsd_sdk::error!("{}", v.line),
            }
            let n = i + 1;
            metrics.push((
                format!("check{n}_up"),
                f64::from(u8::from(v.level != Level::Failed)),
                None,
            ));
            if let Some(s) = seen.status {
                metrics.push((format!("check{n}_status"), f64::from(s), None));
                metrics.push((
                    format!("check{n}_latency_ms"),
                    (seen.latency_ms * 10.0).round() / 10.0,
                    Some("ms"),
                ));
            }
            if let Some(Ok(days)) = seen.cert_days {
                metrics.push((
                    format!("check{n}_cert_days_left"),
                    days as f64,
                    Some("days"),
                ));
            }
            verdicts.push(v);
        }
        opsd_sdk::progress(total, Some(total), "done");
        Ok(outcome(&verdicts, metrics))
    }
}

/// The run's outcome: the worst verdict, a summary naming every check
/// that is not healthy (or all being healthy), each verdict in the
/// details.
pub fn outcome(
    verdicts: &[verdict::Verdict],
    metrics: Vec<(String, f64, Option<&str>)>,
) -> Outcome {
    let worst = verdicts.iter().map(|v| v.level).max().unwrap_or(Level::Ok);
    let bad: Vec<&verdict::Verdict> = verdicts.iter().filter(|v| v.level != Level::Ok).collect();
    let failed = verdicts.iter().filter(|v| v.level == Level::Failed).count();
    let summary = match (worst, verdicts.len()) {
        (Level::Ok, 1) => verdicts[0].line.clone(),
        (Level::Ok, n) => format!("all {n} checks healthy"),
        (_, n) => {
            let what = if failed > 0 {
                "unhealthy"
            } else {
                "with warnings"
            };
            let count = if failed > 0 { failed } else { bad.len() };
            let lines: Vec<&str> = bad.iter().map(|v| v.line.as_str()).collect();
            if n == 1 {
                lines.join("; ")
            } else {
                format!("{count} of {n} checks {what}: {}", lines.join(" | "))
            }
        }
    };
    let status = match worst {
        Level::Ok => Status::Ok,
        Level::Warning => Status::Warning,
        Level::Failed => Status::Failed,
    };
    let details: Vec<&str> = verdicts.iter().map(|v| v.line.as_str()).collect();
    let mut out = Outcome::with_status(status, summary).details(details.join("\n"));
    out = out.metric("checks", verdicts.len() as f64, None);
    out = out.metric("unhealthy", failed as f64, None);
    for (name, value, unit) in metrics {
        out = out.metric(&name, value, unit);
    }
    out
}

opsd_sdk::export_plugin!(HttpCheck);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_the_config_parses() {
        opsd_sdk::schema::assert_matches::<Config>(
            SCHEMA,
            &serde_json::json!({"checks": [{"url": "https://h/", "expect_status": [200], "expect_body": "ok",
                "max_latency_ms": 5, "warn_latency_ms": 1, "timeout_ms": 10, "follow_redirects": true,
                "cert_warn_days": 3, "cert_fail_days": 1, "name": "x"}]}),
        );
    }

    #[test]
    fn the_summary_names_each_unhealthy_check() {
        let v = |level, line: &str| verdict::Verdict {
            level,
            line: line.into(),
        };
        let o = outcome(
            &[
                v(Level::Ok, "a: fine"),
                v(Level::Failed, "b: answered 500"),
                v(Level::Warning, "c: slow"),
            ],
            Vec::new(),
        );
        assert_eq!(o.status, Status::Failed);
        assert_eq!(
            o.summary,
            "1 of 3 checks unhealthy: b: answered 500 | c: slow"
        );
        let o = outcome(
            &[v(Level::Ok, "a: fine"), v(Level::Ok, "b: fine")],
            Vec::new(),
        );
        assert_eq!(
            (o.status, o.summary.as_str()),
            (Status::Ok, "all 2 checks healthy")
        );
    }
}
