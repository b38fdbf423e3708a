//! The [`Coordinator`] handle: one running raft node with its peer service and liveness
//! monitor, and the operations the rest of the gateway calls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{ServerState, SnapshotPolicy};
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::command::{Command, CommandResponse, ForwardError, ForwardRequest, ForwardResponse};
use super::error::ClusterError;
use super::log_store::LogStore;
use super::management::{self, ClusterStatus};
use super::network::{Network, NetworkOptions};
use super::service::{self, PeerService};
use super::solo::{GrowHook, SoloGate};
use super::state::GroupState;
use super::state_machine::{Applied, StateMachineStore};
use super::{ClusterNode, NodeId, Raft};
use crate::group::record::GroupRecord;

/// How long shutdown waits for each cluster task and for the raft core.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything needed to start one raft node.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's addresses, as registered in the membership.
    pub node: ClusterNode,
    /// Directory of the raft log, vote and snapshot.
    pub data_dir: PathBuf,
    /// Peer connection limits.
    pub network: NetworkOptions,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout; the upper bound is twice this.
    pub election_timeout: Duration,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the last snapshot (for followers slightly behind).
    pub keep_entries_after_snapshot: u64,
    /// A member the leader has not heard from for this long is marked dead and loses its groups.
    pub dead_after: Duration,
    /// Receives whether this node is the only member ([`super::solo::SoloGate`]); a fresh
    /// channel when not given.
    pub alone: Option<watch::Sender<bool>>,
    /// More gRPC services served on the cluster port (SeaweedMQ WAL copies).
    pub extra_services: Option<tonic::service::Routes>,
}

