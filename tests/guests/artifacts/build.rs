//! Compiles the test guests to wasm32-wasip2 components, the way
//! `host/build.rs` compiles the built-in plugins and into the same target
//! directory, and tells the crate where they are.

#[path = "../../../host/build/components.rs"]
mod components;

use std::path::PathBuf;

/// Purpose-built guests for tests, and the Rust example plugin, so the
/// tests can drop it into a daemon.
const GUESTS: &[&str] = &[
    "opsd-test-hostile",
    "opsd-test-stuck-describe",
    "opsd-test-huge-describe",
    "opsd-test-command",
    "opsd-test-contract-010",
    "opsd-example-disk-guard",
];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .ancestors()
        .nth(3)
        .ok_or("tests/guests/artifacts has no workspace above it")?
        .to_owned();
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let target_dir = components::target_dir(&out_dir)?;
    for path in [
        "tests/guests",
        "examples/plugins/disk-guard",
        "plugins/sdk",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let wasm_dir = components::build(&root, &target_dir, GUESTS, "the test guests")?;
    for krate in GUESTS {
        components::wasm_file(&wasm_dir, krate)?;
    }
    println!(
        "cargo:rustc-env=OPSD_TEST_GUESTS_DIR={}",
        wasm_dir.display()
    );
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}
