//! One-line documentation of the configs DescribeConfigs reports (`include_documentation`, v3+).

/// (config name, documentation). Names missing here are reported without documentation.
const DOCS: &[(&str, &str)] = &[
    (
        "retention.ms",
        "Maximum time a log segment is retained before it is deleted; -1 means no time limit.",
    ),
    (
        "retention.bytes",
        "Maximum size a partition can grow to before old segments are deleted; -1 means no limit.",
    ),
    (
        "segment.bytes",
        "Size at which the active log segment of a partition is rolled.",
    ),
    (
        "segment.ms",
        "Time after which the active log segment is rolled even if it is not full.",
    ),
    (
        "cleanup.policy",
        "Retention policy for old segments; only \"delete\" is supported by this gateway.",
    ),
    (
        "max.message.bytes",
        "Largest record batch size accepted for the topic.",
    ),
    (
        "message.timestamp.type",
        "Whether record timestamps are CreateTime (set by the producer) or LogAppendTime.",
    ),
    (
        "message.timestamp.before.max.ms",
        "CreateTime topics: largest allowed age of a record timestamp when it is produced.",
    ),
    (
        "message.timestamp.after.max.ms",
        "CreateTime topics: how far ahead of the broker clock a record timestamp may be.",
    ),
    (
        "compression.type",
        "Batches are stored as the producer compressed them.",
    ),
    (
        "min.insync.replicas",
        "Single-broker gateway: every write is acknowledged by one replica.",
    ),
    (
        "unclean.leader.election.enable",
        "Single-broker gateway: there is no other replica to elect.",
    ),
    (
        "message.downconversion.enable",
        "Record batches are served in the v2 format only.",
    ),
    ("min.compaction.lag.ms", "Compaction is not supported."),
    (
        "delete.retention.ms",
        "Compaction is not supported; tombstones follow normal retention.",
    ),
    (
        "file.delete.delay.ms",
        "Delay before a deleted segment file is removed from disk.",
    ),
    (
        "flush.messages",
        "Flushing follows the gateway's fsync policy, not a message count.",
    ),
    (
        "flush.ms",
        "Flushing follows the gateway's fsync policy, not a time interval.",
    ),
    (
        "index.interval.bytes",
        "Bytes between entries of the sparse offset index.",
    ),
    ("preallocate", "Segment files are not preallocated."),
    ("node.id", "Id of this broker."),
    ("broker.id", "Id of this broker."),
    ("advertised.listeners", "Address clients are told to connect to."),
    ("broker.rack", "Rack of this broker."),
    (
        "num.partitions",
        "Partitions of auto-created topics and of topics created with num_partitions -1.",
    ),
    (
        "auto.create.topics.enable",
        "Whether Metadata requests create unknown topics when the client allows it.",
    ),
    (
        "default.replication.factor",
        "Single-broker gateway: topics have one replica.",
    ),
    (
        "offsets.topic.replication.factor",
        "Single-broker gateway: committed offsets have one replica.",
    ),
    ("delete.topic.enable", "Topics can be deleted."),
    (
        "fetch.max.bytes",
        "Upper bound of one fetch response, whatever the client asks for.",
    ),
    ("log.retention.ms", "Default retention.ms of topics."),
    ("log.retention.bytes", "Default retention.bytes of topics."),
    ("log.segment.bytes", "Default segment.bytes of topics."),
    ("log.roll.ms", "Default segment.ms of topics."),
    ("log.cleanup.policy", "Default cleanup.policy of topics."),
    ("message.max.bytes", "Default max.message.bytes of topics."),
    (
        "log.message.timestamp.type",
        "Default message.timestamp.type of topics.",
    ),
    (
        "log.message.timestamp.before.max.ms",
        "Default message.timestamp.before.max.ms of topics.",
    ),
    (
        "log.message.timestamp.after.max.ms",
        "Default message.timestamp.after.max.ms of topics.",
    ),
];

/// The documentation of a config, if known.
pub(super) fn doc(name: &str) -> Option<&'static str> {
    DOCS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}
