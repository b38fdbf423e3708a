//! Clients older than Kafka 4's minimum versions: kafka-python pinned to `api_version=(0, 10, 1)`
//! (CreateTopics v0, Produce v2 with message format v1, Fetch v3, ListOffsets v1, JoinGroup v1)
//! and `(0, 11)`, and kcat/librdkafka with `api.version.request=false`: produce, consume, group
//! commit and resume, on both backends.
//!
//! librdkafka treats `broker.version.fallback=0.10.0` as "the broker answers ApiVersions" and
//! still negotiates (so that run uses current versions); `0.9.0` makes it speak the pre-ApiVersions
//! protocol (Produce v1 with message format v0, Fetch v1, ListOffsets v0, the v0 group APIs),
//! which is the run that exercises the old formats.

use std::collections::BTreeSet;

use anyhow::{ensure, Result};
use tests::harness::raw::create_topic;
use tests::{backend_tests, phase, Backend, ClientCommand, GatewayOptions};

backend_tests!(
    kafka_python_0_10_1_produces_consumes_and_resumes_a_group,
    kafka_python_0_11_produces_consumes_and_resumes_a_group,
    kcat_with_a_0_10_0_fallback_produces_consumes_and_resumes_a_group,
    kcat_with_a_0_9_0_fallback_produces_consumes_and_resumes_a_group,
);

fn kafka_python(backend: Backend, api_version: &str, topic: &str) -> Result<()> {
    let gw = backend.gateway(topic, GatewayOptions::default())?;
    phase(format!(
        "kafka-python api_version={api_version}: create, produce (plain and gzip), consume half in a \
         group, commit, resume in a second consumer"
    ));
    let (key, value) = backend.client_env();
    let out = ClientCommand::python("legacy_suite.py")
        .env(key, value)
        .arg(gw.bootstrap())
        .args(["--api-version", api_version, "--topic", topic, "--count", "200"])
        .run_json()?;
    ensure!(out["count"] == 200 && out["resumed"] == 100, "legacy kafka-python summary: {out}");
    Ok(())
}

fn kafka_python_0_10_1_produces_consumes_and_resumes_a_group(backend: Backend) -> Result<()> {
    kafka_python(backend, "0.10.1", "legacy-kp-0101")
}

fn kafka_python_0_11_produces_consumes_and_resumes_a_group(backend: Backend) -> Result<()> {
    kafka_python(backend, "0.11", "legacy-kp-011")
}

fn kcat_with_a_0_10_0_fallback_produces_consumes_and_resumes_a_group(backend: Backend) -> Result<()> {
    kcat(backend, "0.10.0", "legacy-kcat-0100")
}

fn kcat_with_a_0_9_0_fallback_produces_consumes_and_resumes_a_group(backend: Backend) -> Result<()> {
    kcat(backend, "0.9.0", "legacy-kcat-090")
}

fn kcat(backend: Backend, fallback: &str, topic: &str) -> Result<()> {
    let gw = backend.gateway(topic, GatewayOptions::default())?;
    let bs = gw.bootstrap();
    let fallback = format!("broker.version.fallback={fallback}");
    let old_broker = ["-X", "api.version.request=false", "-X", fallback.as_str()];
    create_topic(gw.kafka_addr(), topic, 2)?;
    let want: BTreeSet<String> = (0..40).map(|i| format!("m{i}")).collect();

    phase(format!("produce 40 lines, gzip-compressed, with {fallback}"));
    let input: String = (0..40).map(|i| format!("m{i}\n")).collect();
    ClientCommand::kcat(&bs)
        .args(old_broker)
        .args(["-P", "-t", topic, "-z", "gzip"])
        .stdin(input)
        .run()?;

    phase("consume everything from the beginning");
    let out = ClientCommand::kcat(&bs)
        .args(old_broker)
        .args(["-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
        .run()?;
    let got: BTreeSet<String> = out.lines().map(str::to_owned).collect();
    ensure!(got == want, "consumed {} distinct lines, want 40: {out}", got.len());

    phase("a group consumer reads 20 and commits; a second one resumes with the other 20");
    let group = |count: &str| {
        ClientCommand::kcat(&bs)
            .args(old_broker)
            .args(["-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true"])
            .args(["-X", "auto.commit.interval.ms=100", "-q", "-f", "%s\n", "-c", count])
            .args(["-G", &format!("{topic}-group"), topic])
            .run()
    };
    let first: Vec<String> = group("20")?.lines().map(str::to_owned).collect();
    let second: Vec<String> = group("20")?.lines().map(str::to_owned).collect();
    ensure!(first.len() == 20 && second.len() == 20, "first {first:?}, second {second:?}");
    let all: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    ensure!(
        all == want,
        "the second consumer resumed where the first committed: {} distinct of 40 (first {first:?}, \
         second {second:?})",
        all.len()
    );
    Ok(())
}
