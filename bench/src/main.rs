//! `kafka-bench`: produce/consume throughput and produce latency of any Kafka-compatible broker,
//! measured with librdkafka so every broker is driven by the same third-party client.

mod admin;
mod consume;
mod cpu;
mod error;
mod limits;
mod produce;
mod report;
mod rounds;
mod smq;
mod smq_cmd;

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use crate::cpu::ProcessCpu;
use crate::report::RunResult;

#[derive(Debug, Parser)]
#[command(name = "kafka-bench", about = "Kafka broker benchmark driven by librdkafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario against one broker and print a markdown row.
    Run(RunArgs),
    /// Print the markdown table header that `run` rows fit under.
    Header,
    /// Measure loopback TCP throughput of one connection (a machine limit), in GB/s.
    Loopback {
        /// How long to stream.
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Produce and consume directly on SeaweedMQ with the gateway's own SMQ client (the ceiling).
    SmqDirect(smq_cmd::DirectArgs),
    /// Create a Kafka topic as SMQ topic `kafka/<name>` (for gateways that cannot create it).
    SmqCreateTopic(smq_cmd::CreateArgs),
    /// Print the SeaweedMQ comparison: rows, CPU and ratios to the seed and to the ceiling.
    SmqReport(smq_cmd::ReportArgs),
    /// Print every row of a results file and the ratio table of two peers.
    Compare {
        /// JSON-lines file written by `run --results-file`.
        #[arg(long)]
        results_file: String,
        /// Peer in the numerator.
        #[arg(long, default_value = "gateway")]
        ours: String,
        /// Peer in the denominator.
        #[arg(long, default_value = "tansu-memory")]
        baseline: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Produce,
    Consume,
    Both,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Broker bootstrap address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to produce to / consume from.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Create the topic with this many partitions first (an existing topic is reused).
    #[arg(long, value_name = "PARTITIONS")]
    create_topic: Option<i32>,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Number of messages to produce.
    #[arg(long, conflicts_with = "duration_seconds")]
    messages: Option<u64>,
    /// Produce for this many seconds instead of a fixed count.
    #[arg(long)]
    duration_seconds: Option<u64>,
    /// Producer acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Pace production at this many MB/s (10^6 payload bytes per second).
    #[arg(long, value_name = "MB_PER_SEC")]
    produce_rate_limit: Option<f64>,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// What to measure.
    #[arg(long, value_enum, default_value = "both")]
    mode: Mode,
    /// Broker process to sample CPU time of (/proc/PID/stat).
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Storage backend process (repeatable; their CPU times are summed), e.g. SeaweedMQ's.
    #[arg(long = "backend-pid")]
    backend_pids: Vec<u32>,
    /// Peer name printed in the row.
    #[arg(long, default_value = "broker")]
    label: String,
    /// Scenario name printed in the row (defaults to size/acks/rate).
    #[arg(long)]
    scenario: Option<String>,
    /// Append the result as a JSON line to this file.
    #[arg(long)]
    results_file: Option<String>,
    /// Pause between the produce and the consume phase, e.g. to let a backend flush.
    #[arg(long, default_value_t = 0)]
    consume_delay_seconds: u64,
    /// Extra librdkafka producer property, `key=value` (repeatable).
    #[arg(long = "producer-property", value_parser = parse_property)]
    producer_properties: Vec<(String, String)>,
    /// Extra librdkafka consumer property, `key=value` (repeatable).
    #[arg(long = "consumer-property", value_parser = parse_property)]
    consumer_properties: Vec<(String, String)>,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {text:?}"))
}

const MB: f64 = 1e6;
const GB: f64 = 1e9;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Header => println!("{}", report::markdown_header()),
        Command::Loopback { seconds } => {
            let rate = limits::loopback_bytes_per_sec(Duration::from_secs(seconds))?;
            println!("loopback: {:.2} GB/s", rate / GB);
        }
        Command::Compare {
            results_file,
            ours,
            baseline,
        } => {
            let results = report::read_results(&results_file)?;
            println!("{}", report::markdown_header());
            for result in &results {
                println!("{}", result.markdown_row());
            }
            println!();
            print!("{}", report::ratio_table(&results, &ours, &baseline));
        }
        Command::SmqDirect(args) => {
            let result = smq_cmd::direct(&args)?;
            println!("{}", result.markdown_row());
            if let Some(path) = &args.results_file {
                result.append_to(path)?;
            }
        }
        Command::SmqCreateTopic(args) => smq_cmd::create_topic(&args)?,
        Command::SmqReport(args) => print!("{}", smq_cmd::report(&args)?),
        Command::Run(args) => {
            let result = run(&args)?;
            println!("{}", result.markdown_row());
            if let Some(path) = &args.results_file {
                result.append_to(path)?;
            }
            if let Some(error) = &result.error {
                bail!("{error}");
            }
        }
    }
    Ok(())
}

