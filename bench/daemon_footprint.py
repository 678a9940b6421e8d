#!/usr/bin/env python3
"""The daemon at rest and at start.

1. Compile time of each built-in plugin (a fresh data dir, so nothing is
   cached: `opsd plugins list` loads them all and logs each load).
2. Daemon start until /v1/health says ok, with an empty compile cache and
   with a warm one.
3. An idle daemon with 100 jobs and the built-ins loaded: resident memory,
   and CPU seconds used over IDLE seconds (default 60).

    python3 bench/daemon_footprint.py
    IDLE=120 python3 bench/daemon_footprint.py
    RELEASE=5m python3 bench/daemon_footprint.py   # the daemon's default
    OPSD_BIN=/tmp/opsd-before python3 bench/daemon_footprint.py   # another build
"""

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from opsd_bench import OPSD, build, machine, start_daemon, stop, write_config

IDLE = int(os.environ.get("IDLE", "60"))
# Compiled code of plugins unused this long goes back to the kernel (the
# daemon's default is 5m; shorter here so the 60 s window sees it).
RELEASE = os.environ.get("RELEASE", "20s")
BUILTINS = ["log-rotate", "backup", "vacuum", "cert-renew", "audit", "report"]
TICK = os.sysconf("SC_CLK_TCK")


def jobs(n):
    out = []
    for i in range(n):
        out.append(
            f'[[job]]\nname = "rotate-{i}"\nplugin = "log-rotate"\nschedule = "{i % 60} {i % 24} * * *"\n'
            f'[job.grants]\nfs = [{{ host = "logs", guest = "/logs", access = "rw", create = true }}]\n'
            f'[job.config]\npaths = ["/logs/*.log"]\nmissingok = true\n'
        )
    return "\n".join(out)


def loader_jobs():
    # One job per built-in, run once (a dry run that may fail on its empty
    # config) so the daemon holds every built-in's compiled code.
    return "\n".join(f'[[job]]\nname = "load-{b}"\nplugin = "{b}"\nschedule = "@yearly"\n' for b in BUILTINS)


def proc_stats(pid):
    """(RSS, private anonymous, file-backed) in MiB, and CPU seconds used."""
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                mem[key] = int(value.split()[0]) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    return (mem["VmRSS"], mem["RssAnon"], mem["RssFile"]), cpu


def rss_by_mapping(pid, top=8):
    """The mappings holding the most resident memory, as (KiB, name)."""
    sizes, name = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5:
                name = parts[5] if len(parts) > 5 else "[anonymous]"
            elif parts[0] == "Rss:":
                sizes[name] = sizes.get(name, 0) + int(parts[1])
    return sorted(((kib, n) for n, kib in sizes.items()), reverse=True)[:top]


def load_builtins(cfg):
    for b in BUILTINS:
        subprocess.run([OPSD, "--config", cfg, "run", f"load-{b}", "--dry-run"], capture_output=True)


def mib(m):
    return f"RSS {m[0]:.1f} MiB ({m[1]:.1f} MiB private, {m[2]:.1f} MiB file-backed)"


def main():
    build()
    print(f"{machine()}, {dt.date.today()}")
    work = Path(tempfile.mkdtemp(prefix="opsd-bench-foot."))
    try:
        cfg = write_config(work, jobs(100) + "\n" + loader_jobs(), f'release_idle_code_after = "{RELEASE}"')
        # 1. Compile each built-in, nothing cached: `plugins inspect` loads
        # one and logs the load.
        print("compile per plugin (empty cache):")
        for name in BUILTINS:
            shutil.rmtree(work / "data", ignore_errors=True)
            out = subprocess.run([OPSD, "--config", cfg, "-v", "--log-format", "json",
                                  "plugins", "inspect", name, "--json"],
                                 capture_output=True, text=True, check=True)
            for line in out.stderr.splitlines():
                try:
                    f = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if f.get("message") == "plugin loaded":
                    size = json.loads(out.stdout).get("size") if out.stdout.strip() else None
                    print(f"  {name:<12} {f.get('source'):<9} {float(f.get('ms', 0)):7.0f} ms"
                          + (f"  ({size / 1e6:.2f} MB)" if size else ""))
        # 2. Start to healthy: empty cache, then warm.
        shutil.rmtree(work / "data", ignore_errors=True)
        proc, cold = start_daemon(cfg, work)
        # 3a. This daemon compiles the built-ins itself.
        load_builtins(cfg)
        time.sleep(3)
        compiled, _ = proc_stats(proc.pid)
        stop(proc)
        proc, warm = start_daemon(cfg, work)
        print(f"daemon start to healthy: {cold * 1000:.0f} ms with an empty compile cache, "
              f"{warm * 1000:.0f} ms with a warm one (built-ins are compiled on first use, not at start)")
        print(f"after compiling the six built-ins itself: {mib(compiled)}")
        # 3b. Idle after a restart, every built-in loaded from the cache.
        load_builtins(cfg)
        time.sleep(5)
        m0, cpu0 = proc_stats(proc.pid)
        time.sleep(IDLE)
        m1, cpu1 = proc_stats(proc.pid)
        biggest = rss_by_mapping(proc.pid)
        stop(proc)
        print(f"idle with 106 jobs and the six built-ins loaded from the cache "
              f"(release_idle_code_after = {RELEASE}): {mib(m1)} "
              f"(at the start of the window {m0[0]:.1f} MiB); CPU {cpu1 - cpu0:.2f} s over {IDLE} s "
              f"({100 * (cpu1 - cpu0) / IDLE:.2f} % of one CPU)")
        print("  largest resident mappings: " + ", ".join(f"{Path(n).name} {k / 1024:.1f} MiB" for k, n in biggest))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
