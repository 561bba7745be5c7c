#!/usr/bin/env bash
# jobqueue-bench against N replicas sharing one fresh PostgreSQL database.
#
#   bench/replicas.sh N [jobqueue-bench arguments...]
#
# Starts N `jobqueue serve` processes (target/release/jobqueue) on a new database,
# points jobqueue-bench at the first (the others learn of its work through
# LISTEN/NOTIFY and claim their share), and reports the CPU time of all N together
# per job, which is what shows scaling when the replicas share the same cores.
# JOBQUEUE_BENCH_PG names the server (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."

replicas=${1:?usage: bench/replicas.sh N [jobqueue-bench arguments...]}
shift
pg=${JOBQUEUE_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
db="jq_bench_$$"
scratch=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$pg/postgres" -qc "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

psql "$pg/postgres" -qc "create database \"$db\""

addrs=()
for n in $(seq 1 "$replicas"); do
  JOBQUEUE_LOG=warn JOBQUEUE_OUTBOUND_ALLOW=127.0.0.1 target/release/jobqueue serve --listen-addr 127.0.0.1:0 \
    --db-url "$pg/$db" --concurrency 256 >"$scratch/$n.out" 2>"$scratch/$n.err" &
  pids+=($!)
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/^jobqueue listening on //p' "$scratch/$n.out")
    [ -n "$addr" ] && break
    sleep 0.05
  done
  [ -n "$addr" ] || { cat "$scratch/$n.err" >&2; echo "replica $n did not start" >&2; exit 1; }
  addrs+=("$addr")
done

# utime + stime of every replica, in clock ticks.
cpu_ticks() {
  local total=0
  for pid in "${pids[@]}"; do
    read -r -a stat <"/proc/$pid/stat"
    total=$((total + stat[13] + stat[14]))
  done
  echo "$total"
}

before=$(cpu_ticks)
target/release/jobqueue-bench --server "${addrs[0]}" --server-pid "${pids[0]}" "$@" | tee "$scratch/bench.out"
after=$(cpu_ticks)

jobs=$(grep '^{' "$scratch/bench.out" | sed -n 's/.*"jobs":\([0-9]*\).*/\1/p' | paste -sd+ | bc)
hz=$(getconf CLK_TCK)
python3 - "$replicas" "$before" "$after" "$hz" "$jobs" <<'EOF'
import sys
replicas, before, after, hz, jobs = sys.argv[1:]
seconds = (int(after) - int(before)) / int(hz)
print(f"replicas: {replicas}; CPU of all replicas: {seconds:.2f} s; "
      f"{seconds * 1e6 / int(jobs):.1f} us per job over {jobs} jobs")
EOF
