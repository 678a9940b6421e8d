//! End-to-end tests: the real `opsd` binary, real sled, real wasm
//! components, on temp directories.

mod pg;
mod util;

mod backup;
mod crash;
mod daemon;
mod dropin;
mod log_rotate;
mod logrotate_compat;
mod sandbox;
mod schedule;
mod scheduling;
mod service;
mod vacuum;
