#!/usr/bin/env bash
# jobqueue on PostgreSQL against graphile-worker on the same PostgreSQL server and
# the same kind of loopback HTTP target, in alternating rounds.
#
#   bench/pg_side_by_side.sh [--rounds 3] [--jobs 20000] [--timeout-secs 300]
#                            [--systems jq64,jq1024,gw_defaults,gw_batched]
#
# Four configurations, each run on a fresh database per round:
#   jobqueue, one replica, --concurrency 64
#   jobqueue, its own defaults (--concurrency 1024, the server's default)
#   graphile-worker, defaults (concurrency 64; Node's fetch)
#   graphile-worker, batched (local queue of 500, batched completions, pool of 65; undici)
# Every job is one POST of a ~50-byte JSON body to a loopback target; jobs are
# submitted 500 at a time with 4 submits in flight while the workers run; 64 calls at once.
#
# Measured from outside, per run: the CPU time of every PostgreSQL process (the
# postmaster's children, those that exited included), WAL written, and rows the run's
# database wrote (n_tup_ins + n_tup_upd + n_tup_del of pg_stat_user_tables); each
# system reports its own throughput and CPU time. Prints a markdown table of medians
# with the range, then the rows written per job by table.
#
# JOBQUEUE_BIN and JOBQUEUE_BENCH_BIN name the binaries (default target/release/...).
# JOBQUEUE_BEFORE_BIN names a jobqueue built before a change: its runs (jq64_before,
# jq1024_before) alternate with the others', to compare two builds side by side.
# JOBQUEUE_BENCH_PG the server (default postgres://postgres@127.0.0.1:5432, trust auth,
# a superuser: it creates databases, runs CHECKPOINT and shows data_directory). Run it
# as root or as the server's OS user, on the server's machine: the postmaster's pid
# file and /proc are read. bench/graphile's packages are installed with `npm ci` when
# missing; its Node (22.18 or newer) comes from them.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
jobs=20000
chosen=(jq64 jq1024 gw_defaults gw_batched)
timeout_secs=300
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --timeout-secs) timeout_secs=$2; shift 2 ;;
    --systems) IFS=, read -r -a chosen <<<"$2"; shift 2 ;;
    *) echo "usage: bench/pg_side_by_side.sh [--rounds N] [--jobs N] [--timeout-secs S] [--systems A,B]" >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$jobs" "$timeout_secs"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds, --jobs and --timeout-secs take positive integers" >&2; exit 2; }
done

