//! Consumer groups with real clients: rebalances (eager range and cooperative-sticky), commit and
//! resume across a gateway restart, manual-assignment commits, group admin, and the group
//! consumers of kafka-python, kafkajs and kcat. Commit/resume and the group consumers of each
//! client run on both storage backends; rebalancing and group admin do not touch record storage
//! and run on the local backend only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tests::harness::phase::note;
use tests::harness::raw::create_topic;
use tests::{backend_tests, phase, Backend, BackgroundClient, ClientCommand, Gateway, GatewayOptions};

const REBALANCE_DEADLINE: Duration = Duration::from_secs(90);

/// Members of one group, each a `confluent_group.py member` process, with their reported ownership.
struct Members<'a> {
    gw: &'a Gateway,
    topic: &'a str,
    group: &'a str,
    assignor: &'a str,
    procs: BTreeMap<String, BackgroundClient>,
    owned: BTreeMap<String, BTreeSet<u64>>,
}

impl<'a> Members<'a> {
    fn new(gw: &'a Gateway, topic: &'a str, group: &'a str, assignor: &'a str) -> Self {
        Self {
            gw,
            topic,
            group,
            assignor,
            procs: BTreeMap::new(),
            owned: BTreeMap::new(),
        }
    }

    fn join(&mut self, name: &str) -> Result<()> {
        phase(format!("member {name} joins ({})", self.assignor));
        let client = ClientCommand::python("confluent_group.py")
            .arg(self.gw.bootstrap())
            .arg("member")
            .args([
                "--group",
                self.group,
                "--topic",
                self.topic,
                "--name",
                name,
                "--assignor",
                self.assignor,
            ])
            .spawn()?;
        self.procs.insert(name.to_owned(), client);
        self.owned.insert(name.to_owned(), BTreeSet::new());
        Ok(())
    }

    fn leave(&mut self, name: &str) -> Result<()> {
        phase(format!("member {name} leaves"));
        let mut client = self.procs.remove(name).context("no such member")?;
        self.owned.remove(name);
        client.send_line("leave")?;
        client.wait_for_json(REBALANCE_DEADLINE, |v| v["event"] == "left")?;
        let status = client.wait(Duration::from_secs(30))?;
        ensure!(
            status.success(),
            "member {name} exited with {status}: {}",
            client.stderr()
        );
        Ok(())
    }

    /// Applies every ownership report received so far (waiting at most `slice` per member).
    fn pump(&mut self, slice: Duration) -> Result<()> {
        for (name, client) in &mut self.procs {
            while let Some(line) = client.try_line(slice) {
                let event: Value =
                    serde_json::from_str(&line).with_context(|| format!("member line {line:?}"))?;
                if event["event"] == "owned" {
                    let owned = event["owned"].as_array().context("owned list")?;
                    let set = owned.iter().filter_map(Value::as_u64).collect();
                    note(format!("{name} owns {set:?}"));
                    self.owned.insert(name.clone(), set);
                }
            }
        }
        Ok(())
    }

    /// Every live member owns at least one partition, no partition is owned twice, none orphaned.
    fn balanced(&self, partitions: u64) -> bool {
        let mut seen = BTreeSet::new();
        for set in self.owned.values() {
            if set.is_empty() || !set.iter().all(|p| seen.insert(*p)) {
                return false;
            }
        }
        seen == (0..partitions).collect()
    }

    fn wait_balanced(&mut self, partitions: u64) -> Result<()> {
        let deadline = Instant::now() + REBALANCE_DEADLINE;
        loop {
            self.pump(Duration::from_millis(20))?;
            if self.balanced(partitions) {
                note(format!("balanced: {:?}", self.owned));
                return Ok(());
            }
            if Instant::now() >= deadline {
                let stderr: Vec<String> = self
                    .procs
                    .iter()
                    .map(|(n, c)| format!("{n}: {}", c.stderr()))
                    .collect();
                bail!(
                    "group not balanced within {REBALANCE_DEADLINE:?}: {:?}\n{}",
                    self.owned,
                    stderr.join("\n")
                );
            }
        }
    }
}

