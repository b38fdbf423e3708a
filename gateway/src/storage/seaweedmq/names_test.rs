//! Topic names are validated on every SeaweedMQ path, before any call.

use std::sync::Arc;

use bytes::Bytes;

use super::*;

/// Names that could build another filer path ("..", "/") or SMQ topic are refused on every path
/// before anything is contacted (the client points at a closed port: a call that reached the
/// network would fail differently, after retries).
#[tokio::test]
async fn invalid_topic_names_are_refused_on_every_path_before_any_call() {
    use crate::storage::{Durability, OffsetSpec, Storage, StorageError, TopicConfig, TopicPartition};
    let client = Arc::new(SmqClient::new(Seeds {
        masters: vec!["127.0.0.1:1".into()],
        brokers: Vec::new(),
        filer: None,
    }));
    let storage = SeaweedStorage::with_client(client);
    let invalid = |r: crate::storage::Result<()>, what: &str, name: &str| match r {
        Err(StorageError::InvalidTopic(_)) => {}
        other => panic!("{what} of {name:?}: {other:?}"),
    };
    for name in ["..", "a/b", "../../etc", "x\\0y", ""] {
        let tp = TopicPartition::new(name, 0);
        invalid(
            storage
                .create_topic(name, 1, TopicConfig::default(), false)
                .await
                .map(drop),
            "create",
            name,
        );
        invalid(storage.delete_topic(name).await.map(drop), "delete", name);
        invalid(storage.describe_topic(name).await.map(drop), "describe", name);
        invalid(storage.lookup_topic(name).await.map(drop), "lookup", name);
        invalid(
            storage
                .alter_topic_config(name, TopicConfig::default(), false)
                .await,
            "alter",
            name,
        );
        invalid(
            storage.create_partitions(name, 2, false).await.map(drop),
            "create partitions",
            name,
        );
        invalid(
            storage
                .append(&tp, Bytes::from_static(b"x"), Durability::Durable)
                .await
                .map(drop),
            "append",
            name,
        );
        invalid(storage.read(&tp, 0, 1024).await.map(drop), "read", name);
        invalid(
            storage.list_offset(&tp, OffsetSpec::Latest).await.map(drop),
            "list offsets",
            name,
        );
        invalid(
            storage.delete_records(&tp, 0).await.map(drop),
            "delete records",
            name,
        );
        invalid(storage.watch_high_watermark(&tp).map(drop), "watch", name);
    }
}
