#!/usr/bin/env python3
"""Runs a command and reports its wall time and the peak resident memory
of the command's own process (VmHWM) and of its largest descendant.

    bench/peak_rss.py -- opsd --config x.toml run backup

Prints one JSON object: {"seconds", "self_peak_kib", "children_peak_kib",
"exit"}. The command's own peak is sampled from /proc every 20 ms (and
VmHWM is a high-water mark, so short peaks between samples still count).
"""
import json
import resource
import subprocess
import sys
import time

args = sys.argv[1:]
if args and args[0] == "--":
    args = args[1:]
start = time.monotonic()
proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
peak = 0
while proc.poll() is None:
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.02)
seconds = time.monotonic() - start
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": round(seconds, 2), "self_peak_kib": peak,
                  "children_peak_kib": children, "exit": proc.returncode}))
