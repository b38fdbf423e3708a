use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::group::record::OffsetCommitRecord;

fn node(i: u64) -> ClusterNode {
    ClusterNode {
        cluster_addr: format!("127.0.0.{i}:9645"),
        kafka_addr: format!("127.0.0.{i}:9092"),
        admin_addr: format!("127.0.0.{i}:9644"),
        rack: None,
        listeners: Default::default(),
    }
}

fn state_with(voters: &[u64]) -> ClusterState {
    let mut s = ClusterState::default();
    let nodes: BTreeMap<_, _> = voters.iter().map(|i| (*i, node(*i))).collect();
    s.set_membership(nodes, &voters.iter().copied().collect());
    s
}

fn commit(group: &str, offset: i64) -> GroupRecord {
    GroupRecord::OffsetCommit(OffsetCommitRecord {
        group_id: group.into(),
        topic: "t".into(),
        partition: 0,
        offset,
        leader_epoch: None,
        metadata: String::new(),
        commit_timestamp_ms: 1,
        expire_timestamp_ms: None,
    })
}

fn claim(s: &mut ClusterState, g: &str) -> (u64, u64) {
    match s.apply(&Command::ClaimGroup { group_id: g.into() }) {
        CommandResponse::Owner { owner, epoch } => (owner, epoch),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn groups_spread_over_all_voters() {
    let mut s = state_with(&[1, 2, 3]);
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    for i in 0..300 {
        let (owner, epoch) = claim(&mut s, &format!("group-{i}"));
        assert_eq!(epoch, 1);
        *per_node.entry(owner).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|n| *n >= 60), "uneven spread {per_node:?}");
}

#[test]
fn claim_is_idempotent() {
    let mut s = state_with(&[1, 2, 3]);
    assert_eq!(claim(&mut s, "g"), claim(&mut s, "g"));
}

#[test]
fn dead_owner_moves_groups_and_bumps_epoch_only_for_moved_groups() {
    let mut s = state_with(&[1, 2, 3]);
    let before: Vec<(String, (u64, u64))> = (0..50)
        .map(|i| format!("g{i}"))
        .map(|g| (g.clone(), claim(&mut s, &g)))
        .collect();
    s.apply(&Command::SetLive {
        live: BTreeSet::from([1, 2]),
    });
    for (g, (owner, epoch)) in before {
        let now = &s.groups[&g];
        if owner == 3 {
            assert_ne!(now.owner, 3);
            assert_eq!(now.epoch, epoch + 1);
        } else {
            assert_eq!(
                (now.owner, now.epoch),
                (owner, epoch),
                "group {g} moved needlessly"
            );
        }
    }
}

#[test]
fn stale_epoch_write_is_fenced() {
    let mut s = state_with(&[1, 2]);
    let (owner, epoch) = claim(&mut s, "g");
    assert_eq!(
        s.apply(&Command::GroupWrite {
            owner,
            epoch,
            record: commit("g", 5)
        }),
        CommandResponse::Written
    );
    let other = if owner == 1 { 2 } else { 1 };
    s.apply(&Command::SetLive {
        live: BTreeSet::from([other]),
    });
    let fenced = s.apply(&Command::GroupWrite {
        owner,
        epoch,
        record: commit("g", 6),
    });
    assert_eq!(
        fenced,
        CommandResponse::Fenced {
            owner: Some(other),
            epoch: epoch + 1
        }
    );
    assert_eq!(s.groups["g"].offsets["t"][&0].offset, 5);
}

#[test]
fn write_to_unclaimed_group_is_fenced() {
    let mut s = state_with(&[1]);
    let r = s.apply(&Command::GroupWrite {
        owner: 1,
        epoch: 1,
        record: commit("nope", 1),
    });
    assert_eq!(
        r,
        CommandResponse::Fenced {
            owner: None,
            epoch: 0
        }
    );
}

#[test]
fn learners_do_not_own_groups() {
    let mut s = ClusterState::default();
    s.set_membership(BTreeMap::from([(1, node(1)), (2, node(2))]), &BTreeSet::from([1]));
    for i in 0..20 {
        assert_eq!(claim(&mut s, &format!("g{i}")).0, 1);
    }
}

#[test]
fn producer_id_blocks_do_not_overlap() {
    let mut s = state_with(&[1, 2]);
    let a = s.apply(&Command::AllocateProducerIds {
        node_id: 1,
        count: 100,
    });
    let b = s.apply(&Command::AllocateProducerIds {
        node_id: 2,
        count: 100,
    });
    assert_eq!(a, CommandResponse::ProducerIds { start: 0, count: 100 });
    assert_eq!(
        b,
        CommandResponse::ProducerIds {
            start: 100,
            count: 100
        }
    );
    assert!(matches!(
        s.apply(&Command::AllocateProducerIds { node_id: 1, count: 0 }),
        CommandResponse::Rejected { .. }
    ));
}

#[test]
fn state_round_trips_through_json() {
    let mut s = state_with(&[1, 2, 3]);
    let (owner, epoch) = claim(&mut s, "g");
    s.apply(&Command::GroupWrite {
        owner,
        epoch,
        record: commit("g", 9),
    });
    let json = serde_json::to_vec(&s).unwrap();
    let back: ClusterState = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn deleted_group_leaves_the_state_and_its_epochs_stay_fenced() {
    let mut s = state_with(&[1, 2]);
    let (owner, epoch) = claim(&mut s, "g");
    let write = |records: Vec<GroupRecord>| Command::GroupWrites {
        owner,
        epoch,
        group_id: "g".into(),
        records,
    };
    assert_eq!(s.apply(&write(vec![commit("g", 5)])), CommandResponse::Written);
    let delete = GroupRecord::GroupDelete { group_id: "g".into() };
    assert_eq!(s.apply(&write(vec![delete])), CommandResponse::Written);
    assert!(!s.groups.contains_key("g"), "a deleted group keeps its claim");

    // Claimed again, the group gets an epoch never granted before: the old writer is fenced.
    let (_, again) = claim(&mut s, "g");
    assert!(again > epoch, "epoch {again} reused (was {epoch})");
    assert!(matches!(
        s.apply(&write(vec![commit("g", 6)])),
        CommandResponse::Fenced { .. }
    ));
}

#[test]
fn idle_claims_are_released_only_when_idle_and_current() {
    let mut s = state_with(&[1]);
    let (_, idle) = claim(&mut s, "idle");
    let (_, used) = claim(&mut s, "used");
    let (_, moved) = claim(&mut s, "renewed");
    s.apply(&Command::GroupWrites {
        owner: 1,
        epoch: used,
        group_id: "used".into(),
        records: vec![commit("used", 1)],
    });
    let renewed = s.apply(&Command::RenewGroup {
        owner: 1,
        epoch: moved,
        group_id: "renewed".into(),
    });
    assert_eq!(
        renewed,
        CommandResponse::Owner {
            owner: 1,
            epoch: moved + 1
        }
    );
    s.apply(&Command::ReleaseGroups {
        owner: 1,
        claims: vec![
            ("idle".into(), idle),
            ("used".into(), used),
            ("renewed".into(), moved),
        ],
    });
    assert!(!s.groups.contains_key("idle"));
    assert!(s.groups.contains_key("used"), "a group with offsets was released");
    assert!(
        s.groups.contains_key("renewed"),
        "a claim under a newer epoch was released"
    );
    assert!(claim(&mut s, "idle").1 > idle);
}

#[test]
fn renewal_fences_writes_under_the_retired_epoch() {
    let mut s = state_with(&[1]);
    let (owner, epoch) = claim(&mut s, "g");
    s.apply(&Command::RenewGroup {
        owner,
        epoch,
        group_id: "g".into(),
    });
    let stale = s.apply(&Command::GroupWrites {
        owner,
        epoch,
        group_id: "g".into(),
        records: vec![commit("g", 1)],
    });
    assert_eq!(
        stale,
        CommandResponse::Fenced {
            owner: Some(owner),
            epoch: epoch + 1
        }
    );
    assert_eq!(
        s.apply(&Command::RenewGroup {
            owner,
            epoch,
            group_id: "g".into()
        }),
        CommandResponse::Fenced {
            owner: Some(owner),
            epoch: epoch + 1
        }
    );
}
