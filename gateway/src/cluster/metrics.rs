//! Raft and ownership metrics of one node, for Prometheus.
//!
//! Gauges follow openraft's metrics channel (updated on every change it reports) plus the
//! applied state; proposals are counted and timed where they are made ([`Coordinator::write`]).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use super::Coordinator;

/// The cluster metrics of one node.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    term: IntGauge,
    leader: IntGauge,
    is_leader: IntGauge,
    commit_index: IntGauge,
    applied_index: IntGauge,
    members: IntGauge,
    live_members: IntGauge,
    groups_owned: IntGauge,
    proposals: IntCounterVec,
    proposal_seconds: HistogramVec,
}

impl ClusterMetrics {
    /// Registers the metrics in `registry`.
    ///
    /// # Errors
    /// A metric of the same name is already registered.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let proposals = IntCounterVec::new(
            Opts::new(
                "kafka_gateway_raft_proposals_total",
                "Commands proposed to the raft log, by kind and outcome",
            ),
            &["kind", "outcome"],
        )?;
        registry.register(Box::new(proposals.clone()))?;
        let proposal_seconds = HistogramVec::new(
            HistogramOpts::new(
                "kafka_gateway_raft_proposal_seconds",
                "Time from proposing a command to its commit",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["kind"],
        )?;
        registry.register(Box::new(proposal_seconds.clone()))?;
        Ok(Self {
            term: gauge("kafka_gateway_raft_term", "Current raft term")?,
            leader: gauge(
                "kafka_gateway_raft_leader",
                "Node id of the raft leader (-1 when unknown)",
            )?,
            is_leader: gauge(
                "kafka_gateway_raft_is_leader",
                "1 when this node is the raft leader",
            )?,
            commit_index: gauge(
                "kafka_gateway_raft_commit_index",
                "Raft commit index as known by this node",
            )?,
            applied_index: gauge(
                "kafka_gateway_raft_applied_index",
                "Index of the last log entry applied here",
            )?,
            members: gauge(
                "kafka_gateway_raft_members",
                "Members of the raft membership (voters and learners)",
            )?,
            live_members: gauge(
                "kafka_gateway_raft_live_members",
                "Members the leader last saw alive",
            )?,
            groups_owned: gauge(
                "kafka_gateway_groups_owned",
                "Consumer groups this node coordinates",
            )?,
            proposals,
            proposal_seconds,
        })
    }

    /// Records one proposal.
    pub fn proposal(&self, kind: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.proposals.with_label_values(&[kind, outcome]).inc();
        self.proposal_seconds.with_label_values(&[kind]).observe(seconds);
    }

    /// Refreshes the gauges from `coordinator`'s raft metrics and applied state.
    pub fn refresh(&self, coordinator: &Coordinator) {
        let status = coordinator.status();
        self.term.set(status.term as i64);
        self.leader.set(status.leader.map_or(-1, |l| l as i64));
        self.is_leader
            .set(i64::from(status.leader == Some(status.node_id)));
        self.commit_index.set(status.commit_index.map_or(0, |i| i as i64));
        self.applied_index
            .set(status.applied_index.map_or(0, |i| i as i64));
        self.members.set(status.members.len() as i64);
        self.live_members
            .set(status.members.iter().filter(|m| m.live).count() as i64);
        let owned = status
            .members
            .iter()
            .find(|m| m.node_id == status.node_id)
            .map_or(0, |m| m.groups_owned);
        self.groups_owned.set(owned as i64);
    }
}

impl Coordinator {
    /// Exports this node's cluster metrics until the node shuts down: proposals from now on,
    /// gauges on every raft metrics change.
    pub fn export_metrics(&self, metrics: ClusterMetrics) {
        if self.inner.metrics.set(metrics.clone()).is_err() {
            return;
        }
        let coordinator = self.clone();
        let mut changes = self.inner.raft.metrics();
        let stop = self.inner.stop.clone();
        let task = tokio::spawn(async move {
            loop {
                metrics.refresh(&coordinator);
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        });
        self.inner.tasks.lock().push(task);
    }
}
