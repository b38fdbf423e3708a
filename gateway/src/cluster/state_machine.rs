//! openraft's `RaftStateMachine` over [`ClusterState`], with durable snapshots.
//!
//! The applied state lives in memory and is shared (read-only) with the [`super::Coordinator`],
//! so owners serve reads locally. Durability comes from the raft log plus the last snapshot:
//! every built or installed snapshot is written to `snapshot.bin` (replaced atomically) before
//! it is reported, and on open the state machine starts from it; openraft re-applies the log
//! entries after it.
//!
//! `snapshot.bin` is `meta_len: u32 BE`, the snapshot meta as JSON, then the state as JSON.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::log_file::{read_state, write_state};
use super::state::ClusterState;
use super::{ClusterNode, CommandResponse, NodeId, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.bin";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The state as of the last applied log entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// Last applied log id.
    pub last_applied: Option<LogId<NodeId>>,
    /// Last applied membership.
    pub last_membership: StoredMembership<NodeId, ClusterNode>,
    /// The replicated state.
    pub state: ClusterState,
}

#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, ClusterNode>,
    data: Vec<u8>,
}

/// The gateway's raft state machine. Clones share state (one is the snapshot builder).
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    dir: PathBuf,
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, starting from the stored snapshot if there is one.
    ///
    /// # Errors
    /// I/O errors or a corrupt snapshot file.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut applied = Applied::default();
        let mut current = None;
        if let Some(bytes) = read_state(dir, SNAPSHOT_FILE)? {
            let snap = decode_snapshot(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{SNAPSHOT_FILE}: {e}"))
            })?;
            applied.state = serde_json::from_slice(&snap.data).map_err(std::io::Error::other)?;
            applied.last_applied = snap.meta.last_log_id;
            applied.last_membership = snap.meta.last_membership.clone();
            current = Some(snap);
        }
        Ok(Self {
            applied: Arc::new(RwLock::new(applied)),
            current: Arc::new(Mutex::new(current)),
            dir: dir.to_owned(),
        })
    }

    /// Shared read access to the applied state.
    pub fn applied(&self) -> Arc<RwLock<Applied>> {
        Arc::clone(&self.applied)
    }

    async fn persist(&self, snap: &StoredSnapshot) -> StorageResult<()> {
        let sig = Some(snap.meta.signature());
        let bytes = encode_snapshot(snap)
            .map_err(|e| StorageIOError::write_snapshot(sig.clone(), AnyError::new(&e)))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_state(&dir, SNAPSHOT_FILE, &bytes))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(sig, AnyError::new(&e)))?;
        *self.current.lock() = Some(snap.clone());
        Ok(())
    }
}

fn encode_snapshot(snap: &StoredSnapshot) -> Result<Vec<u8>, serde_json::Error> {
    let meta = serde_json::to_vec(&snap.meta)?;
    let mut out = Vec::with_capacity(4 + meta.len() + snap.data.len());
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&snap.data);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8]) -> Result<StoredSnapshot, String> {
    let len = bytes.get(..4).ok_or("short snapshot")?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let meta = bytes.get(4..4 + len).ok_or("short snapshot meta")?;
    let meta = serde_json::from_slice(meta).map_err(|e| e.to_string())?;
    Ok(StoredSnapshot {
        meta,
        data: bytes[4 + len..].to_vec(),
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (data, last_log_id, last_membership) = {
            let applied = self.applied.read();
            let data = serde_json::to_vec(&applied.state)
                .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
            (data, applied.last_applied, applied.last_membership.clone())
        };
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, unique_suffix()),
            None => format!("none-{}", unique_suffix()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.persist(&stored).await?;
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "built raft snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Distinguishes snapshots of the same log id built at different times.
fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, ClusterNode>)> {
        let applied = self.applied.read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied.write();
        let mut out = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::Applied,
                EntryPayload::Normal(cmd) => applied.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    let nodes = m.nodes().map(|(id, n)| (*id, n.clone())).collect();
                    let voters = m.voter_ids().collect();
                    applied.state.set_membership(nodes, &voters);
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResponse::Applied
                }
            };
            out.push(response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ClusterNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: ClusterState = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        self.persist(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        let mut applied = self.applied.write();
        applied.state = state;
        applied.last_applied = meta.last_log_id;
        applied.last_membership = meta.last_membership.clone();
        tracing::info!(snapshot_id = %meta.snapshot_id, "installed raft snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.current.lock().as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
