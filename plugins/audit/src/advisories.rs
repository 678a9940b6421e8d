//! Findings from scanners the job grants: `npm audit --json`,
//! `cargo audit --json`, `osv-scanner --format json`, and pending security
//! updates from `apt list --upgradable`.

use crate::findings::{Finding, Severity};
use serde_json::Value;

fn level(word: &str) -> Severity {
    match word.to_ascii_lowercase().as_str() {
        "critical" | "high" => Severity::P1,
        "moderate" | "medium" => Severity::P2,
        _ => Severity::P3,
    }
}

/// What npm said went wrong: its `error` object's summary and detail
/// (either may be empty; a registry that cannot be reached gives only a
/// detail), with its code; never an empty message.
fn npm_error_text(err: &Value) -> String {
    let part = |k: &str| {
        err[k]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut text: Vec<String> = ["summary", "detail"]
        .iter()
        .filter_map(|k| part(k))
        .collect();
    if let Some(code) = part("code") {
        text.push(format!("({code})"));
    }
    if text.is_empty() {
        return format!("npm reported an error without a message: {err}");
    }
    text.join(" ")
}

/// `npm audit --json` (npm 7 and later): one finding per vulnerable
/// package.
pub fn npm(dir: &str, json: &str) -> Result<Vec<Finding>, String> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| format!("npm audit in {dir}: output is not JSON ({e})"))?;
    if let Some(err) = v.get("error") {
        return Err(format!("npm audit in {dir}: {}", npm_error_text(err)));
    }
    let mut out = Vec::new();
    for (name, vuln) in v["vulnerabilities"].as_object().into_iter().flatten() {
        let severity = vuln["severity"].as_str().unwrap_or("low");
        let via: Vec<String> = vuln["via"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["title"].as_str().map(str::to_owned))
            .collect();
        let fix = match &vuln["fixAvailable"] {
            Value::Bool(true) => format!("npm audit fix (in {dir})"),
            Value::Object(f) => format!(
                "upgrade {} to {} (npm audit fix --force in {dir}; a major change)",
                f.get("name").and_then(Value::as_str).unwrap_or(name),
                f.get("version")
                    .and_then(Value::as_str)
                    .unwrap_or("the fixed version")
            ),
            _ => format!(
                "no fix yet: replace or pin {name} (range {})",
                vuln["range"].as_str().unwrap_or("?")
            ),
        };
        out.push(Finding {
            id: "npm-advisory".into(),
            key: format!("{dir}:{name}"),
            severity: level(severity),
            title: format!(
                "{name} has a {severity} advisory{}",
                if via.is_empty() {
                    String::new()
                } else {
                    format!(": {}", via.join("; "))
                }
            ),
            fix,
        });
    }
    Ok(out)
}

/// `cargo audit --json`: one finding per advisory and package.
pub fn cargo(dir: &str, json: &str) -> Result<Vec<Finding>, String> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| format!("cargo audit in {dir}: output is not JSON ({e})"))?;
    let mut out = Vec::new();
    for item in v["vulnerabilities"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let adv = &item["advisory"];
        let id = adv["id"].as_str().unwrap_or("?");
        let pkg = item["package"]["name"].as_str().unwrap_or("?");
        let version = item["package"]["version"].as_str().unwrap_or("?");
        let patched: Vec<&str> = item["versions"]["patched"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push(Finding {
            id: "cargo-advisory".into(),
            key: format!("{dir}:{id}:{pkg}"),
            severity: Severity::P1,
            title: format!(
                "{pkg} {version}: {id} {}",
                adv["title"].as_str().unwrap_or("")
            ),
            fix: if patched.is_empty() {
                format!("no patched version of {pkg}: replace it or accept {id} in audit.toml")
            } else {
                format!("cargo update -p {pkg} (patched: {})", patched.join(", "))
            },
        });
    }
    Ok(out)
}

