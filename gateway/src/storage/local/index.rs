//! Sparse per-segment indexes, kept in memory and persisted when a segment is sealed.
//!
//! - The offset index maps a batch's base offset (relative to the segment base) to its byte
//!   position; one entry per `index_interval_bytes` of data. A lookup gives the position of the
//!   last indexed batch at or before an offset, from which batch headers are walked.
//! - The time index maps the largest timestamp seen so far in the segment to the base offset of
//!   the batch where it was reached; an entry is added only when that maximum grows.
//!
//! File formats (big-endian, fixed-size entries, Kafka's shape): `.index` holds
//! `(relative offset u32, position u32)`, `.timeindex` holds `(timestamp i64, relative offset
//! u32)`. Files are written whole (temp file + rename) and are validated on load; an invalid
//! file is ignored and the index is rebuilt from the segment.

/// Offset index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    /// `(relative offset, position)`, both strictly increasing.
    entries: Vec<(u32, u32)>,
}

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

impl OffsetIndex {
    /// Adds an entry; ignored unless it is past the last one.
    pub(crate) fn push(&mut self, rel_offset: u32, position: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(o, p)| rel_offset > o && position > p)
        {
            self.entries.push((rel_offset, position));
        }
    }

    /// Position of the last indexed batch whose base offset is at or before `rel_offset` (0
    /// when none is).
    pub(crate) fn lookup(&self, rel_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= rel_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops entries at or past `position` (after a truncation).
    pub(crate) fn truncate_to_position(&mut self, position: u32) {
        self.entries.retain(|&(_, p)| p < position);
    }

    /// The file image of the index.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Parses a file image; `None` unless every entry is increasing and below `segment_len`.
    pub(crate) fn decode(buf: &[u8], segment_len: u64) -> Option<Self> {
        if buf.len() % OFFSET_ENTRY != 0 {
            return None;
        }
        let mut index = Self::default();
        for chunk in buf.chunks_exact(OFFSET_ENTRY) {
            let o = u32::from_be_bytes(chunk[0..4].try_into().ok()?);
            let p = u32::from_be_bytes(chunk[4..8].try_into().ok()?);
            let increasing = index.entries.last().is_none_or(|&(lo, lp)| o > lo && p > lp);
            if !increasing || u64::from(p) >= segment_len {
                return None;
            }
            index.entries.push((o, p));
        }
        Some(index)
    }
}

/// Time index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    /// `(max timestamp so far, relative base offset of the batch reaching it)`, both increasing.
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Adds an entry when `timestamp` is above the last indexed one.
    pub(crate) fn push(&mut self, timestamp: i64, rel_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(t, o)| timestamp > t && rel_offset >= o)
        {
            self.entries.push((timestamp, rel_offset));
        }
    }

    /// Relative offset of the last entry whose timestamp is below `timestamp`: every batch
    /// before that offset has a max timestamp below `timestamp`, so a search may start there.
    pub(crate) fn lookup(&self, timestamp: i64) -> Option<u32> {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        (i > 0).then(|| self.entries[i - 1].1)
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Drops entries at or past `rel_offset` (after a truncation).
    pub(crate) fn truncate_to_offset(&mut self, rel_offset: u32) {
        self.entries.retain(|&(_, o)| o < rel_offset);
    }

    /// The file image of the index.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Parses a file image; `None` unless entries increase and offsets stay below `max_rel`.
    pub(crate) fn decode(buf: &[u8], max_rel: u32) -> Option<Self> {
        if buf.len() % TIME_ENTRY != 0 {
            return None;
        }
        let mut index = Self::default();
        for chunk in buf.chunks_exact(TIME_ENTRY) {
            let t = i64::from_be_bytes(chunk[0..8].try_into().ok()?);
            let o = u32::from_be_bytes(chunk[8..12].try_into().ok()?);
            let increasing = index.entries.last().is_none_or(|&(lt, lo)| t > lt && o >= lo);
            if !increasing || o > max_rel {
                return None;
            }
            index.entries.push((t, o));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_finds_floor_entry_and_round_trips() {
        let mut idx = OffsetIndex::default();
        idx.push(0, 0);
        idx.push(10, 4096);
        idx.push(25, 8200);
        idx.push(20, 9000); // not increasing: ignored
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(9), 0);
        assert_eq!(idx.lookup(10), 4096);
        assert_eq!(idx.lookup(24), 4096);
        assert_eq!(idx.lookup(1000), 8200);
        let back = OffsetIndex::decode(&idx.encode(), 10_000).unwrap();
        assert_eq!(back, idx);
        assert!(
            OffsetIndex::decode(&idx.encode(), 8000).is_none(),
            "position past the segment"
        );
        assert!(
            OffsetIndex::decode(&idx.encode()[..5], 10_000).is_none(),
            "torn entry"
        );
        idx.truncate_to_position(8200);
        assert_eq!(idx.last(), Some((10, 4096)));
    }

    #[test]
    fn time_index_returns_last_entry_below_the_target() {
        let mut idx = TimeIndex::default();
        idx.push(100, 0);
        idx.push(90, 5); // max timestamp did not grow: ignored
        idx.push(200, 10);
        idx.push(300, 20);
        assert_eq!(idx.lookup(50), None);
        assert_eq!(idx.lookup(100), None);
        assert_eq!(idx.lookup(101), Some(0));
        assert_eq!(idx.lookup(300), Some(10));
        assert_eq!(idx.lookup(301), Some(20));
        let back = TimeIndex::decode(&idx.encode(), 20).unwrap();
        assert_eq!(back, idx);
        assert!(TimeIndex::decode(&idx.encode(), 19).is_none());
        idx.truncate_to_offset(20);
        assert_eq!(idx.lookup(1000), Some(10));
    }
}
