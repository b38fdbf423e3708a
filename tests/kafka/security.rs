//! TLS and SASL on the Kafka port with real clients: kcat and confluent-kafka over SSL,
//! SASL_PLAINTEXT and SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; kafka-python and
//! kafkajs with SCRAM; mTLS with a client certificate; and the failures (wrong password,
//! untrusted certificate, plaintext client on a TLS listener, requests before authentication)
//! failing cleanly and counted. Certificates are generated at run time
//! ([`tests::harness::security`]). Local backend only: security sits above storage.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tests::harness::raw::{create_topic, CloseOutcome};
use tests::harness::security::{Credentials, CLIENT_CN, USERS};
use tests::{phase, ClientCommand, Gateway, GatewayOptions, RawClient};

const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// kcat's metadata wait (seconds) in the runs expected to fail.
pub(crate) const FAIL_WAIT_S: &str = "5";

pub(crate) fn start(name: &str, opts: GatewayOptions) -> Result<Gateway> {
    Gateway::start(name, opts)
}

/// librdkafka properties of `protocol` (and `mechanism` as `alice`, or `password`).
pub(crate) fn rdkafka_props(
    creds: &Credentials,
    protocol: &str,
    mechanism: Option<&str>,
    password: &str,
) -> Vec<(String, String)> {
    let mut p = vec![("security.protocol".to_owned(), protocol.to_owned())];
    if protocol.ends_with("SSL") {
        p.push((
            "ssl.ca.location".into(),
            creds.path("ca.pem").display().to_string(),
        ));
    }
    if let Some(m) = mechanism {
        p.push(("sasl.mechanisms".into(), m.into()));
        p.push(("sasl.username".into(), USERS[0].0.into()));
        p.push(("sasl.password".into(), password.into()));
    }
    p
}

pub(crate) fn kcat(addr: &str, props: &[(String, String)]) -> ClientCommand {
    let mut cmd = ClientCommand::kcat(addr);
    for (k, v) in props {
        cmd = cmd.arg("-X").arg(format!("{k}={v}"));
    }
    cmd.timeout(Duration::from_secs(60))
}