jobqueue=${JOBQUEUE_BIN:-target/release/jobqueue}
before=${JOBQUEUE_BEFORE_BIN:-}
bench=${JOBQUEUE_BENCH_BIN:-target/release/jobqueue-bench}
pg=${JOBQUEUE_BENCH_PG:-postgres://postgres@127.0.0.1:5432}
graphile_dir=bench/graphile
node=$graphile_dir/node_modules/.bin/node
# The load, the same for every system.
batch=500
batch_in_flight=4
concurrency=64
post_bytes=50

[[ "$pg" =~ @127\.0\.0\.1(:[0-9]+)?$ ]] || { echo "JOBQUEUE_BENCH_PG must name a server on 127.0.0.1" >&2; exit 2; }
for binary in "$jobqueue" "$bench" ${before:+"$before"}; do
  [ -x "$binary" ] || { echo "$binary not found: cargo build --release -p jobqueue -p jobqueue-bench" >&2; exit 1; }
done
if [ ! -x "$node" ] || [ ! -d "$graphile_dir/node_modules/graphile-worker" ]; then
  echo "installing bench/graphile's packages (npm ci)" >&2
  (cd "$graphile_dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

psql_at() { # database, SQL: one unaligned, tuples-only answer
  psql "$pg/$1" -v ON_ERROR_STOP=1 -qAtX -c "$2"
}

scratch=$(mktemp -d)
run_tag="jq_pgsbs_$$"
databases=()
pids=()

cleanup() {
  local pid db
  for pid in "${pids[@]}"; do
    # Each run is the leader of a process group of its own (timeout makes it so):
    # that reaches a server jobqueue-bench spawned as well.
    kill -TERM -- "-$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for db in "${databases[@]}"; do
    psql_at postgres "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
  done
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background under `timeout`, so a signal to this script
# reaches it (a foreground child would delay the trap), and waits for it.
bounded() {
  timeout --kill-after=10 "$timeout_secs" "$@" &
  local pid=$!
  pids+=("$pid")
  wait "$pid"
}

# The postmaster: every PostgreSQL process is its child, and the CPU time of the
# children it has reaped (backends that closed) is in its cutime and cstime.
datadir=$(psql_at postgres "show data_directory")
postmaster=$(head -1 "$datadir/postmaster.pid")
[ -r "/proc/$postmaster/stat" ] || { echo "cannot read /proc/$postmaster (the postmaster)" >&2; exit 1; }

# Clock ticks of the postmaster, its live children and its reaped ones.
pg_cpu_ticks() {
  local line fields total pid
  read -r line <"/proc/$postmaster/stat"
  read -r -a fields <<<"${line##*) }"
  # After "comm)": utime, stime, cutime, cstime are the 12th to 15th fields.
  total=$((fields[11] + fields[12] + fields[13] + fields[14]))
  for pid in $(cat "/proc/$postmaster/task/$postmaster/children"); do
    read -r line 2>/dev/null <"/proc/$pid/stat" || continue
    read -r -a fields <<<"${line##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# Rows written so far per table of one database: "table<TAB>rows" lines.
table_writes() {
  psql_at "$1" "select relname, n_tup_ins + n_tup_upd + n_tup_del from pg_stat_user_tables
                order by relname" | tr '|' '\t'
}

# Rows written so far by every other database, "name<TAB>rows" lines: a run shared
# the server with nobody if none of them grew (databases dropped meanwhile drop out).
other_writes() {
  psql_at postgres "select coalesce(datname, ''), tup_inserted + tup_updated + tup_deleted
                    from pg_stat_database where datname is distinct from '$1'" | tr '|' '\t'
}

# Waits (up to 10 s) until no session is left on the database: closed backends flush
# their statistics and are reaped, so their CPU time is in the postmaster's.
wait_for_sessions_to_close() {
  for _ in $(seq 1 100); do
    [ "$(psql_at postgres "select count(*) from pg_stat_activity where datname = '$1'")" = 0 ] && return
    sleep 0.1
  done
  echo "warning: sessions on $1 still open after 10 s" >&2
}

# Starts the HTTP target; sets target_pid and target_url.
start_target() {
  local out=$scratch/target.out
  "$bench" --mode target --listen 127.0.0.1:0 >"$out" 2>"$scratch/target.err" &
  target_pid=$!
  pids+=("$target_pid")
  for _ in $(seq 1 200); do
    target_url=$(sed -n 's/^target listening on //p' "$out")
    [ -n "$target_url" ] && return
    sleep 0.05
  done
  cat "$scratch/target.err" >&2
  echo "the HTTP target did not start" >&2
  return 1
}

graphile_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$graphile_dir/node_modules/graphile-worker/package.json" | head -1)
declare -A label=(
  [jq64]="jobqueue, one replica, \`--concurrency 64\`"
  [jq1024]="jobqueue, its own defaults (\`--concurrency 1024\`)"
  [gw_defaults]="graphile-worker $graphile_version, defaults"
  [gw_batched]="graphile-worker $graphile_version, batched, undici"
)
systems=("${chosen[@]}")
if [ -n "$before" ]; then
  label[jq64_before]="jobqueue before the change, \`--concurrency 64\`"
  label[jq1024_before]="jobqueue before the change, its own defaults"
  with_before=()
  for system in "${systems[@]}"; do
    with_before+=("$system")
    case "$system" in jq64 | jq1024) with_before+=("${system}_before") ;; esac
  done
  systems=("${with_before[@]}")
fi
for system in "${systems[@]}"; do
  [ -n "${label[$system]:-}" ] || { echo "unknown system $system (jq64, jq1024, gw_defaults, gw_batched)" >&2; exit 2; }
done

# One run of one system on a fresh database; appends a line to results.tsv and the
# per-table rows to tables.tsv.
run_one() {
  local round=$1 system=$2
  local db="${run_tag}_${round}_${system}"
  local log="$scratch/$system.$round.log"
  psql_at postgres "create database \"$db\"" >/dev/null
  databases+=("$db")
  local url="$pg/$db"
  # The schema first, in a step of its own, so the figures are the run's alone.
  local server=$jobqueue
  [[ "$system" == *_before ]] && server=$before
  case "$system" in
    jq*) "$server" hosts list --db-url "$url" >/dev/null ;;
    gw*) "$node" "$graphile_dir/bench.mjs" migrate --db-url "$url" ;;
  esac
  target_pid="" target_url=""
  if [[ "$system" == gw* ]]; then start_target; fi

  # Every run starts just after a checkpoint, so each pays the same full-page
  # images in the WAL for the pages it touches first.
  psql_at postgres "checkpoint" >/dev/null
  table_writes "$db" >"$scratch/before.tsv"
  local lsn ticks_before
  lsn=$(psql_at postgres "select pg_current_wal_lsn()")
  other_writes "$db" >"$scratch/others_before.tsv"
  sleep 0.2 # the sessions above exit and are reaped
  ticks_before=$(pg_cpu_ticks)

  local status=0
  case "$system" in
    jq*)
      local c=$concurrency
      [[ "$system" == jq1024* ]] && c=1024
      bounded "$bench" --mode batch --jobs "$jobs" --batch-size "$batch" \
        --batch-in-flight "$batch_in_flight" --post-bytes "$post_bytes" --concurrency "$c" \
        --spawn-server "$server" --db-url "$url" --timeout-secs "$timeout_secs" \
        >"$log" 2>&1 || status=$?
      ;;
    gw*)
      bounded "$node" "$graphile_dir/bench.mjs" run --db-url "$url" --target "$target_url" \
        --config "${system#gw_}" --jobs "$jobs" --batch "$batch" --in-flight "$batch_in_flight" \
        --concurrency "$concurrency" --post-bytes "$post_bytes" --timeout-secs "$timeout_secs" \
        >"$log" 2>&1 || status=$?
      ;;
  esac
  wait_for_sessions_to_close "$db"
  local ticks_after
  ticks_after=$(pg_cpu_ticks)
  local wal
  wal=$(psql_at postgres "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn')")
  other_writes "$db" >"$scratch/others_after.tsv"
  table_writes "$db" >"$scratch/after.tsv"

  if [ -n "$target_pid" ]; then
    kill -TERM "$target_pid"
    wait "$target_pid" || true
    local seen
    seen=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' "$scratch/target.out")
    if [ "${seen:-0}" -lt "$jobs" ]; then
      echo "$system round $round: the target saw ${seen:-no} requests for $jobs jobs" >&2
      status=1
    fi
  fi
  if [ "$status" != 0 ]; then
    echo "$system round $round failed (exit $status); its output ends with:" >&2
    tail -20 "$log" >&2
    exit 1
  fi

  local line submit e2e own
  case "$system" in
    jq*)
      line=$(grep '^{"mode":"batch"' "$log")
      own=$(sed -n 's/.*"server_cpu_us_per_job":\([0-9.]*\).*/\1/p' <<<"$line")
      ;;
    gw*)
      line=$(grep '^{"mode":"graphile"' "$log")
      own=$(sed -n 's/.*"own_cpu_us_per_job":\([0-9.]*\).*/\1/p' <<<"$line")
      ;;
  esac
  submit=$(sed -n 's/.*"accepted_per_sec":\([0-9.]*\).*/\1/p' <<<"$line")
  e2e=$(sed -n 's/.*"jobs_per_sec":\([0-9.]*\).*/\1/p' <<<"$line")
  python3 - "$system" "$round" "$jobs" "$submit" "$e2e" "$own" "$((ticks_after - ticks_before))" \
    "$(getconf CLK_TCK)" "$wal" "$scratch/others_before.tsv" "$scratch/others_after.tsv" \
    "$scratch/before.tsv" "$scratch/after.tsv" "$scratch/results.tsv" "$scratch/tables.tsv" <<'EOF'
