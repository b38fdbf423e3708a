//! acks=all on SeaweedMQ is answered from the gateway's write-ahead log (docs/seaweedmq-mapping.md
//! §3.3): these tests kill the processes involved with `kill -9` while an idempotent acks=all
//! producer streams, and check that every acknowledged record is stored once, at its
//! acknowledged offset, with its bytes.

use std::time::Duration;

use anyhow::{ensure, Result};
use tests::harness::cluster::{poll_until, Boot, Cluster};
use tests::harness::phase::note;
use tests::harness::raw::create_topic;
use tests::harness::weed::{shared_cluster, WeedHandle};
use tests::harness::workload::Workload;
use tests::{phase, Gateway, GatewayOptions};

use crate::durability::{ack_lines, producer, verify};

/// Kill cycles per test (the acceptance asks for 20 of each).
const CYCLES: usize = 20;
/// SeaweedMQ's default `-logFlushInterval`: the broker dies with up to 5 s unflushed.
const DEFAULT_FLUSH_SECONDS: u32 = 5;
/// Acks between kills, so every cycle kills with acknowledged records in flight.
const ACKS_PER_CYCLE: usize = 200;
/// Bound of every wait for a membership change and of the workload's progress and drain.
const RECOVERY: Duration = Duration::from_secs(120);

/// Waits until the streaming producer has reported `n` more acks than `seen`.
fn wait_acks(
    streaming: &mut tests::harness::client::BackgroundClient,
    seen: &mut usize,
    n: usize,
) -> Result<()> {
    let target = *seen + n;
    streaming.wait_for_line(Duration::from_secs(180), |line| {
        *seen += usize::from(line.starts_with("{\"i\""));
        *seen >= target
    })?;
    Ok(())
}

#[test]
fn smq_acks_all_records_survive_broker_kill9_cycles() -> Result<()> {
    const TOPIC: &str = "smq-wal-broker-kill";
    let mut weed = WeedHandle::start_with_flush_interval(DEFAULT_FLUSH_SECONDS)?;
    let gw = Gateway::start(
        "smq-wal-broker-kill",
        weed.gateway_options(GatewayOptions::default()),
    )?;
    create_topic(gw.kafka_addr(), TOPIC, 3)?;
    phase("an idempotent acks=all producer streams while the broker is killed");
    let mut streaming = producer(&gw, TOPIC, 0, 10_000_000)
        .args(["--continuous", "--idempotent"])
        // librdkafka's default: a broker restart takes ~30 s to serve again, and a message
        // timing out in flight would make the producer resend under a new epoch.
        .args(["--message-timeout-ms", "300000"])
        .spawn()?;
    let mut seen = 0;
    for cycle in 0..CYCLES {
        wait_acks(&mut streaming, &mut seen, ACKS_PER_CYCLE)?;
        note(format!("cycle {cycle}: {seen} acks so far"));
        weed.kill9_broker_and_restart()?;
    }
    phase("producing continues after the last restart");
    wait_acks(&mut streaming, &mut seen, ACKS_PER_CYCLE)?;
    streaming.kill();
    let _ = streaming.wait(Duration::from_secs(30))?;
    let acked = ack_lines(streaming.lines().iter().map(String::as_str));
    phase("verify every acknowledged record");
    let summary = verify(&gw, TOPIC, &acked)?;
    note(format!("verified: {summary}"));
    ensure!(summary["duplicates"] == 0, "duplicated records: {summary}");
    Ok(())
}

#[test]
fn smq_acks_all_records_survive_gateway_kill9_cycles() -> Result<()> {
    const TOPIC: &str = "smq-wal-gateway-kill";
    let weed = shared_cluster()?;
    let mut gw = Gateway::start(
        "smq-wal-gateway-kill",
        weed.gateway_options(GatewayOptions::default()),
    )?;
    create_topic(gw.kafka_addr(), TOPIC, 3)?;
    let mut acked = Vec::new();
    for cycle in 0..CYCLES {
        let start = u32::try_from(cycle * 1_000_000).unwrap_or(u32::MAX);
        let mut streaming = producer(&gw, TOPIC, start, 1_000_000)
            .args(["--continuous", "--idempotent"])
            .spawn()?;
        let mut seen = 0;
        wait_acks(&mut streaming, &mut seen, ACKS_PER_CYCLE)?;
        gw.kill9()?;
        streaming.kill();
        let _ = streaming.wait(Duration::from_secs(30))?;
        let during = ack_lines(streaming.lines().iter().map(String::as_str));
        note(format!("cycle {cycle}: {} acks before the kill", during.len()));
        acked.extend(during);
        gw.restart()?;
    }
    phase("verify every acknowledged record");
    let summary = verify(&gw, TOPIC, &acked)?;
    note(format!("verified: {summary}"));
    ensure!(summary["duplicates"] == 0, "duplicated records: {summary}");
    Ok(())
}

