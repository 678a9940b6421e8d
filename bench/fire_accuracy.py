#!/usr/bin/env python3
"""Fire accuracy of the scheduler.

1. Lateness (a run's `started` minus the slot it serves) with 1,000 jobs
   of a trivial plugin: each firing once a minute at its own second (about
   17 due at once) for DURATION seconds (default 120), then each firing
   every 10 seconds (100 due at once, every second) for HEAVY_DURATION
   (default 30).
2. A burst: 10,000 jobs due in the same second; how long until all have
   started, with the default `max_concurrent_runs` (or BURST_LIMIT), and
   the daemon's CPU time over it.
3. After idle (`PARTS=idle`, not in the default set): six jobs, one due
   every 10 s, with `release_idle_code_after = "2s"`, so each fire finds
   the plugin's code and the daemon's own released and must fault them
   back in: the lateness that costs (IDLE_DURATION, default 120 s).

    python3 bench/fire_accuracy.py
    JOBS=1000 BURST=10000 DURATION=120 HEAVY_DURATION=30 python3 bench/fire_accuracy.py
    PARTS=spread BENCH_STDERR=/tmp/opsd.log python3 bench/fire_accuracy.py
"""

import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

from opsd_bench import build, history, machine, pct, start_daemon, stop, trivial_jobs, write_config

JOBS = int(os.environ.get("JOBS", "1000"))
BURST = int(os.environ.get("BURST", "10000"))
DURATION = int(os.environ.get("DURATION", "120"))
HEAVY_DURATION = int(os.environ.get("HEAVY_DURATION", "30"))
WARMUP = 5


def parse(t):
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00"))


def lateness_ms(runs):
    return [(parse(r["started"]) - parse(r["scheduled"])).total_seconds() * 1000 for r in runs]


def steady(work: Path, schedule_of, label, duration, jobs=JOBS, extra=""):
    cfg = write_config(work, trivial_jobs((f"j{i}", schedule_of(i)) for i in range(jobs)), extra)
    proc, ready = start_daemon(cfg, work)
    # Steady state: slots in the first WARMUP seconds (the plugin file is
    # scanned and loaded on the first fires) are left out.
    since = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=WARMUP)
    time.sleep(duration + WARMUP)
    stop(proc)
    runs = [r for r in history(cfg) if r["trigger"] == "schedule" and parse(r["scheduled"]) >= since]
    late = lateness_ms([r for r in runs if r["status"] != "skipped"])
    skipped = sum(1 for r in runs if r["status"] == "skipped")
    failed = sum(1 for r in runs if r["status"] not in ("ok", "skipped"))
    print(f"steady: {jobs} jobs {label}, {duration} s after a {WARMUP} s warm-up, {len(late)} runs "
          f"({skipped} skipped, {failed} not ok); daemon healthy after {ready:.2f} s")
    print(f"  lateness: p50 {pct(late, 0.5):.2f} ms, p99 {pct(late, 0.99):.2f} ms, max {max(late):.2f} ms")
    if os.environ.get("SHOW"):
        print("  each: " + " ".join(f"{x:.1f}" for x in late))


def spread(work: Path):
    # Each job once a minute at its own second: about JOBS/60 due at once.
    steady(work, lambda i: f"{i % 60} * * * * *", "each once a minute, spread over the seconds", DURATION)


def heavy(work: Path):
    # Each job every 10 s: JOBS/10 due in the same second, every second.
    steady(work, lambda i: f"{i % 10}/10 * * * * *", f"each every 10 s ({JOBS // 10} due each second)",
           HEAVY_DURATION)


def after_idle(work: Path):
    # Six jobs, each once a minute at its own tenth second: a fire every
    # 10 s, each after 8 s with nothing in use and everything released.
    steady(work, lambda i: f"{i * 10} * * * * *", "one every 10 s, code released 2 s after each run",
           int(os.environ.get("IDLE_DURATION", "120")), jobs=6, extra='release_idle_code_after = "2s"\n')


def cpu_seconds(pid):
    """User and system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst(work: Path):
    # All due at the same second: the first minute boundary at least 20 s
    # after the daemon is up, so every job is scheduled by then.
    jobs = trivial_jobs((f"b{i}", "* * * * *") for i in range(BURST))
    extra = f"max_concurrent_runs = {os.environ['BURST_LIMIT']}\n" if "BURST_LIMIT" in os.environ else ""
    cfg = write_config(work, jobs, extra)
    proc, ready = start_daemon(cfg, work)
    now = dt.datetime.now(dt.timezone.utc)
    boundary = (now + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (boundary - now).total_seconds() < 20:
        boundary += dt.timedelta(minutes=1)
    deadline = boundary + dt.timedelta(seconds=50)
    # The daemon's CPU time over the burst: steadier on a shared machine
    # than the wall time, and what a cheaper run shows first.
    time.sleep(max(0.0, (boundary - dt.datetime.now(dt.timezone.utc)).total_seconds() - 2))
    cpu_before = cpu_seconds(proc.pid)
    while dt.datetime.now(dt.timezone.utc) < deadline:
        time.sleep(1)
    cpu = cpu_seconds(proc.pid) - cpu_before
    stop(proc)
    runs = [r for r in history(cfg) if r["trigger"] == "schedule" and parse(r["scheduled"]) == boundary]
    started = [parse(r["started"]) for r in runs if r["status"] != "skipped"]
    finished = [parse(r["finished"]) for r in runs if r.get("finished")]
    ok = sum(1 for r in runs if r["status"] == "ok")
    print(f"burst: {BURST} jobs due at {boundary:%H:%M:%S}; {len(runs)} fired, {ok} ok; "
          f"daemon healthy after {ready:.2f} s")
    if started:
        print(f"  all started {(max(started) - boundary).total_seconds() * 1000:.0f} ms after the slot; "
              f"first {(min(started) - boundary).total_seconds() * 1000:.1f} ms; "
              f"all finished {(max(finished) - boundary).total_seconds() * 1000:.0f} ms after")
    print(f"  daemon CPU from 2 s before the slot to 50 s after: {cpu:.2f} s")


def main():
    build()
    print(f"{machine()}, {dt.date.today()}")
    parts = {"spread": spread, "heavy": heavy, "burst": burst, "idle": after_idle}
    chosen = os.environ.get("PARTS", "spread,heavy,burst").split(",")
    for part in (parts[p] for p in chosen):
        work = Path(tempfile.mkdtemp(prefix="opsd-bench-fire."))
        try:
            part(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