impl ClusterOptions {
    /// Defaults for node `node_id` with addresses `node`, storing under `data_dir`.
    pub fn new(node_id: NodeId, node: ClusterNode, data_dir: PathBuf) -> Self {
        Self {
            node_id,
            node,
            data_dir,
            network: NetworkOptions::default(),
            heartbeat_interval: Duration::from_millis(250),
            election_timeout: Duration::from_millis(1000),
            snapshot_after_entries: 10_000,
            keep_entries_after_snapshot: 1_000,
            dead_after: Duration::from_secs(5),
            alone: None,
            extra_services: None,
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        let election_ms = self.election_timeout.as_millis() as u64;
        openraft::Config {
            cluster_name: "kafka-gateway".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: election_ms,
            election_timeout_max: election_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            // Snapshot chunks travel as JSON arrays (up to 4 bytes per byte) inside one message.
            snapshot_max_chunk_size: (self.network.max_message_bytes / 8).max(1024) as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(e.to_string()))
    }
}

/// Handle to this node's cluster membership; cheap to clone.
#[derive(Debug, Clone)]
pub struct Coordinator {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) node_id: NodeId,
    pub(super) node: ClusterNode,
    pub(super) raft: Raft,
    pub(super) network: Network,
    pub(super) applied: Arc<RwLock<Applied>>,
    /// When this node last heard from a leader (an inbound AppendEntries).
    pub(super) leader_contact: Arc<parking_lot::Mutex<Option<Instant>>>,
    /// How long without leader contact (or, on the leader, without a quorum) this node may
    /// keep acting as a group coordinator: half the time after which its groups move away.
    pub(super) lease: Duration,
    /// Set once by [`Coordinator::export_metrics`].
    pub(super) metrics: std::sync::OnceLock<super::metrics::ClusterMetrics>,
    /// Whether this node is alone, and the hook run before a member joins.
    pub(super) gate: Arc<SoloGate>,
    pub(super) stop: CancellationToken,
    pub(super) tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Coordinator {
    /// Opens the raft storage, starts the raft node, serves peers on `listener` and runs the
    /// liveness monitor. The node is not initialized: call [`Coordinator::initialize`] on one node
    /// of a new cluster, or have the leader add it. Without a listener (a standalone gateway) the
    /// node serves no peer and can only form a one-node cluster.
    ///
    /// # Errors
    /// Storage that cannot be opened, invalid options (a listener without a cluster token in
    /// `options.network.token`), or a raft node that fails to start.
    pub async fn start(options: ClusterOptions, listener: Option<TcpListener>) -> Result<Self, ClusterError> {
        let config = Arc::new(options.raft_config()?);
        let token = match (&listener, &options.network.token) {
            (Some(_), None) => {
                return Err(ClusterError::Config(
                    "serving raft peers needs a cluster token: peers could otherwise change the \
                     membership and write any state"
                        .into(),
                ))
            }
            (_, token) => token.clone(),
        };
        let log = LogStore::open(&options.data_dir).map_err(ClusterError::Storage)?;
        let sm = StateMachineStore::open(&options.data_dir).map_err(ClusterError::Storage)?;
        let applied = sm.applied();
        let network = Network::new(options.network.clone());
        let raft = Raft::new(options.node_id, config, network.clone(), log, sm)
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        let stop = CancellationToken::new();
        let leader_contact = Arc::new(parking_lot::Mutex::new(None));
        let gate = Arc::new(SoloGate::new(
            options.node_id,
            options.alone.clone().unwrap_or_else(|| watch::channel(false).0),
        ));
        let mut tasks = Vec::new();
        if let (Some(listener), Some(token)) = (listener, token) {
            let stop = stop.clone();
            let max_snapshot = options.network.max_snapshot_bytes;
            let svc = PeerService::new(
                raft.clone(),
                Arc::clone(&leader_contact),
                max_snapshot,
                Arc::clone(&gate),
            );
            let max = options.network.max_message_bytes;
            let extra = options.extra_services.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = service::serve(listener, svc, token, max, extra, stop.cancelled_owned()).await {
                    tracing::error!(error = %e, "raft peer service stopped");
                }
            }));
        }
        let inner = Arc::new(Inner {
            node_id: options.node_id,
            node: options.node.clone(),
            raft,
            network,
            applied,
            leader_contact,
            lease: options.dead_after / 2,
            metrics: std::sync::OnceLock::new(),
            gate,
            stop,
            tasks: parking_lot::Mutex::new(tasks),
        });
        let alone = tokio::spawn(watch_membership(Arc::clone(&inner)));
        inner.tasks.lock().push(alone);
        let monitor = tokio::spawn(liveness_monitor(Arc::clone(&inner), options.dead_after));
        inner.tasks.lock().push(monitor);
        Ok(Self { inner })
    }

    /// Registers what runs before a second member is added while this node is alone (see
    /// [`SoloGate`]); an error refuses the addition.
    pub fn set_grow_hook(&self, hook: GrowHook) {
        self.inner.gate.set_grow_hook(hook);
    }

    /// Whether this node is the cluster's only member and no member is being added.
    pub fn alone(&self) -> watch::Receiver<bool> {
        self.inner.gate.subscribe()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The raft node, for metrics and waiting on conditions.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Initializes a new cluster with `members` as voters (no-op if already initialized).
    ///
    /// # Errors
    /// See [`management::initialize`].
    pub async fn initialize(&self, members: BTreeMap<NodeId, ClusterNode>) -> Result<(), ClusterError> {
        management::initialize(&self.inner.raft, members).await
    }

    /// Runs `request` on the leader: locally if this node leads, else forwarded to the leader.
    /// While leadership moves (the leader died, an election runs) it waits for a new leader and
    /// retries, all within the network's `forward_timeout` (10 s by default: an election takes
    /// 1-3 s, and Kafka clients time requests out after 30 s).
    ///
    /// # Errors
    /// [`ClusterError::NoLeader`] when no leader could be reached in time (Kafka handlers answer
    /// it with a retriable code), or the leader's error.
    pub async fn request(&self, request: ForwardRequest) -> Result<ForwardResponse, ClusterError> {
        let deadline = Instant::now() + self.inner.network.options().forward_timeout;
        let mut last = ClusterError::NoLeader;
        for _ in 0..10 {
            // A write the raft core never answers (a quorum that stays unreachable) must not
            // hold the caller past its deadline.
            let local = tokio::time::timeout_at(
                deadline.into(),
                management::execute_local(&self.inner.raft, &self.inner.gate, request.clone()),
            )
            .await
            .map_err(|_| ClusterError::NoLeader)?;
            let (err, failed_leader) = match local {
                Ok(r) => return Ok(r),
                Err(ForwardError::NotLeader { leader: Some(l) }) if l != self.inner.node_id => {
                    // A leader whose address swallows packets must not hold the caller
                    // past its deadline either.
                    let forwarded = tokio::time::timeout_at(deadline.into(), self.forward_to(l, &request))
                        .await
                        .unwrap_or(Err(ClusterError::NoLeader));
                    match forwarded {
                        Ok(Ok(r)) => return Ok(r),
                        Ok(Err(e @ ForwardError::NotLeader { .. })) => (ClusterError::from(e), Some(l)),
                        Ok(Err(e)) => return Err(e.into()),
                        Err(e) => (e, Some(l)),
                    }
                }
                Err(e @ ForwardError::NotLeader { .. }) => (ClusterError::from(e), None),
                Err(e) => return Err(e.into()),
            };
            tracing::info!(error = %err, failed_leader = ?failed_leader, "leader unavailable, waiting for a leader");
            last = err;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            // Wait for a leader other than the one that just failed, then try again.
            let _ = self
                .inner
                .raft
                .wait(Some(remaining))
                .metrics(
                    |m| m.current_leader.is_some() && m.current_leader != failed_leader,
                    "new leader",
                )
                .await;
        }
        Err(match last {
            ClusterError::NotLeader { .. } | ClusterError::Rpc(_) => ClusterError::NoLeader,
            other => other,
        })
    }

    async fn forward_to(
        &self,
        leader: NodeId,
        request: &ForwardRequest,
    ) -> Result<Result<ForwardResponse, ForwardError>, ClusterError> {
        let addr = {
            let metrics = self.inner.raft.metrics().borrow().clone();
            metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.cluster_addr.clone())
        };
        let addr = addr.ok_or(ClusterError::NotLeader { leader: Some(leader) })?;
        self.inner.network.forward(&addr, request).await
    }

    /// Proposes `command` and returns the state machine's answer.
    ///
    /// # Errors
    /// See [`Coordinator::request`].
    pub async fn write(&self, command: Command) -> Result<CommandResponse, ClusterError> {
        let kind = command.kind();
        let started = Instant::now();
        let result = self.request(ForwardRequest::Write(command)).await;
        if let Some(m) = self.inner.metrics.get() {
            m.proposal(kind, result.is_ok(), started.elapsed().as_secs_f64());
        }
        match result? {
            ForwardResponse::Written(r) => Ok(r),
            other => Err(ClusterError::Rejected(format!("unexpected reply {other:?}"))),
        }
    }

    /// The owner and epoch of `group_id`, claiming the group (through raft) if it has none yet.
    ///
    /// # Errors
    /// Raft errors, or [`ClusterError::Rejected`] when no live voter exists.
    pub async fn claim_group(&self, group_id: &str) -> Result<(NodeId, u64), ClusterError> {
        if let Some(g) = self.group(group_id) {
            return Ok((g.owner, g.epoch));
        }
        match self
            .write(Command::ClaimGroup {
                group_id: group_id.to_owned(),
            })
            .await?
        {
            CommandResponse::Owner { owner, epoch } => Ok((owner, epoch)),
            CommandResponse::Rejected { reason } => Err(ClusterError::Rejected(reason)),
            other => Err(ClusterError::Rejected(format!("unexpected answer {other:?}"))),
        }
    }

    /// Writes a group record as owner of its group at `epoch`.
    ///
    /// # Errors
    /// [`ClusterError::Fenced`] when this node no longer owns the group at `epoch`.
    pub async fn write_group_record(&self, epoch: u64, record: GroupRecord) -> Result<(), ClusterError> {
        let command = Command::GroupWrite {
            owner: self.inner.node_id,
            epoch,
            record,
        };
        match self.write(command).await? {
            CommandResponse::Written => Ok(()),
            CommandResponse::Fenced { owner, epoch } => Err(ClusterError::Fenced { owner, epoch }),
            other => Err(ClusterError::Rejected(format!("unexpected answer {other:?}"))),
        }
    }

    /// Reserves `count` producer ids for this node and returns the first.
    ///
    /// # Errors
    /// Raft errors, or a rejected block size.
    pub async fn allocate_producer_ids(&self, count: u64) -> Result<i64, ClusterError> {
        match self
            .write(Command::AllocateProducerIds {
                node_id: self.inner.node_id,
                count,
            })
            .await?
        {
            CommandResponse::ProducerIds { start, .. } => Ok(start),
            CommandResponse::Rejected { reason } => Err(ClusterError::Rejected(reason)),
            other => Err(ClusterError::Rejected(format!("unexpected answer {other:?}"))),
        }
    }

    /// The applied state of `group_id` on this node (owner, epoch, metadata, offsets).
    pub fn group(&self, group_id: &str) -> Option<GroupState> {
        self.inner.applied.read().state.groups.get(group_id).cloned()
    }

    /// Reads the applied state.
    pub fn with_applied<T>(&self, f: impl FnOnce(&Applied) -> T) -> T {
        f(&self.inner.applied.read())
    }

    /// Adds a member: learner first, voter once caught up.
    ///
    /// # Errors
    /// See [`Coordinator::request`].
    pub async fn add_member(&self, node_id: NodeId, node: ClusterNode) -> Result<(), ClusterError> {
        self.request(ForwardRequest::AddMember { node_id, node })
            .await
            .map(|_| ())
    }

    /// Removes a member from the cluster.
    ///
    /// # Errors
    /// See [`Coordinator::request`].
    pub async fn remove_member(&self, node_id: NodeId) -> Result<(), ClusterError> {
        self.request(ForwardRequest::RemoveMember { node_id })
            .await
            .map(|_| ())
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        management::status(&self.inner.raft, &self.inner.applied.read())
    }

    /// Stops the liveness monitor, the peer service and the raft node.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, t).await.is_err() {
                tracing::warn!("a cluster task did not stop on cancellation; aborting it");
                abort.abort();
            }
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, self.inner.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "raft shutdown"),
            Err(_) => tracing::warn!("raft did not shut down within {SHUTDOWN_GRACE:?}"),
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// On the leader: marks members it has not heard from within `dead_after` as dead (and those it
/// hears from again as live) through the log, which moves their groups.
async fn liveness_monitor(inner: Arc<Inner>, dead_after: Duration) {
    let mut tick = tokio::time::interval((dead_after / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leader_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = inner.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let metrics = inner.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            leader_since = None;
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        let members: Vec<NodeId> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let live: BTreeSet<NodeId> = members
            .into_iter()
            .filter(|id| {
                *id == inner.node_id
                    || now.duration_since(since) < dead_after
                    || inner
                        .network
                        .last_contact(*id)
                        .is_some_and(|t| now.duration_since(t) < dead_after)
            })
            .collect();
        let current: BTreeSet<NodeId> = inner
            .applied
            .read()
            .state
            .members
            .iter()
            .filter(|(_, m)| m.live)
            .map(|(id, _)| *id)
            .collect();
        if live != current {
            tracing::info!(live = ?live, previous = ?current, "member liveness changed");
            if let Err(e) = inner.raft.client_write(Command::SetLive { live }).await {
                tracing::warn!(error = %e, "could not record member liveness");
            }
        }
    }
}

/// Feeds the applied membership to the [`SoloGate`] until the node stops.
async fn watch_membership(inner: Arc<Inner>) {
    let mut metrics = inner.raft.metrics();
    loop {
        let ids: Vec<NodeId> = metrics
            .borrow_and_update()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        inner.gate.membership(ids);
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            () = inner.stop.cancelled() => return,
        }
    }
}