/// `osv-scanner --format json`: one finding per vulnerability and package.
pub fn osv(dir: &str, json: &str) -> Result<Vec<Finding>, String> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| format!("osv-scanner in {dir}: output is not JSON ({e})"))?;
    let mut out = Vec::new();
    for result in v["results"].as_array().into_iter().flatten() {
        for p in result["packages"].as_array().into_iter().flatten() {
            let name = p["package"]["name"].as_str().unwrap_or("?");
            let version = p["package"]["version"].as_str().unwrap_or("?");
            for vuln in p["vulnerabilities"].as_array().into_iter().flatten() {
                let id = vuln["id"].as_str().unwrap_or("?");
                let sev = vuln["database_specific"]["severity"]
                    .as_str()
                    .unwrap_or("moderate");
                out.push(Finding {
                    id: "osv-advisory".into(),
                    key: format!("{dir}:{id}:{name}"),
                    severity: level(sev),
                    title: format!(
                        "{name} {version}: {id} {}",
                        vuln["summary"].as_str().unwrap_or("")
                    ),
                    fix: format!("upgrade {name} past the affected versions of {id}"),
                });
            }
        }
    }
    Ok(out)
}

/// `apt list --upgradable`: (all upgradable, security ones).
pub fn apt(text: &str) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut security = Vec::new();
    for line in text.lines() {
        // `openssl/stable-security 3.0.15-1~deb12u1 amd64 [upgradable from: ...]`
        let Some((name, rest)) = line.split_once('/') else {
            continue;
        };
        if !rest.contains("[upgradable from") {
            continue;
        }
        all.push(name.to_owned());
        let suites = rest.split_whitespace().next().unwrap_or("");
        if suites.split(',').any(|s| s.contains("-security")) {
            security.push(name.to_owned());
        }
    }
    (all, security)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npm_errors_keep_their_text() {
        let e = npm(
            "/srv/app",
            r#"{"error":{"code":"ENOTFOUND","summary":"","detail":"request to https://registry.npmjs.org/-/npm/v1/security/advisories/bulk failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "npm audit in /srv/app: request to https://registry.npmjs.org/-/npm/v1/security/advisories/bulk failed, reason: getaddrinfo ENOTFOUND registry.npmjs.org (ENOTFOUND)"
        );
        let e = npm("/srv/app", r#"{"error":{"summary":"This command requires an existing lockfile.","detail":"Try creating one first with: npm i --package-lock-only"}}"#).unwrap_err();
        assert!(
            e.ends_with("lockfile. Try creating one first with: npm i --package-lock-only"),
            "{e}"
        );
        let e = npm("/srv/app", r#"{"error":{}}"#).unwrap_err();
        assert!(e.contains("without a message"), "{e}");
    }

    #[test]
    fn npm_audit_v2_report() {
        let json = r#"{"auditReportVersion":2,"vulnerabilities":{
            "lodash":{"name":"lodash","severity":"high","via":[{"title":"Prototype Pollution in lodash"}],"range":"<4.17.21","fixAvailable":true},
            "minimist":{"name":"minimist","severity":"moderate","via":["mkdirp"],"range":"<1.2.6","fixAvailable":{"name":"mkdirp","version":"1.0.4","isSemVerMajor":true}}},
            "metadata":{"vulnerabilities":{"high":1,"moderate":1,"total":2}}}"#;
        let f = npm("/srv/app", json).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].key, "/srv/app:lodash");
        assert_eq!(f[0].severity, Severity::P1);
        assert_eq!(f[0].fix, "npm audit fix (in /srv/app)");
        assert!(f[1].fix.starts_with("upgrade mkdirp to 1.0.4"));
        assert!(npm("/srv/app", "oops").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn apt_security_updates() {
        let text = "Listing... Done\nopenssl/stable-security 3.0.15-1~deb12u1 amd64 [upgradable from: 3.0.14-1~deb12u2]\ncurl/stable 7.88.1-10+deb12u8 amd64 [upgradable from: 7.88.1-10+deb12u7]\n";
        let (all, sec) = apt(text);
        assert_eq!(all, ["openssl", "curl"]);
        assert_eq!(sec, ["openssl"]);
    }

    #[test]
    fn cargo_audit_report() {
        let json = r#"{"vulnerabilities":{"found":true,"count":1,"list":[{"advisory":{"id":"RUSTSEC-2024-0001","title":"Bad thing"},"package":{"name":"foo","version":"0.1.0"},"versions":{"patched":[">=0.1.1"]}}]}}"#;
        let f = cargo("/src", json).unwrap();
        assert_eq!(f[0].key, "/src:RUSTSEC-2024-0001:foo");
        assert_eq!(f[0].fix, "cargo update -p foo (patched: >=0.1.1)");
    }
}
