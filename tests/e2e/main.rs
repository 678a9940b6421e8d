//! End-to-end tests: the real `opsd` binary, real sled, real wasm
//! components, on temp directories.

mod named;
mod pebble;
mod pg;
mod util;

mod alerts;
mod audit;
mod backup;
mod cert_dns;
mod cert_renew;
mod children;
mod clean;
mod command;
mod console;
mod crash;
mod daemon;
mod dropin;
mod fleet;
mod fleet_jobs;
mod http_check;
mod import;
mod log_rotate;
mod logrotate_compat;
mod monitor;
mod polyglot;
mod report;
mod runbook;
mod sandbox;
mod schedule;
mod scheduling;
mod service;
mod service_restart;
mod vacuum;
