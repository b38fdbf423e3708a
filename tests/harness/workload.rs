//! A producer and a consumer group member running against a cluster while a test kills,
//! restarts, adds, removes or partitions nodes (`tests/clients/cluster_clients.py`).
//!
//! A recorder thread owns both client processes and timestamps every event as it arrives, so
//! durations measured against [`Instant`]s taken by the test (a kill, a cut) are accurate to the
//! poll interval even while the test is blocked elsewhere.
//!
//! Invariants checked by [`Workload::finish`]: every acknowledged record is consumed at least
//! once, and each partition's successfully committed offsets never decrease.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use serde_json::Value;

use super::client::{BackgroundClient, ClientCommand};
use super::cluster::poll_until;
use super::phase::{note, phase};

/// How long the recorder waits for a line before checking for commands.
const LINE_POLL: Duration = Duration::from_millis(10);
/// Upper bound of the delay between a client printing an event and the recorder timestamping
/// it; events timestamped within this much after an instant may have happened before it.
pub const IN_FLIGHT: Duration = Duration::from_millis(200);
/// How long a client may take to exit after "stop" before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// One successful commit: when it was reported and the committed offsets per partition.
pub type Commit = (Instant, BTreeMap<i32, i64>);

/// What the clients reported so far.
#[derive(Debug, Default)]
pub struct Events {
    /// Acknowledged record indexes with their arrival instants.
    pub acked: BTreeMap<u64, Instant>,
    /// Records the producer gave up on.
    pub nacked: u64,
    /// Record indexes consumed (at least once).
    pub consumed: BTreeSet<u64>,
    /// Successful commits in report order.
    pub commits: Vec<Commit>,
    /// Failed commits: arrival instant and error text.
    pub commit_errors: Vec<(Instant, String)>,
    /// Stdout of each client closed (producer, consumer).
    pub closed: [bool; 2],
}

#[derive(Debug)]
enum Cmd {
    Stop(usize),
}

/// A running producer + consumer pair.
#[derive(Debug)]
pub struct Workload {
    label: String,
    events: Arc<Mutex<Events>>,
    cmd: mpsc::Sender<Cmd>,
    recorder: Option<JoinHandle<Vec<(String, String)>>>,
}

