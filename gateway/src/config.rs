//! The one typed configuration, built once in `main` from flags, environment and an optional
//! TOML file (precedence in that order), then validated.
//!
//! Flags are the user interface the operator, chart, docs and tests rely on; every flag has an
//! env form `KAFKA_GATEWAY_<NAME>` and a file key of the same name (`data-dir = "..."`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::auth::Token;

mod listeners;
mod security;

pub use listeners::{Listener, SecurityProtocol};
pub use security::{ClientAuth, TlsSettings};

/// Log filter when `RUST_LOG` is unset: this crate's events at `info`, dependencies at `warn`
/// (openraft logs its whole state at `info` on every start and election).
pub const DEFAULT_LOG_FILTER: &str = "warn,kafka_gateway=info";

/// The raft peer listener of a clustered gateway that names none.
const DEFAULT_CLUSTER_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 9645);

/// Invalid configuration, reported at start with the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// File path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A value is invalid.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The key (flag name).
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Where fsync happens for the embedded log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncPolicy {
    /// acks=all answers after fdatasync (group commit shares one fsync among requests).
    Always,
    /// A background flush every `flush-interval-ms`; acks=all answers after the write.
    Interval,
}

/// When the SeaweedMQ backend answers acks=all from its write-ahead log
/// (docs/seaweedmq-mapping.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WalMode {
    /// Always; in a cluster once a majority of the gateways (this one included) holds the
    /// batch on disk (the WAL is replicated to the other members).
    Auto,
    /// Only while this gateway is its cluster's only member (no replication): in a cluster
    /// acks=all waits for SeaweedMQ's flush.
    Alone,
    /// Always, without replication: in a cluster acknowledged records then have one copy on
    /// the partition's gateway until SeaweedMQ flushes them.
    #[value(alias = "true")]
    Always,
    /// Never: acks=all waits for SeaweedMQ's flush (`-logFlushInterval`, 5 s by default).
    #[value(alias = "false")]
    Off,
}

impl<'de> Deserialize<'de> for WalMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Self::Always),
            Raw::Bool(false) => Ok(Self::Off),
            Raw::Name(n) => <Self as clap::ValueEnum>::from_str(&n, true).map_err(serde::de::Error::custom),
        }
    }
}

/// Storage backend selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// The embedded durable log in `data-dir`.
    Local,
    /// Topics in SeaweedMQ.
    Seaweedmq,
}

