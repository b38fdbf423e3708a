//! Durable group records and their framing.
//!
//! # Format
//! A group log or snapshot file is an 8-byte header, `KGGROUP` followed by the format version
//! byte `1`, then frames:
//!
//! ```text
//! +----------------+----------------+---------------------------+
//! | len: u32 BE    | crc: u32 BE    | payload: len bytes        |
//! +----------------+----------------+---------------------------+
//! ```
//!
//! `crc` is CRC-32C of the payload; the payload is one [`GroupRecord`] as JSON (serde, externally
//! tagged by record type; opaque bytes as lowercase hex). Records are idempotent upserts or
//! deletes keyed by group (metadata, group delete) or group/topic/partition (offsets), so
//! replaying any prefix-closed sequence in order yields the state after its last record; the same
//! records are what a raft log will carry.
//!
//! Kinds:
//! - `metadata`: a whole-group snapshot (protocol type, protocol, generation, leader, members with
//!   all their protocols' metadata and their assignment), written when a generation becomes
//!   Stable or Empty, or a static member is replaced without a rebalance.
//! - `offset_commit`: one committed offset with metadata string, leader epoch, commit timestamp
//!   and optional explicit expiry.
//! - `offset_delete`: removes one committed offset (OffsetDelete, expiry, deleted topics).
//! - `group_delete`: removes the group and all its offsets (DeleteGroups, expiry).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Header of every group log and snapshot file.
pub const FILE_MAGIC: &[u8; 8] = b"KGGROUP\x01";

/// Largest accepted frame payload; anything larger is corruption.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// One durable change to group state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GroupRecord {
    /// Whole-group metadata snapshot.
    Metadata(GroupMetadataRecord),
    /// One committed offset.
    OffsetCommit(OffsetCommitRecord),
    /// Deletion of one committed offset.
    OffsetDelete {
        /// Group id.
        group_id: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// Deletion of a group and its offsets.
    GroupDelete {
        /// Group id.
        group_id: String,
    },
}

impl GroupRecord {
    /// The group the record belongs to.
    pub fn group_id(&self) -> &str {
        match self {
            GroupRecord::Metadata(m) => &m.group_id,
            GroupRecord::OffsetCommit(o) => &o.group_id,
            GroupRecord::OffsetDelete { group_id, .. } | GroupRecord::GroupDelete { group_id } => group_id,
        }
    }
}

/// Group metadata as of one generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMetadataRecord {
    /// Group id.
    pub group_id: String,
    /// Protocol type, if the group ever had members.
    pub protocol_type: Option<String>,
    /// Selected protocol of the generation (none when Empty).
    pub protocol: Option<String>,
    /// Generation id.
    pub generation: i32,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the group entered its current state, ms (drives expiry of Empty groups).
    pub state_timestamp_ms: u64,
    /// Members of the generation.
    pub members: Vec<MemberRecord>,
}

/// One member inside a [`GroupMetadataRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u64,
    /// Session timeout.
    pub session_timeout_ms: u64,
    /// Supported protocols with opaque metadata, most preferred first.
    pub protocols: Vec<ProtocolRecord>,
    /// Opaque assignment.
    #[serde(with = "hex_bytes")]
    pub assignment: Bytes,
}

/// One supported protocol of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolRecord {
    /// Protocol name.
    pub name: String,
    /// Opaque metadata.
    #[serde(with = "hex_bytes")]
    pub metadata: Bytes,
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommitRecord {
    /// Group id.
    pub group_id: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Leader epoch, if known.
    pub leader_epoch: Option<i32>,
    /// Client metadata string.
    pub metadata: String,
    /// Commit time, ms since the epoch.
    pub commit_timestamp_ms: u64,
    /// Explicit expiry time, ms since the epoch.
    pub expire_timestamp_ms: Option<u64>,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the frame header or its declared length: a torn tail.
    #[error("incomplete frame")]
    Incomplete,
    /// Declared length beyond [`MAX_FRAME_BYTES`].
    #[error("frame length {0} too large")]
    TooLarge(usize),
    /// CRC mismatch.
    #[error("frame checksum mismatch")]
    Checksum,
    /// Payload is not a valid record.
    #[error("invalid record payload: {0}")]
    Payload(String),
}

/// Appends `record` as one frame to `out`.
///
/// # Errors
/// Only if serde fails to serialize, which plain data cannot; reported rather than unwrapped.
pub fn encode_frame(record: &GroupRecord, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let payload = serde_json::to_vec(record)?;
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes the frame at the start of `buf`, returning the record and the frame's length.
///
/// # Errors
/// [`FrameError`] when the bytes are not one whole valid frame.
pub fn decode_frame(buf: &[u8]) -> Result<(GroupRecord, usize), FrameError> {
    let header: [u8; 8] = buf
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Incomplete)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let payload = buf.get(8..8 + len).ok_or(FrameError::Incomplete)?;
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::Checksum);
    }
    let record = serde_json::from_slice(payload).map_err(|e| FrameError::Payload(e.to_string()))?;
    Ok((record, 8 + len))
}

/// Serde adapter writing [`Bytes`] as lowercase hex.
mod hex_bytes {
    use bytes::Bytes;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes.iter() {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        s.serialize_str(&out)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("odd hex length"));
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(D::Error::custom("invalid hex digit")),
        };
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len() / 2);
        for pair in bytes.chunks_exact(2) {
            out.push(digit(pair[0])? << 4 | digit(pair[1])?);
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_keeps_opaque_bytes() {
        let record = GroupRecord::Metadata(GroupMetadataRecord {
            group_id: "g".into(),
            protocol_type: Some("consumer".into()),
            protocol: Some("range".into()),
            generation: 3,
            leader: Some("m1".into()),
            state_timestamp_ms: 42,
            members: vec![MemberRecord {
                member_id: "m1".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                protocols: vec![ProtocolRecord {
                    name: "range".into(),
                    metadata: Bytes::from_static(&[0, 255, 7]),
                }],
                assignment: Bytes::from_static(&[9, 0xab]),
            }],
        });
        let mut buf = Vec::new();
        encode_frame(&record, &mut buf).unwrap();
        let (decoded, len) = decode_frame(&buf).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(len, buf.len());
        assert_eq!(decode_frame(&buf[..buf.len() - 1]), Err(FrameError::Incomplete));
        let last = buf.len() - 2;
        buf[last] ^= 1;
        assert_eq!(decode_frame(&buf), Err(FrameError::Checksum));
    }
}
