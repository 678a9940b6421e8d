#!/usr/bin/env bash
# Backup of a ~1 GiB PostgreSQL database six ways, in one run:
#   1. opsd's backup plugin (pg_dump -Fc through the process grant,
#      read back with pg_restore --list, sha256 by the host, fsync,
#      atomic publish);
#   2. pg_dump -Fc > file, by hand;
#   3. the same and `sync file`: durable, as opsd's backup is;
#   4. pg_dump | gzip > file, the runbook's way;
#   5. opsd's backup plugin with format = "directory" and jobs = JOBS
#      (pg_dump -Fd -j JOBS, a manifest of host sha256s, fsync, publish);
#   6. pg_dump -Fd -j JOBS by hand.
# The database is TABLES tables of ROWS/TABLES rows each: pg_dump's
# workers share out tables, so one table would leave all but one idle.
# Reports wall time and peak resident memory of each, and opsd's own peak
# (the daemon process, not pg_dump), to show that opsd's memory stays
# bounded while the data streams past it.
#
#   bench/backup_vs_pg_dump.sh            # ROWS=6000000 (~1 GiB of tables)
#   ROWS=500000 RUNS=5 TABLES=8 JOBS=4 bench/backup_vs_pg_dump.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-6000000}
TABLES=${TABLES:-4}
[ "$TABLES" -ge 1 ] || { echo "TABLES must be at least 1" >&2; exit 1; }
# A source may ask for up to 32 workers.
JOBS=${JOBS:-$(( $(nproc) > 32 ? 32 : $(nproc) ))}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
work=$(mktemp -d /tmp/opsd-bench.XXXXXX)
# opsd reads its config only from a directory root (its user) owns; the
# server's files and socket are the postgres user's, in a directory of
# their own below.
pg=$work/pg
mkdir "$pg"
chmod 755 "$work"
trap 'kill -QUIT $(cat "$pg/pg.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$pg"

cargo build --release -q
opsd=$PWD/target/release/opsd

as_pg "$bin/initdb" -D "$pg/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$bin/postgres" -D "$pg/data" -k "$pg" -p "$port" -c listen_addresses= -c fsync=off >"$pg/pg.log" 2>&1 &
echo $! >"$pg/pg.pid"
for _ in $(seq 100); do psql -X -h "$pg" -p "$port" -U postgres -c 'select 1' postgres >/dev/null 2>&1 && break; sleep 0.1; done
psql() { command psql -X -q -h "$pg" -p "$port" -U postgres "$@"; }

echo "filling a database with $ROWS rows in $TABLES tables..." >&2
psql -c 'CREATE DATABASE big' postgres
per=$((ROWS / TABLES))
for i in $(seq "$TABLES"); do
  psql -d big -c "CREATE TABLE t$i (id bigint, a text, b text, c double precision);
    INSERT INTO t$i SELECT g, md5(g::text), repeat(md5((g*7)::text), 2), random() FROM generate_series($(( (i - 1) * per + 1 )), $(( i == TABLES ? ROWS : i * per ))) g;"
done
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
net = ["unix:$pg/.s.PGSQL.$port"]
[job.config]
target = "/backups"
postgres = { host = "$pg", port = $port, user = "postgres" }
[[job.config.sources]]
kind = "postgres"
name = "big"
database = "big"

[[job]]
name = "bigdir"
plugin = "backup"
schedule = "@daily"
timeout = "1h"
[job.grants]
fs = [{ host = "backups-dir", guest = "/backups", access = "rw" }]
exec = ["pg_dump", "pg_restore", "pg_dumpall", "psql"]
net = ["unix:$pg/.s.PGSQL.$port"]
[job.config]
target = "/backups"
postgres = { host = "$pg", port = $port, user = "postgres" }
[[job.config.sources]]
kind = "postgres"
name = "big"
database = "big"
format = "directory"
jobs = $JOBS
TOML
mkdir -p "$work/backups-dir"
# Compile the plugin once, so the timed run measures the backup.
"$opsd" --config "$work/opsd.toml" plugins list >/dev/null

