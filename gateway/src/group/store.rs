//! The durable group log: an append-only file of [`GroupRecord`] frames (format in
//! [`super::record`]) with periodic snapshots, replayed on start.
//!
//! # Files
//! In the store directory, epoch `E` (zero-padded decimal) names one generation of files:
//! - `snapshot-E.bin`: every live record as of the start of epoch `E` (absent for epoch 0),
//!   written to `snapshot-E.tmp`, fsynced, then renamed, so it is always complete;
//! - `log-E.bin`: records appended since that snapshot.
//!
//! Start-up loads the newest snapshot and its log, truncates a torn or corrupt log tail, and
//! deletes files of other epochs. Compaction (log larger than the configured size and than the
//! last snapshot) writes the image as `snapshot-(E+1)`, starts `log-(E+1)` and deletes epoch `E`;
//! a crash at any step leaves either the old or the new epoch complete.
//!
//! # Writes
//! One writer thread owns the files. [`GroupStore::submit`] queues records in call order; the
//! writer appends everything queued as one batch, fsyncs once, then acknowledges each
//! submission. Callers submit while holding their group's lock, so a group's records reach the
//! log in the order its state changed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::record::{
    decode_frame, encode_frame, FrameError, GroupMetadataRecord, GroupRecord, OffsetCommitRecord, FILE_MAGIC,
};

/// Failures of the group store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("group store {op} failed on {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A snapshot is unreadable (snapshots are written atomically, so this is real damage).
    #[error("group snapshot {path} is corrupt at byte {offset}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: usize,
        /// What is wrong.
        #[source]
        reason: FrameError,
    },
    /// A record could not be serialized.
    #[error("group record encoding failed")]
    Encode(#[source] Arc<serde_json::Error>),
    /// The writer has stopped (after an unrecoverable write failure, or at shutdown).
    #[error("group store writer is closed")]
    Closed,
    /// This gateway no longer coordinates the group: another node owns it under a newer epoch.
    #[error("group ownership moved to another gateway")]
    Fenced,
    /// The replicated log could not commit the records (no leader reachable in time).
    #[error("cluster write failed: {0}")]
    Cluster(String),
    /// The group's in-memory state is being discarded after a refused write; it is served again
    /// once reloaded from the log.
    #[error("group is reloading after a failed write")]
    Reloading,
}

impl StoreError {
    /// The Kafka error a group request failing with this error is answered with: clients
    /// re-discover the coordinator on both.
    pub fn response_error(&self) -> kafka_protocol::ResponseError {
        match self {
            StoreError::Fenced => kafka_protocol::ResponseError::NotCoordinator,
            _ => kafka_protocol::ResponseError::CoordinatorNotAvailable,
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::Io {
        op,
        path: path.to_owned(),
        source: Arc::new(e),
    }
}

/// Replayed state of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageGroup {
    /// Last metadata record.
    pub metadata: Option<GroupMetadataRecord>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), OffsetCommitRecord>,
}

/// The state the log describes: every group's last metadata and live offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupImage {
    /// Groups by id.
    pub groups: BTreeMap<String, ImageGroup>,
}

impl GroupImage {
    /// Applies one record.
    pub fn apply(&mut self, record: &GroupRecord) {
        match record {
            GroupRecord::Metadata(m) => {
                self.groups.entry(m.group_id.clone()).or_default().metadata = Some(m.clone());
            }
            GroupRecord::OffsetCommit(o) => {
                let group = self.groups.entry(o.group_id.clone()).or_default();
                group.offsets.insert((o.topic.clone(), o.partition), o.clone());
            }
            GroupRecord::OffsetDelete {
                group_id,
                topic,
                partition,
            } => {
                if let Some(group) = self.groups.get_mut(group_id) {
                    group.offsets.remove(&(topic.clone(), *partition));
                    // A group without metadata or offsets has no state: the image holds exactly
                    // what its records (a snapshot) rebuild, so it reads the same after a restart.
                    if group.metadata.is_none() && group.offsets.is_empty() {
                        self.groups.remove(group_id);
                    }
                }
            }
            GroupRecord::GroupDelete { group_id } => {
                self.groups.remove(group_id);
            }
        }
    }

    /// The records that rebuild this image (a snapshot's content).
    pub fn records(&self) -> impl Iterator<Item = GroupRecord> + '_ {
        self.groups.values().flat_map(|g| {
            let meta = g.metadata.clone().map(GroupRecord::Metadata);
            meta.into_iter()
                .chain(g.offsets.values().cloned().map(GroupRecord::OffsetCommit))
        })
    }
}

