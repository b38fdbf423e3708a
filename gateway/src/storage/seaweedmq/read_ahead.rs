//! Read-ahead for sequential consumers.
//!
//! A Kafka consumer asks for about 1 MiB per partition per fetch, while each `FetchMessage` on
//! flushed data costs the broker a read of the filer log file it falls in. So one read asks the
//! broker for [`READ_AHEAD_BYTES`], answers the fetch with whole batches up to its limit, and
//! keeps the decoded rest in the partition's [`ReadAheadSlot`]: the consumer's next fetch starts
//! exactly there and is served without a round trip.
//!
//! Invariants: a slot holds records for consecutive offsets starting at `Cached::next`, always
//! beginning at the start of a produced batch (the rest after whole batches were served). SMQ
//! never rewrites an offset (offset reuse after a broker restart is refused on the append side),
//! so cached records stay valid; offsets below the log start are checked before a slot is used.
//! All slots together hold at most [`READ_AHEAD_BUDGET`] bytes.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::rebuild::Stored;
use crate::storage::Offset;

/// What one read asks the broker for, whatever the Kafka fetch's own limit.
pub(super) const READ_AHEAD_BYTES: usize = 8 << 20;
/// Most bytes all partitions' slots hold together; a read beyond it is served but not kept.
pub(super) const READ_AHEAD_BUDGET: usize = 256 << 20;

/// Records read past the end of a fetch answer.
#[derive(Debug)]
pub(super) struct Cached {
    /// Offset of the first record.
    pub(super) next: Offset,
    /// Records at `next`, `next + 1`, ...
    pub(super) records: Vec<Stored>,
    /// The log start the read reported.
    pub(super) log_start: Offset,
    /// The high watermark the read reported.
    pub(super) high_watermark: Offset,
    bytes: usize,
}

impl Cached {
    /// Wraps the records left over at offset `next`.
    pub(super) fn new(next: Offset, records: Vec<Stored>, log_start: Offset, high_watermark: Offset) -> Self {
        let bytes = records.iter().map(Stored::approx_len).sum();
        Self {
            next,
            records,
            log_start,
            high_watermark,
            bytes,
        }
    }
}

/// The byte budget shared by every slot of one backend.
#[derive(Debug, Default)]
pub(super) struct Budget {
    used: AtomicUsize,
}

impl Budget {
    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= READ_AHEAD_BUDGET).then_some(used + n)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes currently held by all slots.
    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One partition's read-ahead.
#[derive(Debug, Default)]
pub(super) struct ReadAheadSlot {
    cached: Mutex<Option<Cached>>,
}

impl ReadAheadSlot {
    /// Takes the cached records if they start exactly at `offset`.
    pub(super) fn take(&self, offset: Offset, budget: &Budget) -> Option<Cached> {
        let mut slot = self.cached.lock();
        if slot.as_ref().is_none_or(|c| c.next != offset) {
            return None;
        }
        let cached = slot.take()?;
        budget.release(cached.bytes);
        Some(cached)
    }

    /// Keeps `cached` in place of whatever the slot held, if the budget allows.
    pub(super) fn put(&self, cached: Cached, budget: &Budget) {
        let mut slot = self.cached.lock();
        if let Some(old) = slot.take() {
            budget.release(old.bytes);
        }
        if !cached.records.is_empty() && budget.reserve(cached.bytes) {
            *slot = Some(cached);
        }
    }

    /// Drops the cached records.
    pub(super) fn clear(&self, budget: &Budget) {
        if let Some(old) = self.cached.lock().take() {
            budget.release(old.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::batch_codec::Record;

    fn records(n: usize, value_len: usize) -> Vec<Stored> {
        (0..n)
            .map(|_| Stored {
                record: Record {
                    offset_delta: 0,
                    timestamp_ms: 0,
                    key: None,
                    value: Some(vec![0u8; value_len].into()),
                    headers: Vec::new(),
                },
                batch: None,
                producer_id: -1,
                producer_epoch: -1,
                sequence: -1,
            })
            .collect()
    }

    #[test]
    fn a_slot_serves_only_its_exact_offset_and_accounts_bytes() {
        let budget = Budget::default();
        let slot = ReadAheadSlot::default();
        slot.put(Cached::new(10, records(3, 100), 0, 13), &budget);
        let held = budget.used();
        assert!(held >= 300);
        assert!(slot.take(11, &budget).is_none(), "another offset is not served");
        assert_eq!(budget.used(), held);
        let c = slot.take(10, &budget).expect("exact offset served");
        assert_eq!((c.next, c.records.len(), c.high_watermark), (10, 3, 13));
        assert_eq!(budget.used(), 0);
        assert!(slot.take(10, &budget).is_none(), "taken once");
    }

    #[test]
    fn the_budget_bounds_what_all_slots_keep() {
        let budget = Budget::default();
        let big = READ_AHEAD_BUDGET / 2 + 1;
        let (a, b) = (ReadAheadSlot::default(), ReadAheadSlot::default());
        a.put(Cached::new(0, records(1, big), 0, 1), &budget);
        b.put(Cached::new(0, records(1, big), 0, 1), &budget);
        assert!(budget.used() <= READ_AHEAD_BUDGET);
        assert!(b.take(0, &budget).is_none(), "over budget: not kept");
        // Replacing a slot's content releases the old bytes first.
        a.put(Cached::new(5, records(1, big), 0, 6), &budget);
        assert!(a.take(5, &budget).is_some());
        a.clear(&budget);
        assert_eq!(budget.used(), 0);
    }
}
