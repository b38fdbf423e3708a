//! Errors of the SeaweedMQ client, classified by [`SmqErrorKind`].

use crate::storage::StorageError;

/// What went wrong, independent of where it was reported (gRPC status or in-band code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmqErrorKind {
    /// The topic does not exist.
    TopicNotFound,
    /// The partition (or its generation) is not hosted where we asked: re-lookup.
    PartitionNotFound,
    /// The broker is not the partition leader: re-lookup.
    NotLeader,
    /// Offset outside the partition's range.
    OffsetOutOfRange,
    /// No broker reachable, or the broker answered `Unavailable`.
    Unavailable,
    /// The broker timed out.
    Timeout,
    /// A message exceeded the broker's size limit.
    MessageTooLarge,
    /// The topic already exists.
    TopicExists,
    /// The broker or filer rejected the request arguments.
    Invalid,
    /// The response did not have the shape the protocol promises.
    Protocol,
    /// Anything else.
    Other,
}

impl SmqErrorKind {
    /// Kind of a `PublishMessageResponse.error_code` (weed/mq/broker/broker_errors.go; chosen to
    /// match Kafka codes).
    pub fn from_publish_code(code: i32) -> Self {
        match code {
            // Code 2 also means "no broker assignment found" for a stale generation or a
            // broker that has not loaded the topic yet; callers check topic existence first.
            2 | 3 => Self::PartitionNotFound,
            6 => Self::NotLeader,
            7 => Self::Timeout,
            8 | 13 | 101 | 102 => Self::Unavailable,
            10 => Self::MessageTooLarge,
            36 => Self::TopicExists,
            37 | 40 | 42 => Self::Invalid,
            _ => Self::Other,
        }
    }

    /// Kind of a `FetchMessageResponse.error_code` (1 partition not found, 2 out of range).
    pub fn from_fetch_code(code: i32) -> Self {
        match code {
            1 => Self::PartitionNotFound,
            2 => Self::OffsetOutOfRange,
            _ => Self::Other,
        }
    }

    /// True when a fresh partition lookup may make the same call succeed.
    pub fn needs_relookup(self) -> bool {
        matches!(
            self,
            Self::PartitionNotFound | Self::NotLeader | Self::Unavailable
        )
    }
}

/// A failed SeaweedMQ operation.
#[derive(Debug, thiserror::Error)]
pub enum SmqError {
    /// The call failed with a gRPC status. Shown as message, root cause and code, never as
    /// tonic's `Display` (which prints the transport error's `Debug`).
    #[error("{op} on {addr}: {} ({})", status_text(status), status.code().description())]
    Rpc {
        /// The RPC.
        op: &'static str,
        /// Server address called.
        addr: String,
        /// Status returned.
        status: Box<tonic::Status>,
    },
    /// The server answered with an in-band error code or message.
    #[error("{op}: {message} (code {code})")]
    Server {
        /// The RPC.
        op: &'static str,
        /// The in-band code (0 when only a message was given).
        code: i32,
        /// The server's message.
        message: String,
        /// Classification.
        kind: SmqErrorKind,
    },
    /// No broker, master or filer could be found or reached.
    #[error("{0}")]
    Unavailable(String),
    /// The response violated the protocol.
    #[error("{0}")]
    Protocol(String),
}

/// The status message plus the innermost cause of a transport failure (e.g. the DNS error), in
/// their `Display` forms.
fn status_text(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut cause = std::error::Error::source(status);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    if let Some(root) = innermost.map(ToString::to_string) {
        if !text.contains(&root) {
            text = format!("{text}: {root}");
        }
    }
    text
}

/// True when a filer lookup failed only because the entry does not exist. The filer answers
/// `LookupDirectoryEntry` for a missing entry with code Unknown and "filer: no entry is found
/// in filer store", not with NotFound.
pub fn filer_not_found(status: &tonic::Status) -> bool {
    let msg = status.message();
    status.code() == tonic::Code::NotFound || msg.contains("not found") || msg.contains("no entry")
}

impl SmqError {
    /// Wraps a gRPC status.
    pub fn rpc(op: &'static str, addr: &str, status: tonic::Status) -> Self {
        Self::Rpc {
            op,
            addr: addr.to_string(),
            status: Box::new(status),
        }
    }

    /// The classification of this error.
    pub fn kind(&self) -> SmqErrorKind {
        match self {
            Self::Rpc { status, .. } => {
                let msg = status.message().to_ascii_lowercase();
                let not_found =
                    msg.contains("not found") || msg.contains("no entry") || msg.contains("no such");
                match status.code() {
                    _ if msg.contains("not leader") || msg.contains("leader is") => SmqErrorKind::NotLeader,
                    _ if msg.contains("partition") && not_found => SmqErrorKind::PartitionNotFound,
                    tonic::Code::NotFound => SmqErrorKind::TopicNotFound,
                    _ if not_found => SmqErrorKind::TopicNotFound,
                    tonic::Code::Unavailable => SmqErrorKind::Unavailable,
                    tonic::Code::Cancelled | tonic::Code::Unknown
                        if msg.contains("transport")
                            || msg.contains("connect")
                            || msg.contains("broken pipe") =>
                    {
                        SmqErrorKind::Unavailable
                    }
                    tonic::Code::DeadlineExceeded => SmqErrorKind::Timeout,
                    tonic::Code::AlreadyExists => SmqErrorKind::TopicExists,
                    tonic::Code::InvalidArgument => SmqErrorKind::Invalid,
                    tonic::Code::ResourceExhausted => SmqErrorKind::MessageTooLarge,
                    _ => SmqErrorKind::Other,
                }
            }
            Self::Server { kind, .. } => *kind,
            Self::Unavailable(_) => SmqErrorKind::Unavailable,
            Self::Protocol(_) => SmqErrorKind::Protocol,
        }
    }

    /// Converts to the storage layer's error for `what` (a topic or topic-partition name).
    pub fn into_storage(self, what: &str) -> StorageError {
        match self.kind() {
            SmqErrorKind::TopicNotFound => StorageError::UnknownTopicOrPartition(what.to_string()),
            SmqErrorKind::TopicExists => StorageError::TopicAlreadyExists(what.to_string()),
            SmqErrorKind::Invalid => StorageError::InvalidConfig(self.to_string()),
            _ => StorageError::Io(std::io::Error::other(format!("seaweedmq: {self}"))),
        }
    }
}

/// Result alias of the SeaweedMQ client.
pub type SmqResult<T> = std::result::Result<T, SmqError>;
