#!/usr/bin/env bash
# Produce/consume benchmark of two gateway builds on the embedded log (loopback), interleaved:
# before, after, before, after, ... so load on a shared machine hits both alike. Prints every
# row and, per scenario, the median of each build and the after/before ratios.
#
# Usage: BEFORE_BIN=path AFTER_BIN=path scripts/bench-before-after.sh
# Env:   BENCH_ROUNDS=3          rounds (each runs both builds once; odd keeps a median a run)
#        BENCH_PARTITIONS=4      partitions of each bench topic
#        BENCH_OUT=DIR           where results, logs and data go (default: a tmp dir)
#        BENCH_TOOL=path         a built kafka-bench (default: builds bench/ in release)
# Same gateway flags and scenarios as scripts/bench.sh (--fsync always, 4 partitions).
set -euo pipefail
export RUST_BACKTRACE=0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$(mktemp -d -t kafka-bench-ba.XXXXXX)}"
ROUNDS="${BENCH_ROUNDS:-3}"
PARTITIONS="${BENCH_PARTITIONS:-4}"
PORT=39192
ADMIN_PORT=39744
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT"
: >"$RESULTS"
: "${BEFORE_BIN:?set BEFORE_BIN}" "${AFTER_BIN:?set AFTER_BIN}"

log() { echo "== $*" >&2; }

if [[ -n "${BENCH_TOOL:-}" ]]; then
  BENCH="$BENCH_TOOL"
else
  cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"
  BENCH="$ROOT/bench/target/release/kafka-bench"
fi

SCENARIOS=(
  "1KiB-acks-all|--message-size 1024 --acks all --messages 1000000"
  "100B-acks-all|--message-size 100 --acks all --messages 3000000"
  "1KiB-acks-1|--message-size 1024 --acks 1 --messages 1000000"
  "1KiB-acks-all-at-100MBps-linger0|--message-size 1024 --acks all --mode produce --linger-ms 0 --produce-rate-limit 100 --duration-seconds 10"
)

PID=""
stop() {
  [[ -n "$PID" ]] || return 0
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}
trap stop EXIT

start() {
  local bin=$1 label=$2 deadline=$((SECONDS + 60))
  rm -rf "$OUT/data"
  "$bin" --listen "127.0.0.1:$PORT" --advertised-listener "127.0.0.1:$PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --data-dir "$OUT/data" --fsync always \
    >>"$OUT/$label.log" 2>&1 &
  PID=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || { log "$label exited at start"; return 1; }
    ((SECONDS < deadline)) || { log "$label did not listen"; return 1; }
    sleep 0.2
  done
}

{
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc)"
  echo "- Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/report.md"
for round in $(seq 1 "$ROUNDS"); do
  for label in before after; do
    bin=$BEFORE_BIN
    [[ $label == after ]] && bin=$AFTER_BIN
    log "round $round: $label"
    start "$bin" "$label"
    n=0
    for entry in "${SCENARIOS[@]}"; do
      name="${entry%%|*}" flags="${entry#*|}"
      n=$((n + 1))
      # shellcheck disable=SC2086 # flags are intentionally word-split
      timeout 900 "$BENCH" run --bootstrap "127.0.0.1:$PORT" --topic "ba-$round-$n-$RANDOM" \
        --create-topic "$PARTITIONS" --label "$label" --scenario "$name" --gateway-pid "$PID" \
        --results-file "$RESULTS" $flags 2>>"$OUT/bench-$label.log" \
        || echo "$label / $name failed (round $round)" >>"$OUT/report.md"
    done
    stop
  done
done
echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/report.md"
python3 - "$RESULTS" >>"$OUT/report.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = [("produce_mb_s", "prod MB/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("consume_mb_s", "cons MB/s")]
def med(scn, peer, k):
    v = [r[k] for r in rows if r["scenario"] == scn and r["peer"] == peer and r.get(k) is not None]
    return (statistics.median(v), len(v)) if v else (None, 0)
print("\n| scenario | " + " | ".join(f"{n} before | {n} after | after/before" for _, n in keys) + " | runs |")
print("| --- |" + " --- | --- | --- |" * len(keys) + " --- |")
for scn in dict.fromkeys(r["scenario"] for r in rows):
    cells, runs = [], 0
    for k, _ in keys:
        (b, nb), (a, na) = med(scn, "before", k), med(scn, "after", k)
        runs = max(runs, min(nb, na))
        fmt = lambda x: "-" if x is None else f"{x:.3g}"
        cells += [fmt(b), fmt(a), "-" if not (a and b) else f"{a / b:.2f}x"]
    print(f"| {scn} | " + " | ".join(cells) + f" | {runs} |")
PY
cat "$OUT/report.md"
log "results: $RESULTS; logs in $OUT"
