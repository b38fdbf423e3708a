//! Python confluent-kafka (librdkafka) against the gateway: admin, codecs, record fields,
//! timestamps, offsets, delete_records and the idempotent producer, on both storage backends.
//!
//! The script `tests/clients/confluent_suite.py` asserts each scenario itself (byte-for-byte
//! comparisons happen there, where the client's decoded values are); the test re-checks the JSON
//! summary so a script that silently skipped work cannot pass.

use anyhow::{ensure, Result};
use serde_json::json;
use tests::{backend_tests, phase, Backend, ClientCommand, Gateway, GatewayOptions};

fn confluent(backend: Backend, gw: &Gateway, scenario: &str) -> ClientCommand {
    let (key, value) = backend.client_env();
    ClientCommand::python("confluent_suite.py")
        .env(key, value)
        .arg(gw.bootstrap())
        .arg(scenario)
}

backend_tests!(
    confluent_admin_create_describe_alter_delete,
    confluent_all_codecs_round_trip_byte_for_byte,
    confluent_keys_values_headers_timestamps_offsets_delete_records,
    confluent_idempotent_producer_exactly_once_in_order,
);

fn confluent_admin_create_describe_alter_delete(backend: Backend) -> Result<()> {
    let gw = backend.gateway("confluent-admin", GatewayOptions::default())?;
    phase("admin scenario: validate_only, create, duplicate, invalid config, describe, alter, partitions, delete");
    let out = confluent(backend, &gw, "admin")
        .args(["--topic", "admin-topic"])
        .run_json()?;
    ensure!(out["ok"] == true, "admin scenario summary: {out}");
    Ok(())
}

fn confluent_all_codecs_round_trip_byte_for_byte(backend: Backend) -> Result<()> {
    let gw = backend.gateway("confluent-codecs", GatewayOptions::default())?;
    phase("produce and consume with gzip, snappy, lz4, zstd");
    let out = confluent(backend, &gw, "codecs")
        .args(["--topic", "codec", "--count", "300"])
        .run_json()?;
    ensure!(
        out["counts"] == json!({"gzip": 300, "snappy": 300, "lz4": 300, "zstd": 300}),
        "codec summary: {out}"
    );
    Ok(())
}

fn confluent_keys_values_headers_timestamps_offsets_delete_records(backend: Backend) -> Result<()> {
    let gw = backend.gateway("confluent-records", GatewayOptions::default())?;
    phase("null/empty keys and values, headers, timestamps, offsets_for_times, list_offsets, delete_records");
    let out = confluent(backend, &gw, "records")
        .args(["--topic", "records"])
        .run_json()?;
    ensure!(
        out["count"] == 7 && out["low_watermark"] == 3,
        "records summary: {out}"
    );
    Ok(())
}

fn confluent_idempotent_producer_exactly_once_in_order(backend: Backend) -> Result<()> {
    let gw = backend.gateway("confluent-idempotent", GatewayOptions::default())?;
    // acks=all on SeaweedMQ is answered once the broker has flushed the batch (its log flush
    // interval, 5 s by default), so a run takes flush intervals rather than bytes: fewer records
    // keep it inside the client's 30 s flush deadline.
    let count: u32 = match backend {
        Backend::Local => 3000,
        Backend::SeaweedMq => 600,
    };
    phase(format!(
        "enable.idempotence=true producer, 5 in flight, 2 partitions, {count} records"
    ));
    let out = confluent(backend, &gw, "idempotent")
        .args(["--topic", "idem", "--count", &count.to_string()])
        .run_json()?;
    let half = count / 2;
    ensure!(
        out["per_partition"] == json!({"0": half, "1": half}),
        "idempotent summary: {out}"
    );
    Ok(())
}
