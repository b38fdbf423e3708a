//! [`ProduceOrder`]: Produce requests of one connection append in request order.
//!
//! Kafka appends the requests of a connection one after the other; clients rely on it (a
//! producer with several requests in flight expects its batches in send order). The session
//! runs requests concurrently, and a Produce may first wait on a topic lookup, so each Produce
//! takes a [`Ticket`] before its first await and appends only when its predecessor released its
//! turn. The turn covers only handing the batches to storage
//! ([`Storage::start_append`](crate::storage::Storage::start_append)), not the wait for the
//! backend's answer or for durability, so pipelined requests overlap their round trips and
//! acks=all requests share one flush.
//!
//! Invariant: tickets form a chain of one-shot channels; a ticket's turn starts when the
//! previous ticket is released or dropped (a cancelled request never blocks the connection).

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// The per-connection chain of Produce turns.
#[derive(Debug, Default)]
pub struct ProduceOrder {
    last: Mutex<Option<oneshot::Receiver<()>>>,
}

/// One request's place in the chain; dropping it passes the turn on.
#[derive(Debug)]
pub struct Ticket {
    previous: Option<oneshot::Receiver<()>>,
    _release: oneshot::Sender<()>,
}

impl ProduceOrder {
    /// Takes the next place in the chain. Call it in request order (before any await).
    pub fn ticket(&self) -> Ticket {
        let (release, done) = oneshot::channel();
        let previous = self.last.lock().replace(done);
        Ticket {
            previous,
            _release: release,
        }
    }
}

impl Ticket {
    /// Waits until every earlier ticket was released or dropped.
    pub async fn turn(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Err means the previous ticket was dropped: its turn is over either way.
            let _ = previous.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn turns_follow_ticket_order_even_when_awaited_out_of_order() {
        let order = ProduceOrder::default();
        let (mut a, b, c) = (order.ticket(), order.ticket(), order.ticket());
        let log = Arc::new(Mutex::new(Vec::new()));
        let spawn = |mut t: Ticket, name: &'static str| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                t.turn().await;
                log.lock().push(name);
                drop(t);
            })
        };
        // c and b wait before a has even asked for its turn.
        let hc = spawn(c, "c");
        let hb = spawn(b, "b");
        tokio::task::yield_now().await;
        assert!(
            log.lock().is_empty(),
            "nobody runs before the first ticket's turn ends"
        );
        a.turn().await;
        log.lock().push("a");
        drop(a);
        hb.await.unwrap();
        hc.await.unwrap();
        assert_eq!(*log.lock(), vec!["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_dropped_ticket_passes_its_turn_on() {
        let order = ProduceOrder::default();
        let first = order.ticket();
        let mut second = order.ticket();
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), second.turn())
            .await
            .expect("turn after a dropped ticket");
    }
}
