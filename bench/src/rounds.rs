//! Paired rounds of `smq-report`: in each round our acks=1 path and the direct-publish ceiling
//! produce the same messages back to back, so a round's ratio compares the two under the same
//! background load. Two views of each round:
//!
//! * the wall-clock rate ratio, as the clients measured it;
//! * SeaweedMQ's CPU per message, including the flushing a run leaves behind (recorded by
//!   `scripts/bench-smq.sh` until SeaweedMQ is idle again). SeaweedMQ acknowledges a publish
//!   before it flushes, so a run of a few seconds leaves part of its cost for later, and a faster
//!   run leaves a larger part. When SeaweedMQ is the bottleneck (its CPUs busy throughout) the
//!   rate it can sustain is set by this total, so the ratio of the totals is the sustained-rate
//!   ratio the wall clock of a short run only approximates.
//!
//! Verdicts are on the median round (an odd count of rounds makes it one measured round, not an
//! average).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::error::Result;
use crate::report::{read_json_lines, RunResult};

/// The target ratio to the ceiling.
const TARGET: f64 = 0.8;

/// SeaweedMQ's CPU for one produce run, flush included (one line of `smq-cpu.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct SmqCpu {
    /// Scenario name (`<name>-round<k>` for paired rounds).
    pub scenario: String,
    /// Peer label.
    pub peer: String,
    /// Payload bytes per message.
    pub message_size: usize,
    /// Messages produced.
    pub messages: u64,
    /// CPU seconds of every SeaweedMQ process from the run's start until SeaweedMQ was idle.
    pub smq_cpu_s: f64,
}

/// Reads a JSON-lines file of [`SmqCpu`].
///
/// # Errors
/// [`crate::error::BenchError::Results`] when the file cannot be read or a line is malformed.
pub fn read_smq_cpu(path: &str) -> Result<Vec<SmqCpu>> {
    read_json_lines(path)
}

/// The round number of a paired-round scenario (`<name>-round<k>`), `None` for other rows.
pub fn round_of(scenario: &str) -> Option<u32> {
    scenario.rsplit_once("-round")?.1.parse().ok()
}

/// (message size, our label) -> each round's ratio, in round order.
type Ratios<'a> = BTreeMap<(usize, &'a str), Vec<(u32, f64)>>;

/// Per round, `value(ours) / value(ceiling)` for each of `ours` (a higher ratio is better for us).
fn round_ratios<'a, T>(
    rows: &'a [T],
    key: impl Fn(&'a T) -> Option<(usize, u32, &'a str, f64)>,
    ours: &'a [String],
    ceiling: &str,
) -> Ratios<'a> {
    let mut rounds: BTreeMap<(usize, u32), BTreeMap<&str, f64>> = BTreeMap::new();
    for (size, k, peer, value) in rows.iter().filter_map(key) {
        rounds.entry((size, k)).or_default().insert(peer, value);
    }
    let mut ratios = Ratios::new();
    for ((size, k), peers) in &rounds {
        let Some(&base) = peers.get(ceiling).filter(|&&c| c > 0.0) else {
            continue;
        };
        for o in ours {
            if let Some(&value) = peers.get(o.as_str()) {
                ratios
                    .entry((*size, o.as_str()))
                    .or_default()
                    .push((*k, value / base));
            }
        }
    }
    ratios
}

fn table(out: &mut String, title: &str, column: &str, ratios: &Ratios<'_>) {
    let _ = writeln!(
        out,
        "\n{title}\n\n| msg B | ours | {column} per round | median (target ≥ {TARGET:.2}x) |\n| --- | --- | --- | --- |"
    );
    for ((size, o), per_round) in ratios {
        let listed: Vec<String> = per_round.iter().map(|(k, r)| format!("r{k} {r:.2}x")).collect();
        let mut sorted: Vec<f64> = per_round.iter().map(|(_, r)| *r).collect();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let met = if median >= TARGET { "met" } else { "missed" };
        let _ = writeln!(
            out,
            "| {size} | {o} | {} | {median:.2}x ({met}) |",
            listed.join(", ")
        );
    }
}

