//! kafkajs against the gateway: admin, plain and idempotent producers, offsets by time. Its group
//! consumer is in `groups.rs`.

use anyhow::{ensure, Result};
use tests::{phase, ClientCommand, Gateway, GatewayOptions};

fn kafkajs(gw: &Gateway, scenario: &str, topic: &str, count: u32) -> ClientCommand {
    ClientCommand::node("kafkajs_suite.js")
        .arg(gw.bootstrap())
        .arg(scenario)
        .arg(topic)
        .arg(count.to_string())
}

#[test]
fn kafkajs_admin_and_producers() -> Result<()> {
    let gw = Gateway::start("kafkajs-admin", GatewayOptions::default())?;
    phase("kafkajs: createTopics, send (plain, idempotent), fetchTopicOffsets, createPartitions, delete");
    let out = kafkajs(&gw, "admin-produce", "kjs-topic", 100).run_json()?;
    ensure!(out["ok"] == true, "kafkajs summary: {out}");
    let sends = out["sends"].as_object().map(|m| m.len()).unwrap_or(0);
    ensure!(sends == 2, "both producers reported: {out}");
    Ok(())
}
