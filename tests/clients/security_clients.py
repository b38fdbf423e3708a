#!/usr/bin/env python3
"""Produce, read back and list brokers over a secured listener with confluent-kafka or kafka-python.

Usage: security_clients.py LIB BOOTSTRAP TOPIC CONFIG_JSON [COUNT]
  LIB: confluent | kafka-python; CONFIG_JSON: the client's own security settings (its own key
  names; for confluent, "oauth_token" is handed to OAUTHBEARER through oauth_cb). Prints one JSON line: {"ok": true, "read": [...], "brokers": [[host, port], ...]} after
  producing COUNT records to partition 0 and reading them back, or {"ok": false, "error": ...} when
  the client could not connect or authenticate (the Rust test decides which outcome it expects).
"""

import json
import sys
import time

from common import OP_TIMEOUT, emit, log


def confluent(bootstrap, topic, cfg, count):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    errors = []
    conf = dict(cfg, **{"bootstrap.servers": bootstrap, "error_cb": lambda e: errors.append(str(e))})
    token = conf.pop("oauth_token", None)
    if token is not None:  # OAUTHBEARER with a JWT the Rust test signed
        conf["oauth_cb"] = lambda _config: (token, time.time() + 600)
    producer = Producer(conf)
    try:
        md = producer.list_topics(timeout=10)
    except KafkaException as exc:
        producer.poll(1)  # serves the error callbacks queued meanwhile (the authentication error)
        return {"ok": False, "error": str(exc), "errors": sorted(set(errors))[:5]}
    brokers = sorted([b.host, b.port] for b in md.brokers.values())
    failed = []
    for i in range(count):
        producer.produce(topic, value=b"sec-%d" % i, partition=0,
                         on_delivery=lambda err, msg: err and failed.append(str(err)))
    left = producer.flush(OP_TIMEOUT)
    if left or failed:
        return {"ok": False, "error": "undelivered %d, failed %r" % (left, failed), "errors": errors}
    consumer = Consumer(dict(conf, **{"group.id": "sec-" + topic, "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    read = []
    deadline = time.monotonic() + OP_TIMEOUT
    while len(read) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            read.append(msg.value().decode())
    consumer.close()
    return {"ok": True, "read": read, "brokers": brokers, "errors": errors}


def kafka_python(bootstrap, topic, cfg, count):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError

    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, **cfg)
        for f in [producer.send(topic, b"sec-%d" % i, partition=0) for i in range(count)]:
            f.get(timeout=OP_TIMEOUT)
        brokers = sorted([b.host, b.port] for b in producer._metadata.brokers())
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **cfg)
    except KafkaError as exc:
        return {"ok": False, "error": repr(exc)}
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    read = []
    deadline = time.monotonic() + OP_TIMEOUT
    while len(read) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            read.extend(r.value.decode() for r in records)
    consumer.close()
    return {"ok": True, "read": read, "brokers": brokers}


def main():
    lib, bootstrap, topic, cfg = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    log("%s on %s with %s" % (lib, bootstrap, sorted(k for k in cfg if "pass" not in k)))
    run = {"confluent": confluent, "kafka-python": kafka_python}[lib]
    emit(run(bootstrap, topic, cfg, count))


if __name__ == "__main__":
    main()
