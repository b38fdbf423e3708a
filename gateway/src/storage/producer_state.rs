//! Idempotent-producer state of one partition: pure, I/O-free and backend-neutral.
//!
//! For every producer id seen in a partition the table keeps the current epoch and the
//! `(first sequence, last sequence, base offset)` of its last [`MAX_BATCHES`] batches, which is
//! what Kafka needs to recognise retries (duplicates) and sequence gaps:
//! - an epoch below the current one is fenced;
//! - a new (higher) epoch must start at sequence 0;
//! - a batch equal to one of the last five is a duplicate and reports the original offset;
//! - otherwise the first sequence must follow the last one (wrapping at `i32::MAX`);
//! - a producer id the table does not know is accepted at any sequence (its state may have been
//!   lost with truncated or deleted log segments).
//!
//! Backends call [`ProducerStateTable::check`] under their partition write lock before storing a
//! batch and [`ProducerStateTable::record`] once it is stored, and replay stored batch headers
//! through `record` to rebuild the table after a restart.

use std::collections::{HashMap, VecDeque};

use super::{Offset, Result, StorageError};
use crate::records::BatchHeader;

/// How many recent batches per producer are remembered for duplicate detection (Kafka's value).
pub const MAX_BATCHES: usize = 5;

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset the batch was stored at.
    pub base_offset: Offset,
}

/// What a producer is known to have written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Current epoch of the producer id.
    pub epoch: i16,
    /// Most recent batches, oldest first, at most [`MAX_BATCHES`].
    pub batches: VecDeque<BatchMetadata>,
}

/// The verdict on a batch about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Store the batch.
    Append,
    /// The batch is a retry of one already stored at `base_offset`: store nothing.
    Duplicate {
        /// Offset the original batch received.
        base_offset: Offset,
    },
}

/// Producer id to [`ProducerEntry`] for one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

/// The sequence following `seq`, wrapping from `i32::MAX` to 0 as Kafka does.
pub fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStateTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of producer ids tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer id is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state of one producer id.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides whether a batch with this header may be appended.
    ///
    /// # Errors
    /// [`StorageError::ProducerFenced`] for an epoch older than the current one,
    /// [`StorageError::OutOfOrderSequence`] for a sequence gap, and
    /// [`StorageError::CorruptBatch`] for an idempotent batch without a sequence.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck> {
        if !header.is_idempotent() {
            return Ok(SequenceCheck::Append);
        }
        let producer_id = header.producer_id;
        if header.base_sequence < 0 {
            return Err(StorageError::CorruptBatch(format!(
                "batch of producer {producer_id} carries no base sequence"
            )));
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        let epoch = header.producer_epoch;
        if epoch < entry.epoch {
            return Err(StorageError::ProducerFenced {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let (first, last) = (header.base_sequence, header.last_sequence());
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
            });
        }
        match entry.batches.back() {
            Some(prev) if first != next_sequence(prev.last_seq) => Err(StorageError::OutOfOrderSequence {
                producer_id,
                expected: next_sequence(prev.last_seq),
                got: first,
            }),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch stored at `base_offset`. Non-idempotent batches are ignored.
    pub fn record(&mut self, header: &BatchHeader, base_offset: Offset) {
        if !header.is_idempotent() || header.base_sequence < 0 {
            return;
        }
        let meta = BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset,
        };
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == MAX_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
    }

    /// Forgets every producer whose newest batch lies entirely below `log_start` (its records
    /// were deleted, as Kafka expires such producers).
    pub fn remove_before(&mut self, log_start: Offset) {
        self.producers
            .retain(|_, e| e.batches.back().is_some_and(|b| b.base_offset >= log_start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{testing::batch, BatchHeader};

    fn header(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        let values: Vec<&[u8]> = vec![b"v"; n];
        BatchHeader::parse(&batch(&values, 1, pid, epoch, seq)).unwrap()
    }

    #[test]
    fn sequences_must_follow_and_retries_are_duplicates() {
        let mut t = ProducerStateTable::new();
        let h0 = header(7, 0, 0, 3);
        assert_eq!(t.check(&h0).unwrap(), SequenceCheck::Append);
        t.record(&h0, 100);
        let h1 = header(7, 0, 3, 2);
        assert_eq!(t.check(&h1).unwrap(), SequenceCheck::Append);
        t.record(&h1, 103);
        assert_eq!(
            t.check(&h0).unwrap(),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            t.check(&h1).unwrap(),
            SequenceCheck::Duplicate { base_offset: 103 }
        );
        let gap = header(7, 0, 9, 1);
        assert!(matches!(
            t.check(&gap),
            Err(StorageError::OutOfOrderSequence {
                producer_id: 7,
                expected: 5,
                got: 9
            })
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::new();
        for i in 0..6 {
            t.record(&header(1, 0, i, 1), i64::from(i));
        }
        assert_eq!(t.get(1).unwrap().batches.len(), MAX_BATCHES);
        // The first batch fell out of the window: it is now a sequence error, not a duplicate.
        assert!(matches!(
            t.check(&header(1, 0, 0, 1)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            t.check(&header(1, 0, 5, 1)).unwrap(),
            SequenceCheck::Duplicate { base_offset: 5 }
        );
    }

    #[test]
    fn epochs_fence_and_reset_sequences() {
        let mut t = ProducerStateTable::new();
        t.record(&header(3, 2, 0, 1), 0);
        assert!(matches!(
            t.check(&header(3, 1, 1, 1)),
            Err(StorageError::ProducerFenced {
                producer_id: 3,
                epoch: 1,
                current: 2
            })
        ));
        assert!(matches!(
            t.check(&header(3, 3, 5, 1)),
            Err(StorageError::OutOfOrderSequence { expected: 0, .. })
        ));
        let h = header(3, 3, 0, 1);
        assert_eq!(t.check(&h).unwrap(), SequenceCheck::Append);
        t.record(&h, 1);
        assert_eq!(t.get(3).unwrap().epoch, 3);
        assert_eq!(t.get(3).unwrap().batches.len(), 1);
    }

    #[test]
    fn unknown_producers_and_plain_batches_are_accepted() {
        let t = ProducerStateTable::new();
        assert_eq!(t.check(&header(9, 0, 42, 1)).unwrap(), SequenceCheck::Append);
        assert_eq!(t.check(&header(-1, -1, -1, 1)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut t = ProducerStateTable::new();
        t.record(&header(4, 0, i32::MAX, 1), 10);
        assert_eq!(t.check(&header(4, 0, 0, 1)).unwrap(), SequenceCheck::Append);
        assert!(t.check(&header(4, 0, 1, 1)).is_err());
    }

    #[test]
    fn producers_below_log_start_are_forgotten() {
        let mut t = ProducerStateTable::new();
        t.record(&header(1, 0, 0, 1), 5);
        t.record(&header(2, 0, 0, 1), 50);
        t.remove_before(10);
        assert!(t.get(1).is_none());
        assert!(t.get(2).is_some());
    }
}
