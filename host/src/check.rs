//! `opsd check`: what can be known about a configuration without running
//! anything. The file parsed and validated already (or `check` would not
//! get here); this compares each job with what its plugin's `describe()`
//! asks for: grants short of it, grants beyond it, and a `[job.config]`
//! that does not fit the plugin's schema.

use crate::config::{Config, Job};
use crate::grants::{Access, fs};
use crate::plugins::Registry;
use crate::runtime::PluginInfo;
use serde_json::Value;
use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The job will fail or misbehave; `check` exits non-zero.
    Error,
    /// Worth a look; the job may be fine.
    Warning,
    /// How the job will run (what its programs may touch); not counted.
    Note,
}

/// One thing `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub line: usize,
    pub job: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        };
        write!(
            f,
            "{}: job `{}`: {level}: {}",
            self.line, self.job, self.message
        )
    }
}

/// Checks every job against its plugin; jobs the configuration set aside
/// as broken are errors with their problems.
pub async fn check(config: &Config, registry: &Registry) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in &config.broken {
        for p in &b.problems {
            out.push(Finding {
                level: Level::Error,
                line: p.line.unwrap_or(b.line),
                job: b.name.clone(),
                message: p.message.clone(),
            });
        }
    }
    for job in &config.jobs {
        let mut push = |level, line: usize, message: String| {
            out.push(Finding {
                level,
                line,
                job: job.name.clone(),
                message,
            })
        };
        if !job.grants.exec.programs.is_empty() {
            sandbox_findings(job, &mut push);
        }
        match registry.find(&job.plugin).await {
            Err(e) => push(Level::Error, job.line, e.to_string()),
            Ok(found) => {
                let plugin = found.plugin;
                for (level, message) in grant_findings(job, &plugin.info) {
                    push(level, job.line, message);
                }
                for (key, message) in config_findings(&job.config, &plugin.info) {
                    let line = key
                        .as_ref()
                        .and_then(|k| job.config_lines.get(k))
                        .copied()
                        .unwrap_or(job.line);
                    push(Level::Error, line, message);
                }
            }
        }
    }
    out.sort_by_key(|f| (f.line, f.level));
    out
}

/// `config` with every job that cannot run as written set aside as
/// broken: its plugin is not found (or was rejected), or its
/// `[job.config]` is not what the plugin's schema accepts. What the
/// daemon puts in force at start and on every reload, so a typo in a
/// plugin's name or its config is said at once, not when the job fires.
/// (Grants short of what a plugin asks for stay `opsd check`'s errors:
/// a plugin may not need them on every run.)
pub async fn sift(mut config: Config, registry: &Registry) -> Config {
    let mut broken: Vec<crate::config::BrokenJob> = Vec::new();
    for job in &config.jobs {
        let problem = |line: usize, message: String| crate::diag::Problem {
            line: Some(line),
            job: Some(job.name.clone()),
            message,
        };
        let problems: Vec<crate::diag::Problem> = match registry.find(&job.plugin).await {
            Err(e) => vec![problem(job.line, e.to_string())],
            Ok(found) => config_findings(&job.config, &found.plugin.info)
                .into_iter()
                .map(|(key, message)| {
                    let line = key
                        .as_ref()
                        .and_then(|k| job.config_lines.get(k))
                        .copied()
                        .unwrap_or(job.line);
                    problem(line, message)
                })
                .collect(),
        };
        if !problems.is_empty() {
            broken.push(crate::config::BrokenJob {
                name: job.name.clone(),
                plugin: Some(job.plugin.clone()),
                line: job.line,
                problems,
            });
        }
    }
    config.set_aside(broken);
    config
}

/// What the programs of a job with an exec grant may touch, and whether
/// this machine can hold them to it.
fn sandbox_findings(job: &Job, push: &mut impl FnMut(Level, usize, String)) {
    let support = crate::grants::confine::Support::get();
    let missing = support.missing();
    if !missing.is_empty() {
        let level = match job.grants.children.mode {
            crate::grants::confine::Mode::Strict => Level::Error,
            crate::grants::confine::Mode::BestEffort => Level::Warning,
        };
        push(
            level,
            job.line,
            format!(
                "this machine cannot fully confine the programs the job runs: it lacks {}{}",
                missing.join("; "),
                if level == Level::Error {
                    "; they will not start (set `[sandbox] exec = \"best-effort\"` to run them with less)"
                } else {
                    "; they run with less (best-effort)"
                }
            ),
        );
    }
    for line in job.grants.child_sandbox() {
        push(Level::Note, job.line, format!("its programs {line}"));
    }
    for p in &job.grants.exec.programs {
        let mut started = p.runs.clone();
        started.retain(|r| *r != p.real);
        if !started.is_empty() {
            let list: Vec<String> = started.iter().map(|r| r.display().to_string()).collect();
            push(
                Level::Note,
                job.line,
                format!(
                    "`{}` ({}) starts {} in its stead; granting `{}` grants those too",
                    p.name,
                    p.real.display(),
                    list.join(", "),
                    p.name
                ),
            );
        }
    }
}

