//! kafkajs against the gateway: admin, plain and idempotent producers, offsets by time, on both
//! storage backends. Its group consumer is in `groups.rs`.

use anyhow::{ensure, Result};
use tests::{backend_tests, phase, Backend, ClientCommand, Gateway, GatewayOptions};

fn kafkajs(backend: Backend, gw: &Gateway, scenario: &str, topic: &str, count: u32) -> ClientCommand {
    let (key, value) = backend.client_env();
    ClientCommand::node("kafkajs_suite.js")
        .env(key, value)
        .arg(gw.bootstrap())
        .arg(scenario)
        .arg(topic)
        .arg(count.to_string())
}

backend_tests!(kafkajs_admin_and_producers);

fn kafkajs_admin_and_producers(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kafkajs-admin", GatewayOptions::default())?;
    phase("kafkajs: createTopics, send (plain, idempotent), fetchTopicOffsets, createPartitions, delete");
    let out = kafkajs(backend, &gw, "admin-produce", "kjs-topic", 100).run_json()?;
    ensure!(out["ok"] == true, "kafkajs summary: {out}");
    let sends = out["sends"].as_object().map(|m| m.len()).unwrap_or(0);
    ensure!(sends == 2, "both producers reported: {out}");
    Ok(())
}
