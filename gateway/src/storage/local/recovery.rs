//! Opening a partition directory: find segments, validate, truncate a torn tail, rebuild
//! indexes, restore the log start offset and the idempotent-producer state.
//!
//! - The last (active) segment is read whole and every batch is checked (header, length,
//!   dense offsets, CRC32C); the file is truncated after the last valid batch, so a write torn
//!   by a crash is dropped and appends continue from the valid prefix.
//! - Sealed segments load their index files when these are valid, and walk batch headers only
//!   from the last index entry to the end of the file; a missing or invalid index is rebuilt by
//!   walking all headers. A sealed segment whose header chain does not end at its file size is
//!   truncated; every later segment is removed (the log stays a prefix) unless the next one
//!   starts exactly where the valid batches end (the cut bytes were a failed write's leftovers).
//! - The log start is the larger of the persisted `log-start` file and the first segment base.
//! - Producer state is replayed from the headers of the last two segments (Kafka keeps snapshots;
//!   a producer whose last batch is older is treated as unknown, which Kafka accepts).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::index::{OffsetIndex, TimeIndex};
use super::segment::{self, read_header_at, Segment};
use crate::records::{BatchHeader, HEADER_LEN};
use crate::storage::producer_state::ProducerStateTable;
use crate::storage::Offset;

/// Name of the per-partition file holding the log start offset moved by `delete_records`.
pub(crate) const LOG_START_FILE: &str = "log-start";

/// A partition as found on disk.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Segments by base offset; the last is active. Never empty.
    pub(crate) segments: Vec<Segment>,
    /// First readable offset.
    pub(crate) log_start: Offset,
    /// Idempotent-producer state replayed from the log.
    pub(crate) producers: ProducerStateTable,
}

/// Opens (creating if needed) the partition stored in `dir`.
///
/// # Errors
/// I/O errors reading, truncating or creating files.
pub(crate) fn open_partition(dir: &Path, interval: u64) -> io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        match ext {
            "log" => match stem.parse::<Offset>() {
                Ok(base) if base >= 0 => bases.push(base),
                _ => warn!(path = %path.display(), "ignoring unexpected file in partition directory"),
            },
            "tmp" | "tmp-index" => segment::remove_if_exists(&path)?,
            "index" | "timeindex" if !path.with_extension("log").exists() => {
                segment::remove_if_exists(&path)?
            }
            _ => {}
        }
    }
    bases.sort_unstable();
    let persisted_start = read_log_start(dir)?;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        let (seg, truncated) = if last {
            recover_active(dir, base, interval)?
        } else {
            recover_sealed(dir, base, interval)?
        };
        let next_offset = seg.next_offset;
        segments.push(seg);
        // Bytes after a sealed segment's valid batches that the next segment continues from
        // exactly were a failed write's leftovers (a partial batch, then a roll): the later
        // segments hold acknowledged data and stay. Otherwise the log is cut here, so it stays
        // a prefix.
        let continues = bases.get(i + 1) == Some(&next_offset);
        if truncated && !last && !continues {
            for &later in &bases[i + 1..] {
                warn!(dir = %dir.display(), base = later, "removing segment after a truncated one");
                segment::delete_files(dir, later)?;
            }
            break;
        }
    }
    let producers = replay_producers(&segments)?;
    if segments.is_empty() {
        segments.push(Segment::create(dir, persisted_start.unwrap_or(0))?);
    }
    let first_base = segments[0].base_offset;
    let log_start = persisted_start.unwrap_or(first_base).max(first_base);
    let next = segments.last().map_or(0, |s| s.next_offset);
    if log_start > next {
        // Records up to log_start were deleted but their segment files are gone: continue at
        // log_start so offsets never go backwards.
        if segments.last().is_some_and(|s| s.size == 0) {
            if let Some(s) = segments.pop() {
                segment::delete_files(dir, s.base_offset)?;
            }
        }
        segments.push(Segment::create(dir, log_start)?);
    }
    Ok(Recovered {
        segments,
        log_start,
        producers,
    })
}

