//! TLS and SASL across a three-node gateway cluster over SeaweedMQ: each node's Metadata
//! answers a SASL_SSL client with every node's SASL_SSL address, and a SCRAM user created
//! through one node authenticates on the others (credentials in the replicated state).

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use tests::harness::cluster::{poll_until, Boot, Cluster};
use tests::harness::security::{Credentials, USERS};
use tests::{phase, ClientCommand};

use crate::security::{kcat, rdkafka_props, FAIL_WAIT_S};

/// Bound of each wait for the cluster to show a change on every node (generous: the suite runs
/// many gateways in parallel on small machines).
const RECOVERY: Duration = Duration::from_secs(60);

#[test]
fn security_cluster_listeners_and_credentials_across_three_nodes() -> Result<()> {
    let creds = Credentials::generate()?;
    let args = creds.args();
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut c = Cluster::start_with_listeners(
        "sec-cluster",
        3,
        false,
        Boot::Together,
        &args,
        &[("SASL_SSL", "SASL_SSL")],
    )?;
    let addrs: Vec<String> = (0..3)
        .map(|id| Ok(c.node(id)?.gw.listener_addr("SASL_SSL")?.to_string()))
        .collect::<Result<_>>()?;

    phase("every node answers a SASL_SSL client with the three nodes' SASL_SSL addresses");
    for (id, addr) in addrs.iter().enumerate() {
        let props = rdkafka_props(&creds, "SASL_SSL", Some("SCRAM-SHA-512"), USERS[0].1);
        poll_until(
            &format!("node {id} lists three SASL_SSL brokers"),
            RECOVERY,
            || {
                let md: Value = serde_json::from_str(kcat(addr, &props).args(["-L", "-J"]).run()?.trim())?;
                let mut names: Vec<String> = md["brokers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["name"].as_str().map(str::to_owned))
                    .collect();
                names.sort();
                Ok((names == addrs).then_some(()))
            },
        )?;
    }

    phase("a user created through node 0 authenticates on nodes 1 and 2");
    ClientCommand::python("scram_admin.py")
        .arg(c.bootstrap())
        .args(["upsert", "dave", "SCRAM-SHA-256", "dave-pw", "4096"])
        .timeout(Duration::from_secs(60))
        .run_json()?;
    let mut props = rdkafka_props(&creds, "SASL_SSL", Some("SCRAM-SHA-256"), "dave-pw");
    props.retain(|(k, _)| k != "sasl.username");
    props.push(("sasl.username".into(), "dave".into()));
    for addr in &addrs[1..] {
        poll_until(&format!("dave authenticates on {addr}"), RECOVERY, || {
            kcat(addr, &props).args(["-L", "-m", FAIL_WAIT_S]).run()?;
            Ok(Some(()))
        })?;
    }
    let wrong = rdkafka_props(&creds, "SASL_SSL", Some("SCRAM-SHA-256"), "not-alice-pw");
    ensure!(
        kcat(&addrs[2], &wrong)
            .args(["-L", "-m", FAIL_WAIT_S])
            .run()
            .is_err(),
        "a wrong password authenticated on node 2"
    );
    Ok(())
}