/// Command-line flags; each also reads `KAFKA_GATEWAY_<NAME>` and the file key `<name>`.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(
    name = "kafka-gateway",
    version,
    about = "Kafka-wire-compatible gateway (embedded log or SeaweedMQ)"
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Flags {
    /// TOML file with the same keys as the flags.
    #[arg(long, env = "KAFKA_GATEWAY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Kafka listener [default: 0.0.0.0:9092].
    #[arg(long, env = "KAFKA_GATEWAY_LISTEN")]
    pub listen: Option<String>,
    /// Address put in Metadata [default: the listen address; localhost:PORT for 0.0.0.0].
    #[arg(long, env = "KAFKA_GATEWAY_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Kafka listeners `NAME://HOST:PORT,...` (an empty HOST binds all interfaces); replaces
    /// --listen. A name that is not a protocol name needs --listener-security-protocol-map.
    #[arg(long, env = "KAFKA_GATEWAY_LISTENERS")]
    pub listeners: Option<String>,
    /// Addresses put in Metadata per listener `NAME://HOST:PORT,...` [default: each listener's
    /// address; localhost:PORT for all interfaces].
    #[arg(long, env = "KAFKA_GATEWAY_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// Security protocol per listener name `NAME:PROTOCOL,...` with PLAINTEXT, SSL,
    /// SASL_PLAINTEXT, SASL_SSL [default: a listener named after a protocol uses it].
    #[arg(long, env = "KAFKA_GATEWAY_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,
    /// PEM certificate chain of the SSL and SASL_SSL listeners (re-read when it changes).
    #[arg(long, env = "KAFKA_GATEWAY_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file (re-read when it changes).
    #[arg(long, env = "KAFKA_GATEWAY_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to.
    #[arg(long, env = "KAFKA_GATEWAY_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Client certificates on TLS listeners: none, requested or required [default: none].
    #[arg(long, env = "KAFKA_GATEWAY_TLS_CLIENT_AUTH", value_enum)]
    pub tls_client_auth: Option<ClientAuth>,
    /// SASL users, one `name:password` per line, read at start; each gets PLAIN, SCRAM-SHA-256
    /// and SCRAM-SHA-512 credentials (kept salted). Required by SASL listeners.
    #[arg(long, env = "KAFKA_GATEWAY_SASL_USERS_FILE")]
    pub sasl_users_file: Option<PathBuf>,
    /// JWKS file of the keys OAUTHBEARER tokens are signed with; enables OAUTHBEARER on the
    /// SASL listeners.
    #[arg(long, env = "KAFKA_GATEWAY_OAUTH_JWKS_FILE")]
    pub oauth_jwks_file: Option<PathBuf>,
    /// Required `iss` of OAUTHBEARER tokens [default: any].
    #[arg(long, env = "KAFKA_GATEWAY_OAUTH_ISSUER")]
    pub oauth_issuer: Option<String>,
    /// Required `aud` of OAUTHBEARER tokens [default: any].
    #[arg(long, env = "KAFKA_GATEWAY_OAUTH_AUDIENCE")]
    pub oauth_audience: Option<String>,
    /// The claim holding an OAUTHBEARER principal's name [default: sub].
    #[arg(long, env = "KAFKA_GATEWAY_OAUTH_PRINCIPAL_CLAIM")]
    pub oauth_principal_claim: Option<String>,
    /// SASL sessions last at most this long, then the client must re-authenticate (KIP-368,
    /// `connections.max.reauth.ms`); 0 = no limit [default: 0].
    #[arg(long, env = "KAFKA_GATEWAY_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// Admin HTTP listener: /metrics, /healthz, /readyz [default: 0.0.0.0:9644].
    #[arg(long, env = "KAFKA_GATEWAY_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long, env = "KAFKA_GATEWAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Storage backend [default: local].
    #[arg(long, env = "KAFKA_GATEWAY_STORAGE", value_enum)]
    pub storage: Option<StorageKind>,
    /// SeaweedMQ masters (host:httpPort[.grpcPort],...; gRPC is the HTTP port + 10000 unless given).
    #[arg(long, env = "KAFKA_GATEWAY_SEAWEEDMQ_MASTERS")]
    pub seaweedmq_masters: Option<String>,
    /// SeaweedMQ broker gRPC addresses (host:port,...), used when no masters are given.
    #[arg(long, env = "KAFKA_GATEWAY_SEAWEEDMQ_BROKERS")]
    pub seaweedmq_brokers: Option<String>,
    /// SeaweedMQ: when acks=all is answered from a local write-ahead log in the data dir
    /// (fsynced, group commit) instead of after the broker's flush (-logFlushInterval, 5 s):
    /// `auto` (replicated to a majority of the cluster's gateways), `alone` (only while this
    /// gateway is its cluster's only member), `always` (unreplicated) or `off`
    /// [default: auto; docs/seaweedmq-mapping.md §3.3-3.4].
    #[arg(long, env = "KAFKA_GATEWAY_SEAWEEDMQ_WAL", value_enum)]
    pub seaweedmq_wal: Option<WalMode>,
    /// Cluster node id [default: 0].
    #[arg(long, env = "KAFKA_GATEWAY_NODE_ID")]
    pub node_id: Option<i32>,
    /// Raft peer listener for clustered gateways; set, or --peers set, asks for clustering
    /// [default: none without --peers (a standalone gateway opens no raft port), else 0.0.0.0:9645].
    #[arg(long, env = "KAFKA_GATEWAY_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,
    /// File holding the shared secret every raft peer call carries and requires (16 to 4096
    /// visible ASCII characters); required when clustering is asked for.
    #[arg(long, env = "KAFKA_GATEWAY_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: Option<PathBuf>,
    /// File holding the bearer token the mutating admin endpoints (POST/DELETE /cluster/members)
    /// require [default: none; mutations then accepted from loopback callers only].
    #[arg(long, env = "KAFKA_GATEWAY_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Initial raft peers `ID=HOST:PORT,...` [default: none, a one-node cluster].
    #[arg(long, env = "KAFKA_GATEWAY_PEERS")]
    pub peers: Option<String>,
    /// A member silent for this long loses its consumer groups to other members [default: 5000].
    #[arg(long, env = "KAFKA_GATEWAY_CLUSTER_DEAD_AFTER_MS")]
    pub cluster_dead_after_ms: Option<u64>,
    /// Rack reported in Metadata.
    #[arg(long, env = "KAFKA_GATEWAY_RACK")]
    pub rack: Option<String>,
    /// Fsync policy of the embedded log [default: always].
    #[arg(long, env = "KAFKA_GATEWAY_FSYNC", value_enum)]
    pub fsync: Option<FsyncPolicy>,
    /// Background flush interval with `--fsync interval` [default: 1000].
    #[arg(long, env = "KAFKA_GATEWAY_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// How often retention runs (`log.retention.check.interval.ms`) [default: 300000].
    #[arg(long, env = "KAFKA_GATEWAY_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Create unknown topics on Metadata requests that allow it [default: true].
    #[arg(long, env = "KAFKA_GATEWAY_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "KAFKA_GATEWAY_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Largest request accepted in bytes (`socket.request.max.bytes`) [default: 104857600].
    #[arg(long, env = "KAFKA_GATEWAY_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Close idle connections after this (`connections.max.idle.ms`) [default: 540000].
    #[arg(long, env = "KAFKA_GATEWAY_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,
    /// Connections served at once [default: 10000].
    #[arg(long, env = "KAFKA_GATEWAY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Requests of one connection processed concurrently; together they hold at most
    /// --max-request-bytes of request frames [default: 1024].
    #[arg(long, env = "KAFKA_GATEWAY_MAX_IN_FLIGHT_REQUESTS")]
    pub max_in_flight_requests: Option<usize>,
    /// Request bytes all connections together may hold, read ahead or in flight
    /// (`queued.max.request.bytes`); a connection that would exceed it is not read until bytes
    /// are released. At least --max-request-bytes [default: 536870912].
    #[arg(long, env = "KAFKA_GATEWAY_MAX_QUEUED_REQUEST_BYTES")]
    pub max_queued_request_bytes: Option<usize>,
    /// Topics the gateway will hold; creating more is refused with POLICY_VIOLATION
    /// [default: 10000].
    #[arg(long, env = "KAFKA_GATEWAY_MAX_TOPICS")]
    pub max_topics: Option<usize>,
    /// Partitions across all topics; creating or growing past it is refused with
    /// INVALID_PARTITIONS [default: 100000].
    #[arg(long, env = "KAFKA_GATEWAY_MAX_PARTITIONS")]
    pub max_partitions: Option<usize>,
    /// Upper bound on a fetch response (`fetch.max.bytes`) [default: 57671680].
    #[arg(long, env = "KAFKA_GATEWAY_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: Option<usize>,
    /// Seconds shutdown waits for in-flight requests [default: 30].
    #[arg(long, env = "KAFKA_GATEWAY_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Committed offsets of empty groups expire after this (`offsets.retention.minutes`) [default: 10080].
    #[arg(long, env = "KAFKA_GATEWAY_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,
    /// First rebalance of an empty group waits this long for more members
    /// (`group.initial.rebalance.delay.ms`) [default: 3000].
    #[arg(long, env = "KAFKA_GATEWAY_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Cap on distinct topic label values in metrics [default: 1000].
    #[arg(long, env = "KAFKA_GATEWAY_MAX_TOPIC_LABELS")]
    pub max_topic_labels: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Kafka listeners, at least one; the first one's addresses are also `listen` and
    /// `advertised_host`/`advertised_port`.
    pub listeners: Vec<Listener>,
    /// The first Kafka listener's bind address.
    pub listen: SocketAddr,
    /// The first listener's advertised host (also the host of the cluster and admin addresses
    /// advertised for all-interfaces binds).
    pub advertised_host: String,
    /// The first listener's advertised port.
    pub advertised_port: u16,
    /// TLS of the SSL and SASL_SSL listeners; set when one of them exists.
    pub tls: Option<TlsSettings>,
    /// SASL credentials; set when a SASL listener exists.
    pub sasl_users: Option<std::sync::Arc<crate::sasl::CredentialStore>>,
    /// OAUTHBEARER token validation; set when `--oauth-jwks-file` is.
    pub oauth: Option<std::sync::Arc<crate::sasl::oauth::OAuthValidator>>,
    /// KIP-368 session lifetime of SASL connections; `None`: unlimited.
    pub connections_max_reauth: Option<Duration>,
    /// Admin HTTP listener.
    pub admin_listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Storage backend.
    pub storage: StorageKind,
    /// Node id.
    pub node_id: i32,
    /// Rack.
    pub rack: Option<String>,
    /// Raft peer listener; `None` for a standalone gateway, which opens no raft port.
    pub cluster_listen: Option<SocketAddr>,
    /// Shared secret of raft peer calls; always set when `cluster_listen` is.
    pub cluster_token: Option<Token>,
    /// Bearer token of the mutating admin endpoints; `None`: loopback callers only.
    pub admin_token: Option<Token>,
    /// Initial raft peers (node id, peer address), this node included when listed.
    pub peers: Vec<(i32, String)>,
    /// Milliseconds after which the raft leader declares a silent member dead and moves its
    /// consumer groups.
    pub cluster_dead_after_ms: u64,
    /// Fsync policy.
    pub fsync: FsyncPolicy,
    /// Flush interval under `FsyncPolicy::Interval`.
    pub flush_interval: Duration,
    /// Retention check interval.
    pub retention_check_interval: Duration,
    /// Auto-create topics.
    pub auto_create_topics: bool,
    /// Default partitions.
    pub default_partitions: i32,
    /// Max request bytes.
    pub max_request_bytes: usize,
    /// Idle connection timeout.
    pub connections_max_idle: Duration,
    /// Max connections.
    pub max_connections: usize,
    /// Max in-flight requests per connection.
    pub max_in_flight_requests: usize,
    /// Request bytes held across all connections.
    pub max_queued_request_bytes: usize,
    /// Topic count cap.
    pub max_topics: usize,
    /// Cap on partitions across all topics.
    pub max_partitions: usize,
    /// Fetch response cap.
    pub fetch_max_bytes: usize,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
    /// Metric topic label cap.
    pub max_topic_labels: usize,
    /// Offsets retention in minutes.
    pub offsets_retention_minutes: u64,
    /// Initial rebalance delay of empty groups.
    pub group_initial_rebalance_delay_ms: u64,
    /// SeaweedMQ masters (`host:httpPort`, gRPC = port + 10000, or `host:httpPort.grpcPort`).
    pub seaweedmq_masters: Vec<String>,
    /// SeaweedMQ broker gRPC addresses (used without masters).
    pub seaweedmq_brokers: Vec<String>,
    /// SeaweedMQ: when acks=all is answered from the write-ahead log under `data_dir/smq-wal`.
    pub seaweedmq_wal: WalMode,
}