fn lock(m: &Mutex<Events>) -> MutexGuard<'_, Events> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Workload {
    /// Starts `cluster_clients.py produce` (at `rate` records/s over `partitions` partitions of
    /// `topic`) and `cluster_clients.py consume` in `group`, both bootstrapped from `bootstrap`.
    ///
    /// # Errors
    /// A client fails to spawn.
    pub fn start(bootstrap: &str, topic: &str, group: &str, partitions: i32, rate: u32) -> Result<Self> {
        phase(format!("start workload: producer on {topic}, group {group}"));
        let common = |scenario: &str| {
            ClientCommand::python("cluster_clients.py")
                .arg(bootstrap)
                .arg(scenario)
                .args(["--topic", topic, "--group", group])
                .args([
                    "--partitions",
                    &partitions.to_string(),
                    "--rate",
                    &rate.to_string(),
                ])
        };
        let clients = vec![common("produce").spawn()?, common("consume").spawn()?];
        let events = Arc::new(Mutex::new(Events::default()));
        let (cmd, rx) = mpsc::channel();
        let sink = Arc::clone(&events);
        let recorder = std::thread::Builder::new()
            .name(format!("workload-{group}"))
            .spawn(move || record(clients, &sink, &rx))?;
        Ok(Self {
            label: group.to_owned(),
            events,
            cmd,
            recorder: Some(recorder),
        })
    }

    /// A view of the events so far.
    pub fn events(&self) -> MutexGuard<'_, Events> {
        lock(&self.events)
    }

    /// Waits until `pred` holds for the events.
    ///
    /// # Errors
    /// Not within `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&Events) -> bool) -> Result<()> {
        poll_until(&format!("{}: {what}", self.label), timeout, || {
            let ev = self.events();
            ensure!(!ev.closed[0] && !ev.closed[1], "a client exited early");
            Ok(pred(&ev).then_some(()))
        })
        .map_err(|e| anyhow!("{e:#}\n{}", self.summary()))
    }

    /// Waits for the first successful commit reported more than [`IN_FLIGHT`] after `since`
    /// (an event such as a kill) and returns how long after `since` it arrived. Commits reported
    /// within [`IN_FLIGHT`] may have been answered before the event and do not count.
    ///
    /// # Errors
    /// No such commit within `timeout`.
    pub fn commit_after(&self, since: Instant, timeout: Duration) -> Result<Duration> {
        let after = since + IN_FLIGHT;
        self.wait("a commit succeeds", timeout, |ev| {
            ev.commits.last().is_some_and(|(t, _)| *t > after)
        })?;
        let ev = self.events();
        let first = ev
            .commits
            .iter()
            .find(|(t, _)| *t > after)
            .ok_or_else(|| anyhow!("commit vanished"))?;
        Ok(first.0 - since)
    }

    /// Waits until at least `n` more records than now are acknowledged and consumed.
    ///
    /// # Errors
    /// Not within `timeout`.
    pub fn progress(&self, n: usize, timeout: Duration) -> Result<()> {
        let (a, c) = {
            let ev = self.events();
            (ev.acked.len(), ev.consumed.len())
        };
        self.wait(&format!("{n} more records acked and consumed"), timeout, |ev| {
            ev.acked.len() >= a + n && ev.consumed.len() >= c + n
        })
    }

    fn summary(&self) -> String {
        let ev = self.events();
        format!(
            "workload {}: {} acked, {} nacked, {} consumed, {} commits, {} commit errors (last: {:?})",
            self.label,
            ev.acked.len(),
            ev.nacked,
            ev.consumed.len(),
            ev.commits.len(),
            ev.commit_errors.len(),
            ev.commit_errors.last().map(|(_, e)| e)
        )
    }

    /// Stops the producer, waits until every acknowledged record is consumed, stops the
    /// consumer (which commits its final positions) and checks the invariants. Returns the
    /// highest committed offset per partition (the final committed state).
    ///
    /// # Errors
    /// A record acknowledged but never consumed, a committed offset that went backwards, or a
    /// client failing.
    pub fn finish(mut self, timeout: Duration) -> Result<BTreeMap<i32, i64>> {
        phase(format!("finish workload {}", self.label));
        let start = Instant::now();
        let _ = self.cmd.send(Cmd::Stop(0));
        poll_until("producer done", timeout, || {
            Ok(self.events().closed[0].then_some(()))
        })?;
        note(format!("producer flushed and exited after {:?}", start.elapsed()));
        self.wait_consumed(timeout)?;
        note(format!("every acked record consumed after {:?}", start.elapsed()));
        let _ = self.cmd.send(Cmd::Stop(1));
        let failures = self
            .recorder
            .take()
            .ok_or_else(|| anyhow!("recorder gone"))?
            .join()
            .map_err(|_| anyhow!("recorder panicked"))?;
        note(format!(
            "consumer committed and exited after {:?}",
            start.elapsed()
        ));
        ensure!(failures.is_empty(), "clients failed: {failures:#?}");
        note(self.summary());
        let ev = self.events();
        ensure!(ev.nacked == 0, "{} records were not acknowledged", ev.nacked);
        check_monotonic(&ev.commits)
    }

    fn wait_consumed(&self, timeout: Duration) -> Result<()> {
        poll_until("every acked record consumed", timeout, || {
            let ev = self.events();
            ensure!(!ev.closed[1], "consumer exited early");
            let missing: Vec<u64> = ev
                .acked
                .keys()
                .filter(|i| !ev.consumed.contains(i))
                .take(10)
                .copied()
                .collect();
            if missing.is_empty() {
                return Ok(Some(()));
            }
            bail!("acked but not consumed (first 10): {missing:?}")
        })
        .map_err(|e| anyhow!("{e:#}\n{}", self.summary()))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Stop(0));
        let _ = self.cmd.send(Cmd::Stop(1));
        if let Some(recorder) = self.recorder.take() {
            let _ = recorder.join();
        }
    }
}

