#!/usr/bin/env bash
# Benchmarks the gateway and Tansu 0.6.0 (memory engine) side by side on this machine with the
# librdkafka-driven tool in bench/, and prints a markdown table of every run plus ours/tansu ratios.
#
# Usage: scripts/bench.sh            (full matrix, ~5-10 min once built)
#        BENCH_QUICK=1 scripts/bench.sh   (a tenth of the messages: a smoke run)
# Env:   BENCH_PEERS="gateway tansu-memory"  peers to run (default both)
#        BENCH_PARTITIONS=4                   partitions of each bench topic
#        BENCH_OUT=DIR                        where results, logs and data go (default: a tmp dir)
#        BENCH_GATEWAY_BIN=PATH               use this gateway binary instead of building one
# Needs: a Rust toolchain and a C compiler (librdkafka is built from source); installs
# tansu 0.6.0 with cargo when missing.
set -euo pipefail
export RUST_BACKTRACE=0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$(mktemp -d -t kafka-bench.XXXXXX)}"
PEERS="${BENCH_PEERS:-gateway tansu-memory}"
PARTITIONS="${BENCH_PARTITIONS:-4}"
SCALE=1
[[ "${BENCH_QUICK:-0}" == "1" ]] && SCALE=10
GW_PORT=39092
GW_ADMIN_PORT=39644
TANSU_PORT=49092
RESULTS="$OUT/results.jsonl"
FAILURES="$OUT/failures.txt"
mkdir -p "$OUT"
: >"$RESULTS"
: >"$FAILURES"

log() { echo "== $*" >&2; }

ensure_tools() {
  if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
    log "installing a C toolchain (the bench tool builds its bundled librdkafka)"
    apt-get install -y build-essential >/dev/null
  fi
  log "building bench tool"
  cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"
  BENCH="$ROOT/bench/target/release/kafka-bench"
  if [[ -n "${BENCH_GATEWAY_BIN:-}" ]]; then
    GATEWAY="$BENCH_GATEWAY_BIN"
  elif [[ " $PEERS " == *" gateway "* ]]; then
    log "building gateway (release)"
    (cd "$ROOT" && cargo build --release --quiet -p kafka-gateway)
    GATEWAY="$ROOT/target/release/kafka-gateway"
  fi
  if [[ " $PEERS " == *" tansu-memory "* ]]; then
    TANSU="$(command -v tansu || echo "$HOME/.cargo/bin/tansu")"
    if [[ ! -x "$TANSU" ]]; then
      log "installing tansu 0.6.0 (long compile)"
      cargo install tansu --version 0.6.0 --locked --features dynostore
      TANSU="$HOME/.cargo/bin/tansu"
    fi
  fi
}

wait_port() {
  local port=$1 pid=$2 deadline=$((SECONDS + 60))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if ((SECONDS > deadline)); then return 1; fi
    sleep 0.2
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PEER_PID=""
start_peer() {
  local peer=$1 port
  port=$([[ "$peer" == gateway ]] && echo "$GW_PORT" || echo "$TANSU_PORT")
  if ! port_free "$port"; then
    echo "$peer: port $port is already taken by another process" >>"$FAILURES"
    return 1
  fi
  case "$peer" in
    gateway)
      rm -rf "$OUT/gateway-data"
      "$GATEWAY" --listen "127.0.0.1:$GW_PORT" --advertised-listener "127.0.0.1:$GW_PORT" \
        --admin-listen "127.0.0.1:$GW_ADMIN_PORT" --data-dir "$OUT/gateway-data" --fsync always \
        >>"$OUT/gateway.log" 2>&1 &
      PEER_PID=$!
      PEER_BOOTSTRAP="127.0.0.1:$GW_PORT"
      wait_port "$GW_PORT" "$PEER_PID" || return 1
      ;;
    tansu-memory)
      # Tansu reads a .env from its working directory: run it from an empty one.
      mkdir -p "$OUT/tansu"
      (cd "$OUT/tansu" && exec "$TANSU" broker \
        --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --storage-engine memory://tansu/) >>"$OUT/tansu-memory.log" 2>&1 &
      PEER_PID=$!
      PEER_BOOTSTRAP="127.0.0.1:$TANSU_PORT"
      wait_port "$TANSU_PORT" "$PEER_PID" || return 1
      ;;
  esac
  kill -0 "$PEER_PID" 2>/dev/null
}

