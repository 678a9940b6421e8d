//! Keeps a plugin's config schema and its config type saying the same
//! thing.
//!
//! A plugin's `describe()` returns a JSON Schema of its `[job.config]`,
//! which `opsd check` validates jobs against before anything runs; its
//! `run` parses the same table into a serde type. Both are written by
//! hand, so [`check`] compares them, for a unit test:
//!
//! ```no_run
//! # const SCHEMA: &str = r#"{"type":"object"}"#;
//! # #[derive(serde::Deserialize)] struct Config {}
//! #[test]
//! fn the_schema_says_what_config_parses() {
//!     opsd_sdk::schema::assert_matches::<Config>(
//!         SCHEMA,
//!         &serde_json::json!({"dir": "/data", "max_bytes": 100}),
//!     );
//! }
//! ```
//!
//! The example is a config that sets every key the schema names (an array
//! of tables holds one table per variant where the kinds differ). With it,
//! serde itself is asked what the type does, object by object:
//! - a key unknown to both is added: the type must refuse it exactly when
//!   the schema says `"additionalProperties": false`, and serde's refusal
//!   lists the type's fields, which must be the schema's `properties`;
//! - each key is left out in turn: serde must miss it exactly when the
//!   schema lists it in `required`;
//! - every `enum` value of the schema must parse, and a string outside it
//!   must not (for a Rust enum, whose variants serde lists);
//! - the example's values must have the schema's `type`s.
//!
//! So a field added to the type only, or to the schema only, fails the
//! test. serde lists a type's fields only when it refuses unknown keys
//! (`#[serde(deny_unknown_fields)]`, which a config table should have
//! anyway: a misspelt key is an error, not a default); a table open on
//! both sides (or an untagged enum's) is checked by its example's keys.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// A key no config uses, added to find out which keys a type accepts.
const PROBE: &str = "__opsd_schema_probe";

/// Panics with every disagreement [`check`] finds.
pub fn assert_matches<T: DeserializeOwned>(schema: &str, example: &Value) {
    let problems = check::<T>(schema, example);
    assert!(
        problems.is_empty(),
        "the config schema and the config type disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// Every way in which `schema` (JSON Schema text) and the serde type `T`
/// disagree, probed around `example`, a config that sets every key the
/// schema names. Empty when they agree.
pub fn check<T: DeserializeOwned>(schema: &str, example: &Value) -> Vec<String> {
    let schema: Value = match serde_json::from_str(schema) {
        Ok(s) => s,
        Err(e) => return vec![format!("the schema is not JSON: {e}")],
    };
    let probe = Probe::<T> {
        example,
        _type: std::marker::PhantomData,
    };
    if let Err(e) = probe.parse(example) {
        return vec![format!("the example does not parse: {e}")];
    }
    let mut problems = Vec::new();
    probe.value(&[], &schema, &mut problems);
    problems
}

/// A step from a value to one inside it.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where a value sits, for messages: `sources[0].name`.
fn show(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        "[job.config]".into()
    } else {
        format!("`{out}`")
    }
}

fn at<'v>(value: &'v Value, path: &[Step]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get(k),
        Step::Index(i) => v.get(i),
    })
}

fn at_mut<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.get_mut(k),
        Step::Index(i) => v.get_mut(i),
    })
}

/// The names serde quotes after "expected" in "unknown field `x`, expected
/// one of `a`, `b`" (or "expected `a` or `b`", or "there are no fields").
fn quoted_after_expected(message: &str) -> Vec<String> {
    match message.split_once("expected") {
        Some((_, list)) => list
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    }
}

