//! No acknowledged record is lost: across a graceful restart, and across `kill -9` with
//! `--fsync always`, on both storage backends (on SeaweedMQ the broker holds the records and the
//! gateway's own state is its data directory).
//!
//! A librdkafka producer (acks=all) prints one JSON line per delivery report; the test keeps those
//! lines as the set of acknowledged records, restarts the gateway on the same data directory, and a
//! verifier checks each one is at its acknowledged offset with byte-exact key and value.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tests::harness::phase::note;
use tests::harness::raw::{create_topic, RawClient};
use tests::{backend_tests, phase, Backend, ClientCommand, Gateway, GatewayOptions};

const PARTITIONS: u32 = 3;

backend_tests!(
    graceful_restart_keeps_every_acknowledged_record,
    kill9_with_fsync_always_loses_no_acknowledged_record,
);

/// A `produce-acked` run of `count` records from index `start` into `topic`.
pub(crate) fn producer(gw: &Gateway, topic: &str, start: u32, count: u32) -> ClientCommand {
    ClientCommand::python("confluent_suite.py")
        .arg(gw.bootstrap())
        .arg("produce-acked")
        .args(["--topic", topic, "--partitions", &PARTITIONS.to_string()])
        .args(["--start", &start.to_string(), "--count", &count.to_string()])
}

/// Acknowledgement lines (`{"i", "p", "o"}`) among a producer's stdout lines.
pub(crate) fn ack_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| l.starts_with("{\"i\""))
        .map(str::to_owned)
        .collect()
}

/// Writes the acknowledged records to a file and runs the verifier; returns its summary.
pub(crate) fn verify(gw: &Gateway, topic: &str, acked: &[String]) -> Result<Value> {
    let path = gw.scratch_dir().join("acked.jsonl");
    std::fs::write(&path, acked.join("\n") + "\n").context("write acked records")?;
    let out = ClientCommand::python("confluent_suite.py")
        .arg(gw.bootstrap())
        .arg("verify-acked")
        .args(["--topic", topic, "--partitions", &PARTITIONS.to_string()])
        .arg("--acked-file")
        .arg(&path)
        .timeout(Duration::from_secs(240))
        .run_json()?;
    let checked = out["checked"].as_u64().unwrap_or(0) + out["acked_without_offset"].as_u64().unwrap_or(0);
    ensure!(
        checked == acked.len() as u64,
        "verifier checked {checked} of {} acked records: {out}",
        acked.len()
    );
    Ok(out)
}

/// Partition count of `name` in the gateway's metadata.
pub(crate) fn topic_partitions(gw: &Gateway, name: &str) -> Result<usize> {
    let md = RawClient::connect(gw.kafka_addr())?.metadata(&[name])?;
    let topic = md.topics.first().context("topic in metadata")?;
    ensure!(
        topic.error_code == 0,
        "metadata error {} for {name}",
        topic.error_code
    );
    Ok(topic.partitions.len())
}

fn graceful_restart_keeps_every_acknowledged_record(backend: Backend) -> Result<()> {
    const TOPIC: &str = "durable-restart";
    let mut gw = backend.gateway("restart", GatewayOptions::default())?;
    create_topic(gw.kafka_addr(), TOPIC, PARTITIONS as i32)?;

    phase("produce 1500 records with acks=all");
    let out = producer(&gw, TOPIC, 0, 1500).run()?;
    let mut acked = ack_lines(out.lines());
    ensure!(acked.len() == 1500, "{} of 1500 acknowledged", acked.len());

    gw.stop()?;
    gw.restart()?;
    phase("topic and its partitions survive the restart");
    ensure!(
        topic_partitions(&gw, TOPIC)? == PARTITIONS as usize,
        "partition count after restart"
    );
    phase("verify after restart");
    let summary = verify(&gw, TOPIC, &acked)?;
    ensure!(
        summary["stored"] == 1500,
        "stored records after restart: {summary}"
    );

    phase("produce 500 more: offsets continue after the restored log end");
    let out = producer(&gw, TOPIC, 1500, 500).run()?;
    acked.extend(ack_lines(out.lines()));
    gw.restart()?;
    let summary = verify(&gw, TOPIC, &acked)?;
    ensure!(
        summary["stored"] == 2000,
        "stored records after second restart: {summary}"
    );
    Ok(())
}

fn kill9_with_fsync_always_loses_no_acknowledged_record(backend: Backend) -> Result<()> {
    const TOPIC: &str = "durable-kill9";
    let mut gw = backend.gateway("kill9", GatewayOptions::default().fsync("always"))?;
    create_topic(gw.kafka_addr(), TOPIC, PARTITIONS as i32)?;

    phase("produce 500 records to completion, then kill -9 and restart");
    let out = producer(&gw, TOPIC, 0, 500).run()?;
    let mut acked = ack_lines(out.lines());
    ensure!(acked.len() == 500, "{} of 500 acknowledged", acked.len());
    gw.kill9()?;
    gw.restart()?;
    verify(&gw, TOPIC, &acked)?;

    phase("kill -9 while a producer is streaming");
    let mut streaming = producer(&gw, TOPIC, 500, 1_000_000).arg("--continuous").spawn()?;
    let mut seen = 0;
    streaming.wait_for_line(Duration::from_secs(120), |line| {
        seen += usize::from(line.starts_with("{\"i\""));
        seen >= 10_000
    })?;
    gw.kill9()?;
    // Delivery reports already received are acknowledgements; stop the producer and keep them all.
    streaming.kill();
    let _ = streaming.wait(Duration::from_secs(30))?;
    let during = ack_lines(streaming.lines().iter().map(String::as_str));
    note(format!("{} records acknowledged before the crash", during.len()));
    ensure!(during.len() >= 10_000, "only {} acks collected", during.len());
    acked.extend(during);

    gw.restart()?;
    phase("verify every acknowledged record after the crash");
    verify(&gw, TOPIC, &acked)?;
    Ok(())
}
