//! SeaweedMQ-only behaviour: the records live in SMQ, not in the gateway, so they outlast the
//! gateway's data directory and survive SMQ broker restarts.
//!
//! The client suites run on SeaweedMQ through `backend_tests!` in their own files; the tests here
//! need more than one gateway per cluster, a private cluster whose broker they restart, or a
//! look at what SeaweedMQ itself stores.

use std::time::Duration;

use anyhow::{ensure, Result};
use kafka_gateway::storage::seaweedmq::{Seeds, SmqClient};
use serde_json::Value;
use tests::harness::phase::note;
use tests::harness::raw::{create_topic, RawClient};
use tests::harness::weed::{shared_cluster, WeedHandle};
use tests::{phase, Backend, ClientCommand, Gateway, GatewayOptions};

use crate::durability::{ack_lines, producer, topic_partitions, verify};

/// Acks the streaming producer must report after a broker restart to show producing continues.
const ACKS_AFTER_RESTART: usize = 300;

/// Parses kcat `-J` output lines into `(offset, key, payload)`.
fn kcat_records(out: &str) -> Result<Vec<(u64, String, String)>> {
    out.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l)?;
            Ok((
                v["offset"].as_u64().unwrap_or(u64::MAX),
                v["key"].as_str().unwrap_or_default().to_owned(),
                v["payload"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

#[test]
fn records_outlive_the_gateway_data_dir_and_are_shared_by_gateways() -> Result<()> {
    const TOPIC: &str = "smq-two-gateways";
    let first = Backend::SeaweedMq.gateway("smq-first", GatewayOptions::default())?;
    create_topic(first.kafka_addr(), TOPIC, 2)?;
    phase("produce through the first gateway");
    let input: String = (0..50).map(|i| format!("k{i}:v{i}\n")).collect();
    ClientCommand::kcat(&first.bootstrap())
        .args(["-P", "-t", TOPIC, "-p", "1", "-K", ":"])
        .stdin(input)
        .run()?;

    phase("a second gateway with its own empty data dir serves the same topic and records");
    let second = Backend::SeaweedMq.gateway("smq-second", GatewayOptions::default())?;
    drop(first);
    ensure!(
        topic_partitions(&second, TOPIC)? == 2,
        "partition count seen by the second gateway"
    );
    let out = ClientCommand::kcat(&second.bootstrap())
        .args(["-C", "-t", TOPIC, "-p", "1", "-o", "beginning", "-e", "-J", "-q"])
        .run()?;
    let got = kcat_records(&out)?;
    let want: Vec<(u64, String, String)> = (0..50).map(|i| (i, format!("k{i}"), format!("v{i}"))).collect();
    ensure!(got == want, "records read through the second gateway: {got:?}");
    Ok(())
}

#[test]
fn broker_restart_loses_no_acknowledged_record_and_producing_continues() -> Result<()> {
    const TOPIC: &str = "smq-broker-restart";
    let mut weed = WeedHandle::start()?;
    let gw = Gateway::start(
        "smq-broker-restart",
        weed.gateway_options(GatewayOptions::default()),
    )?;
    create_topic(gw.kafka_addr(), TOPIC, 3)?;

    phase("produce 900 records with acks=all, then restart the broker");
    let out = producer(&gw, TOPIC, 0, 900).run()?;
    let mut acked = ack_lines(out.lines());
    ensure!(acked.len() == 900, "{} of 900 acknowledged", acked.len());
    weed.restart_broker()?;
    phase("verify after the broker restart");
    let summary = verify(&gw, TOPIC, &acked)?;
    ensure!(summary["stored"] == 900, "stored records: {summary}");

    phase("restart the broker while a producer streams");
    let mut streaming = producer(&gw, TOPIC, 900, 1_000_000).arg("--continuous").spawn()?;
    let mut before = 0;
    streaming.wait_for_line(Duration::from_secs(120), |line| {
        before += usize::from(line.starts_with("{\"i\""));
        before >= 1_000
    })?;
    weed.restart_broker()?;
    phase("producing continues after the restart");
    let mut after = 0;
    streaming.wait_for_line(Duration::from_secs(120), |line| {
        after += usize::from(line.starts_with("{\"i\""));
        after >= ACKS_AFTER_RESTART
    })?;
    streaming.kill();
    let _ = streaming.wait(Duration::from_secs(30))?;
    let during = ack_lines(streaming.lines().iter().map(String::as_str));
    note(format!(
        "{} records acknowledged by the streaming producer",
        during.len()
    ));
    acked.extend(during);

    phase("verify every acknowledged record");
    let summary = verify(&gw, TOPIC, &acked)?;
    note(format!("verified: {summary}"));
    Ok(())
}

/// A topic created through Kafka's CreateTopics with `seaweedmq.value.format=raw` stores bare
/// keys and values in SeaweedMQ (read here with SMQ's own FetchMessage, as an SMQ-native reader
/// would), and Kafka clients read back what SMQ keeps: key and value, no headers.
#[test]
fn raw_format_topic_stores_bare_values_smq_readers_can_use() -> Result<()> {
    const TOPIC: &str = "smq-raw-format";
    let gw = Backend::SeaweedMq.gateway("smq-raw-format", GatewayOptions::default())?;
    RawClient::connect(gw.kafka_addr())?.create_topic_with_configs(
        TOPIC,
        1,
        &[("seaweedmq.value.format", "raw")],
    )?;
    phase("produce keyed records with a header");
    let input: String = (0..20).map(|i| format!("k{i}:v{i}\n")).collect();
    ClientCommand::kcat(&gw.bootstrap())
        .args(["-P", "-t", TOPIC, "-p", "0", "-K", ":", "-H", "h=x"])
        .stdin(input)
        .run()?;

    phase("SeaweedMQ holds the bare keys and values");
    let client = SmqClient::new(Seeds {
        masters: vec![shared_cluster()?.master().to_string()],
        brokers: Vec::new(),
        filer: None,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fetched = runtime.block_on(client.fetch(TOPIC, 0, 0, 1 << 20, 100))?;
    let stored: Vec<(String, String)> = fetched
        .messages
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(&m.key).into_owned(),
                String::from_utf8_lossy(&m.value).into_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = (0..20).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    ensure!(stored == want, "SMQ messages: {stored:?}");

    phase("Kafka clients read keys and values back, without headers");
    let out = ClientCommand::kcat(&gw.bootstrap())
        .args(["-C", "-t", TOPIC, "-p", "0", "-o", "beginning", "-e", "-J", "-q"])
        .run()?;
    let got = kcat_records(&out)?;
    let want: Vec<(u64, String, String)> = (0..20).map(|i| (i, format!("k{i}"), format!("v{i}"))).collect();
    ensure!(got == want, "records read through the gateway: {got:?}");
    ensure!(
        !out.contains("\"h\""),
        "SMQ stores no headers, yet some came back: {out}"
    );
    Ok(())
}
