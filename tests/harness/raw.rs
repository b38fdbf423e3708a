//! A blocking Kafka client over one TCP connection, built on `kafka-protocol` message types.
//!
//! It exists for what real clients cannot do: send malformed frames, observe whether the gateway
//! closes a connection, and set up topics without depending on a client library. Every read and
//! write is bounded by the socket timeouts set at connect.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, MetadataRequest, MetadataResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE,
};

/// Per-operation socket timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to a connection the test expects the gateway to close.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The gateway closed the connection (EOF or reset) after sending this many frames.
    Closed {
        /// Response frames received before the close.
        frames: usize,
    },
}

/// One TCP connection speaking the Kafka protocol.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawClient {
    /// Connects with bounded read/write timeouts.
    ///
    /// # Errors
    /// Connection failure.
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let stream =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).with_context(|| format!("connect {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            next_correlation_id: 1,
        })
    }

    /// The client-side address of the connection (the gateway logs it as the peer).
    ///
    /// # Errors
    /// Socket failure.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.stream.local_addr().context("local address")
    }

    /// Encodes a request frame (size prefix, header, body) at `version`.
    ///
    /// # Errors
    /// Encoding failure.
    pub fn encode_request<R: Request>(&mut self, request: &R, version: i16) -> Result<(i32, Bytes)> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("kgw-raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .context("encode request header")?;
        request
            .encode(&mut body, version)
            .context("encode request body")?;
        Ok((correlation_id, frame(&body)))
    }

    /// Sends a request and decodes its response.
    ///
    /// # Errors
    /// I/O failure, connection closed, correlation mismatch or an undecodable response.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let (correlation_id, frame) = self.encode_request(request, version)?;
        self.write_all(&frame)?;
        self.recv::<R>(correlation_id, version)
    }

    /// Reads the next response frame and decodes it as the answer to `correlation_id` (for
    /// requests pipelined with [`RawClient::encode_request`] and [`RawClient::write_all`]).
    ///
    /// # Errors
    /// As [`RawClient::send`].
    pub fn recv<R: Request>(&mut self, correlation_id: i32, version: i16) -> Result<R::Response> {
        let mut payload = self
            .read_frame()?
            .ok_or_else(|| anyhow!("connection closed before the response to api key {}", R::KEY))?;
        let header = ResponseHeader::decode(&mut payload, R::Response::header_version(version))
            .context("decode response header")?;
        if header.correlation_id != correlation_id {
            bail!(
                "correlation id {} != expected {correlation_id}",
                header.correlation_id
            );
        }
        R::Response::decode(&mut payload, version).context("decode response body")
    }

    /// Writes raw bytes to the socket.
    ///
    /// # Errors
    /// I/O failure.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).context("write to gateway")?;
        self.stream.flush().context("flush to gateway")
    }

    /// Half-closes the write side (the gateway sees EOF).
    ///
    /// # Errors
    /// Socket failure.
    pub fn shutdown_write(&mut self) -> Result<()> {
        self.stream.shutdown(Shutdown::Write).context("shutdown write")
    }

    /// Reads one size-prefixed frame's payload; `Ok(None)` on a clean close before any byte.
    ///
    /// # Errors
    /// I/O failure, a timeout, or a close inside a frame.
    pub fn read_frame(&mut self) -> Result<Option<Bytes>> {
        let mut size = [0u8; 4];
        match self.stream.read_exact(&mut size) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("read frame size"),
        }
        let len = usize::try_from(i32::from_be_bytes(size)).context("negative response frame size")?;
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .context("read frame payload")?;
        Ok(Some(Bytes::from(payload)))
    }

    /// Reads until the gateway closes the connection, counting frames it sends meanwhile.
    ///
    /// # Errors
    /// The connection is still open after `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration) -> Result<CloseOutcome> {
        let deadline = Instant::now() + timeout;
        let mut frames = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("gateway kept the connection open for {timeout:?}");
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.read_frame() {
                Ok(Some(_)) => frames += 1,
                Ok(None) => return Ok(CloseOutcome::Closed { frames }),
                Err(e) => {
                    let kind = e.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
                    match kind {
                        Some(ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                            bail!("gateway kept the connection open for {timeout:?}")
                        }
                        // Reset, broken pipe or EOF inside a frame: closed.
                        _ => return Ok(CloseOutcome::Closed { frames }),
                    }
                }
            }
        }
    }

    /// ApiVersions v3 round trip; returns the response.
    ///
    /// # Errors
    /// As [`RawClient::send`].
    pub fn api_versions(&mut self) -> Result<ApiVersionsResponse> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kgw-raw-test"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        self.send(&request, 3)
    }

    /// Metadata v12 for the given topics (all topics when empty).
    ///
    /// # Errors
    /// As [`RawClient::send`].
    pub fn metadata(&mut self, topics: &[&str]) -> Result<MetadataResponse> {
        let topics = (!topics.is_empty()).then(|| {
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        });
        let request = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        self.send(&request, 12)
    }

    /// Creates a topic with CreateTopics v5 and checks its error code.
    ///
    /// # Errors
    /// Transport errors or a non-zero topic error code.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        self.create_topic_with_configs(name, partitions, &[])
    }

    /// Creates a topic with CreateTopics v5 and the given topic configs, and checks its error
    /// code.
    ///
    /// # Errors
    /// Transport errors or a non-zero topic error code.
    pub fn create_topic_with_configs(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string((*k).to_string()))
                    .with_value(Some(StrBytes::from_string((*v).to_string())))
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(configs)]);
        let response = self.send(&request, 5)?;
        let topic = response
            .topics
            .first()
            .ok_or_else(|| anyhow!("CreateTopics: empty response"))?;
        if topic.error_code != 0 {
            bail!(
                "CreateTopics {name}: error code {} ({:?})",
                topic.error_code,
                topic.error_message
            );
        }
        Ok(())
    }
}

/// Prefixes `payload` with its big-endian i32 length.
pub fn frame(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    let len = i32::try_from(payload.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out.freeze()
}

/// A `TopicName` from a string.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Creates a topic over a fresh connection (test setup helper).
///
/// # Errors
/// As [`RawClient::create_topic`].
pub fn create_topic(addr: SocketAddr, name: &str, partitions: i32) -> Result<()> {
    RawClient::connect(addr)?.create_topic(name, partitions)
}

/// One uncompressed v2 record batch of `values` (keys `key-0`, `key-1`, ..., no producer id).
///
/// # Errors
/// Encoding failure.
pub fn record_batch(values: &[&'static [u8]]) -> Result<Bytes> {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: NO_SEQUENCE,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from_static(v)),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .context("encode batch")?;
    Ok(buf.freeze())
}
