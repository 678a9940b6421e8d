//! The Rust side of the opsd plugin contract (`wit/plugin.wit`).
//!
//! A plugin implements [`Plugin`] (the generated `Guest` trait) and calls
//! [`export_plugin!`]. Everything else here is convenience around the
//! contract: typed config ([`ContextExt::config`], with errors that name
//! the job), the scheduled time ([`ContextExt::scheduled_time`]), logging
//! macros that land in the run's captured log, outcome builders, a
//! [`Command`] builder for the host's process interface, byte counts for
//! people ([`human_bytes`]), PostgreSQL's client programs ([`pg`]), an
//! HTTP client over wasi:http ([`http`]) and a check that a config schema
//! says what the config type parses ([`schema`]).
//!
//! ```no_run
//! use opsd_sdk::*;
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn describe() -> Description { Description::new("hello", env!("CARGO_PKG_VERSION"), "Says hello") }
//!     fn run(ctx: Context) -> Result<Outcome, PluginError> {
//!         info!("hello from {}", ctx.job);
//!         Ok(Outcome::ok("said hello"))
//!     }
//! }
//! export_plugin!(Hello);
//! ```

// The generated code names its own crate by path; make that path resolve
// inside this crate too.
extern crate self as opsd_sdk;

/// Generated bindings for the `opsd:plugin/plugin` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "opsd_sdk::bindings",
        runtime_path: "opsd_sdk::__wit_bindgen::rt",
    });
}

pub mod config;
pub mod fsinfo;
pub mod http;
mod outcome;
pub mod pg;
mod process;
pub mod schema;
mod units;

/// The date-time library [`ContextExt::scheduled_time`] answers in, so a
/// plugin names its types without a version of its own to keep in step.
pub use chrono;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::Guest as Plugin;
pub use bindings::opsd::plugin::files;
pub use bindings::opsd::plugin::history;
pub use bindings::opsd::plugin::log::Level;
pub use bindings::opsd::plugin::system;
pub use bindings::opsd::plugin::types::{
    Artifact, Capabilities, Context, Description, FsRequest, Metric, Outcome, PluginError, Status,
};
pub use process::{Command, ExecError, Exit, Input, Output};
pub use units::human_bytes;

/// Exports a type implementing [`Plugin`] as the component's `describe` and
/// `run`.
#[macro_export]
macro_rules! export_plugin {
    ($($plugin:tt)*) => {
        $crate::bindings::__export_plugin_world!($($plugin)* with_types_in $crate::bindings);
    };
}

/// Writes one line to the run's log at the given level.
pub fn log(level: Level, message: &str) {
    bindings::opsd::plugin::log::log(level, message);
}

/// Reports progress: `done` out of `total` (when known) with a short note.
pub fn progress(done: u64, total: Option<u64>, message: &str) {
    bindings::opsd::plugin::log::progress(done, total, message);
}

/// Logs at info level with `format!` syntax.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &format!($($arg)*)) };
}

/// Logs at warn level with `format!` syntax.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &format!($($arg)*)) };
}

/// Logs at error level with `format!` syntax.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log($crate::Level::Error, &format!($($arg)*)) };
}

/// Logs at debug level with `format!` syntax.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &format!($($arg)*)) };
}

/// Typed access to what the host passes in [`Context`].
pub trait ContextExt {
    /// Parses the job's `[job.config]` table. A mismatch becomes a
    /// `bad-config` error that names the job, so the operator knows which
    /// table to fix.
    fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError>;

    /// A `bad-config` error for what the plugin finds wrong with the table
    /// after parsing it (a relative path, two settings that exclude each
    /// other): "job `NAME`: MESSAGE".
    fn bad_config(&self, message: impl std::fmt::Display) -> PluginError;

    /// The slot this run stands for, with the offset of the job's time
    /// zone: calendar rules and names made from it (a report's day, a
    /// backup's stamp) follow the schedule, not the moment the run began.
    fn scheduled_time(&self) -> Result<chrono::DateTime<chrono::FixedOffset>, PluginError>;
}

impl ContextExt for Context {
    fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        config::parse(&self.config).map_err(|e| self.bad_config(e))
    }

    fn bad_config(&self, message: impl std::fmt::Display) -> PluginError {
        PluginError::bad_config(format!("job `{}`: {message}", self.job))
    }

    fn scheduled_time(&self) -> Result<chrono::DateTime<chrono::FixedOffset>, PluginError> {
        chrono::DateTime::parse_from_rfc3339(&self.scheduled).map_err(|e| {
            PluginError::other(
                "bad-context",
                format!(
                    "the host gave the scheduled time as `{}`, not RFC 3339: {e}",
                    self.scheduled
                ),
            )
        })
    }
}

