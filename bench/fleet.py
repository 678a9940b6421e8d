#!/usr/bin/env python3
"""What fleet mode costs a run: the same 1,000 jobs of a trivial plugin,
each once a minute at its own second (about 17 due at once), measured
three ways in one run against one PostgreSQL started for the purpose:

1. host: `scope = "host"` on one daemon (no fleet);
2. fleet x1: `scope = "fleet"` on one daemon: every run is claimed first;
3. fleet x3: `scope = "fleet"` on three daemons sharing the fleet: every
   slot is claimed by one of them (the others find it taken).

Lateness is a run's `started` minus its slot: the claim's cost is the
difference between 2 and 1; 3 shows what sharing the work costs.

    python3 bench/fleet.py
    JOBS=1000 DURATION=60 python3 bench/fleet.py
"""

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from opsd_bench import OPSD, build, history, machine, pct, start_daemon, stop, trivial_jobs, write_config

JOBS = int(os.environ.get("JOBS", "1000"))
DURATION = int(os.environ.get("DURATION", "60"))
WARMUP = 5


def as_postgres(args):
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + args if os.geteuid() == 0 else args


def start_postgres(base: Path):
    """initdb and postgres in `base`, on a Unix socket; returns (process, port)."""
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run(as_postgres([bindir / "initdb", "-D", base / "data", "-U", "postgres", "-A", "trust",
                                "--no-sync"]), check=True, capture_output=True)
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(as_postgres([bindir / "postgres", "-D", base / "data", "-k", base, "-p", str(port),
                                         "-c", "listen_addresses=", "-c", "fsync=off"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if subprocess.run(["psql", "-h", base, "-p", str(port), "-U", "postgres", "-c", "SELECT 1"],
                          capture_output=True).returncode == 0:
            return proc, port
        time.sleep(0.1)
    raise SystemExit("PostgreSQL did not start")


def parse(t):
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00"))


def scenario(label, hosts, scope, pg_base, port, db):
    subprocess.run(["psql", "-h", pg_base, "-p", str(port), "-U", "postgres", "-qc", f"CREATE DATABASE {db}"],
                   check=True)
    jobs = trivial_jobs((f"j{i}", f"{i % 60} * * * * *") for i in range(JOBS))
    if scope == "fleet":
        jobs = jobs.replace('plugin = "test-hostile"\n', 'plugin = "test-hostile"\nscope = "fleet"\n')
    works, procs = [], []
    for h in range(hosts):
        work = Path(tempfile.mkdtemp(prefix="opsd-bench-fleet"))
        fleet = (f'[fleet]\npostgres = "host={pg_base} port={port} user=postgres dbname={db}"\n'
                 f'host = "h{h}"\n')
        cfg = write_config(work, fleet + "\n" + jobs if scope == "fleet" else jobs)
        proc, ready = start_daemon(cfg, work)
        works.append((work, cfg))
        procs.append(proc)
    since = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=WARMUP)
    time.sleep(DURATION + WARMUP)
    for p in procs:
        stop(p)
    runs, per_host = [], []
    for work, cfg in works:
        mine = [r for r in history(cfg) if r["trigger"] == "schedule" and parse(r["scheduled"]) >= since]
        per_host.append(sum(1 for r in mine if r["status"] == "ok"))
        runs += mine
        shutil.rmtree(work, ignore_errors=True)
    ok = [r for r in runs if r["status"] == "ok"]
    late = [(parse(r["started"]) - parse(r["scheduled"])).total_seconds() * 1000 for r in ok]
    slots = {(r["job"], r["scheduled"]) for r in ok}
    print(f"{label}: {len(ok)} runs of {len(slots)} slots over {DURATION} s "
          f"({len(runs) - len(ok)} not ok), lateness p50 {pct(late, 0.5):.2f} ms, "
          f"p99 {pct(late, 0.99):.2f} ms, max {max(late):.2f} ms; runs per host {per_host}")
    return pct(late, 0.5), pct(late, 0.99)


def main():
    build()
    print(f"machine: {machine()}; {JOBS} jobs, each once a minute at its own second")
    base = Path(tempfile.mkdtemp(prefix="opsd-bench-pg"))
    pg, port = start_postgres(base)
    try:
        host = scenario("host     (1 daemon, no claim)", 1, "host", base, port, "b_host")
        one = scenario("fleet x1 (1 daemon, every run claimed)", 1, "fleet", base, port, "b_fleet1")
        three = scenario("fleet x3 (3 daemons share the slots)", 3, "fleet", base, port, "b_fleet3")
        print(f"a claim adds: p50 {one[0] - host[0]:+.2f} ms, p99 {one[1] - host[1]:+.2f} ms "
              f"(fleet x1 / host: p50 {one[0] / host[0]:.2f}x, p99 {one[1] / host[1]:.2f}x)")
        print(f"three hosts against one: p50 {three[0] / host[0]:.2f}x, p99 {three[1] / host[1]:.2f}x of host")
    finally:
        pg.terminate()
        pg.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
