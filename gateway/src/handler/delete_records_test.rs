use bytes::BytesMut;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::handler::test_support;
use crate::records::testing::batch;
use crate::storage::{Durability, TopicConfig};

fn request(topic: &str, partitions: &[(i32, i64)]) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_partitions(
            partitions
                .iter()
                .map(|(p, o)| {
                    DeleteRecordsPartition::default()
                        .with_partition_index(*p)
                        .with_offset(*o)
                })
                .collect(),
        )])
}

/// Creates `t` with two partitions holding 5 records each.
async fn setup(ctx: &Context) {
    ctx.storage
        .create_topic("t", 2, TopicConfig::default(), false)
        .await
        .unwrap();
    for p in 0..2 {
        let tp = TopicPartition::new("t", p);
        let values: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e"];
        ctx.storage
            .append(&tp, batch(&values, 1, -1, -1, -1).freeze(), Durability::Accepted)
            .await
            .unwrap();
    }
}

/// (error code, low watermark) per partition of the single topic of `resp`.
fn outcomes(resp: &DeleteRecordsResponse) -> Vec<(i16, i64)> {
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.low_watermark))
        .collect()
}

#[tokio::test]
async fn deletes_up_to_an_offset_or_the_high_watermark() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    setup(ctx).await;
    let resp = handle(ctx, 2, request("t", &[(0, 3), (1, -1)])).await;
    assert_eq!(outcomes(&resp), vec![(0, 3), (0, 5)]);
    let earliest = ctx
        .storage
        .list_offset(&TopicPartition::new("t", 0), OffsetSpec::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest.map(|o| o.offset), Some(3));
    for v in 0..=2 {
        resp.encode(&mut BytesMut::new(), v).unwrap();
    }
    // An offset below the log start changes nothing and reports the current low watermark.
    let resp = handle(ctx, 2, request("t", &[(0, 1)])).await;
    assert_eq!(outcomes(&resp), vec![(0, 3)]);
}

#[tokio::test]
async fn out_of_range_offsets_and_unknown_partitions_are_errors() {
    let t = test_support::context().await;
    let ctx = &t.ctx;
    setup(ctx).await;
    let out_of_range = ResponseError::OffsetOutOfRange.code();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let resp = handle(ctx, 2, request("t", &[(0, 6), (1, -2), (2, 0), (-1, 0)])).await;
    assert_eq!(
        outcomes(&resp),
        vec![
            (out_of_range, -1),
            (out_of_range, -1),
            (unknown, -1),
            (unknown, -1)
        ]
    );
    let resp = handle(ctx, 2, request("missing", &[(0, 0)])).await;
    assert_eq!(outcomes(&resp), vec![(unknown, -1)]);
    let earliest = ctx
        .storage
        .list_offset(&TopicPartition::new("t", 0), OffsetSpec::Earliest)
        .await
        .unwrap();
    assert_eq!(earliest.map(|o| o.offset), Some(0));
}