/// Fails when a partition's committed offset decreases from one successful commit to a later one;
/// returns the highest committed offset per partition.
pub fn check_monotonic(commits: &[Commit]) -> Result<BTreeMap<i32, i64>> {
    let mut high: BTreeMap<i32, i64> = BTreeMap::new();
    for (n, (_, offsets)) in commits.iter().enumerate() {
        for (p, o) in offsets {
            let prev = high.entry(*p).or_insert(*o);
            ensure!(
                *o >= *prev,
                "commit #{n}: partition {p} went back from {prev} to {o}"
            );
            *prev = *o;
        }
    }
    Ok(high)
}

/// The recorder: reads both clients' lines into `events` until both exit; returns the label and
/// stderr of each client that failed.
fn record(
    mut clients: Vec<BackgroundClient>,
    events: &Mutex<Events>,
    cmds: &mpsc::Receiver<Cmd>,
) -> Vec<(String, String)> {
    let mut stop_deadline: [Option<Instant>; 2] = [None, None];
    loop {
        while let Ok(Cmd::Stop(i)) = cmds.try_recv() {
            if let (Some(c), None) = (clients.get_mut(i), stop_deadline[i]) {
                let _ = c.send_line("stop");
                stop_deadline[i] = Some(Instant::now() + STOP_GRACE);
            }
        }
        for (i, client) in clients.iter_mut().enumerate() {
            if lock(events).closed[i] {
                continue;
            }
            if stop_deadline[i].is_some_and(|d| Instant::now() > d) {
                // Told to stop and still running: a hung client must not hang the test.
                client.kill();
            }
            match client.next_line(LINE_POLL) {
                Ok(Some(line)) => apply(&line, i, events),
                Ok(None) => lock(events).closed[i] = true,
                Err(_) => {}
            }
        }
        if lock(events).closed == [true, true] {
            break;
        }
    }
    let mut failures = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let ok = client
            .wait(Duration::from_secs(30))
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            failures.push((["producer", "consumer"][i].to_owned(), client.stderr()));
        }
    }
    failures
}

fn apply(line: &str, client: usize, events: &Mutex<Events>) {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let now = Instant::now();
    let mut ev = lock(events);
    match (client, v["e"].as_str()) {
        (0, Some("ack")) => {
            if let Some(i) = v["i"].as_u64() {
                ev.acked.insert(i, now);
            }
        }
        (0, Some("nack")) => ev.nacked += 1,
        (1, Some("rec")) => {
            if let Some(i) = v["i"].as_u64() {
                ev.consumed.insert(i);
            }
        }
        (1, Some("commit")) => {
            let offsets = v["offsets"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default();
            ev.commits.push((now, offsets));
        }
        (1, Some("commit_error")) => {
            let err = v["err"].as_str().unwrap_or_default().to_owned();
            ev.commit_errors.push((now, err));
        }
        _ => {}
    }
}


/// Checks the summary line of a client's `await-send` scenario (`count` sends, each awaited
/// before the next; fields `acked`, `read`, `elapsed_s`, `p50_ms`, `p99_ms`, `max_ms`): every
/// send acknowledged within `budget` and read back. Notes the figures.
///
/// # Errors
/// A send not acknowledged, the budget exceeded, or a record not read back.
pub fn check_awaited_sends(
    what: &str,
    count: u32,
    budget: std::time::Duration,
    out: &Value,
) -> Result<()> {
    let elapsed = out["elapsed_s"].as_f64().unwrap_or(f64::INFINITY);
    let secs = budget.as_secs();
    note(format!(
        "{what}: {} of {count} sends in {elapsed:.2} s, p50 {} ms, p99 {} ms, max {} ms",
        out["acked"], out["p50_ms"], out["p99_ms"], out["max_ms"]
    ));
    ensure!(
        out["acked"] == count,
        "every awaited send acknowledged within {secs} s: {out}"
    );
    ensure!(
        elapsed <= budget.as_secs_f64(),
        "{count} awaited sends took {elapsed:.1} s, over {secs} s: {out}"
    );
    ensure!(out["read"] == count, "every record read back in order: {out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_committed_offset_going_back() {
        let t = Instant::now();
        let c = |o: i64| (t, BTreeMap::from([(0, o), (1, 5)]));
        assert!(check_monotonic(&[c(1), c(3), c(3)]).is_ok());
        assert!(check_monotonic(&[c(1), c(3), c(2)]).is_err());
    }
}
