//! acks=all from the gateway's write-ahead log in a three-gateway cluster (issue 13's third
//! failure scenario, docs/seaweedmq-mapping.md §3.3): under an idempotent acks=all producer,
//! `kill -9` the gateway that leads partition 0, then `kill -9` SeaweedMQ's broker and start it
//! again before its flush (SeaweedMQ's default 5 s `-logFlushInterval`), so records acknowledged
//! by the dead gateway exist only in its write-ahead log. Producing must continue on the other
//! gateways, and after the killed gateway is back every acknowledged record must be stored once,
//! at its acknowledged offset, with its bytes.
//!
//! The cluster is started here rather than with `harness::cluster::Cluster`, which runs its
//! gateways on the shared SeaweedMQ (1 s flush, never restarted) without `--seaweedmq-wal`; the
//! nodes are configured the way `Cluster` configures them (one loopback address each, the same
//! `--peers` list) plus the WAL flag, on a private SeaweedMQ with the default flush interval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use tests::harness::client::BackgroundClient;
use tests::harness::cluster::{node_ip, poll_until};
use tests::harness::gateway::free_addr_on;
use tests::harness::phase::note;
use tests::harness::raw::{create_topic, RawClient};
use tests::harness::tokens::Tokens;
use tests::harness::weed::WeedHandle;
use tests::{phase, ClientCommand, Gateway, GatewayOptions};

use crate::durability::{ack_lines, verify};

const TOPIC: &str = "smq-wal-cluster";
/// Gateways in the cluster.
const NODES: i32 = 3;
/// Partitions of the topic (`verify` reads this many).
const PARTITIONS: u32 = 3;
/// Kill cycles (gateway, then broker) per run.
const CYCLES: usize = 3;
/// SeaweedMQ's default `-logFlushInterval`: the broker dies with up to 5 s unflushed.
const DEFAULT_FLUSH_SECONDS: u32 = 5;
/// Acks (all partitions) between disruptions.
const ACKS: usize = 300;
/// Of those, acks of partition 0 (the killed gateway's partition).
const P0_ACKS: usize = 50;
/// Bound of every wait for acks, membership or metadata.
const DEADLINE: Duration = Duration::from_secs(60);
/// `--shutdown-grace-seconds` of every node, as `Cluster` sets it.
const SHUTDOWN_GRACE_SECONDS: u64 = 5;

/// The producer's acks so far: total and per partition.
#[derive(Debug, Default)]
struct Acks {
    total: usize,
    per_partition: BTreeMap<i64, usize>,
}

impl Acks {
    fn count(&mut self, line: &str) {
        if !line.starts_with("{\"i\"") {
            return;
        }
        self.total += 1;
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(p) = v["p"].as_i64() {
                *self.per_partition.entry(p).or_default() += 1;
            }
        }
    }

    fn partition(&self, p: i64) -> usize {
        self.per_partition.get(&p).copied().unwrap_or(0)
    }
}

/// Counts the ack lines the producer has already written (reported before now, so they prove
/// nothing about what follows).
fn drain(producer: &mut BackgroundClient, acks: &mut Acks) {
    while let Some(line) = producer.try_line(Duration::ZERO) {
        acks.count(&line);
    }
}

/// Waits until the producer has reported `ACKS` more acks, `P0_ACKS` more of them on partition 0.
fn wait_progress(producer: &mut BackgroundClient, acks: &mut Acks, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let (total, p0) = (acks.total + ACKS, acks.partition(0) + P0_ACKS);
    let result = producer.wait_for_line(DEADLINE, |line| {
        acks.count(line);
        acks.total >= total && acks.partition(0) >= p0
    });
    result.with_context(|| {
        format!(
            "{what}: producer did not reach {total} acks ({p0} on partition 0); acks per partition {:?}\nproducer stderr:\n{}",
            acks.per_partition,
            producer.stderr()
        )
    })?;
    Ok(started.elapsed())
}

