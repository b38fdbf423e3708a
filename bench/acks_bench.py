#!/usr/bin/env python3
"""Producer latency/throughput probes for scripts/bench-acks.sh (confluent-kafka, librdkafka).

  sync       one record at a time: produce() then flush() per record, as Java's send().get()
             does; prints per-record latency percentiles (p50/p90/p99/max).
  pipelined  the Java producer's default profile (acks=all, enable.idempotence=true,
             max.in.flight.requests.per.connection=5, batch.size=16384, linger.ms=5, a 32 MiB
             buffer like buffer.memory) producing as fast as the client accepts for a fixed
             time; prints records/s, MB/s and delivery latency percentiles (produce() call to
             delivery report, so client-queue time included, as kafka-producer-perf-test).
  report     prints a markdown table of a results file written by the two above.

Each run appends one JSON line to --results-file. Every wait is bounded; nothing here asserts
timings. Needs `pip install confluent-kafka`.
"""

import argparse
import json
import math
import sys
import time

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (as kafka-bench computes it)."""
    if not sorted_values:
        return float("nan")
    rank = min(max(math.ceil(len(sorted_values) * q), 1), len(sorted_values))
    return sorted_values[rank - 1]


def latency_fields(latencies_s):
    values = sorted(latencies_s)
    out = {"n": len(values)}
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)):
        out[f"{name}_ms"] = round(percentile(values, q) * 1000.0, 3) if values else None
    out["mean_ms"] = round(sum(values) / len(values) * 1000.0, 3) if values else None
    return out


def create_topic(bootstrap, topic, partitions, timeout_s=30.0):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=timeout_s, request_timeout=timeout_s)
    try:
        futures[topic].result(timeout=timeout_s)
    except Exception as exc:  # an existing topic is reused
        if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    # Wait until the topic's partitions have leaders in the metadata.
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return {p: t.partitions[p].leader for p in sorted(t.partitions)}
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} not ready: {t}")
        time.sleep(0.5)


def payload(size):
    state = 0x9E3779B97F4A7C15
    out = bytearray(size)
    mask = (1 << 64) - 1
    for i in range(size):
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        out[i] = state & 0xFF
    return bytes(out)


def emit(args, record):
    record.update({"label": args.label, "mode": args.command, "acks": args.acks})
    line = json.dumps(record, sort_keys=True)
    print(line, flush=True)
    if args.results_file:
        with open(args.results_file, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def run_sync(args):
    leaders = create_topic(args.bootstrap, args.topic, 1)
    conf = {
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": 0,
        "enable.idempotence": args.idempotence,
        "message.timeout.ms": int(args.record_timeout * 1000),
    }
    producer = Producer(conf)
    value = payload(args.size)
    errors = []
    delivered = []  # (offset, librdkafka's own produce-to-report latency) per acked record

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.offset(), msg.latency()))

    latencies = []
    started = time.monotonic()
    for i in range(args.warmup + args.records):
        t0 = time.perf_counter()
        producer.produce(args.topic, value=value, partition=0, on_delivery=on_delivery)
        remaining = producer.flush(args.record_timeout + 5)
        dt = time.perf_counter() - t0
        if remaining or len(delivered) != i + 1:
            errors.append(f"record {i}: no delivery report within {args.record_timeout + 5} s")
            break
        if i >= args.warmup:
            latencies.append(dt)
        if time.monotonic() - started > args.max_seconds:
            errors.append(f"stopped after {args.max_seconds} s ({len(latencies)} records)")
            break
    record = {"topic": args.topic, "size": args.size, "leader": leaders[0],
              "bootstrap": args.bootstrap, "idempotence": args.idempotence,
              "errors": len(errors), "first_error": errors[0] if errors else None,
              "wall_s": round(time.monotonic() - started, 2),
              "delivered": len(delivered),
              "offsets": [delivered[0][0], delivered[-1][0]] if delivered else None}
    record.update(latency_fields(latencies))
    # librdkafka's own measure (produce() to delivery report), for comparison with the wall clock.
    client = latency_fields([lat for _, lat in delivered[args.warmup:]])
    record["rdkafka_p50_ms"] = client["p50_ms"]
    emit(args, record)
    return 1 if errors else 0


def run_pipelined(args):
    leaders = create_topic(args.bootstrap, args.topic, args.partitions)
    conf = {
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "enable.idempotence": args.idempotence,
        "max.in.flight.requests.per.connection": args.max_in_flight,
        "batch.size": args.batch_size,
        "linger.ms": args.linger_ms,
        "queue.buffering.max.kbytes": args.buffer_kbytes,
        "compression.type": "none",
        "message.timeout.ms": 120000,
    }
    producer = Producer(conf)
    value = payload(args.size)
    state = {"acked": 0, "late": 0, "purged": 0, "failed": 0, "first_error": None}
    latencies = []
    window_end = [float("inf")]

    def on_delivery(err, msg):
        if err is None:
            if time.monotonic() <= window_end[0]:
                state["acked"] += 1
                latencies.append(msg.latency())
            else:
                state["late"] += 1
        elif err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            state["purged"] += 1
        else:
            state["failed"] += 1
            if state["first_error"] is None:
                state["first_error"] = str(err)

    start = time.monotonic()
    window_end[0] = start + args.seconds
    sent = 0
    while True:
        now = time.monotonic()
        if now >= window_end[0]:
            break
        try:
            producer.produce(args.topic, value=value, on_delivery=on_delivery)
            sent += 1
            if sent % 500 == 0:
                producer.poll(0)
        except BufferError:  # buffer full: Java's send() would block here
            producer.poll(0.005)
    # Serve reports that arrived by the window's end, then drop what was never sent and let
    # what is in flight finish (bounded), so the producer closes cleanly.
    producer.poll(0)
    producer.purge(in_queue=True, in_flight=False)
    left = producer.flush(args.drain_seconds)
    acked = state["acked"]
    record = {"topic": args.topic, "size": args.size, "partitions": args.partitions,
              "leaders": sorted(set(leaders.values())), "seconds": args.seconds,
              "idempotence": args.idempotence, "max_in_flight": args.max_in_flight,
              "batch_size": args.batch_size, "linger_ms": args.linger_ms,
              "enqueued": sent, "acked_in_window": acked,
              "acked_after_window": state["late"], "purged_unsent": state["purged"],
              "undelivered_at_exit": left, "failed": state["failed"],
              "first_error": state["first_error"],
              "records_per_s": round(acked / args.seconds, 1),
              "mb_per_s": round(acked * args.size / args.seconds / 1e6, 3)}
    record.update(latency_fields(latencies))
    emit(args, record)
    return 1 if state["failed"] else 0


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def run_report(args):
    rows = [json.loads(line) for line in open(args.results_file, encoding="utf-8") if line.strip()]
    sync = [r for r in rows if r["mode"] == "sync"]
    pipe = [r for r in rows if r["mode"] == "pipelined"]
    if sync:
        print("### Synchronous produce (produce + flush per record), 100 B, 1 partition\n")
        print("| run | acks | records | p50 ms | p90 ms | p99 ms | max ms | mean ms | errors |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in sync:
            print(f"| {r['label']} | {r['acks']} | {r['n']} | {fmt(r['p50_ms'], 2)} | "
                  f"{fmt(r['p90_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['max_ms'], 2)} | "
                  f"{fmt(r['mean_ms'], 2)} | {r['errors']} |")
        print()
    if pipe:
        print("### Java default profile, pipelined, 1 KiB, 6 partitions\n")
        print("| run | acks | records/s | MB/s | p50 ms | p90 ms | p99 ms | max ms | failed |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in pipe:
            print(f"| {r['label']} | {r['acks']} | {fmt(r['records_per_s'])} | "
                  f"{fmt(r['mb_per_s'], 2)} | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | "
                  f"{fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {r['failed']} |")
        by_label = {}
        for r in pipe:
            by_label.setdefault(r["label"], {})[r["acks"]] = r["records_per_s"]
        print()
        for label, v in by_label.items():
            if v.get("all") is not None and v.get("1"):
                print(f"- {label}: acks=all / acks=1 = {v['all'] / v['1']:.2f}x")
        print()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("sync", "pipelined"):
        s = sub.add_parser(name)
        s.add_argument("--bootstrap", required=True)
        s.add_argument("--topic", required=True)
        s.add_argument("--acks", default="all", choices=["all", "1"])
        s.add_argument("--label", default="run")
        s.add_argument("--results-file")
        s.add_argument("--idempotence", type=lambda v: v.lower() in ("1", "true", "yes"),
                       default=(name == "pipelined"))
    s = sub.choices["sync"]
    s.add_argument("--records", type=int, default=500)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--size", type=int, default=100)
    s.add_argument("--record-timeout", type=float, default=30.0)
    s.add_argument("--max-seconds", type=float, default=300.0)
    s = sub.choices["pipelined"]
    s.add_argument("--seconds", type=float, default=20.0)
    s.add_argument("--size", type=int, default=1024)
    s.add_argument("--partitions", type=int, default=6)
    s.add_argument("--max-in-flight", type=int, default=5)
    s.add_argument("--batch-size", type=int, default=16384)
    s.add_argument("--linger-ms", type=int, default=5)
    s.add_argument("--buffer-kbytes", type=int, default=32768)
    s.add_argument("--drain-seconds", type=float, default=10.0)
    r = sub.add_parser("report")
    r.add_argument("--results-file", required=True)
    args = p.parse_args()
    if args.command == "sync":
        if args.acks == "1":
            args.idempotence = False
        return run_sync(args)
    if args.command == "pipelined":
        if args.acks == "1":
            args.idempotence = False  # librdkafka requires acks=all for idempotence
        return run_pipelined(args)
    return run_report(args)


if __name__ == "__main__":
    sys.exit(main())
