#!/usr/bin/env node
// kafkajs over a SASL listener: send records, check the high watermark and the advertised broker.
//
// Usage: node kafkajs_security.js BOOTSTRAP TOPIC MECHANISM USER PASSWORD CA_FILE|- [COUNT]
// MECHANISM is plain, scram-sha-256 or scram-sha-512; CA_FILE enables TLS with that CA. Prints
// one JSON line: {"ok": true, "high": N, "brokers": [[host, port]]} or {"ok": false, "error": ...}.

'use strict';

const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, mechanism, username, password, caFile, countArg] = process.argv.slice(2);
  const count = Number(countArg || 3);
  const kafka = new Kafka({
    clientId: 'kgw-kafkajs-security',
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 30000,
    retry: { retries: 2, initialRetryTime: 100 },
    logLevel: logLevel.NOTHING,
    ssl: caFile === '-' ? false : { ca: [fs.readFileSync(caFile, 'utf-8')] },
    sasl: { mechanism, username, password },
  });
  const producer = kafka.producer();
  const admin = kafka.admin();
  try {
    await producer.connect();
    const messages = [];
    for (let i = 0; i < count; i += 1) messages.push({ value: `sec-${i}`, partition: 0 });
    await producer.send({ topic, messages, acks: -1 });
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets(topic);
    const cluster = await admin.describeCluster();
    const high = Number(offsets.find((o) => o.partition === 0).high);
    console.log(JSON.stringify({ ok: true, high, brokers: cluster.brokers.map((b) => [b.host, b.port]) }));
  } catch (err) {
    console.log(JSON.stringify({ ok: false, error: `${err.name}: ${err.message}` }));
  } finally {
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}

main();
