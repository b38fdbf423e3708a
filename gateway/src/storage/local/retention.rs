//! Retention: deletes whole sealed segments by time and size, and segments left below the log
//! start by `delete_records`, with Kafka's rules:
//! - by time: oldest first, while a segment's largest timestamp is older than
//!   `now - retention.ms` (a segment without timestamps uses its file modification time);
//! - by size: oldest first, while the partition stays at or above `retention.bytes` without it;
//! - the active segment is never deleted.
//!
//! The log start advances to the first remaining segment's base offset when that is larger.

use std::sync::Weak;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::partition::{delete_segment_files, detach_below, Partition};
use super::segment::Segment;
use super::Inner;
use crate::storage::TopicConfig;

fn segment_time_ms(s: &Segment) -> i64 {
    if s.max_timestamp >= 0 {
        return s.max_timestamp;
    }
    s.file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(i64::MAX, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Partition {
    /// Applies retention now; returns how many segments were deleted.
    pub(crate) fn apply_retention(&self, config: &TopicConfig, now_ms: i64) -> usize {
        let (doomed, log_start) = {
            let mut st = self.state.lock();
            let sealed = st.segments.len() - 1;
            let mut n = 0;
            if config.retention_ms >= 0 {
                let cutoff = now_ms.saturating_sub(config.retention_ms);
                while n < sealed && segment_time_ms(&st.segments[n]) < cutoff {
                    n += 1;
                }
            }
            if config.retention_bytes >= 0 {
                let retention = u64::try_from(config.retention_bytes).unwrap_or(0);
                let mut total: u64 = st.segments[n..].iter().map(|s| s.size).sum();
                while n < sealed && total - st.segments[n].size >= retention {
                    total -= st.segments[n].size;
                    n += 1;
                }
            }
            let new_start = st.segments[n].base_offset.max(st.log_start);
            st.log_start = new_start;
            let doomed = detach_below(&mut st, new_start);
            if !doomed.is_empty() {
                st.producers.remove_before(new_start);
            }
            (doomed, new_start)
        };
        if !doomed.is_empty() {
            info!(partition = %self.tp, segments = doomed.len(), log_start, "retention deleted segments");
            delete_segment_files(&self.dir, &doomed);
        }
        doomed.len()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One retention pass over every partition (blocking: deletes files).
pub(crate) fn retention_pass(inner: &Inner) -> usize {
    let now = now_ms();
    let mut deleted = 0;
    for (config, partitions) in inner.partitions_with_config() {
        for p in partitions {
            deleted += p.apply_retention(&config, now);
        }
    }
    deleted
}

/// Runs [`retention_pass`] every `period` until cancelled or the storage is dropped.
pub(crate) async fn run_retention(inner: Weak<Inner>, period: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Some(strong) = inner.upgrade() else { break };
        match tokio::task::spawn_blocking(move || retention_pass(&strong)).await {
            Ok(n) => debug!(deleted_segments = n, "retention pass done"),
            Err(e) => warn!(error = %e, "retention pass failed"),
        }
    }
    debug!("retention stopped");
}
