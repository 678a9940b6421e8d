"""How long a daemon takes from start to a healthy `/v1/health`, with 100,
1,000 and 10,000 jobs of the trivial plugin (each once a minute at its own
second): the first start (empty store, the plugin compiled) and a restart
(the store holds every job's state, the compiled plugin is cached).

    python3 bench/daemon_start.py
    JOBS=10000 REPEAT=5 python3 bench/daemon_start.py
    NO_BUILD=1 python3 bench/daemon_start.py      # use target/release as is
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opsd_bench import build, first_start_and_restart, machine, trivial_jobs, write_config  # noqa: E402

COUNTS = [int(n) for n in os.environ.get("JOBS", "100,1000,10000").split(",")]
REPEAT = int(os.environ.get("REPEAT", "3"))


def main():
    build()
    print(f"{machine()}; median of {REPEAT} restarts")
    print(f"{'jobs':>6} {'first start':>12} {'restart':>9}")
    for n in COUNTS:
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            cfg = write_config(work, trivial_jobs((f"j{i}", f"{i % 60} * * * * *") for i in range(n)))
            first, restart = first_start_and_restart(cfg, work, REPEAT)
            print(f"{n:>6} {first * 1000:>9.0f} ms {restart * 1000:>6.0f} ms")


if __name__ == "__main__":
    main()
