//! When is an acknowledged SMQ message durable?
//!
//! A `PublishMessage` ack only means the message is in the broker's in-memory log buffer. Two
//! independent things happen later (SeaweedMQ 4.48, observed on a real broker):
//!
//! * every `-logFlushInterval` seconds (default 5), and whenever an 8 MiB buffer fills, the
//!   buffer is written to the filer as a chunk of a log file in the partition directory. Its
//!   entries carry their offsets; the file's `offset_max` attribute is not trusted (it can name
//!   an offset the file does not hold yet), so the last entry of the newest chunk is read;
//! * about every 2 s, whatever the flush interval, the broker writes its offset counter to
//!   `checkpoint.offset` in the same directory. A restarted broker continues offsets after that
//!   checkpoint.
//!
//! The checkpoint regularly runs ahead of the flushed files (messages it covers may still be in
//! memory only), and flushed files can run ahead of the checkpoint (their offsets would be handed
//! out again after a restart). A message is therefore durable once **both** the checkpoint and a
//! flushed file have reached its offset, and appends with
//! [`Durability::Durable`](crate::storage::Durability) (acks=all) are answered only then: after
//! at most the larger of the two periods plus one poll.
//!
//! One poller per partition reads both while appends wait and publishes the lower one on the
//! partition's `durable` watch (the next offset not known to be durable). The directory is listed
//! incrementally from the last log file seen ([`FlushCursor`]); log files are named by their
//! start time, so they list in flush order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, trace, warn};

use super::client::{SmqClient, TOPICS_DIR};
use super::error::{filer_not_found, SmqError, SmqResult};
use super::partition::PartitionState;
use super::pb::filer_pb::{
    CreateEntryRequest, Entry, FuseAttributes, ListEntriesRequest, LookupDirectoryEntryRequest,
};
use super::pb::schema_pb::Partition;
use crate::storage::{Offset, TopicPartition};

/// The broker's checkpoint file in each partition directory.
pub(super) const CHECKPOINT_FILE: &str = "checkpoint.offset";
/// How often a waited-on checkpoint is read.
const POLL: Duration = Duration::from_millis(100);
/// The extended attribute of a flushed log file naming (about) its last offset.
pub(super) const OFFSET_MAX_ATTR: &str = "offset_max";
/// The extended attribute of a partition's first log file naming (about) the offset after it.
pub(super) const BUFFER_START_ATTR: &str = "buffer_start";
/// Entries read per directory listing; a longer directory continues on the next poll.
const LIST_LIMIT: u32 = 10_000;

/// How far a partition directory's flushed log files were listed.
#[derive(Debug, Clone)]
pub struct FlushCursor {
    /// The newest log file seen (listed again inclusively: a flush may append to it).
    last_file: String,
    /// How many chunks `last_file` had when its last offset was read.
    last_chunks: usize,
    /// The highest offset seen in a flushed log file (-1 when none).
    max_offset: Offset,
}

