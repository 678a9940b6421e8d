//! A job's `[job.config]` table as the plugin receives it: JSON the host
//! built from the operator's TOML. Parsing it here gives every plugin the
//! same messages, free of positions that point into JSON nobody wrote.
//!
//! In `run`, [`crate::ContextExt::config`] is the usual way in; these
//! functions are for plugins that look at the raw table first (to refuse
//! a combination of keys, say) and for unit tests.

use serde::de::DeserializeOwned;

/// Parses the config JSON into `T`. The error reads
/// "[job.config] is invalid: unknown field `x`, expected ..." and does not
/// name the job; [`crate::ContextExt::bad_config`] adds that.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| invalid(&e))
}

/// Turns an already parsed table into `T`, with the same messages as
/// [`parse`].
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| invalid(&e))
}

fn invalid(e: &serde_json::Error) -> String {
    format!(
        "[job.config] is invalid: {}",
        strip_json_position(&e.to_string())
    )
}

/// serde_json appends "at line 1 column 57", which points into the JSON the
/// host built, not into the operator's TOML; drop it.
fn strip_json_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        dir: String,
    }

    #[test]
    fn messages_name_the_table_and_no_json_position() {
        let e = parse::<Conf>(r#"{"dir":"/d","dri":1}"#).unwrap_err();
        assert_eq!(
            e,
            "[job.config] is invalid: unknown field `dri`, expected `dir`"
        );
        let e = from_value::<Conf>(serde_json::json!({})).unwrap_err();
        assert_eq!(e, "[job.config] is invalid: missing field `dir`");
        assert!(parse::<Conf>(r#"{"dir":"/d"}"#).is_ok());
    }
}
