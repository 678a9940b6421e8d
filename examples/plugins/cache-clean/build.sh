#!/bin/sh
# Builds cache-clean.wasm (or the path given) with ComponentizeJS:
#   npm install && ./build.sh
set -e
cd "$(dirname "$0")"
node --test
node build.mjs plugin.js ../wit cache-clean "${1:-cache-clean.wasm}"
