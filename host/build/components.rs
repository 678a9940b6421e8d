//! Compiling workspace crates to wasm32-wasip2 components from a build
//! script, shared by the host's (the built-in plugins it embeds) and the
//! test guests' artifacts crate (`tests/guests/artifacts`), so both build
//! the same way into the same place.
//!
//! The crates are built by a nested cargo in a target directory of their
//! own (beside the outer build's), always with the `plugin` profile, so
//! debug and release builds get the same small, optimised components, and
//! the two callers share what they have in common (the SDK, serde, ...).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target directory the components are built in:
/// `OPSD_WASM_TARGET_DIR` when set (the fuzz build points it at the main
/// build's, so it does not compile every plugin a second time), otherwise
/// `opsd-wasm` beside the outer build's profile directories.
pub fn target_dir(out_dir: &Path) -> Result<PathBuf, String> {
    println!("cargo:rerun-if-env-changed=OPSD_WASM_TARGET_DIR");
    match std::env::var_os("OPSD_WASM_TARGET_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        // OUT_DIR is <target>[/<triple>]/<profile>/build/<pkg>/out.
        None => Ok(out_dir
            .ancestors()
            .nth(4)
            .ok_or("unexpected OUT_DIR layout")?
            .join("opsd-wasm")),
    }
}

/// Builds `crates` of the workspace at `root` into `target_dir`; returns
/// the directory the `.wasm` files land in. `what` names them in the error.
pub fn build(
    root: &Path,
    target_dir: &Path,
    crates: &[&str],
    what: &str,
) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    for krate in crates {
        cmd.args(["-p", krate]);
    }
    // Flags meant for the host (sanitizers, target-cpu) must not reach the
    // wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().map_err(|e| format!("running {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building {what} for wasm32-wasip2 failed ({status}).\n\
             If the error above says the target is missing, run: rustup target add wasm32-wasip2"
        ));
    }
    Ok(target_dir.join("wasm32-wasip2").join("plugin"))
}

/// A built crate's component: libraries are named with underscores,
/// binaries as they are.
pub fn wasm_file(dir: &Path, krate: &str) -> Result<PathBuf, String> {
    let lib = dir.join(format!("{}.wasm", krate.replace('-', "_")));
    let bin = dir.join(format!("{krate}.wasm"));
    [lib, bin]
        .into_iter()
        .find(|f| f.is_file())
        .ok_or_else(|| format!("{} was not produced", dir.join(krate).display()))
}
