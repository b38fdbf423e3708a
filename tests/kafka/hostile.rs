//! Hostile clients against the real binary: one request of each class that used to crash the
//! gateway or cost it out of proportion (docs/limits.md), sent while a normal client (kcat) on
//! other connections keeps producing and consuming. The process must survive, answer or close
//! each hostile connection, keep serving the normal client during and after the attack, and
//! stay under a stated peak memory (VmHWM).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreatePartitionsRequest, FetchRequest, MetadataRequest, ProduceRequest};
use tests::harness::phase::note;
use tests::harness::raw::{frame, record_batch, topic_name};
use tests::{phase, ClientCommand, Gateway, GatewayOptions, RawClient};

/// Peak resident memory the gateway may reach over the whole attack (measured: 153 MiB, debug
/// build). The request budget below (128 MiB) bounds the flood, which would otherwise hold
/// 12 x 64 MiB; fetches are bounded by what one partition holds (8 MB here).
const PEAK_RSS_BOUND: u64 = 256 << 20;
/// `--max-queued-request-bytes` for this test.
const REQUEST_BUDGET: u64 = 128 << 20;
/// How long the normal client may take for one produce-and-consume round.
const ROUND_DEADLINE: Duration = Duration::from_secs(30);
/// How long an attack phase may wait for the normal client to make progress.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);

/// kcat producing one record and reading it back, round after round, until stopped.
struct NormalClient {
    rounds: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<u64>>>,
}

impl NormalClient {
    fn start(bootstrap: String) -> Self {
        let (rounds, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let handle = std::thread::spawn({
            let (rounds, stop) = (rounds.clone(), stop.clone());
            move || -> Result<u64> {
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let value = format!("round-{round}");
                    ClientCommand::kcat(&bootstrap)
                        .args(["-P", "-t", "normal", "-p", "0"])
                        .stdin(format!("{value}\n"))
                        .timeout(ROUND_DEADLINE)
                        .run()
                        .with_context(|| format!("normal client produce, round {round}"))?;
                    let offset = round.to_string();
                    let got = ClientCommand::kcat(&bootstrap)
                        .args([
                            "-C", "-t", "normal", "-p", "0", "-o", &offset, "-c", "1", "-e", "-q",
                        ])
                        .timeout(ROUND_DEADLINE)
                        .run()
                        .with_context(|| format!("normal client consume, round {round}"))?;
                    ensure!(
                        got.trim() == value,
                        "round {round}: consumed {got:?}, want {value:?}"
                    );
                    round += 1;
                    rounds.store(round, Ordering::SeqCst);
                }
                Ok(round)
            }
        });
        Self {
            rounds,
            stop,
            handle: Some(handle),
        }
    }

    /// Waits until the client completed `more` further rounds.
    fn progresses(&mut self, more: u64, during: &str) -> Result<()> {
        let target = self.rounds.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + PROGRESS_DEADLINE;
        while self.rounds.load(Ordering::SeqCst) < target {
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                return Err(self
                    .finish()
                    .err()
                    .unwrap_or_else(|| anyhow!("normal client stopped")))
                .with_context(|| format!("normal client failed {during}"));
            }
            ensure!(
                Instant::now() < deadline,
                "normal client made no progress {during}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        note(format!(
            "normal client: {} rounds so far",
            self.rounds.load(Ordering::SeqCst)
        ));
        Ok(())
    }

    fn finish(&mut self) -> Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.handle.take().ok_or_else(|| anyhow!("already finished"))?;
        handle
            .join()
            .map_err(|_| anyhow!("normal client thread panicked"))?
    }
}

/// Peak resident set size of `pid` (VmHWM).
fn peak_rss(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{pid}/status"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("malformed {line:?}"))?
        .parse()?;
    Ok(kb * 1024)
}

/// A request header v1 (key, version, correlation id, client id) followed by `body`.
fn raw_request(api_key: i16, version: i16, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(version);
    buf.put_i32(1);
    buf.put_i16(7);
    buf.put_slice(b"hostile");
    buf.put_slice(body);
    frame(&buf)
}

