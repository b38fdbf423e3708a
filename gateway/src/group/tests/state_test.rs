//! Transitions, join barrier, MEMBER_ID_REQUIRED, timeouts, protocol selection, opaque bytes.

use super::*;

#[test]
fn member_id_required_then_barrier_then_sync_makes_group_stable() {
    let mut h = Harness::new(cfg());
    let Reply::Done(first) = h.join(join_req("", protocols(&[("range", b"meta")]))) else {
        panic!()
    };
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-"));
    assert_eq!(h.g.phase(), GroupPhase::Empty);

    let id = first.member_id;
    let Reply::Pending(token) = h.join(join_req(&id, protocols(&[("range", b"meta")]))) else {
        panic!()
    };
    let joins = h.joins();
    assert_eq!(joins.len(), 1);
    let (t, resp) = &joins[0];
    assert_eq!(*t, token);
    assert_eq!(resp.error, None);
    assert_eq!(resp.generation_id, 1);
    assert_eq!(resp.leader, id);
    assert_eq!(resp.protocol_name.as_deref(), Some("range"));
    assert_eq!(resp.members.len(), 1);
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);

    let Reply::Pending(sync_token) = h.sync(&id, 1, vec![(id.clone(), Bytes::from_static(b"a0"))]) else {
        panic!()
    };
    let effects = h.g.take_effects();
    assert_eq!(effects.completions.len(), 1);
    let Completion::Sync(t, sync) = &effects.completions[0] else {
        panic!()
    };
    assert_eq!(*t, sync_token);
    assert_eq!(sync.assignment, Bytes::from_static(b"a0"));
    assert_eq!(h.g.phase(), GroupPhase::Stable);
    assert!(matches!(effects.records.as_slice(), [GroupRecord::Metadata(m)] if m.generation == 1));
    assert_eq!(effects.rebalances_ms.len(), 1);
}

#[test]
fn old_join_versions_skip_member_id_required() {
    let mut h = Harness::new(cfg());
    let mut req = join_req("", protocols(&[("range", b"")]));
    req.api_version = 3;
    assert!(matches!(h.join(req), Reply::Pending(_)));
    let joins = h.joins();
    assert_eq!(joins.len(), 1);
    assert!(!joins[0].1.member_id.is_empty());
    assert_eq!(joins[0].1.error, None);
}

#[test]
fn join_barrier_waits_for_every_known_member() {
    let (mut h, ids) = Harness::stable(2);
    let (a, b) = (&ids[0], &ids[1]);
    let generation = h.g.generation();
    // A rejoins with new metadata: rebalance starts, nobody is answered yet.
    let Reply::Pending(ta) = h.join(join_req(a, protocols(&[("range", b"new")]))) else {
        panic!()
    };
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
    assert!(h.joins().is_empty());
    assert_eq!(h.heartbeat(b), Err(ResponseError::RebalanceInProgress));
    // B rejoins: the barrier completes for both.
    let Reply::Pending(tb) = h.join(join_req(b, protocols(&[("range", b"m")]))) else {
        panic!()
    };
    let joins = h.joins();
    assert_eq!(joins.len(), 2, "{joins:?}");
    let leader = h.g.leader().unwrap().to_owned();
    for (token, resp) in &joins {
        assert!(*token == ta || *token == tb);
        assert_eq!(resp.generation_id, generation + 1);
        assert_eq!(resp.leader, leader);
        if resp.member_id == leader {
            let metas: Vec<_> = resp
                .members
                .iter()
                .map(|m| (m.member_id.clone(), m.metadata.clone()))
                .collect();
            assert!(metas.contains(&(a.clone(), Bytes::from_static(b"new"))));
            assert!(metas.contains(&(b.clone(), Bytes::from_static(b"m"))));
        } else {
            assert!(resp.members.is_empty());
        }
    }
}

#[test]
fn rebalance_timeout_drops_members_that_did_not_rejoin() {
    let (mut h, ids) = Harness::stable(2);
    let Reply::Pending(_) = h.join(join_req(&ids[0], protocols(&[("range", b"x")]))) else {
        panic!()
    };
    assert_eq!(h.g.join_deadline_ms, Some(h.now + REBALANCE_MS as u64));
    // B keeps its session alive but never rejoins.
    for _ in 0..5 {
        h.advance(5_000);
        assert_eq!(h.heartbeat(&ids[1]), Err(ResponseError::RebalanceInProgress));
    }
    h.advance(5_000);
    let joins = h.joins();
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].1.member_id, ids[0]);
    assert_eq!(joins[0].1.members.len(), 1);
    assert_eq!(h.g.members().count(), 1);
    assert_eq!(h.heartbeat(&ids[1]), Err(ResponseError::UnknownMemberId));
}

