//! Compiles the built-in plugins to wasm32-wasip2 components and embeds
//! them, so an ordinary `cargo build` of the host is all a fresh clone
//! needs. It builds only what ships: the test guests are built by their
//! own artifacts crate (`tests/guests/artifacts`), which only tests and
//! benchmarks depend on.

#[path = "build/components.rs"]
mod components;

use std::path::PathBuf;

/// Built-in plugins: (name jobs use, crate name).
const BUILTINS: &[(&str, &str)] = &[
    ("log-rotate", "opsd-log-rotate"),
    ("backup", "opsd-backup"),
    ("restore-drill", "opsd-restore-drill"),
    ("vacuum", "opsd-vacuum"),
    ("cert-renew", "opsd-cert-renew"),
    ("audit", "opsd-audit"),
    ("report", "opsd-report"),
    ("http-check", "opsd-http-check"),
    ("clean", "opsd-clean"),
    ("service", "opsd-service"),
    ("command", "opsd-command"),
];

/// Sets `opsd_privileged` when the build runs as root or may use
/// password-less sudo: tests that must mount a tmpfs or give a file to
/// another user are then built to run, and elsewhere built as ignored
/// (shown as such by the test runner, not passed without running).
fn privileged_cfg() {
    println!("cargo:rustc-check-cfg=cfg(opsd_privileged)");
    println!("cargo:rerun-if-env-changed=USER");
    println!("cargo:rerun-if-env-changed=SUDO_USER");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let sudo = || {
        std::process::Command::new("sudo")
            .args(["-n", "true"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if root || sudo() {
        println!("cargo:rustc-cfg=opsd_privileged");
    }
}

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
    let target_dir = components::target_dir(&out_dir)?;

    privileged_cfg();
    for path in ["plugins", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let crates: Vec<&str> = BUILTINS.iter().map(|(_, krate)| *krate).collect();
    let wasm_dir = components::build(&root, &target_dir, &crates, "the built-in plugins")?;

    let mut embedded = String::from(
        "/// Built-in plugins compiled by build.rs.\n\
         pub static BUILTINS: &[Builtin] = &[\n",
    );
    for (name, krate) in BUILTINS {
        let file = components::wasm_file(&wasm_dir, krate)?;
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
    Ok(())
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}
