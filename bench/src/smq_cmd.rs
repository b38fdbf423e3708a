//! The SeaweedMQ subcommands: the direct-publish ceiling, topic pre-creation, and the
//! comparison report (our gateway vs the seed gateway vs the ceiling).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;

use crate::cpu::ProcessCpu;
use crate::report::{cell, ratio, read_results, RunResult};
use crate::rounds::{paired_rounds, read_smq_cpu, round_of};
use crate::{cpu_per_gb, Mode, MB};

/// Arguments of `smq-direct`.
#[derive(Debug, clap::Args)]
pub struct DirectArgs {
    /// SeaweedFS masters, `host:httpPort` (gRPC = +10000), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    masters: Vec<String>,
    /// Topic (SMQ namespace `kafka`).
    #[arg(long)]
    topic: String,
    /// Create the topic with this many partitions first.
    #[arg(long, value_name = "PARTITIONS")]
    create_topic: Option<i32>,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Messages to publish in total.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Messages per submitted batch (the gateway submits one Kafka batch at a time).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Unacknowledged batches per partition.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// What to measure.
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,
    /// Pause between publishing and fetching (the publish streams stay open meanwhile).
    #[arg(long, default_value_t = 0)]
    consume_delay_seconds: u64,
    /// SeaweedMQ processes to sample CPU time of (repeatable; summed).
    #[arg(long = "backend-pid")]
    backend_pids: Vec<u32>,
    /// Peer name printed in the row.
    #[arg(long, default_value = "smq-direct")]
    label: String,
    /// Scenario name printed in the row.
    #[arg(long)]
    scenario: Option<String>,
    /// Append the result as a JSON line to this file.
    #[arg(long)]
    pub results_file: Option<String>,
}

/// Arguments of `smq-create-topic`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// SeaweedFS masters, `host:httpPort`, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    masters: Vec<String>,
    /// Topic name (created as `kafka/<name>`).
    #[arg(long)]
    topic: String,
    /// Partition count.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

/// Arguments of `smq-report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// JSON-lines file written by `run` and `smq-direct`.
    #[arg(long)]
    results_file: String,
    /// Our gateway's peer labels (comma-separated), each compared with the seed and the ceiling.
    #[arg(long, value_delimiter = ',', default_value = "gateway-smq-acks1,gateway-smq")]
    ours: Vec<String>,
    /// The seed gateway's peer label.
    #[arg(long, default_value = "seed-gateway")]
    seed: String,
    /// The direct-publish ceiling's peer label.
    #[arg(long, default_value = "smq-direct")]
    ceiling: String,
    /// JSON-lines file of SeaweedMQ's flush-inclusive CPU per produce run (bench-smq.sh).
    #[arg(long)]
    smq_cpu_file: Option<String>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// `smq-create-topic`: configures `kafka/<topic>` on the balancer.
pub fn create_topic(args: &CreateArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = crate::smq::client(&args.masters);
        crate::smq::create_topic(&client, &args.topic, args.partitions).await
    })?;
    eprintln!("created kafka/{} with {} partitions", args.topic, args.partitions);
    Ok(())
}

