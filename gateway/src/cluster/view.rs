//! What the Kafka handlers read from the cluster: the live brokers and their addresses, the
//! controller, the cluster id, partition leaders spread over members, and whether this node may
//! act as a group coordinator right now.
//!
//! The controller clients see is not the raft leader: every admin API this gateway serves
//! (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs, IncrementalAlterConfigs,
//! DeleteRecords) works on the shared storage from any member, and the raft writes of the Kafka
//! path (group ownership and records, producer-id blocks) are forwarded to the leader by
//! [`Coordinator::write`] with a bounded wait for a new one. So, as KRaft brokers do, a member
//! names a live broker it lists, itself first (see [`controller_for`]). Naming the raft leader
//! would name a dead node for as long as followers still believe in it (an election timeout
//! and more), and librdkafka's admin client then waits for that node until its request times out.
//!
//! Invariants:
//! - Every answer comes from this node's applied state, so all members that applied the same
//!   log answer the same (Metadata agrees across replicas).
//! - A node acts as coordinator only while it is in contact with a quorum: a follower within
//!   the lease of the leader's last AppendEntries, a leader while a majority of voters answered
//!   within the lease. The lease is half the time after which the leader moves a silent member's
//!   groups, so a cut-off owner stops before its groups are handed to another node.

use std::time::Instant;

use openraft::ServerState;

use super::{Coordinator, NodeId};

/// A member as advertised to Kafka clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Node id (the raft id).
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// Splits an advertised `host:port` (IPv6 hosts may be bracketed).
pub fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_matches(['[', ']']);
    (!host.is_empty()).then(|| (host.to_owned(), i32::from(port)))
}

/// The leader advertised for `partition` of `topic` among `brokers` (sorted ids): topics start
/// at a hashed offset so small topics do not all land on the lowest id, and consecutive
/// partitions go to consecutive brokers. Any broker can serve any partition; this only spreads
/// client load.
pub fn partition_leader(topic: &str, partition: i32, brokers: &[i32]) -> Option<i32> {
    if brokers.is_empty() {
        return None;
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in topic.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let n = brokers.len() as u64;
    let slot = (u64::from(h) + u64::from(partition.unsigned_abs())) % n;
    brokers.get(slot as usize).copied()
}

/// The controller named to clients among `brokers` (the ids listed in the same answer): `me`
/// when listed (the node answering is alive and serves admin requests itself), else the raft
/// `leader` when listed (this node was marked dead or removed but still answers), else the
/// lowest listed id. `None` only when nothing is listed.
pub fn controller_for(me: i32, leader: Option<i32>, brokers: &[i32]) -> Option<i32> {
    if brokers.contains(&me) {
        return Some(me);
    }
    leader
        .filter(|l| brokers.contains(l))
        .or_else(|| brokers.iter().copied().min())
}

impl Coordinator {
    /// Live members as Kafka brokers, sorted by id. Empty until this node applied a membership.
    /// Addresses are those of each member's first listener.
    pub fn brokers(&self) -> Vec<Broker> {
        self.live_brokers(None)
    }

    /// Live members as Kafka brokers with their addresses on `listener`, sorted by id; members
    /// that advertise listeners but not this one are left out.
    pub fn brokers_on(&self, listener: &str) -> Vec<Broker> {
        self.live_brokers(Some(listener))
    }

    fn live_brokers(&self, listener: Option<&str>) -> Vec<Broker> {
        let applied = self.inner.applied.read();
        applied
            .state
            .members
            .iter()
            .filter(|(_, m)| m.live)
            .filter_map(|(id, m)| broker(*id, &m.node, listener))
            .collect()
    }

    /// The broker with `node_id`, live or not, if it is a member, with its first listener's
    /// address.
    pub fn broker(&self, node_id: NodeId) -> Option<Broker> {
        let applied = self.inner.applied.read();
        let m = applied.state.members.get(&node_id)?;
        broker(node_id, &m.node, None)
    }

    /// The broker with `node_id` as seen on `listener`, if it is a member advertising it.
    pub fn broker_on(&self, node_id: NodeId, listener: &str) -> Option<Broker> {
        let applied = self.inner.applied.read();
        let m = applied.state.members.get(&node_id)?;
        broker(node_id, &m.node, Some(listener))
    }

    /// The raft leader as this node knows it (possibly a node that just died).
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// The replicated cluster id, once set.
    pub fn cluster_id(&self) -> Option<String> {
        let id = self.inner.applied.read().state.cluster_id.clone();
        (!id.is_empty()).then_some(id)
    }

    /// True while this node is in contact with a quorum (see the module invariants).
    pub fn in_quorum(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        let now = Instant::now();
        let fresh = |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) < self.inner.lease);
        match m.state {
            ServerState::Leader => {
                let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
                let reached = voters
                    .iter()
                    .filter(|v| **v == self.inner.node_id || fresh(self.inner.network.last_contact(**v)))
                    .count();
                reached * 2 > voters.len()
            }
            ServerState::Follower | ServerState::Learner => {
                m.current_leader.is_some() && fresh(*self.inner.leader_contact.lock())
            }
            ServerState::Candidate | ServerState::Shutdown => false,
        }
    }

    /// Where a node cut off from the quorum sends clients looking for `group_id`'s coordinator:
    /// the owner the others will pick once they declare this node dead (rendezvous over the
    /// other voters). Clients such as librdkafka ask the last coordinator first, so answering
    /// "not available" here would keep them knocking on the cut-off node; a wrong guess is
    /// corrected by that node's NOT_COORDINATOR and its own, in-quorum, FindCoordinator answer.
    pub fn owner_without_me(&self, group_id: &str) -> Option<NodeId> {
        let applied = self.inner.applied.read();
        let others: Vec<NodeId> = applied
            .state
            .members
            .iter()
            .filter(|(id, m)| m.voter && **id != self.inner.node_id)
            .map(|(id, _)| *id)
            .collect();
        super::state::rendezvous(group_id, &others)
    }

    /// True once this node is a voter of an initialized cluster and has applied the log up to
    /// the entry that made it one. A learner has not finished joining: its promotion may have
    /// been refused (another membership change in progress) and is retried.
    pub fn joined(&self) -> bool {
        let applied = self.inner.applied.read();
        applied
            .state
            .members
            .get(&self.inner.node_id)
            .is_some_and(|m| m.voter)
    }
}