/// Reads the persisted log start, if any.
fn read_log_start(dir: &Path) -> io::Result<Option<Offset>> {
    match std::fs::read_to_string(dir.join(LOG_START_FILE)) {
        Ok(s) => match s.trim().parse::<Offset>() {
            Ok(v) if v >= 0 => Ok(Some(v)),
            _ => {
                warn!(dir = %dir.display(), "ignoring invalid log-start file");
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Persists the log start atomically (temp file, fsync, rename, fsync directory).
///
/// # Errors
/// I/O errors.
pub(crate) fn write_log_start(dir: &Path, log_start: Offset) -> io::Result<()> {
    super::meta::write_atomic(dir, LOG_START_FILE, log_start.to_string().as_bytes())
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

fn truncate(seg: &mut Segment, file_len: u64, what: &str) -> io::Result<()> {
    warn!(
        dir = %seg.dir.display(),
        base = seg.base_offset,
        valid_bytes = seg.size,
        dropped_bytes = file_len - seg.size,
        reason = what,
        "truncating segment tail"
    );
    seg.file.set_len(seg.size)?;
    seg.file.sync_all()?;
    seg.index
        .truncate_to_position(u32::try_from(seg.size).unwrap_or(u32::MAX));
    let rel = seg.relative(seg.next_offset);
    seg.time_index.truncate_to_offset(rel);
    Ok(())
}

/// Reads the active segment whole, validating every batch; truncates after the valid prefix.
/// Returns the segment and whether it was truncated.
fn recover_active(dir: &Path, base: Offset, interval: u64) -> io::Result<(Segment, bool)> {
    let (log, _, _) = segment::paths(dir, base);
    let file = open_rw(&log)?;
    let file_len = file.metadata()?.len();
    let mut seg = Segment::empty(dir, base, file);
    let file = Arc::clone(&seg.file);
    let mut reader = BufReader::with_capacity(1 << 20, &*file);
    let mut buf = vec![0u8; HEADER_LEN];
    let mut problem = None;
    while seg.size < file_len {
        let remaining = file_len - seg.size;
        if remaining < HEADER_LEN as u64 {
            problem = Some("partial batch header");
            break;
        }
        buf.resize(HEADER_LEN, 0);
        reader.read_exact(&mut buf)?;
        let header = match BatchHeader::parse(&buf) {
            Ok(h) if h.base_offset == seg.next_offset && h.record_count == h.last_offset_delta + 1 => h,
            _ => {
                problem = Some("invalid batch header");
                break;
            }
        };
        let len = header.total_len() as u64;
        if len > remaining {
            problem = Some("partial batch");
            break;
        }
        buf.resize(header.total_len(), 0);
        reader.read_exact(&mut buf[HEADER_LEN..])?;
        let stored = u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]);
        if stored != crc32c::crc32c(&buf[21..]) {
            problem = Some("crc mismatch");
            break;
        }
        seg.account(&header, len, interval);
    }
    drop(reader);
    // `segment.ms` counts from when this process found the segment non-empty: batch timestamps
    // are producer-chosen and may be arbitrarily old.
    seg.roll_start_ms = (seg.size > 0).then(super::retention::now_ms);
    if let Some(what) = problem {
        truncate(&mut seg, file_len, what)?;
    }
    Ok((seg, problem.is_some()))
}

/// Opens a sealed segment from its index files when valid, walking headers after the last
/// index entry; otherwise rebuilds its indexes from all headers.
fn recover_sealed(dir: &Path, base: Offset, interval: u64) -> io::Result<(Segment, bool)> {
    let (log, index_path, time_path) = segment::paths(dir, base);
    let file = open_rw(&log)?;
    let file_len = file.metadata()?.len();
    let mut seg = Segment::empty(dir, base, file);
    if let Some((index, time_index)) = load_indexes(&index_path, &time_path, file_len) {
        if let Some((rel, pos)) = index.last() {
            seg.index = index;
            seg.time_index = time_index;
            seg.size = u64::from(pos);
            seg.next_offset = base + i64::from(rel);
            if let Err(e) = restore_max_timestamp(&mut seg) {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) {
                    return Err(e);
                }
                warn!(dir = %dir.display(), base, error = %e, "segment indexes inconsistent, rebuilding");
                seg.reset_accounting();
            }
        }
    } else {
        info!(dir = %dir.display(), base, "rebuilding segment indexes");
    }
    let truncated = walk_tail(&mut seg, file_len, interval)?;
    if truncated {
        truncate(
            &mut seg,
            file_len,
            "header chain does not reach the end of the segment",
        )?;
        let (offset_image, time_image) = seg.index_images();
        segment::write_indexes(dir, base, &offset_image, &time_image)?;
    }
    Ok((seg, truncated))
}

fn load_indexes(index_path: &Path, time_path: &Path, file_len: u64) -> Option<(OffsetIndex, TimeIndex)> {
    let index = OffsetIndex::decode(&std::fs::read(index_path).ok()?, file_len)?;
    // Time entries may point at batches after the last offset entry: they are bounded by the
    // relative offset range only, and `restore_max_timestamp` drops those in the walked tail.
    let time_index = TimeIndex::decode(&std::fs::read(time_path).ok()?, u32::MAX)?;
    Some((index, time_index))
}

/// Sets the segment's max timestamp from the time index (its last entry is the maximum of the
/// indexed range) and finds the last offset of the batch holding it. Entries pointing into the
/// tail not yet walked are dropped; the walk adds them back.
fn restore_max_timestamp(seg: &mut Segment) -> io::Result<()> {
    while let Some((ts, rel)) = seg.time_index.last() {
        let target = seg.base_offset + i64::from(rel);
        if target >= seg.next_offset {
            seg.time_index.truncate_to_offset(rel);
            continue;
        }
        let mut pos = seg.position_hint(target);
        while pos < seg.size {
            let h = read_header_at(&seg.file, pos)?;
            if h.base_offset >= target {
                seg.max_timestamp = ts;
                seg.offset_of_max_timestamp = h.last_offset();
                return Ok(());
            }
            pos += h.total_len() as u64;
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "time index points past the offset index",
        ));
    }
    Ok(())
}

/// Walks batch headers from `seg.size` to the end of the file, accounting each. Returns true
/// when the chain breaks before `file_len`.
fn walk_tail(seg: &mut Segment, file_len: u64, interval: u64) -> io::Result<bool> {
    while seg.size < file_len {
        if file_len - seg.size < HEADER_LEN as u64 {
            return Ok(true);
        }
        let h = match read_header_at(&seg.file, seg.size) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(true),
            Err(e) => return Err(e),
        };
        let len = h.total_len() as u64;
        if h.base_offset != seg.next_offset || len > file_len - seg.size {
            return Ok(true);
        }
        seg.account(&h, len, interval);
    }
    Ok(false)
}

/// Replays producer state from the headers of the last two segments, oldest first.
fn replay_producers(segments: &[Segment]) -> io::Result<ProducerStateTable> {
    let mut table = ProducerStateTable::new();
    let from = segments.len().saturating_sub(2);
    let mut header = [0u8; HEADER_LEN];
    for seg in &segments[from..] {
        let mut pos = 0;
        while pos < seg.size {
            seg.file.read_exact_at(&mut header, pos)?;
            let h = BatchHeader::parse(&header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            table.record(&h, h.base_offset);
            pos += h.total_len() as u64;
        }
    }
    Ok(table)
}
