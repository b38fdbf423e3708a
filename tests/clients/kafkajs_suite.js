#!/usr/bin/env node
// kafkajs scenarios against a running gateway.
//
// Usage: node kafkajs_suite.js BOOTSTRAP SCENARIO [TOPIC] [COUNT] [BUDGET_S]. A scenario asserts
// its expectations (exit 1 with a reason on stderr) and prints a JSON summary as its last stdout
// line. kafkajs logs go to stderr so stdout stays machine-readable.

'use strict';

let kafkajs;
try {
  kafkajs = require('kafkajs');
} catch (err) {
  console.error(`FAIL: kafkajs is not installed (run scripts/test.sh): ${err.message}`);
  process.exit(1);
}
const { Kafka, CompressionTypes, logLevel } = kafkajs;

const OP_TIMEOUT_MS = 30000;
// The gateway's storage backend (`local` or `seaweedmq`), set by the Rust test; scenarios assert
// the documented behaviour where the backends differ by design.
const BACKEND = process.env.KGW_TEST_BACKEND || 'local';

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

function checkEq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${what}: got ${a}, want ${e}`);
}

function client(bootstrap) {
  return new Kafka({
    clientId: 'kgw-kafkajs',
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: OP_TIMEOUT_MS,
    retry: { retries: 5, initialRetryTime: 100 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log }) => {
      const { message, ...extra } = log;
      console.error(`[kafkajs ${level} ${namespace}] ${message} ${JSON.stringify(extra)}`);
    },
  });
}

// Deterministic payload of message i (binary, includes zero bytes).
function payload(i) {
  const body = Buffer.alloc(i % 7 === 0 ? 0 : 100 + (i % 13));
  for (let j = 0; j < body.length; j += 1) body[j] = (i * 31 + j * 7) % 256;
  return Buffer.concat([Buffer.from(`js-${i}:`), body]);
}

async function waitUntil(pred, what) {
  const deadline = Date.now() + OP_TIMEOUT_MS;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      if (await pred()) return;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`timed out waiting for ${what} (last error: ${lastErr})`);
}

async function scenarioAdminProduce(bootstrap, topic, count) {
  const kafka = client(bootstrap);
  const admin = kafka.admin();
  await admin.connect();

  checkEq(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }),
    true, 'createTopics of a new topic');
  checkEq(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] }), false,
    'createTopics of an existing topic');
  check((await admin.listTopics()).includes(topic), `${topic} not in listTopics`);
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  checkEq(md.topics[0].partitions.length, 2, 'partition count');

  const results = {};
  for (const [name, opts] of [['plain', {}], ['idempotent', { idempotent: true, maxInFlightRequests: 1 }]]) {
    const producer = kafka.producer({ allowAutoTopicCreation: false, ...opts });
    await producer.connect();
    const messages = [];
    for (let i = 0; i < count; i += 1) {
      messages.push({ key: `k${i}`, value: payload(i), partition: i % 2, headers: { i: `${i}`, run: name } });
    }
    const meta = await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages });
    for (const m of meta) checkEq(m.errorCode, 0, `${name} send error code on partition ${m.partition}`);
    await producer.disconnect();
    results[name] = meta.map((m) => ({ partition: m.partition, baseOffset: m.baseOffset }));
  }

  // Two sends of `count` messages split evenly over 2 partitions.
  const offsets = await admin.fetchTopicOffsets(topic);
  offsets.sort((a, b) => a.partition - b.partition);
  checkEq(offsets.map((o) => [o.partition, o.low, o.high]),
    [[0, '0', `${Math.ceil(count / 2) * 2}`], [1, '0', `${Math.floor(count / 2) * 2}`]],
    'fetchTopicOffsets low/high watermarks');

  // Every record above was stamped "now" by the producer, so the earliest timestamp finds offset 0.
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, 0);
  byTime.sort((a, b) => a.partition - b.partition);
  checkEq(byTime.map((o) => o.offset), ['0', '0'], 'fetchTopicOffsetsByTimestamp(0)');

  if (BACKEND === 'seaweedmq') {
    // SeaweedMQ would re-allocate every partition empty at offset 0: the gateway refuses.
    let refused;
    try {
      await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
    } catch (err) {
      refused = err;
    }
    check(refused !== undefined, 'createPartitions on SeaweedMQ succeeded, want INVALID_REQUEST');
    checkEq(refused.type, 'INVALID_REQUEST', `createPartitions refusal (${refused})`);
    const m = await admin.fetchTopicMetadata({ topics: [topic] });
    checkEq(m.topics[0].partitions.length, 2, 'partition count after the refused createPartitions');
  } else {
    await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
    await waitUntil(async () => {
      const m = await admin.fetchTopicMetadata({ topics: [topic] });
      return m.topics[0].partitions.length === 3;
    }, '3 partitions after createPartitions');
  }

  const configs = await admin.describeConfigs({
    resources: [{ type: 2 /* TOPIC */, name: topic, configNames: ['retention.ms'] }],
    includeSynonyms: false,
  });
  const entry = configs.resources[0].configEntries.find((c) => c.configName === 'retention.ms');
  check(entry !== undefined, 'describeConfigs has no retention.ms');

  await admin.deleteTopics({ topics: [topic], timeout: OP_TIMEOUT_MS });
  await waitUntil(async () => !(await admin.listTopics()).includes(topic), `${topic} gone after deleteTopics`);
  await admin.disconnect();
  console.log(JSON.stringify({ scenario: 'admin-produce', sends: results, ok: true }));
}

// Group consumer round trip: needs the consumer-group APIs (FindCoordinator, JoinGroup, ...).
async function scenarioGroupConsume(bootstrap, topic, count) {
  const kafka = client(bootstrap);
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i += 1) messages.push({ key: `k${i}`, value: payload(i), partition: i % 2 });
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-group`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const seen = new Map();
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      seen.set(message.key.toString(), { partition, offset: message.offset, value: message.value });
      if (seen.size === count) done();
    },
  });
  const timer = setTimeout(() => fail(`group consumer saw ${seen.size} of ${count} in time`), OP_TIMEOUT_MS * 2);
  await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  for (let i = 0; i < count; i += 1) {
    const m = seen.get(`k${i}`);
    check(m !== undefined, `message k${i} not consumed`);
    check(m.value.equals(payload(i)), `value of k${i} differs`);
    checkEq(m.partition, i % 2, `partition of k${i}`);
  }
  console.log(JSON.stringify({ scenario: 'group-consume', count: seen.size }));
}

