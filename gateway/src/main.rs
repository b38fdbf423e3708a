//! The `kafka-gateway` binary: builds the one config, wires storage, handlers, the Kafka listener
//! and the admin server, and shuts down gracefully on SIGTERM/SIGINT.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use kafka_gateway::admin::{self, AdminAuth, AdminState};
use kafka_gateway::cluster::network::NetworkOptions;
use kafka_gateway::cluster::scram::ClusterCredentials;
use kafka_gateway::cluster::wal_peers::ClusterWalPeers;
use kafka_gateway::cluster::{
    self, ClusterGroupLog, ClusterMetrics, ClusterNode, ClusterOptions, Coordinator,
};
use kafka_gateway::config::{Config, Flags, FsyncPolicy, StorageKind, WalMode};
use kafka_gateway::group::{GroupConfig, GroupCoordinator, GroupMetrics};
use kafka_gateway::handler::caps::ResourceCaps;
use kafka_gateway::handler::{BrokerInfo, Context, HandlerOptions};
use kafka_gateway::metrics::Metrics;
use kafka_gateway::producer_ids::ProducerIdAllocator;
use kafka_gateway::sasl::{Audit, Authenticator, ScramLookup};
use kafka_gateway::server::tls::TlsReloader;
use kafka_gateway::server::{self, fd_limit, KafkaListener, ServerOptions};
use kafka_gateway::storage::local::{FsyncMode, LocalOptions, LocalStorage};
use kafka_gateway::storage::metered::Metered;
use kafka_gateway::storage::seaweedmq::wal_metrics::WalMetrics;
use kafka_gateway::storage::seaweedmq::wal_replicate::WalPeers;
use kafka_gateway::storage::seaweedmq::{Leadership, SeaweedOptions, SeaweedStorage};
use kafka_gateway::storage::Storage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(kafka_gateway::config::DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: logs piped to files or collectors stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::load(Flags::parse()) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "invalid configuration");
            eprintln!("kafka-gateway: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match fd_limit::raise_open_files_limit() {
        Ok(l) => info!(
            soft_at_start = l.soft_before.map_or("unlimited".into(), |v| v.to_string()),
            soft = l.soft.map_or("unlimited".into(), |v| v.to_string()),
            hard = l.hard.map_or("unlimited".into(), |v| v.to_string()),
            "open-file limit"
        ),
        Err(e) => warn!(error = %e, "cannot raise the open-file limit; keeping the one inherited"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kafka-gateway: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "gateway failed");
            eprintln!("kafka-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Longest TLS handshake of a new Kafka connection: a client that connects and sends nothing
/// (or a plaintext client waiting for an answer) is closed then.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest a member addition waits for SeaweedMQ to flush what the WAL holds (its default
/// flush interval is 5 s); the cluster's forward timeout is 10 s.
const WAL_DRAIN_BEFORE_GROWING: std::time::Duration = std::time::Duration::from_secs(7);

async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(false));
    // Serves /healthz, /readyz (503) and /metrics while storage is opened, which on SeaweedMQ
    // waits for the cluster: a pod started before SeaweedMQ stays alive and unready.
    let starting = CancellationToken::new();
    let startup_admin = {
        let listener = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("binding admin listener {}", config.admin_listen))?;
        let app = admin::router(AdminState {
            registry: registry.clone(),
            ready: Arc::clone(&ready),
        });
        let stop = starting.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    // Whether this gateway is its cluster's only member: the SeaweedMQ WAL's `auto` mode.
    let (alone_tx, alone_rx) = tokio::sync::watch::channel(false);
    let wal_peers = ClusterWalPeers::new(config.node_id as u64);
    // The cluster, once started: partition leadership is known only then.
    let cluster_cell: Arc<std::sync::OnceLock<Coordinator>> = Arc::new(std::sync::OnceLock::new());
    let mut smq_handle = None;
    let storage: Arc<dyn Storage> = match config.storage {
        StorageKind::Local => {
            let local = LocalStorage::open(LocalOptions {
                data_dir: config.data_dir.join("log"),
                fsync: match config.fsync {
                    FsyncPolicy::Always => FsyncMode::Always,
                    FsyncPolicy::Interval => FsyncMode::Interval(config.flush_interval),
                },
                retention_check_interval: config.retention_check_interval,
            })
            .await
            .context("opening the embedded log")?;
            Arc::new(Metered::new(local, &registry)?)
        }
        StorageKind::Seaweedmq => {
            let options = SeaweedOptions {
                masters: config.seaweedmq_masters.clone(),
                brokers: config.seaweedmq_brokers.clone(),
                filer: None,
                wal_dir: (config.seaweedmq_wal != WalMode::Off).then(|| config.data_dir.join("smq-wal")),
                wal_metrics: Some(WalMetrics::new(&registry)?),
                wal_only_while: (config.seaweedmq_wal == WalMode::Alone).then(|| alone_rx.clone()),
                wal_replication: (config.seaweedmq_wal == WalMode::Auto).then(|| {
                    let peers: Arc<dyn WalPeers> = wal_peers.clone();
                    (peers, config.data_dir.join("smq-wal-replicas"))
                }),
                leadership: Some(leadership(Arc::clone(&cluster_cell), config.node_id)),
            };
            let Some(smq) = connect_seaweedmq(options).await? else {
                info!("shutdown requested while waiting for SeaweedMQ");
                starting.cancel();
                let _ = startup_admin.await;
                return Ok(());
            };
            info!(masters = ?config.seaweedmq_masters, brokers = ?config.seaweedmq_brokers, wal = ?config.seaweedmq_wal, "storage: SeaweedMQ");
            smq_handle = Some(smq.clone());
            Arc::new(Metered::new(smq, &registry)?)
        }
    };
    let metrics = Arc::new(Metrics::new(&registry, config.max_topic_labels)?);
    let replica_service = smq_handle
        .as_ref()
        .and_then(SeaweedStorage::replica_service)
        .map(|s| tonic::service::Routes::new(s.into_server(NetworkOptions::default().max_message_bytes)));
    let coordinator = start_cluster(&config, &registry, alone_tx, replica_service).await?;
    wal_peers.bind(coordinator.clone());
    let _ = cluster_cell.set(coordinator.clone());
    if let (Some(smq), WalMode::Auto | WalMode::Alone) = (smq_handle, config.seaweedmq_wal) {
        // A second member joins only once SeaweedMQ flushed what this gateway acknowledged
        // from its unreplicated WAL; the operator retries a refused addition.
        coordinator.set_grow_hook(Arc::new(move || {
            let smq = smq.clone();
            Box::pin(async move {
                info!("a cluster member is being added: acks=all stops being answered from the write-ahead log, which SeaweedMQ must flush first");
                smq.drain_write_ahead_log(WAL_DRAIN_BEFORE_GROWING)
                    .await
                    .map_err(|e| e.to_string())?;
                info!("write-ahead log drained: the member may join");
                Ok(())
            })
        }));
    }
    let groups = GroupCoordinator::with_log(
        Arc::new(ClusterGroupLog::new(coordinator.clone())),
        GroupConfig {
            offsets_retention_ms: config.offsets_retention_minutes * 60_000,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            ..GroupConfig::default()
        },
        GroupMetrics::new(&registry, config.max_topic_labels)?,
        shutdown.clone(),
    );
    let local_cluster_id = cluster_id(&config.data_dir)?;
    // SASL authenticates against the replicated credentials, seeded from the users file.
    let credentials = config.sasl_users.as_ref().map(|file| {
        Arc::new(ClusterCredentials::new(
            coordinator.clone(),
            Some(Arc::clone(file)),
        ))
    });
    let ctx = Arc::new(Context {
        storage: Arc::clone(&storage),
        broker: BrokerInfo {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: i32::from(config.advertised_port),
            listeners: config
                .listeners
                .iter()
                .map(|l| {
                    (
                        l.name.clone(),
                        (l.advertised_host.clone(), i32::from(l.advertised_port)),
                    )
                })
                .collect(),
            rack: config.rack.clone(),
            cluster_id: local_cluster_id.clone(),
        },
        options: HandlerOptions {
            auto_create_topics: config.auto_create_topics,
            default_partitions: config.default_partitions,
            fetch_max_bytes: config.fetch_max_bytes,
        },
        caps: ResourceCaps::new(config.max_topics, config.max_partitions),
        metrics,
        producer_ids: Arc::new(ProducerIdAllocator::new(coordinator.clone())),
        groups: groups.clone(),
        cluster: coordinator.clone(),
        auth: Arc::new(Authenticator {
            users: credentials.clone().map(|c| c as Arc<dyn ScramLookup>),
            session_lifetime: config.connections_max_reauth,
            oauth: config.oauth.clone(),
            audit: Audit::new(&registry)?,
        }),
    });
    tokio::spawn(publish_lag(
        groups.clone(),
        Arc::clone(&storage),
        shutdown.clone(),
    ));

    // The full admin router (with the cluster's endpoints) replaces the start-up one.
    starting.cancel();
    let _ = startup_admin.await;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding admin listener {}", config.admin_listen))?;
    let admin_app = admin::router(AdminState {
        registry: registry.clone(),
        ready: Arc::clone(&ready),
    })
    .merge(cluster::admin_http::router(
        coordinator.clone(),
        AdminAuth::new(config.admin_token.clone()),
    ));
    let admin_stop = shutdown.clone();
    let admin_task = tokio::spawn(async move {
        // The caller's address decides tokenless admin mutations (loopback only).
        let app = admin_app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(admin_listener, app)
            .with_graceful_shutdown(admin_stop.cancelled_owned())
            .await
    });

    let tls = match &config.tls {
        Some(t) => Some(Arc::new(
            TlsReloader::new(t.clone()).context("loading the TLS certificate and key")?,
        )),
        None => None,
    };
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let tcp = TcpListener::bind(l.bind)
            .await
            .with_context(|| format!("binding Kafka listener {} ({})", l.name, l.bind))?;
        info!(listener = %l.name, protocol = l.protocol.name(), bind = %l.bind, advertised = l.advertised(), "kafka listener");
        listeners.push(KafkaListener {
            tcp,
            name: Arc::from(l.name.as_str()),
            tls: l.protocol.tls().then(|| tls.clone()).flatten(),
            sasl: l.protocol.sasl(),
        });
    }
    info!(
        listen = %config.listen,
        advertised = format!("{}:{}", config.advertised_host, config.advertised_port),
        admin = %config.admin_listen,
        cluster = config.cluster_listen.map_or("none (standalone)".into(), |l| l.to_string()),
        data_dir = %config.data_dir.display(),
        "kafka gateway listening; joining the cluster"
    );
    let peers = config
        .peers
        .iter()
        .map(|(id, addr)| (*id as u64, addr.clone()))
        .collect::<std::collections::BTreeMap<_, _>>();
    {
        let (coordinator, ready, stop) = (coordinator.clone(), Arc::clone(&ready), shutdown.clone());
        tokio::spawn(async move {
            match coordinator.bootstrap(&peers, &local_cluster_id, &stop).await {
                Ok(()) => {
                    if let Some(c) = &credentials {
                        match c.seed().await {
                            Ok(()) => info!("SASL users of the users file seeded into the cluster"),
                            Err(e) => {
                                warn!(error = %e, "cannot seed the SASL users file into the cluster; it keeps answering for its users")
                            }
                        }
                    }
                    info!(node_id = coordinator.node_id(), "kafka gateway ready");
                    ready.store(true, Ordering::Release);
                }
                Err(e) => error!(error = %e, "could not join the gateway cluster"),
            }
        });
    }
    let opts = ServerOptions {
        max_connections: config.max_connections,
        max_frame_bytes: config.max_request_bytes,
        max_in_flight: config.max_in_flight_requests,
        // Bounds a connection's memory by the largest request it may send.
        max_in_flight_bytes: config.max_request_bytes,
        max_queued_request_bytes: config.max_queued_request_bytes,
        idle_timeout: config.connections_max_idle,
        shutdown_grace: config.shutdown_grace,
        tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
    };
    let ready_flag = Arc::clone(&ready);
    let stopping_groups = groups.clone();
    server::run(listeners, ctx, opts, async move {
        shutdown_signal().await;
        ready_flag.store(false, Ordering::Release);
        stopping_groups.release_all();
        info!("shutdown requested");
    })
    .await;
    storage.flush().await.context("flushing storage at shutdown")?;
    shutdown.cancel();
    coordinator.shutdown().await;
    let _ = admin_task.await;
    info!("shutdown complete");
    Ok(())
}

