#!/usr/bin/env python3
"""How the daemon's figures grow with the number of jobs (100, 1,000,
10,000 of the trivial plugin, each once a day at its own time, so the
daemon is idle while it is measured):

- start to a healthy `/v1/health`: the first start (empty store, the
  plugin compiled) and a restart (median of REPEAT);
- resident memory and CPU over IDLE seconds of rest, after a restart;
- `opsd schedule list --json`, answered by the running daemon and, with
  the daemon stopped, read from the store by the command itself (median
  of 5 each).

How a run's cost grows with the history is `HISTORY=N cargo bench
--bench run_overhead`; the CLI against 10k-1M stored runs is the
`history_store` bench.

    python3 bench/growth.py
    JOBS=100,1000 IDLE=20 NO_BUILD=1 python3 bench/growth.py
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opsd_bench import OPSD, build, first_start_and_restart, machine, start_daemon, stop, trivial_jobs, write_config  # noqa: E402

COUNTS = [int(n) for n in os.environ.get("JOBS", "100,1000,10000").split(",")]
REPEAT = int(os.environ.get("REPEAT", "3"))
IDLE = int(os.environ.get("IDLE", "20"))
TICK = os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def schedule_list_ms(cfg, times=5):
    took = []
    for _ in range(times):
        t = time.perf_counter()
        subprocess.run([OPSD, "--config", cfg, "schedule", "list", "--json"],
                       check=True, capture_output=True)
        took.append((time.perf_counter() - t) * 1000)
    return statistics.median(took)


def main():
    build()
    print(f"{machine()}; restarts: median of {REPEAT}; idle window {IDLE} s")
    print(f"{'jobs':>6} {'first start':>12} {'restart':>8} {'idle RSS':>9} {'idle CPU':>9} "
          f"{'list (daemon)':>14} {'list (store)':>13}")
    for n in COUNTS:
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            # Once a day each, at its own minute and second: nothing due
            # while measured.
            jobs = trivial_jobs((f"j{i}", f"{i % 60} {(i // 60) % 60} {(i // 3600 + 3) % 24} * * *")
                                for i in range(n))
            cfg = write_config(work, jobs)
            first, restart = first_start_and_restart(cfg, work, REPEAT)
            proc, _ = start_daemon(cfg, work)
            time.sleep(5)
            cpu0 = cpu_seconds(proc.pid)
            time.sleep(IDLE)
            cpu = cpu_seconds(proc.pid) - cpu0
            rss = rss_mib(proc.pid)
            via_daemon = schedule_list_ms(cfg)
            stop(proc)
            from_store = schedule_list_ms(cfg)
            print(f"{n:>6} {first * 1000:>9.0f} ms {restart * 1000:>5.0f} ms "
                  f"{rss:>5.1f} MiB {100 * cpu / IDLE:>7.2f} % {via_daemon:>11.0f} ms {from_store:>10.0f} ms")


if __name__ == "__main__":
    main()
