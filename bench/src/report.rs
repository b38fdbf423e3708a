//! Result rows: one JSON line per run for machines, one markdown row per run for docs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// Everything measured in one run against one broker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Scenario name shared by the peers of one comparison (e.g. `1KiB-acks-all`).
    pub scenario: String,
    /// Broker under test (e.g. `gateway`, `tansu-memory`).
    pub peer: String,
    /// Payload bytes per message.
    pub message_size: usize,
    /// Producer `acks`.
    pub acks: String,
    /// Produce pacing in MB/s, if any.
    pub rate_limit_mb_s: Option<f64>,
    /// Produce throughput, MB/s (10^6 payload bytes).
    pub produce_mb_s: Option<f64>,
    /// Produce throughput, messages per second.
    pub produce_msgs_s: Option<f64>,
    /// Median enqueue-to-ack latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile enqueue-to-ack latency, ms.
    pub p99_ms: Option<f64>,
    /// Worst enqueue-to-ack latency, ms.
    pub max_ms: Option<f64>,
    /// Consume throughput, MB/s.
    pub consume_mb_s: Option<f64>,
    /// Consume throughput, messages per second.
    pub consume_msgs_s: Option<f64>,
    /// Broker CPU seconds per 10^9 payload bytes produced.
    pub cpu_s_per_gb_produce: Option<f64>,
    /// Broker CPU seconds per 10^9 payload bytes consumed.
    pub cpu_s_per_gb_consume: Option<f64>,
    /// Bench client (librdkafka) CPU seconds per 10^9 payload bytes produced.
    #[serde(default)]
    pub client_cpu_s_per_gb_produce: Option<f64>,
    /// Bench client (librdkafka) CPU seconds per 10^9 payload bytes consumed.
    #[serde(default)]
    pub client_cpu_s_per_gb_consume: Option<f64>,
    /// Storage backend (e.g. SeaweedMQ broker and server) CPU seconds per 10^9 bytes produced.
    #[serde(default)]
    pub backend_cpu_s_per_gb_produce: Option<f64>,
    /// Storage backend CPU seconds per 10^9 bytes consumed.
    #[serde(default)]
    pub backend_cpu_s_per_gb_consume: Option<f64>,
    /// Why a later phase failed after the earlier ones were measured (e.g. a consume stall).
    #[serde(default)]
    pub error: Option<String>,
}

const COLUMNS: [&str; 16] = [
    "scenario",
    "peer",
    "msg B",
    "acks",
    "rate MB/s",
    "prod MB/s",
    "prod msg/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "cons MB/s",
    "cons msg/s",
    "broker CPU s/GB prod",
    "broker CPU s/GB cons",
    "client CPU s/GB prod",
    "client CPU s/GB cons",
];

/// The markdown table header matching [`RunResult::markdown_row`].
pub fn markdown_header() -> String {
    let separator: Vec<&str> = COLUMNS.iter().map(|_| "---").collect();
    format!("| {} |\n| {} |", COLUMNS.join(" | "), separator.join(" | "))
}

pub(crate) fn cell(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v >= 1000.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

impl RunResult {
    /// One markdown table row.
    pub fn markdown_row(&self) -> String {
        let cells = [
            self.scenario.clone(),
            self.peer.clone(),
            self.message_size.to_string(),
            self.acks.clone(),
            cell(self.rate_limit_mb_s),
            cell(self.produce_mb_s),
            cell(self.produce_msgs_s),
            cell(self.p50_ms),
            cell(self.p99_ms),
            cell(self.max_ms),
            cell(self.consume_mb_s),
            cell(self.consume_msgs_s),
            cell(self.cpu_s_per_gb_produce),
            cell(self.cpu_s_per_gb_consume),
            cell(self.client_cpu_s_per_gb_produce),
            cell(self.client_cpu_s_per_gb_consume),
        ];
        format!("| {} |", cells.join(" | "))
    }

    /// Appends this result as one JSON line to `path`.
    pub fn append_to(&self, path: &str) -> Result<()> {
        let fail = |reason: String| BenchError::Results {
            path: path.to_string(),
            reason,
        };
        let line = serde_json::to_string(self).map_err(|e| fail(e.to_string()))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| fail(e.to_string()))?;
        writeln!(file, "{line}").map_err(|e| fail(e.to_string()))
    }
}

/// Reads every JSON line of a results file.
pub fn read_results(path: &str) -> Result<Vec<RunResult>> {
    read_json_lines(path)
}

/// Reads every non-blank line of a JSON-lines file as one `T`.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(path: &str) -> Result<Vec<T>> {
    let fail = |reason: String| BenchError::Results {
        path: path.to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| fail(e.to_string())))
        .collect()
}

pub(crate) fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    }
}

/// A markdown table of `ours`/`baseline` ratios per scenario, for scenarios both peers ran.
pub fn ratio_table(results: &[RunResult], ours: &str, baseline: &str) -> String {
    let mut by_scenario: BTreeMap<&str, (Option<&RunResult>, Option<&RunResult>)> = BTreeMap::new();
    for result in results {
        let entry = by_scenario.entry(result.scenario.as_str()).or_default();
        if result.peer == ours {
            entry.0 = Some(result);
        } else if result.peer == baseline {
            entry.1 = Some(result);
        }
    }
    let mut out = format!(
        "| scenario | prod MB/s {ours}/{baseline} | p99 {ours}/{baseline} | cons MB/s {ours}/{baseline} \
         | broker CPU s/GB prod {ours}/{baseline} |\n| --- | --- | --- | --- | --- |\n"
    );
    for (scenario, pair) in by_scenario {
        if let (Some(a), Some(b)) = pair {
            let _ = writeln!(
                out,
                "| {scenario} | {} | {} | {} | {} |",
                ratio(a.produce_mb_s, b.produce_mb_s),
                ratio(a.p99_ms, b.p99_ms),
                ratio(a.consume_mb_s, b.consume_mb_s),
                ratio(a.cpu_s_per_gb_produce, b.cpu_s_per_gb_produce),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(scenario: &str, peer: &str, produce: f64) -> RunResult {
        RunResult {
            scenario: scenario.into(),
            peer: peer.into(),
            produce_mb_s: Some(produce),
            ..RunResult::default()
        }
    }

    #[test]
    fn row_has_one_cell_per_header_column() {
        let row = result("s", "p", 123.456).markdown_row();
        let header = markdown_header();
        let first_header_line = header.lines().next().unwrap_or_default();
        assert_eq!(row.matches('|').count(), first_header_line.matches('|').count());
        assert!(row.contains("| 123.5 |"));
    }

    #[test]
    fn ratio_table_pairs_peers_by_scenario() {
        let results = vec![
            result("a", "gw", 300.0),
            result("a", "tansu", 100.0),
            result("b", "gw", 1.0),
        ];
        let table = ratio_table(&results, "gw", "tansu");
        assert!(table.contains("| a | 3.00x |"), "{table}");
        assert!(!table.contains("| b |"), "{table}");
    }
}