import sys
(system, round_, jobs, submit, e2e, own, ticks, hz, wal, others_before_path,
 others_after_path, before_path, after_path, results, tables) = sys.argv[1:]
jobs = int(jobs)
def load(path):
    rows = {}
    for line in open(path):
        name, n = line.rstrip("\n").split("\t")
        rows[name] = int(n)
    return rows
before, after = load(before_path), load(after_path)
written = {name: n - before.get(name, 0) for name, n in after.items()}
others_before = load(others_before_path)
others = sum(max(0, n - others_before.get(name, 0)) for name, n in load(others_after_path).items())
with open(tables, "a") as out:
    for name, n in written.items():
        out.write(f"{system}\t{round_}\t{name}\t{n / jobs}\n")
pg_cpu_us = int(ticks) / int(hz) * 1e6 / jobs
with open(results, "a") as out:
    out.write("\t".join([system, round_, submit, e2e, own, f"{pg_cpu_us:.1f}",
                         f"{float(wal) / jobs:.0f}", f"{sum(written.values()) / jobs:.2f}",
                         str(others)]) + "\n")
print(f"  {system}: submit {submit}/s, end to end {e2e}/s, own CPU {own} us/job, "
      f"PostgreSQL CPU {pg_cpu_us:.1f} us/job, WAL {float(wal) / jobs:.0f} B/job, "
      f"rows {sum(written.values()) / jobs:.2f}/job"
      + (f" (other databases wrote {others} rows meanwhile)" if others else ""),
      file=sys.stderr)
