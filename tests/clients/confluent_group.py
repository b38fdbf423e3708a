#!/usr/bin/env python3
"""confluent-kafka consumer-group scenarios against a running gateway.

Usage: confluent_group.py BOOTSTRAP SCENARIO [options].

- member: a long-running group member. Prints one JSON line per ownership change
  ({"event": "owned", "member", "owned": [partitions]}) and obeys stdin commands:
  "leave" (close the consumer, leaving the group, then exit; EOF does the same).
- consume: subscribe, consume --count records, commit after --commit-after of them (synchronous,
  explicit positions), close without committing the rest; prints what was consumed and committed.
- manual-commit: assign-only consumer commits offsets with metadata and fetches them back.
- admin: AdminClient list/describe/delete groups and list/alter group offsets.
"""

import argparse
import json
import queue
import sys
import threading
import time

from common import OP_TIMEOUT, check, check_eq, emit, fail, log, wait_until

try:
    from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions,
                                 KafkaException, TopicPartition)
    from confluent_kafka.admin import AdminClient
except ImportError as exc:  # pragma: no cover - environment problem, not a test result
    fail("confluent-kafka is not installed (run scripts/test.sh): %s" % exc)


def group_consumer(bs, group, **extra):
    conf = {
        "bootstrap.servers": bs,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    conf.update(extra)
    return Consumer(conf)


def scenario_member(bs, args):
    extra = {"partition.assignment.strategy": args.assignor}
    if args.instance_id:
        extra["group.instance.id"] = args.instance_id
    c = group_consumer(bs, args.group, **extra)
    owned = set()

    def report():
        print(json.dumps({"event": "owned", "member": args.name, "owned": sorted(owned)}), flush=True)

    def on_assign(_consumer, parts):
        owned.update(p.partition for p in parts)
        report()

    def on_revoke(_consumer, parts):
        owned.difference_update(p.partition for p in parts)
        report()

    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    commands = queue.Queue()

    def read_stdin():
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("leave")

    threading.Thread(target=read_stdin, daemon=True).start()
    print(json.dumps({"event": "started", "member": args.name}), flush=True)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and msg.error():
            log("member %s: %s" % (args.name, msg.error()))
        try:
            cmd = commands.get_nowait()
        except queue.Empty:
            continue
        if cmd == "leave":
            c.close()
            print(json.dumps({"event": "left", "member": args.name}), flush=True)
            return
        fail("unknown command %r" % cmd)
    fail("member %s ran past --max-seconds without being told to leave" % args.name)


def scenario_consume(bs, args):
    c = group_consumer(bs, args.group)
    c.subscribe([args.topic])
    consumed, committed = [], {}
    deadline = time.monotonic() + OP_TIMEOUT * 2
    while len(consumed) < args.count:
        check(time.monotonic() < deadline, "consumed %d of %d in time" % (len(consumed), args.count))
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail("consume: %s" % msg.error())
        consumed.append([msg.partition(), msg.offset()])
        if len(consumed) == args.commit_after:
            positions = {}
            for p, o in consumed:
                positions[p] = max(positions.get(p, 0), o + 1)
            offsets = [TopicPartition(args.topic, p, o) for p, o in sorted(positions.items())]
            for tp in c.commit(offsets=offsets, asynchronous=False):
                check(tp.error is None, "commit %s: %s" % (tp, tp.error))
            committed = {str(p): o for p, o in positions.items()}
            fetched = c.committed([TopicPartition(args.topic, p) for p in positions], timeout=OP_TIMEOUT)
            check_eq({str(tp.partition): tp.offset for tp in fetched}, committed, "committed offsets fetched back")
    c.close()
    emit({"scenario": "consume", "consumed": consumed, "committed": committed})


def scenario_manual_commit(bs, args):
    c = group_consumer(bs, args.group)
    tps = [TopicPartition(args.topic, p) for p in range(args.partitions)]
    c.assign(tps)
    offsets = [TopicPartition(args.topic, p, 10 * (p + 1), metadata="meta-%d" % p) for p in range(args.partitions)]
    for tp in c.commit(offsets=offsets, asynchronous=False):
        check(tp.error is None, "manual commit %s: %s" % (tp, tp.error))
    fetched = c.committed(tps, timeout=OP_TIMEOUT)
    got = {tp.partition: (tp.offset, tp.metadata) for tp in fetched}
    want = {p: (10 * (p + 1), "meta-%d" % p) for p in range(args.partitions)}
    check_eq(got, want, "committed offsets and metadata")
    c.close()
    emit({"scenario": "manual-commit", "committed": {str(p): o for p, (o, _) in got.items()}})


def scenario_admin(bs, args):
    admin = AdminClient({"bootstrap.servers": bs})
    group = args.group

    def listed():
        result = admin.list_consumer_groups().result(timeout=OP_TIMEOUT)
        return {g.group_id: g.state for g in result.valid}

    states = wait_until(lambda: listed() if group in listed() else None, "group %s listed" % group)
    check_eq(states[group], ConsumerGroupState.EMPTY, "state of %s" % group)
    only_empty = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(timeout=OP_TIMEOUT)
    check(group not in [g.group_id for g in only_empty.valid], "state filter STABLE listed an empty group")

    desc = admin.describe_consumer_groups([group])[group].result(timeout=OP_TIMEOUT)
    check_eq(desc.state, ConsumerGroupState.EMPTY, "described state")
    check_eq(len(desc.members), 0, "members of an empty group")

    req = ConsumerGroupTopicPartitions(group)
    listed_offsets = admin.list_consumer_group_offsets([req])[group].result(timeout=OP_TIMEOUT)
    before = {tp.partition: tp.offset for tp in listed_offsets.topic_partitions if tp.topic == args.topic}
    check(before, "no committed offsets listed for %s" % group)

    new = [TopicPartition(args.topic, p, 1) for p in sorted(before)]
    altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, new)])[group]
    altered.result(timeout=OP_TIMEOUT)
    after = admin.list_consumer_group_offsets([req])[group].result(timeout=OP_TIMEOUT)
    check_eq({tp.partition: tp.offset for tp in after.topic_partitions if tp.topic == args.topic},
             {p: 1 for p in before}, "offsets after alter_consumer_group_offsets")

    admin.delete_consumer_groups([group])[group].result(timeout=OP_TIMEOUT)
    wait_until(lambda: group not in listed(), "group %s gone after delete" % group)
    emit({"scenario": "admin", "group": group, "partitions": sorted(before)})


SCENARIOS = {
    "member": scenario_member,
    "consume": scenario_consume,
    "manual-commit": scenario_manual_commit,
    "admin": scenario_admin,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--group", default="confluent-group")
    parser.add_argument("--topic", default="group-topic")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--commit-after", type=int, default=-1)
    parser.add_argument("--name", default="m")
    parser.add_argument("--assignor", default="range")
    parser.add_argument("--instance-id")
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args()
    SCENARIOS[args.scenario](args.bootstrap, args)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as exc:
        fail("unexpected Kafka error: %s" % exc)
