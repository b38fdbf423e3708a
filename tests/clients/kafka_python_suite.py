#!/usr/bin/env python3
"""kafka-python scenarios against a running gateway.

Usage: kafka_python_suite.py BOOTSTRAP SCENARIO [--topic T] [--count N] [--budget-s S]. Scenarios
assert their expectations (exit 1 with a reason) and print a JSON summary on the last stdout line.
"""

import argparse
import logging
import math
import time

from common import OP_TIMEOUT, check, check_eq, emit, fail, payload, record_key, wait_until

try:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError
except ImportError as exc:  # pragma: no cover - environment problem, not a test result
    fail("kafka-python is not installed (run scripts/test.sh): %s" % exc)


def topics(admin):
    return set(admin.list_topics())


def scenario_roundtrip(bs, args):
    topic, n = args.topic, args.count
    admin = KafkaAdminClient(bootstrap_servers=bs, client_id="kgw-kafka-python",
                             request_timeout_ms=int(OP_TIMEOUT * 1000))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    wait_until(lambda: topic in topics(admin), "%s listed after create_topics" % topic)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        fail("duplicate create_topics succeeded")
    except TopicAlreadyExistsError:
        pass

    producer = KafkaProducer(bootstrap_servers=bs, acks="all", compression_type="gzip", linger_ms=5)
    futures = [producer.send(topic, key=record_key(i), value=payload(i), partition=i % 2,
                             headers=[("i", b"%d" % i)]) for i in range(n)]
    producer.flush(timeout=OP_TIMEOUT)
    metas = [f.get(timeout=OP_TIMEOUT) for f in futures]
    for i, meta in enumerate(metas):
        check_eq((meta.partition, meta.offset), (i % 2, i // 2), "record %d acknowledged position" % i)
    producer.close(timeout=OP_TIMEOUT)

    consumer = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = {}
    deadline = time.monotonic() + OP_TIMEOUT
    while len(got) < n:
        check(time.monotonic() < deadline, "consumed %d of %d records in time" % (len(got), n))
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                got[(tp.partition, r.offset)] = r
    for i in range(n):
        r = got.get((i % 2, i // 2))
        check(r is not None, "record %d missing" % i)
        check_eq(r.key, record_key(i), "key of record %d" % i)
        check(r.value == payload(i), "value of record %d differs" % i)
        check_eq([(k, v) for k, v in r.headers], [("i", b"%d" % i)], "headers of record %d" % i)

    # Seek into the middle of partition 1 and read from there.
    consumer.seek(tps[1], n // 4)
    first = None
    deadline = time.monotonic() + OP_TIMEOUT
    while first is None:
        check(time.monotonic() < deadline, "no record after seek")
        records = consumer.poll(timeout_ms=500).get(tps[1], [])
        first = records[0] if records else None
    check_eq(first.offset, n // 4, "first offset after seek")
    check_eq(consumer.end_offsets(tps), {tps[0]: (n + 1) // 2, tps[1]: n // 2}, "end offsets")
    check_eq(consumer.beginning_offsets(tps), {tps[0]: 0, tps[1]: 0}, "beginning offsets")
    consumer.close()

    admin.delete_topics([topic], timeout_ms=int(OP_TIMEOUT * 1000))
    wait_until(lambda: topic not in topics(admin), "%s gone after delete_topics" % topic)
    admin.close()
    emit({"scenario": "roundtrip", "count": len(got)})


def consume_group(bs, topic, group, n):
    consumer = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100,
                             session_timeout_ms=6000, heartbeat_interval_ms=500)
    got = []
    deadline = time.monotonic() + OP_TIMEOUT * 2
    while len(got) < n:
        check(time.monotonic() < deadline, "group %s consumed %d of %d in time" % (group, len(got), n))
        for tp, records in consumer.poll(timeout_ms=500, max_records=n - len(got)).items():
            got.extend((tp.partition, r.offset, r.key) for r in records)
    consumer.commit()
    committed = {p: consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    consumer.close()
    return got, committed


def scenario_group(bs, args):
    """Group consumer: consume everything, commit, produce more, a new member resumes after the
    committed offsets."""
    topic, n, group = args.topic, args.count, args.topic + "-group"
    admin = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=int(OP_TIMEOUT * 1000))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=bs, acks="all")
    for i in range(n):
        producer.send(topic, key=record_key(i), value=payload(i), partition=i % 2)
    producer.flush(timeout=OP_TIMEOUT)

    first, committed = consume_group(bs, topic, group, n)
    check_eq(sorted(k for _, _, k in first), sorted(record_key(i) for i in range(n)), "first member's records")
    check_eq(committed, {0: (n + 1) // 2, 1: n // 2}, "committed offsets after the first member")

    for i in range(n, 2 * n):
        producer.send(topic, key=record_key(i), value=payload(i), partition=i % 2)
    producer.flush(timeout=OP_TIMEOUT)
    producer.close()
    second, committed = consume_group(bs, topic, group, n)
    check_eq(sorted(k for _, _, k in second), sorted(record_key(i) for i in range(n, 2 * n)),
             "second member resumes after the committed offsets")
    check_eq(committed, {0: n, 1: n}, "committed offsets after the second member")
    admin.close()
    emit({"scenario": "group", "first": len(first), "second": len(second)})


def percentile(ordered, p):
    """Nearest-rank percentile (p in 0..100) of ascending `ordered`."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


def scenario_await_send(bs, args):
    """A client that awaits every request: `count` synchronous sends of one record each
    (`send(...).get()`) by a default `KafkaProducer(acks='all')`, then the records are read back in
    order. Sending stops once `--budget-s` seconds have passed, so a slow acks=all path reports how
    far it got (`acked` < count) instead of running into the test's deadline."""
    topic, n = args.topic, args.count
    admin = KafkaAdminClient(bootstrap_servers=bs, client_id="kgw-kafka-python",
                             request_timeout_ms=int(OP_TIMEOUT * 1000))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    wait_until(lambda: topic in topics(admin), "%s listed after create_topics" % topic)
    admin.close()

    producer = KafkaProducer(bootstrap_servers=bs, acks="all")
    latencies_ms = []
    start = time.monotonic()
    deadline = start + args.budget_s
    for i in range(n):
        if time.monotonic() >= deadline:
            break
        sent = time.monotonic()
        meta = producer.send(topic, key=record_key(i), value=payload(i)).get(timeout=OP_TIMEOUT)
        latencies_ms.append((time.monotonic() - sent) * 1000.0)
        check_eq((meta.partition, meta.offset), (0, i), "send %d acknowledged position" % i)
    elapsed_s = time.monotonic() - start
    producer.close(timeout=OP_TIMEOUT)
    acked = len(latencies_ms)

    # Read back everything acknowledged: offsets 0..acked-1, in order, with their keys and values.
    read = 0
    if acked:
        consumer = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=100)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        read_deadline = time.monotonic() + OP_TIMEOUT * 2
        while read < acked:
            check(time.monotonic() < read_deadline, "read back %d of %d records in time" % (read, acked))
            for r in consumer.poll(timeout_ms=500).get(tp, []):
                check_eq(r.offset, read, "offset of the next record read back")
                check_eq(r.key, record_key(read), "key at offset %d" % read)
                check(r.value == payload(read), "value at offset %d differs" % read)
                read += 1
        consumer.close()

    latencies_ms.sort()

    def ms(x):
        return None if x is None else round(x, 3)

    emit({"scenario": "await-send", "count": n, "acked": acked, "read": read,
          "elapsed_s": round(elapsed_s, 3), "p50_ms": ms(percentile(latencies_ms, 50)),
          "p99_ms": ms(percentile(latencies_ms, 99)), "max_ms": ms(percentile(latencies_ms, 100))})


SCENARIOS = {"roundtrip": scenario_roundtrip, "group": scenario_group, "await-send": scenario_await_send}


def main():
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--topic", default="kafka-python-test")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--budget-s", type=float, default=60.0,
                        help="await-send: stop sending after this many seconds")
    args = parser.parse_args()
    SCENARIOS[args.scenario](args.bootstrap, args)


if __name__ == "__main__":
    main()
