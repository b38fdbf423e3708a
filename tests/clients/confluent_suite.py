#!/usr/bin/env python3
"""confluent-kafka (librdkafka) scenarios against a running gateway.

Usage: confluent_suite.py BOOTSTRAP SCENARIO [options]. Each scenario asserts its expectations
(exit 1 with a reason on the first miss) and prints a JSON summary the Rust test checks again.
"""

import argparse
import json
import sys
import time

from common import (BACKEND, OP_TIMEOUT, check, check_eq, emit, fail, log, payload, record_key,
                    wait_until)

try:
    from confluent_kafka import (TIMESTAMP_CREATE_TIME, Consumer, KafkaError, KafkaException,
                                 Producer, TopicPartition)
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, NewPartitions, NewTopic, OffsetSpec)
except ImportError as exc:  # pragma: no cover - environment problem, not a test result
    fail("confluent-kafka is not installed (run scripts/test.sh): %s" % exc)


def admin_client(bs):
    return AdminClient({"bootstrap.servers": bs})


def create_topic(admin, topic, partitions=1, config=None):
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                            config=config or {})])
    futures[topic].result(timeout=OP_TIMEOUT)
    wait_until(lambda: partition_count(admin, topic) == partitions,
               "topic %s with %d partitions in metadata" % (topic, partitions))


def partition_count(admin, topic):
    md = admin.list_topics(topic=None, timeout=OP_TIMEOUT)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def topic_exists(admin, topic):
    return topic in admin.list_topics(timeout=OP_TIMEOUT).topics


def consumer(bs, **extra):
    conf = {
        "bootstrap.servers": bs,
        # librdkafka requires a group id even for assign(); nothing here commits or joins.
        "group.id": "kgw-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def consume_through(bs, topic, partition, end, timeout=OP_TIMEOUT):
    """Reads one partition from offset 0 until a message at or after `end - 1` arrives (by
    offset, not by count: offsets SeaweedMQ counted but never stored are skipped)."""
    if end <= 0:
        return []
    c = consumer(bs)
    c.assign([TopicPartition(topic, partition, 0)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while not out or out[-1].offset() < end - 1:
            if time.monotonic() > deadline:
                last = out[-1].offset() if out else -1
                fail("read %s[%d] up to offset %d of %d within %.0fs"
                     % (topic, partition, last, end - 1, timeout))
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if msg.error().retriable():
                    log("consume %s[%d]: %s (retrying)" % (topic, partition, msg.error()))
                    continue
                fail("consume error: %s" % msg.error())
            if msg.offset() < end:
                out.append(msg)
    finally:
        c.close()
    return out


def consume(bs, topic, partition, start, count, timeout=OP_TIMEOUT):
    """Reads `count` messages of one partition from offset `start` (assign, no group)."""
    c = consumer(bs)
    c.assign([TopicPartition(topic, partition, start)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count:
            if time.monotonic() > deadline:
                fail("consumed %d of %d messages from %s[%d] within %.0fs"
                     % (len(out), count, topic, partition, timeout))
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                fail("consume %s[%d]: %s" % (topic, partition, msg.error()))
            out.append(msg)
    finally:
        c.close()
    return out


def produce_all(producer, records, timeout=OP_TIMEOUT):
    """Produces (topic, partition, key, value, headers, timestamp) tuples; returns delivered msgs."""
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg)

    for topic, partition, key, value, headers, ts in records:
        kwargs = {"partition": partition, "key": key, "value": value, "on_delivery": on_delivery}
        if headers is not None:
            kwargs["headers"] = headers
        if ts is not None:
            kwargs["timestamp"] = ts
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout)
    check(remaining == 0, "%d messages still queued after flush(%.0fs)" % (remaining, timeout))
    check(not errors, "delivery errors: %s" % errors[:5])
    return delivered


def expect_kafka_error(fn, code, what):
    try:
        fn()
    except KafkaException as exc:
        err = exc.args[0]
        check_eq(err.code(), code, "%s error code (%s)" % (what, err))
        return err
    fail("%s succeeded, want error %s" % (what, KafkaError(code).name()))


def describe(admin, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([res])[res].result(timeout=OP_TIMEOUT)


def scenario_admin(bs, args):
    admin = admin_client(bs)
    topic = args.topic
    cfg = {"retention.ms": "3600000", "cleanup.policy": "delete"}

    new = NewTopic(topic, num_partitions=2, replication_factor=1, config=cfg)
    admin.create_topics([new], validate_only=True)[topic].result(timeout=OP_TIMEOUT)
    check(not topic_exists(admin, topic), "validate_only create_topics created %s" % topic)

    create_topic(admin, topic, 2, cfg)
    expect_kafka_error(
        lambda: admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic]
        .result(timeout=OP_TIMEOUT),
        KafkaError.TOPIC_ALREADY_EXISTS, "duplicate create_topics")
    bad = topic + "-badcfg"
    expect_kafka_error(
        lambda: admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1,
                                              config={"retention.ms": "not-a-number"})])[bad]
        .result(timeout=OP_TIMEOUT),
        KafkaError.INVALID_CONFIG, "create_topics with retention.ms=not-a-number")
    check(not topic_exists(admin, bad), "topic with invalid config was created")

    configs = describe(admin, topic)
    check_eq(configs["retention.ms"].value, "3600000", "described retention.ms")
    check_eq(configs["cleanup.policy"].value, "delete", "described cleanup.policy")

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2097152", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([res])[res].result(timeout=OP_TIMEOUT)
    configs = describe(admin, topic)
    check_eq(configs["retention.ms"].value, "7200000", "retention.ms after incremental alter")
    check_eq(configs["max.message.bytes"].value, "2097152", "max.message.bytes after incremental alter")

    res = ConfigResource(ConfigResource.Type.TOPIC, topic,
                         set_config={"retention.ms": "600000", "retention.bytes": "1048576"})
    admin.alter_configs([res])[res].result(timeout=OP_TIMEOUT)
    configs = describe(admin, topic)
    check_eq(configs["retention.ms"].value, "600000", "retention.ms after alter_configs")
    check_eq(configs["retention.bytes"].value, "1048576", "retention.bytes after alter_configs")

    grow = lambda: admin.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=OP_TIMEOUT)
    if BACKEND == "seaweedmq":
        # SeaweedMQ would re-allocate every partition empty at offset 0: the gateway refuses.
        err = expect_kafka_error(grow, KafkaError.INVALID_REQUEST, "create_partitions on SeaweedMQ")
        check("SeaweedMQ" in err.str(), "create_partitions refusal names SeaweedMQ: %s" % err.str())
        check_eq(partition_count(admin, topic), 2, "partition count after the refused create_partitions")
    else:
        grow()
        wait_until(lambda: partition_count(admin, topic) == 4, "4 partitions after create_partitions")

    admin.delete_topics([topic], operation_timeout=OP_TIMEOUT)[topic].result(timeout=OP_TIMEOUT)
    wait_until(lambda: not topic_exists(admin, topic), "%s gone after delete_topics" % topic)
    emit({"scenario": "admin", "topic": topic, "ok": True})


