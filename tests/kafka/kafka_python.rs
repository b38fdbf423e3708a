//! kafka-python against the gateway: admin create/delete, producer, and an assign/seek consumer,
//! on both storage backends.

use anyhow::{ensure, Result};
use tests::{backend_tests, phase, Backend, ClientCommand, GatewayOptions};

backend_tests!(kafka_python_admin_produce_assign_seek_round_trip);

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