/// Produces three lines with kcat, reads them back, and checks Metadata advertises `addr`.
fn kcat_round_trip(gw: &Gateway, addr: &str, props: &[(String, String)], topic: &str) -> Result<()> {
    create_topic(gw.kafka_addr(), topic, 1)?;
    kcat(addr, props)
        .args(["-P", "-t", topic, "-p", "0"])
        .stdin("a\nb\nc\n")
        .run()?;
    let out = kcat(addr, props)
        .args(["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q"])
        .run()?;
    ensure!(
        out.lines().collect::<Vec<_>>() == ["a", "b", "c"],
        "{topic}: read back {out:?}"
    );
    let md: Value = serde_json::from_str(kcat(addr, props).args(["-L", "-J", "-t", topic]).run()?.trim())?;
    let names: Vec<&str> = md["brokers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str())
        .collect();
    ensure!(
        names == [addr],
        "{topic}: Metadata on {addr} advertised {names:?}"
    );
    Ok(())
}

fn python(lib: &str, addr: &str, topic: &str, config: &Value) -> Result<Value> {
    ClientCommand::python("security_clients.py")
        .args([lib, addr, topic, &config.to_string()])
        .timeout(Duration::from_secs(90))
        .run_json()
}

/// Checks a security_clients.py result: the three records read back, Metadata advertising `addr`.
fn check_python(out: &Value, addr: &str, what: &str) -> Result<()> {
    ensure!(out["ok"] == true, "{what}: {out}");
    ensure!(
        out["read"] == json!(["sec-0", "sec-1", "sec-2"]),
        "{what}: read back {out}"
    );
    let (host, port) = addr.rsplit_once(':').context("addr")?;
    ensure!(
        out["brokers"] == json!([[host, port.parse::<u16>()?]]),
        "{what}: brokers {out}"
    );
    Ok(())
}

#[test]
fn security_kcat_and_confluent_over_every_protocol_and_mechanism() -> Result<()> {
    let creds = Credentials::generate()?;
    let gw = start("security-matrix", creds.gateway_options())?;
    let mut combos: Vec<(&str, Option<&str>)> = vec![("SSL", None)];
    for protocol in ["SASL_PLAINTEXT", "SASL_SSL"] {
        combos.extend(MECHANISMS.iter().map(|m| (protocol, Some(*m))));
    }
    for (protocol, mechanism) in combos {
        let addr = gw.listener_addr(protocol)?.to_string();
        let props = rdkafka_props(&creds, protocol, mechanism, USERS[0].1);
        let tag = format!("{protocol}-{}", mechanism.unwrap_or("none")).to_lowercase();
        phase(format!("kcat over {protocol} {mechanism:?}"));
        kcat_round_trip(&gw, &addr, &props, &format!("kcat-{tag}"))?;
        phase(format!("confluent-kafka over {protocol} {mechanism:?}"));
        let topic = format!("ck-{tag}");
        create_topic(gw.kafka_addr(), &topic, 1)?;
        let config: serde_json::Map<String, Value> =
            props.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        check_python(
            &python("confluent", &addr, &topic, &Value::Object(config))?,
            &addr,
            &topic,
        )?;
    }
    Ok(())
}

#[test]
fn security_kafka_python_and_kafkajs_with_scram() -> Result<()> {
    let creds = Credentials::generate()?;
    let gw = start("security-scram", creds.gateway_options())?;
    let ca = creds.path("ca.pem").display().to_string();
    for protocol in ["SASL_PLAINTEXT", "SASL_SSL"] {
        let addr = gw.listener_addr(protocol)?.to_string();
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let tag = format!("{protocol}-{mechanism}").to_lowercase();
            phase(format!("kafka-python over {protocol} {mechanism}"));
            let topic = format!("kp-{tag}");
            create_topic(gw.kafka_addr(), &topic, 1)?;
            let mut config = json!({
                "security_protocol": protocol, "sasl_mechanism": mechanism,
                "sasl_plain_username": USERS[1].0, "sasl_plain_password": USERS[1].1,
            });
            if protocol == "SASL_SSL" {
                config["ssl_cafile"] = json!(ca);
            }
            check_python(&python("kafka-python", &addr, &topic, &config)?, &addr, &topic)?;

            phase(format!("kafkajs over {protocol} {mechanism}"));
            let topic = format!("kjs-{tag}");
            create_topic(gw.kafka_addr(), &topic, 1)?;
            let tls_ca = if protocol == "SASL_SSL" { ca.as_str() } else { "-" };
            let out = ClientCommand::node("kafkajs_security.js")
                .args([
                    &addr,
                    &topic,
                    &mechanism.to_lowercase(),
                    USERS[1].0,
                    USERS[1].1,
                    tls_ca,
                ])
                .timeout(Duration::from_secs(60))
                .run_json()?;
            let (host, port) = addr.rsplit_once(':').context("addr")?;
            ensure!(
                out["ok"] == true
                    && out["high"] == 3
                    && out["brokers"] == json!([[host, port.parse::<u16>()?]]),
                "kafkajs {tag}: {out}"
            );
        }
    }
    phase("kafkajs with a wrong SCRAM password fails");
    let addr = gw.listener_addr("SASL_SSL")?.to_string();
    let out = ClientCommand::node("kafkajs_security.js")
        .args([
            &addr,
            "kjs-wrong",
            "scram-sha-512",
            USERS[1].0,
            "not-the-password",
            &ca,
        ])
        .timeout(Duration::from_secs(60))
        .run_json()?;
    ensure!(
        out["ok"] == false,
        "kafkajs authenticated with a wrong password: {out}"
    );
    ensure!(
        out["error"].as_str().unwrap_or_default().contains("SASL"),
        "kafkajs error: {out}"
    );
    Ok(())
}

#[test]
fn security_mtls_client_certificate_principal_and_untrusted_certificate() -> Result<()> {
    let creds = Credentials::generate()?;
    let p = |n: &str| creds.path(n).display().to_string();
    let gw = start(
        "security-mtls",
        GatewayOptions::default()
            .listener("SSL", "SSL")
            .arg("--tls-cert-file", &p("server.pem"))
            .arg("--tls-key-file", &p("server.key"))
            .arg("--tls-client-ca-file", &p("ca.pem"))
            .arg("--tls-client-auth", "required")
            .env("RUST_LOG", "info,kafka_gateway::server=debug"),
    )?;
    let addr = gw.listener_addr("SSL")?.to_string();
    let with_cert = |cert: &str, key: &str| {
        let mut props = vec![
            ("security.protocol".to_owned(), "SSL".to_owned()),
            ("ssl.ca.location".to_owned(), p("ca.pem")),
        ];
        if !cert.is_empty() {
            props.push(("ssl.certificate.location".into(), p(cert)));
            props.push(("ssl.key.location".into(), p(key)));
        }
        props
    };
    phase("kcat with a client certificate of the trusted CA");
    kcat_round_trip(&gw, &addr, &with_cert("client.pem", "client.key"), "mtls-ok")?;
    gw.wait_for_log_line(Duration::from_secs(10), |l| {
        l.contains(&format!("User:{CLIENT_CN}"))
    })?;

    for (what, cert, key) in [
        ("an untrusted certificate", "untrusted.pem", "untrusted.key"),
        ("no certificate", "", ""),
    ] {
        phase(format!("kcat with {what} is refused"));
        let started = Instant::now();
        let err = kcat(&addr, &with_cert(cert, key))
            .args(["-L", "-m", FAIL_WAIT_S])
            .run()
            .err()
            .with_context(|| format!("kcat with {what} got metadata"))?;
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "kcat with {what} took {:?}",
            started.elapsed()
        );
        note_err(what, &err);
    }
    let metrics = gw.admin_get("/metrics")?.body;
    ensure!(
        metric(
            &metrics,
            r#"kafka_gateway_authentication_failures_total{mechanism="TLS",reason="tls_handshake"}"#
        ) >= 2.0,
        "TLS handshake failures not counted:\n{metrics}"
    );
    Ok(())
}