def scenario_codecs(bs, args):
    admin = admin_client(bs)
    counts = {}
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        topic = "%s-%s" % (args.topic, codec)
        create_topic(admin, topic, 1)
        producer = Producer({"bootstrap.servers": bs, "compression.type": codec, "acks": "all",
                             "linger.ms": 5})
        n = args.count
        records = [(topic, 0, record_key(i), payload(i), [("codec", codec.encode()), ("i", b"%d" % i)],
                    None) for i in range(n)]
        produce_all(producer, records)
        msgs = consume(bs, topic, 0, 0, n)
        for i, msg in enumerate(msgs):
            check_eq(msg.offset(), i, "%s offset" % codec)
            check_eq(msg.key(), record_key(i), "%s key at offset %d" % (codec, i))
            check(msg.value() == payload(i), "%s value at offset %d differs" % (codec, i))
            check_eq(msg.headers(), [("codec", codec.encode()), ("i", b"%d" % i)],
                     "%s headers at offset %d" % (codec, i))
        counts[codec] = len(msgs)
    emit({"scenario": "codecs", "counts": counts})


def scenario_records(bs, args):
    """Null vs empty keys/values, headers, explicit timestamps, offsets_for_times, list offsets,
    delete_records."""
    admin = admin_client(bs)
    topic = args.topic
    create_topic(admin, topic, 1)
    base = 1_700_000_000_000
    cases = [
        (None, None, None),
        (b"", b"", None),
        (b"k", None, None),
        (None, b"v", None),
        (b"", None, []),
        (b"key", b"value", [("h1", b"v1"), ("h1", b"dup"), ("empty", b""), ("nullh", None)]),
        (b"\x00\xff", b"\x00" * 3, [("bin", bytes(range(256)))]),
    ]
    # Not monotonic on purpose: offset 2 carries the maximum timestamp.
    stamps = [base + i * 1000 for i in range(len(cases))]
    stamps[2] = base + 1_000_000
    producer = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 0})
    for i, (key, value, headers) in enumerate(cases):
        # One produce per batch, so batch-level timestamp handling is exercised per record.
        produce_all(producer, [(topic, 0, key, value, headers, stamps[i])])
    msgs = consume(bs, topic, 0, 0, len(cases))
    for i, msg in enumerate(msgs):
        key, value, headers = cases[i]
        check_eq(msg.key(), key, "key at offset %d" % i)
        check_eq(msg.value(), value, "value at offset %d" % i)
        check_eq(msg.headers(), headers or None, "headers at offset %d" % i)
        check_eq(msg.timestamp(), (TIMESTAMP_CREATE_TIME, stamps[i]), "timestamp at offset %d" % i)

    def first_at_or_after(ts):
        return next((i for i, s in enumerate(stamps) if s >= ts), -1)

    c = consumer(bs)
    queries = [base - 1, base + 1, base + 2500, base + 1_000_000, base + 5_000_000]
    for ts in queries:
        # One query per call: a partition may appear only once in a ListOffsets request.
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=OP_TIMEOUT)
        check(tp.error is None, "offsets_for_times(%d) error %s" % (ts, tp.error))
        check_eq(tp.offset, first_at_or_after(ts), "offsets_for_times(%d)" % ts)
    check_eq(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=OP_TIMEOUT),
             (0, len(cases)), "watermarks before delete_records")

    tp = TopicPartition(topic, 0)
    listed = {name: admin.list_offsets({tp: spec})[tp].result(timeout=OP_TIMEOUT)
              for name, spec in (("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest()),
                                 ("max_timestamp", OffsetSpec.max_timestamp()))}
    check_eq(listed["earliest"].offset, 0, "list_offsets earliest")
    check_eq(listed["latest"].offset, len(cases), "list_offsets latest")
    check_eq(listed["max_timestamp"].offset, 2, "list_offsets max_timestamp offset")
    check_eq(listed["max_timestamp"].timestamp, stamps[2], "list_offsets max_timestamp timestamp")

    deleted = admin.delete_records([TopicPartition(topic, 0, 3)])
    result = list(deleted.values())[0].result(timeout=OP_TIMEOUT)
    check_eq(result.low_watermark, 3, "delete_records low watermark")
    check_eq(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=OP_TIMEOUT),
             (3, len(cases)), "watermarks after delete_records")
    check_eq(admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(timeout=OP_TIMEOUT).offset,
             3, "list_offsets earliest after delete_records")
    c.close()
    # Reading from the deleted range resets (auto.offset.reset=earliest) to the new log start.
    after = consume(bs, topic, 0, 0, len(cases) - 3)
    check_eq([m.offset() for m in after], list(range(3, len(cases))), "offsets read after delete_records")
    emit({"scenario": "records", "count": len(cases), "low_watermark": 3})