impl Default for FlushCursor {
    fn default() -> Self {
        Self {
            last_file: String::new(),
            last_chunks: 0,
            max_offset: -1,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The filer directory of an SMQ partition: `/topics/kafka/<topic>/vYYYY-MM-DD-HH-MM-SS/RRRR-SSSS`
/// (the generation's time in UTC, then the ring range), as the broker names it.
pub fn partition_dir(topic: &str, p: &Partition) -> String {
    let secs = p.unix_time_ns.div_euclid(1_000_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{TOPICS_DIR}/{topic}/v{y:04}-{mo:02}-{d:02}-{:02}-{:02}-{:02}/{:04}-{:04}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        p.range_start,
        p.range_stop
    )
}

impl SmqClient {
    /// The filer directory of Kafka partition `index` of topic `name`.
    pub(super) async fn partition_dir_of(&self, name: &str, index: i32) -> SmqResult<String> {
        let layout = self.layout(name, false).await?;
        let Some((partition, _)) = layout.get(index) else {
            return Err(SmqError::Protocol(format!(
                "topic {name} has no partition {index}"
            )));
        };
        Ok(partition_dir(name, partition))
    }

    /// The last offset the broker checkpointed for Kafka partition `index` (-1 when none).
    ///
    /// # Errors
    /// [`SmqError`] when the layout or the filer cannot be read, or the file is malformed.
    pub async fn checkpoint(&self, name: &str, index: i32) -> SmqResult<Offset> {
        let directory = self.partition_dir_of(name, index).await?;
        let addr = self.discovery().filer().await?;
        let mut c = self.discovery().channels().filer(&addr)?;
        let request = LookupDirectoryEntryRequest {
            directory,
            name: CHECKPOINT_FILE.to_string(),
        };
        let entry = match c.lookup_directory_entry(request).await {
            Ok(r) => r.into_inner().entry,
            Err(s) if filer_not_found(&s) => None,
            Err(s) => return Err(SmqError::rpc("LookupDirectoryEntry", &addr, s)),
        };
        let Some(entry) = entry else {
            return Ok(-1);
        };
        let bytes: [u8; 8] = entry.content.as_ref().try_into().map_err(|_| {
            SmqError::Protocol(format!(
                "{CHECKPOINT_FILE} of {name}-{index} holds {} bytes, not 8",
                entry.content.len()
            ))
        })?;
        Ok(i64::from_be_bytes(bytes))
    }

    /// Replaces the broker's checkpoint of Kafka partition `index` with `offset` (the last
    /// offset it is to count as used; -1 for none). A broker loading the partition continues
    /// at `offset + 1`.
    ///
    /// # Errors
    /// [`SmqError`] when the layout or the filer cannot be reached or the filer refuses.
    pub async fn write_checkpoint(&self, name: &str, index: i32, offset: Offset) -> SmqResult<()> {
        let directory = self.partition_dir_of(name, index).await?;
        let addr = self.discovery().filer().await?;
        let mut c = self.discovery().channels().filer(&addr)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let entry = Entry {
            name: CHECKPOINT_FILE.to_string(),
            content: bytes::Bytes::copy_from_slice(&offset.to_be_bytes()),
            attributes: Some(FuseAttributes {
                file_size: 8,
                mtime: now,
                file_mode: 0o644,
                crtime: now,
            }),
            ..Entry::default()
        };
        let r = c
            .create_entry(CreateEntryRequest {
                directory,
                entry: Some(entry),
                o_excl: false,
            })
            .await
            .map_err(|s| SmqError::rpc("CreateEntry", &addr, s))?
            .into_inner();
        if !r.error.is_empty() {
            return Err(SmqError::Server {
                op: "CreateEntry",
                code: 0,
                message: r.error,
                kind: super::error::SmqErrorKind::Other,
            });
        }
        Ok(())
    }

    /// The log-file entries of Kafka partition `index`'s directory from the file named `from`
    /// on (inclusive; `""` for all); `None` when the directory does not exist yet.
    async fn log_entries(&self, name: &str, index: i32, from: String) -> SmqResult<Option<Vec<Entry>>> {
        let directory = self.partition_dir_of(name, index).await?;
        let addr = self.discovery().filer().await?;
        let mut c = self.discovery().channels().filer(&addr)?;
        let request = ListEntriesRequest {
            directory,
            prefix: String::new(),
            start_from_file_name: from,
            inclusive_start_from: true,
            limit: LIST_LIMIT,
        };
        let mut entries = match c.list_entries(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if filer_not_found(&s) => return Ok(None),
            Err(s) => return Err(SmqError::rpc("ListEntries", &addr, s)),
        };
        let mut logs = Vec::new();
        while let Some(r) = entries
            .message()
            .await
            .map_err(|s| SmqError::rpc("ListEntries", &addr, s))?
        {
            if let Some(entry) = r.entry {
                if !entry.is_directory && super::log_files::is_log_file_name(&entry.name) {
                    logs.push(entry);
                }
            }
        }
        Ok(Some(logs))
    }

    /// Advances `cursor` over the log files flushed to Kafka partition `index` since it was
    /// last called and returns the highest flushed offset (-1 when none): the offset of the last
    /// message in the newest file's last chunk. The files' `offset_max`/`buffer_start` attributes
    /// are not used: on 4.48 they can name offsets a file does not hold yet (seen: one past the
    /// last, and `buffer_start` 50 past it), which would answer acks=all before the flush.
    ///
    /// # Errors
    /// [`SmqError`] when the layout, the filer or the volume server cannot be read.
    pub async fn flushed(&self, name: &str, index: i32, cursor: &mut FlushCursor) -> SmqResult<Offset> {
        let Some(logs) = self.log_entries(name, index, cursor.last_file.clone()).await? else {
            return Ok(cursor.max_offset);
        };
        let newest = logs.into_iter().max_by(|a, b| a.name.cmp(&b.name));
        let Some(entry) = newest else {
            return Ok(cursor.max_offset);
        };
        // A file changes only by a flush appending a chunk to it.
        if entry.name == cursor.last_file && entry.chunks.len() == cursor.last_chunks {
            return Ok(cursor.max_offset);
        }
        match self.log_files.last_offset(self, &entry).await? {
            Some(last) => cursor.max_offset = cursor.max_offset.max(last),
            None => {
                debug!(file = %entry.name, "a log file's last chunk cannot be decoded; its messages count as not yet flushed");
                return Ok(cursor.max_offset);
            }
        }
        cursor.last_chunks = entry.chunks.len();
        cursor.last_file = entry.name;
        Ok(cursor.max_offset)
    }

    /// The highest offset in any of the partition's last `files` log files (-1 when none), read
    /// from each file's last chunk. Unlike [`SmqClient::flushed`] it does not assume the newest
    /// name holds the highest offset: before lowering a checkpoint (which makes the broker hand
    /// offsets out again) nothing flushed may be missed.
    ///
    /// # Errors
    /// [`SmqError`] when the layout, the filer or a volume server cannot be read, or a recent
    /// file's last chunk cannot be decoded (then nobody can tell what was flushed).
    pub async fn flushed_max(&self, name: &str, index: i32, files: usize) -> SmqResult<Offset> {
        let Some(mut logs) = self.log_entries(name, index, String::new()).await? else {
            return Ok(-1);
        };
        logs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut max = -1;
        for entry in logs.iter().rev().take(files) {
            match self.log_files.last_offset(self, entry).await? {
                Some(last) => max = max.max(last),
                None => {
                    return Err(SmqError::Protocol(format!(
                        "log file {} of {name}-{index}: its last chunk cannot be read",
                        entry.name
                    )))
                }
            }
        }
        Ok(max)
    }

    /// The last offset that is both checkpointed and flushed (-1 when none); `cursor` as in
    /// [`SmqClient::flushed`]. The directory is listed only while the flushed files lag the
    /// checkpoint.
    ///
    /// # Errors
    /// As [`SmqClient::checkpoint`] and [`SmqClient::flushed`].
    pub async fn durable_through(
        &self,
        name: &str,
        index: i32,
        cursor: &mut FlushCursor,
    ) -> SmqResult<Offset> {
        let checkpoint = self.checkpoint(name, index).await?;
        let flushed = if cursor.max_offset >= checkpoint {
            cursor.max_offset
        } else {
            self.flushed(name, index, cursor).await?
        };
        trace!(
            topic = name,
            partition = index,
            checkpoint,
            flushed,
            "durability poll"
        );
        Ok(checkpoint.min(flushed))
    }
}

impl PartitionState {
    /// Raises the known durable offset (the next offset not known to be durable).
    pub fn advance_durable(&self, next: Offset) {
        self.durable.send_if_modified(|cur| {
            if next > *cur {
                *cur = next;
                true
            } else {
                false
            }
        });
    }

    /// Waits until every offset below `end` is flushed and checkpointed, or `deadline` passes.
    ///
    /// # Errors
    /// [`SmqError::Unavailable`] when the checkpoint does not reach `end` in time.
    pub async fn wait_durable(
        self: &Arc<Self>,
        client: &Arc<SmqClient>,
        tp: &TopicPartition,
        end: Offset,
        deadline: Duration,
    ) -> SmqResult<()> {
        let mut rx = self.durable.subscribe();
        if *rx.borrow_and_update() >= end {
            return Ok(());
        }
        self.ensure_durable_poller(Arc::clone(client), tp.clone());
        let reached = matches!(
            tokio::time::timeout(deadline, rx.wait_for(|d| *d >= end)).await,
            Ok(Ok(_))
        );
        match reached {
            true => Ok(()),
            false => Err(SmqError::Unavailable(format!(
                "{tp}: the broker has not flushed and checkpointed offsets below {end} within {deadline:?} (durable below {})",
                *self.durable.borrow()
            ))),
        }
    }

    /// Starts the checkpoint poller unless one runs; it exits once nobody waits.
    fn ensure_durable_poller(self: &Arc<Self>, client: Arc<SmqClient>, tp: TopicPartition) {
        if self.durable_poller.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut failing = false;
            while me.durable.receiver_count() > 0 {
                let mut cursor = me.flushed.lock().clone();
                match client.durable_through(&tp.topic, tp.partition, &mut cursor).await {
                    Ok(last) => {
                        failing = false;
                        me.advance_durable(last + 1);
                    }
                    // acks=all waits on this poll: say why once, not every 100 ms.
                    Err(e) if !failing => {
                        failing = true;
                        warn!(partition = %tp, error = %e, "durability poll failed; acks=all appends wait");
                    }
                    Err(e) => debug!(partition = %tp, error = %e, "durability poll failed"),
                }
                *me.flushed.lock() = cursor;
                tokio::time::sleep(POLL).await;
            }
            me.durable_poller.store(false, Ordering::Release);
            if me.durable.receiver_count() > 0 {
                me.ensure_durable_poller(client, tp);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dirs_are_named_like_the_broker_names_them() {
        let p = Partition {
            ring_size: 2520,
            range_start: 0,
            range_stop: 1260,
            // 2026-11-22T07:53:56.123Z
            unix_time_ns: 1_795_334_036_123_456_789,
        };
        assert_eq!(
            partition_dir("orders", &p),
            "/topics/kafka/orders/v2026-11-22-07-53-56/0000-1260"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