fn rebalance_scenario(name: &str, assignor: &str) -> Result<()> {
    let gw = Gateway::start(name, GatewayOptions::default())?;
    create_topic(gw.kafka_addr(), "rebalance", 6)?;
    let mut members = Members::new(&gw, "rebalance", "rebalance-group", assignor);
    for m in ["m1", "m2", "m3"] {
        members.join(m)?;
    }
    members.wait_balanced(6)?;
    members.leave("m2")?;
    members.wait_balanced(6)?;
    members.join("m4")?;
    members.wait_balanced(6)?;
    for m in ["m1", "m3", "m4"] {
        members.leave(m)?;
    }
    Ok(())
}

#[test]
fn confluent_eager_range_three_members_leave_and_join() -> Result<()> {
    rebalance_scenario("group-range", "range")
}

#[test]
fn confluent_cooperative_sticky_three_members_leave_and_join() -> Result<()> {
    rebalance_scenario("group-coop", "cooperative-sticky")
}

fn consume(gw: &Gateway, topic: &str, group: &str, count: usize, commit_after: usize) -> Result<Value> {
    ClientCommand::python("confluent_group.py")
        .arg(gw.bootstrap())
        .arg("consume")
        .args(["--group", group, "--topic", topic, "--count", &count.to_string()])
        .args(["--commit-after", &commit_after.to_string()])
        .run_json()
}

fn positions(v: &Value) -> Result<Vec<(u64, u64)>> {
    v["consumed"]
        .as_array()
        .context("consumed list")?
        .iter()
        .map(|pair| {
            Ok((
                pair[0].as_u64().context("partition")?,
                pair[1].as_u64().context("offset")?,
            ))
        })
        .collect()
}

backend_tests!(
    committed_offsets_survive_restart_and_consumers_resume_exactly_there,
    kafka_python_group_consumer_commits_and_resumes,
    kafkajs_group_consumer_round_trip,
    kcat_balanced_consumer_commits_and_resumes,
);

fn committed_offsets_survive_restart_and_consumers_resume_exactly_there(backend: Backend) -> Result<()> {
    let mut gw = backend.gateway("group-resume", GatewayOptions::default())?;
    create_topic(gw.kafka_addr(), "resume", 3)?;
    phase("produce 300 records over 3 partitions");
    ClientCommand::python("confluent_suite.py")
        .arg(gw.bootstrap())
        .arg("produce-acked")
        .args(["--topic", "resume", "--partitions", "3", "--count", "300"])
        .run()?;

    phase("consume 150, commit after the first 120 (the last 30 are an uncommitted tail)");
    let first = consume(&gw, "resume", "resume-group", 150, 120)?;
    let committed: BTreeMap<u64, u64> = first["committed"]
        .as_object()
        .context("committed map")?
        .iter()
        .map(|(p, o)| Ok((p.parse()?, o.as_u64().context("offset")?)))
        .collect::<Result<_>>()?;
    ensure!(
        committed.values().sum::<u64>() == 120,
        "committed positions {committed:?} cover 120 records"
    );

    gw.restart()?;
    phase("a new member resumes exactly at the committed offsets");
    let remaining = 300 - 120;
    let second = consume(&gw, "resume", "resume-group", remaining, remaining)?;
    let got: Vec<(u64, u64)> = positions(&second)?;
    let unique: BTreeSet<(u64, u64)> = got.iter().copied().collect();
    ensure!(unique.len() == got.len(), "duplicates within the resumed run");
    let want: BTreeSet<(u64, u64)> = (0..3)
        .flat_map(|p| (committed.get(&p).copied().unwrap_or(0)..100).map(move |o| (p, o)))
        .collect();
    ensure!(
        unique == want,
        "resumed run read {:?}..., want every offset from the committed ones",
        got.first()
    );
    Ok(())
}

#[test]
fn manual_assignment_consumer_commits_and_fetches_offsets_with_metadata() -> Result<()> {
    let gw = Gateway::start("group-manual", GatewayOptions::default())?;
    create_topic(gw.kafka_addr(), "manual", 2)?;
    let out = ClientCommand::python("confluent_group.py")
        .arg(gw.bootstrap())
        .arg("manual-commit")
        .args([
            "--group",
            "manual-group",
            "--topic",
            "manual",
            "--partitions",
            "2",
        ])
        .run_json()?;
    ensure!(
        out["committed"] == serde_json::json!({"0": 10, "1": 20}),
        "manual commit summary: {out}"
    );
    Ok(())
}

