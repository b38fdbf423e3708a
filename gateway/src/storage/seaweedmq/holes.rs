//! Offsets SeaweedMQ counted but never stored at a partition's end (docs/seaweedmq-mapping.md
//! §3.3, "Two SeaweedMQ 4.48 defects"): how the gateway proves such a hole from outside the
//! broker, and what it then reports and reads.
//!
//! SeaweedMQ 4.48 counts an offset for a publish that reaches a partition while the broker
//! unloads it, and then fails the publish without storing anything. When nothing is published
//! after it, the broker's high watermark counts offsets nothing can ever be read at, so a
//! consumer (or a producer-state rebuild) that reads up to the high watermark waits for ever.
//!
//! The proof: the offset is the one right after the partition's flushed log files, below the
//! broker's high watermark, and nothing is readable there while neither the flushed files nor
//! the high watermark move for [`HOLE_AFTER`]. The broker writes what it holds in memory to
//! the files every flush interval (5 s by default), so a record stored at the offset (or after
//! it, below the high watermark) would have reached them; and both only grow, so seeing them
//! unchanged at the start and the end of the window means they did not move in between. From
//! then on (proven holes live as long as the gateway process):
//! - the high watermark reported to clients stops before a hole that reaches the broker's
//!   high watermark ([`Holes::reported`]): consumers, `ListOffsets` and producer-state rebuilds
//!   see the last stored record as the partition's end;
//! - a read at an offset in a hole continues after it ([`Holes::skip`]), as a Kafka read does in
//!   a compacted range, so records published later are served at their own offsets (the
//!   broker itself would serve them for the missing offsets).
//!
//! A hole followed by records still only in the broker's memory is not proven (the high
//! watermark moves), but it is recognised ([`Holes::unsafe_to_subscribe`]): reads there answer
//! a retriable error instead of numbering the following records from the hole, until the
//! broker flushes them and the flushed files' own offsets let reads skip it.
//!
//! A broker whose high watermark falls back below a hole's end (a restart that hands offsets
//! out again) makes the hole's offsets usable again: it is forgotten ([`Holes::observe`]).

use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::client::SmqClient;
use crate::storage::{Offset, TopicPartition};

/// How long an offset right after the flushed files stays unreadable, with the flushed files
/// and the high watermark unchanged, before it counts as never stored (three of the broker's
/// default 5 s flush intervals).
pub(super) const HOLE_AFTER: Duration = Duration::from_secs(15);
/// Least time between two looks at the broker for the same candidate offset.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Most proven holes kept per partition (the oldest go first; one appears per unload race).
const MAX_HOLES: usize = 64;
/// Newest log files read to find the flushed end.
const FLUSHED_FILES: usize = 2;
/// Longest the one subscription at a watched offset may take (the subscription's own deadline
/// is 5 s).
const CANDIDATE_READ: Duration = Duration::from_secs(6);
/// No bound of ours: the subscription's own deadline and retries.
const UNBOUNDED: Duration = Duration::from_secs(3600);
/// Longest a read at an offset the flushed files reach past waits for the gateway's list of
/// files (refreshed at most once a second) to show them.
const RELIST_WAIT: Duration = Duration::from_secs(3);

/// One partition's proven holes and the candidate being watched.
#[derive(Debug, Default)]
pub struct Holes {
    state: parking_lot::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Proven holes `[from, to)`, disjoint, in offset order.
    proven: Vec<(Offset, Offset)>,
    /// The offset being watched, if any.
    candidate: Option<Candidate>,
    /// An offset the subscription was held back from, and since when.
    held: Option<(Offset, Instant)>,
}

/// An unreadable offset right after the flushed files, and what the broker showed when it was
/// first seen so.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    offset: Offset,
    flushed: Offset,
    high_watermark: Offset,
    since: Instant,
    probed: Instant,
    /// True once a subscription was tried at the offset: another one would only repeat its
    /// minute of retries while the window runs.
    subscribed: bool,
}

impl Holes {
    /// Where a read at `offset` continues: the end of the proven hole holding `offset`, or
    /// `offset` itself.
    pub fn skip(&self, offset: Offset) -> Offset {
        let state = self.state.lock();
        state
            .proven
            .iter()
            .find(|(from, to)| (*from..*to).contains(&offset))
            .map_or(offset, |&(_, to)| to)
    }

