//! kafkajs against the gateway: admin, plain and idempotent producers, offsets by time, and a
//! producer that awaits every acks=all send, on both storage backends. Its group consumer is in
//! `groups.rs`.

use std::time::Duration;

use anyhow::{ensure, Result};
use tests::harness::workload::check_awaited_sends;
use tests::{backend_tests, phase, Backend, ClientCommand, Gateway, GatewayOptions};

/// Records of the awaited-send run, each one `await producer.send()`.
const AWAITED_SENDS: u32 = 1000;
/// Bound on the awaited-send run: seconds, not minutes. A regression guard, not a benchmark: an
/// acks=all answer waiting on SeaweedMQ's 5 s log flush made the run take over 80 minutes. The
/// script stops sending at this budget and reports how far it got.
const AWAITED_SENDS_BUDGET: Duration = Duration::from_secs(60);

fn kafkajs(backend: Backend, gw: &Gateway, scenario: &str, topic: &str, count: u32) -> ClientCommand {
    let (key, value) = backend.client_env();
    ClientCommand::node("kafkajs_suite.js")
        .env(key, value)
        .arg(gw.bootstrap())
        .arg(scenario)
        .arg(topic)
        .arg(count.to_string())
}

backend_tests!(
    kafkajs_admin_and_producers,
    kafkajs_awaited_acks_all_sends_finish_in_seconds
);

fn kafkajs_admin_and_producers(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kafkajs-admin", GatewayOptions::default())?;
    phase("kafkajs: createTopics, send (plain, idempotent), fetchTopicOffsets, createPartitions, delete");
    let out = kafkajs(backend, &gw, "admin-produce", "kjs-topic", 100).run_json()?;
    ensure!(out["ok"] == true, "kafkajs summary: {out}");
    let sends = out["sends"].as_object().map(|m| m.len()).unwrap_or(0);
    ensure!(sends == 2, "both producers reported: {out}");
    Ok(())
}

fn kafkajs_awaited_acks_all_sends_finish_in_seconds(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kafkajs-await-send", GatewayOptions::default())?;
    let budget = AWAITED_SENDS_BUDGET.as_secs();
    phase(format!(
        "kafkajs: {AWAITED_SENDS} sequential `await send(acks=-1)` of one record (default producer, \
         budget {budget} s), then read back in order"
    ));
    let out = kafkajs(backend, &gw, "await-send", "kjs-await-send", AWAITED_SENDS)
        .arg(budget.to_string())
        // Budget, topic setup and a read-back bounded by the script's own deadlines.
        .timeout(AWAITED_SENDS_BUDGET + Duration::from_secs(120))
        .run_json()?;
    check_awaited_sends(&format!("kafkajs awaited sends on {}", backend.name()), AWAITED_SENDS, AWAITED_SENDS_BUDGET, &out)?;
    Ok(())
}
