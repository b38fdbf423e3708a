#!/usr/bin/env python3
"""kafka-python pinned to an old protocol (`api_version`) against a running gateway.

Usage: legacy_suite.py BOOTSTRAP --api-version 0.10.1 [--topic T] [--count N].

With api_version=(0, 10, 1) kafka-python speaks the Kafka 0.10.1 protocol: Produce v2 with message
format v1 (gzip wrappers), Fetch v3 (message sets), ListOffsets v1, CreateTopics v0-1,
OffsetCommit v2 / OffsetFetch v1 and the v0 group APIs; with (0, 11) Produce v3 / Fetch v4-5 and
v2 batches. The scenario creates a topic, produces keyed records (half gzip), consumes half of
them in a group, commits, closes, and checks a second consumer of the group resumes exactly at
the committed offsets. Prints a JSON summary on the last stdout line.
"""

import argparse
import time

from common import OP_TIMEOUT, check, check_eq, emit, fail, payload, record_key, wait_until

try:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
except ImportError as exc:  # pragma: no cover - environment problem, not a test result
    fail("kafka-python is not installed (run scripts/test.sh): %s" % exc)


def consume(consumer, want, what):
    got = []
    deadline = time.monotonic() + OP_TIMEOUT
    while len(got) < want:
        check(time.monotonic() < deadline, "%s: consumed %d of %d in time" % (what, len(got), want))
        for records in consumer.poll(timeout_ms=500, max_records=want - len(got)).values():
            got.extend(records)
    return got


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("--api-version", required=True)
    parser.add_argument("--topic", default="legacy")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    api = tuple(int(p) for p in args.api_version.split("."))
    bs, topic, n, group = args.bootstrap, args.topic, args.count, args.topic + "-group"

    admin = KafkaAdminClient(bootstrap_servers=bs, api_version=api, client_id="kgw-legacy",
                             request_timeout_ms=int(OP_TIMEOUT * 1000))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    wait_until(lambda: topic in set(admin.list_topics()), "%s listed after create_topics" % topic)
    admin.close()

    sent = {}
    for codec in (None, "gzip"):
        producer = KafkaProducer(bootstrap_servers=bs, api_version=api, acks="all",
                                 compression_type=codec, linger_ms=5)
        futures = []
        for i in range(len(sent), len(sent) + n // 2):
            futures.append((i, producer.send(topic, key=record_key(i), value=payload(i, 50),
                                             partition=i % 2)))
        producer.flush(timeout=OP_TIMEOUT)
        for i, f in futures:
            meta = f.get(timeout=OP_TIMEOUT)
            sent[(meta.partition, meta.offset)] = i
        producer.close(timeout=OP_TIMEOUT)
    check_eq(len(sent), n, "records acknowledged")
    for p in (0, 1):
        offsets = sorted(o for (part, o) in sent if part == p)
        check_eq(offsets, list(range(len(offsets))), "dense offsets of partition %d" % p)

    first = KafkaConsumer(topic, bootstrap_servers=bs, api_version=api, group_id=group,
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          fetch_max_wait_ms=100, session_timeout_ms=10000)
    half = consume(first, n // 2, "first consumer")
    for r in half:
        check_eq(r.value, payload(sent[(r.partition, r.offset)], 50), "value at %d/%d" % (r.partition, r.offset))
        check_eq(r.key, record_key(sent[(r.partition, r.offset)]), "key at %d/%d" % (r.partition, r.offset))
    first.commit()
    committed = {p: first.committed(TopicPartition(topic, p)) for p in (0, 1)}
    first.close()

    second = KafkaConsumer(topic, bootstrap_servers=bs, api_version=api, group_id=group,
                           enable_auto_commit=False, auto_offset_reset="earliest",
                           fetch_max_wait_ms=100, session_timeout_ms=10000)
    rest = consume(second, n - len(half), "second consumer")
    seen = {(r.partition, r.offset) for r in half}
    resumed = {(r.partition, r.offset) for r in rest}
    check(not (seen & resumed), "the second consumer re-read committed records: %r" % sorted(seen & resumed)[:5])
    check_eq(seen | resumed, set(sent), "every record consumed once across the two consumers")
    for p in (0, 1):
        first_offsets = [r.offset for r in rest if r.partition == p]
        if first_offsets:
            check_eq(min(first_offsets), committed[p] or 0, "partition %d resumed at its commit" % p)
    second.close()
    emit({"api_version": args.api_version, "count": n, "first": len(half), "resumed": len(rest),
          "committed": {str(p): committed[p] for p in (0, 1)}})


if __name__ == "__main__":
    main()