    /// The high watermark to report for the broker's `high_watermark`: the start of a proven
    /// hole that reaches it (nothing is stored from there on), else `high_watermark`.
    pub fn reported(&self, high_watermark: Offset) -> Offset {
        let state = self.state.lock();
        state
            .proven
            .iter()
            .find(|(from, to)| *from < high_watermark && high_watermark <= *to)
            .map_or(high_watermark, |&(from, _)| from)
    }

    /// Forgets the holes the broker's `high_watermark` has fallen below (their offsets are
    /// handed out again after a broker restart).
    pub fn observe(&self, high_watermark: Offset) {
        let mut state = self.state.lock();
        if state.proven.last().is_some_and(|&(_, to)| to > high_watermark) {
            state.proven.retain(|&(_, to)| to <= high_watermark);
        }
    }

    /// How long a read may spend on the subscription fallback at `offset` (`None`: not now).
    /// An offset being watched gets one try of at most [`CANDIDATE_READ`] (then the window of
    /// [`Holes::check_end`] decides; the subscription's own retries take up to a minute, longer
    /// than a client waits for its request); other offsets get the subscription's retries.
    pub fn subscription_allowance(&self, offset: Offset) -> Option<Duration> {
        let mut state = self.state.lock();
        match state.candidate.as_mut() {
            Some(c) if c.offset == offset => {
                (!std::mem::replace(&mut c.subscribed, true)).then_some(CANDIDATE_READ)
            }
            _ => Some(UNBOUNDED),
        }
    }

    /// Drops the candidate at `offset`: something was read there.
    pub fn readable(&self, offset: Offset) {
        let mut state = self.state.lock();
        if state.candidate.is_some_and(|c| c.offset == offset) {
            state.candidate = None;
        }
    }

    /// Records `[from, to)` as never stored.
    fn prove(&self, from: Offset, to: Offset) {
        let mut state = self.state.lock();
        state.candidate = None;
        state.proven.retain(|&(f, t)| t <= from || f >= to);
        let at = state.proven.partition_point(|&(f, _)| f < from);
        state.proven.insert(at, (from, to));
        if state.proven.len() > MAX_HOLES {
            state.proven.remove(0);
        }
    }

    /// Called when `FetchMessage` returned nothing at `offset`, below the broker's
    /// `high_watermark`: watches whether `offset` starts a hole that reaches the partition's
    /// end, and returns true once that is proven (see the module docs) or when a proven hole
    /// holds `offset`. Looks at the broker (the newest flushed files, one `FetchMessage`) at
    /// most once per [`PROBE_EVERY`]; a failed look proves nothing, and a read that finds a
    /// record there ([`Holes::readable`]) starts the watch again.
    pub async fn check_end(
        &self,
        client: &SmqClient,
        tp: &TopicPartition,
        offset: Offset,
        high_watermark: Offset,
    ) -> bool {
        if self.skip(offset) > offset {
            return true;
        }
        let now = Instant::now();
        let recent = self
            .state
            .lock()
            .candidate
            .is_some_and(|c| c.offset == offset && now.duration_since(c.probed) < PROBE_EVERY);
        if recent || offset >= high_watermark {
            return false;
        }
        let flushed = match client.flushed_max(&tp.topic, tp.partition, FLUSHED_FILES).await {
            Ok(flushed) => flushed,
            Err(e) => {
                debug!(partition = %tp, offset, error = %e, "cannot list the flushed files to check for a hole");
                return false;
            }
        };
        let right_after_flushed = flushed + 1 == offset;
        let readable = right_after_flushed
            && client
                .fetch(&tp.topic, tp.partition, offset, 1 << 20, 1)
                .await
                .is_ok_and(|f| !f.messages.is_empty());
        let mut state = self.state.lock();
        if !right_after_flushed || readable {
            state.candidate = None;
            return false;
        }
        match state.candidate {
            Some(c) if (c.offset, c.flushed, c.high_watermark) == (offset, flushed, high_watermark) => {
                if now.duration_since(c.since) < HOLE_AFTER {
                    state.candidate = Some(Candidate { probed: now, ..c });
                    return false;
                }
            }
            _ => {
                debug!(partition = %tp, offset, flushed, high_watermark, "nothing readable right after the flushed files; watching for a hole");
                state.candidate = Some(Candidate {
                    offset,
                    flushed,
                    high_watermark,
                    since: now,
                    probed: now,
                    subscribed: false,
                });
                return false;
            }
        }
        drop(state);
        self.prove(offset, high_watermark);
        warn!(partition = %tp, from = offset, to = high_watermark, "SeaweedMQ counted offsets it never stored at the partition's end; the high watermark reported stops before them and reads continue after them");
        true
    }
}