impl Config {
    /// The address peers reach this node's raft service at: its entry in `peers`, else the
    /// cluster listener (with the advertised host when listening on all interfaces).
    pub fn cluster_advertised(&self) -> String {
        if let Some((_, addr)) = self.peers.iter().find(|(id, _)| *id == self.node_id) {
            return addr.clone();
        }
        advertise(
            &self.advertised_host,
            self.cluster_listen.unwrap_or(DEFAULT_CLUSTER_LISTEN),
        )
    }

    /// The admin HTTP address other members and the operator use for this node.
    pub fn admin_advertised(&self) -> String {
        advertise(&self.advertised_host, self.admin_listen)
    }

    /// Parses flags and environment, merges the optional file, validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the bad key.
    pub fn load(flags: Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                toml::from_str::<Flags>(&text).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => Flags::default(),
        };
        Self::build(flags, file)
    }

    fn build(f: Flags, file: Flags) -> Result<Self, ConfigError> {
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                f.$field.or(file.$field).unwrap_or_else(|| $default)
            };
        }
        let listeners = listeners::build(listeners::ListenerFlags {
            listen: f.listen.or(file.listen),
            advertised_listener: f.advertised_listener.or(file.advertised_listener),
            listeners: f.listeners.or(file.listeners),
            advertised_listeners: f.advertised_listeners.or(file.advertised_listeners),
            protocol_map: f
                .listener_security_protocol_map
                .or(file.listener_security_protocol_map),
        })?;
        let security = security::build(
            &listeners,
            security::SecurityFlags {
                cert: f.tls_cert_file.or(file.tls_cert_file),
                key: f.tls_key_file.or(file.tls_key_file),
                client_ca: f.tls_client_ca_file.or(file.tls_client_ca_file),
                client_auth: f.tls_client_auth.or(file.tls_client_auth),
                sasl_users_file: f.sasl_users_file.or(file.sasl_users_file),
                max_reauth_ms: f.connections_max_reauth_ms.or(file.connections_max_reauth_ms),
                oauth_jwks_file: f.oauth_jwks_file.or(file.oauth_jwks_file),
                oauth_issuer: f.oauth_issuer.or(file.oauth_issuer),
                oauth_audience: f.oauth_audience.or(file.oauth_audience),
                oauth_principal_claim: f.oauth_principal_claim.or(file.oauth_principal_claim),
            },
        )?;
        let first = &listeners[0];
        let (listen, host, port) = (first.bind, first.advertised_host.clone(), first.advertised_port);
        let admin_s = pick!(admin_listen, "0.0.0.0:9644".into());
        let admin_listen = admin_s
            .parse()
            .map_err(|e| invalid("admin-listen", format!("{admin_s:?}: {e}")))?;
        let storage = pick!(storage, StorageKind::Local);
        let default_partitions = pick!(default_partitions, 1);
        if default_partitions < 1 {
            return Err(invalid(
                "default-partitions",
                format!("{default_partitions} must be at least 1"),
            ));
        }
        let positive = |key: &'static str, v: usize| {
            if v == 0 {
                Err(invalid(key, "must be positive".into()))
            } else {
                Ok(v)
            }
        };
        let mut cfg = Self {
            listeners,
            tls: security.tls,
            sasl_users: security.sasl_users,
            oauth: security.oauth,
            connections_max_reauth: security.max_reauth,
            listen,
            advertised_host: host,
            advertised_port: port,
            admin_listen,
            data_dir: pick!(data_dir, PathBuf::from("./data")),
            storage,
            node_id: pick!(node_id, 0),
            rack: f.rack.or(file.rack),
            fsync: pick!(fsync, FsyncPolicy::Always),
            flush_interval: Duration::from_millis(positive(
                "flush-interval-ms",
                pick!(flush_interval_ms, 1000) as usize,
            )? as u64),
            retention_check_interval: Duration::from_millis(positive(
                "retention-check-interval-ms",
                pick!(retention_check_interval_ms, 300_000) as usize,
            )? as u64),
            auto_create_topics: pick!(auto_create_topics, true),
            default_partitions,
            max_request_bytes: positive("max-request-bytes", pick!(max_request_bytes, 104_857_600))?,
            connections_max_idle: Duration::from_millis(positive(
                "connections-max-idle-ms",
                pick!(connections_max_idle_ms, 540_000) as usize,
            )? as u64),
            max_connections: positive("max-connections", pick!(max_connections, 10_000))?,
            max_in_flight_requests: positive("max-in-flight-requests", pick!(max_in_flight_requests, 1024))?,
            max_queued_request_bytes: positive(
                "max-queued-request-bytes",
                pick!(max_queued_request_bytes, 512 * 1024 * 1024),
            )?,
            max_topics: positive("max-topics", pick!(max_topics, 10_000))?,
            max_partitions: positive("max-partitions", pick!(max_partitions, 100_000))?,
            fetch_max_bytes: positive("fetch-max-bytes", pick!(fetch_max_bytes, 57_671_680))?,
            shutdown_grace: Duration::from_secs(pick!(shutdown_grace_seconds, 30)),
            max_topic_labels: pick!(max_topic_labels, 1000),
            offsets_retention_minutes: positive(
                "offsets-retention-minutes",
                pick!(offsets_retention_minutes, 10_080) as usize,
            )? as u64,
            group_initial_rebalance_delay_ms: pick!(group_initial_rebalance_delay_ms, 3000),
            seaweedmq_masters: Vec::new(),
            seaweedmq_brokers: Vec::new(),
            seaweedmq_wal: pick!(seaweedmq_wal, WalMode::Auto),
            cluster_listen: match f.cluster_listen.or(file.cluster_listen) {
                Some(v) => Some(
                    v.parse()
                        .map_err(|e| invalid("cluster-listen", format!("{v:?}: {e}")))?,
                ),
                None => None,
            },
            cluster_token: read_token(
                "cluster-token-file",
                f.cluster_token_file.or(file.cluster_token_file),
            )?,
            admin_token: read_token("admin-token-file", f.admin_token_file.or(file.admin_token_file))?,
            peers: parse_peers(f.peers.or(file.peers).as_deref())?,
            cluster_dead_after_ms: {
                let v = pick!(cluster_dead_after_ms, 5000);
                if v < 500 {
                    return Err(invalid(
                        "cluster-dead-after-ms",
                        format!("{v} is below the minimum of 500"),
                    ));
                }
                v
            },
        };
        // Clustering is asked for by --peers or --cluster-listen; then the raft port is open and
        // must authenticate its callers.
        if !cfg.peers.is_empty() && cfg.cluster_listen.is_none() {
            cfg.cluster_listen = Some(DEFAULT_CLUSTER_LISTEN);
        }
        if cfg.max_queued_request_bytes < cfg.max_request_bytes {
            return Err(invalid(
                "max-queued-request-bytes",
                format!(
                    "{} is below --max-request-bytes ({}): the largest request could never be read",
                    cfg.max_queued_request_bytes, cfg.max_request_bytes
                ),
            ));
        }
        if cfg.node_id < 0 {
            return Err(invalid(
                "node-id",
                format!("{} must not be negative", cfg.node_id),
            ));
        }
        if storage == StorageKind::Local && cfg.peers.iter().any(|(id, _)| *id != cfg.node_id) {
            return Err(invalid(
                "peers",
                "a multi-node gateway cluster needs --storage seaweedmq: the embedded log is not \
                 replicated, so other nodes could not serve its partitions"
                    .into(),
            ));
        }
        if storage == StorageKind::Seaweedmq {
            let masters = f.seaweedmq_masters.or(file.seaweedmq_masters);
            let brokers = f.seaweedmq_brokers.or(file.seaweedmq_brokers);
            if masters.is_none() && brokers.is_none() {
                return Err(invalid(
                    "storage",
                    "seaweedmq needs --seaweedmq-masters or --seaweedmq-brokers".into(),
                ));
            }
            let list = |v: Option<String>| -> Vec<String> {
                v.iter()
                    .flat_map(|s| s.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            };
            cfg.seaweedmq_masters = list(masters);
            cfg.seaweedmq_brokers = list(brokers);
            if cfg.seaweedmq_masters.is_empty() && cfg.seaweedmq_brokers.is_empty() {
                return Err(invalid(
                    "storage",
                    "seaweedmq needs --seaweedmq-masters or --seaweedmq-brokers".into(),
                ));
            }
        }
        if cfg.cluster_listen.is_some() && cfg.cluster_token.is_none() {
            return Err(invalid(
                "cluster-token-file",
                "clustering (--peers or --cluster-listen) needs --cluster-token-file: the raft port \
                 accepts membership changes and state writes, so it admits only peers presenting the \
                 shared token (generate one with `openssl rand -hex 32`; every member uses the same)"
                    .into(),
            ));
        }
        Ok(cfg)
    }
}

/// Reads the token file named by the `key` option, if any.
fn read_token(key: &'static str, path: Option<PathBuf>) -> Result<Option<Token>, ConfigError> {
    path.map(|p| Token::read_file(&p).map_err(|e| invalid(key, e.to_string())))
        .transpose()
}

/// Parses `ID=HOST:PORT,...`; ids must be unique and non-negative.
fn parse_peers(v: Option<&str>) -> Result<Vec<(i32, String)>, ConfigError> {
    let mut peers: Vec<(i32, String)> = Vec::new();
    for item in v
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let bad = || invalid("peers", format!("{item:?} is not ID=HOST:PORT"));
        let (id, addr) = item.split_once('=').ok_or_else(bad)?;
        let id: i32 = id.trim().parse().map_err(|_| bad())?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if id < 0 || host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        if peers.iter().any(|(p, _)| *p == id) {
            return Err(invalid("peers", format!("node id {id} is listed twice")));
        }
        peers.push((id, addr.to_owned()));
    }
    Ok(peers)
}

fn advertise(host: &str, listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        if host.contains(':') {
            format!("[{host}]:{}", listen.port())
        } else {
            format!("{host}:{}", listen.port())
        }
    } else {
        listen.to_string()
    }
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