#[test]
fn confluent_admin_lists_describes_alters_and_deletes_groups() -> Result<()> {
    let gw = Gateway::start("group-admin", GatewayOptions::default())?;
    create_topic(gw.kafka_addr(), "resume", 2)?;
    ClientCommand::python("confluent_suite.py")
        .arg(gw.bootstrap())
        .arg("produce-acked")
        .args(["--topic", "resume", "--partitions", "2", "--count", "40"])
        .run()?;
    phase("a member consumes and commits, then leaves (group becomes empty)");
    consume(&gw, "resume", "admin-group", 40, 40)?;
    phase("admin: list (with state filter), describe, list/alter offsets, delete");
    let out = ClientCommand::python("confluent_group.py")
        .arg(gw.bootstrap())
        .arg("admin")
        .args(["--group", "admin-group", "--topic", "resume"])
        .run_json()?;
    ensure!(
        out["partitions"] == serde_json::json!([0, 1]),
        "admin summary: {out}"
    );
    Ok(())
}

fn kafka_python_group_consumer_commits_and_resumes(backend: Backend) -> Result<()> {
    let gw = backend.gateway("group-kafka-python", GatewayOptions::default())?;
    let out = ClientCommand::python("kafka_python_suite.py")
        .arg(gw.bootstrap())
        .arg("group")
        .args(["--topic", "kp-group", "--count", "100"])
        .run_json()?;
    ensure!(
        out["first"] == 100 && out["second"] == 100,
        "kafka-python group summary: {out}"
    );
    Ok(())
}

fn kafkajs_group_consumer_round_trip(backend: Backend) -> Result<()> {
    let gw = backend.gateway("group-kafkajs", GatewayOptions::default())?;
    let out = ClientCommand::node("kafkajs_suite.js")
        .arg(gw.bootstrap())
        .args(["group-consume", "kjs-group", "200"])
        .run_json()?;
    ensure!(out["count"] == 200, "kafkajs group summary: {out}");
    Ok(())
}

fn kcat_group(gw: &Gateway, count: usize) -> Result<Vec<(u64, u64, String)>> {
    let out = ClientCommand::kcat(&gw.bootstrap())
        .args([
            "-G",
            "kcat-group",
            "-X",
            "auto.offset.reset=earliest",
            "-c",
            &count.to_string(),
        ])
        .args(["-f", "%p %o %s\n", "-q", "kcat-group-topic"])
        .run()?;
    out.lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let p = parts.next().context("partition")?.parse()?;
            let o = parts.next().context("offset")?.parse()?;
            Ok((p, o, parts.next().unwrap_or_default().to_owned()))
        })
        .collect()
}

fn kcat_balanced_consumer_commits_and_resumes(backend: Backend) -> Result<()> {
    let gw = backend.gateway("group-kcat", GatewayOptions::default())?;
    create_topic(gw.kafka_addr(), "kcat-group-topic", 2)?;
    let produce = |partition: &str, from: usize, to: usize| -> Result<()> {
        let input: String = (from..to).map(|i| format!("v{i}\n")).collect();
        ClientCommand::kcat(&gw.bootstrap())
            .args(["-P", "-t", "kcat-group-topic", "-p", partition])
            .stdin(input)
            .run()
            .map(|_| ())
    };
    produce("0", 0, 50)?;
    produce("1", 50, 100)?;
    phase("kcat -G consumes all 100");
    let first = kcat_group(&gw, 100)?;
    let values: BTreeSet<String> = first.iter().map(|(_, _, v)| v.clone()).collect();
    ensure!(
        values == (0..100).map(|i| format!("v{i}")).collect(),
        "first kcat -G run read {} distinct",
        values.len()
    );
    phase("20 more records; a new kcat -G run resumes after the committed offsets");
    produce("0", 100, 120)?;
    let second = kcat_group(&gw, 20)?;
    let want: Vec<(u64, u64, String)> = (100..120).map(|i| (0, i as u64 - 50, format!("v{i}"))).collect();
    ensure!(second == want, "second kcat -G run: {second:?}");
    Ok(())
}