// Nearest-rank percentile (p in 0..100) of ascending `sorted`.
function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

// A client that awaits every request: `count` sequential `await producer.send()` of one record
// each with acks=-1 and the default producer settings (not idempotent), then the records are read
// back in order. Sending stops once `budgetS` seconds have passed, so a slow acks=all path reports
// how far it got (`acked` < count) instead of running into the test's deadline.
async function scenarioAwaitSend(bootstrap, topic, count, budgetS) {
  const kafka = client(bootstrap);
  const admin = kafka.admin();
  await admin.connect();
  checkEq(await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true }),
    true, 'createTopics of a new topic');
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  const latenciesMs = [];
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(budgetS * 1e9));
  for (let i = 0; i < count && process.hrtime.bigint() < deadline; i += 1) {
    const sent = process.hrtime.bigint();
    const meta = await producer.send({ topic, acks: -1, messages: [{ key: `k${i}`, value: payload(i) }] });
    latenciesMs.push(Number(process.hrtime.bigint() - sent) / 1e6);
    checkEq(meta.map((m) => [m.partition, m.errorCode, m.baseOffset]), [[0, 0, `${i}`]],
      `send ${i} acknowledgement (partition, error code, base offset)`);
  }
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  await producer.disconnect();
  const acked = latenciesMs.length;

  // Read back everything acknowledged: offsets 0..acked-1, in order, with their keys and values.
  let read = 0;
  if (acked > 0) {
    const consumer = kafka.consumer({ groupId: `${topic}-group`, maxWaitTimeInMs: 200 });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let done;
    const finished = new Promise((resolve) => { done = resolve; });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        checkEq([partition, message.offset], [0, `${read}`], 'position of the next record read back');
        checkEq(message.key.toString(), `k${read}`, `key at offset ${read}`);
        check(message.value.equals(payload(read)), `value at offset ${read} differs`);
        read += 1;
        if (read === acked) done();
      },
    });
    const timer = setTimeout(() => fail(`read back ${read} of ${acked} records in time`), OP_TIMEOUT_MS * 2);
    await finished;
    clearTimeout(timer);
    await consumer.disconnect();
  }

  latenciesMs.sort((a, b) => a - b);
  const round = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  console.log(JSON.stringify({
    scenario: 'await-send',
    count,
    acked,
    read,
    elapsed_s: round(elapsedS),
    p50_ms: round(percentile(latenciesMs, 50)),
    p99_ms: round(percentile(latenciesMs, 99)),
    max_ms: round(percentile(latenciesMs, 100)),
  }));
}

const SCENARIOS = {
  'admin-produce': scenarioAdminProduce,
  'group-consume': scenarioGroupConsume,
  'await-send': scenarioAwaitSend,
};

async function main() {
  const [bootstrap, scenario, topic = 'kafkajs-test', countArg = '100', budgetArg = '60'] = process.argv.slice(2);
  const run = SCENARIOS[scenario];
  if (!bootstrap || !run) {
    fail(`usage: kafkajs_suite.js BOOTSTRAP {${Object.keys(SCENARIOS).join('|')}} [TOPIC] [COUNT] [BUDGET_S]`);
  }
  await run(bootstrap, topic, Number(countArg), Number(budgetArg));
}

main().then(() => process.exit(0), (err) => fail(`unexpected error: ${err && err.stack ? err.stack : err}`));