impl PluginError {
    /// The job's config cannot be used as given.
    pub fn bad_config(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: "bad-config".into(),
        }
    }

    /// A file or directory operation failed. A WASI "capabilities
    /// insufficient" or permission error is tagged `denied` so the host can
    /// point the operator at the job's grants.
    pub fn io(what: impl std::fmt::Display, err: &std::io::Error) -> Self {
        let denied = is_denied(err);
        Self {
            message: format!("{what}: {err}"),
            kind: if denied { "denied" } else { "io" }.into(),
        }
    }

    /// Any other failure, with a machine-readable kind.
    pub fn other(kind: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: kind.into(),
        }
    }
}

/// True for the errors WASI gives when a path lies outside every grant or
/// the grant is read-only.
pub fn is_denied(err: &std::io::Error) -> bool {
    /// WASI's ENOTCAPABLE: the path lies outside every preopened grant.
    const ENOTCAPABLE: i32 = 76;
    err.kind() == std::io::ErrorKind::PermissionDenied || err.raw_os_error() == Some(ENOTCAPABLE)
}

/// Attaches what was being done (usually a path) to an I/O error.
pub trait IoContext<T> {
    /// Turns an I/O error into a [`PluginError`] that names `what`.
    fn at(self, what: impl std::fmt::Display) -> Result<T, PluginError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, what: impl std::fmt::Display) -> Result<T, PluginError> {
        self.map_err(|e| PluginError::io(what, &e))
    }
}

impl Description {
    /// A description with no capabilities, an empty object schema and no
    /// suggested schedule; fill the rest with the builder methods.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            capabilities: Capabilities {
                fs: Vec::new(),
                exec: Vec::new(),
                net: false,
            },
            config_schema: r#"{"type":"object"}"#.into(),
            suggested_schedule: None,
        }
    }

    /// Declares a directory the plugin expects at `guest`.
    pub fn wants_dir(mut self, guest: &str, write: bool, reason: &str) -> Self {
        self.capabilities.fs.push(FsRequest {
            guest: guest.into(),
            write,
            reason: reason.into(),
        });
        self
    }

    /// Declares a program the plugin runs.
    pub fn wants_exec(mut self, program: &str) -> Self {
        self.capabilities.exec.push(program.into());
        self
    }

    /// Declares that the plugin uses the network.
    pub fn wants_net(mut self) -> Self {
        self.capabilities.net = true;
        self
    }

    /// Sets the JSON Schema of the job's config table.
    pub fn config_schema(mut self, schema: &str) -> Self {
        self.config_schema = schema.into();
        self
    }

    /// Sets the crontab expression that suits the chore.
    pub fn suggested_schedule(mut self, expr: &str) -> Self {
        self.suggested_schedule = Some(expr.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(config: &str, scheduled: &str) -> Context {
        Context {
            job: "nightly".into(),
            run_id: "01J0000000000000000000000".into(),
            scheduled: scheduled.into(),
            attempt: 1,
            dry_run: false,
            config: config.into(),
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Conf {
        dir: String,
    }

    #[test]
    fn config_errors_name_the_job() {
        let ctx = context(r#"{"dir":"/d","x":1}"#, "2026-11-29T02:00:00+01:00");
        let e = ctx.config::<Conf>().unwrap_err();
        assert_eq!(e.kind, "bad-config");
        assert_eq!(
            e.message,
            "job `nightly`: [job.config] is invalid: unknown field `x`, expected `dir`"
        );
        let ok = context(r#"{"dir":"d"}"#, "").config::<Conf>().unwrap();
        let e = ctx.bad_config(format!("dir `{}` is relative", ok.dir));
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("bad-config", "job `nightly`: dir `d` is relative")
        );
    }

    #[test]
    fn the_scheduled_time_keeps_the_jobs_offset() {
        let ctx = context("{}", "2026-11-29T02:00:00+01:00");
        let t = ctx.scheduled_time().unwrap();
        assert_eq!(t.offset().local_minus_utc(), 3600);
        assert_eq!(t.format("%Y-%m-%d %H:%M").to_string(), "2026-11-29 02:00");
        let e = context("{}", "yesterday").scheduled_time().unwrap_err();
        assert_eq!(e.kind, "bad-context");
        assert!(e.message.contains("`yesterday`"), "{}", e.message);
    }
}
