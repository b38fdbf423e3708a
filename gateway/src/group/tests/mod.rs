//! Unit tests of the group state machine (fake clock) and of the coordinator.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;

mod coordinator_test;
mod offsets_test;
mod refused_write_test;
mod state_test;
mod static_test;

pub(super) const SESSION_MS: i32 = 10_000;
pub(super) const REBALANCE_MS: i32 = 30_000;

/// Config without the initial rebalance delay, so barriers complete as soon as all joined.
pub(super) fn cfg() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

pub(super) fn protocols(list: &[(&str, &[u8])]) -> Vec<Protocol> {
    list.iter()
        .map(|(name, meta)| Protocol {
            name: (*name).to_owned(),
            metadata: Bytes::copy_from_slice(meta),
        })
        .collect()
}

pub(super) fn join_req(member_id: &str, protos: Vec<Protocol>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_owned(),
        protocols: protos,
        api_version: 5,
        reason: None,
    }
}

/// A `consumer` protocol subscription blob for `topics`.
pub(super) fn subscription(topics: &[&str]) -> Bytes {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string((*t).to_owned()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    sub.encode(&mut buf, 1).expect("encodable subscription");
    buf.freeze()
}

/// A group driven by a fake clock.
pub(super) struct Harness {
    pub(super) g: GroupState,
    pub(super) now: u64,
}

impl Harness {
    pub(super) fn new(config: GroupConfig) -> Self {
        Self {
            g: GroupState::new("g", config, 1_000),
            now: 1_000,
        }
    }

    pub(super) fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.g.tick(self.now);
    }

    pub(super) fn join(&mut self, req: JoinRequest) -> Reply<JoinResponse> {
        self.g.join_group(req, self.now)
    }

    /// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id and join token.
    pub(super) fn join_new(&mut self, protos: Vec<Protocol>) -> (String, Token) {
        let Reply::Done(first) = self.join(join_req("", protos.clone())) else {
            panic!("expected immediate answer")
        };
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let id = first.member_id;
        match self.join(join_req(&id, protos)) {
            Reply::Pending(token) => (id, token),
            other => panic!("expected pending join, got {other:?}"),
        }
    }

    pub(super) fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncResponse> {
        self.g.sync_group(
            SyncRequest {
                member_id: member_id.to_owned(),
                instance_id: None,
                generation_id: generation,
                protocol_type: Some("consumer".into()),
                protocol_name: None,
                assignments,
            },
            self.now,
        )
    }

    pub(super) fn heartbeat(&mut self, member_id: &str) -> Result<(), ResponseError> {
        let generation = self.g.generation();
        self.g.heartbeat(member_id, None, generation, self.now)
    }

    /// Join completions in the drained effects, by token.
    pub(super) fn joins(&mut self) -> Vec<(Token, JoinResponse)> {
        self.g
            .take_effects()
            .completions
            .into_iter()
            .filter_map(|c| match c {
                Completion::Join(t, r) => Some((t, r)),
                Completion::Sync(..) => None,
            })
            .collect()
    }

    /// A Stable group of `n` dynamic members (the first leads), each assigned its own index byte.
    pub(super) fn stable(n: usize) -> (Self, Vec<String>) {
        let mut h = Harness::new(cfg());
        let protos = protocols(&[("range", b"m")]);
        let mut ids = Vec::new();
        // The first member forms generation 1 alone; each later one starts a rebalance that
        // waits for the first to rejoin.
        for _ in 0..n {
            let (id, _) = h.join_new(protos.clone());
            ids.push(id);
        }
        if h.g.phase() == GroupPhase::PreparingRebalance {
            h.join(join_req(&ids[0], protos.clone()));
        }
        assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
        h.g.take_effects();
        let generation = h.g.generation();
        let leader = h.g.leader().expect("leader").to_owned();
        let assignments = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), Bytes::from(vec![i as u8])))
            .collect();
        for id in ids.iter().filter(|id| **id != leader) {
            assert!(matches!(h.sync(id, generation, vec![]), Reply::Pending(_)));
        }
        assert!(matches!(
            h.sync(&leader, generation, assignments),
            Reply::Pending(_)
        ));
        assert_eq!(h.g.phase(), GroupPhase::Stable);
        h.g.take_effects();
        (h, ids)
    }
}