#[test]
fn session_expiry_removes_silent_member_and_last_leave_empties_group() {
    let (mut h, ids) = Harness::stable(2);
    let (a, b) = (ids[0].clone(), ids[1].clone());
    for _ in 0..4 {
        h.advance(SESSION_MS as u64 / 4 - 1);
        assert_eq!(h.heartbeat(&a), Ok(()));
    }
    assert_eq!(h.g.phase(), GroupPhase::Stable);
    h.advance(10);
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
    assert_eq!(h.heartbeat(&b), Err(ResponseError::UnknownMemberId));
    assert_eq!(h.heartbeat(&a), Err(ResponseError::RebalanceInProgress));
    let Reply::Pending(_) = h.join(join_req(&a, protocols(&[("range", b"m")]))) else {
        panic!()
    };
    assert_eq!(h.joins().len(), 1);
    assert_eq!(h.g.generation(), 3);

    let left =
        h.g.leave_group(
            vec![LeavingMember {
                member_id: a.clone(),
                instance_id: None,
            }],
            h.now,
        )
        .unwrap();
    assert_eq!(left[0].error, None);
    assert_eq!(h.g.phase(), GroupPhase::Empty);
    assert_eq!(h.g.generation(), 4);
    let effects = h.g.take_effects();
    assert!(matches!(effects.records.as_slice(), [GroupRecord::Metadata(m)] if m.members.is_empty()));
    let again =
        h.g.leave_group(
            vec![LeavingMember {
                member_id: a,
                instance_id: None,
            }],
            h.now,
        )
        .unwrap();
    assert_eq!(again[0].error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn pending_member_blocks_barrier_until_it_expires() {
    let (mut h, ids) = Harness::stable(1);
    let Reply::Done(r) = h.join(join_req("", protocols(&[("range", b"m")]))) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    let Reply::Pending(_) = h.join(join_req(&ids[0], protocols(&[("range", b"changed")]))) else {
        panic!()
    };
    assert!(h.joins().is_empty(), "barrier waits for the pending member");
    h.advance(SESSION_MS as u64);
    assert_eq!(h.joins().len(), 1);
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
}

#[test]
fn protocol_is_chosen_across_members_and_inconsistent_ones_are_refused() {
    let mut h = Harness::new(GroupConfig {
        initial_rebalance_delay_ms: 1_000,
        ..cfg()
    });
    let (_, _) = h.join_new(protocols(&[("range", b"1"), ("roundrobin", b"1")]));
    let (_, _) = h.join_new(protocols(&[("roundrobin", b"2"), ("range", b"2")]));
    let (_, _) = h.join_new(protocols(&[("roundrobin", b"3")]));
    let Reply::Done(bad) = h.join(join_req("", protocols(&[("sticky", b"")]))) else {
        panic!()
    };
    assert_eq!(bad.error, Some(ResponseError::InconsistentGroupProtocol));
    let mut other_type = join_req("", protocols(&[("roundrobin", b"")]));
    other_type.protocol_type = "connect".into();
    let Reply::Done(bad) = h.join(other_type) else {
        panic!()
    };
    assert_eq!(bad.error, Some(ResponseError::InconsistentGroupProtocol));
    // Newcomers arrived during the first delay, so it is extended once.
    h.advance(1_000);
    assert!(h.joins().is_empty());
    h.advance(1_000);
    let joins = h.joins();
    assert_eq!(joins.len(), 3);
    assert!(joins
        .iter()
        .all(|(_, r)| r.protocol_name.as_deref() == Some("roundrobin")));
}

#[test]
fn initial_delay_extends_while_members_keep_arriving() {
    let mut h = Harness::new(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..cfg()
    });
    h.join_new(protocols(&[("range", b"")]));
    assert_eq!(h.g.next_deadline(), Some(h.now + 3_000));
    h.advance(1_000);
    h.join_new(protocols(&[("range", b"")]));
    h.advance(2_000);
    assert_eq!(
        h.g.phase(),
        GroupPhase::PreparingRebalance,
        "a newcomer extends the delay"
    );
    assert!(h.joins().is_empty());
    h.advance(3_000);
    assert_eq!(h.joins().len(), 2);
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
}

#[test]
fn sync_waits_for_leader_and_checks_generation_and_protocol() {
    let mut h = Harness::new(cfg());
    let (a, _) = h.join_new(protocols(&[("range", b"")]));
    let (b, _) = h.join_new(protocols(&[("range", b"")]));
    h.join(join_req(&a, protocols(&[("range", b"")])));
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
    h.g.take_effects();
    let generation = h.g.generation();
    let leader = h.g.leader().unwrap().to_owned();
    let follower = if leader == a { b.clone() } else { a.clone() };
    assert_eq!(
        h.sync(&follower, generation + 1, vec![]),
        Reply::Done(SyncResponse::error(ResponseError::IllegalGeneration))
    );
    assert_eq!(
        h.sync("nobody", generation, vec![]),
        Reply::Done(SyncResponse::error(ResponseError::UnknownMemberId))
    );
    let mut wrong = SyncRequest {
        member_id: follower.clone(),
        instance_id: None,
        generation_id: generation,
        protocol_type: None,
        protocol_name: Some("roundrobin".into()),
        assignments: vec![],
    };
    assert_eq!(
        h.g.sync_group(wrong.clone(), h.now),
        Reply::Done(SyncResponse::error(ResponseError::InconsistentGroupProtocol))
    );
    wrong.protocol_name = Some("range".into());
    let Reply::Pending(ft) = h.g.sync_group(wrong, h.now) else {
        panic!()
    };
    assert!(
        h.g.take_effects().completions.is_empty(),
        "follower waits for the leader"
    );
    h.sync(
        &leader,
        generation,
        vec![(follower.clone(), Bytes::from_static(b"\x00\xff"))],
    );
    let done = h.g.take_effects().completions;
    assert!(done.contains(&Completion::Sync(
        ft,
        SyncResponse {
            error: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from_static(b"\x00\xff"),
        }
    )));
}

#[test]
fn leader_that_never_syncs_is_removed_after_rebalance_timeout() {
    let mut h = Harness::new(cfg());
    let (a, _) = h.join_new(protocols(&[("range", b"")]));
    let (b, _) = h.join_new(protocols(&[("range", b"")]));
    h.join(join_req(&a, protocols(&[("range", b"")])));
    h.g.take_effects();
    let leader = h.g.leader().unwrap().to_owned();
    let follower = if leader == a { b } else { a };
    let Reply::Pending(ft) = h.sync(&follower, h.g.generation(), vec![]) else {
        panic!()
    };
    h.advance(REBALANCE_MS as u64);
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
    assert!(h.g.members().all(|m| m.member_id == follower));
    let done = h.g.take_effects().completions;
    assert!(done.contains(&Completion::Sync(
        ft,
        SyncResponse::error(ResponseError::RebalanceInProgress)
    )));
}

#[test]
fn opaque_metadata_and_assignments_survive_records_and_restore() {
    let meta: &[u8] = &[0, 159, 146, 150, 255, 0];
    let (mut h, ids) = Harness::stable(2);
    let Reply::Pending(_) = h.join(join_req(&ids[0], protocols(&[("custom", meta), ("range", b"m")]))) else {
        panic!()
    };
    h.join(join_req(&ids[1], protocols(&[("range", b"m"), ("custom", meta)])));
    let joins = h.joins();
    let leader_resp = joins
        .iter()
        .map(|(_, r)| r)
        .find(|r| !r.members.is_empty())
        .unwrap();
    let proto = leader_resp.protocol_name.clone().unwrap();
    let generation = h.g.generation();
    let assignment = Bytes::from_static(&[1, 0, 0xfe]);
    for id in &ids {
        if !h.g.is_leader(id) {
            h.sync(id, generation, vec![]);
        }
    }
    let leader = h.g.leader().unwrap().to_owned();
    h.sync(
        &leader,
        generation,
        ids.iter().map(|id| (id.clone(), assignment.clone())).collect(),
    );
    let records = h.g.take_effects().records;
    let [GroupRecord::Metadata(meta_record)] = records.as_slice() else {
        panic!("{records:?}")
    };
    let image = store::ImageGroup {
        metadata: Some(meta_record.clone()),
        ..Default::default()
    };
    let restored = GroupState::restore("g", &image, cfg(), h.now);
    assert_eq!(restored.phase(), GroupPhase::Stable);
    assert_eq!(restored.describe(), h.g.describe());
    let described = restored.describe();
    assert_eq!(described.protocol, proto);
    assert!(described.members.iter().all(|m| m.assignment == assignment));
    let custom_member = described.members.iter().find(|m| m.member_id == ids[0]).unwrap();
    assert_eq!(
        custom_member.metadata,
        *h.g.members.get(&ids[0]).unwrap().metadata(&proto).unwrap()
    );
}
