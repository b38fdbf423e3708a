#!/usr/bin/env python3
"""Kafka client checks of the e2e suite (confluent-kafka, i.e. librdkafka).

  kafka_clients.py roundtrip --bootstrap B --topic T [--count N]
      produce N records (acks=all), read them back from the partitions' start; exit 1 if any
      acknowledged record is missing.
  kafka_clients.py create-topic --bootstrap B --topic T
      one CreateTopics (3 partitions) with the admin client's default timeouts; prints its time.
  kafka_clients.py workload --bootstrap B --topic T --group G --dir D
      until D/stop exists: one producer (acks=all, idempotent) sends numbered records, and one
      group consumer (subscribe, committed offsets) reads them. D/status.json is rewritten every
      second ({"acked", "failed", "consumed", "consumed_new" (the workload's own records),
      "consumed_at"}); each delivery failure is a line of D/failures.log (UTC time, partition,
      error). After D/stop: flush, let the
      group catch up (at most 90 s), then read every partition from its start and write
      D/summary.json; exit 1 when an acknowledged record is missing from that read.
"""
import argparse
import json
import os
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def producer(bootstrap):
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "message.timeout.ms": 120000, "linger.ms": 5})


def read_all(bootstrap, topic, deadline_s=90, positions=None):
    """Values of every record of `topic`, read from each partition's start to its end; with a
    dict `positions`, also fills it with value -> (partition, offset)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-verify-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=30)
        parts = sorted(md.topics[topic].partitions)
        ends = {}
        for p in parts:
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        values, pos = [], {p: 0 for p in parts}
        deadline = time.monotonic() + deadline_s
        progress_at = time.monotonic()
        while any(pos[p] < ends[p] for p in parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_all: positions {pos} short of end offsets {ends}")
            if time.monotonic() - progress_at > 5:
                # No progress: ask for the ends again. The gateway stops counting offsets
                # SeaweedMQ never stored at a partition's end once it has proven them
                # (docs/seaweedmq-mapping.md §3.3), so an end can move down.
                for p in parts:
                    if pos[p] < ends[p]:
                        ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                progress_at = time.monotonic()
            for m in c.consume(500, timeout=1.0):
                progress_at = time.monotonic()
                if m.error():
                    continue
                pos[m.partition()] = m.offset() + 1
                values.append(m.value().decode())
                if positions is not None:
                    positions[values[-1]] = (m.partition(), m.offset())
        return values
    finally:
        c.close()


def roundtrip(a):
    run = uuid.uuid4().hex[:8]
    p = producer(a.bootstrap)
    acked, failed = [], []

    def done(err, msg):
        (failed if err else acked).append(err or msg.value().decode())

    start = time.monotonic()
    for i in range(a.count):
        p.produce(a.topic, key=str(i).encode(), value=f"{run}-{i}".encode(), on_delivery=done)
        p.poll(0)
    p.flush(60)
    produced = time.monotonic() - start
    got = set(v for v in read_all(a.bootstrap, a.topic) if v.startswith(run + "-"))
    missing = [v for v in acked if v not in got]
    print(f"confluent-kafka via {a.bootstrap}: {len(acked)}/{a.count} acknowledged in "
          f"{produced:.1f} s ({len(failed)} failed), {len(got)} read back, {len(missing)} missing")
    return 0 if len(acked) == a.count and not missing else 1


def create_topic(a):
    """One CreateTopics with the admin client's default timeouts; prints how long it took."""
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    start = time.monotonic()
    futures = admin.create_topics([NewTopic(a.topic, num_partitions=3)])
    try:
        futures[a.topic].result()
        print(f"CreateTopics {a.topic}: created in {time.monotonic() - start:.1f} s")
        return 0
    except KafkaException as e:
        print(f"CreateTopics {a.topic}: failed after {time.monotonic() - start:.1f} s: {e}")
        return 1


