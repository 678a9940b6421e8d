#!/bin/sh
# Builds disk-guard.wasm (or the path given) with cargo, with the profile
# and target directory opsd's own plugins use:
#   rustup target add wasm32-wasip2 && ./build.sh
set -e
cd "$(dirname "$0")"
cargo test -q
cargo build -q --profile plugin --target wasm32-wasip2 --target-dir ../../../target/opsd-wasm
cp ../../../target/opsd-wasm/wasm32-wasip2/plugin/opsd_example_disk_guard.wasm "${1:-disk-guard.wasm}"
