//! SCRAM users managed through the Kafka admin API (DescribeUserScramCredentials,
//! AlterUserScramCredentials) with confluent-kafka's AdminClient, checked by logging in with kcat.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tests::harness::security::{Credentials, USERS};
use tests::{phase, ClientCommand, Gateway};

use crate::security::{kcat, rdkafka_props, start, FAIL_WAIT_S};

fn scram_admin(gw: &Gateway, args: &[&str]) -> Result<Value> {
    ClientCommand::python("scram_admin.py")
        .arg(gw.bootstrap())
        .args(args)
        .timeout(Duration::from_secs(60))
        .run_json()
}

#[test]
fn security_scram_users_altered_through_the_admin_api() -> Result<()> {
    let creds = Credentials::generate()?;
    let gw = start("security-scram-admin", creds.gateway_options())?;
    let addr = gw.listener_addr("SASL_SSL")?.to_string();
    let login = |user: &str, password: &str, mechanism: &str| -> Result<()> {
        let mut props = rdkafka_props(&creds, "SASL_SSL", Some(mechanism), password);
        props.retain(|(k, _)| k != "sasl.username");
        props.push(("sasl.username".into(), user.into()));
        kcat(&addr, &props)
            .args(["-L", "-m", FAIL_WAIT_S])
            .run()
            .map(drop)
    };
    phase("the users file is seeded: DescribeUserScramCredentials lists its users");
    let out = scram_admin(&gw, &["describe"])?;
    for (user, _) in USERS {
        ensure!(
            out["users"][user] == json!([["SCRAM-SHA-256", 4096], ["SCRAM-SHA-512", 4096]]),
            "{user}: {out}"
        );
    }
    phase("a user created with AlterUserScramCredentials authenticates");
    scram_admin(&gw, &["upsert", "carol", "SCRAM-SHA-512", "carol-pw", "8192"])?;
    login("carol", "carol-pw", "SCRAM-SHA-512")?;
    login("carol", "carol-pw", "PLAIN")?;
    ensure!(
        login("carol", "carol-pw", "SCRAM-SHA-256").is_err(),
        "carol has no SCRAM-SHA-256 credential"
    );
    let out = scram_admin(&gw, &["describe"])?;
    ensure!(out["users"]["carol"] == json!([["SCRAM-SHA-512", 8192]]), "{out}");

    phase("a password changed and a credential deleted take effect at once");
    scram_admin(
        &gw,
        &["upsert", USERS[1].0, "SCRAM-SHA-256", "new-bob-pw", "4096"],
    )?;
    login(USERS[1].0, "new-bob-pw", "SCRAM-SHA-256")?;
    ensure!(
        login(USERS[1].0, USERS[1].1, "SCRAM-SHA-256").is_err(),
        "the old password still works"
    );
    scram_admin(&gw, &["delete", USERS[0].0, "SCRAM-SHA-512"])?;
    ensure!(
        login(USERS[0].0, USERS[0].1, "SCRAM-SHA-512").is_err(),
        "a deleted credential still works"
    );
    login(USERS[0].0, USERS[0].1, "SCRAM-SHA-256")?;
    let err = scram_admin(&gw, &["delete", "nobody", "SCRAM-SHA-256"])
        .err()
        .context("deleted a missing credential")?;
    ensure!(format!("{err:#}").contains("RESOURCE_NOT_FOUND"), "{err:#}");

    phase("after a restart the API's changes stand (the users file is not applied twice)");
    let mut gw = gw;
    gw.restart()?;
    login("carol", "carol-pw", "SCRAM-SHA-512")?;
    ensure!(
        login(USERS[0].0, USERS[0].1, "SCRAM-SHA-512").is_err(),
        "the file brought a deleted credential back"
    );
    login(USERS[1].0, "new-bob-pw", "SCRAM-SHA-256")?;
    Ok(())
}
