use bytes::BytesMut;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::handler::test_support;
use crate::records::testing::batch;
use crate::storage::{Durability, TopicConfig};

/// (partition, current leader epoch, requested epoch).
fn request(topic: &str, partitions: &[(i32, i32, i32)]) -> OffsetForLeaderEpochRequest {
    OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_partitions(
            partitions
                .iter()
                .map(|(p, current, epoch)| {
                    OffsetForLeaderPartition::default()
                        .with_partition(*p)
                        .with_current_leader_epoch(*current)
                        .with_leader_epoch(*epoch)
                })
                .collect(),
        )])
}

/// (error code, leader epoch, end offset) per partition.
fn outcomes(resp: &OffsetForLeaderEpochResponse) -> Vec<(i16, i32, i64)> {
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
        .collect()
}

#[tokio::test]
async fn epoch_zero_ends_at_the_high_watermark() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    let tp = TopicPartition::new("t", 0);
    ctx.storage
        .append(
            &tp,
            batch(&[b"a", b"b", b"c"], 1, -1, -1, -1).freeze(),
            Durability::Accepted,
        )
        .await
        .unwrap();
    let resp = handle(
        ctx,
        4,
        request("t", &[(0, 0, 0), (1, -1, 0), (0, -1, -1), (0, 0, 1)]),
    )
    .await;
    assert_eq!(
        outcomes(&resp),
        vec![(0, 0, 3), (0, 0, 0), (0, 0, 3), (0, -1, -1)]
    );
    for v in 2..=4 {
        resp.encode(&mut BytesMut::new(), v).unwrap();
    }
}

#[tokio::test]
async fn unknown_partitions_and_future_leader_epochs_are_errors() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    ctx.storage
        .create_topic("t", 1, TopicConfig::default(), false)
        .await
        .unwrap();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let resp = handle(ctx, 4, request("t", &[(1, -1, 0), (-1, -1, 0), (0, 5, 0)])).await;
    assert_eq!(
        outcomes(&resp),
        vec![
            (unknown, -1, -1),
            (unknown, -1, -1),
            (ResponseError::UnknownLeaderEpoch.code(), -1, -1)
        ]
    );
    let resp = handle(ctx, 4, request("missing", &[(0, -1, 0)])).await;
    assert_eq!(outcomes(&resp), vec![(unknown, -1, -1)]);
}
