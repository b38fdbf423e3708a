//! The admin HTTP endpoints of a running gateway: health, readiness and Prometheus metrics that
//! reflect real client traffic.

use anyhow::{ensure, Context, Result};
use tests::harness::raw::create_topic;
use tests::{phase, ClientCommand, Gateway, GatewayOptions};

/// Value of the first sample of `metric` whose label set contains every `labels` fragment.
fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|frag| l.contains(frag)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn health_readiness_and_metrics_reflect_traffic() -> Result<()> {
    let gw = Gateway::start("admin-http", GatewayOptions::default())?;
    phase("healthz and readyz");
    ensure!(gw.admin_get("/healthz")?.status == 200, "/healthz not 200");
    ensure!(gw.admin_get("/readyz")?.status == 200, "/readyz not 200");

    phase("produce and consume 25 records with kcat");
    create_topic(gw.kafka_addr(), "metrics-topic", 1)?;
    let input: String = (0..25).map(|i| format!("m{i}\n")).collect();
    ClientCommand::kcat(&gw.bootstrap())
        .args(["-P", "-t", "metrics-topic", "-p", "0"])
        .stdin(input)
        .run()?;
    let out = ClientCommand::kcat(&gw.bootstrap())
        .args(["-C", "-t", "metrics-topic", "-o", "beginning", "-c", "25", "-q"])
        .run()?;
    ensure!(
        out.lines().count() == 25,
        "consumed {} lines",
        out.lines().count()
    );

    phase("metrics");
    let resp = gw.admin_get("/metrics")?;
    ensure!(resp.status == 200, "/metrics status {}", resp.status);
    let m = &resp.body;
    let produce_requests =
        sample(m, "kafka_gateway_requests_total", &["Produce"]).context("Produce request counter")?;
    ensure!(
        produce_requests >= 1.0,
        "Produce requests counted: {produce_requests}"
    );
    let fetch_requests =
        sample(m, "kafka_gateway_requests_total", &["Fetch"]).context("Fetch request counter")?;
    ensure!(fetch_requests >= 1.0, "Fetch requests counted: {fetch_requests}");
    let records = sample(m, "kafka_gateway_produce_records_total", &[]).context("produce records counter")?;
    ensure!(records >= 25.0, "produce records counted: {records}");
    let hw = sample(
        m,
        "kafka_gateway_partition_high_watermark",
        &["\"metrics-topic\""],
    )
    .context("high watermark of metrics-topic")?;
    ensure!(hw == 25.0, "high watermark metric {hw}, want 25");
    let conns = sample(m, "kafka_gateway_connections_total", &[]).context("connections counter")?;
    ensure!(conns >= 3.0, "connections counted: {conns}");
    ensure!(
        m.contains("kafka_gateway_request_duration_seconds_bucket"),
        "request latency histogram missing"
    );
    Ok(())
}