/// `smq-direct`: publishes and/or fetches with the gateway's SMQ client and reports one row.
pub fn direct(args: &DirectArgs) -> anyhow::Result<RunResult> {
    let rt = runtime()?;
    let client = crate::smq::client(&args.masters);
    if let Some(n) = args.create_topic {
        rt.block_on(crate::smq::create_topic(&client, &args.topic, n))?;
    }
    let me = ProcessCpu::new(std::process::id())?;
    let backend = args
        .backend_pids
        .iter()
        .map(|&pid| ProcessCpu::new(pid))
        .collect::<Result<Vec<_>, _>>()?;
    let sample = || -> anyhow::Result<(Option<f64>, Option<f64>)> {
        let b = if backend.is_empty() {
            None
        } else {
            Some(backend.iter().map(ProcessCpu::seconds).sum::<Result<f64, _>>()?)
        };
        Ok((Some(me.seconds()?), b))
    };
    let mut result = RunResult {
        scenario: args
            .scenario
            .clone()
            .unwrap_or_else(|| format!("{}B-direct", args.message_size)),
        peer: args.label.clone(),
        message_size: args.message_size,
        acks: "all".into(),
        ..RunResult::default()
    };
    let publishers = rt.block_on(crate::smq::open_publishers(&client, &args.topic))?;
    if args.mode != Mode::Consume {
        let spec = crate::smq::PublishSpec {
            message_size: args.message_size,
            messages: args.messages,
            batch: args.batch,
            in_flight: args.in_flight,
        };
        let before = sample()?;
        let stats = rt.block_on(crate::smq::publish(&publishers, &spec))?;
        let after = sample()?;
        let secs = stats.elapsed.as_secs_f64();
        result.produce_mb_s = Some(stats.bytes as f64 / MB / secs);
        result.produce_msgs_s = Some(stats.messages as f64 / secs);
        let q = |q: f64| quantile_ms(&stats.batch_latencies_us, q);
        (result.p50_ms, result.p99_ms, result.max_ms) = (q(0.5), q(0.99), q(1.0));
        result.client_cpu_s_per_gb_produce = cpu_per_gb(before.0, after.0, stats.bytes);
        result.backend_cpu_s_per_gb_produce = cpu_per_gb(before.1, after.1, stats.bytes);
        eprintln!(
            "published {} messages, {} bytes in {secs:.2}s",
            stats.messages, stats.bytes
        );
    }
    if args.mode != Mode::Produce {
        std::thread::sleep(Duration::from_secs(args.consume_delay_seconds));
        let before = sample()?;
        let stats = rt.block_on(crate::smq::fetch_all(
            std::sync::Arc::clone(&client),
            &args.topic,
            8 * 1024 * 1024,
            Duration::from_secs(30),
        ))?;
        let after = sample()?;
        let secs = stats.elapsed.as_secs_f64();
        result.consume_mb_s = Some(stats.bytes as f64 / MB / secs);
        result.consume_msgs_s = Some(stats.messages as f64 / secs);
        result.client_cpu_s_per_gb_consume = cpu_per_gb(before.0, after.0, stats.bytes);
        result.backend_cpu_s_per_gb_consume = cpu_per_gb(before.1, after.1, stats.bytes);
        eprintln!(
            "fetched {} messages, {} bytes in {secs:.2}s ({} subscription fallbacks)",
            stats.messages, stats.bytes, stats.fallbacks
        );
    }
    // Dropped inside the runtime: the streams' tasks end with it.
    rt.block_on(async move { drop(publishers) });
    Ok(result)
}

fn quantile_ms(sorted_us: &[u32], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((sorted_us.len() as f64 * q).ceil() as usize).clamp(1, sorted_us.len());
    Some(f64::from(sorted_us[rank - 1]) / 1000.0)
}

const COLUMNS: [&str; 13] = [
    "scenario",
    "peer",
    "msg B",
    "prod msg/s",
    "prod MB/s",
    "cons msg/s",
    "cons MB/s",
    "gateway CPU s/GB prod",
    "SMQ CPU s/GB prod",
    "client CPU s/GB prod",
    "gateway CPU s/GB cons",
    "SMQ CPU s/GB cons",
    "client CPU s/GB cons",
];

fn row(r: &RunResult) -> String {
    let cells = [
        r.scenario.clone(),
        r.peer.clone(),
        r.message_size.to_string(),
        cell(r.produce_msgs_s),
        cell(r.produce_mb_s),
        cell(r.consume_msgs_s),
        cell(r.consume_mb_s),
        cell(r.cpu_s_per_gb_produce),
        cell(r.backend_cpu_s_per_gb_produce),
        cell(r.client_cpu_s_per_gb_produce),
        cell(r.cpu_s_per_gb_consume),
        cell(r.backend_cpu_s_per_gb_consume),
        cell(r.client_cpu_s_per_gb_consume),
    ];
    format!("| {} |", cells.join(" | "))
}

