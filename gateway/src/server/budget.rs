//! [`MemoryBudget`]: one bound on the request bytes held across all connections (Kafka's
//! `queued.max.request.bytes`).
//!
//! The per-connection window bounds what one client holds; this bounds what all of them hold
//! together, so N clients cannot make the gateway hold N x `max-request-bytes`. A connection's
//! reader reserves a frame's bytes after reading its 4-byte size and *before* allocating or
//! reading its body; the reservation travels with the frame through the read-ahead queue and the
//! in-flight window and is returned when the request lets go of its bytes (a Produce once its
//! batches are with storage, every other request when it completes). While the budget is
//! exhausted a reader simply waits: its connection stops reading (TCP backpressure) and is not
//! failed. Waiters are served first come, first served (tokio's fair semaphore), so a large frame
//! is not starved by a stream of small ones. A frame larger than the whole budget could never be
//! admitted; the session refuses it like an over-size frame.
//!
//! A sixteenth of the budget (the headroom) is kept for small frames (at most
//! [`SMALL_FRAME_BYTES`]): a small frame takes bytes from the main part if it can at once, else
//! from the headroom. So clients holding large frames open (a slow or hostile sender that never
//! completes them) can fill the main part, but a normal client's ApiVersions, Metadata,
//! heartbeats and small produces are still read. A frame larger than the main part takes the
//! rest from the headroom. The total held never exceeds the budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Largest frame that may use the headroom kept for small frames.
pub const SMALL_FRAME_BYTES: usize = 1 << 20;

/// The shared bound on request bytes held by queued and in-flight requests.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    /// The main part: every frame may use it.
    permits: Semaphore,
    /// The headroom: small frames, and the part of a frame larger than the main part.
    headroom: Semaphore,
    headroom_size: usize,
    held: IntGauge,
    waiting: IntGauge,
}

impl MemoryBudget {
    /// A budget of `limit` bytes; `held` and `waiting` are the gauges it keeps current (bytes
    /// reserved, readers waiting for bytes).
    pub fn new(limit: usize, held: IntGauge, waiting: IntGauge) -> Arc<Self> {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        let headroom_size = limit / 16;
        Arc::new(Self {
            limit,
            permits: Semaphore::new(limit - headroom_size),
            headroom: Semaphore::new(headroom_size),
            headroom_size,
            held,
            waiting,
        })
    }

    /// The configured bound in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently reserved.
    pub fn held(&self) -> usize {
        self.limit - self.permits.available_permits() - self.headroom.available_permits()
    }

    /// Reserves `bytes`, waiting while the budget cannot hold them. `None` when `bytes` exceeds
    /// the whole budget (it could never be reserved). Cancel-safe: a reservation abandoned while
    /// waiting takes nothing (permits are kept only once all of them are acquired).
    pub async fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        if bytes > self.limit {
            return None;
        }
        let n = u32::try_from(bytes).ok()?;
        let main_size = u32::try_from(self.limit - self.headroom_size).ok()?;
        let (main, headroom) = if bytes <= SMALL_FRAME_BYTES.min(self.headroom_size) {
            self.reserve_small(n).await?
        } else if n > main_size {
            // Larger than the main part: all of it, then the rest from the headroom.
            let main = self.acquire(&self.permits, main_size).await?;
            let rest = self.acquire(&self.headroom, n - main_size).await?;
            (Some(main), Some(rest))
        } else {
            (Some(self.acquire(&self.permits, n).await?), None)
        };
        let kept = |p: Option<SemaphorePermit<'_>>| {
            p.map_or(0, |p| {
                let k = p.num_permits();
                p.forget();
                k
            })
        };
        let (main, headroom) = (kept(main), kept(headroom));
        self.held.add(bytes as i64);
        Some(Reservation {
            budget: Some(Arc::clone(self)),
            bytes: AtomicUsize::new(main),
            headroom: AtomicUsize::new(headroom),
        })
    }

    /// A small frame: the main part if it has room now, else the headroom if it has, else
    /// whichever part frees room first.
    async fn reserve_small(
        &self,
        n: u32,
    ) -> Option<(Option<SemaphorePermit<'_>>, Option<SemaphorePermit<'_>>)> {
        if let Ok(p) = self.permits.try_acquire_many(n) {
            return Some((Some(p), None));
        }
        if let Ok(p) = self.headroom.try_acquire_many(n) {
            return Some((None, Some(p)));
        }
        self.waiting.inc();
        let _waiting = Dec(&self.waiting);
        // Both acquisitions are cancel-safe: the one that loses the race takes nothing. The
        // semaphores are never closed.
        tokio::select! {
            p = self.permits.acquire_many(n) => Some((Some(p.ok()?), None)),
            p = self.headroom.acquire_many(n) => Some((None, Some(p.ok()?))),
        }
    }

    async fn acquire<'a>(&self, pool: &'a Semaphore, n: u32) -> Option<SemaphorePermit<'a>> {
        if let Ok(p) = pool.try_acquire_many(n) {
            return Some(p);
        }
        self.waiting.inc();
        let _waiting = Dec(&self.waiting);
        // The semaphore is never closed.
        pool.acquire_many(n).await.ok()
    }
}

