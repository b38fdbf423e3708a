//! Kafka-protocol probes of a [`Cluster`]'s nodes: who coordinates a group, whether a node
//! still acts as a group's coordinator, committed offsets, and Metadata.
//!
//! Each probe opens a fresh connection to one node, so a probe never rides on a connection a
//! killed or partitioned node left half-open.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, MetadataResponse, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::Cluster;
use super::raw::{topic_name, RawClient};

/// One node's FindCoordinator answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAnswer {
    /// Error code (0 when a coordinator is named).
    pub error_code: i16,
    /// The coordinator's node id.
    pub node_id: i32,
    /// The coordinator's `host:port`.
    pub addr: String,
}

/// Kafka error code NOT_COORDINATOR.
pub const NOT_COORDINATOR: i16 = 16;
/// Kafka error code COORDINATOR_NOT_AVAILABLE.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// Kafka error code COORDINATOR_LOAD_IN_PROGRESS.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

impl Cluster {
    fn connect(&self, id: i32) -> Result<RawClient> {
        RawClient::connect(self.node(id)?.gw.kafka_addr())
    }

    /// FindCoordinator v3 for `group`, asked of node `id`.
    ///
    /// # Errors
    /// Transport errors.
    pub fn find_coordinator(&self, id: i32, group: &str) -> Result<CoordinatorAnswer> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_owned()))
            .with_key_type(0);
        let r = self.connect(id)?.send(&request, 3)?;
        Ok(CoordinatorAnswer {
            error_code: r.error_code,
            node_id: r.node_id.0,
            addr: format!("{}:{}", r.host, r.port),
        })
    }

    /// The coordinator every running node names for `group` (all must agree, without error).
    ///
    /// # Errors
    /// A node errs or the nodes disagree (callers poll through
    /// [`poll_until`](super::cluster::poll_until)).
    pub fn group_owner(&mut self, group: &str) -> Result<Option<i32>> {
        let mut owner = None;
        for id in self.running() {
            let a = self.find_coordinator(id, group)?;
            if a.error_code != 0 {
                return Ok(None);
            }
            match owner {
                None => owner = Some(a.node_id),
                Some(o) if o == a.node_id => {}
                Some(_) => return Ok(None),
            }
        }
        Ok(owner)
    }

    /// Heartbeat v4 for `group` with a member id no client uses, sent to node `id`: a node acting
    /// as the coordinator answers UNKNOWN_MEMBER_ID (or a rebalance error), any other node
    /// NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE. Side-effect free.
    ///
    /// # Errors
    /// Transport errors.
    pub fn heartbeat_probe(&self, id: i32, group: &str) -> Result<i16> {
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(1)
            .with_member_id(StrBytes::from_static_str("kgw-probe-not-a-member"));
        Ok(self.connect(id)?.send(&request, 4)?.error_code)
    }

    /// Committed offsets of `group` for partitions `0..partitions` of `topic` (OffsetFetch v7
    /// asked of node `id`): the group error code and partition → offset (-1 when none).
    ///
    /// # Errors
    /// Transport errors or a partition-level error.
    pub fn offset_fetch(
        &self,
        id: i32,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<(i16, BTreeMap<i32, i64>)> {
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes((0..partitions).collect())]));
        let r = self.connect(id)?.send(&request, 7)?;
        let mut offsets = BTreeMap::new();
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(anyhow!(
                        "OffsetFetch {group} {topic}/{}: error {}",
                        p.partition_index,
                        p.error_code
                    ));
                }
                offsets.insert(p.partition_index, p.committed_offset);
            }
        }
        Ok((r.error_code, offsets))
    }

    /// Metadata v12 for `topics` asked of node `id`.
    ///
    /// # Errors
    /// Transport errors.
    pub fn metadata(&self, id: i32, topics: &[&str]) -> Result<MetadataResponse> {
        self.connect(id)?.metadata(topics)
    }
}