/// Joins the separate produce and consume rows of one peer and scenario into one row (the first
/// value of each figure wins), keeping the order in which peers first appear.
fn merge_phases(results: Vec<RunResult>) -> Vec<RunResult> {
    let mut merged: Vec<RunResult> = Vec::new();
    for r in results {
        let Some(m) = merged
            .iter_mut()
            .find(|m| m.peer == r.peer && m.scenario == r.scenario)
        else {
            merged.push(r);
            continue;
        };
        macro_rules! fill {
            ($($field:ident),*) => { $( m.$field = m.$field.take().or(r.$field); )* };
        }
        fill!(
            produce_mb_s,
            produce_msgs_s,
            p50_ms,
            p99_ms,
            max_ms,
            consume_mb_s,
            consume_msgs_s,
            cpu_s_per_gb_produce,
            cpu_s_per_gb_consume,
            client_cpu_s_per_gb_produce,
            client_cpu_s_per_gb_consume,
            backend_cpu_s_per_gb_produce,
            backend_cpu_s_per_gb_consume,
            error
        );
    }
    merged
}

/// `smq-report`: every row, then per scenario the ratios to the seed and to the ceiling and
/// whether the targets (produce ≥ 10x the seed, ≥ 80% of the ceiling) are met.
pub fn report(args: &ReportArgs) -> anyhow::Result<String> {
    let results = merge_phases(read_results(&args.results_file)?);
    let mut out = String::new();
    let separator: Vec<&str> = COLUMNS.iter().map(|_| "---").collect();
    let _ = writeln!(out, "| {} |\n| {} |", COLUMNS.join(" | "), separator.join(" | "));
    for r in &results {
        let _ = writeln!(out, "{}", row(r));
    }
    for r in results.iter().filter(|r| r.error.is_some()) {
        let error = r.error.as_deref().unwrap_or_default();
        let _ = writeln!(out, "\n{} / {}: {error}", r.peer, r.scenario);
    }
    let mut by_size: BTreeMap<usize, BTreeMap<&str, &RunResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| round_of(&r.scenario).is_none()) {
        by_size
            .entry(r.message_size)
            .or_default()
            .insert(r.peer.as_str(), r);
    }
    let (s, c) = (&args.seed, &args.ceiling);
    let _ = writeln!(
        out,
        "\n| msg B | ours | prod ours/{s} (target ≥ 10x) | prod ours/{c} (target ≥ 0.80x) | cons ours/{s} | cons ours/{c} |\n| --- | --- | --- | --- | --- | --- |"
    );
    let prod = |r: &RunResult| r.produce_msgs_s;
    let cons = |r: &RunResult| r.consume_msgs_s;
    let verdict = |a: Option<f64>, b: Option<f64>, target: f64| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            let met = if a / b >= target { "met" } else { "missed" };
            format!("{} ({met})", ratio(Some(a), Some(b)))
        }
        _ => "-".to_string(),
    };
    for (size, peers) in &by_size {
        let seed = peers.get(s.as_str()).copied();
        let ceiling = peers.get(c.as_str()).copied();
        for o in &args.ours {
            let Some(ours) = peers.get(o.as_str()).copied() else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {size} | {o} | {} | {} | {} | {} |",
                verdict(prod(ours), seed.and_then(prod), 10.0),
                verdict(prod(ours), ceiling.and_then(prod), 0.8),
                ratio(cons(ours), seed.and_then(cons)),
                ratio(cons(ours), ceiling.and_then(cons)),
            );
        }
    }
    let cpu = match &args.smq_cpu_file {
        Some(path) => read_smq_cpu(path)?,
        None => Vec::new(),
    };
    paired_rounds(&mut out, &results, &cpu, &args.ours, &args.ceiling);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(peer: &str, produce: Option<f64>, consume: Option<f64>) -> RunResult {
        RunResult {
            scenario: "1KiB".into(),
            peer: peer.into(),
            message_size: 1024,
            produce_msgs_s: produce,
            consume_msgs_s: consume,
            ..RunResult::default()
        }
    }

    #[test]
    fn produce_and_consume_rows_of_a_peer_merge() {
        let merged = merge_phases(vec![
            result("a", Some(10.0), None),
            result("b", Some(1.0), Some(2.0)),
            result("a", None, Some(20.0)),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].peer, "a");
        assert_eq!(merged[0].produce_msgs_s, Some(10.0));
        assert_eq!(merged[0].consume_msgs_s, Some(20.0));
    }
}
