//! Manual replica assignments of CreateTopics and CreatePartitions, checked as Kafka's
//! controller checks them (`ReplicationControlManager.validateManualPartitionAssignment`).
//!
//! The gateway keeps one copy of each partition (replication is the storage's business), and
//! places each partition's leader itself: a deterministic hash over the live gateways
//! ([`partition_leader`]), which every gateway computes alike without storing a placement. So an
//! assignment is accepted when it names one live broker per partition and that broker is the
//! partition's leader; any other placement is refused with INVALID_REPLICA_ASSIGNMENT, naming
//! the broker that leads the partition (alone, a gateway leads every partition).

use std::collections::HashSet;

use kafka_protocol::ResponseError;

use super::Context;
use crate::cluster::view::partition_leader;

/// A refusal: the Kafka error and its message.
pub(super) type Failure = (ResponseError, String);

/// Checks `assignments` (`(partition index, broker ids)`) of `topic`, whose first new
/// partition is `first` and which gains `count` partitions.
///
/// # Errors
/// INVALID_REPLICA_ASSIGNMENT for a missing, repeated or misplaced partition, an empty replica
/// list or an unregistered broker; INVALID_REPLICATION_FACTOR for more than one replica.
pub(super) fn check(
    ctx: &Context,
    topic: &str,
    first: i32,
    count: i32,
    assignments: impl IntoIterator<Item = (i32, Vec<i32>)>,
) -> Result<(), Failure> {
    let live: Vec<i32> = ctx.brokers().iter().map(|b| b.node_id).collect();
    let refuse = |message: String| Err((ResponseError::InvalidReplicaAssignment, message));
    let mut seen = HashSet::new();
    for (partition, brokers) in assignments {
        if partition < first || partition >= first.saturating_add(count) || !seen.insert(partition) {
            return refuse(format!(
                "partitions should be a consecutive 0-based integer sequence; partition {partition} \
                 is out of place or listed twice"
            ));
        }
        let mut distinct = HashSet::new();
        for b in &brokers {
            if !distinct.insert(*b) {
                return refuse(format!(
                    "The manual partition assignment includes the broker {b} more than once."
                ));
            }
            if !live.contains(b) {
                return refuse(format!(
                    "The manual partition assignment includes broker {b}, but no such broker is registered."
                ));
            }
        }
        match brokers.as_slice() {
            [] => return refuse("The manual partition assignment includes an empty replica list.".into()),
            [broker] => {
                let leader = partition_leader(topic, partition, &live).unwrap_or(ctx.broker.node_id);
                if *broker != leader {
                    return refuse(format!(
                        "partition {partition} of {topic} is led by broker {leader}: the gateway places \
                         partition leaders itself (a hash over the live gateways), so an assignment must \
                         name that broker, or be left out"
                    ));
                }
            }
            more => {
                return Err((
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "the gateway keeps one copy of each partition (replication is the storage's); \
                         partition {partition} lists {} replicas",
                        more.len()
                    ),
                ))
            }
        }
    }
    if i32::try_from(seen.len()).ok() != Some(count) {
        return refuse(format!(
            "{count} partition(s) to assign but {} assignment(s) given",
            seen.len()
        ));
    }
    Ok(())
}
