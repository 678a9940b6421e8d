//! The test guests (`tests/guests/*` and the Rust example plugin) as wasm
//! components, built by this crate's build script. Only tests and
//! benchmarks depend on it, so building or installing opsd never compiles
//! them.

use std::path::{Path, PathBuf};

/// The directory the guests' `.wasm` files are in.
pub fn dir() -> &'static Path {
    Path::new(env!("OPSD_TEST_GUESTS_DIR"))
}

/// A guest's component by crate name (`opsd-test-hostile`): libraries
/// are named with underscores, binaries as they are.
pub fn path(krate: &str) -> PathBuf {
    let lib = dir().join(format!("{}.wasm", krate.replace('-', "_")));
    if lib.exists() {
        lib
    } else {
        dir().join(format!("{krate}.wasm"))
    }
}
