//! Committed offsets: commit validation, fetch, delete, expiry.

use std::collections::{BTreeSet, HashMap, HashSet};

use kafka_protocol::ResponseError;

use super::record::{GroupRecord, OffsetCommitRecord};
use super::state::{GroupPhase, GroupState};
use super::subscription::{subscribed_topics, CONSUMER_PROTOCOL_TYPE};
use super::types::{CommitRequest, CommittedOffset};
use crate::storage::TopicPartition;

impl GroupState {
    /// Kafka's commit validation: manual-assignment commits (negative generation) are accepted
    /// only while the group is Empty; members must be current.
    fn validate_commit(&self, req: &CommitRequest) -> Result<(), ResponseError> {
        if self.phase == GroupPhase::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if req.generation_id < 0 && self.phase == GroupPhase::Empty {
            return Ok(());
        }
        if self.is_fenced(req.instance_id.as_deref(), &req.member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(&req.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if req.generation_id != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.phase == GroupPhase::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Handles an OffsetCommit request. A partition named more than once is answered once per
    /// entry, in request order, and ends at its last valid entry, as Kafka's replay of one
    /// record per entry leaves it; only that entry is written.
    ///
    /// # Errors
    /// A validation error that applies to every partition of the request; per-partition
    /// errors (OFFSET_METADATA_TOO_LARGE) are in the result, one per request entry.
    pub fn commit_offsets(
        &mut self,
        req: CommitRequest,
        now_ms: u64,
    ) -> Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError> {
        self.validate_commit(&req)?;
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        let expire = req
            .retention_ms
            .filter(|r| *r >= 0)
            .map(|r| now_ms.saturating_add(u64::try_from(r).unwrap_or(0)));
        let max_metadata = self.config.offset_metadata_max_bytes;
        let valid = |c: &super::types::OffsetCommit| c.metadata.len() <= max_metadata;
        // The last valid entry of each partition is the one that takes effect.
        let last: HashMap<&TopicPartition, usize> = req
            .offsets
            .iter()
            .enumerate()
            .filter(|(_, c)| valid(c))
            .map(|(i, c)| (&c.tp, i))
            .collect();
        let winners: HashSet<usize> = last.into_values().collect();
        let mut results = Vec::with_capacity(req.offsets.len());
        for (i, commit) in req.offsets.into_iter().enumerate() {
            if !valid(&commit) {
                results.push((commit.tp, Some(ResponseError::OffsetMetadataTooLarge)));
                continue;
            }
            if winners.contains(&i) {
                let committed = CommittedOffset {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata: commit.metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: expire,
                };
                self.effects.records.push(GroupRecord::OffsetCommit(offset_record(
                    &self.group_id,
                    &commit.tp,
                    &committed,
                )));
                self.offsets.insert(commit.tp.clone(), committed);
            }
            results.push((commit.tp, None));
        }
        Ok(results)
    }

    /// Committed offset of `tp`, if any.
    pub fn fetch_offset(&self, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.offsets.get(tp)
    }

    /// Topics the group's members are subscribed to: `None` when unknown (not a consumer group,
    /// or a subscription that cannot be read).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscribed_topics(m.metadata(protocol)?)?);
        }
        Some(topics)
    }

    /// Handles an OffsetDelete request: refused for topics a live consumer group subscribes to.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND for a dead group, NON_EMPTY_GROUP for a live non-consumer group.
    pub fn delete_offsets(
        &mut self,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError> {
        let subscribed = match self.phase {
            GroupPhase::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupPhase::Empty => None,
            _ if self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => {
                Some(self.subscribed_topics())
            }
            _ => return Err(ResponseError::NonEmptyGroup),
        };
        let mut results = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let is_subscribed = match &subscribed {
                None => false,
                Some(None) => true,
                Some(Some(topics)) => topics.contains(&*tp.topic),
            };
            if is_subscribed {
                results.push((tp, Some(ResponseError::GroupSubscribedToTopic)));
            } else {
                self.remove_offset(&tp);
                results.push((tp, None));
            }
        }
        Ok(results)
    }

    fn remove_offset(&mut self, tp: &TopicPartition) {
        if self.offsets.remove(tp).is_some() {
            self.effects.records.push(GroupRecord::OffsetDelete {
                group_id: self.group_id.clone(),
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
    }

    /// Removes the offsets of deleted topics.
    pub fn remove_topics(&mut self, topics: &BTreeSet<String>) {
        let doomed: Vec<TopicPartition> = self
            .offsets
            .keys()
            .filter(|tp| topics.contains(&*tp.topic))
            .cloned()
            .collect();
        for tp in doomed {
            self.remove_offset(&tp);
        }
    }

    /// Handles DeleteGroups for this group: only an Empty group can be deleted.
    ///
    /// # Errors
    /// GROUP_ID_NOT_FOUND if already dead, NON_EMPTY_GROUP if it has members.
    pub fn delete_group(&mut self, now_ms: u64) -> Result<(), ResponseError> {
        match self.phase {
            GroupPhase::Dead => Err(ResponseError::GroupIdNotFound),
            GroupPhase::Empty => {
                self.kill(now_ms);
                Ok(())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    fn kill(&mut self, now_ms: u64) {
        self.offsets.clear();
        self.pending_members.clear();
        self.transition(GroupPhase::Dead, now_ms);
        self.effects.records.push(GroupRecord::GroupDelete {
            group_id: self.group_id.clone(),
        });
        tracing::info!(group = %self.group_id, "group deleted");
    }

    /// Kafka's offset expiry (`offsets.retention.minutes`): an Empty group's offsets expire
    /// `retention` after the group became Empty (after their commit, for groups that never had
    /// members); a Stable consumer group's offsets of topics it no longer subscribes to expire
    /// `retention` after their commit; explicit expiry times always apply. An Empty group left
    /// without offsets dies. Returns whether the group died.
    pub fn expire_offsets(&mut self, now_ms: u64, retention_ms: u64) -> bool {
        let base = |o: &CommittedOffset, state_ts: Option<u64>| {
            o.expire_timestamp_ms.unwrap_or_else(|| {
                state_ts
                    .unwrap_or(o.commit_timestamp_ms)
                    .saturating_add(retention_ms)
            })
        };
        let expired: Vec<TopicPartition> = match self.phase {
            GroupPhase::Empty => {
                let state_ts = self.protocol_type.is_some().then_some(self.state_timestamp_ms);
                self.offsets
                    .iter()
                    .filter(|(_, o)| base(o, state_ts) <= now_ms)
                    .map(|(tp, _)| tp.clone())
                    .collect()
            }
            GroupPhase::Stable => match self.subscribed_topics() {
                Some(topics) => self
                    .offsets
                    .iter()
                    .filter(|(tp, o)| !topics.contains(&*tp.topic) && base(o, None) <= now_ms)
                    .map(|(tp, _)| tp.clone())
                    .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        if !expired.is_empty() {
            tracing::info!(group = %self.group_id, partitions = expired.len(), "expired committed offsets");
        }
        for tp in &expired {
            self.remove_offset(tp);
        }
        if self.phase == GroupPhase::Empty && self.offsets.is_empty() && self.pending_members.is_empty() {
            self.kill(now_ms);
            return true;
        }
        false
    }
}

/// The durable record of one committed offset.
pub(crate) fn offset_record(group_id: &str, tp: &TopicPartition, o: &CommittedOffset) -> OffsetCommitRecord {
    OffsetCommitRecord {
        group_id: group_id.to_owned(),
        topic: tp.topic.to_string(),
        partition: tp.partition,
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata.clone(),
        commit_timestamp_ms: o.commit_timestamp_ms,
        expire_timestamp_ms: o.expire_timestamp_ms,
    }
}
