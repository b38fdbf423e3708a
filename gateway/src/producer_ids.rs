//! Producer id allocation for InitProducerId.
//!
//! Ids are handed out from blocks reserved on disk: the file `producer_ids` in the data dir holds
//! the first id of the next unreserved block and is rewritten (temp file, fsync, rename) before
//! any id of a new block is returned. After a crash the unused rest of the current block is
//! skipped, so an id is never handed out twice. In a cluster the same blocks come from raft.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Ids reserved per disk write.
const BLOCK: i64 = 1000;

/// Allocates unique producer ids that survive restarts.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    /// (next id to hand out, end of the reserved block, exclusive).
    state: Mutex<(i64, i64)>,
}

impl ProducerIdAllocator {
    /// Opens (or creates) the allocator state in `dir`.
    ///
    /// # Errors
    /// I/O errors reading the state file, or a corrupt file.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("producer_ids");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self { path, state: Mutex::new((next, next)) })
    }

    /// Returns a fresh producer id.
    ///
    /// # Errors
    /// I/O errors persisting a new block reservation.
    pub fn next_id(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock();
        if state.0 >= state.1 {
            let end = state.0 + BLOCK;
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, end.to_string())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            state.1 = end;
        }
        let id = state.0;
        state.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIdAllocator::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.next_id().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIdAllocator::open(dir.path()).unwrap();
        let next = b.next_id().unwrap();
        assert!(next > 2, "{next}");
    }
}
