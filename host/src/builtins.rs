//! The plugins compiled into the binary (by `host/build.rs`): their names,
//! hashes and bytes, and nothing else, so the config can check
//! `override_builtin` and the runtime can load one without either
//! importing the plugin registry above them.

mod embedded {
    use super::Builtin;
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// A plugin shipped inside opsd. Its sha256 is computed at build time:
/// hashing a megabyte of component on every run of a built-in job would
/// cost more than the run, and keep its pages resident.
pub struct Builtin {
    /// The name jobs use.
    pub name: &'static str,
    /// Hex sha256 of `bytes`.
    pub sha256: &'static str,
    /// The component.
    pub bytes: &'static [u8],
}

/// The plugins shipped inside opsd.
pub fn builtins() -> &'static [Builtin] {
    embedded::BUILTINS
}