struct Dec<'a>(&'a IntGauge);

impl Drop for Dec<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Bytes reserved in a [`MemoryBudget`]; returned at the latest when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    /// Bytes from the main part.
    bytes: AtomicUsize,
    /// Bytes from the headroom.
    headroom: AtomicUsize,
}

impl Reservation {
    /// A reservation of nothing (requests outside the budget: tests, internal callers).
    pub fn none() -> Self {
        Self {
            budget: None,
            bytes: AtomicUsize::new(0),
            headroom: AtomicUsize::new(0),
        }
    }

    /// Returns the bytes to the budget. Idempotent.
    pub fn release(&self) {
        let bytes = self.bytes.swap(0, Ordering::AcqRel);
        let headroom = self.headroom.swap(0, Ordering::AcqRel);
        if let Some(budget) = &self.budget {
            budget.held.sub((bytes + headroom) as i64);
            budget.permits.add_permits(bytes);
            budget.headroom.add_permits(headroom);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(limit: usize) -> Arc<MemoryBudget> {
        MemoryBudget::new(
            limit,
            IntGauge::new("held", "held").unwrap(),
            IntGauge::new("waiting", "waiting").unwrap(),
        )
    }

    #[tokio::test]
    async fn reservations_wait_for_released_bytes_and_never_exceed_the_limit() {
        // 94 bytes of main part, 6 of headroom.
        let b = budget(100);
        let a = b.reserve(60).await.expect("fits");
        let c = b.reserve(34).await.expect("fills the main part");
        assert_eq!((b.held(), b.held.get()), (94, 94));
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.reserve(50).await.expect("fits once released") }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while b.waiting.get() != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the third reservation never waited"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(b.held(), 94, "a waiter holds nothing");
        a.release();
        a.release();
        drop(a);
        let d = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is admitted once 60 bytes are back")
            .expect("waiter task");
        assert_eq!((b.held(), b.held.get(), b.waiting.get()), (84, 84, 0));
        drop((c, d));
        assert_eq!((b.held(), b.held.get()), (0, 0));
        assert!(b.reserve(101).await.is_none(), "larger than the whole budget");
        Reservation::none().release();
    }

    #[tokio::test]
    async fn small_frames_are_read_while_large_ones_fill_the_main_part() {
        // 150 bytes of main part, 10 of headroom; frames up to 10 bytes are small.
        let b = budget(160);
        let large = b.reserve(150).await.expect("fills the main part");
        let stuck = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.reserve(20).await.expect("fits once released") }
        });
        let small = [b.reserve(5).await.unwrap(), b.reserve(5).await.unwrap()];
        assert_eq!(b.held(), 160, "small frames use the headroom");
        let third = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.reserve(5).await.expect("fits once released") }
        });
        drop(small);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("a waiting small frame gets freed headroom")
            .expect("small waiter");
        assert!(!stuck.is_finished(), "a large frame never takes the headroom");
        drop((large, third));
        let stuck = tokio::time::timeout(Duration::from_secs(5), stuck)
            .await
            .expect("the large frame is admitted once the main part is free")
            .expect("large waiter");
        drop(stuck);
        let whole = b
            .reserve(160)
            .await
            .expect("the whole budget: main part and headroom");
        assert_eq!(b.held(), 160);
        drop(whole);
        assert_eq!((b.held(), b.held.get()), (0, 0));
    }

    #[tokio::test]
    async fn an_abandoned_wait_takes_nothing() {
        let b = budget(10);
        let full = b.reserve(10).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(1), b.reserve(5))
                .await
                .is_err(),
            "no room"
        );
        assert_eq!(b.waiting.get(), 0);
        drop(full);
        assert_eq!(b.held(), 0);
        let _again = b.reserve(10).await.unwrap();
    }
}