/// Starts this node's raft member, serving peers (and `extra_services`) on the cluster listener
/// when clustering is configured; a standalone gateway is a one-node cluster that opens no raft
/// port.
async fn start_cluster(
    config: &Config,
    registry: &prometheus::Registry,
    alone: tokio::sync::watch::Sender<bool>,
    extra_services: Option<tonic::service::Routes>,
) -> anyhow::Result<Coordinator> {
    let listener = match config.cluster_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding cluster listener {addr}"))?,
        ),
        None => None,
    };
    let node = ClusterNode {
        cluster_addr: config.cluster_advertised(),
        kafka_addr: format!("{}:{}", config.advertised_host, config.advertised_port),
        listeners: config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.advertised()))
            .collect(),
        admin_addr: config.admin_advertised(),
        rack: config.rack.clone(),
    };
    let mut options = ClusterOptions::new(config.node_id as u64, node, config.data_dir.join("raft"));
    options.dead_after = std::time::Duration::from_millis(config.cluster_dead_after_ms);
    options.alone = Some(alone);
    options.extra_services = extra_services;
    options.network.token = config.cluster_token.clone();
    let coordinator = Coordinator::start(options, listener)
        .await
        .context("starting the raft member")?;
    coordinator.export_metrics(ClusterMetrics::new(registry)?);
    Ok(coordinator)
}