fn run(args: &RunArgs) -> anyhow::Result<RunResult> {
    let timeout = Duration::from_secs(30);
    let partitions = match args.create_topic {
        Some(n) => {
            let outcome = admin::create_topic(&args.bootstrap, &args.topic, n, timeout)?;
            eprintln!("topic {}: {outcome:?}", args.topic);
            admin::partition_count(&args.bootstrap, &args.topic, timeout)?
        }
        None => admin::partition_count(&args.bootstrap, &args.topic, timeout)?,
    };
    if partitions == 0 {
        bail!(
            "topic {} does not exist on {} (use --create-topic N)",
            args.topic,
            args.bootstrap
        );
    }
    let cpu = args.gateway_pid.map(ProcessCpu::new).transpose()?;
    let client = ProcessCpu::new(std::process::id())?;
    let backend = args
        .backend_pids
        .iter()
        .map(|&pid| ProcessCpu::new(pid))
        .collect::<Result<Vec<_>, _>>()?;
    let sample = || -> anyhow::Result<(Option<f64>, Option<f64>, Option<f64>)> {
        let backend_seconds = if backend.is_empty() {
            None
        } else {
            Some(backend.iter().map(ProcessCpu::seconds).sum::<Result<f64, _>>()?)
        };
        Ok((
            cpu.map(|c| c.seconds()).transpose()?,
            Some(client.seconds()?),
            backend_seconds,
        ))
    };
    let mut result = RunResult {
        scenario: args.scenario.clone().unwrap_or_else(|| default_scenario(args)),
        peer: args.label.clone(),
        message_size: args.message_size,
        acks: args.acks.clone(),
        rate_limit_mb_s: args.produce_rate_limit,
        ..RunResult::default()
    };
    let mut produced = None;
    if args.mode != Mode::Consume {
        let amount = match (args.messages, args.duration_seconds) {
            (Some(n), _) => produce::Amount::Messages(n),
            (None, Some(s)) => produce::Amount::Duration(Duration::from_secs(s)),
            (None, None) => bail!("produce needs --messages or --duration-seconds"),
        };
        let spec = produce::ProduceSpec {
            bootstrap: args.bootstrap.clone(),
            topic: args.topic.clone(),
            message_size: args.message_size,
            amount,
            acks: args.acks.clone(),
            rate_limit_bytes_per_sec: args.produce_rate_limit.map(|r| r * MB),
            linger_ms: args.linger_ms,
            extra: args.producer_properties.clone(),
        };
        let before = sample()?;
        let stats = produce::run(&spec).context("produce phase")?;
        let after = sample()?;
        let secs = stats.elapsed.as_secs_f64();
        result.produce_mb_s = Some(stats.bytes as f64 / MB / secs);
        result.produce_msgs_s = Some(stats.messages as f64 / secs);
        result.p50_ms = Some(stats.latency_ms(0.50));
        result.p99_ms = Some(stats.latency_ms(0.99));
        result.max_ms = Some(stats.latency_ms(1.0));
        result.cpu_s_per_gb_produce = cpu_per_gb(before.0, after.0, stats.bytes);
        result.client_cpu_s_per_gb_produce = cpu_per_gb(before.1, after.1, stats.bytes);
        result.backend_cpu_s_per_gb_produce = cpu_per_gb(before.2, after.2, stats.bytes);
        eprintln!(
            "produced {} messages, {} bytes in {secs:.2}s",
            stats.messages, stats.bytes
        );
        produced = Some(stats.messages);
    }
    if args.mode != Mode::Produce {
        std::thread::sleep(Duration::from_secs(args.consume_delay_seconds));
        let spec = consume::ConsumeSpec {
            bootstrap: args.bootstrap.clone(),
            topic: args.topic.clone(),
            partitions,
            expected: produced,
            stall_timeout: timeout,
            extra: args.consumer_properties.clone(),
        };
        let before = sample()?;
        let stats = match consume::run(&spec) {
            Ok(stats) => stats,
            Err(e) if produced.is_some() => {
                // Keep the produce figures: the row is written, then the run fails.
                result.error = Some(format!("consume phase: {e}"));
                return Ok(result);
            }
            Err(e) => return Err(e).context("consume phase"),
        };
        let after = sample()?;
        let secs = stats.elapsed.as_secs_f64();
        result.consume_mb_s = Some(stats.bytes as f64 / MB / secs);
        result.consume_msgs_s = Some(stats.messages as f64 / secs);
        result.cpu_s_per_gb_consume = cpu_per_gb(before.0, after.0, stats.bytes);
        result.client_cpu_s_per_gb_consume = cpu_per_gb(before.1, after.1, stats.bytes);
        result.backend_cpu_s_per_gb_consume = cpu_per_gb(before.2, after.2, stats.bytes);
        eprintln!(
            "consumed {} messages, {} bytes in {secs:.2}s",
            stats.messages, stats.bytes
        );
    }
    Ok(result)
}

fn default_scenario(args: &RunArgs) -> String {
    let rate = args
        .produce_rate_limit
        .map(|r| format!("-at-{r}MBps"))
        .unwrap_or_default();
    format!("{}B-acks-{}{rate}", args.message_size, args.acks)
}

fn cpu_per_gb(before: Option<f64>, after: Option<f64>, bytes: u64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if bytes > 0 => Some((a - b) / (bytes as f64 / GB)),
        _ => None,
    }
}