stop_peer() {
  [[ -n "$PEER_PID" ]] || return 0
  kill -TERM "$PEER_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$PEER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PEER_PID" 2>/dev/null || true
  wait "$PEER_PID" 2>/dev/null || true
  PEER_PID=""
}
trap stop_peer EXIT

LATENCY_SECONDS=$((SCALE > 1 ? 2 : 10))
# scenario name | bench flags
SCENARIOS=(
  "1KiB-acks-all|--message-size 1024 --acks all --messages $((1000000 / SCALE))"
  "100B-acks-all|--message-size 100 --acks all --messages $((3000000 / SCALE))"
  "1KiB-acks-1|--message-size 1024 --acks 1 --messages $((1000000 / SCALE))"
  "1KiB-acks-all-at-100MBps-linger1|--message-size 1024 --acks all --mode produce --linger-ms 1 --produce-rate-limit 100 --duration-seconds $LATENCY_SECONDS"
  "1KiB-acks-all-at-100MBps-linger0|--message-size 1024 --acks all --mode produce --linger-ms 0 --produce-rate-limit 100 --duration-seconds $LATENCY_SECONDS"
)

run_peer() {
  local peer=$1 n=0
  log "starting $peer"
  if ! start_peer "$peer"; then
    echo "$peer: failed to start (see $OUT/$peer.log)" >>"$FAILURES"
    tail -n 20 "$OUT/$peer.log" >>"$FAILURES" 2>/dev/null || true
    stop_peer
    return 0
  fi
  for entry in "${SCENARIOS[@]}"; do
    local name="${entry%%|*}" flags="${entry#*|}"
    n=$((n + 1))
    log "$peer: $name"
    # shellcheck disable=SC2086 # flags are intentionally word-split
    local rc=0
    timeout 900 "$BENCH" run --bootstrap "$PEER_BOOTSTRAP" --topic "bench-$n-$RANDOM" \
      --create-topic "$PARTITIONS" --label "$peer" --scenario "$name" --gateway-pid "$PEER_PID" \
      --results-file "$RESULTS" $flags 2>>"$OUT/bench-$peer.log" || rc=$?
    if ((rc != 0)); then
      {
        echo "$peer / $name: bench failed (exit $rc); bench stderr tail:"
        tail -n 10 "$OUT/bench-$peer.log"
        echo "$peer log tail:"
        tail -n 20 "$OUT/$peer.log" 2>/dev/null
      } >>"$FAILURES"
      if ! kill -0 "$PEER_PID" 2>/dev/null; then
        echo "$peer exited during $name; restarting it" >>"$FAILURES"
        stop_peer
        start_peer "$peer" || { echo "$peer: restart failed" >>"$FAILURES"; return 0; }
      fi
    fi
  done
  stop_peer
}

machine() {
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc)"
  echo "- Memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "- Kernel: $(uname -r); client: librdkafka 2.12.1 (bundled by the rdkafka crate in bench/)"
  echo "- Load average when the run started: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
  echo "- Loopback, one TCP stream: $("$BENCH" loopback --seconds 2 | cut -d: -f2 | xargs)"
  local dd_rate
  dd_rate=$(dd if=/dev/zero of="$OUT/dd.test" bs=1M count=256 oflag=dsync 2>&1 | tail -n1 | awk -F, '{print $NF}' | xargs)
  rm -f "$OUT/dd.test"
  echo "- Sequential 1 MiB O_DSYNC writes in $OUT (dd): $dd_rate"
}

ensure_tools
{
  echo "## Machine"
  machine
  echo
} >"$OUT/report.md"
for peer in $PEERS; do run_peer "$peer"; done
{
  echo "## Results (partitions per topic: $PARTITIONS, scale 1/$SCALE)"
  echo
  "$BENCH" compare --results-file "$RESULTS" --ours gateway --baseline tansu-memory
  echo
  echo "Load average when the run ended: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [[ -s "$FAILURES" ]]; then
    echo
    echo "## Failures"
    echo '```'
    cat "$FAILURES"
    echo '```'
  fi
} >>"$OUT/report.md"
cat "$OUT/report.md"
log "report: $OUT/report.md; logs in $OUT"
