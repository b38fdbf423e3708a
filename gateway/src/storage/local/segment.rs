//! One log segment: a file of raw v2 batches named by its base offset, plus its in-memory
//! indexes and summary (size, next offset, max timestamp).
//!
//! Invariants: bytes `[0, size)` of the file are whole, valid batches with dense offsets from
//! `base_offset` to `next_offset - 1`; bytes past `size` are never read (a failed or torn write
//! leaves them, the next write overwrites them, recovery truncates them).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::index::{OffsetIndex, TimeIndex};
use crate::records::{BatchHeader, HEADER_LEN};
use crate::storage::Offset;

/// File name stem of a segment: its base offset, zero-padded to 20 digits (Kafka's naming).
pub(crate) fn file_stem(base_offset: Offset) -> String {
    format!("{base_offset:020}")
}

/// Paths of a segment's log, offset index and time index files.
pub(crate) fn paths(dir: &Path, base_offset: Offset) -> (PathBuf, PathBuf, PathBuf) {
    let stem = file_stem(base_offset);
    (
        dir.join(format!("{stem}.log")),
        dir.join(format!("{stem}.index")),
        dir.join(format!("{stem}.timeindex")),
    )
}

/// Reads the batch header stored at `position`.
///
/// # Errors
/// I/O errors, and `InvalidData` when the bytes are not a v2 batch header.
pub(crate) fn read_header_at(file: &File, position: u64) -> io::Result<BatchHeader> {
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, position)?;
    BatchHeader::parse(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first batch; also the file name.
    pub(crate) base_offset: Offset,
    /// Open data file, shared with in-flight reads and the flusher.
    pub(crate) file: Arc<File>,
    /// Directory holding the segment files.
    pub(crate) dir: PathBuf,
    /// Bytes of whole batches in the file.
    pub(crate) size: u64,
    /// Offset after the last batch (`base_offset` when empty).
    pub(crate) next_offset: Offset,
    /// Largest batch max timestamp, -1 when empty.
    pub(crate) max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp`, -1 when empty.
    pub(crate) offset_of_max_timestamp: Offset,
    /// Time the segment started to fill (ms): drives `segment.ms` rolling.
    pub(crate) roll_start_ms: Option<i64>,
    /// Sparse offset index.
    pub(crate) index: OffsetIndex,
    /// Sparse time index.
    pub(crate) time_index: TimeIndex,
    /// A failed write left bytes past `size` that could not be removed: nothing more may be
    /// written to the partition.
    pub(crate) unclean_tail: bool,
    /// Bytes appended since the last index entry.
    bytes_since_index: u64,
}

impl Segment {
    /// Creates an empty segment file (truncating a stale one of the same name).
    ///
    /// # Errors
    /// I/O errors creating the file.
    pub(crate) fn create(dir: &Path, base_offset: Offset) -> io::Result<Self> {
        let (log, index, time_index) = paths(dir, base_offset);
        for stale in [&index, &time_index] {
            remove_if_exists(stale)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&log)?;
        Ok(Self::empty(dir, base_offset, file))
    }

    /// A segment over an opened file, with nothing accounted yet (recovery fills it in).
    pub(crate) fn empty(dir: &Path, base_offset: Offset, file: File) -> Self {
        Self {
            base_offset,
            file: Arc::new(file),
            dir: dir.to_path_buf(),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            roll_start_ms: None,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            unclean_tail: false,
        }
    }

    /// Forgets everything accounted (before rebuilding from the file).
    pub(crate) fn reset_accounting(&mut self) {
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.bytes_since_index = 0;
    }

    /// Offset relative to the segment base, as stored in the indexes (saturating).
    pub(crate) fn relative(&self, offset: Offset) -> u32 {
        u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX)
    }

    /// True when a batch of `len` bytes spanning `count` offsets cannot go into this segment:
    /// it would pass `segment_bytes`, the segment is older than `segment_ms`, or relative
    /// offsets would overflow. An empty segment always accepts.
    pub(crate) fn should_roll(
        &self,
        len: u64,
        count: i64,
        now_ms: i64,
        segment_bytes: u64,
        segment_ms: i64,
    ) -> bool {
        if self.size == 0 {
            return false;
        }
        let too_big = self.size + len > segment_bytes || self.size + len > u64::from(u32::MAX);
        let too_old = self
            .roll_start_ms
            .is_some_and(|start| now_ms.saturating_sub(start) > segment_ms);
        let offsets_overflow = self.next_offset + count - self.base_offset > i64::from(u32::MAX);
        too_big || too_old || offsets_overflow
    }

    /// Writes a batch (base offset already set) at the end of the segment and accounts it.
    ///
    /// # Errors
    /// I/O errors of the write; nothing is accounted then.
    ///
    /// The batch is given as its (rewritten) header and its untouched records, written back to
    /// back, so the records are never copied. A crash between the two writes leaves a torn tail
    /// that recovery truncates (the CRC no longer matches); nothing is acknowledged before both.
    pub(crate) fn append(
        &mut self,
        head: &[u8],
        body: &[u8],
        header: &BatchHeader,
        now_ms: i64,
        interval: u64,
    ) -> io::Result<()> {
        let written = self
            .file
            .write_all_at(head, self.size)
            .and_then(|()| self.file.write_all_at(body, self.size + head.len() as u64));
        if let Err(e) = written {
            // A write that failed part-way (ENOSPC, EIO) may have left bytes past `size`. Cut
            // them off, so a roll cannot seal them into the segment and a restart never reads
            // them as a batch; if even that fails, the caller takes the partition offline.
            if let Err(t) = self.file.set_len(self.size) {
                self.unclean_tail = true;
                return Err(io::Error::new(
                    e.kind(),
                    format!("{e}; removing the partial write failed too: {t}"),
                ));
            }
            return Err(e);
        }
        if self.roll_start_ms.is_none() {
            self.roll_start_ms = Some(now_ms);
        }
        self.account(header, (head.len() + body.len()) as u64, interval);
        Ok(())
    }

    /// Accounts a batch stored at `self.size` (append and recovery share this).
    pub(crate) fn account(&mut self, header: &BatchHeader, len: u64, interval: u64) {
        let position = self.size;
        let rel = self.relative(header.base_offset);
        if self.index.len() == 0 || self.bytes_since_index >= interval {
            self.index.push(rel, u32::try_from(position).unwrap_or(u32::MAX));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
            self.time_index.push(header.max_timestamp, rel);
        }
        self.size = position + len;
        self.next_offset = header.last_offset() + 1;
    }

    /// Position to start walking headers from to find `offset`.
    pub(crate) fn position_hint(&self, offset: Offset) -> u64 {
        u64::from(self.index.lookup(self.relative(offset)))
    }

    /// Position to start walking headers from to find the first batch whose max timestamp is at
    /// or after `timestamp`.
    pub(crate) fn timestamp_hint(&self, timestamp: i64) -> u64 {
        match self.time_index.lookup(timestamp) {
            Some(rel) => u64::from(self.index.lookup(rel)),
            None => 0,
        }
    }

    /// Number of offset index entries.
    #[cfg(test)]
    pub(crate) fn index_entries(&self) -> usize {
        self.index.len()
    }

    /// Index file images, for persisting a sealed segment.
    pub(crate) fn index_images(&self) -> (Vec<u8>, Vec<u8>) {
        (self.index.encode(), self.time_index.encode())
    }
}

/// Removes a file, treating "not found" as done.
///
/// # Errors
/// Other I/O errors.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes all files of a segment.
///
/// # Errors
/// I/O errors other than "not found".
pub(crate) fn delete_files(dir: &Path, base_offset: Offset) -> io::Result<()> {
    let (log, index, time_index) = paths(dir, base_offset);
    for p in [&log, &index, &time_index] {
        remove_if_exists(p)?;
    }
    Ok(())
}

/// Writes the index files of a sealed segment (temp file + rename, not synced: an index lost or
/// torn in a crash is detected and rebuilt on open).
///
/// # Errors
/// I/O errors.
pub(crate) fn write_indexes(
    dir: &Path,
    base_offset: Offset,
    offset_index: &[u8],
    time_index: &[u8],
) -> io::Result<()> {
    let (_, index, tindex) = paths(dir, base_offset);
    for (path, image) in [(index, offset_index), (tindex, time_index)] {
        let tmp = path.with_extension("tmp-index");
        std::fs::write(&tmp, image)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{self, set_base_offset, testing::batch};

    #[test]
    fn appends_are_indexed_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100).unwrap();
        let mut positions = Vec::new();
        for i in 0..50i64 {
            let mut b = batch(&[&[7u8; 300], &[8u8; 300]], 1000 + i, -1, -1, -1);
            set_base_offset(&mut b, 100 + 2 * i);
            let h = BatchHeader::parse(&b).unwrap();
            positions.push(seg.size);
            seg.append(&b[..records::HEADER_LEN], &b[records::HEADER_LEN..], &h, 5, 1024).unwrap();
        }
        assert_eq!(seg.next_offset, 200);
        assert_eq!(seg.max_timestamp, 1049);
        assert_eq!(seg.offset_of_max_timestamp, 199);
        assert!(
            seg.index_entries() > 1 && seg.index_entries() < 50,
            "index is sparse"
        );
        for (i, &pos) in positions.iter().enumerate() {
            let offset = 100 + 2 * i as i64 + 1;
            let hint = seg.position_hint(offset);
            assert!(hint <= pos);
            let h = read_header_at(&seg.file, hint).unwrap();
            assert!(h.base_offset <= offset);
        }
        let hint = seg.timestamp_hint(1030);
        assert!(read_header_at(&seg.file, hint).unwrap().max_timestamp < 1030);
        assert!(seg.should_roll(10, 1, 5, seg.size + 5, i64::MAX));
        assert!(!seg.should_roll(10, 1, 5, seg.size + 10, i64::MAX));
        assert!(seg.should_roll(10, 1, 100, u64::MAX, 50));
    }
}
