//! Append-only raft log file and small atomically replaced state files.
//!
//! # Format
//! `raft.log` is a sequence of frames, one log entry each:
//!
//! ```text
//! +-------------+-------------+--------------------------------------+
//! | len: u32 BE | crc: u32 BE | payload: serde JSON of one log entry |
//! +-------------+-------------+--------------------------------------+
//! ```
//!
//! `crc` is CRC-32C of the payload. Appends are fsynced before they are acknowledged; a
//! truncation cuts the file at the first removed frame; a purge rewrites the file without the
//! purged prefix (temp file, fsync, rename, directory fsync). On open the file is read up to the
//! first incomplete or corrupt frame and cut there: only an unacknowledged, torn tail can be
//! lost that way.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest accepted frame payload; a larger declared length means corruption.
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

const LOG_FILE: &str = "raft.log";

/// Log entries as `(index, payload)`, in log order.
pub(crate) type Frames = Vec<(u64, Vec<u8>)>;

/// The log file and where each entry's frame starts.
#[derive(Debug)]
pub(crate) struct LogFile {
    dir: PathBuf,
    file: File,
    /// Frame start by log index, for every frame in the file (purged ones included until the
    /// next rewrite).
    positions: BTreeMap<u64, u64>,
    len: u64,
}

impl LogFile {
    /// Opens (or creates) the log in `dir` and returns it with every intact frame's payload.
    /// `index_of` extracts the log index from a payload; a payload it rejects ends the log.
    pub(crate) fn open(dir: &Path, index_of: impl Fn(&[u8]) -> Option<u64>) -> io::Result<(Self, Frames)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let Scan {
            frames,
            positions,
            valid_len: pos,
        } = scan(&buf, index_of);
        if pos < buf.len() {
            tracing::warn!(path = %path.display(), valid_bytes = pos, file_bytes = buf.len(), "cutting torn raft log tail");
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(pos as u64))?;
        Ok((
            Self {
                dir: dir.to_owned(),
                file,
                positions,
                len: pos as u64,
            },
            frames,
        ))
    }

    /// Appends entries `(index, payload)` in order and fsyncs.
    pub(crate) fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let mut out = Vec::new();
        let mut starts = Vec::with_capacity(entries.len());
        for (index, payload) in entries {
            starts.push((*index, self.len + out.len() as u64));
            encode_frame(payload, &mut out)?;
        }
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&out)?;
        self.file.sync_data()?;
        self.len += out.len() as u64;
        self.positions.extend(starts);
        Ok(())
    }

    /// Removes every entry with index `>= index` and fsyncs.
    pub(crate) fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some((_, pos)) = self.positions.range(index..).next() else {
            return Ok(());
        };
        let pos = *pos;
        self.file.set_len(pos)?;
        self.file.sync_all()?;
        self.len = pos;
        self.positions.split_off(&index);
        Ok(())
    }

    /// Number of frames in the file, including purged ones not yet rewritten away.
    pub(crate) fn frames(&self) -> usize {
        self.positions.len()
    }

    /// Replaces the file by one holding exactly `entries`, atomically.
    pub(crate) fn rewrite(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut out = Vec::new();
        let mut positions = BTreeMap::new();
        for (index, payload) in entries {
            positions.insert(*index, out.len() as u64);
            encode_frame(payload, &mut out)?;
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        sync_dir(&self.dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(LOG_FILE))?;
        file.seek(SeekFrom::End(0))?;
        self.file = file;
        self.len = out.len() as u64;
        self.positions = positions;
        Ok(())
    }
}

/// What [`scan`] read from a log file's bytes.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Every intact frame's `(index, payload)`, in file order.
    pub(crate) frames: Frames,
    /// Frame start by log index.
    pub(crate) positions: BTreeMap<u64, u64>,
    /// Length of the intact prefix; the file is cut there.
    pub(crate) valid_len: usize,
}

/// Reads the frames of a log file's bytes up to the first incomplete or corrupt frame, or the
/// first payload `index_of` rejects.
pub(crate) fn scan(buf: &[u8], index_of: impl Fn(&[u8]) -> Option<u64>) -> Scan {
    let mut frames = Vec::new();
    let mut positions = BTreeMap::new();
    let mut pos = 0usize;
    while let Some((payload, next)) = decode_frame(buf, pos) {
        let Some(index) = index_of(payload) else { break };
        positions.insert(index, pos as u64);
        frames.push((index, payload.to_vec()));
        pos = next;
    }
    Scan {
        frames,
        positions,
        valid_len: pos,
    }
}

/// Appends one frame holding `payload` to `out`.
///
/// # Errors
/// `InvalidInput` for a payload larger than the frame limit.
pub(crate) fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "raft log entry too large",
        ));
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The payload of the frame at `pos` and the position after it, if the frame is intact.
fn decode_frame(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = buf.get(pos..pos + 8)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME_BYTES {
        return None;
    }
    let payload = buf.get(pos + 8..pos + 8 + len)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, pos + 8 + len))
}

/// Reads a small state file, `None` if it does not exist.
pub(crate) fn read_state(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces a small state file atomically and durably.
pub(crate) fn write_state(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(p: &[u8]) -> Option<u64> {
        std::str::from_utf8(p).ok()?.parse().ok()
    }

    fn e(i: u64) -> (u64, Vec<u8>) {
        (i, i.to_string().into_bytes())
    }

    #[test]
    fn append_truncate_rewrite_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, frames) = LogFile::open(dir.path(), idx).unwrap();
        assert!(frames.is_empty());
        f.append(&[e(1), e(2), e(3), e(4)]).unwrap();
        f.truncate_from(3).unwrap();
        f.append(&[e(3)]).unwrap();
        drop(f);
        let (mut f, frames) = LogFile::open(dir.path(), idx).unwrap();
        assert_eq!(frames, vec![e(1), e(2), e(3)]);
        f.rewrite(&[e(3)]).unwrap();
        f.append(&[e(4)]).unwrap();
        drop(f);
        let (_, frames) = LogFile::open(dir.path(), idx).unwrap();
        assert_eq!(frames, vec![e(3), e(4)]);
    }

    #[test]
    fn torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _) = LogFile::open(dir.path(), idx).unwrap();
        f.append(&[e(1), e(2)]).unwrap();
        drop(f);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let full = bytes.len();
        bytes.truncate(full - 1);
        std::fs::write(&path, &bytes).unwrap();
        let (mut f, frames) = LogFile::open(dir.path(), idx).unwrap();
        assert_eq!(frames, vec![e(1)]);
        f.append(&[e(2)]).unwrap();
        drop(f);
        let (_, frames) = LogFile::open(dir.path(), idx).unwrap();
        assert_eq!(frames, vec![e(1), e(2)]);
    }

    #[test]
    fn state_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_state(dir.path(), "vote").unwrap(), None);
        write_state(dir.path(), "vote", b"a").unwrap();
        write_state(dir.path(), "vote", b"b").unwrap();
        assert_eq!(read_state(dir.path(), "vote").unwrap(), Some(b"b".to_vec()));
    }
}
