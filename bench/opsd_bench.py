"""Shared helpers for the daemon benchmarks under bench/: a release build,
a trivial plugin, a daemon on a temp directory, its history."""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The cargo profile to build and measure: `release`, or `dist` (what a
# package ships: LTO, one codegen unit, stripped).
PROFILE = os.environ.get("PROFILE", "release")
# OPSD_BIN measures another build of opsd (a copy made before a change,
# for a side-by-side run); it implies NO_BUILD.
OPSD = Path(os.environ.get("OPSD_BIN") or ROOT / "target" / PROFILE / "opsd")
# The test guest that answers ok at once: a trivial plugin. The test
# guests' artifacts crate compiles it beside the built-ins.
TRIVIAL = ROOT / "target" / "opsd-wasm" / "wasm32-wasip2" / "plugin" / "opsd_test_hostile.wasm"


def build():
    if os.environ.get("NO_BUILD") or os.environ.get("OPSD_BIN"):
        return
    print(f"building opsd ({PROFILE})...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--profile", PROFILE, "-q"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--profile", PROFILE, "-q", "-p", "opsd-test-guests"], cwd=ROOT, check=True)
    if not TRIVIAL.exists():
        sys.exit(f"{TRIVIAL} is missing after the build")


def machine():
    cpus = os.cpu_count()
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024 // 1024
    return f"{cpus} CPUs, {mem} GiB"


def trivial_jobs(names_and_schedules):
    out = []
    for name, schedule in names_and_schedules:
        out.append(
            f'[[job]]\nname = "{name}"\nplugin = "test-hostile"\nschedule = "{schedule}"\n'
            f'[job.config]\naction = "ok"\n'
        )
    return "\n".join(out)


def write_config(work: Path, jobs: str, extra: str = "") -> Path:
    (work / "plugins").mkdir(parents=True, exist_ok=True)
    target = work / "plugins" / "trivial.wasm"
    if not target.exists():
        target.write_bytes(TRIVIAL.read_bytes())
    path = work / "opsd.toml"
    path.write_text(f'data_dir = "data"\nplugin_dir = "plugins"\n{extra}\n[http]\nenabled = false\n\n{jobs}')
    return path


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("opsd")
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.unix_path))


def get(work: Path, path: str):
    c = UnixHTTP(work / "data" / "opsd.sock")
    c.request("GET", path)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")


def start_daemon(config: Path, work: Path, timeout=300):
    """Starts a daemon; returns (process, seconds until /v1/health said ok)."""
    t = time.perf_counter()
    # BENCH_STDERR=FILE keeps the daemon's log, for looking into a result.
    log = os.environ.get("BENCH_STDERR")
    stderr = open(log, "a") if log else subprocess.DEVNULL
    proc = subprocess.Popen([OPSD, "--config", config, "daemon"], stderr=stderr)
    while time.perf_counter() - t < timeout:
        try:
            status, body = get(work, "/v1/health")
            if status == 200 and body.get("status") == "ok":
                return proc, time.perf_counter() - t
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.005)
    proc.kill()
    sys.exit("the daemon did not become healthy")


def stop(proc):
    proc.terminate()
    proc.wait(timeout=120)


def first_start_and_restart(config: Path, work: Path, repeat: int):
    """Seconds to healthy on the first start (an empty store, the plugin
    compiled) and the median of `repeat` restarts after it.

    The daemon reads a plugin file only once it has held still for 0.6 s
    (its change time at least 1.2 s old; `plugins::SETTLE`), so the one
    just copied in is left to age first: an installed plugin is old, and
    the wait is not what a start costs."""
    plugin = work / "plugins" / "trivial.wasm"
    time.sleep(max(0.0, plugin.stat().st_ctime + 1.3 - time.time()))
    proc, first = start_daemon(config, work)
    stop(proc)
    again = []
    for _ in range(repeat):
        proc, ready = start_daemon(config, work)
        again.append(ready)
        stop(proc)
    return first, statistics.median(again)


def history(config: Path):
    out = subprocess.run([OPSD, "--config", config, "history", "--json", "--limit", "10000000"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, round((len(v) - 1) * p))]