/// `node` as a broker: its address on `listener` when it advertises listeners (none when not
/// this one), else its only address.
fn broker(id: NodeId, node: &super::ClusterNode, listener: Option<&str>) -> Option<Broker> {
    let addr = match listener {
        Some(name) if !node.listeners.is_empty() => node.listeners.get(name)?,
        _ => &node.kafka_addr,
    };
    let (host, port) = split_host_port(addr)?;
    Some(Broker {
        node_id: i32::try_from(id).ok()?,
        host,
        port,
        rack: node.rack.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaders_spread_over_all_brokers_deterministically() {
        let brokers = [0, 1, 2];
        let leaders: Vec<i32> = (0..6)
            .map(|p| partition_leader("orders", p, &brokers).unwrap())
            .collect();
        for b in brokers {
            assert_eq!(leaders.iter().filter(|l| **l == b).count(), 2, "{leaders:?}");
        }
        assert_eq!(
            leaders,
            (0..6)
                .map(|p| partition_leader("orders", p, &brokers).unwrap())
                .collect::<Vec<_>>()
        );
        assert_eq!(partition_leader("t", 0, &[]), None);
        assert_eq!(partition_leader("t", 5, &[7]), Some(7));
    }

    #[test]
    fn controller_is_a_listed_broker_this_node_first() {
        // Followers right after the leader (0) died: each names itself, not the dead leader.
        assert_eq!(controller_for(1, Some(0), &[0, 1, 2]), Some(1));
        assert_eq!(controller_for(2, Some(0), &[1, 2]), Some(2));
        // This node was marked dead or removed but still answers: a listed broker instead.
        assert_eq!(controller_for(3, Some(2), &[0, 1, 2]), Some(2));
        assert_eq!(controller_for(3, Some(7), &[2, 0, 1]), Some(0));
        assert_eq!(controller_for(3, None, &[2, 1]), Some(1));
        assert_eq!(controller_for(3, Some(3), &[]), None);
    }

    #[test]
    fn brokers_are_seen_through_the_client_listener() {
        let node = crate::cluster::ClusterNode {
            kafka_addr: "gw-1:9092".into(),
            listeners: [
                ("PLAINTEXT".to_owned(), "gw-1:9092".to_owned()),
                ("SSL".to_owned(), "gw-1.example.com:9093".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let on = |l| broker(1, &node, l).map(|b| format!("{}:{}", b.host, b.port));
        assert_eq!(on(Some("SSL")).as_deref(), Some("gw-1.example.com:9093"));
        assert_eq!(on(Some("PLAINTEXT")).as_deref(), Some("gw-1:9092"));
        assert_eq!(on(Some("SASL_SSL")), None);
        assert_eq!(on(None).as_deref(), Some("gw-1:9092"));
        // A member that shares no listeners (started by an older version) keeps its address.
        let old = crate::cluster::ClusterNode {
            kafka_addr: "gw-2:9092".into(),
            ..Default::default()
        };
        assert_eq!(broker(2, &old, Some("SSL")).map(|b| b.port), Some(9092));
    }

    #[test]
    fn advertised_addresses_split() {
        assert_eq!(
            split_host_port("127.0.0.2:9092"),
            Some(("127.0.0.2".into(), 9092))
        );
        assert_eq!(split_host_port("[::1]:9092"), Some(("::1".into(), 9092)));
        assert_eq!(
            split_host_port("kgw-0.kgw:9092"),
            Some(("kgw-0.kgw".into(), 9092))
        );
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(split_host_port(":9092"), None);
    }
}
