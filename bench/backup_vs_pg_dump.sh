#!/usr/bin/env bash
# Backup of a ~1 GiB PostgreSQL database three ways, in one run:
#   1. opsd's backup plugin (pg_dump -Fc through the process grant,
#      read back with pg_restore --list, sha256, atomic publish);
#   2. pg_dump -Fc > file, by hand;
#   3. pg_dump | gzip > file, the runbook's way.
# Reports wall time and peak resident memory of each, and opsd's own peak
# (the daemon process, not pg_dump), to show that opsd's memory stays
# bounded while the data streams past it.
#
#   bench/backup_vs_pg_dump.sh            # ROWS=6000000 (~1 GiB of table)
#   ROWS=500000 bench/backup_vs_pg_dump.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-6000000}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
work=$(mktemp -d /tmp/opsd-bench.XXXXXX)
trap 'kill -QUIT $(cat "$work/pg.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work"

cargo build --release -q
opsd=$PWD/target/release/opsd

as_pg "$bin/initdb" -D "$work/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$bin/postgres" -D "$work/data" -k "$work" -p "$port" -c listen_addresses= -c fsync=off >"$work/pg.log" 2>&1 &
echo $! >"$work/pg.pid"
for _ in $(seq 100); do psql -X -h "$work" -p "$port" -U postgres -c 'select 1' postgres >/dev/null 2>&1 && break; sleep 0.1; done
psql() { command psql -X -q -h "$work" -p "$port" -U postgres "$@"; }

echo "filling a database with $ROWS rows..." >&2
psql -c 'CREATE DATABASE big' postgres
psql -d big -c "CREATE TABLE t (id bigint, a text, b text, c double precision);
  INSERT INTO t SELECT g, md5(g::text), repeat(md5((g*7)::text), 2), random() FROM generate_series(1, $ROWS) g;"
size=$(psql -d big -At -c "SELECT pg_size_pretty(pg_database_size('big'))")

mkdir -p "$work/backups"
cat >"$work/opsd.toml" <<TOML
data_dir = "state"
[http]
enabled = false
[[job]]
name = "big"
plugin = "backup"
schedule = "@daily"
timeout = "1h"
[job.grants]
fs = [{ host = "backups", guest = "/backups", access = "rw" }]
exec = ["pg_dump", "pg_restore", "pg_dumpall", "psql", "tar"]
[job.config]
target = "/backups"
postgres = { host = "$work", port = $port, user = "postgres" }
[[job.config.sources]]
kind = "postgres"
name = "big"
database = "big"
TOML
# Compile the plugin once, so the timed run measures the backup.
"$opsd" --config "$work/opsd.toml" plugins list >/dev/null

measure() { bench/peak_rss.py -- "$@"; }
opsd_run=$(measure "$opsd" --config "$work/opsd.toml" run big)
dump_file=$(ls "$work"/backups/*.dump)
opsd_bytes=$(stat -c %s "$dump_file")
by_hand=$(measure sh -c "pg_dump -h '$work' -p $port -U postgres -Fc big > '$work/by-hand.dump'")
gzip_run=$(measure sh -c "pg_dump -h '$work' -p $port -U postgres big | gzip > '$work/by-hand.sql.gz'")

python3 - "$size" "$opsd_run" "$by_hand" "$gzip_run" "$opsd_bytes" "$(stat -c %s "$work/by-hand.dump")" "$(stat -c %s "$work/by-hand.sql.gz")" <<'PY'
import json, sys
size, o, h, g = sys.argv[1], *map(json.loads, sys.argv[2:5])
ob, hb, gb = map(int, sys.argv[5:8])
mib = lambda k: f"{k/1024:.0f} MiB"
print(f"database: {size}\n")
print("| way | wall time | ratio to pg_dump -Fc | output | peak RSS of the command | opsd's own peak RSS |")
print("|---|---|---|---|---|---|")
print(f"| opsd backup plugin (dump, read-back, sha256, publish) | {o['seconds']} s | {o['seconds']/h['seconds']:.2f}x | {ob/2**20:.0f} MiB | {mib(o['children_peak_kib'])} | {mib(o['self_peak_kib'])} |")
print(f"| pg_dump -Fc > file | {h['seconds']} s | 1.00x | {hb/2**20:.0f} MiB | {mib(h['children_peak_kib'])} | - |")
print(f"| pg_dump \\| gzip > file | {g['seconds']} s | {g['seconds']/h['seconds']:.2f}x | {gb/2**20:.0f} MiB | {mib(g['children_peak_kib'])} | - |")
PY