/// What the plugin says it needs against what the job grants.
fn grant_findings(job: &Job, info: &PluginInfo) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    fs_findings(job, info, &mut out);
    exec_findings(job, info, &mut out);
    let caps = &info.capabilities;
    let name = &info.name;
    if caps.net && job.grants.net.is_empty() {
        out.push((
            Level::Warning,
            format!("plugin {name} uses the network and the job grants none; add `net = [...]`"),
        ));
    }
    match job.grants.history {
        crate::grants::HistoryScope::All => out.push((
            Level::Note,
            format!("plugin {name} may read every job's run history (grants.history = \"all\")"),
        )),
        // The built-in report summarises every job.
        crate::grants::HistoryScope::Own if info.name == "report" => out.push((
            Level::Warning,
            format!(
                "plugin {name} reports on every job, but the job lets it read only its own runs; add `history = \"all\"` to its [job.grants]"
            ),
        )),
        crate::grants::HistoryScope::Own => {}
    }
    // The programs a job grants connect through its `net` grant too
    // (psql to its database, git to its remote): a net grant beside
    // programs is theirs, not more than the plugin asks.
    if !caps.net && !job.grants.net.is_empty() && job.grants.exec.programs.is_empty() {
        out.push((
            Level::Warning,
            format!(
                "the job grants network access ({}), which plugin {name} does not ask for",
                job.grants.net.describe()
            ),
        ));
    }
    out
}

/// Directories the plugin writes or expects, against the fs grants.
fn fs_findings(job: &Job, info: &PluginInfo, out: &mut Vec<(Level, String)>) {
    let (caps, name) = (&info.capabilities, &info.name);
    for want in &caps.fs {
        let access = if want.write { "rw" } else { "ro" };
        match fs::locate(&job.grants.fs, &want.guest) {
            Ok((grant, _)) if want.write && grant.access == Access::ReadOnly => out.push((
                Level::Error,
                format!(
                    "plugin {name} writes under {} ({}), but the grant {} -> {} is read-only; set access = \"rw\"",
                    want.guest,
                    want.reason,
                    grant.guest,
                    grant.host.display()
                ),
            )),
            Ok(_) => {}
            Err(_) if job.grants.fs.is_empty() => out.push((
                Level::Error,
                format!(
                    "plugin {name} needs a directory ({}) and the job grants none; add fs = [{{ host = \"...\", guest = \"{}\", access = \"{access}\" }}]",
                    want.reason, want.guest
                ),
            )),
            // The config names paths inside the grants (a guest path
            // named as on the host, `/var/log/app`): it points there.
            Err(_) if config_strings(&job.config).any(|s| fs::locate(&job.grants.fs, s).is_ok()) => {}
            Err(_) => out.push((
                Level::Warning,
                format!(
                    "plugin {name} expects {} ({}); the job grants {} instead, which is fine if its config points there",
                    want.guest,
                    want.reason,
                    fs::describe(&job.grants.fs)
                ),
            )),
        }
    }
}

/// Every string in a job's config, at any depth.
fn config_strings(config: &Value) -> impl Iterator<Item = &str> {
    let mut stack = vec![config];
    std::iter::from_fn(move || {
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => return Some(s.as_str()),
                Value::Array(a) => stack.extend(a),
                Value::Object(o) => stack.extend(o.values()),
                _ => {}
            }
        }
        None
    })
}

/// Programs the plugin may run, against the exec grant, both ways.
///
/// A plugin that asks for `*` (the built-in `command`) runs what its
/// config names: the grant is the whole story, except that a `program`
/// the grant does not name could never run.
fn exec_findings(job: &Job, info: &PluginInfo, out: &mut Vec<(Level, String)>) {
    let (caps, name) = (&info.capabilities, &info.name);
    if caps.exec.iter().any(|c| c == "*") {
        if let Some(program) = job.config.get("program").and_then(Value::as_str)
            && !job.grants.exec.names(program)
        {
            out.push((
                Level::Error,
                format!(
                    "config program `{program}` is not in the job's exec grant ({}); add it to `exec = [...]`, by the same name or absolute path",
                    job.grants.exec.describe()
                ),
            ));
        }
        return;
    }
    for program in &caps.exec {
        if !job.grants.exec.names(program) {
            // A plugin names every program it may run in some mode (the
            // cert-renew hook's certbot); one the job does not grant is
            // worth knowing, not a warning.
            out.push((
                Level::Note,
                format!("plugin {name} may run `{program}`, which the job does not grant; add it to `exec = [...]` if the job needs it"),
            ));
        }
    }
    for p in &job.grants.exec.programs {
        // A program the config names (a service's restart command, a
        // deploy hook) is one the config makes it run.
        let named = config_strings(&job.config).any(|s| s == p.name);
        if !named
            && !caps
                .exec
                .iter()
                .any(|c| *c == p.name || p.path.ends_with(c))
        {
            out.push((
                Level::Warning,
                format!(
                    "the job grants `{}`, which plugin {name} does not list among the programs it may run ({}); fine if the job's config makes it run `{}`, otherwise take it out of `exec` (each granted program is one more a misbehaving plugin could start)",
                    p.name,
                    if caps.exec.is_empty() {
                        "it lists none".to_owned()
                    } else {
                        crate::diag::toml_strings(&caps.exec)
                    },
                    p.name
                ),
            ));
        }
    }
}

