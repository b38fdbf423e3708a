//! Pipelined requests on one connection: answers leave as soon as they and every earlier answer
//! are ready, and a connection may keep many slow requests in flight.
//!
//! Both matter for acks=all on SeaweedMQ, where a Produce waits seconds for the broker's flush
//! while librdkafka keeps sending: an answer held in the socket buffer behind a slower request,
//! or a narrow in-flight window, made latency grow without bound.

use anyhow::{ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::records::RecordBatchDecoder;
use tests::harness::raw::{record_batch, topic_name, RawClient};
use tests::{phase, Gateway, GatewayOptions};

const FETCH_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;
/// Far longer than the raw client's 10 s read timeout: an answer that waited for a long poll
/// to expire would fail the read.
const LONG_POLL_MS: i32 = 60_000;

fn long_fetch(topic: &str) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(LONG_POLL_MS)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

#[test]
fn a_ready_answer_is_sent_while_a_later_request_still_waits() -> Result<()> {
    let gw = Gateway::start("pipe-flush", GatewayOptions::default())?;
    let mut client = RawClient::connect(gw.kafka_addr())?;
    client.create_topic("pipe-flush", 1)?;

    phase("pipeline a Fetch waiting 1 s, then one waiting 60 s, on an empty partition");
    let (short_id, short) =
        client.encode_request(&long_fetch("pipe-flush").with_max_wait_ms(1000), FETCH_VERSION)?;
    let (_, long) = client.encode_request(&long_fetch("pipe-flush"), FETCH_VERSION)?;
    let mut both = BytesMut::from(&short[..]);
    both.extend_from_slice(&long);
    client.write_all(&both)?;

    phase("the first (empty) answer arrives while the second Fetch still waits");
    let answer = client
        .recv::<FetchRequest>(short_id, FETCH_VERSION)
        .context("first answer held back behind the long-polling Fetch")?;
    let partition = answer
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .context("empty fetch response")?;
    ensure!(partition.error_code == 0, "fetch error {}", partition.error_code);
    ensure!(
        partition.records.as_ref().is_none_or(|r| r.is_empty()),
        "records in an empty partition"
    );
    Ok(())
}

#[test]
fn many_long_polls_in_flight_do_not_block_a_later_produce() -> Result<()> {
    const FETCHES: usize = 40;
    let gw = Gateway::start("pipe-window", GatewayOptions::default())?;
    let mut client = RawClient::connect(gw.kafka_addr())?;
    client.create_topic("pipe-window", 1)?;

    phase(format!(
        "pipeline {FETCHES} long-polling Fetches, then a Produce, on one connection"
    ));
    let mut frames = BytesMut::new();
    let mut fetch_ids = Vec::new();
    for _ in 0..FETCHES {
        let (id, f) = client.encode_request(&long_fetch("pipe-window"), FETCH_VERSION)?;
        fetch_ids.push(id);
        frames.extend_from_slice(&f);
    }
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("pipe-window"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch(&[b"wake up"])?))])]);
    let (produce_id, p) = client.encode_request(&produce, PRODUCE_VERSION)?;
    frames.extend_from_slice(&p);
    client.write_all(&frames)?;

    phase("the Produce runs at once, so every Fetch answers with its record");
    for (n, id) in fetch_ids.into_iter().enumerate() {
        let response = client
            .recv::<FetchRequest>(id, FETCH_VERSION)
            .with_context(|| format!("fetch #{n}: the Produce behind it never started"))?;
        let partition = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .context("empty fetch response")?;
        ensure!(
            partition.error_code == 0,
            "fetch #{n}: error {}",
            partition.error_code
        );
        let mut records = partition.records.clone().context("fetch without records")?;
        let batches = RecordBatchDecoder::decode_all(&mut records).context("decode fetched batch")?;
        let values: Vec<Option<Bytes>> = batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.value.clone()))
            .collect();
        ensure!(
            values == vec![Some(Bytes::from_static(b"wake up"))],
            "fetch #{n} returned {values:?}"
        );
    }
    let produced = client.recv::<ProduceRequest>(produce_id, PRODUCE_VERSION)?;
    let code = produced.responses[0].partition_responses[0].error_code;
    ensure!(code == 0, "produce error {code}");
    Ok(())
}