def scenario_idempotent(bs, args):
    admin = admin_client(bs)
    topic = args.topic
    create_topic(admin, topic, 2)
    producer = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 2, "batch.num.messages": 50,
                         "max.in.flight.requests.per.connection": 5})
    n = args.count
    records = [(topic, i % 2, b"%d" % i, b"idem-%d" % i, None, None) for i in range(n)]
    produce_all(producer, records)
    per_partition = {}
    for p in (0, 1):
        want = [i for i in range(n) if i % 2 == p]
        msgs = consume(bs, topic, p, 0, len(want))
        got = [int(m.key()) for m in msgs]
        check_eq(got, want, "partition %d keys in order, exactly once" % p)
        check_eq([m.offset() for m in msgs], list(range(len(want))), "partition %d offsets" % p)
        for m in msgs:
            check_eq(m.value(), b"idem-" + m.key(), "value of key %s" % m.key())
        c = consumer(bs)
        check_eq(c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT)[1], len(want),
                 "partition %d high watermark (no duplicates appended)" % p)
        c.close()
        per_partition[str(p)] = len(msgs)
    emit({"scenario": "idempotent", "per_partition": per_partition})


def scenario_produce_acked(bs, args):
    """Produces records key-<i>/payload(i), i in [start, start+count), round-robin over partitions with acks=all and prints one
    JSON line per acknowledged record: {"i", "p", "o"}. With --continuous it keeps producing up to
    --count records paced by delivery, so a test can kill the gateway mid-stream."""
    config = {"bootstrap.servers": bs, "acks": "all", "linger.ms": 1,
              "enable.idempotence": args.idempotent}
    if args.message_timeout_ms is None:
        # Fail fast: a test counts what was acknowledged before a crash.
        config.update({"message.timeout.ms": 10000, "retries": 2})
    else:
        # An idempotent producer whose message times out in flight bumps its epoch and resends
        # the rest under new sequence numbers, which no broker can deduplicate: a test of
        # duplicates across outages longer than 10 s keeps its timeouts above them.
        config["message.timeout.ms"] = args.message_timeout_ms
    producer = Producer(config)
    acked, failed = [0], [0]

    def on_delivery(err, msg):
        if err:
            failed[0] += 1
            return
        acked[0] += 1
        i = int(msg.key()[len(b"key-"):])
        print(json.dumps({"i": i, "p": msg.partition(), "o": msg.offset()}), flush=True)

    for i in range(args.start, args.start + args.count):
        while True:
            try:
                producer.produce(args.topic, partition=i % args.partitions, key=record_key(i),
                                 value=payload(i), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        # Keep a bounded number in flight so acks stream out while the gateway runs.
        while len(producer) > 200:
            producer.poll(0.05)
    remaining = producer.flush(OP_TIMEOUT)
    if not args.continuous:
        check(remaining == 0 and failed[0] == 0,
              "%d queued, %d failed after flush" % (remaining, failed[0]))
    emit({"scenario": "produce-acked", "acked": acked[0], "failed": failed[0], "done": True})


def scenario_verify_acked(bs, args):
    """Reads every partition up to its highest acknowledged offset and checks each record listed
    in --acked-file (JSON lines from produce-acked) is at its acknowledged offset with byte-exact
    key and value, and that no key is stored twice. Every copy of an acknowledged record lies at
    or below that offset (a retry is acknowledged at its own, later offset); records after it
    were never acknowledged, and SeaweedMQ 4.48 can leave the last of those unreadable
    (docs/seaweedmq-mapping.md, trailing holes)."""
    acked = []
    with open(args.acked_file) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{") and '"i"' in line:
                acked.append(json.loads(line))
    c = consumer(bs)
    highs = {}
    def watermarks(p):
        # Retriable errors (a gateway recovering a partition after a broker restart answers
        # KAFKA_STORAGE_ERROR) are retried, as a consumer's own offset lookups are.
        try:
            return c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=OP_TIMEOUT)
        except KafkaException as exc:
            if exc.args and exc.args[0].retriable():
                log("watermarks of partition %d: %s (retrying)" % (p, exc))
                return None
            raise

    for p in range(args.partitions):
        low, high = wait_until(lambda: watermarks(p), "partition %d watermarks" % p)
        check_eq(low, 0, "partition %d log start" % p)
        highs[p] = high
    c.close()
    # librdkafka can report a delivery without an offset (None): checked below by key, among
    # the records read, not at an offset.
    unplaced = [rec for rec in acked if rec["o"] is None]
    acked = [rec for rec in acked if rec["o"] is not None]
    last_acked = {}
    for rec in acked:
        last_acked[rec["p"]] = max(last_acked.get(rec["p"], -1), rec["o"])
    by_pos = {}
    for p, high in highs.items():
        end = min(high, last_acked.get(p, -1) + 1)
        for msg in consume_through(bs, args.topic, p, end, timeout=OP_TIMEOUT * 2):
            by_pos[(p, msg.offset())] = (msg.key(), msg.value())
    for rec in acked:
        pos = (rec["p"], rec["o"])
        check(pos in by_pos, "acknowledged record %s missing (high watermark %d)" % (rec, highs[rec["p"]]))
        key, value = by_pos[pos]
        check_eq(key, record_key(rec["i"]), "key at %s" % (pos,))
        check(value == payload(rec["i"]), "value at %s differs from acknowledged record %d" % (pos, rec["i"]))
    keys = [key for key, _ in by_pos.values()]
    where = {}
    for pos, (key, _) in sorted(by_pos.items()):
        where.setdefault(key, []).append(pos)
    acked_at = {(rec["p"], rec["o"]) for rec in acked}
    # Stored once if read at all; one lying after the highest acknowledged offset is not read.
    unplaced_found = sum(1 for rec in unplaced if record_key(rec["i"]) in where)
    for rec in unplaced:
        check(len(where.get(record_key(rec["i"]), [])) <= 1, "record %s stored twice" % rec)
    examples = [{"key": k.decode(errors="replace"), "at": v, "acked": [p in acked_at for p in v]}
                for k, v in where.items() if len(v) > 1][:5]
    emit({"scenario": "verify-acked", "checked": len(acked), "stored": len(by_pos),
          "acked_without_offset": len(unplaced), "acked_without_offset_found": unplaced_found,
          "duplicates": len(keys) - len(set(keys)), "duplicate_examples": examples,
          "high_watermarks": {str(p): h for p, h in highs.items()}})


SCENARIOS = {
    "admin": scenario_admin,
    "codecs": scenario_codecs,
    "records": scenario_records,
    "idempotent": scenario_idempotent,
    "produce-acked": scenario_produce_acked,
    "verify-acked": scenario_verify_acked,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--topic", default="confluent-test")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--continuous", action="store_true")
    parser.add_argument("--idempotent", action="store_true")
    parser.add_argument("--message-timeout-ms", type=int)
    parser.add_argument("--acked-file")
    args = parser.parse_args()
    SCENARIOS[args.scenario](args.bootstrap, args)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as exc:
        fail("unexpected Kafka error: %s" % exc)