type Ack = oneshot::Sender<Result<(), StoreError>>;

/// Handle to the group log; dropping it stops the writer after it drained its queue.
#[derive(Debug)]
pub struct GroupStore {
    tx: Option<mpsc::Sender<(Vec<GroupRecord>, Ack)>>,
    writer: Option<JoinHandle<()>>,
    /// What the log holds, updated by the writer before it acknowledges a write: a group whose
    /// in-memory state was discarded after a failed write is reloaded from it.
    image: Arc<Mutex<GroupImage>>,
    /// Generation of each group's in-memory state, bumped when a failed write discards it
    /// (the local log's ownership epoch; absent means 0).
    pub(super) epochs: Mutex<std::collections::HashMap<String, u64>>,
}

impl GroupStore {
    /// Opens (creating if needed) the store in `dir`, replays it, and starts the writer.
    ///
    /// # Errors
    /// [`StoreError`] if the directory cannot be used or a snapshot is corrupt.
    pub fn open(dir: &Path, compact_bytes: u64) -> Result<(GroupStore, GroupImage), StoreError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut snapshots = Vec::new();
        let mut logs = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list directory", dir))? {
            let path = entry.map_err(io_err("list directory", dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if let Some(epoch) = parse_epoch(&name, "snapshot-", ".bin") {
                snapshots.push(epoch);
            } else if let Some(epoch) = parse_epoch(&name, "log-", ".bin") {
                logs.push(epoch);
            } else if name.ends_with(".tmp") {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
        }
        let epoch = snapshots.iter().copied().max().unwrap_or(0);
        let mut image = GroupImage::default();
        let mut snapshot_len = 0;
        if snapshots.contains(&epoch) {
            let path = file_path(dir, "snapshot", epoch);
            let data = fs::read(&path).map_err(io_err("read", &path))?;
            snapshot_len = data.len() as u64;
            let (records, valid, err) = decode_all(&data);
            if let Some(reason) = err {
                return Err(StoreError::Corrupt {
                    path,
                    offset: valid,
                    reason,
                });
            }
            records.iter().for_each(|r| image.apply(r));
        }
        let log_path = file_path(dir, "log", epoch);
        let (file, len) = open_log(&log_path, &mut image)?;
        for old in snapshots.iter().filter(|e| **e < epoch) {
            let path = file_path(dir, "snapshot", *old);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        for old in logs.iter().filter(|e| **e != epoch) {
            let path = file_path(dir, "log", *old);
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        sync_dir(dir)?;
        tracing::info!(dir = %dir.display(), epoch, groups = image.groups.len(), "group store replayed");
        let shared = Arc::new(Mutex::new(image.clone()));
        let writer = Writer {
            dir: dir.to_owned(),
            epoch,
            file,
            len,
            snapshot_len,
            compact_bytes,
            image: shared.clone(),
            broken: false,
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("group-store".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err("spawn writer", dir))?;
        Ok((
            GroupStore {
                tx: Some(tx),
                writer: Some(handle),
                image: shared,
                epochs: Mutex::default(),
            },
            image,
        ))
    }

    /// Queues `records`; the receiver resolves once they are durable.
    pub fn submit(&self, records: Vec<GroupRecord>) -> oneshot::Receiver<Result<(), StoreError>> {
        let (ack, rx) = oneshot::channel();
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError((_, ack))) = tx.send((records, ack)) {
                    let _ = ack.send(Err(StoreError::Closed));
                }
            }
            None => {
                let _ = ack.send(Err(StoreError::Closed));
            }
        }
        rx
    }

    /// The durable state of `group_id` as of the last acknowledged write.
    pub fn image_of(&self, group_id: &str) -> Option<ImageGroup> {
        self.image.lock().groups.get(group_id).cloned()
    }
}

impl Drop for GroupStore {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!("group store writer panicked");
            }
        }
    }
}

fn parse_epoch(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
}

