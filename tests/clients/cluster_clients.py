#!/usr/bin/env python3
"""Long-running confluent-kafka clients for the gateway cluster suite (failover, membership,
partition tests).

Usage: cluster_clients.py BOOTSTRAP SCENARIO [options]. The produce and consume scenarios print
one JSON line per event on stdout and stop on the stdin line "stop" (or EOF).

- produce: acks=all producer writing record i (value "i", key "k-i") round-robin over
  --partitions partitions at about --rate records/s, or --count records then exit. Prints
  {"e": "ack", "i", "p", "o"} per acknowledged record, {"e": "nack", "i", "err"} per record the
  client gave up on, and {"e": "done", "acked", "failed"} at the end.
- consume: group member (manual commits, session.timeout.ms 6000) printing {"e": "rec", "i", "p",
  "o"} per record and committing its positions synchronously every --commit-interval seconds:
  {"e": "commit", "offsets": {p: o}, "ts"} on success, {"e": "commit_error", "err"} on failure;
  {"e": "assigned"|"revoked", "partitions", "ts"} on rebalances; on "stop" it commits, closes and
  prints {"e": "done"}. ts is time.monotonic() (CLOCK_MONOTONIC, comparable across processes).
- create: one AdminClient with librdkafka's default timeouts creates --topic with --partitions
  partitions, as an application would, and prints {"e": "created", "elapsed"} or
  {"e": "create_error", "err", "elapsed"} (seconds from the call to its outcome). The client's own
  request timeout decides failure; the script waits on the future only as a backstop.
- admin-session: one long-lived AdminClient (librdkafka defaults) that creates a topic for each
  stdin line "create NAME" (--partitions partitions) and prints the same events with "topic";
  "stop" or EOF ends it with {"e": "done"}.
"""

import argparse
import json
import queue
import sys
import threading
import time

from common import OP_TIMEOUT, fail, log

try:
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as exc:  # pragma: no cover - environment problem, not a test result
    fail("confluent-kafka is not installed (run scripts/test.sh): %s" % exc)


def out(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def stdin_commands():
    commands = queue.Queue()

    def read():
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("stop")

    threading.Thread(target=read, daemon=True).start()
    return commands


def stop_requested(commands):
    try:
        cmd = commands.get_nowait()
    except queue.Empty:
        return False
    if cmd != "stop":
        fail("unknown command %r" % cmd)
    return True


def scenario_produce(bs, args):
    p = Producer({
        "bootstrap.servers": bs,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "retry.backoff.ms": 200,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 2000,
    })
    counts = {"acked": 0, "failed": 0}

    def on_delivery(err, msg, i):
        if err is not None:
            counts["failed"] += 1
            out({"e": "nack", "i": i, "err": str(err)})
        else:
            counts["acked"] += 1
            out({"e": "ack", "i": i, "p": msg.partition(), "o": msg.offset()})

    commands = stdin_commands()
    interval = 1.0 / args.rate
    i = 0
    next_at = time.monotonic()
    while args.count < 0 or i < args.count:
        # With --count the producer runs to completion; stdin only stops an unbounded one.
        if args.count < 0 and stop_requested(commands):
            break
        now = time.monotonic()
        if now < next_at:
            p.poll(next_at - now)
            continue
        next_at += interval
        p.produce(args.topic, key=b"k-%d" % i, value=b"%d" % i, partition=i % args.partitions,
                  on_delivery=lambda err, msg, i=i: on_delivery(err, msg, i))
        i += 1
        p.poll(0)
    left = p.flush(OP_TIMEOUT * 4)
    if left:
        fail("%d records still unacknowledged after flush" % left)
    out({"e": "done", "acked": counts["acked"], "failed": counts["failed"], "sent": i})


def scenario_consume(bs, args):
    c = Consumer({
        "bootstrap.servers": bs,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 2000,
    })
    positions = {}

    def on_assign(_c, parts):
        out({"e": "assigned", "partitions": sorted(tp.partition for tp in parts), "ts": time.monotonic()})

    def on_revoke(_c, parts):
        for tp in parts:
            positions.pop(tp.partition, None)
        out({"e": "revoked", "partitions": sorted(tp.partition for tp in parts), "ts": time.monotonic()})

    def commit():
        if not positions:
            return
        offsets = dict(positions)
        try:
            result = c.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in sorted(offsets.items())],
                              asynchronous=False)
        except KafkaException as exc:
            out({"e": "commit_error", "err": str(exc)})
            return
        errors = [str(tp.error) for tp in result if tp.error is not None]
        if errors:
            out({"e": "commit_error", "err": "; ".join(errors)})
        else:
            out({"e": "commit", "offsets": {str(p): o for p, o in offsets.items()}, "ts": time.monotonic()})

    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    commands = stdin_commands()
    last_commit = time.monotonic()
    while True:
        if stop_requested(commands):
            break
        msg = c.poll(0.1)
        if msg is not None:
            if msg.error():
                log("consume %s: %s" % (args.group, msg.error()))
            else:
                out({"e": "rec", "i": int(msg.value()), "p": msg.partition(), "o": msg.offset()})
                positions[msg.partition()] = msg.offset() + 1
        if time.monotonic() - last_commit >= args.commit_interval:
            commit()
            last_commit = time.monotonic()
    commit()
    c.close()
    out({"e": "done"})


def create_one(admin, topic, partitions):
    started = time.monotonic()
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
    try:
        # Backstop above librdkafka's own admin request timeout (socket.timeout.ms, 60 s).
        future.result(timeout=120)
        out({"e": "created", "topic": topic, "elapsed": time.monotonic() - started})
    except Exception as exc:  # the outcome is the result, reported to the test
        out({"e": "create_error", "topic": topic, "err": str(exc), "elapsed": time.monotonic() - started})


def scenario_create(bs, args):
    create_one(AdminClient({"bootstrap.servers": bs}), args.topic, args.partitions)


def scenario_admin_session(bs, args):
    admin = AdminClient({"bootstrap.servers": bs})
    for line in sys.stdin:
        cmd = line.split()
        if cmd == ["stop"]:
            break
        if len(cmd) != 2 or cmd[0] != "create":
            fail("unknown command %r" % line)
        create_one(admin, cmd[1], args.partitions)
    out({"e": "done"})


SCENARIOS = {
    "produce": scenario_produce,
    "consume": scenario_consume,
    "create": scenario_create,
    "admin-session": scenario_admin_session,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--topic", default="")
    parser.add_argument("--group", default="cluster-group")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--count", type=int, default=-1)
    parser.add_argument("--commit-interval", type=float, default=0.3)
    args = parser.parse_args()
    SCENARIOS[args.scenario](args.bootstrap, args)


if __name__ == "__main__":
    main()
