//! Durable raft log and vote: openraft's `RaftLogStorage` over [`super::log_file`].
//!
//! Layout of the raft directory: `raft.log` (entries, see [`super::log_file`]), `vote.json`
//! (the last saved vote) and `purged.json` (the last purged log id). Invariants:
//! - an append is acknowledged to openraft only after its frames are fsynced;
//! - the vote is replaced atomically and durably before `save_vote` returns;
//! - `purged.json` is written before the purged entries leave the file, so a crash in between
//!   only leaves entries that reopening skips.
//!
//! All entries not purged are also held in memory (the log is bounded by snapshotting and
//! purging), which serves reads without touching the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;

use super::log_file::{read_state, write_state, LogFile};
use super::{NodeId, TypeConfig};

const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";

/// Rewrite the log file once this many purged frames linger in it.
const REWRITE_AFTER_DEAD_FRAMES: usize = 1024;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The raft log and vote store of one node. Clones share the same log (a clone is the log reader
/// openraft's replication tasks use).
#[derive(Debug, Clone)]
pub struct LogStore {
    dir: PathBuf,
    mem: Arc<Mutex<MemLog>>,
    /// Serializes file I/O; held only inside blocking tasks.
    file: Arc<std::sync::Mutex<LogFile>>,
}

#[derive(Debug, Default)]
struct MemLog {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering entries, vote and purge point.
    ///
    /// # Errors
    /// I/O errors, or a vote or purge file that does not parse.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let (file, frames) = LogFile::open(dir, entry_index)?;
        let vote = read_json(dir, VOTE_FILE)?;
        let last_purged: Option<LogId<NodeId>> = read_json(dir, PURGED_FILE)?;
        let entries = decode_entries(frames, last_purged.map(|l| l.index))?;
        Ok(Self {
            dir: dir.to_owned(),
            mem: Arc::new(Mutex::new(MemLog {
                entries,
                last_purged,
                vote,
            })),
            file: Arc::new(std::sync::Mutex::new(file)),
        })
    }

    /// Runs blocking file work off the async workers.
    async fn with_file<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LogFile, &Path) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let file = Arc::clone(&self.file);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = file
                .lock()
                .map_err(|_| std::io::Error::other("raft log file lock poisoned"))?;
            f(&mut guard, &dir)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The log index of a raft log frame's payload, `None` when it is not an entry (which ends the
/// log when it is read at open).
pub(crate) fn entry_index(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Entry<TypeConfig>>(payload)
        .ok()
        .map(|e| e.log_id.index)
}

/// The entries of the frames read at open, without those at or below the purge point `floor`.
///
/// # Errors
/// `Other` for a payload that is not an entry.
pub(crate) fn decode_entries(
    frames: super::log_file::Frames,
    floor: Option<u64>,
) -> std::io::Result<BTreeMap<u64, Entry<TypeConfig>>> {
    let mut entries = BTreeMap::new();
    for (index, payload) in frames {
        if floor.is_some_and(|f| index <= f) {
            continue;
        }
        let entry: Entry<TypeConfig> = serde_json::from_slice(&payload).map_err(std::io::Error::other)?;
        entries.insert(index, entry);
    }
    Ok(entries)
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> std::io::Result<Option<T>> {
    match read_state(dir, name)? {
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.join(name).display()),
            )
        }),
        None => Ok(None),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let mem = self.mem.lock();
        Ok(mem.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let mem = self.mem.lock();
        let last = mem
            .entries
            .last_key_value()
            .map(|(_, e)| *e.get_log_id())
            .or(mem.last_purged);
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.with_file(move |_, dir| write_state(dir, VOTE_FILE, &bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.mem.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.mem.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut frames = Vec::with_capacity(entries.len());
        for e in &entries {
            let payload = serde_json::to_vec(e)
                .map_err(|err| StorageIOError::write_log_entry(e.log_id, AnyError::new(&err)))?;
            frames.push((e.log_id.index, payload));
        }
        {
            let mut mem = self.mem.lock();
            for e in entries {
                mem.entries.insert(e.log_id.index, e);
            }
        }
        let res = self.with_file(move |f, _| f.append(&frames)).await;
        let failed = res
            .as_ref()
            .err()
            .map(|e| StorageIOError::write_logs(AnyError::new(e)));
        callback.log_io_completed(res);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        tracing::debug!(%log_id, "truncating raft log");
        self.mem.lock().entries.split_off(&log_id.index);
        let index = log_id.index;
        self.with_file(move |f, _| f.truncate_from(index))
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        tracing::debug!(%log_id, "purging raft log");
        let bytes = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.with_file(move |_, dir| write_state(dir, PURGED_FILE, &bytes))
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let remaining = {
            let mut mem = self.mem.lock();
            mem.last_purged = Some(log_id);
            let keep = mem.entries.split_off(&(log_id.index + 1));
            mem.entries = keep;
            mem.entries.len()
        };
        let mem = Arc::clone(&self.mem);
        self.with_file(move |f, _| {
            if f.frames().saturating_sub(remaining) < REWRITE_AFTER_DEAD_FRAMES && remaining > 0 {
                return Ok(());
            }
            let mut live = Vec::with_capacity(remaining);
            for (index, e) in mem.lock().entries.iter() {
                live.push((*index, serde_json::to_vec(e).map_err(std::io::Error::other)?));
            }
            f.rewrite(&live)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "log_store_test.rs"]
mod tests;
