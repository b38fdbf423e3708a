//! Gateway clusters as admin clients see them across failover (issue 15 item 7): every member
//! names itself as controller and serves admin requests, so an admin call sent right after a node
//! dies succeeds through a survivor within the clients' default timeouts.
//!
//! Measured durations are printed with `note` (visible with `--nocapture` or on failure).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use tests::harness::cluster::{poll_until, Boot, Cluster};
use tests::harness::phase::note;
use tests::{phase, ClientCommand};

/// Bound of every wait for the cluster to recover from a kill.
const RECOVERY: Duration = Duration::from_secs(60);
/// Bound of an admin call after a kill: well within librdkafka's 60 s admin request timeout and
/// the 30 s request timeout of Java clients, with room for an election and a slow machine.
const ADMIN_BOUND: Duration = Duration::from_secs(15);

/// Asks every node in `live` for Metadata and checks that it names a live controller it also
/// lists; returns node -> controller.
fn live_controllers(c: &mut Cluster, live: &std::collections::BTreeSet<i32>) -> Result<BTreeMap<i32, i32>> {
    let mut named = BTreeMap::new();
    for id in live {
        let md = c.metadata(*id, &[])?;
        let controller = md.controller_id.0;
        ensure!(
            live.contains(&controller) && md.brokers.iter().any(|b| b.node_id.0 == controller),
            "node {id} names controller {controller} (live {live:?}, listed {:?})",
            md.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>()
        );
        named.insert(*id, controller);
    }
    Ok(named)
}

/// Reads the next create outcome of an admin client and checks it succeeded.
fn created(out: &Value, what: &str) -> Result<()> {
    ensure!(out["e"] == "created", "{what}: {out}");
    Ok(())
}

/// Right after the raft leader's gateway dies, every survivor names a live, listed controller,
/// and a confluent-kafka AdminClient with default settings bootstrapped from a survivor creates
/// a topic within [`ADMIN_BOUND`]. On a build naming the raft leader as controller, survivors
/// name the dead node and the AdminClient times out after 60 s ("Timed out waiting for
/// controller").
#[test]
fn create_topics_right_after_the_raft_leader_is_killed() -> Result<()> {
    let topic = "cla-after-kill";
    let mut c = Cluster::start("cl-admin", 3, false, Boot::OneByOne)?;
    let leader = c.wait_converged(RECOVERY)?;
    let via = (0..3).find(|id| *id != leader).context("no follower")?;
    let bs = c.node(via)?.gw.bootstrap();
    c.node_mut(leader)?.gw.kill9()?;
    let killed = Instant::now();

    phase(format!(
        "at once: Metadata of the survivors names a live controller (leader {leader} killed)"
    ));
    let live = c.running();
    let named = live_controllers(&mut c, &live)?;
    note(format!(
        "controllers named {:?} after the kill: {named:?}",
        killed.elapsed()
    ));

    phase(format!(
        "CreateTopics through node {via} with a default AdminClient"
    ));
    let out = ClientCommand::python("cluster_clients.py")
        .args([bs.as_str(), "create", "--topic", topic, "--partitions", "3"])
        .run_json()?;
    let took = killed.elapsed();
    note(format!(
        "MEASURED CreateTopics after kill -9 of raft leader {leader}: client answered in {}s, {took:?} after the kill",
        out["elapsed"]
    ));
    created(&out, &format!("CreateTopics through node {via}"))?;
    ensure!(took < ADMIN_BOUND, "CreateTopics took {took:?} after the kill");

    phase("after the election: every survivor lists the topic and still names a live controller");
    let new_leader = c.wait_new_leader(leader, RECOVERY)?;
    note(format!(
        "node {new_leader} leads {:?} after the kill",
        killed.elapsed()
    ));
    poll_until("the topic on every survivor", RECOVERY, || {
        live_controllers(&mut c, &live)?;
        for id in &live {
            let md = c.metadata(*id, &[topic])?;
            let t = md.topics.first().ok_or_else(|| anyhow!("node {id}: no topic"))?;
            ensure!(
                t.error_code == 0 && t.partitions.len() == 3,
                "node {id}: {topic} error {} with {} partitions",
                t.error_code,
                t.partitions.len()
            );
        }
        Ok(Some(()))
    })
}

/// A long-lived AdminClient whose controller dies: bootstrapped from the raft leader alone (whose
/// Metadata names itself, as on a build naming the leader), it creates a topic, the leader is
/// killed, and its next CreateTopics must succeed within [`ADMIN_BOUND`]: the client refreshes
/// Metadata from a survivor, which names a live controller: holding no other connection, the
/// client connects to a survivor and takes its Metadata.
///
/// Not covered, because librdkafka decides it: a client that holds another broker connection
/// when its controller goes away does not refresh Metadata (its "broker down" refresh covers
/// known topics only, and an admin client knows none), so it waits for the gone controller until
/// a new connection or its periodic refresh; docs/cluster.md describes it.
#[test]
fn long_lived_admin_client_outlives_its_controller() -> Result<()> {
    let mut c = Cluster::start("cl-admin-ll", 3, false, Boot::OneByOne)?;
    let leader = c.wait_converged(RECOVERY)?;
    let bs = c.node(leader)?.gw.bootstrap();
    phase(format!("admin client bootstrapped from raft leader {leader}"));
    let mut admin = ClientCommand::python("cluster_clients.py")
        .args([bs.as_str(), "admin-session", "--partitions", "1"])
        .spawn()?;
    admin.send_line("create cla-ll-0")?;
    let line = admin.wait_for_line(RECOVERY, |l| l.contains("cla-ll-0"))?;
    created(&serde_json::from_str(&line)?, "first CreateTopics")?;

    c.node_mut(leader)?.gw.kill9()?;
    let killed = Instant::now();
    admin.send_line("create cla-ll-1")?;
    // Beyond librdkafka's 60 s admin timeout, so a timeout shows as the client's own answer.
    let line = admin.wait_for_line(Duration::from_secs(130), |l| l.contains("cla-ll-1"))?;
    let mut out: Value = serde_json::from_str(&line)?;
    if out["err"].as_str().is_some_and(|e| e.contains("_TRANSPORT")) {
        // The request left on the connection to the node just killed (librdkafka had not yet
        // seen it close): the client reports a transport failure, as against a Kafka broker
        // that dies mid-request, and does not retry admin requests itself. A retry must work.
        note(format!("CreateTopics in flight at the kill failed: {out}; retrying"));
        admin.send_line("create cla-ll-1")?;
        let line = admin.wait_for_line(Duration::from_secs(130), |l| l.contains("cla-ll-1"))?;
        out = serde_json::from_str(&line)?;
    }
    let took = killed.elapsed();
    note(format!(
        "MEASURED long-lived AdminClient CreateTopics after kill -9 of its controller, leader {leader}: {took:?} ({out})"
    ));
    created(&out, "CreateTopics after the kill")?;
    ensure!(took < ADMIN_BOUND, "CreateTopics took {took:?} after the kill");

    admin.send_line("stop")?;
    admin.wait_for_line(RECOVERY, |l| l.contains("done"))?;
    Ok(())
}
