//! What the `backup` and `restore-drill` plugins share: the sources a
//! backup is made of, files sealed before they count, retention, the
//! backup sets in a target directory, and the restore drill itself.
//!
//! Two plugins rather than one with a mode: a drill only reads backups
//! and runs `pg_restore` and `psql`, so its job's grants can say so
//! (a read-only target) and `opsd check` holds it to that.

pub mod config;
pub mod drill;
pub mod publish;
pub mod retention;
pub mod sets;
pub mod sources;
