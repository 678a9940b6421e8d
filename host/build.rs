//! Compiles the built-in plugins (and the test guests) to wasm32-wasip2
//! components and embeds the built-ins, so an ordinary `cargo build` of
//! the host is all a fresh clone needs.
//!
//! The plugins are built by a nested cargo in a target directory of their
//! own (beside the host's), always with the `plugin` profile, so debug and
//! release hosts embed the same small, optimised components.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Built-in plugins: (name jobs use, crate name).
const BUILTINS: &[(&str, &str)] = &[
    ("log-rotate", "opsd-log-rotate"),
    ("backup", "opsd-backup"),
    ("vacuum", "opsd-vacuum"),
    ("cert-renew", "opsd-cert-renew"),
    ("audit", "opsd-audit"),
    ("report", "opsd-report"),
];

/// Purpose-built guests for tests; built, never embedded.
const TEST_GUESTS: &[&str] = &[
    "opsd-test-hostile",
    "opsd-test-stuck-describe",
    "opsd-test-huge-describe",
    "opsd-test-command",
    "opsd-test-contract-010",
    // The Rust example plugin, so the tests can drop it into a daemon.
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
        .parent()
        .ok_or("host crate has no parent directory")?
        .to_owned();
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    // OUT_DIR is <target>[/<triple>]/<profile>/build/<pkg>/out. The fuzz
    // build points OPSD_WASM_TARGET_DIR at the main build's, so it does not
    // compile every plugin a second time.
    println!("cargo:rerun-if-env-changed=OPSD_WASM_TARGET_DIR");
    let target_dir = match std::env::var_os("OPSD_WASM_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => out_dir
            .ancestors()
            .nth(4)
            .ok_or("unexpected OUT_DIR layout")?
            .join("opsd-wasm"),
    };

    for dir in [
        "plugins",
        "wit",
        "tests/guests",
        "examples/plugins/disk-guard",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (_, krate) in BUILTINS {
        cmd.args(["-p", krate]);
    }
    for krate in TEST_GUESTS {
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
            "building the built-in plugins for wasm32-wasip2 failed ({status}).\n\
             If the error above says the target is missing, run: rustup target add wasm32-wasip2"
        ));
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("plugin");
    let mut embedded = String::from(
        "/// Built-in plugins compiled by build.rs.\n\
         pub static BUILTINS: &[Builtin] = &[\n",
    );
    for (name, krate) in BUILTINS {
        let file = wasm_file(&wasm_dir, krate)?;
        // Hashed here, so finding a built-in never reads its bytes.
        let bytes = std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        embedded.push_str(&format!(
            "    Builtin {{ name: {name:?}, sha256: {sha256:?}, bytes: include_bytes!({:?}) }},\n",
            file.display().to_string()
        ));
    }
    embedded.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), embedded).map_err(|e| e.to_string())?;
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=OPSD_WASMTIME_VERSION={wasmtime}");
    // Tests find the guests here.
    println!(
        "cargo:rustc-env=OPSD_TEST_GUESTS_DIR={}",
        wasm_dir.display()
    );
    Ok(())
}

fn wasm_file(dir: &Path, krate: &str) -> Result<PathBuf, String> {
    let file = dir.join(format!("{}.wasm", krate.replace('-', "_")));
    if file.is_file() {
        Ok(file)
    } else {
        Err(format!("{} was not produced", file.display()))
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}