EOF
  psql_at postgres "drop database \"$db\" with (force)" >/dev/null
  # Every process of the run has been waited for: none is left to clean up.
  pids=()
}

command="bench/pg_side_by_side.sh --rounds $rounds --jobs $jobs --timeout-secs $timeout_secs --systems $(IFS=,; echo "${chosen[*]}")"
started=$(date -u +"%Y-%m-%d %H:%M UTC")
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  for system in "${systems[@]}"; do
    run_one "$round" "$system"
  done
done

labels=()
for system in "${systems[@]}"; do labels+=("$system=${label[$system]}"); done
python3 - "$scratch/results.tsv" "$scratch/tables.tsv" "$command" "$started" \
  "$(psql_at postgres "show server_version")" "$("$node" --version)" "$(nproc)" \
  "${labels[@]}" <<'EOF'
import statistics, sys
results_path, tables_path, command, started, pg_version, node_version, cores = sys.argv[1:8]
labels = dict(arg.split("=", 1) for arg in sys.argv[8:])
runs = {}
for line in open(results_path):
    system, round_, *values = line.rstrip("\n").split("\t")
    runs.setdefault(system, []).append([float(v) for v in values])

def cell(values, digits):
    fmt = lambda v: f"{v:,.{digits}f}"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"

print(f"{started}; {command}")
print(f"PostgreSQL {pg_version} on 127.0.0.1, Node {node_version}, {cores} cores, "
      "everything on one machine; medians of the rounds, range in brackets.")
print()
print("| system | submit jobs/s | end-to-end jobs/s | own CPU µs/job | "
      "PostgreSQL CPU µs/job | WAL bytes/job | rows written/job |")
print("|---|---|---|---|---|---|---|")
for system, label in labels.items():
    columns = list(zip(*runs[system]))
    print(f"| {label} | {cell(columns[0], 0)} | {cell(columns[1], 0)} | {cell(columns[2], 1)} | "
          f"{cell(columns[3], 1)} | {cell(columns[4], 0)} | {cell(columns[5], 2)} |")
shared = [int(r[6]) for rs in runs.values() for r in rs if int(r[6])]
print()
print("submit: first submit sent until the last acknowledged; end to end: first submit "
      "sent until every job is done (jobqueue: SUCCEEDED; graphile-worker: its row deleted).")
print("own CPU: jobqueue's server process over the run (not the load generator); "
      "graphile-worker's Node process over the run, which also submits the jobs.")
print("PostgreSQL: every server process, over the whole run after the schema was made "
      "and a CHECKPOINT; WAL from pg_current_wal_lsn(); rows: n_tup_ins + n_tup_upd + "
      "n_tup_del of the run's database. jobqueue-bench tags every job, to count them "
      "(job_tags rows); graphile-worker's jobs carry no tag.")
if shared:
    print(f"warning: in {len(shared)} of {sum(map(len, runs.values()))} runs other databases "
          f"wrote rows ({sum(shared)} in all): those runs' PostgreSQL CPU and WAL include "
          "some of their work.")

tables = {}
for line in open(tables_path):
    system, _, name, per_job = line.rstrip("\n").split("\t")
    tables.setdefault(system, {}).setdefault(name, []).append(float(per_job))
print()
print("Rows written per job by table (median of the rounds; tables with none left out):")
print()
print("| system | table | rows/job |")
print("|---|---|---|")
for system, label in labels.items():
    for name, values in sorted(tables.get(system, {}).items(),
                               key=lambda item: -statistics.median(item[1])):
        median = statistics.median(values)
        if median > 0:
            print(f"| {label} | {name} | {median:.2f} |" if median >= 0.01 else
                  f"| {label} | {name} | <0.01 |")
EOF