fn file_path(dir: &Path, kind: &str, epoch: u64) -> PathBuf {
    dir.join(format!("{kind}-{epoch:020}.bin"))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// Decodes every frame after the header: the records, the length of the valid prefix, and the
/// error that stopped decoding, if any.
pub(crate) fn decode_all(data: &[u8]) -> (Vec<GroupRecord>, usize, Option<FrameError>) {
    if data.len() < FILE_MAGIC.len() || &data[..FILE_MAGIC.len()] != FILE_MAGIC {
        return (Vec::new(), 0, Some(FrameError::Payload("bad file header".into())));
    }
    let mut pos = FILE_MAGIC.len();
    let mut records = Vec::new();
    while pos < data.len() {
        match decode_frame(&data[pos..]) {
            Ok((record, len)) => {
                records.push(record);
                pos += len;
            }
            Err(e) => return (records, pos, Some(e)),
        }
    }
    (records, pos, None)
}

/// Opens (or creates) the log, applies its records, truncates a bad tail.
fn open_log(path: &Path, image: &mut GroupImage) -> Result<(File, u64), StoreError> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let (records, valid, err) = decode_all(&data);
    records.iter().for_each(|r| image.apply(r));
    let len = if valid == 0 {
        file.set_len(0).map_err(io_err("truncate", path))?;
        file.write_all(FILE_MAGIC).map_err(io_err("write", path))?;
        FILE_MAGIC.len() as u64
    } else {
        if let Some(reason) = err {
            tracing::warn!(path = %path.display(), valid, dropped = data.len() - valid, %reason, "truncating group log tail");
            file.set_len(valid as u64).map_err(io_err("truncate", path))?;
        }
        valid as u64
    };
    file.seek(SeekFrom::Start(len)).map_err(io_err("seek", path))?;
    file.sync_all().map_err(io_err("sync", path))?;
    Ok((file, len))
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    epoch: u64,
    file: File,
    len: u64,
    snapshot_len: u64,
    compact_bytes: u64,
    image: Arc<Mutex<GroupImage>>,
    /// Set when a failed write could not be rolled back: every later write fails.
    broken: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<(Vec<GroupRecord>, Ack)>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let records: Vec<GroupRecord> = batch.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
            let result = self.append(&records);
            if let Err(e) = &result {
                tracing::error!(error = %e, records = records.len(), "group log write failed");
            }
            for (_, ack) in batch {
                let _ = ack.send(result.clone());
            }
            if result.is_ok() && self.len > self.compact_bytes && self.len > self.snapshot_len {
                if let Err(e) = self.compact() {
                    tracing::error!(error = %e, "group log compaction failed");
                }
            }
        }
    }

    fn append(&mut self, records: &[GroupRecord]) -> Result<(), StoreError> {
        if self.broken {
            return Err(StoreError::Closed);
        }
        let mut buf = Vec::new();
        for r in records {
            encode_frame(r, &mut buf).map_err(|e| StoreError::Encode(Arc::new(e)))?;
        }
        let path = file_path(&self.dir, "log", self.epoch);
        let written = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let rollback = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.len)));
            self.broken = rollback.is_err();
            return Err(io_err("append", &path)(e));
        }
        self.len += buf.len() as u64;
        let mut image = self.image.lock();
        records.iter().for_each(|r| image.apply(r));
        Ok(())
    }

    fn compact(&mut self) -> Result<(), StoreError> {
        let next = self.epoch + 1;
        let tmp = self.dir.join(format!("snapshot-{next:020}.tmp"));
        let mut buf = FILE_MAGIC.to_vec();
        for r in self.image.lock().records() {
            encode_frame(&r, &mut buf).map_err(|e| StoreError::Encode(Arc::new(e)))?;
        }
        let mut snap = File::create(&tmp).map_err(io_err("create", &tmp))?;
        snap.write_all(&buf)
            .and_then(|()| snap.sync_all())
            .map_err(io_err("write", &tmp))?;
        let log_path = file_path(&self.dir, "log", next);
        let mut log = File::create(&log_path).map_err(io_err("create", &log_path))?;
        log.write_all(FILE_MAGIC)
            .and_then(|()| log.sync_all())
            .map_err(io_err("write", &log_path))?;
        let snap_path = file_path(&self.dir, "snapshot", next);
        fs::rename(&tmp, &snap_path).map_err(io_err("rename", &tmp))?;
        sync_dir(&self.dir)?;
        for old in [
            file_path(&self.dir, "log", self.epoch),
            file_path(&self.dir, "snapshot", self.epoch),
        ] {
            if let Err(e) = fs::remove_file(&old) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %old.display(), error = %e, "could not remove compacted group file");
                }
            }
        }
        tracing::info!(
            epoch = next,
            snapshot_bytes = buf.len(),
            log_bytes = self.len,
            "group log compacted"
        );
        self.epoch = next;
        self.file = log;
        self.len = FILE_MAGIC.len() as u64;
        self.snapshot_len = buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
#[path = "store_test.rs"]
mod store_test;