/// The value of the unlabelled gauge `name` on node `id`'s `/metrics`.
fn gauge(c: &Cluster, id: i32, name: &str) -> Result<Option<f64>> {
    let body = c.admin(id, "GET", "/metrics", None)?.body;
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()))
}

/// Waits until every node in `ids` reports `answering` (1 or 0) for the WAL.
fn wait_answering(c: &Cluster, ids: &[i32], answering: f64) -> Result<()> {
    poll_until(
        &format!("nodes {ids:?} report kafka_gateway_smq_wal_answering {answering}"),
        Duration::from_secs(60),
        || {
            for id in ids {
                if gauge(c, *id, "kafka_gateway_smq_wal_answering")? != Some(answering) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
}

/// Before a second member joins, a gateway that answered acks=all from its WAL alone waits
/// for SeaweedMQ to flush what the WAL holds (no other gateway has a copy of it). With
/// `--seaweedmq-wal alone` it then stops answering from the WAL until it is alone again; with
/// the default `auto` it keeps answering, from the WAL and a copy on the other member. A
/// producer and a group consumer run throughout: every acknowledged record is consumed.
fn wal_answers_through_membership_changes(mode: &str, answering_in_cluster: f64) -> Result<()> {
    let (topic, group) = (format!("walmembers-{mode}"), format!("walmembers-{mode}-group"));
    let mut c = Cluster::start_with_args(
        &format!("wal-{mode}"),
        1,
        false,
        Boot::OneByOne,
        &[("--seaweedmq-wal", mode)],
    )?;
    wait_answering(&c, &[0], 1.0)?;
    create_topic(c.node(0)?.gw.kafka_addr(), &topic, 3)?;
    let wl = Workload::start(&c.bootstrap(), &topic, &group, 3, 50)?;
    wl.progress(40, RECOVERY)?;

    phase("add node 1: node 0 drains its WAL before it is added");
    c.add(1)?;
    c.wait_converged(RECOVERY)?;
    let log = c.node(0)?.gw.log_text();
    let drained = log.find("write-ahead log drained: the member may join");
    let added = log.find("adding cluster member as learner");
    ensure!(
        drained.is_some() && drained < added,
        "node 0 did not drain its WAL before adding node 1"
    );
    wait_answering(&c, &[0, 1], answering_in_cluster)?;
    wl.progress(40, RECOVERY)?;
    if mode == "auto" {
        // The partitions' leaders push their entries to the other member, which keeps them
        // (whole segments stay until rolled, so the gauge stays above zero once copies came).
        poll_until(
            "a member holds write-ahead-log copies",
            Duration::from_secs(60),
            || {
                let mut total = 0.0;
                for id in [0, 1] {
                    total += gauge(&c, id, "kafka_gateway_smq_wal_copies_bytes")?.unwrap_or(0.0);
                }
                Ok((total > 0.0).then_some(()))
            },
        )?;
    }

    phase("remove node 1: node 0 is alone again");
    c.remove(1, 0)?;
    c.wait_converged(RECOVERY)?;
    wait_answering(&c, &[0], 1.0)?;
    wl.progress(40, RECOVERY)?;
    wl.finish(RECOVERY)?;
    Ok(())
}

#[test]
fn alone_mode_answers_from_the_wal_only_while_the_gateway_is_alone() -> Result<()> {
    wal_answers_through_membership_changes("alone", 0.0)
}

#[test]
fn auto_mode_answers_from_the_replicated_wal_through_membership_changes() -> Result<()> {
    wal_answers_through_membership_changes("auto", 1.0)
}
