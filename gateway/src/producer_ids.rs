//! Producer id allocation for InitProducerId.
//!
//! Ids come from blocks reserved through the cluster's replicated log
//! ([`Coordinator::allocate_producer_ids`]): the state machine hands every block out once, so no
//! two nodes (and no node across restarts) ever return the same id. The unused rest of a node's
//! block is skipped after a restart.

use tokio::sync::Mutex;

use crate::cluster::{ClusterError, Coordinator};

/// Ids reserved per log write.
const BLOCK: u64 = 1000;

/// Allocates cluster-wide unique producer ids.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    cluster: Coordinator,
    /// (next id to hand out, end of the reserved block, exclusive).
    block: Mutex<(i64, i64)>,
}

impl ProducerIdAllocator {
    /// An allocator reserving blocks through `cluster`.
    pub fn new(cluster: Coordinator) -> Self {
        Self {
            cluster,
            block: Mutex::new((0, 0)),
        }
    }

    /// Returns a fresh producer id.
    ///
    /// # Errors
    /// The cluster could not commit a new block reservation (no leader reachable in time).
    pub async fn next_id(&self) -> Result<i64, ClusterError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let start = self.cluster.allocate_producer_ids(BLOCK).await?;
            *block = (start, start + BLOCK as i64);
            tracing::debug!(start, count = BLOCK, "reserved producer id block");
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
