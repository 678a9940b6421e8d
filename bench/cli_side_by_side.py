#!/usr/bin/env python3
"""Commands without a daemon against one stored history, two or more
builds of opsd side by side: each command run ROUNDS times per build, the
builds alternating (reversed every other round, so neither always goes
first), wall time around the process. Prints the median and minimum, and
whether the builds printed the same.

    STORE_DIR=/tmp/h1m RECORDS=1000000 cargo bench -p opsd --bench history_store
    CONFIG=/tmp/h1m/opsd.toml python3 bench/cli_side_by_side.py /tmp/opsd-before target/release/opsd

CONFIG is the `opsd.toml` the history_store bench leaves in STORE_DIR.
ROUNDS defaults to 15. A report's output holds the machine's live figures,
so two builds' reports differ there.
"""

import os
import statistics
import subprocess
import sys
import time

COMMANDS = [
    ["schedule", "list", "--json"],
    ["history", "--job", "job-7", "--limit", "50", "--json"],
    ["report", "--since", "30d", "--format", "json"],
]


def main():
    builds = sys.argv[1:]
    config = os.environ.get("CONFIG")
    if not builds or not config:
        sys.exit(__doc__)
    rounds = int(os.environ.get("ROUNDS", "15"))
    took = {(b, i): [] for b in builds for i in range(len(COMMANDS))}
    printed = {}
    for r in range(rounds):
        for i, command in enumerate(COMMANDS):
            for b in builds if r % 2 == 0 else builds[::-1]:
                t = time.perf_counter()
                p = subprocess.run([b, "--config", config, *command], capture_output=True)
                took[(b, i)].append((time.perf_counter() - t) * 1e3)
                if p.returncode != 0:
                    sys.exit(f"{b} {' '.join(command)}: {p.stderr.decode(errors='replace')}")
                printed.setdefault(i, {})[b] = p.stdout
    for i, command in enumerate(COMMANDS):
        print(f"opsd {' '.join(command)}")
        for b in builds:
            v = took[(b, i)]
            print(f"  {b}: median {statistics.median(v):.1f} ms, min {min(v):.1f} ms")
        print(f"  same output: {len(set(printed[i].values())) == 1}")


if __name__ == "__main__":
    main()
