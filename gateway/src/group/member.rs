//! One member of a classic group.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::state::Token;
use super::types::Protocol;

/// A member of a group, with the bookkeeping the join and sync barriers need.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member id (`<client id>-<uuid>`).
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout; the group's join barrier waits for the largest one.
    pub rebalance_timeout_ms: u64,
    /// Session timeout: the member expires after this long without a heartbeat.
    pub session_timeout_ms: u64,
    /// Supported protocols, most preferred first; metadata is opaque.
    pub protocols: Vec<Protocol>,
    /// Assignment received from the leader in the current generation; opaque.
    pub assignment: Bytes,
    /// Pending JoinGroup response, while the member waits at the join barrier.
    pub(crate) awaiting_join: Option<Token>,
    /// Pending SyncGroup response, while the member waits for the leader's assignment.
    pub(crate) awaiting_sync: Option<Token>,
    /// Joined during the current rebalance and never completed a join: bounded by the
    /// new-member join timeout instead of being kept alive by the barrier.
    pub(crate) is_new: bool,
    /// Last heartbeat (or join/sync completion), ms.
    pub(crate) last_heartbeat_ms: u64,
    /// When the member joined the group, ms.
    pub(crate) joined_ms: u64,
}

impl Member {
    /// Metadata for `protocol`, if the member supports it.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| &p.metadata)
    }

    /// Whether the member supports `protocol`.
    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// The member's most preferred protocol among `candidates`.
    pub(crate) fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Whether `protocols` are exactly the member's current ones (names, order and metadata).
    pub(crate) fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// Whether the member is still alive at `now_ms` (Kafka's `shouldKeepAlive`): a member
    /// waiting at the join barrier is kept by the barrier (new members only up to the new-member
    /// join timeout), one waiting for its assignment by the sync deadline, others by heartbeats.
    pub(crate) fn expiry_ms(&self, new_member_join_timeout_ms: u64) -> Option<u64> {
        if self.awaiting_join.is_some() {
            self.is_new
                .then(|| self.joined_ms.saturating_add(new_member_join_timeout_ms))
        } else if self.awaiting_sync.is_some() {
            None
        } else {
            Some(self.last_heartbeat_ms.saturating_add(self.session_timeout_ms))
        }
    }
}
