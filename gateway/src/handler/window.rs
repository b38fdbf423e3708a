//! A connection's window of in-flight request bytes.
//!
//! The session admits another request only while the requests in flight hold fewer bytes than a
//! bound, so a pipelining client cannot make the gateway hold unbounded request data. A request
//! holds its frame's bytes until its handler no longer needs them: Produce lets go once its
//! batches are handed to storage (what remains is a wait for the backend's acknowledgement or
//! durability, which holds no request data), every other request when it completes. Without the
//! early release an acks=all connection on a backend whose durability takes seconds (SeaweedMQ's
//! flush interval) would be capped at window / durability latency bytes per second.
//!
//! The same release returns the request's bytes to the gateway-wide
//! [`MemoryBudget`](crate::server::budget::MemoryBudget), whose [`Reservation`] a request
//! carries along with its place in the window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::server::budget::Reservation;

/// The bytes held by one connection's in-flight requests.
#[derive(Debug, Default)]
pub struct Window {
    held: AtomicUsize,
    released: Notify,
}

impl Window {
    /// An empty window.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Bytes currently held.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Counts `bytes` of a request just admitted, reserved in the global budget as `budget`;
    /// both are released through the returned guard.
    pub fn hold(self: &Arc<Self>, bytes: usize, budget: Reservation) -> Held {
        self.held.fetch_add(bytes, Ordering::AcqRel);
        Held {
            window: Some(Arc::clone(self)),
            bytes: AtomicUsize::new(bytes),
            budget,
        }
    }

    /// Completes after some bytes were released (possibly before this call: a release while
    /// nobody waits leaves one wake-up behind, so a release is never missed).
    pub async fn released(&self) {
        self.released.notified().await;
    }
}

/// One request's bytes in its connection's [`Window`]; released at the latest when dropped.
#[derive(Debug)]
pub struct Held {
    window: Option<Arc<Window>>,
    bytes: AtomicUsize,
    budget: Reservation,
}

impl Held {
    /// A request outside any window (handler tests, internal callers).
    pub fn untracked() -> Self {
        Self {
            window: None,
            bytes: AtomicUsize::new(0),
            budget: Reservation::none(),
        }
    }

    /// Returns the request's bytes to the window and the global budget. Idempotent.
    pub fn release(&self) {
        self.budget.release();
        let bytes = self.bytes.swap(0, Ordering::AcqRel);
        if let (Some(window), true) = (&self.window, bytes > 0) {
            window.held.fetch_sub(bytes, Ordering::AcqRel);
            window.released.notify_one();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn bytes_are_released_once_early_or_on_drop_and_wake_a_waiter() {
        let window = Window::new();
        let a = window.hold(100, Reservation::none());
        let b = window.hold(50, Reservation::none());
        assert_eq!(window.held(), 150);
        a.release();
        a.release();
        assert_eq!(window.held(), 50, "a second release is a no-op");
        drop(a);
        assert_eq!(
            window.held(),
            50,
            "dropping after an early release returns nothing more"
        );
        // The releases above left a wake-up behind; consume it, then wait for a new one.
        tokio::time::timeout(Duration::from_secs(5), window.released())
            .await
            .expect("a past release is not missed");
        let waiter = tokio::spawn({
            let window = Arc::clone(&window);
            async move { window.released().await }
        });
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes on a drop")
            .expect("waiter task");
        assert_eq!(window.held(), 0);
        Held::untracked().release();
    }
}
