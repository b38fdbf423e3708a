//! Conversions between a live group and its durable records, and the read-only views
//! (DescribeGroups, ListGroups).

use std::collections::BTreeMap;

use super::member::Member;
use super::record::{GroupMetadataRecord, GroupRecord, MemberRecord, ProtocolRecord};
use super::state::{GroupPhase, GroupState};
use super::store::ImageGroup;
use super::types::{CommittedOffset, GroupDescription, GroupListing, MemberDescription, Protocol};
use super::GroupConfig;
use crate::storage::TopicPartition;

impl GroupState {
    /// The group's metadata as a durable record.
    pub fn metadata_record(&self) -> GroupMetadataRecord {
        GroupMetadataRecord {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol_name.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|p| ProtocolRecord {
                            name: p.name.clone(),
                            metadata: p.metadata.clone(),
                        })
                        .collect(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Queues the group's metadata record for persistence.
    pub(crate) fn persist_metadata(&mut self) {
        let record = GroupRecord::Metadata(self.metadata_record());
        self.effects.records.push(record);
    }

    /// Rebuilds a group from its replayed records, as Kafka loads groups: Stable if the last
    /// generation had members (whose sessions restart at `now_ms`), else Empty.
    pub fn restore(group_id: &str, image: &ImageGroup, config: GroupConfig, now_ms: u64) -> Self {
        let mut group = GroupState::new(group_id, config, now_ms);
        if let Some(meta) = &image.metadata {
            group.protocol_type = meta.protocol_type.clone();
            group.generation = meta.generation;
            group.state_timestamp_ms = meta.state_timestamp_ms;
            for m in &meta.members {
                let member = Member {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|p| Protocol {
                            name: p.name.clone(),
                            metadata: p.metadata.clone(),
                        })
                        .collect(),
                    assignment: m.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    last_heartbeat_ms: now_ms,
                    joined_ms: now_ms,
                };
                if let Some(instance) = &member.instance_id {
                    group
                        .static_members
                        .insert(instance.clone(), member.member_id.clone());
                }
                group.members.insert(member.member_id.clone(), member);
            }
            if !group.members.is_empty() {
                group.protocol_name = meta.protocol.clone();
                let leader_known = meta
                    .leader
                    .as_ref()
                    .is_some_and(|l| group.members.contains_key(l));
                group.leader = if leader_known {
                    meta.leader.clone()
                } else {
                    group.members.keys().next().cloned()
                };
                group.phase = GroupPhase::Stable;
            }
        }
        group.offsets = image
            .offsets
            .values()
            .map(|o| {
                let tp = TopicPartition::new(o.topic.as_str(), o.partition);
                let committed = CommittedOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: o.commit_timestamp_ms,
                    expire_timestamp_ms: o.expire_timestamp_ms,
                };
                (tp, committed)
            })
            .collect::<BTreeMap<_, _>>();
        group
    }

    /// DescribeGroups view: metadata and assignments only while Stable, as Kafka shows them.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.phase == GroupPhase::Stable;
        let protocol = if stable {
            self.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.phase.as_str(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol).cloned().unwrap_or_default()
                    } else {
                        Default::default()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Default::default()
                    },
                })
                .collect(),
            protocol,
        }
    }

    /// ListGroups view.
    pub fn listing(&self) -> GroupListing {
        GroupListing {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.phase.as_str(),
        }
    }
}
