#!/bin/sh
# Builds http-check.wasm (or the path given) with componentize-py:
#   pip install componentize-py==0.25.1 && ./build.sh
set -e
cd "$(dirname "$0")"
python3 -m unittest --quiet
componentize-py -d ../wit -w http-check componentize app -o "${1:-http-check.wasm}"