/// Starts node `id` of a `NODES`-node cluster whose peer addresses are `peers`.
fn start_node(
    weed: &WeedHandle,
    tokens: &Tokens,
    id: i32,
    peers: &BTreeMap<i32, std::net::SocketAddr>,
) -> Result<Gateway> {
    let ip = node_ip(id)?;
    let list = peers
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut opts = GatewayOptions::default()
        .bind_ip(ip)
        .arg("--node-id", &id.to_string())
        .arg("--cluster-listen", &peers[&id].to_string())
        .arg("--peers", &list)
        .arg("--shutdown-grace-seconds", &SHUTDOWN_GRACE_SECONDS.to_string())
        .arg("--seaweedmq-wal", "auto");
    if std::env::var_os("RUST_LOG").is_none() {
        opts = opts.env("RUST_LOG", "info,openraft=warn");
    }
    Gateway::start(&format!("smq-wal-cluster-n{id}"), weed.gateway_options(tokens.apply(opts)))
}

/// Waits until every running node's `GET /cluster` names one leader and lists exactly the
/// running nodes as live voters.
fn wait_converged(gws: &mut [Gateway]) -> Result<()> {
    let running: Vec<i32> = (0..NODES)
        .filter(|id| gws[*id as usize].is_running())
        .collect();
    let gws = &*gws;
    poll_until("cluster converged", DEADLINE, || {
        let mut leaders = Vec::new();
        for id in &running {
            let resp = gws[*id as usize].admin_get("/cluster")?;
            ensure!(resp.status == 200, "GET /cluster on node {id}: {} {}", resp.status, resp.body);
            let v: Value = serde_json::from_str(&resp.body)?;
            let live: Vec<i64> = v["members"]
                .as_array()
                .ok_or_else(|| anyhow!("node {id}: no members in {v}"))?
                .iter()
                .filter(|m| m["live"] == true && m["voter"] == true)
                .filter_map(|m| m["node_id"].as_i64())
                .collect();
            let want: Vec<i64> = running.iter().map(|id| i64::from(*id)).collect();
            ensure!(live == want, "node {id} lists live voters {live:?}, want {want:?}");
            leaders.push(v["leader"].as_i64());
        }
        leaders.dedup();
        Ok(matches!(leaders.as_slice(), [Some(_)]).then_some(()))
    })
}

/// The leader every running node's Metadata names for partition 0 of `TOPIC` (all must agree).
fn partition0_leader(gws: &mut [Gateway]) -> Result<i32> {
    let running: Vec<i32> = (0..NODES)
        .filter(|id| gws[*id as usize].is_running())
        .collect();
    let gws = &*gws;
    poll_until("one leader of partition 0", DEADLINE, || {
        let mut leaders = Vec::new();
        for id in &running {
            let md = RawClient::connect(gws[*id as usize].kafka_addr())?.metadata(&[TOPIC])?;
            let t = md.topics.first().ok_or_else(|| anyhow!("node {id}: no topic"))?;
            ensure!(t.error_code == 0, "node {id}: topic error {}", t.error_code);
            let p = t
                .partitions
                .iter()
                .find(|p| p.partition_index == 0)
                .ok_or_else(|| anyhow!("node {id}: no partition 0"))?;
            ensure!(p.error_code == 0, "node {id}: partition 0 error {}", p.error_code);
            leaders.push(p.leader_id.0);
        }
        leaders.dedup();
        Ok(match leaders.as_slice() {
            [l] if running.contains(l) => Some(*l),
            _ => None,
        })
    })
}

