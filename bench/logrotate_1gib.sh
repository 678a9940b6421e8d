#!/usr/bin/env bash
# Rotating and compressing a 1 GiB log, in one run, two ways:
#   1. Debian's logrotate (fork/exec of gzip, level 6);
#   2. opsd's log-rotate plugin reading the same logrotate config
#      (gzip level 6 inside the wasm sandbox).
# Both get an identical copy of the log, page-cache warm. Reports wall
# time, compressed size, peak resident memory, and checks that both
# compressed files decompress to the original.
#
#   bench/logrotate_1gib.sh            # SIZE_MIB=1024
#   SIZE_MIB=64 bench/logrotate_1gib.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
work=$(mktemp -d /tmp/opsd-bench-lr.XXXXXX)
trap 'rm -rf "$work"' EXIT

cargo build --release -q
opsd=$PWD/target/release/opsd

echo "writing a ${SIZE_MIB} MiB access log..." >&2
mkdir -p "$work/lr" "$work/opsd" "$work/state" "$work/conf"
python3 - "$work/lr/app.log" "$SIZE_MIB" <<'PY'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
paths = ["/", "/login", "/api/v1/items", "/api/v1/items/%d", "/static/app.js",
         "/static/style.css", "/search?q=%s", "/healthz", "/metrics"]
agents = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Prometheus/2.48",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1)"]
words = ["alpha", "beta", "gamma", "delta", "disk", "backup", "nginx", "opsd"]
target = mib * 1024 * 1024
written = 0
with open(path, "w") as f:
    t = 1_700_000_000
    while written < target:
        lines = []
        for _ in range(2000):
            t += rnd.randint(0, 2)
            p = rnd.choice(paths)
            if "%d" in p:
                p = p % rnd.randint(1, 100000)
            elif "%s" in p:
                p = p % rnd.choice(words)
            lines.append('10.%d.%d.%d - - [%d] "GET %s HTTP/1.1" %d %d "-" "%s" %.3f\n' % (
                rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(0, 255), t, p,
                rnd.choice([200, 200, 200, 304, 404, 500]), rnd.randint(100, 90000),
                rnd.choice(agents), rnd.random()))
        chunk = "".join(lines)
        f.write(chunk)
        written += len(chunk)
PY
cp "$work/lr/app.log" "$work/opsd/app.log"
original_sha=$(sha256sum <"$work/lr/app.log" | cut -d' ' -f1)

for who in lr opsd; do
  printf '%s/%s/app.log {\n  size 1\n  rotate 4\n  compress\n}\n' "$work" "$who" >"$work/conf/$who.conf"
done
chmod 644 "$work"/conf/*.conf
cat >"$work/opsd.toml" <<TOML
data_dir = "data"
[http]
enabled = false
[[job]]
name = "rotate"
plugin = "log-rotate"
schedule = "@daily"
timeout = "1h"
[job.grants]
fs = [
  { host = "$work/opsd", guest = "$work/opsd", access = "rw" },
  { host = "$work/conf", guest = "$work/conf", access = "ro" },
  { host = "$work/state", guest = "$work/state", access = "rw" },
]
[job.config]
logrotate_conf = "$work/conf/opsd.conf"
state_file = "$work/state/opsd.status"
TOML
# Compile the plugin once, so the timed run measures the rotation.
"$opsd" --config "$work/opsd.toml" plugins list >/dev/null
cat "$work/lr/app.log" "$work/opsd/app.log" >/dev/null

measure() { bench/peak_rss.py -- "$@"; }
lr_run=$(measure /usr/sbin/logrotate -s "$work/state/lr.status" "$work/conf/lr.conf")
opsd_run=$(measure "$opsd" --config "$work/opsd.toml" run rotate)

for who in lr opsd; do
  got=$(gzip -dc "$work/$who/app.log.1.gz" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$original_sha" ] || { echo "$who: app.log.1.gz does not decompress to the original" >&2; exit 1; }
done

python3 - "$SIZE_MIB" "$lr_run" "$opsd_run" "$(stat -c %s "$work/lr/app.log.1.gz")" "$(stat -c %s "$work/opsd/app.log.1.gz")" <<'PY'
import json, sys
size, l, o = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
lb, ob = int(sys.argv[4]), int(sys.argv[5])
mib = lambda k: f"{k/1024:.0f} MiB"
print(f"log: {size} MiB\n")
print("| way | wall time | ratio to logrotate | app.log.1.gz | peak RSS (process) | peak RSS (children) |")
print("|---|---|---|---|---|---|")
print(f"| logrotate + gzip -6 | {l['seconds']} s | 1.00x | {lb/2**20:.1f} MiB | {mib(l['self_peak_kib'])} | {mib(l['children_peak_kib'])} |")
print(f"| opsd log-rotate (gzip 6 in wasm) | {o['seconds']} s | {o['seconds']/l['seconds']:.2f}x | {ob/2**20:.1f} MiB | {mib(o['self_peak_kib'])} | - |")
PY
