//! Plain request and response types of the group APIs, free of wire-format concerns.
//!
//! A `None` error field means success; errors are always Kafka codes ([`ResponseError`]).

use bytes::Bytes;
use kafka_protocol::ResponseError;

use crate::storage::{Offset, TopicPartition};

/// One protocol a member supports, in its order of preference, with opaque metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol (assignor) name, e.g. `range` or `cooperative-sticky`.
    pub name: String,
    /// Opaque protocol metadata (a consumer's subscription), passed through untouched.
    pub metadata: Bytes,
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id; empty for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id from the request header (prefix of generated member ids).
    pub client_id: String,
    /// Client address, shown by DescribeGroups.
    pub client_host: String,
    /// Session timeout asked for by the member.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v0 requests pass the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Protocol type, e.g. `consumer` or `connect`.
    pub protocol_type: String,
    /// Supported protocols, most preferred first.
    pub protocols: Vec<Protocol>,
    /// JoinGroup request version: from v4 on new dynamic members get MEMBER_ID_REQUIRED first.
    pub api_version: i16,
    /// Reason given by the client (v8+), for logs.
    pub reason: Option<String>,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The member's metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// Error, or `None`.
    pub error: Option<ResponseError>,
    /// The generation joined (-1 on error).
    pub generation_id: i32,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader member id (empty on error).
    pub leader: String,
    /// Whether the leader must skip computing an assignment (KIP-814, static leader rejoin).
    pub skip_assignment: bool,
    /// The member's id (a new one for MEMBER_ID_REQUIRED and first joins).
    pub member_id: String,
    /// Members and metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An error response carrying `member_id`.
    pub fn error(member_id: impl Into<String>, error: ResponseError) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Generation the member joined.
    pub generation_id: i32,
    /// Protocol type (v5+), checked against the group's.
    pub protocol_type: Option<String>,
    /// Protocol name (v5+), checked against the selected one.
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id; empty for followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// Error, or `None`.
    pub error: Option<ResponseError>,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// The member's opaque assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    /// An error response.
    pub fn error(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// One member named in a LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// Member id; may be empty when `instance_id` names a static member.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
}

/// The outcome for one member of a LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResult {
    /// The member as named in the request.
    pub member: LeavingMember,
    /// Error, or `None`.
    pub error: Option<ResponseError>,
}

/// One partition of an OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// Partition.
    pub tp: TopicPartition,
    /// Committed offset.
    pub offset: Offset,
    /// Leader epoch of the committed record, if the client sent one.
    pub leader_epoch: Option<i32>,
    /// Client metadata string.
    pub metadata: String,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// Member id (empty for manual assignment).
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Generation (-1 for manual assignment).
    pub generation_id: i32,
    /// Retention asked for by v2-v4 requests (-1 or `None`: broker default).
    pub retention_ms: Option<i64>,
    /// Offsets to commit.
    pub offsets: Vec<OffsetCommit>,
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Offset.
    pub offset: Offset,
    /// Leader epoch, if known.
    pub leader_epoch: Option<i32>,
    /// Client metadata string.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp_ms: u64,
    /// Explicit expiry asked for by the commit (v2-v4 retention time).
    pub expire_timestamp_ms: Option<u64>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (empty unless the group is Stable).
    pub metadata: Bytes,
    /// Current assignment (empty unless the group is Stable).
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// Kafka's state name (`Stable`, `Empty`, ... or `Dead` for an unknown group).
    pub state: &'static str,
    /// Protocol type, empty if none.
    pub protocol_type: String,
    /// Selected protocol, empty unless Stable.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type, empty if none.
    pub protocol_type: String,
    /// Kafka's state name.
    pub state: &'static str,
}