fn type_matches(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// The type under test and the example it is probed around.
struct Probe<'e, T> {
    example: &'e Value,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Probe<'_, T> {
    fn parse(&self, config: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(config.clone())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Parses the example changed by `edit` at `path`.
    fn parse_edited(&self, path: &[Step], edit: impl FnOnce(&mut Value)) -> Result<(), String> {
        let mut config = self.example.clone();
        if let Some(v) = at_mut(&mut config, path) {
            edit(v);
        }
        self.parse(&config)
    }

    /// Checks the value at `path` against `schema`, and what is inside it.
    fn value(&self, path: &[Step], schema: &Value, problems: &mut Vec<String>) {
        let Some(value) = at(self.example, path) else {
            return;
        };
        let here = show(path);
        if let Some(ty) = schema.get("type") {
            let types: Vec<&str> = match ty {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.is_empty() && !types.iter().any(|t| type_matches(value, t)) {
                problems.push(format!(
                    "{here}: the example has {value}, the schema wants {}",
                    types.join(" or ")
                ));
            }
        }
        if let Some(Value::Array(options)) = schema.get("enum") {
            self.options(path, options, problems);
        }
        match value {
            Value::Object(_) => self.tables(&[path.to_vec()], schema, problems),
            Value::Array(items) => {
                let Some(item_schema) = schema.get("items") else {
                    return;
                };
                let paths: Vec<Vec<Step>> = (0..items.len())
                    .map(|i| {
                        let mut p = path.to_vec();
                        p.push(Step::Index(i));
                        p
                    })
                    .collect();
                if !items.is_empty() && items.iter().all(Value::is_object) {
                    self.tables(&paths, item_schema, problems);
                } else {
                    for p in &paths {
                        self.value(p, item_schema, problems);
                    }
                }
            }
            _ => {}
        }
    }

    /// Every option of an `enum` parses; a string outside them does not
    /// when the type lists its own (a Rust enum), and then the lists agree.
    fn options(&self, path: &[Step], options: &[Value], problems: &mut Vec<String>) {
        let here = show(path);
        for option in options {
            // Only "unknown variant" counts: a tag changed alone leaves the
            // rest of its table the other variant's, which may not fit.
            if let Err(e) = self.parse_edited(path, |v| *v = option.clone())
                && (e.contains("unknown variant") || e.contains("invalid type"))
            {
                problems.push(format!(
                    "{here}: the schema allows {option}, the type refuses it: {e}"
                ));
            }
        }
        if let Err(e) = self.parse_edited(path, |v| *v = Value::String(PROBE.into()))
            && e.contains(&format!("unknown variant `{PROBE}`"))
        {
            for variant in quoted_after_expected(&e) {
                if !options.contains(&Value::String(variant.clone())) {
                    problems.push(format!(
                        "{here}: the type accepts \"{variant}\", the schema's enum lacks it"
                    ));
                }
            }
        }
    }

    /// Tables that share one schema: one, or the items of an array (which
    /// may be variants of a tagged enum, each with its own fields, under
    /// one schema listing them all).
    fn tables(&self, paths: &[Vec<Step>], schema: &Value, problems: &mut Vec<String>) {
        let Some(first) = paths.first() else {
            return;
        };
        let here = if paths.len() > 1 {
            format!("{} items", show(&first[..first.len() - 1]))
        } else {
            show(first)
        };
        let props: Map<String, Value> = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        // A map (`additionalProperties` is a schema): its keys are data.
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            for path in paths {
                let keys = self.keys(path);
                for k in keys {
                    let mut p = path.clone();
                    p.push(Step::Key(k));
                    self.value(&p, values, problems);
                }
            }
            return;
        }
        let mut known_somewhere: BTreeSet<String> = BTreeSet::new();
        let mut set_somewhere: BTreeSet<String> = BTreeSet::new();
        let mut required_everywhere: Option<BTreeSet<String>> = None;
        let mut lists_fields = false;
        let mut refuses_unknown = false;
        for path in paths {
            let keys = self.keys(path);
            set_somewhere.extend(keys.iter().cloned());
            for k in &keys {
                if !props.contains_key(k) {
                    problems.push(format!(
                        "{}: the type accepts it, the schema's properties lack it",
                        show(&[path.as_slice(), &[Step::Key(k.clone())]].concat())
                    ));
                }
            }
            // Which keys the type knows, from its refusal of one it does not.
            match self.parse_edited(path, |v| {
                if let Some(map) = v.as_object_mut() {
                    map.insert(PROBE.into(), Value::Bool(true));
                }
            }) {
                // Open on both sides: consistent, though the type's fields
                // cannot be listed.
                Ok(()) if !closed => {}
                Ok(()) => problems.push(format!(
                    "{}: the schema says \"additionalProperties\": false, the type accepts any key (add #[serde(deny_unknown_fields)])",
                    show(path)
                )),
                Err(e) if e.contains(&format!("unknown field `{PROBE}`")) => {
                    lists_fields = true;
                    refuses_unknown = true;
                    let fields = quoted_after_expected(&e);
                    for field in &fields {
                        if !props.contains_key(field) {
                            problems.push(format!(
                                "{}: the type knows `{field}`, the schema's properties lack it",
                                show(path)
                            ));
                        }
                    }
                    known_somewhere.extend(fields);
                    known_somewhere.extend(keys.iter().cloned());
                }
                // An untagged enum refuses without naming anything.
                Err(e) if e.starts_with("data did not match any variant") => {
                    refuses_unknown = true;
                }
                Err(e) => problems.push(format!(
                    "{}: adding an unknown key gives an unexpected error: {e}",
                    show(path)
                )),
            }
            // Which keys the type requires, by leaving each out.
            let mut required = BTreeSet::new();
            for k in &keys {
                match self.parse_edited(path, |v| {
                    if let Some(map) = v.as_object_mut() {
                        map.remove(k);
                    }
                }) {
                    Ok(()) => {}
                    Err(e) if e.contains(&format!("missing field `{k}`")) => {
                        required.insert(k.clone());
                    }
                    Err(e) => problems.push(format!(
                        "{}: leaving it out gives an unexpected error: {e}",
                        show(&[path.as_slice(), &[Step::Key(k.clone())]].concat())
                    )),
                }
            }
            required_everywhere = Some(match required_everywhere {
                None => required,
                Some(r) => r.intersection(&required).cloned().collect(),
            });
        }
        if refuses_unknown && !closed {
            problems.push(format!(
                "{here}: the type refuses unknown keys, the schema should say \"additionalProperties\": false so `opsd check` does too"
            ));
        }
        for k in props.keys() {
            if !set_somewhere.contains(k) {
                problems.push(format!(
                    "{here}: the example lacks `{k}`, which the schema names; set it so the check covers it"
                ));
            } else if lists_fields && !known_somewhere.contains(k) {
                problems.push(format!(
                    "{here}: the schema names `{k}`, the type does not know it"
                ));
            }
        }
        let required_everywhere = required_everywhere.unwrap_or_default();
        let schema_required: BTreeSet<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        for k in schema_required.difference(&required_everywhere) {
            problems.push(format!(
                "{here}: the schema requires `{k}`, the type does not (or the example leaves it out)"
            ));
        }
        for k in required_everywhere.difference(&schema_required) {
            problems.push(format!(
                "{here}: the type requires `{k}`, the schema's required list lacks it"
            ));
        }
        for path in paths {
            for k in self.keys(path) {
                if let Some(sub) = props.get(&k) {
                    let mut p = path.clone();
                    p.push(Step::Key(k));
                    self.value(&p, sub, problems);
                }
            }
        }
    }

    fn keys(&self, path: &[Step]) -> Vec<String> {
        at(self.example, path)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Safe,
    }

    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
    #[allow(dead_code)]
    enum Source {
        Db { name: String, database: String },
        Dir { name: String, path: String },
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Config {
        dir: String,
        #[serde(default)]
        max_bytes: Option<u64>,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        sources: Vec<Source>,
    }

    const SCHEMA: &str = r#"{
      "type": "object", "required": ["dir"], "additionalProperties": false,
      "properties": {
        "dir": {"type": "string"},
        "max_bytes": {"type": "integer"},
        "mode": {"enum": ["fast", "safe"]},
        "sources": {"type": "array", "items": {"type": "object", "required": ["kind", "name"], "additionalProperties": false,
          "properties": {"kind": {"enum": ["db", "dir"]}, "name": {"type": "string"}, "database": {"type": "string"}, "path": {"type": "string"}}}}
      }
    }"#;

    fn example() -> Value {
        json!({
            "dir": "/d", "max_bytes": 1, "mode": "fast",
            "sources": [
                {"kind": "db", "name": "a", "database": "a"},
                {"kind": "dir", "name": "b", "path": "/b"}
            ]
        })
    }

    #[test]
    fn a_schema_that_says_what_the_type_parses_passes() {
        assert_eq!(check::<Config>(SCHEMA, &example()), Vec::<String>::new());
    }

    #[test]
    fn a_field_on_one_side_only_fails() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct More {
            dir: String,
            #[serde(default)]
            max_bytes: Option<u64>,
            #[serde(default)]
            mode: Option<Mode>,
            #[serde(default)]
            sources: Vec<Source>,
            #[serde(default)]
            added: bool,
        }
        let problems = check::<More>(SCHEMA, &example());
        assert_eq!(
            problems,
            ["[job.config]: the type knows `added`, the schema's properties lack it"]
        );
        let schema = SCHEMA.replace(
            r#""dir": {"type": "string"},"#,
            r#""dir": {"type": "string"}, "added": {"type": "boolean"},"#,
        );
        let problems = check::<Config>(&schema, &example());
        assert_eq!(
            problems,
            [
                "[job.config]: the example lacks `added`, which the schema names; set it so the check covers it"
            ]
        );
        let mut with_added = example();
        with_added["added"] = json!(true);
        assert!(check::<Config>(&schema, &with_added)[0].contains("does not parse"));
    }

    #[test]
    fn required_enum_and_closedness_must_agree() {
        let loose = SCHEMA
            .replace(r#""required": ["dir"], "additionalProperties": false,"#, "")
            .replace(r#"["fast", "safe"]"#, r#"["fast", "slow"]"#);
        let problems = check::<Config>(&loose, &example());
        assert_eq!(
            problems,
            [
                "[job.config]: the type refuses unknown keys, the schema should say \"additionalProperties\": false so `opsd check` does too",
                "[job.config]: the type requires `dir`, the schema's required list lacks it",
                "`mode`: the schema allows \"slow\", the type refuses it: unknown variant `slow`, expected `fast` or `safe`",
                "`mode`: the type accepts \"safe\", the schema's enum lacks it",
            ]
        );
        let wrong_type = SCHEMA.replace(
            r#""max_bytes": {"type": "integer"}"#,
            r#""max_bytes": {"type": "string"}"#,
        );
        assert_eq!(
            check::<Config>(&wrong_type, &example()),
            ["`max_bytes`: the example has 1, the schema wants string"]
        );
    }

    #[test]
    fn serde_lists_are_read_in_every_form() {
        assert_eq!(
            quoted_after_expected("unknown field `x`, expected one of `a`, `b`, `c`"),
            ["a", "b", "c"]
        );
        assert_eq!(
            quoted_after_expected("unknown field `x`, expected `a` or `b`"),
            ["a", "b"]
        );
        assert!(quoted_after_expected("unknown field `x`, there are no fields").is_empty());
    }
}