impl Holes {
    /// True when the subscription fallback must not read at `offset` (which `FetchMessage` did
    /// not serve) for now: it numbers what it gets densely from `offset`, so past a hole it
    /// would serve the next records one offset early. That is the case when
    /// - `offset` is right after the partition's flushed files while `FetchMessage` serves the
    ///   next offset from the broker's memory: the broker never stored `offset` and published
    ///   records after it (or a flush is between writing its buffer and the file showing it);
    ///   once the broker flushes them, reads skip `offset` by the files' own offsets;
    /// - the flushed files reach past `offset` but the read did not find it in them: the
    ///   gateway's list of files may be up to a second old; for at most [`RELIST_WAIT`] per
    ///   offset (then the subscription reads it as before: some files cannot be read directly).
    pub async fn unsafe_to_subscribe(&self, client: &SmqClient, tp: &TopicPartition, offset: Offset) -> bool {
        let Ok(flushed) = client.flushed_max(&tp.topic, tp.partition, FLUSHED_FILES).await else {
            return false;
        };
        if flushed + 1 == offset {
            return client
                .fetch(&tp.topic, tp.partition, offset + 1, 1 << 20, 1)
                .await
                .is_ok_and(|f| !f.messages.is_empty());
        }
        if flushed <= offset {
            return false;
        }
        let now = Instant::now();
        let mut state = self.state.lock();
        let since = match state.held {
            Some((o, since)) if o == offset => since,
            _ => {
                state.held = Some((offset, now));
                now
            }
        };
        now.duration_since(since) < RELIST_WAIT
    }
}

#[cfg(test)]
#[path = "holes_tests.rs"]
mod weed_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proven_holes_are_skipped_and_a_trailing_one_is_not_reported() {
        let holes = Holes::default();
        assert_eq!((holes.skip(445), holes.reported(446)), (445, 446));
        holes.prove(445, 446);
        assert_eq!(holes.skip(444), 444);
        assert_eq!(holes.skip(445), 446);
        assert_eq!(holes.skip(446), 446);
        assert_eq!(holes.reported(446), 445, "a hole at the end is not counted");
        assert_eq!(holes.reported(450), 450, "records after it are");
        holes.prove(500, 503);
        assert_eq!((holes.skip(501), holes.reported(503)), (503, 500));
        assert_eq!(holes.skip(445), 446, "earlier holes are kept");
    }

    #[test]
    fn a_broker_high_watermark_below_a_hole_forgets_it() {
        let holes = Holes::default();
        holes.prove(10, 12);
        holes.prove(20, 21);
        holes.observe(25);
        assert_eq!(holes.skip(20), 21);
        holes.observe(15);
        assert_eq!(
            (holes.skip(10), holes.skip(20)),
            (12, 20),
            "offsets from 15 are handed out again"
        );
        holes.observe(11);
        assert_eq!(holes.skip(10), 10);
    }

    #[test]
    fn a_candidate_gets_one_subscription_and_other_offsets_any() {
        let holes = Holes::default();
        let may = |o| holes.subscription_allowance(o);
        assert_eq!(
            (may(9), may(9)),
            (Some(UNBOUNDED), Some(UNBOUNDED)),
            "no candidate"
        );
        let now = Instant::now();
        holes.state.lock().candidate = Some(Candidate {
            offset: 9,
            flushed: 8,
            high_watermark: 10,
            since: now,
            probed: now,
            subscribed: false,
        });
        assert_eq!(may(9), Some(CANDIDATE_READ));
        assert_eq!(may(9), None, "one subscription per candidate");
        assert_eq!(may(8), Some(UNBOUNDED));
        holes.readable(9);
        assert_eq!(may(9), Some(UNBOUNDED), "a read there ends the candidate");
    }

    #[test]
    fn only_the_newest_holes_are_kept() {
        let holes = Holes::default();
        for i in 0..=MAX_HOLES as i64 {
            holes.prove(i * 10, i * 10 + 1);
        }
        assert_eq!(holes.skip(0), 0, "the oldest went");
        assert_eq!(holes.skip(10), 11);
    }
}
