//! kcat (librdkafka's command-line client): produce, consume, metadata, keys and headers, on
//! both storage backends.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tests::harness::raw::create_topic;
use tests::{backend_tests, phase, Backend, ClientCommand, GatewayOptions};

/// Parses kcat `-J` output: one JSON object per message line.
fn json_lines(out: &str) -> Result<Vec<Value>> {
    out.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("kcat JSON line {l:?}")))
        .collect()
}

backend_tests!(
    kcat_produce_consume_keys_and_headers,
    kcat_many_lines_with_compression_round_trip,
    kcat_metadata_lists_topic_and_advertised_broker,
);

fn kcat_produce_consume_keys_and_headers(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kcat-keys", GatewayOptions::default())?;
    let bs = gw.bootstrap();
    phase("create topic");
    create_topic(gw.kafka_addr(), "kcat-keys", 1)?;

    phase("produce keyed lines with headers");
    let input = "k1:v1\nk2:hello world\nk3:\u{e9}t\u{e9} \u{2603}\n";
    ClientCommand::kcat(&bs)
        .args([
            "-P",
            "-t",
            "kcat-keys",
            "-p",
            "0",
            "-K",
            ":",
            "-H",
            "h1=x",
            "-H",
            "h2=with space",
        ])
        .stdin(input)
        .run()?;

    phase("consume back as JSON");
    let out = ClientCommand::kcat(&bs)
        .args(["-C", "-t", "kcat-keys", "-o", "beginning", "-e", "-J", "-q"])
        .run()?;
    let msgs = json_lines(&out)?;
    let want = [
        ("k1", "v1"),
        ("k2", "hello world"),
        ("k3", "\u{e9}t\u{e9} \u{2603}"),
    ];
    ensure!(
        msgs.len() == want.len(),
        "consumed {} messages, want {}: {out}",
        msgs.len(),
        want.len()
    );
    for (i, (msg, (key, value))) in msgs.iter().zip(want).enumerate() {
        ensure!(msg["offset"] == i as u64, "offset of message {i}: {msg}");
        ensure!(msg["key"] == key, "key of message {i}: {msg}");
        ensure!(msg["payload"] == value, "payload of message {i}: {msg}");
        let headers = &msg["headers"];
        ensure!(
            *headers == serde_json::json!(["h1", "x", "h2", "with space"]),
            "headers of message {i}: {msg}"
        );
    }
    Ok(())
}

fn kcat_many_lines_with_compression_round_trip(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kcat-lines", GatewayOptions::default())?;
    let bs = gw.bootstrap();
    create_topic(gw.kafka_addr(), "kcat-lines", 2)?;
    let lines: Vec<String> = (0..2000)
        .map(|i| format!("line-{i}-{}", "x".repeat(i % 97)))
        .collect();
    for codec in ["none", "snappy", "gzip"] {
        phase(format!(
            "produce {} lines with -z {codec} to partition 1",
            lines.len()
        ));
        ClientCommand::kcat(&bs)
            .args(["-P", "-t", "kcat-lines", "-p", "1", "-z", codec])
            .stdin(lines.join("\n") + "\n")
            .run()?;
    }
    phase("consume partition 1 with -c and a format string");
    let total = lines.len() * 3;
    let out = ClientCommand::kcat(&bs)
        .args([
            "-C",
            "-t",
            "kcat-lines",
            "-p",
            "1",
            "-o",
            "beginning",
            "-c",
            &total.to_string(),
        ])
        .args(["-f", "%o %s\n", "-q"])
        .run()?;
    let got: Vec<&str> = out.lines().collect();
    ensure!(got.len() == total, "consumed {} lines, want {total}", got.len());
    for (i, line) in got.iter().enumerate() {
        let want = format!("{i} {}", lines[i % lines.len()]);
        ensure!(*line == want, "line {i}: got {line:?}, want {want:?}");
    }
    phase("partition 0 stays empty");
    let out = ClientCommand::kcat(&bs)
        .args(["-C", "-t", "kcat-lines", "-p", "0", "-o", "beginning", "-e", "-q"])
        .run()?;
    ensure!(out.trim().is_empty(), "partition 0 unexpectedly has data: {out}");
    Ok(())
}

fn kcat_metadata_lists_topic_and_advertised_broker(backend: Backend) -> Result<()> {
    let gw = backend.gateway("kcat-metadata", GatewayOptions::default())?;
    let bs = gw.bootstrap();
    create_topic(gw.kafka_addr(), "kcat-meta-a", 3)?;
    create_topic(gw.kafka_addr(), "kcat-meta-b", 1)?;
    phase("kcat -L -J");
    let out = ClientCommand::kcat(&bs).args(["-L", "-J"]).run()?;
    let md: Value = serde_json::from_str(out.trim()).context("kcat -L -J output")?;
    let brokers = md["brokers"].as_array().context("brokers array")?;
    ensure!(brokers.len() == 1, "want one broker: {md}");
    ensure!(
        brokers[0]["name"] == bs.as_str(),
        "broker address {} != advertised {bs}",
        brokers[0]["name"]
    );
    let broker_id = &brokers[0]["id"];
    let topics = md["topics"].as_array().context("topics array")?;
    for (name, partitions) in [("kcat-meta-a", 3), ("kcat-meta-b", 1)] {
        let topic = topics
            .iter()
            .find(|t| t["topic"] == name)
            .with_context(|| format!("{name} missing from metadata: {md}"))?;
        let parts = topic["partitions"].as_array().context("partitions")?;
        ensure!(
            parts.len() == partitions,
            "{name}: {} partitions, want {partitions}",
            parts.len()
        );
        for p in parts {
            ensure!(
                p["leader"] == *broker_id,
                "{name} partition leader {} != broker {broker_id}",
                p["leader"]
            );
        }
    }
    Ok(())
}