measure() { bench/peak_rss.py -- "$@"; }
# The backup must work before it is timed.
"$opsd" --config "$work/opsd.toml" run big >/dev/null || { echo "the backup job failed; see above" >&2; exit 1; }
"$opsd" --config "$work/opsd.toml" run bigdir >/dev/null || { echo "the directory backup job failed; see above" >&2; exit 1; }
# RUNS rounds (default 3), each way once per round in turn, so a slow
# moment of the machine falls on all of them; medians are reported.
RUNS=${RUNS:-3}
: >"$work/times"
for round in $(seq "$RUNS"); do
  echo "round $round of $RUNS..." >&2
  echo "opsd $(measure "$opsd" --config "$work/opsd.toml" run big)" >>"$work/times"
  echo "fc $(measure sh -c "pg_dump -h '$pg' -p $port -U postgres -Fc big > '$work/by-hand.dump'")" >>"$work/times"
  echo "fcsync $(measure sh -c "pg_dump -h '$pg' -p $port -U postgres -Fc big > '$work/by-hand-synced.dump' && sync '$work/by-hand-synced.dump'")" >>"$work/times"
  echo "gzip $(measure sh -c "pg_dump -h '$pg' -p $port -U postgres big | gzip > '$work/by-hand.sql.gz'")" >>"$work/times"
  echo "opsddir $(measure "$opsd" --config "$work/opsd.toml" run bigdir)" >>"$work/times"
  rm -rf "$work/by-hand.dir"
  echo "fd $(measure pg_dump -h "$pg" -p "$port" -U postgres -Fd -j "$JOBS" -f "$work/by-hand.dir" big)" >>"$work/times"
done
dump_file=$(ls -t "$work"/backups/*.dump | head -n 1)
opsd_bytes=$(stat -c %s "$dump_file")

dir_bytes=$(du -sb "$(ls -td "$work"/backups-dir/*.dir | head -n 1)" | cut -f1)

python3 - "$size" "$work/times" "$opsd_bytes" "$(stat -c %s "$work/by-hand.dump")" "$(stat -c %s "$work/by-hand.sql.gz")" "$dir_bytes" "$(du -sb "$work/by-hand.dir" | cut -f1)" "$JOBS" "$TABLES" <<'PY'
import json, statistics, sys
size, times = sys.argv[1], sys.argv[2]
ob, hb, gb, odb, hdb, jobs, tables = map(int, sys.argv[3:10])
runs = {}
for line in open(times):
    way, _, rec = line.partition(" ")
    runs.setdefault(way, []).append(json.loads(rec))
med = lambda way, key: statistics.median(r[key] for r in runs[way])
mib = lambda k: f"{k/1024:.0f} MiB"
fc = med("fc", "seconds")
each = lambda way: ", ".join(f"{r['seconds']:.2f}" for r in runs[way])
print(f"database: {size} in {tables} tables; {len(runs['fc'])} rounds, median wall time (each run)\n")
print("| way | wall time | ratio to pg_dump -Fc | output | peak RSS of the command | opsd's own peak RSS |")
print("|---|---|---|---|---|---|")
print(f"| opsd backup plugin (dump, pg_restore --list, host sha256, fsync, publish) | {med('opsd', 'seconds'):.2f} s ({each('opsd')}) | {med('opsd', 'seconds')/fc:.3f}x | {ob/2**20:.0f} MiB | {mib(med('opsd', 'children_peak_kib'))} | {mib(med('opsd', 'self_peak_kib'))} |")
print(f"| pg_dump -Fc > file | {fc:.2f} s ({each('fc')}) | 1.000x | {hb/2**20:.0f} MiB | {mib(med('fc', 'children_peak_kib'))} | - |")
print(f"| pg_dump -Fc > file && sync file (durable, as opsd's is) | {med('fcsync', 'seconds'):.2f} s ({each('fcsync')}) | {med('fcsync', 'seconds')/fc:.3f}x | {hb/2**20:.0f} MiB | {mib(med('fcsync', 'children_peak_kib'))} | - |")
print(f"| pg_dump \\| gzip > file | {med('gzip', 'seconds'):.2f} s ({each('gzip')}) | {med('gzip', 'seconds')/fc:.3f}x | {gb/2**20:.0f} MiB | {mib(med('gzip', 'children_peak_kib'))} | - |")
print(f"| opsd backup plugin, format = \"directory\", jobs = {jobs} (pg_dump -Fd -j {jobs}, pg_restore --list, host sha256 of each file, fsync, publish) | {med('opsddir', 'seconds'):.2f} s ({each('opsddir')}) | {med('opsddir', 'seconds')/fc:.3f}x | {odb/2**20:.0f} MiB | {mib(med('opsddir', 'children_peak_kib'))} | {mib(med('opsddir', 'self_peak_kib'))} |")
print(f"| pg_dump -Fd -j {jobs} -f dir | {med('fd', 'seconds'):.2f} s ({each('fd')}) | {med('fd', 'seconds')/fc:.3f}x | {hdb/2**20:.0f} MiB | {mib(med('fd', 'children_peak_kib'))} | - |")
PY
