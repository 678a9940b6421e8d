//! opsd: a maintenance scheduler that runs sandboxed WebAssembly plugins.
//!
//! Data flows one way:
//!
//! ```text
//! config ─▶ schedule ─▶ scheduler ─▶ runtime (grants) ─▶ store ─▶ api / cli
//! ```
//!
//! - [`config`]: TOML in, a validated [`config::Config`] out; every problem
//!   names file, line and job.
//! - [`schedule`]: crontab expressions, time zones, next-fire times.
//! - [`scheduler`]: the tokio loop that fires due jobs.
//! - [`ops`]: the operations every interface offers (schedule, run,
//!   history, logs) over an open store.
//! - [`runtime`]: the wasmtime engine, compile cache, per-run instances,
//!   limits; [`bindings`] is the host side of `wit/plugin.wit`.
//! - [`grants`]: the capability policy (filesystem, process, network,
//!   limits), default deny.
//! - [`plugins`]: built-ins embedded in the binary and the plugin
//!   directory.
//! - [`store`]: sled trees of runs, logs and job state; [`record`] holds
//!   the record types.
//! - [`api`]: the control socket (server and client) and the HTTP
//!   endpoints; [`metrics`]: Prometheus; [`notify`]: webhooks;
//!   [`cli`]: arguments and tables ([`escape`]: plugin text made safe for
//!   terminals and logs); [`daemon`]: `opsd daemon`, signals,
//!   systemd; [`clock`]: wall time, injectable; [`policy`]: catch-up,
//!   overlap, retries, jitter, retention; [`scaffold`]: `opsd plugin
//!   new`; [`trust`]: who may write what opsd runs.

pub mod api;
pub mod bindings;
pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod escape;
pub mod grants;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod ops;
pub mod plugins;
pub mod policy;
pub mod record;
pub mod runtime;
pub mod scaffold;
pub mod schedule;
pub mod scheduler;
pub mod store;
pub mod system;
pub mod trust;
