//! The produce phase: a librdkafka producer tuned for throughput, per-message delivery latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use crate::error::{BenchError, Result};

/// How much to produce.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    /// Exactly this many messages.
    Messages(u64),
    /// As many as fit in this wall-clock time.
    Duration(Duration),
}

/// Settings of one produce phase.
#[derive(Debug, Clone)]
pub struct ProduceSpec {
    /// Bootstrap address.
    pub bootstrap: String,
    /// Target topic.
    pub topic: String,
    /// Payload bytes per message (no key).
    pub message_size: usize,
    /// How much to send.
    pub amount: Amount,
    /// `acks` producer setting (`all`, `1`, `0`).
    pub acks: String,
    /// Payload bytes per second to pace at; `None` sends as fast as librdkafka accepts.
    pub rate_limit_bytes_per_sec: Option<f64>,
    /// `linger.ms`.
    pub linger_ms: u32,
    /// Extra librdkafka properties (`key=value`) applied last.
    pub extra: Vec<(String, String)>,
}

/// Outcome of a produce phase.
#[derive(Debug, Clone)]
pub struct ProduceStats {
    /// Messages acknowledged.
    pub messages: u64,
    /// Payload bytes acknowledged.
    pub bytes: u64,
    /// From the first send to the last delivery report.
    pub elapsed: Duration,
    /// Enqueue-to-delivery-report latency, microseconds, sorted ascending.
    pub latencies_us: Vec<u32>,
}

impl ProduceStats {
    /// Latency at quantile `q` (0..=1) in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((self.latencies_us.len() as f64 * q).ceil() as usize).clamp(1, self.latencies_us.len());
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }
}

/// Records every delivery report; runs on the producer's polling thread.
struct LatencyContext {
    start: Instant,
    latencies_us: Mutex<Vec<u32>>,
    delivered_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    /// Nanoseconds since `start` at the moment the message was enqueued.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued_at_ns: usize) {
        match result {
            Ok(message) => {
                let now_ns = self.start.elapsed().as_nanos() as u64;
                let micros = now_ns.saturating_sub(enqueued_at_ns as u64) / 1000;
                let len = message.payload_len() as u64;
                self.delivered_bytes.fetch_add(len, Ordering::Relaxed);
                let mut latencies = self.latencies_us.lock().unwrap_or_else(|p| p.into_inner());
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// librdkafka properties for a throughput-oriented producer.
fn producer_config(spec: &ProduceSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.bootstrap)
        .set("acks", &spec.acks)
        .set("linger.ms", spec.linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("batch.num.messages", "1000000")
        .set("compression.type", "none")
        // librdkafka's default (1 GiB). A producer's throughput is what it keeps in flight per
        // ack latency, and an acks=all ack on SeaweedMQ waits for the broker's flush (seconds).
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "10000000")
        .set("socket.send.buffer.bytes", "4194304")
        .set("socket.receive.buffer.bytes", "4194304")
        .set("message.timeout.ms", "120000")
        .set("enable.idempotence", "false");
    for (key, value) in &spec.extra {
        config.set(key, value);
    }
    config
}

/// Produces per `spec` and waits for every delivery report.
pub fn run(spec: &ProduceSpec) -> Result<ProduceStats> {
    let expected = match spec.amount {
        Amount::Messages(n) => n as usize,
        Amount::Duration(d) => d.as_secs() as usize * 100_000,
    };
    let context = LatencyContext {
        start: Instant::now(),
        latencies_us: Mutex::new(Vec::with_capacity(expected.min(50_000_000))),
        delivered_bytes: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: ThreadedProducer<LatencyContext> = producer_config(spec)
        .create_with_context(context)
        .map_err(BenchError::Client)?;
    let payload = payload(spec.message_size);
    let start = producer.context().start;
    let send_start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let elapsed = send_start.elapsed();
        match spec.amount {
            Amount::Messages(n) if sent >= n => break,
            Amount::Duration(d) if elapsed >= d => break,
            _ => {}
        }
        if let Some(rate) = spec.rate_limit_bytes_per_sec {
            let due = Duration::from_secs_f64(sent as f64 * spec.message_size as f64 / rate);
            // Sleep only when at least 1 ms ahead: finer sleeps overshoot and cost more CPU than
            // the short bursts they would avoid.
            if due > elapsed + Duration::from_millis(1) {
                std::thread::sleep(due - elapsed);
            }
        }
        send_one(&producer, &spec.topic, &payload, start)?;
        sent += 1;
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| BenchError::Produce(format!("flush: {e}")))?;
    let elapsed = send_start.elapsed();
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first_error = context
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        return Err(BenchError::Delivery {
            sent,
            failed,
            first_error: first_error.unwrap_or_default(),
        });
    }
    let mut latencies_us =
        std::mem::take(&mut *context.latencies_us.lock().unwrap_or_else(|p| p.into_inner()));
    latencies_us.sort_unstable();
    Ok(ProduceStats {
        messages: latencies_us.len() as u64,
        bytes: context.delivered_bytes.load(Ordering::Relaxed),
        elapsed,
        latencies_us,
    })
}

/// Enqueues one message, waiting while librdkafka's local queue is full.
fn send_one(
    producer: &ThreadedProducer<LatencyContext>,
    topic: &str,
    payload: &[u8],
    start: Instant,
) -> Result<()> {
    loop {
        let enqueued_at_ns = start.elapsed().as_nanos() as usize;
        let record: BaseRecord<'_, (), [u8], usize> =
            BaseRecord::with_opaque_to(topic, enqueued_at_ns).payload(payload);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((error, _)) => {
                return Err(BenchError::Delivery {
                    sent: 0,
                    failed: 1,
                    first_error: error.to_string(),
                })
            }
        }
    }
}

/// A deterministic, incompressible-looking payload (xorshift bytes).
pub(crate) fn payload(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
