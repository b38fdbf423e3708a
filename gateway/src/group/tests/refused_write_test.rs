//! The coordinator over a scripted [`GroupLog`] that can refuse or stall writes, as raft does
//! when it has no quorum or a slow disk: a refused write must leave the in-memory group as the
//! durable log has it, and one stalled write must not hold up other groups.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::Registry;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::group::log::LogFuture;
use crate::group::store::{GroupImage, ImageGroup, StoreError};
use crate::storage::TopicPartition;

#[derive(Debug, Default)]
struct Script {
    /// What the log holds: only accepted writes reach it.
    image: GroupImage,
    /// Ownership epoch per group (0 until renewed).
    epochs: HashMap<String, u64>,
    /// Writes of every group are refused while set.
    refuse: bool,
    /// Writes of these groups never complete while they are listed.
    stall: HashSet<String>,
    /// Accepted writes per group.
    writes: BTreeMap<String, usize>,
}

/// A group log whose answers the test decides.
#[derive(Debug, Default)]
struct ScriptedLog {
    script: Mutex<Script>,
    /// Keeps stalled acknowledgements alive (dropping them would answer the caller).
    stalled: Mutex<Vec<oneshot::Sender<Result<(), StoreError>>>>,
    released: Notify,
}

impl GroupLog for ScriptedLog {
    fn ownership<'a>(&'a self, group_id: &'a str) -> OwnershipFuture<'a> {
        let epoch = self.script.lock().epochs.get(group_id).copied().unwrap_or(0);
        Box::pin(std::future::ready(Ok(epoch)))
    }

    fn load(&self, group_id: &str) -> Option<ImageGroup> {
        self.script.lock().image.groups.get(group_id).cloned()
    }

    fn owned_groups(&self) -> Vec<String> {
        self.script.lock().image.groups.keys().cloned().collect()
    }

    fn submit(
        &self,
        group_id: &str,
        epoch: u64,
        records: Vec<GroupRecord>,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        let mut s = self.script.lock();
        if s.stall.contains(group_id) {
            self.stalled.lock().push(tx);
            return rx;
        }
        let current = s.epochs.get(group_id).copied().unwrap_or(0);
        let result = if s.refuse {
            Err(StoreError::Cluster("no quorum".into()))
        } else if epoch != current {
            Err(StoreError::Fenced)
        } else {
            records.iter().for_each(|r| s.image.apply(r));
            *s.writes.entry(group_id.to_owned()).or_default() += 1;
            Ok(())
        };
        let _ = tx.send(result);
        rx
    }

    fn renew<'a>(&'a self, group_id: &'a str, epoch: u64) -> LogFuture<'a> {
        let mut s = self.script.lock();
        let current = s.epochs.entry(group_id.to_owned()).or_default();
        if *current == epoch {
            *current += 1;
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn idle_claims(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    fn release(&self, _claims: Vec<(String, u64)>) -> LogFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}

fn fast_cfg() -> GroupConfig {
    GroupConfig {
        min_session_timeout_ms: 10,
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn coordinator(log: Arc<ScriptedLog>) -> GroupCoordinator {
    let metrics = GroupMetrics::new(&Registry::new(), 10).unwrap();
    GroupCoordinator::with_log(log, fast_cfg(), metrics, CancellationToken::new())
}

fn manual_commit(offset: i64) -> CommitRequest {
    CommitRequest {
        member_id: String::new(),
        instance_id: None,
        generation_id: -1,
        retention_ms: None,
        offsets: vec![OffsetCommit {
            tp: TopicPartition::new("t", 0),
            offset,
            leader_epoch: None,
            metadata: String::new(),
        }],
    }
}

/// Retries `call` (as a client retries a retriable error) until it answers without
/// COORDINATOR_NOT_AVAILABLE, within 10 s.
async fn settled<T, F, Fut>(mut call: F) -> Result<T, ResponseError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ResponseError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match call().await {
            Err(ResponseError::CoordinatorNotAvailable) => {
                assert!(tokio::time::Instant::now() < deadline, "group never reloaded");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// A Stable group `group` of one member with the given session timeout; returns its id.
async fn stable_member(coord: &GroupCoordinator, group: &str, session_ms: i32) -> String {
    let mut req = join_req("", protocols(&[("range", b"")]));
    req.session_timeout_ms = session_ms;
    let first = coord.join_group(group, req.clone()).await;
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    req.member_id = first.member_id.clone();
    let joined = coord.join_group(group, req).await;
    assert_eq!(joined.error, None);
    let sync = SyncRequest {
        member_id: first.member_id.clone(),
        instance_id: None,
        generation_id: joined.generation_id,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: vec![(first.member_id.clone(), Bytes::from_static(b"a"))],
    };
    assert_eq!(coord.sync_group(group, sync).await.error, None);
    first.member_id
}

#[tokio::test]
async fn refused_offset_commit_is_not_served_afterwards() {
    let log = Arc::new(ScriptedLog::default());
    let coord = coordinator(log.clone());
    let tp = TopicPartition::new("t", 0);
    assert!(coord.commit_offsets("g", manual_commit(5)).await.is_ok());

    log.script.lock().refuse = true;
    assert_eq!(
        coord.commit_offsets("g", manual_commit(10)).await,
        Err(ResponseError::CoordinatorNotAvailable)
    );
    log.script.lock().refuse = false;

    let fetched = settled(|| coord.fetch_offsets("g", Some(std::slice::from_ref(&tp)))).await;
    let offset = fetched.unwrap()[0].1.as_ref().map(|c| c.offset);
    assert_eq!(offset, Some(5), "the refused commit must not be visible");
    // The group keeps working once writes are accepted again.
    assert!(settled(|| coord.commit_offsets("g", manual_commit(11)))
        .await
        .is_ok());
    let fetched = coord.fetch_offsets("g", Some(std::slice::from_ref(&tp))).await;
    assert_eq!(fetched.unwrap()[0].1.as_ref().map(|c| c.offset), Some(11));
}

#[tokio::test]
async fn refused_leave_keeps_the_member() {
    let log = Arc::new(ScriptedLog::default());
    let coord = coordinator(log.clone());
    let member = stable_member(&coord, "g", 30_000).await;

    log.script.lock().refuse = true;
    let leaving = vec![LeavingMember {
        member_id: member.clone(),
        instance_id: None,
    }];
    assert_eq!(
        coord.leave_group("g", leaving).await.unwrap_err(),
        ResponseError::CoordinatorNotAvailable
    );
    log.script.lock().refuse = false;

    let described = settled(|| coord.describe_group("g")).await.unwrap().unwrap();
    assert_eq!(described.state, "Stable");
    let members: Vec<&str> = described.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(
        members,
        vec![member.as_str()],
        "the refused leave must not be visible"
    );
}

#[tokio::test]
async fn stalled_write_of_one_group_does_not_delay_expiry_of_another() {
    let log = Arc::new(ScriptedLog::default());
    let coord = coordinator(log.clone());
    // The stalled group's member expires first, so the timer reaches it first.
    stable_member(&coord, "stalled", 300).await;
    log.script.lock().stall.insert("stalled".into());
    stable_member(&coord, "live", 600).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let live = coord.describe_group("live").await.unwrap().unwrap();
        if live.state == "Empty" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live group's member never expired while another group's write stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!log.stalled.lock().is_empty(), "the stalled group did write");
    log.released.notify_waiters();
}
