//! Static membership: join without MEMBER_ID_REQUIRED, replacement, fencing, persistence.

use super::*;

fn static_req(member_id: &str, instance: &str, meta: &[u8]) -> JoinRequest {
    let mut req = join_req(member_id, protocols(&[("range", meta)]));
    req.instance_id = Some(instance.to_owned());
    req
}

/// A Stable group with static member `i1` (leader) and dynamic member B.
fn static_group() -> (Harness, String, String) {
    let mut h = Harness::new(cfg());
    let Reply::Pending(_) = h.join(static_req("", "i1", b"m")) else {
        panic!("static members skip MEMBER_ID_REQUIRED")
    };
    let a = h.joins()[0].1.member_id.clone();
    let (b, _) = h.join_new(protocols(&[("range", b"m")]));
    h.join(static_req(&a, "i1", b"m"));
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
    h.g.take_effects();
    let generation = h.g.generation();
    h.sync(&b, generation, vec![]);
    h.sync(
        &a,
        generation,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
    );
    assert_eq!(h.g.phase(), GroupPhase::Stable);
    h.g.take_effects();
    (h, a, b)
}

#[test]
fn restarted_static_member_replaces_old_id_without_rebalance() {
    let (mut h, old, _b) = static_group();
    let generation = h.g.generation();
    let Reply::Pending(token) = h.join(static_req("", "i1", b"m")) else {
        panic!()
    };
    assert_eq!(h.g.phase(), GroupPhase::Stable, "same protocol: no rebalance");
    let effects = h.g.take_effects();
    assert!(
        matches!(effects.records.as_slice(), [GroupRecord::Metadata(_)]),
        "new member id is persisted"
    );
    let [Completion::Join(t, resp)] = effects.completions.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(*t, token);
    assert_ne!(resp.member_id, old);
    assert_eq!(resp.generation_id, generation);
    assert!(
        resp.skip_assignment,
        "a rejoining static leader keeps the current assignment"
    );
    assert_eq!(
        resp.leader, old,
        "Kafka reports the leader as it was before the replacement"
    );
    let new = resp.member_id.clone();
    // The old id is fenced everywhere; the new one gets the old assignment.
    assert_eq!(
        h.g.heartbeat(&old, Some("i1"), generation, h.now),
        Err(ResponseError::FencedInstanceId)
    );
    let Reply::Done(bad) = h.join(static_req(&old, "i1", b"m")) else {
        panic!()
    };
    assert_eq!(bad.error, Some(ResponseError::FencedInstanceId));
    let synced = h.g.sync_group(
        SyncRequest {
            member_id: new.clone(),
            instance_id: Some("i1".into()),
            generation_id: generation,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![],
        },
        h.now,
    );
    let Reply::Done(sync) = synced else { panic!() };
    assert_eq!(sync.assignment, Bytes::from_static(b"A"));
    assert_eq!(h.g.heartbeat(&new, Some("i1"), generation, h.now), Ok(()));
}

#[test]
fn replacement_fences_pending_join_of_old_member() {
    let (mut h, old, _b) = static_group();
    let Reply::Pending(old_token) = h.join(static_req(&old, "i1", b"changed")) else {
        panic!()
    };
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
    h.g.take_effects();
    let Reply::Pending(_) = h.join(static_req("", "i1", b"changed")) else {
        panic!()
    };
    let completions = h.g.take_effects().completions;
    assert!(completions.contains(&Completion::Join(
        old_token,
        JoinResponse::error(&old, ResponseError::FencedInstanceId)
    )));
    assert!(!h.g.members().any(|m| m.member_id == old));
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
}

#[test]
fn static_member_survives_rebalance_timeout_but_not_its_session() {
    let (mut h, a, b) = static_group();
    let generation = h.g.generation();
    h.join(join_req(&b, protocols(&[("range", b"changed")])));
    // The static member heartbeats but never rejoins.
    for _ in 0..6 {
        h.advance(5_000);
        let _ = h.g.heartbeat(&a, Some("i1"), generation, h.now);
    }
    // The barrier expired: unlike a dynamic member, the static one is kept; B leads.
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
    assert!(h.g.members().any(|m| m.member_id == a));
    assert_eq!(h.g.leader(), Some(b.as_str()));
    let joins = h.joins();
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].1.members.len(), 2);
    // B syncs and keeps heartbeating; the static member's session runs out.
    h.sync(&b, h.g.generation(), vec![]);
    assert_eq!(h.g.phase(), GroupPhase::Stable);
    h.advance(5_000);
    assert_eq!(h.heartbeat(&b), Ok(()));
    h.advance(5_000);
    assert!(!h.g.members().any(|m| m.member_id == a));
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
}

/// A static member kept through a rebalance without rejoining expires `session.timeout.ms`
/// after its last heartbeat (or the barrier that answered it), even when another rebalance
/// starts meanwhile: only members waiting for their assignment are answered then, so only their
/// sessions restart (Kafka's `propagateAssignment`).
#[test]
fn static_member_expires_at_its_session_timeout_across_a_new_rebalance() {
    let (mut h, a, b) = static_group();
    h.join(join_req(&b, protocols(&[("range", b"changed")])));
    for _ in 0..6 {
        h.advance(5_000);
        let _ = h.g.heartbeat(&a, Some("i1"), h.g.generation(), h.now);
    }
    // The barrier completed without the static member, whose session restarted there.
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
    let barrier_done = h.now;
    h.advance(5_000);
    // A new member starts another rebalance before anyone synced.
    let _ = h.join_new(protocols(&[("range", b"m")]));
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
    h.advance(barrier_done + u64::try_from(SESSION_MS).unwrap() - 1 - h.now);
    assert!(h.g.members().any(|m| m.member_id == a), "alive 1 ms before its session ends");
    h.advance(1);
    assert!(
        !h.g.members().any(|m| m.member_id == a),
        "expired exactly session.timeout.ms after the barrier answered it"
    );
}

#[test]
fn leave_by_instance_id_removes_static_member() {
    let (mut h, a, _b) = static_group();
    let results =
        h.g.leave_group(
            vec![
                LeavingMember {
                    member_id: String::new(),
                    instance_id: Some("i1".into()),
                },
                LeavingMember {
                    member_id: "other".into(),
                    instance_id: Some("i2".into()),
                },
            ],
            h.now,
        )
        .unwrap();
    assert_eq!(results[0].error, None);
    assert_eq!(results[1].error, Some(ResponseError::UnknownMemberId));
    assert!(!h.g.members().any(|m| m.member_id == a));
    assert_eq!(h.g.phase(), GroupPhase::PreparingRebalance);
}
