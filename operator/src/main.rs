//! `kafka-gateway-operator`: reconciles `KafkaGateway` resources.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kafka_gateway_operator::controller::{self, Context};
use kafka_gateway_operator::leader::LeaderElector;
use kafka_gateway_operator::members::HttpMemberRemover;
use kafka_gateway_operator::metrics::Metrics;
use kafka_gateway_operator::resources::networkpolicy::OperatorIdentity;
use kafka_gateway_operator::topics::SeaweedBackends;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Command-line flags (each also read from `KAFKA_GATEWAY_OPERATOR_<NAME>`).
#[derive(Debug, Parser)]
#[command(
    name = "kafka-gateway-operator",
    version,
    about = "Kubernetes operator for KafkaGateway"
)]
struct Args {
    /// Admin HTTP listener: /healthz and /metrics.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_OPERATOR_ADMIN_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    admin_listen: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_OPERATOR_LEASE_NAME",
        default_value = "kafka-gateway-operator"
    )]
    lease_name: String,
    /// Lease duration in seconds.
    #[arg(long, env = "KAFKA_GATEWAY_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// This replica's identity (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Labels of the operator pods (`key=value,...`): the gateways' NetworkPolicy admits pods
    /// with them, in the operator's namespace, to the admin port.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_OPERATOR_POD_LABELS",
        default_value = "app.kubernetes.io/name=kafka-gateway-operator"
    )]
    pod_labels: String,
    /// Run without leader election (a single replica only).
    #[arg(long, env = "KAFKA_GATEWAY_OPERATOR_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// A one-off task instead of the controller.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Delete one KafkaGateway and wait until it is gone (the chart's pre-delete hook: it runs
    /// while the operator can still finalize the gateway).
    DeleteGateway {
        /// Namespace of the KafkaGateway.
        #[arg(long)]
        namespace: String,
        /// Its name.
        #[arg(long)]
        name: String,
        /// How long to wait for the deletion to finish.
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kafka_gateway_operator::telemetry::init();
    let args = Args::parse();
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("kafka-gateway-operator-{}", std::process::id()));

    let operator = OperatorIdentity::new(&args.lease_namespace, &args.pod_labels)
        .map_err(|e| anyhow::anyhow!("--pod-labels: {e}"))?;
    let client = kube::Client::try_default()
        .await
        .context("no kubernetes config (in-cluster or kubeconfig)")?;
    if let Some(Command::DeleteGateway {
        namespace,
        name,
        timeout_seconds,
    }) = &args.command
    {
        let api = kube::Api::namespaced(client, namespace);
        let timeout = Duration::from_secs(*timeout_seconds);
        kafka_gateway_operator::uninstall::delete_gateway(&api, name, timeout, Duration::from_secs(2))
            .await?;
        return Ok(());
    }
    if let Err(e) = controller::check_crd(&client).await {
        error!(error = %e, "the KafkaGateway CRD is not queryable");
        eprintln!(
            "KafkaGateway CRD not installed or not readable ({e}).\n\
             Install it with: kubectl apply -f crds/kafkagateway.yaml\n\
             (or: cargo run -p kafka-gateway-operator --bin crdgen | kubectl apply -f -)"
        );
        std::process::exit(2);
    }

    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("bind admin listener {}", args.admin_listen))?;
    let admin_stop = shutdown.clone();
    let admin = tokio::spawn(async move {
        axum::serve(listener, kafka_gateway_operator::admin::router(registry))
            .with_graceful_shutdown(async move { admin_stop.cancelled().await })
            .await
    });
    info!(addr = %args.admin_listen, "admin listening");

    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                error!(error = %e, "cannot install SIGTERM handler");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("shutting down");
        signal_token.cancel();
    });

    let elector = (!args.no_leader_election).then(|| {
        LeaderElector::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_seconds.max(3)),
        )
    });
    let lost = CancellationToken::new();
    if let Some(elector) = &elector {
        if !elector.acquire(&shutdown).await {
            return Ok(());
        }
        let (elector, stop, lost) = (elector.clone(), shutdown.clone(), lost.clone());
        tokio::spawn(async move { elector.keep(stop, lost).await });
    }

    let ctx = Arc::new(Context::new(
        client,
        Some(identity),
        metrics,
        Arc::new(SeaweedBackends::default()),
        Arc::new(HttpMemberRemover::default()),
        operator,
    ));
    let (stop, lost_leadership) = (shutdown.clone(), lost.clone());
    controller::run(ctx, async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = lost_leadership.cancelled() => {}
        }
    })
    .await;

    shutdown.cancel();
    if let Some(elector) = &elector {
        elector.release().await;
    }
    admin.await??;
    if lost.is_cancelled() {
        anyhow::bail!("leadership lost; exiting so a restart campaigns again");
    }
    Ok(())
}