/// Appends the paired-round tables: wall-clock rate ratios from `results`, and sustained-rate
/// ratios from SeaweedMQ's flush-inclusive CPU per message in `cpu`.
pub fn paired_rounds(
    out: &mut String,
    results: &[RunResult],
    cpu: &[SmqCpu],
    ours: &[String],
    ceiling: &str,
) {
    let rates = round_ratios(
        results,
        |r| {
            Some((
                r.message_size,
                round_of(&r.scenario)?,
                r.peer.as_str(),
                r.produce_msgs_s?,
            ))
        },
        ours,
        ceiling,
    );
    if !rates.is_empty() {
        table(
            out,
            &format!("Paired rounds (produce only, ours and {ceiling} back to back in each round):"),
            &format!("ours/{ceiling} rate"),
            &rates,
        );
    }
    // Messages per SMQ CPU-second: the rate SMQ could sustain on one CPU.
    let sustained = round_ratios(
        cpu,
        |c| {
            let k = round_of(&c.scenario)?;
            (c.smq_cpu_s > 0.0).then(|| {
                (
                    c.message_size,
                    k,
                    c.peer.as_str(),
                    c.messages as f64 / c.smq_cpu_s,
                )
            })
        },
        ours,
        ceiling,
    );
    if !sustained.is_empty() {
        table(
            out,
            &format!(
                "Same rounds, SeaweedMQ CPU per message including the flushing each run left behind \
                 ({ceiling}'s CPU per message / ours: the rate ratio SeaweedMQ can sustain when it is the bottleneck):"
            ),
            &format!("{ceiling}/ours SMQ CPU per msg"),
            &sustained,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(peer: &str, k: u32, produce: f64) -> RunResult {
        RunResult {
            scenario: format!("100B-round{k}"),
            peer: peer.into(),
            message_size: 100,
            produce_msgs_s: Some(produce),
            ..RunResult::default()
        }
    }

    fn cpu(peer: &str, k: u32, messages: u64, smq_cpu_s: f64) -> SmqCpu {
        SmqCpu {
            scenario: format!("100B-round{k}"),
            peer: peer.into(),
            message_size: 100,
            messages,
            smq_cpu_s,
        }
    }

    #[test]
    fn paired_rounds_report_each_round_and_the_median_ratio() {
        let results = vec![
            round("direct", 1, 100.0),
            round("ours", 1, 70.0),
            round("ours", 2, 90.0),
            round("direct", 2, 100.0),
            round("direct", 3, 200.0),
            round("ours", 3, 170.0),
        ];
        assert_eq!(round_of("100B-round12"), Some(12));
        assert_eq!(round_of("1KiB"), None);
        let mut out = String::new();
        paired_rounds(&mut out, &results, &[], &["ours".into()], "direct");
        assert!(
            out.contains("| 100 | ours | r1 0.70x, r2 0.90x, r3 0.85x | 0.85x (met) |"),
            "{out}"
        );
        assert!(
            !out.contains("SeaweedMQ CPU"),
            "no CPU table without CPU lines: {out}"
        );
    }

    #[test]
    fn sustained_ratio_is_the_ceilings_cpu_per_message_over_ours() {
        // Round 1: the ceiling used 8 s for 1M messages, ours 10 s for 1M: 0.80x.
        // Round 2: ours 12 s for 1M against 9 s: 0.75x. Round 3: 9 s each: 1.00x.
        let cpu = vec![
            cpu("direct", 1, 1_000_000, 8.0),
            cpu("ours", 1, 1_000_000, 10.0),
            cpu("ours", 2, 1_000_000, 12.0),
            cpu("direct", 2, 1_000_000, 9.0),
            cpu("direct", 3, 500_000, 4.5),
            cpu("ours", 3, 500_000, 4.5),
            cpu("ours", 4, 500_000, 0.0),
        ];
        let mut out = String::new();
        paired_rounds(&mut out, &[], &cpu, &["ours".into()], "direct");
        assert!(
            out.contains("| 100 | ours | r1 0.80x, r2 0.75x, r3 1.00x | 0.80x (met) |"),
            "{out}"
        );
        assert!(
            !out.contains("Paired rounds (produce only"),
            "no rate table without rows: {out}"
        );
    }

    #[test]
    fn cpu_lines_parse() {
        let dir = std::env::temp_dir().join(format!("smq-cpu-{}.jsonl", std::process::id()));
        let line = r#"{"scenario":"1KiB-round2","peer":"smq-direct","message_size":1024,"messages":500000,"smq_cpu_s":4.31}"#;
        std::fs::write(&dir, format!("{line}\n\n")).unwrap();
        let parsed = read_smq_cpu(dir.to_str().unwrap()).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(round_of(&parsed[0].scenario), Some(2));
        assert!((parsed[0].smq_cpu_s - 4.31).abs() < 1e-9);
    }
}