#[test]
fn security_failures_are_clean_and_counted() -> Result<()> {
    let creds = Credentials::generate()?;
    let gw = start("security-failures", creds.gateway_options())?;
    for (protocol, mechanism) in [
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ] {
        phase(format!("kcat with a wrong password over {protocol} {mechanism}"));
        let addr = gw.listener_addr(protocol)?.to_string();
        let err = kcat(
            &addr,
            &rdkafka_props(&creds, protocol, Some(mechanism), "wrong-password"),
        )
        .args(["-L", "-m", FAIL_WAIT_S])
        .run()
        .err()
        .context("kcat authenticated with a wrong password")?;
        ensure!(
            format!("{err:#}").contains("Authentication failed"),
            "kcat error: {err:#}"
        );
    }
    phase("confluent-kafka with a wrong password");
    let addr = gw.listener_addr("SASL_SSL")?.to_string();
    let config: serde_json::Map<String, Value> = rdkafka_props(&creds, "SASL_SSL", Some("PLAIN"), "wrong")
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let out = python("confluent", &addr, "ck-wrong", &Value::Object(config))?;
    ensure!(
        out["ok"] == false && out.to_string().contains("Authentication failed"),
        "confluent: {out}"
    );

    phase("a plaintext client on the TLS listener is closed at its first bytes");
    let started = Instant::now();
    let mut raw = RawClient::connect(gw.listener_addr("SSL")?)?;
    raw.write_all(&tests::harness::raw::frame(
        b"\x00\x12\x00\x03\x00\x00\x00\x01\xff\xff\x00",
    ))?;
    let CloseOutcome::Closed { frames } = raw.expect_closed(Duration::from_secs(5))?;
    ensure!(
        frames == 0 && started.elapsed() < Duration::from_secs(5),
        "{frames} frames, {:?}",
        started.elapsed()
    );
    let err = kcat(&gw.listener_addr("SSL")?.to_string(), &[])
        .args(["-L", "-m", FAIL_WAIT_S])
        .run()
        .err()
        .context("a plaintext kcat got metadata from the TLS listener")?;
    note_err("plaintext kcat on SSL", &err);

    phase("a request before authentication on a SASL listener closes the connection");
    let mut raw = RawClient::connect(gw.listener_addr("SASL_PLAINTEXT")?)?;
    ensure!(
        raw.api_versions()?.error_code == 0,
        "ApiVersions is allowed before authentication"
    );
    let (_, request) = raw.encode_request(&kafka_protocol::messages::MetadataRequest::default(), 12)?;
    raw.write_all(&request)?;
    let CloseOutcome::Closed { frames } = raw.expect_closed(Duration::from_secs(5))?;
    ensure!(frames == 0, "Metadata before authentication was answered");

    phase("the failures are counted by mechanism and reason");
    let metrics = gw.admin_get("/metrics")?.body;
    for (series, at_least) in [
        (r#"{mechanism="PLAIN",reason="invalid_credentials"}"#, 2.0),
        (r#"{mechanism="SCRAM-SHA-256",reason="invalid_credentials"}"#, 1.0),
        (r#"{mechanism="SCRAM-SHA-512",reason="invalid_credentials"}"#, 1.0),
        (r#"{mechanism="TLS",reason="tls_handshake"}"#, 2.0),
        (r#"{mechanism="none",reason="unauthenticated_request"}"#, 1.0),
    ] {
        let name = format!("kafka_gateway_authentication_failures_total{series}");
        ensure!(
            metric(&metrics, &name) >= at_least,
            "{name} below {at_least}:\n{metrics}"
        );
    }
    gw.wait_for_log_line(Duration::from_secs(5), |l| {
        l.contains("authentication failed") && l.contains("User:alice")
    })?;
    Ok(())
}

fn note_err(what: &str, err: &anyhow::Error) {
    let text = format!("{err:#}");
    tests::harness::phase::note(format!(
        "{what}: failed as expected: {}",
        text.lines().take(4).collect::<Vec<_>>().join(" | ")
    ));
}

/// The value of the sample `series` (name and labels as printed) in a Prometheus text body.
pub(crate) fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// SaslHandshake + SaslAuthenticate (PLAIN) on a raw connection; returns the session lifetime.
fn raw_plain_login(raw: &mut RawClient, user: &str, password: &str) -> Result<i64> {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    use kafka_protocol::protocol::StrBytes;
    let hs = raw.send(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        1,
    )?;
    ensure!(hs.error_code == 0, "SaslHandshake: {hs:?}");
    let token = bytes::Bytes::from(format!("\0{user}\0{password}"));
    let auth = raw.send(&SaslAuthenticateRequest::default().with_auth_bytes(token), 2)?;
    ensure!(auth.error_code == 0, "SaslAuthenticate: {auth:?}");
    Ok(auth.session_lifetime_ms)
}

#[test]
fn security_sessions_expire_unless_reauthenticated() -> Result<()> {
    const LIFETIME: Duration = Duration::from_millis(1500);
    let creds = Credentials::generate()?;
    let gw = start(
        "security-reauth",
        creds
            .gateway_options()
            .arg("--connections-max-reauth-ms", &LIFETIME.as_millis().to_string()),
    )?;
    let addr = gw.listener_addr("SASL_PLAINTEXT")?;
    phase("the session lifetime is answered; a connection that does not re-authenticate is closed");
    let mut idle = RawClient::connect(addr)?;
    let started = Instant::now();
    ensure!(raw_plain_login(&mut idle, USERS[0].0, USERS[0].1)? == LIFETIME.as_millis() as i64);
    ensure!(
        idle.metadata(&[])?.brokers.len() == 1,
        "Metadata once authenticated"
    );
    let CloseOutcome::Closed { frames } = idle.expect_closed(LIFETIME + Duration::from_secs(5))?;
    ensure!(
        frames == 0 && started.elapsed() >= LIFETIME,
        "closed after {:?}",
        started.elapsed()
    );

    phase("a connection that re-authenticates in time keeps working past the first lifetime");
    let mut renewed = RawClient::connect(addr)?;
    raw_plain_login(&mut renewed, USERS[0].0, USERS[0].1)?;
    let deadline = Instant::now() + LIFETIME * 2;
    let mut logins = 1;
    while Instant::now() < deadline {
        std::thread::sleep(LIFETIME / 3);
        raw_plain_login(&mut renewed, USERS[0].0, USERS[0].1)?;
        logins += 1;
        ensure!(
            renewed.metadata(&[])?.brokers.len() == 1,
            "Metadata after re-authentication {logins}"
        );
    }
    phase("re-authenticating as another user is refused and closes the connection");
    let err = raw_plain_login(&mut renewed, USERS[1].0, USERS[1].1)
        .err()
        .context("user switch accepted")?;
    ensure!(format!("{err:#}").contains("SaslAuthenticate"), "{err:#}");
    let CloseOutcome::Closed { .. } = renewed.expect_closed(Duration::from_secs(5))?;
    Ok(())
}

#[test]
fn security_group_consumer_over_sasl_ssl_is_sent_to_the_coordinator_on_its_listener() -> Result<()> {
    let creds = Credentials::generate()?;
    let gw = start("security-group", creds.gateway_options())?;
    let addr = gw.listener_addr("SASL_SSL")?.to_string();
    let props = rdkafka_props(&creds, "SASL_SSL", Some("SCRAM-SHA-256"), USERS[0].1);
    create_topic(gw.kafka_addr(), "sec-group", 2)?;
    let lines: String = (0..10).map(|i| format!("g-{i}\n")).collect();
    kcat(&addr, &props)
        .args(["-P", "-t", "sec-group"])
        .stdin(lines)
        .run()?;
    phase("kcat -G over SASL_SSL: FindCoordinator must name the SASL_SSL address");
    let out = kcat(&addr, &props)
        .args([
            "-G",
            "sec-group-g",
            "-X",
            "auto.offset.reset=earliest",
            "-c",
            "10",
            "-q",
            "sec-group",
        ])
        .run()?;
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..10).map(|i| format!("g-{i}")).collect();
    want.sort_unstable();
    ensure!(got == want, "group consumer read {got:?}");
    Ok(())
}
