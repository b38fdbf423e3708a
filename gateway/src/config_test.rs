//! Tests of the one typed config: flags, environment, TOML and their precedence.

use super::*;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec!["kafka-gateway"];
    argv.extend_from_slice(args);
    Config::build(Flags::parse_from(argv), Flags::default())
}

#[test]
fn defaults_follow_the_command_line_contract() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:9092");
    assert_eq!(
        (c.advertised_host.as_str(), c.advertised_port),
        ("localhost", 9092)
    );
    assert_eq!(c.admin_listen.port(), 9644);
    assert_eq!(c.max_request_bytes, 100 * 1024 * 1024);
    assert_eq!(c.connections_max_idle, Duration::from_secs(540));
    assert_eq!(c.max_queued_request_bytes, 512 * 1024 * 1024);
    assert_eq!((c.max_topics, c.max_partitions), (10_000, 100_000));
    let c = parse(&["--listen", "127.0.0.2:1234"]).unwrap();
    assert_eq!(c.advertised_host, "127.0.0.2");
}

#[test]
fn bad_values_name_their_key() {
    for (args, key) in [
        (vec!["--listen", "nope"], "listen"),
        (vec!["--advertised-listener", "host"], "advertised-listener"),
        (vec!["--default-partitions", "0"], "default-partitions"),
        (vec!["--max-in-flight-requests", "0"], "max-in-flight-requests"),
        (vec!["--max-topics", "0"], "max-topics"),
        (vec!["--max-partitions", "0"], "max-partitions"),
        (
            vec![
                "--max-request-bytes",
                "2000",
                "--max-queued-request-bytes",
                "1000",
            ],
            "max-queued-request-bytes",
        ),
    ] {
        let e = parse(&args).unwrap_err().to_string();
        assert!(e.contains(key), "{e}");
    }
}

#[test]
fn the_seaweedmq_wal_defaults_to_auto_and_takes_the_old_booleans() {
    let smq = ["--storage", "seaweedmq", "--seaweedmq-masters", "m:9333"];
    assert_eq!(parse(&smq).unwrap().seaweedmq_wal, WalMode::Auto);
    for (arg, mode) in [
        ("true", WalMode::Always),
        ("always", WalMode::Always),
        ("false", WalMode::Off),
        ("off", WalMode::Off),
        ("auto", WalMode::Auto),
        ("alone", WalMode::Alone),
    ] {
        let args: Vec<&str> = smq.iter().copied().chain(["--seaweedmq-wal", arg]).collect();
        assert_eq!(parse(&args).unwrap().seaweedmq_wal, mode, "{arg}");
    }
    let bad: Vec<&str> = ["kafka-gateway", "--seaweedmq-wal", "sometimes"].to_vec();
    assert!(Flags::try_parse_from(bad).is_err());
    #[derive(Deserialize)]
    struct T {
        w: WalMode,
    }
    let t: T = toml::from_str("w = true").unwrap();
    assert_eq!(t.w, WalMode::Always);
    let t: T = toml::from_str("w = \"auto\"").unwrap();
    assert_eq!(t.w, WalMode::Auto);
    assert!(toml::from_str::<T>("w = \"sometimes\"").is_err());
}

/// A token file in a fresh directory (kept alive by the returned guard).
fn token_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn peers_are_parsed_and_multi_node_needs_seaweedmq() {
    let (_dir, token) = token_file();
    let t = ["--cluster-token-file", token.as_str()];
    let with_token = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&t);
        parse(&all)
    };
    let c = with_token(&["--node-id", "0", "--peers", "0=kgw-0.kgw-headless:9645"]).unwrap();
    assert_eq!(c.peers, vec![(0, "kgw-0.kgw-headless:9645".to_string())]);
    assert_eq!(c.cluster_listen.map(|l| l.port()), Some(9645));
    assert_eq!(c.cluster_advertised(), "kgw-0.kgw-headless:9645");
    let e = with_token(&["--peers", "0=a:1,1=b:1"]).unwrap_err().to_string();
    assert!(e.contains("peers") && e.contains("seaweedmq"), "{e}");
    let c = with_token(&[
        "--node-id",
        "1",
        "--peers",
        "0=a:1,1=b:1",
        "--storage",
        "seaweedmq",
        "--seaweedmq-masters",
        "m:9333",
    ])
    .unwrap();
    assert_eq!(c.cluster_advertised(), "b:1");
    let c = with_token(&["--listen", "127.0.0.2:9092", "--cluster-listen", "0.0.0.0:9645"]).unwrap();
    assert_eq!(c.cluster_advertised(), "127.0.0.2:9645");
    assert!(parse(&["--node-id=-1"])
        .unwrap_err()
        .to_string()
        .contains("node-id"));
    assert!(parse(&["--cluster-dead-after-ms", "10"])
        .unwrap_err()
        .to_string()
        .contains("dead-after"));
    for bad in ["x=a:1", "0=a", "0=a:1,0=b:2", "-1=a:1"] {
        let arg = format!("--peers={bad}");
        assert!(
            with_token(&[arg.as_str()])
                .unwrap_err()
                .to_string()
                .contains("peers"),
            "{bad}"
        );
    }
}

#[test]
fn a_standalone_gateway_has_no_raft_listener_and_needs_no_token() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.cluster_listen, None);
    assert!(c.cluster_token.is_none() && c.admin_token.is_none());
    // It still registers an address for itself, should it be restarted as a cluster.
    assert_eq!(c.cluster_advertised(), "localhost:9645");
}

