//! The generated peer protocol (`proto/cluster/raft.proto`) and the conversions between its
//! envelope messages and our serde types.
//!
//! Every request and reply carries one serde JSON value tagged with [`ENCODING_JSON`]; a
//! receiver rejects an encoding it does not know instead of guessing.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Generated messages, client and server of `kafka_gateway.cluster.v1`.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    rust_2018_idioms,
    missing_debug_implementations
)]
pub mod v1 {
    tonic::include_proto!("kafka_gateway.cluster.v1");
}

use v1::raft_reply::Result as ReplyResult;
use v1::{RaftReply, RaftRequest};

/// The only payload encoding so far: serde JSON.
pub const ENCODING_JSON: u32 = 1;

/// Why an envelope could not be turned back into a value.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The sender used an encoding this node does not understand.
    #[error("unknown payload encoding {0}")]
    UnknownEncoding(u32),
    /// A reply with neither a value nor an error.
    #[error("empty reply")]
    Empty,
    /// The payload does not decode as the expected type.
    #[error("payload does not decode")]
    Json(#[from] serde_json::Error),
}

impl<T: Serialize> TryFrom<&Wire<T>> for RaftRequest {
    type Error = serde_json::Error;

    fn try_from(value: &Wire<T>) -> Result<Self, Self::Error> {
        Ok(RaftRequest {
            encoding: ENCODING_JSON,
            payload: Bytes::from(serde_json::to_vec(&value.0)?),
        })
    }
}

/// Wraps a serde value on its way into an envelope.
#[derive(Debug)]
pub struct Wire<T>(pub T);

impl RaftRequest {
    /// Decodes the request payload.
    ///
    /// # Errors
    /// Unknown encoding or a payload of another type.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        if self.encoding != ENCODING_JSON {
            return Err(EnvelopeError::UnknownEncoding(self.encoding));
        }
        Ok(serde_json::from_slice(&self.payload)?)
    }
}

impl RaftReply {
    /// Encodes a success value or an application error.
    ///
    /// # Errors
    /// Serialization failure of either value.
    pub fn encode<T: Serialize, E: Serialize>(result: &Result<T, E>) -> Result<Self, serde_json::Error> {
        let result = match result {
            Ok(v) => ReplyResult::Ok(Bytes::from(serde_json::to_vec(v)?)),
            Err(e) => ReplyResult::Err(Bytes::from(serde_json::to_vec(e)?)),
        };
        Ok(RaftReply {
            encoding: ENCODING_JSON,
            result: Some(result),
        })
    }

    /// Decodes the reply into the remote result.
    ///
    /// # Errors
    /// Unknown encoding, an empty reply, or payloads of other types.
    pub fn decode<T: DeserializeOwned, E: DeserializeOwned>(&self) -> Result<Result<T, E>, EnvelopeError> {
        if self.encoding != ENCODING_JSON {
            return Err(EnvelopeError::UnknownEncoding(self.encoding));
        }
        match &self.result {
            Some(ReplyResult::Ok(b)) => Ok(Ok(serde_json::from_slice(b)?)),
            Some(ReplyResult::Err(b)) => Ok(Err(serde_json::from_slice(b)?)),
            None => Err(EnvelopeError::Empty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let req = RaftRequest::try_from(&Wire(vec![1u64, 2])).unwrap();
        assert_eq!(req.decode::<Vec<u64>>().unwrap(), vec![1, 2]);
        let ok = RaftReply::encode::<u64, String>(&Ok(7)).unwrap();
        assert_eq!(ok.decode::<u64, String>().unwrap(), Ok(7));
        let err = RaftReply::encode::<u64, String>(&Err("no".into())).unwrap();
        assert_eq!(err.decode::<u64, String>().unwrap(), Err("no".to_string()));
        let bad = RaftRequest {
            encoding: 9,
            payload: Bytes::new(),
        };
        assert!(matches!(
            bad.decode::<u64>(),
            Err(EnvelopeError::UnknownEncoding(9))
        ));
    }
}