class Workload:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.acked, self.failed, self.consumed = set(), [], set()
        self.consumed_at = 0.0
        self.stop_consumer = threading.Event()
        self.failures_log = open(os.path.join(a.dir, "failures.log"), "a", buffering=1)
        self.failed_partitions = {}

    def on_delivery(self, err, msg):
        with self.lock:
            if err:
                self.failed.append(str(err))
                # One line per failure (time, partition, error), to match against the gateways'
                # and SeaweedMQ's logs.
                self.failures_log.write("%s partition=%s %s\n" % (
                    time.strftime("%H:%M:%S", time.gmtime()) + ("%.3f" % (time.time() % 1))[1:],
                    msg.partition(), err))
                self.failed_partitions[msg.partition()] = self.failed_partitions.get(msg.partition(), 0) + 1
            else:
                self.acked.add(msg.value().decode())

    def produce(self):
        p = producer(self.a.bootstrap)
        i = 0
        while not os.path.exists(os.path.join(self.a.dir, "stop")):
            try:
                p.produce(self.a.topic, key=str(i).encode(), value=f"w-{i}".encode(),
                          on_delivery=self.on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.02)
        p.flush(120)
        return i

    def consume(self):
        c = Consumer({"bootstrap.servers": self.a.bootstrap, "group.id": self.a.group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
        c.subscribe([self.a.topic])
        while not self.stop_consumer.is_set():
            for m in c.consume(500, timeout=0.5):
                if m.error():
                    continue
                with self.lock:
                    self.consumed.add(m.value().decode())
                    self.consumed_at = time.time()
        c.close()

    def write_status(self):
        with self.lock:
            status = {"acked": len(self.acked), "failed": len(self.failed),
                      "consumed": len(self.consumed),
                      "consumed_new": sum(1 for v in self.consumed if v.startswith("w-")),
                      "consumed_at": self.consumed_at,
                      "time": time.time()}
        tmp = os.path.join(self.a.dir, "status.json.tmp")
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.rename(tmp, os.path.join(self.a.dir, "status.json"))

    def run(self):
        consumer = threading.Thread(target=self.consume, daemon=True)
        consumer.start()
        ticker_stop = threading.Event()

        def tick():
            while not ticker_stop.wait(1.0):
                self.write_status()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        sent = self.produce()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with self.lock:
                if self.acked <= self.consumed:
                    break
            time.sleep(0.5)
        self.stop_consumer.set()
        consumer.join(30)
        ticker_stop.set()
        self.write_status()
        where, read_error = {}, None
        try:
            stored = set(read_all(self.a.bootstrap, self.a.topic, positions=where))
        except (KafkaException, TimeoutError) as e:
            # The topic cannot be read to its end: still report what the group got.
            read_error, stored = str(e), None
        with self.lock:
            lost = [] if stored is None else sorted(self.acked - stored, key=lambda v: int(v.split("-")[1]))
            unconsumed = sorted(self.acked - self.consumed, key=lambda v: int(v.split("-")[1]))
            summary = {"sent": sent, "acked": len(self.acked), "failed": len(self.failed),
                       "failures": self.failed[:5], "failed_by_partition": self.failed_partitions,
                       "consumed_by_group": len(self.consumed),
                       "acked_not_consumed_by_group": len(unconsumed),
                       "acked_missing_from_topic": len(lost), "missing_examples": lost[:10]}
        if read_error:
            summary["acked_missing_from_topic"] = None
            summary["read_error"] = read_error
        if unconsumed:
            # Where the records the group never got are, and the group's committed offsets there.
            summary["unconsumed_examples"] = [
                "%s at %s:%s" % ((v,) + where.get(v, ("?", "?"))) for v in unconsumed[:10]]
            parts = sorted({where[v][0] for v in unconsumed if v in where})
            c = Consumer({"bootstrap.servers": self.a.bootstrap, "group.id": self.a.group,
                          "enable.auto.commit": False})
            try:
                committed = c.committed([TopicPartition(self.a.topic, p) for p in parts], timeout=30)
                summary["group_committed"] = {tp.partition: tp.offset for tp in committed}
            except KafkaException as e:
                summary["group_committed"] = str(e)
            finally:
                c.close()
        with open(os.path.join(self.a.dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps(summary))
        return 0 if not lost and not read_error else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["roundtrip", "workload", "create-topic"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--group", default="e2e-group")
    ap.add_argument("--dir")
    a = ap.parse_args()
    try:
        if a.command == "create-topic":
            return create_topic(a)
        return roundtrip(a) if a.command == "roundtrip" else Workload(a).run()
    except (KafkaException, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
