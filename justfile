# Everyday recipes. `just --list` shows them.

# Build the daemon (its build script compiles the built-in plugins too).
build:
    cargo build

# Build only the built-in plugins (host/build.rs's list), as components,
# into target/opsd-wasm/wasm32-wasip2/plugin.
build-plugins:
    cargo build --profile plugin --target wasm32-wasip2 --target-dir target/opsd-wasm -p opsd-log-rotate -p opsd-backup -p opsd-restore-drill -p opsd-vacuum -p opsd-cert-renew -p opsd-audit -p opsd-report -p opsd-http-check -p opsd-clean -p opsd-service -p opsd-command

# Build the test guests (tests/guests/* and the Rust example plugin) into
# the same directory, as the tests do: through their artifacts crate.
build-test-guests:
    cargo build -p opsd-test-guests

# Run every test (the README's test command).
test:
    cargo test --workspace

# The daemon on the example config, with a data dir under target/.
demo:
    cargo run -- --config examples/opsd.toml daemon

# Formatting and lints as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# CI, locally.
ci:
    .ci/run