/// Requests whose first array claims 2^31-1 elements in a frame of a few bytes.
fn huge_count_requests() -> Vec<(&'static str, Bytes)> {
    let count = i32::MAX.to_be_bytes();
    let mut produce = vec![0xFF, 0xFF, 0xFF, 0xFF]; // null transactional id (i16 -1), acks -1
    produce.extend_from_slice(&10_000i32.to_be_bytes());
    produce.extend_from_slice(&count);
    let mut list_offsets = (-1i32).to_be_bytes().to_vec();
    list_offsets.extend_from_slice(&count);
    vec![
        ("Metadata v0 topics", raw_request(3, 0, &count)),
        ("Produce v3 topics", raw_request(0, 3, &produce)),
        ("ListOffsets v1 topics", raw_request(2, 1, &list_offsets)),
        ("CreatePartitions v0 topics", raw_request(37, 0, &count)),
        ("DeleteTopics v3 topics", raw_request(20, 3, &count)),
    ]
}

fn fill_big_partition(addr: SocketAddr) -> Result<()> {
    let value: &'static [u8] = Box::leak(vec![b'x'; 1_000_000].into_boxed_slice());
    let mut client = RawClient::connect(addr)?;
    for _ in 0..8 {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("big"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(record_batch(&[value])?))])]);
        let response = client.send(&request, 9)?;
        let code = response.responses[0].partition_responses[0].error_code;
        ensure!(code == 0, "filling the big partition: error {code}");
    }
    Ok(())
}

/// Fetch naming the 8 MB partition 10,000 times with no response limit of its own.
fn fetch_amplification(addr: SocketAddr) -> Result<()> {
    let partition = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(0)
        .with_partition_max_bytes(64 << 20);
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(i32::MAX)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("big"))
            .with_partitions(vec![partition; 10_000])]);
    let workers: Vec<JoinHandle<Result<()>>> = (0..4)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || {
                let mut client = RawClient::connect(addr)?;
                for _ in 0..5 {
                    let response = client.send(&request, 11)?;
                    let answered: usize = response.responses.iter().map(|t| t.partitions.len()).sum();
                    ensure!(
                        answered == 1,
                        "a partition named 10,000 times answered {answered} times"
                    );
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| anyhow!("fetch worker panicked"))??;
    }
    Ok(())
}

fn metadata_amplification(client: &mut RawClient) -> Result<()> {
    let topic = MetadataRequestTopic::default().with_name(Some(topic_name("wide")));
    let request = MetadataRequest::default()
        .with_topics(Some(vec![topic; 20_000]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(&request, 12)?;
    ensure!(
        response.topics.len() == 1,
        "{} topics answered",
        response.topics.len()
    );
    ensure!(response.topics[0].partitions.len() == 1000, "partitions of wide");
    Ok(())
}

fn create_partitions_flood(client: &mut RawClient) -> Result<()> {
    let entry = |name: String| {
        CreatePartitionsTopic::default()
            .with_name(topic_name(&name))
            .with_count(2)
    };
    for (what, topics) in [
        (
            "distinct unknown topics",
            (0..100_000).map(|i| entry(format!("t{i}"))).collect::<Vec<_>>(),
        ),
        (
            "one topic repeated",
            (0..100_000).map(|_| entry("wide".into())).collect(),
        ),
    ] {
        let request = CreatePartitionsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(10_000);
        let response = client.send(&request, 3)?;
        ensure!(
            response.results.len() == 100_000,
            "{what}: {} results",
            response.results.len()
        );
        ensure!(
            response.results.iter().all(|r| r.error_code != 0),
            "{what}: an entry succeeded"
        );
        note(format!("{what}: 100,000 entries refused"));
    }
    Ok(())
}

/// Connections that each announce a 64 MiB frame and send all of it but its last MiB, as much as
/// the gateway reads within a few seconds; they stay open, their frames incomplete (holding
/// whatever the gateway reserved for them), until dropped.
fn flood_large_frames(addr: SocketAddr, connections: usize) -> Result<Vec<TcpStream>> {
    let workers: Vec<JoinHandle<Result<(TcpStream, usize)>>> = (0..connections)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr)?;
                stream.set_write_timeout(Some(Duration::from_secs(3)))?;
                let len: i32 = 64 << 20;
                let mut head = BytesMut::new();
                head.put_i32(len);
                head.put_i16(0); // Produce
                head.put_i16(9);
                stream.write_all(&head)?;
                let chunk = vec![0u8; 1 << 20];
                let mut sent = head.len();
                let hold_back = 1 << 20;
                while sent + hold_back < len as usize {
                    match stream.write(&chunk) {
                        Ok(n) => sent += n,
                        // Blocked: the gateway stopped reading this connection.
                        Err(_) => break,
                    }
                }
                Ok((stream, sent))
            })
        })
        .collect();
    let mut streams = Vec::new();
    let mut total = 0;
    for w in workers {
        let (stream, sent) = w.join().map_err(|_| anyhow!("flood worker panicked"))??;
        total += sent;
        streams.push(stream);
    }
    note(format!(
        "{connections} connections pushed {} MiB of frames",
        total >> 20
    ));
    Ok(streams)
}