#[test]
fn smq_cluster_acks_all_survive_partition_gateway_and_broker_kill9() -> Result<()> {
    let started = Instant::now();
    let mut weed = WeedHandle::start_with_flush_interval(DEFAULT_FLUSH_SECONDS)?;
    phase(format!("start a {NODES}-gateway cluster with --seaweedmq-wal auto (replicated)"));
    let mut peers = BTreeMap::new();
    for id in 0..NODES {
        peers.insert(id, free_addr_on(node_ip(id)?)?);
    }
    // One by one: node 0 initializes the cluster alone, the others join it.
    let tokens = Tokens::new()?;
    let mut gws = Vec::new();
    for id in 0..NODES {
        gws.push(start_node(&weed, &tokens, id, &peers)?);
    }
    wait_converged(&mut gws)?;
    create_topic(gws[0].kafka_addr(), TOPIC, PARTITIONS as i32)?;

    phase("an idempotent acks=all producer streams through the cluster");
    let bootstrap = gws.iter().map(Gateway::bootstrap).collect::<Vec<_>>().join(",");
    let mut producer = ClientCommand::python("confluent_suite.py")
        .arg(&bootstrap)
        .arg("produce-acked")
        .args(["--topic", TOPIC, "--partitions", &PARTITIONS.to_string()])
        .args(["--start", "0", "--count", "10000000", "--continuous", "--idempotent"])
        // librdkafka's default (300 s) rather than the suite's fail-fast 10 s: SeaweedMQ takes
        // about 30 s to assign the partitions again after its broker restarts, and an
        // idempotent producer whose message times out in flight bumps its epoch and sends the
        // rest under new sequence numbers, which no broker (Kafka's included) can deduplicate
        // (runs 5 and 9 of the eleventh session stored 24 and 39 such records twice).
        .args(["--message-timeout-ms", "300000"])
        .spawn()?;
    let mut acks = Acks::default();
    wait_progress(&mut producer, &mut acks, "before the first kill")?;
    for cycle in 0..CYCLES {
        let victim = partition0_leader(&mut gws)?;
        note(format!(
            "cycle {cycle}: {} acks so far ({:?} per partition); partition 0 led by node {victim}",
            acks.total, acks.per_partition
        ));
        phase(format!("cycle {cycle}: kill -9 gateway {victim}, then kill -9 and restart the broker"));
        let kill_at = Instant::now();
        gws[victim as usize].kill9()?;
        let gateway_dead = kill_at.elapsed();
        // The broker is killed right away, well within its flush interval of the last acks.
        ensure!(
            gateway_dead < Duration::from_secs(1),
            "the gateway took {gateway_dead:?} to die"
        );
        weed.kill9_broker_and_restart()?;
        note(format!(
            "cycle {cycle}: broker killed {gateway_dead:?} after the gateway, back after {:?}",
            kill_at.elapsed()
        ));
        drain(&mut producer, &mut acks);
        let took = wait_progress(&mut producer, &mut acks, &format!("cycle {cycle}, gateway {victim} down"))?;
        let moved = partition0_leader(&mut gws)?;
        note(format!(
            "cycle {cycle}: producing continued in {took:?} with node {victim} down; partition 0 now led by node {moved}"
        ));
        phase(format!("cycle {cycle}: restart gateway {victim}"));
        gws[victim as usize].restart()?;
        wait_converged(&mut gws)?;
        drain(&mut producer, &mut acks);
        let took = wait_progress(&mut producer, &mut acks, &format!("cycle {cycle}, gateway {victim} back"))?;
        note(format!("cycle {cycle}: {ACKS} more acks in {took:?} after the restart"));
    }

    phase("stop the producer and verify every acknowledged record");
    producer.kill();
    let _ = producer.wait(Duration::from_secs(30))?;
    let acked = ack_lines(producer.lines().iter().map(String::as_str));
    note(format!("{} records acknowledged", acked.len()));
    let summary = verify(&gws[0], TOPIC, &acked)?;
    note(format!("verified: {summary}"));
    ensure!(summary["duplicates"] == 0, "duplicated records: {summary}");
    note(format!("scenario took {:?}", started.elapsed()));
    Ok(())
}
