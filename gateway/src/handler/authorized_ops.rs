//! Authorized-operations bitfields (KIP-430) for Metadata, DescribeCluster and DescribeGroups.
//!
//! The gateway has no authorizer, so every client may perform every operation a resource type
//! supports, as on Kafka without an authorizer. When a client does not ask, the field carries
//! Kafka's "omitted" sentinel.

/// "Not requested" (Kafka's INT32_MIN sentinel).
pub(super) const OMITTED: i32 = i32::MIN;

/// `AclOperation` codes valid on the cluster resource.
const CLUSTER: &[u8] = &[
    5,  // CREATE
    7,  // ALTER
    8,  // DESCRIBE
    9,  // CLUSTER_ACTION
    10, // DESCRIBE_CONFIGS
    11, // ALTER_CONFIGS
    12, // IDEMPOTENT_WRITE
];

/// `AclOperation` codes valid on a topic.
const TOPIC: &[u8] = &[
    3,  // READ
    4,  // WRITE
    5,  // CREATE
    6,  // DELETE
    7,  // ALTER
    8,  // DESCRIBE
    10, // DESCRIBE_CONFIGS
    11, // ALTER_CONFIGS
];

/// `AclOperation` codes valid on a consumer group.
const GROUP: &[u8] = &[
    3, // READ
    6, // DELETE
    8, // DESCRIBE
];

fn bits(ops: &[u8], requested: bool) -> i32 {
    if requested {
        ops.iter().fold(0i32, |acc, op| acc | (1 << op))
    } else {
        OMITTED
    }
}

/// The cluster's bitfield, or [`OMITTED`].
pub(super) fn cluster(requested: bool) -> i32 {
    bits(CLUSTER, requested)
}

/// A topic's bitfield, or [`OMITTED`].
pub(super) fn topic(requested: bool) -> i32 {
    bits(TOPIC, requested)
}

/// A group's bitfield, or [`OMITTED`].
pub(super) fn group(requested: bool) -> i32 {
    bits(GROUP, requested)
}