/// Checks `[job.config]` against the plugin's JSON Schema. The subset
/// understood is what plugin schemas use: `type`, `properties`,
/// `required`, `additionalProperties: false`, `enum`, `items`, `minimum`,
/// `maximum`. Returns (top-level key, message).
pub fn config_findings(config: &Value, info: &PluginInfo) -> Vec<(Option<String>, String)> {
    let Ok(schema) = serde_json::from_str::<Value>(&info.config_schema) else {
        return vec![(
            None,
            format!("plugin {} has a config schema that is not JSON", info.name),
        )];
    };
    let mut out = Vec::new();
    validate(config, &schema, "", &info.name, &mut out);
    out
}

/// Reads one `opsd run --set KEY=VALUE`: the value as a TOML value
/// (`0`, `true`, `"text"`, `["a", "b"]`, `{ a = 1 }`), or as the string it
/// is when it is not one (`--set mode=fast`).
pub fn parse_set(arg: &str) -> Result<(String, Value), String> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(format!(
            "--set `{arg}` has no `=`; write KEY=VALUE, such as --set rotate=0"
        ));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("--set `{arg}` names no key; write KEY=VALUE"));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v) => serde_json::to_value(v).map_err(|e| format!("--set {key}: {e}"))?,
            None => Value::String(raw.to_owned()),
        },
        Err(_) => Value::String(raw.to_owned()),
    };
    Ok((key.to_owned(), value))
}

/// Sets `key` (dotted: `postgres.port`) in a job's `[job.config]` to
/// `value`, for one run (`opsd run --set`). The first part must be a key
/// the plugin's schema names (`known`) or the config has: a `--set`
/// reaches `[job.config]` only, never grants or job settings.
pub fn set_config_key(
    config: &mut Value,
    key: &str,
    value: Value,
    known: &[String],
) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| {
        p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(format!(
            "`{key}` is not a key; write KEY=VALUE with KEY a [job.config] key (dotted for a table inside it: postgres.port=5433)"
        ));
    }
    let top = parts[0];
    let present = config.get(top).is_some();
    if !present && !known.iter().any(|k| k == top) {
        let mut keys = known.to_vec();
        if let Some(map) = config.as_object() {
            keys.extend(map.keys().filter(|k| !known.contains(k)).cloned());
        }
        return Err(format!(
            "`{top}` is not a key of the job's [job.config] (its plugin's keys: {}); --set changes [job.config] only, never the job's grants or settings",
            if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            }
        ));
    }
    if !config.is_object() {
        *config = Value::Object(Default::default());
    }
    let mut at = config;
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(map) = at else {
            return Err(format!(
                "`{}` is not a table, so it has no key `{part}`",
                parts[..i].join(".")
            ));
        };
        if i + 1 == parts.len() {
            map.insert((*part).to_owned(), value);
            return Ok(());
        }
        at = map
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

fn validate(
    v: &Value,
    schema: &Value,
    path: &str,
    plugin: &str,
    out: &mut Vec<(Option<String>, String)>,
) {
    let top = || {
        path.split('.')
            .next()
            .filter(|p| !p.is_empty())
            .map(|p| p.split('[').next().unwrap_or(p).to_owned())
    };
    let at = if path.is_empty() {
        "[job.config]".to_owned()
    } else {
        format!("config key `{path}`")
    };
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| type_matches(v, t)) {
            out.push((
                top(),
                format!(
                    "{at} is {}, plugin {plugin} wants {}",
                    type_name(v),
                    types.join(" or ")
                ),
            ));
            return;
        }
    }
    scalar_findings(v, schema, &at, &top, plugin, out);
    if let Value::Object(map) = v {
        object_findings(map, schema, path, &at, &top, plugin, out);
    }
    if let (Value::Array(items), Some(item_schema)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, item_schema, &format!("{path}[{i}]"), plugin, out);
        }
    }
}

