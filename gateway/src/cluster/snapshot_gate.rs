//! Bounds on inbound snapshot chunks, checked before openraft sees them.
//!
//! openraft's receiver seeks to each chunk's `offset` in the snapshot buffer and writes there; on
//! our in-memory buffer (`Cursor<Vec<u8>>`) a chunk at offset 2^40 would grow the buffer to that
//! size. The gate keeps, for the snapshot being received, how many bytes have arrived and refuses:
//! - a chunk of another snapshot that does not start at offset 0;
//! - a chunk that starts past the bytes received so far (chunks are contiguous; a chunk at or
//!   before the end is a retransmission and overwrites bytes already there);
//! - a chunk that would make the snapshot larger than `max_bytes`.
//!
//! So the buffer never exceeds `max_bytes`, whatever the offsets.

use parking_lot::Mutex;

/// Why a snapshot chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A new snapshot must start at offset 0.
    #[error("snapshot {snapshot_id}: its first chunk is at offset {offset}, not 0")]
    NotAtStart {
        /// The snapshot.
        snapshot_id: String,
        /// The chunk's offset.
        offset: u64,
    },
    /// A chunk past the bytes received so far would leave a hole.
    #[error("snapshot {snapshot_id}: chunk at offset {offset} is past the {received} bytes received; chunks must be contiguous")]
    Gap {
        /// The snapshot.
        snapshot_id: String,
        /// The chunk's offset.
        offset: u64,
        /// Bytes received so far.
        received: u64,
    },
    /// The snapshot would exceed the cap.
    #[error("snapshot {snapshot_id}: chunk at offset {offset} with {len} bytes exceeds the snapshot size limit of {max} bytes")]
    TooLarge {
        /// The snapshot.
        snapshot_id: String,
        /// The chunk's offset.
        offset: u64,
        /// The chunk's length.
        len: u64,
        /// The cap.
        max: u64,
    },
}

/// Tracks the snapshot being received; shared by the peer service's calls.
#[derive(Debug)]
pub struct SnapshotGate {
    max_bytes: u64,
    /// The snapshot being received and the end of its received bytes.
    current: Mutex<Option<(String, u64)>>,
}

impl SnapshotGate {
    /// A gate admitting snapshots of at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            current: Mutex::new(None),
        }
    }

    /// Admits the chunk `[offset, offset + len)` of `snapshot_id` (`done` on its last chunk), or
    /// says why not. An admitted chunk extends the received range; the last one ends the snapshot.
    ///
    /// # Errors
    /// [`ChunkError`] for a chunk that is not contiguous or would exceed the cap; the state is
    /// unchanged then.
    pub fn admit(&self, snapshot_id: &str, offset: u64, len: u64, done: bool) -> Result<(), ChunkError> {
        let mut current = self.current.lock();
        let received = match current.as_ref() {
            Some((id, end)) if id == snapshot_id => *end,
            _ if offset == 0 => 0,
            _ => {
                return Err(ChunkError::NotAtStart {
                    snapshot_id: snapshot_id.to_owned(),
                    offset,
                })
            }
        };
        if offset > received {
            return Err(ChunkError::Gap {
                snapshot_id: snapshot_id.to_owned(),
                offset,
                received,
            });
        }
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= self.max_bytes)
            .ok_or_else(|| ChunkError::TooLarge {
                snapshot_id: snapshot_id.to_owned(),
                offset,
                len,
                max: self.max_bytes,
            })?;
        *current = if done {
            None
        } else {
            Some((snapshot_id.to_owned(), received.max(end)))
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_chunks_and_retransmissions_pass() {
        let gate = SnapshotGate::new(100);
        gate.admit("a", 0, 40, false).unwrap();
        gate.admit("a", 40, 40, false).unwrap();
        // The sender timed out on the last chunk and sends it again.
        gate.admit("a", 40, 40, false).unwrap();
        gate.admit("a", 80, 20, true).unwrap();
        // Done: the next snapshot starts afresh.
        gate.admit("b", 0, 100, true).unwrap();
    }

    #[test]
    fn gaps_huge_offsets_and_oversized_snapshots_are_refused() {
        let gate = SnapshotGate::new(100);
        assert!(matches!(
            gate.admit("a", 1 << 40, 1, false),
            Err(ChunkError::NotAtStart { offset, .. }) if offset == 1 << 40
        ));
        gate.admit("a", 0, 10, false).unwrap();
        assert_eq!(
            gate.admit("a", 11, 1, false),
            Err(ChunkError::Gap {
                snapshot_id: "a".into(),
                offset: 11,
                received: 10
            })
        );
        assert!(matches!(
            gate.admit("a", u64::MAX, 1, false),
            Err(ChunkError::Gap { .. })
        ));
        assert!(matches!(
            gate.admit("a", 10, 91, false),
            Err(ChunkError::TooLarge { max: 100, .. })
        ));
        // Refusals change nothing: the stream continues where it was.
        gate.admit("a", 10, 90, true).unwrap();
        assert!(matches!(
            gate.admit("b", 0, 101, false),
            Err(ChunkError::TooLarge { .. })
        ));
    }

    #[test]
    fn another_snapshot_replaces_the_current_one_only_from_offset_zero() {
        let gate = SnapshotGate::new(100);
        gate.admit("a", 0, 50, false).unwrap();
        assert!(matches!(
            gate.admit("b", 50, 10, false),
            Err(ChunkError::NotAtStart { .. })
        ));
        gate.admit("b", 0, 10, false).unwrap();
        assert!(matches!(
            gate.admit("b", 50, 10, false),
            Err(ChunkError::Gap { .. })
        ));
    }
}
