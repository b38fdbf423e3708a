//! Generated gRPC clients and messages of our SeaweedMQ .proto subset (`proto/seaweedmq/`).
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    rust_2018_idioms,
    missing_debug_implementations
)]

/// `schema_pb`: topics, partitions, offsets.
pub mod schema_pb {
    tonic::include_proto!("schema_pb");
}
/// `messaging_pb`: the broker service `SeaweedMessaging`.
pub mod messaging_pb {
    tonic::include_proto!("messaging_pb");
}
/// `master_pb`: the master service `Seaweed` (cluster node listing).
pub mod master_pb {
    tonic::include_proto!("master_pb");
}
/// `filer_pb`: the filer service `SeaweedFiler` (entries and key-value store).
pub mod filer_pb {
    tonic::include_proto!("filer_pb");
}