/// `enum`, `minimum` and `maximum`.
fn scalar_findings(
    v: &Value,
    schema: &Value,
    at: &str,
    top: &dyn Fn() -> Option<String>,
    plugin: &str,
    out: &mut Vec<(Option<String>, String)>,
) {
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        out.push((
            top(),
            format!("{at} is {v}; plugin {plugin} accepts {}", list.join(", ")),
        ));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            out.push((top(), format!("{at} is {n}, below the minimum {min}")));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            out.push((top(), format!("{at} is {n}, above the maximum {max}")));
        }
    }
}

/// `required`, `properties` (recursively) and `additionalProperties`.
fn object_findings(
    map: &serde_json::Map<String, Value>,
    schema: &Value,
    path: &str,
    at: &str,
    top: &dyn Fn() -> Option<String>,
    plugin: &str,
    out: &mut Vec<(Option<String>, String)>,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(req) {
            out.push((
                None,
                format!("{at} lacks `{req}`, which plugin {plugin} requires"),
            ));
        }
    }
    for (k, sub) in map {
        let child = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match props.and_then(|p| p.get(k)) {
            Some(s) => validate(sub, s, &child, plugin, out),
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                let known: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let key = if path.is_empty() {
                    Some(k.clone())
                } else {
                    top()
                };
                out.push((
                    key,
                    format!(
                        "config key `{child}` is not known to plugin {plugin} (it knows {})",
                        known.join(", ")
                    ),
                ));
            }
            None => {}
        }
    }
}

fn type_matches(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(schema: &str) -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "1".into(),
            description: String::new(),
            capabilities: crate::runtime::Capabilities {
                fs: Vec::new(),
                exec: Vec::new(),
                net: false,
            },
            config_schema: schema.into(),
            suggested_schedule: None,
        }
    }

    #[test]
    fn a_set_reaches_config_keys_only() {
        assert_eq!(parse_set("rotate=0").unwrap(), ("rotate".into(), json!(0)));
        assert_eq!(parse_set("force=true").unwrap().1, json!(true));
        assert_eq!(parse_set("mode=fast").unwrap().1, json!("fast"));
        assert_eq!(
            parse_set("args=[\"-f\", \"x\"]").unwrap().1,
            json!(["-f", "x"])
        );
        assert_eq!(parse_set("note=a = b").unwrap().1, json!("a = b"));
        assert!(parse_set("rotate").unwrap_err().contains("KEY=VALUE"));
        let known = vec!["paths".to_owned(), "postgres".to_owned()];
        let mut config = json!({"paths": ["/l/*.log"]});
        set_config_key(&mut config, "postgres.port", json!(5433), &known).unwrap();
        assert_eq!(config["postgres"]["port"], json!(5433));
        let e = set_config_key(&mut config, "grants.fs", json!([]), &known).unwrap_err();
        assert!(
            e.contains("`grants` is not a key") && e.contains("never the job's grants"),
            "{e}"
        );
        let e = set_config_key(&mut config, "paths.x", json!(1), &known).unwrap_err();
        assert!(e.contains("`paths` is not a table"), "{e}");
        assert!(set_config_key(&mut config, "a..b", json!(1), &known).is_err());
    }

    #[test]
    fn config_is_checked_against_the_schema() {
        let schema = r#"{"type":"object","required":["paths"],"additionalProperties":false,
            "properties":{"paths":{"type":"array","items":{"type":"string"}},"rotate":{"type":"integer","minimum":0},
            "frequency":{"enum":["daily","weekly"]}}}"#;
        let found = config_findings(
            &json!({"paths": ["/l/*", 3], "rotat": 3, "rotate": -1, "frequency": "hourly"}),
            &info(schema),
        );
        let msgs: Vec<String> = found.iter().map(|(k, m)| format!("{k:?}: {m}")).collect();
        assert!(
            msgs.contains(
                &"Some(\"paths\"): config key `paths[1]` is an integer, plugin p wants string"
                    .to_string()
            ),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter().any(|m| m.starts_with(
                "Some(\"rotat\"): config key `rotat` is not known to plugin p (it knows "
            )),
            "{msgs:#?}"
        );
        assert!(
            msgs.contains(
                &"Some(\"rotate\"): config key `rotate` is -1, below the minimum 0".to_string()
            ),
            "{msgs:#?}"
        );
        assert!(msgs.contains(&"Some(\"frequency\"): config key `frequency` is \"hourly\"; plugin p accepts \"daily\", \"weekly\"".to_string()), "{msgs:#?}");
        let missing = config_findings(&json!({}), &info(schema));
        assert_eq!(
            missing[0].1,
            "[job.config] lacks `paths`, which plugin p requires"
        );
        assert!(config_findings(&json!({"paths": []}), &info(schema)).is_empty());
    }
}