#[test]
fn hostile_requests_leave_normal_clients_served_and_memory_bounded() -> Result<()> {
    let opts = GatewayOptions::default().arg("--max-queued-request-bytes", &REQUEST_BUDGET.to_string());
    let mut gw = Gateway::start("hostile", opts)?;
    let addr = gw.kafka_addr();
    let pid = gw.pid().ok_or_else(|| anyhow!("gateway has no pid"))?;

    phase("setup: topics normal (1), big (1, 8 MB of records), wide (1000 partitions)");
    let mut admin = RawClient::connect(addr)?;
    admin.create_topic("normal", 1)?;
    admin.create_topic("big", 1)?;
    admin.create_topic("wide", 1000)?;
    fill_big_partition(addr)?;
    note(format!("peak RSS after setup: {} MiB", peak_rss(pid)? >> 20));

    phase("a normal client (kcat) produces and consumes on its own connections");
    let mut normal = NormalClient::start(gw.bootstrap());
    normal.progresses(2, "before the attack")?;

    phase("huge wire counts: each hostile connection is closed");
    for (what, request) in huge_count_requests() {
        let mut bad = RawClient::connect(addr)?;
        bad.write_all(&request)?;
        bad.expect_closed(Duration::from_secs(10))
            .with_context(|| what.to_owned())?;
        note(format!("{what}: closed"));
    }
    normal.progresses(1, "after the huge counts")?;

    phase("Fetch naming one 8 MB partition 10,000 times, 4 connections x 5 requests");
    fetch_amplification(addr)?;
    normal.progresses(1, "after the fetch amplification")?;

    phase("Metadata naming a 1000-partition topic 20,000 times");
    let mut bad = RawClient::connect(addr)?;
    metadata_amplification(&mut bad)?;

    phase("CreatePartitions with 100,000 entries");
    create_partitions_flood(&mut bad)?;
    normal.progresses(1, "after CreatePartitions")?;

    phase("a flood of 64 MiB frames on 12 connections against the 128 MiB request budget");
    let flood = flood_large_frames(addr, 12)?;
    normal.progresses(2, "while the flood holds the request budget")?;
    drop(flood);

    phase("after the attack: the normal client and fresh connections are served");
    normal.progresses(2, "after the attack")?;
    let rounds = normal.finish()?;
    ensure!(gw.is_running(), "gateway exited\n{}", gw.log_tail());
    let versions = RawClient::connect(addr)?.api_versions()?;
    ensure!(versions.error_code == 0, "ApiVersions after the attack");
    let peak = peak_rss(pid)?;
    note(format!(
        "normal client: {rounds} rounds; gateway peak RSS (VmHWM) {} MiB, bound {} MiB",
        peak >> 20,
        PEAK_RSS_BOUND >> 20
    ));
    if peak > PEAK_RSS_BOUND {
        bail!(
            "peak RSS {} MiB over the bound of {} MiB",
            peak >> 20,
            PEAK_RSS_BOUND >> 20
        );
    }
    Ok(())
}