/// Publishes consumer-group lag (high watermark minus committed offset) every 15 s.
async fn publish_lag(groups: GroupCoordinator, storage: Arc<dyn Storage>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => groups.update_lag(|tp| storage.watch_high_watermark(tp).ok().map(|hw| *hw.borrow())),
        }
    }
}

/// The cluster id reported to clients, created once and kept in the data dir.
fn cluster_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("cluster_id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) | Err(_) => {
            let id = uuid::Uuid::new_v4().simple().to_string()[..22].to_owned();
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

/// Connects to SeaweedMQ, retrying with backoff (0.5 s doubling to 10 s) while the cluster is
/// unreachable or not yet ready (pods routinely start before their dependencies). `None` when
/// a shutdown signal came first. A configuration error fails at once.
async fn connect_seaweedmq(options: SeaweedOptions) -> anyhow::Result<Option<SeaweedStorage>> {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(500);
    const MAX: std::time::Duration = std::time::Duration::from_secs(10);
    let mut backoff = FIRST;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let attempt = tokio::select! {
            r = SeaweedStorage::connect(options.clone()) => r,
            () = &mut stop => return Ok(None),
        };
        match attempt {
            Ok(smq) => return Ok(Some(smq)),
            Err(e @ kafka_gateway::storage::StorageError::InvalidConfig(_)) => {
                return Err(e).context("connecting to SeaweedMQ");
            }
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "SeaweedMQ not reachable yet; not ready until it is");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut stop => return Ok(None),
        }
        backoff = (backoff * 2).min(MAX);
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Partition leadership for the SeaweedMQ backend: a fingerprint of the cluster's live
/// members and whether this node leads a partition (leaders are a hash over the live members,
/// as Metadata answers). Until the cluster has started, and while no live member is known,
/// this node leads nothing: its write-ahead-log keepers must not republish into a partition
/// another gateway is writing (seen: a restarted gateway replaying before it had rejoined).
fn leadership(cell: Arc<std::sync::OnceLock<Coordinator>>, me: i32) -> Leadership {
    let fingerprint = {
        let cell = Arc::clone(&cell);
        move || {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for b in cell.get().map(Coordinator::brokers).unwrap_or_default() {
                b.node_id.hash(&mut h);
            }
            h.finish()
        }
    };
    let leads = move |topic: &str, partition: i32| {
        let Some(cluster) = cell.get() else { return false };
        let ids: Vec<i32> = cluster.brokers().iter().map(|b| b.node_id).collect();
        cluster::view::partition_leader(topic, partition, &ids).is_some_and(|l| l == me)
    };
    Leadership {
        fingerprint: Arc::new(fingerprint),
        leads: Arc::new(leads),
    }
}
