//! kafka-python against the gateway: admin create/delete, producer, an assign/seek consumer, and a
//! synchronous producer that waits for every acks=all send, on both storage backends.

use std::time::Duration;

use anyhow::{ensure, Result};
use tests::harness::workload::check_awaited_sends;
use tests::{backend_tests, phase, Backend, ClientCommand, GatewayOptions};

/// Records of the synchronous-send run, each one `send(...).get()`.
const SYNC_SENDS: u32 = 1000;
/// Bound on the synchronous-send run: seconds, not minutes. A regression guard, not a benchmark:
/// an acks=all answer waiting on SeaweedMQ's 5 s log flush made the run take over 80 minutes. The
/// script stops sending at this budget and reports how far it got.
const SYNC_SENDS_BUDGET: Duration = Duration::from_secs(60);

backend_tests!(
    kafka_python_admin_produce_assign_seek_round_trip,
    kafka_python_sync_acks_all_sends_finish_in_seconds,
);

fn kafka_python_admin_produce_assign_seek_round_trip(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kafka-python", GatewayOptions::default())?;
    phase("kafka-python: create topic, produce gzip with headers, assign/seek consume, delete");
    let (key, value) = backend.client_env();
    let out = ClientCommand::python("kafka_python_suite.py")
        .env(key, value)
        .arg(gw.bootstrap())
        .arg("roundtrip")
        .args(["--topic", "kp-topic", "--count", "400"])
        .run_json()?;
    ensure!(out["count"] == 400, "kafka-python summary: {out}");
    Ok(())
}

fn kafka_python_sync_acks_all_sends_finish_in_seconds(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kafka-python-sync-send", GatewayOptions::default())?;
    let budget = SYNC_SENDS_BUDGET.as_secs();
    phase(format!(
        "kafka-python: {SYNC_SENDS} synchronous send(...).get() of one record, KafkaProducer(acks='all') \
         (budget {budget} s), then read back in order"
    ));
    let (key, value) = backend.client_env();
    let out = ClientCommand::python("kafka_python_suite.py")
        .env(key, value)
        .arg(gw.bootstrap())
        .arg("await-send")
        .args(["--topic", "kp-sync-send", "--count", &SYNC_SENDS.to_string()])
        .args(["--budget-s", &budget.to_string()])
        // Budget, topic setup and a read-back bounded by the script's own deadlines.
        .timeout(SYNC_SENDS_BUDGET + Duration::from_secs(120))
        .run_json()?;
    check_awaited_sends(&format!("kafka-python synchronous sends on {}", backend.name()), SYNC_SENDS, SYNC_SENDS_BUDGET, &out)?;
    Ok(())
}
