//! SASL OAUTHBEARER with confluent-kafka: a JWT signed by the test's issuer (its public key in
//! the gateway's `--oauth-jwks-file`) authenticates over SASL_SSL and SASL_PLAINTEXT; an
//! expired token, a token of another issuer, and kcat's unsigned (`alg: none`) token fail.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tests::harness::raw::create_topic;
use tests::harness::security::{Credentials, OAuthIssuer, ISSUER};
use tests::{phase, ClientCommand};

use crate::security::{kcat, metric, start, FAIL_WAIT_S};

fn confluent(addr: &str, topic: &str, config: &Value) -> Result<Value> {
    ClientCommand::python("security_clients.py")
        .args(["confluent", addr, topic, &config.to_string()])
        .timeout(std::time::Duration::from_secs(90))
        .run_json()
}

#[test]
fn security_oauthbearer_with_signed_expired_and_foreign_tokens() -> Result<()> {
    let creds = Credentials::generate()?;
    let issuer = OAuthIssuer::generate(creds.dir())?;
    let gw = start(
        "security-oauth",
        creds
            .gateway_options()
            .arg("--oauth-jwks-file", &issuer.jwks_path().display().to_string())
            .arg("--oauth-issuer", ISSUER)
            .arg("--oauth-audience", "kafka"),
    )?;
    let ca = creds.path("ca.pem").display().to_string();
    for protocol in ["SASL_SSL", "SASL_PLAINTEXT"] {
        phase(format!("confluent-kafka with a signed token over {protocol}"));
        let addr = gw.listener_addr(protocol)?.to_string();
        let topic = format!("oauth-{}", protocol.to_lowercase());
        create_topic(gw.kafka_addr(), &topic, 1)?;
        let mut config = json!({
            "security.protocol": protocol, "sasl.mechanisms": "OAUTHBEARER",
            "oauth_token": issuer.token("svc-orders", ISSUER, 600)?,
        });
        if protocol == "SASL_SSL" {
            config["ssl.ca.location"] = json!(ca);
        }
        let out = confluent(&addr, &topic, &config)?;
        ensure!(
            out["ok"] == true && out["read"] == json!(["sec-0", "sec-1", "sec-2"]),
            "{protocol}: {out}"
        );
        gw.wait_for_log_line(std::time::Duration::from_secs(5), |l| {
            l.contains("client authenticated") && l.contains("User:svc-orders")
        })?;
    }
    let addr = gw.listener_addr("SASL_SSL")?.to_string();
    for (what, token) in [
        ("an expired token", issuer.token("svc-orders", ISSUER, -600)?),
        (
            "a token of another issuer",
            issuer.token("svc-orders", "https://evil.test", 600)?,
        ),
    ] {
        phase(format!("confluent-kafka with {what} fails"));
        let config = json!({
            "security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER",
            "ssl.ca.location": ca, "oauth_token": token,
        });
        let out = confluent(&addr, "oauth-refused", &config)?;
        ensure!(
            out["ok"] == false && out.to_string().contains("Authentication failed"),
            "{what}: {out}"
        );
    }
    phase("kcat's unsigned token (alg none) fails");
    let props: Vec<(String, String)> = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "OAUTHBEARER"),
        ("sasl.oauthbearer.config", "principal=alice"),
        ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
        ("ssl.ca.location", ca.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let err = kcat(&addr, &props)
        .args(["-L", "-m", FAIL_WAIT_S])
        .run()
        .err()
        .context("kcat authenticated with an unsigned token")?;
    ensure!(format!("{err:#}").contains("Authentication failed"), "{err:#}");
    let metrics = gw.admin_get("/metrics")?.body;
    // Clients retry a refused login, so each refused token counts at least once.
    let refused = metric(
        &metrics,
        r#"kafka_gateway_authentication_failures_total{mechanism="OAUTHBEARER",reason="invalid_token"}"#,
    );
    ensure!(
        refused >= 3.0,
        "OAUTHBEARER failures counted {refused}:\n{metrics}"
    );
    Ok(())
}
