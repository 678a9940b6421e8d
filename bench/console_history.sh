#!/usr/bin/env bash
# The web console's history page on a store of a million runs: server
# time per page for each kind of filter (issue 22 asks for at most 200 ms).
#
#   bench/console_history.sh                      # 1,000,000 records, release build
#   RECORDS=100000 bench/console_history.sh
#   PROFILE=dev bench/console_history.sh          # the debug build (slower; no release build needed)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p opsd --profile "${PROFILE:-release}" --bench console_history
