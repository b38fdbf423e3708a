//! kafka-python against the gateway: admin create/delete, producer, and an assign/seek consumer.

use anyhow::{ensure, Result};
use tests::{phase, ClientCommand, Gateway, GatewayOptions};

#[test]
fn kafka_python_admin_produce_assign_seek_round_trip() -> Result<()> {
    let gw = Gateway::start("kafka-python", GatewayOptions::default())?;
    phase("kafka-python: create topic, produce gzip with headers, assign/seek consume, delete");
    let out = ClientCommand::python("kafka_python_suite.py")
        .arg(gw.bootstrap())
        .arg("roundtrip")
        .args(["--topic", "kp-topic", "--count", "400"])
        .run_json()?;
    ensure!(out["count"] == 400, "kafka-python summary: {out}");
    Ok(())
}
