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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::Semaphore;

/// The shared bound on request bytes held by queued and in-flight requests.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    permits: Semaphore,
    held: IntGauge,
    waiting: IntGauge,
}

impl MemoryBudget {
    /// A budget of `limit` bytes; `held` and `waiting` are the gauges it keeps current (bytes
    /// reserved, readers waiting for bytes).
    pub fn new(limit: usize, held: IntGauge, waiting: IntGauge) -> Arc<Self> {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            limit,
            permits: Semaphore::new(limit),
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
        self.limit - self.permits.available_permits()
    }

    /// Reserves `bytes`, waiting while the budget cannot hold them. `None` when `bytes` exceeds
    /// the whole budget (it could never be reserved). Cancel-safe: a reservation abandoned while
    /// waiting takes nothing.
    pub async fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        if bytes > self.limit {
            return None;
        }
        let n = u32::try_from(bytes).ok()?;
        match self.permits.try_acquire_many(n) {
            Ok(p) => p.forget(),
            Err(_) => {
                self.waiting.inc();
                let _waiting = Dec(&self.waiting);
                // The semaphore is never closed.
                self.permits.acquire_many(n).await.ok()?.forget();
            }
        }
        self.held.add(bytes as i64);
        Some(Reservation {
            budget: Some(Arc::clone(self)),
            bytes: AtomicUsize::new(bytes),
        })
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
    bytes: AtomicUsize,
}

impl Reservation {
    /// A reservation of nothing (requests outside the budget: tests, internal callers).
    pub fn none() -> Self {
        Self {
            budget: None,
            bytes: AtomicUsize::new(0),
        }
    }

    /// Returns the bytes to the budget. Idempotent.
    pub fn release(&self) {
        let bytes = self.bytes.swap(0, Ordering::AcqRel);
        if let (Some(budget), true) = (&self.budget, bytes > 0) {
            budget.held.sub(bytes as i64);
            budget.permits.add_permits(bytes);
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
        let b = budget(100);
        let a = b.reserve(60).await.expect("fits");
        let c = b.reserve(40).await.expect("fits exactly");
        assert_eq!((b.held(), b.held.get()), (100, 100));
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
        assert_eq!(b.held(), 100, "a waiter holds nothing");
        a.release();
        a.release();
        drop(a);
        let d = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is admitted once 60 bytes are back")
            .expect("waiter task");
        assert_eq!((b.held(), b.held.get(), b.waiting.get()), (90, 90, 0));
        drop((c, d));
        assert_eq!((b.held(), b.held.get()), (0, 0));
        assert!(b.reserve(101).await.is_none(), "larger than the whole budget");
        Reservation::none().release();
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