#[test]
fn clustering_needs_a_cluster_token() {
    for args in [
        vec!["--peers", "0=a:9645"],
        vec!["--cluster-listen", "127.0.0.1:9645"],
    ] {
        let e = parse(&args).unwrap_err().to_string();
        assert!(e.contains("cluster-token-file"), "{e}");
    }
    let (dir, token) = token_file();
    let c = parse(&[
        "--cluster-listen",
        "127.0.0.1:9645",
        "--cluster-token-file",
        &token,
    ])
    .unwrap();
    assert!(c
        .cluster_token
        .unwrap()
        .verify(b"0123456789abcdef0123456789abcdef"));
    let short = dir.path().join("short");
    std::fs::write(&short, "changeme").unwrap();
    let short = short.display().to_string();
    for key in ["--cluster-token-file", "--admin-token-file"] {
        let e = parse(&[key, &short]).unwrap_err().to_string();
        assert!(e.contains(&key[2..]) && e.contains("minimum"), "{e}");
        let e = parse(&[key, "/nonexistent/token"]).unwrap_err().to_string();
        assert!(e.contains(&key[2..]) && e.contains("/nonexistent/token"), "{e}");
    }
    let c = parse(&["--admin-token-file", &token]).unwrap();
    assert!(c.admin_token.is_some() && c.cluster_listen.is_none());
}

#[test]
fn file_values_apply_below_flags() {
    let file: Flags = toml::from_str(
        "listen = \"127.0.0.1:1\"\ndefault-partitions = 3\nmax-queued-request-bytes = 209715200\n\
         max-topics = 7\nmax-partitions = 70\n",
    )
    .unwrap();
    let flags = Flags::parse_from(["kafka-gateway", "--listen", "127.0.0.1:2"]);
    let c = Config::build(flags, file).unwrap();
    assert_eq!(c.listen.port(), 2);
    assert_eq!(c.default_partitions, 3);
    assert_eq!(
        (c.max_queued_request_bytes, c.max_topics, c.max_partitions),
        (200 << 20, 7, 70)
    );
    assert!(toml::from_str::<Flags>("no-such-key = 1").is_err());
}

#[test]
fn tls_and_sasl_options_follow_the_listeners_that_use_them() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:secret\n").unwrap();
    let users = users.display().to_string();
    let ssl = ["--listeners", "PLAINTEXT://:9092,SSL://:9093,SASL_SSL://:9094"];
    let with = |extra: &[&str]| -> Result<Config, ConfigError> {
        let mut args: Vec<&str> = ssl.to_vec();
        args.extend_from_slice(extra);
        parse(&args)
    };
    for (extra, key) in [
        (vec!["--sasl-users-file", users.as_str()], "tls-cert-file"),
        (
            vec!["--tls-cert-file", "c", "--sasl-users-file", users.as_str()],
            "tls-key-file",
        ),
        (
            vec!["--tls-cert-file", "c", "--tls-key-file", "k"],
            "sasl-users-file",
        ),
        (
            vec![
                "--tls-cert-file",
                "c",
                "--tls-key-file",
                "k",
                "--sasl-users-file",
                users.as_str(),
                "--tls-client-auth",
                "required",
            ],
            "tls-client-ca-file",
        ),
        (
            vec![
                "--tls-cert-file",
                "c",
                "--tls-key-file",
                "k",
                "--sasl-users-file",
                "/nonexistent/users",
            ],
            "sasl-users-file",
        ),
    ] {
        let e = with(&extra).unwrap_err().to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
    let c = with(&[
        "--tls-cert-file",
        "c",
        "--tls-key-file",
        "k",
        "--sasl-users-file",
        &users,
        "--connections-max-reauth-ms",
        "60000",
    ])
    .unwrap();
    assert_eq!(c.listeners.len(), 3);
    assert_eq!((c.listen.port(), c.advertised_port), (9092, 9092));
    assert_eq!(c.tls.as_ref().map(|t| t.client_auth), Some(ClientAuth::None));
    assert_eq!(c.sasl_users.as_ref().map(|u| u.len()), Some(1));
    assert_eq!(c.connections_max_reauth, Some(Duration::from_secs(60)));
    // TLS or SASL options without a listener using them are mistakes, not silently ignored.
    let e = parse(&["--tls-cert-file", "c"]).unwrap_err().to_string();
    assert!(e.contains("tls-cert-file"), "{e}");
    let e = parse(&["--sasl-users-file", &users]).unwrap_err().to_string();
    assert!(e.contains("sasl-users-file"), "{e}");
}

#[test]
fn listener_and_security_keys_are_read_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:secret\n").unwrap();
    let file: Flags = toml::from_str(&format!(
        "listeners = \"INTERNAL://127.0.0.1:9092,EXTERNAL://:9094\"\n\
         advertised-listeners = \"EXTERNAL://gw.example.com:19094\"\n\
         listener-security-protocol-map = \"INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL\"\n\
         tls-cert-file = \"c\"\ntls-key-file = \"k\"\ntls-client-ca-file = \"ca\"\n\
         tls-client-auth = \"requested\"\nsasl-users-file = {:?}\nconnections-max-reauth-ms = 1000\n",
        users.display().to_string()
    ))
    .unwrap();
    let c = Config::build(Flags::parse_from(["kafka-gateway"]), file).unwrap();
    let l: Vec<(String, SecurityProtocol, String)> = c
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.protocol, l.advertised()))
        .collect();
    assert_eq!(
        l,
        [
            (
                "INTERNAL".into(),
                SecurityProtocol::Plaintext,
                "127.0.0.1:9092".into()
            ),
            (
                "EXTERNAL".into(),
                SecurityProtocol::SaslSsl,
                "gw.example.com:19094".into()
            ),
        ]
    );
    assert_eq!(c.tls.unwrap().client_auth, ClientAuth::Requested);
    assert_eq!(c.connections_max_reauth, Some(Duration::from_secs(1)));
}
