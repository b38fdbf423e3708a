//! CPU time of another process, read from `/proc/PID/stat`.

use std::process::Command;

use crate::error::{BenchError, Result};

/// Samples the user+system CPU time a process has consumed.
#[derive(Debug, Clone, Copy)]
pub struct ProcessCpu {
    pid: u32,
    ticks_per_second: f64,
}

impl ProcessCpu {
    /// A sampler for `pid`; checks that the process is readable now.
    pub fn new(pid: u32) -> Result<Self> {
        let sampler = Self {
            pid,
            ticks_per_second: clock_ticks_per_second(),
        };
        sampler.seconds()?;
        Ok(sampler)
    }

    /// utime + stime of the process, in seconds.
    pub fn seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid);
        let text = std::fs::read_to_string(&path).map_err(|e| BenchError::ProcStat {
            pid: self.pid,
            reason: e.to_string(),
        })?;
        let ticks = parse_stat_ticks(&text).ok_or_else(|| BenchError::ProcStat {
            pid: self.pid,
            reason: "malformed stat line".into(),
        })?;
        Ok(ticks as f64 / self.ticks_per_second)
    }
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_stat_ticks(line: &str) -> Option<u64> {
    let after_comm = &line[line.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::parse_stat_ticks;

    #[test]
    fn parses_utime_and_stime_after_a_comm_with_spaces() {
        let line = "4242 (kafka gw (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(line), Some(325));
    }

    #[test]
    fn rejects_truncated_lines() {
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }
}
