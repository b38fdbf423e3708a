//! Offset commit validation, fetch, delete, group deletion, expiry.

use super::*;
use crate::storage::TopicPartition;

fn commit(member_id: &str, generation: i32, topic: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        member_id: member_id.to_owned(),
        instance_id: None,
        generation_id: generation,
        retention_ms: None,
        offsets: vec![OffsetCommit {
            tp: TopicPartition::new(topic, 0),
            offset,
            leader_epoch: Some(7),
            metadata: "meta".into(),
        }],
    }
}

#[test]
fn manual_commit_on_empty_group_round_trips_metadata_and_epoch() {
    let mut h = Harness::new(cfg());
    let results = h.g.commit_offsets(commit("", -1, "t", 42), h.now).unwrap();
    assert_eq!(results, vec![(TopicPartition::new("t", 0), None)]);
    let got = h.g.fetch_offset(&TopicPartition::new("t", 0)).unwrap();
    assert_eq!(
        (got.offset, got.leader_epoch, got.metadata.as_str()),
        (42, Some(7), "meta")
    );
    assert_eq!(got.commit_timestamp_ms, h.now);
    let records = h.g.take_effects().records;
    assert!(
        matches!(records.as_slice(), [GroupRecord::OffsetCommit(o)] if o.offset == 42 && o.leader_epoch == Some(7))
    );
    // A member-style commit on an Empty group names no member.
    assert_eq!(
        h.g.commit_offsets(commit("ghost", 1, "t", 1), h.now),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn member_commits_are_checked_against_generation_and_member() {
    let mut h = Harness::new(cfg());
    let (a, _) = h.join_new(protocols(&[("range", b"")]));
    h.g.take_effects();
    let generation = h.g.generation();
    assert_eq!(h.g.phase(), GroupPhase::CompletingRebalance);
    assert_eq!(
        h.g.commit_offsets(commit(&a, generation, "t", 1), h.now),
        Err(ResponseError::RebalanceInProgress)
    );
    h.sync(&a, generation, vec![]);
    assert_eq!(
        h.g.commit_offsets(commit(&a, generation + 1, "t", 1), h.now),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.g.commit_offsets(commit("other", generation, "t", 1), h.now),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.g.commit_offsets(commit("", -1, "t", 1), h.now),
        Err(ResponseError::UnknownMemberId)
    );
    assert!(h.g.commit_offsets(commit(&a, generation, "t", 5), h.now).is_ok());
    assert_eq!(
        h.g.fetch_offset(&TopicPartition::new("t", 0)).map(|o| o.offset),
        Some(5)
    );

    let mut big = commit(&a, generation, "t", 9);
    big.offsets[0].metadata = "x".repeat(5000);
    let results = h.g.commit_offsets(big, h.now).unwrap();
    assert_eq!(results[0].1, Some(ResponseError::OffsetMetadataTooLarge));
    assert_eq!(
        h.g.fetch_offset(&TopicPartition::new("t", 0)).map(|o| o.offset),
        Some(5)
    );
}

#[test]
fn offset_delete_refuses_subscribed_topics_of_live_consumer_group() {
    let mut h = Harness::new(cfg());
    let (a, _) = h.join_new(protocols(&[("range", &subscription(&["subscribed"]))]));
    let generation = h.g.generation();
    h.sync(&a, generation, vec![]);
    h.g.commit_offsets(commit(&a, generation, "subscribed", 1), h.now)
        .unwrap();
    h.g.commit_offsets(commit(&a, generation, "old", 1), h.now)
        .unwrap();
    let results =
        h.g.delete_offsets(vec![
            TopicPartition::new("subscribed", 0),
            TopicPartition::new("old", 0),
        ])
        .unwrap();
    assert_eq!(results[0].1, Some(ResponseError::GroupSubscribedToTopic));
    assert_eq!(results[1].1, None);
    assert!(h.g.fetch_offset(&TopicPartition::new("old", 0)).is_none());
    assert!(h.g.fetch_offset(&TopicPartition::new("subscribed", 0)).is_some());
    assert_eq!(h.g.delete_group(h.now), Err(ResponseError::NonEmptyGroup));
}

#[test]
fn delete_group_only_when_empty() {
    let mut h = Harness::new(cfg());
    h.g.commit_offsets(commit("", -1, "t", 1), h.now).unwrap();
    h.g.take_effects();
    assert_eq!(h.g.delete_group(h.now), Ok(()));
    assert_eq!(h.g.phase(), GroupPhase::Dead);
    assert!(h.g.offsets().is_empty());
    assert!(matches!(
        h.g.take_effects().records.as_slice(),
        [GroupRecord::GroupDelete { .. }]
    ));
    assert_eq!(h.g.delete_group(h.now), Err(ResponseError::GroupIdNotFound));
    assert_eq!(
        h.g.commit_offsets(commit("", -1, "t", 1), h.now),
        Err(ResponseError::CoordinatorNotAvailable)
    );
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let retention = 60_000;
    // A group that had members: retention counts from when it became Empty.
    let (mut h, ids) = Harness::stable(1);
    let generation = h.g.generation();
    h.g.commit_offsets(commit(&ids[0], generation, "t", 3), h.now)
        .unwrap();
    h.now += retention * 2;
    assert!(
        !h.g.expire_offsets(h.now, retention),
        "a Stable group subscribed to nothing known keeps offsets"
    );
    h.g.leave_group(
        vec![LeavingMember {
            member_id: ids[0].clone(),
            instance_id: None,
        }],
        h.now,
    )
    .unwrap();
    assert_eq!(h.g.phase(), GroupPhase::Empty);
    h.g.take_effects();
    h.now += retention - 1;
    assert!(!h.g.expire_offsets(h.now, retention));
    assert!(h.g.take_effects().records.is_empty());
    h.now += 1;
    assert!(
        h.g.expire_offsets(h.now, retention),
        "an Empty group without offsets dies"
    );
    let records = h.g.take_effects().records;
    assert!(matches!(
        records.as_slice(),
        [GroupRecord::OffsetDelete { .. }, GroupRecord::GroupDelete { .. }]
    ));

    // A manual-assignment group: each offset by its own commit time.
    let mut m = Harness::new(cfg());
    m.g.commit_offsets(commit("", -1, "a", 1), m.now).unwrap();
    m.now += 1_000;
    m.g.commit_offsets(commit("", -1, "b", 1), m.now).unwrap();
    m.now += retention - 1_000;
    assert!(!m.g.expire_offsets(m.now, retention));
    assert!(m.g.fetch_offset(&TopicPartition::new("a", 0)).is_none());
    assert!(m.g.fetch_offset(&TopicPartition::new("b", 0)).is_some());
}

#[test]
fn deleted_topics_lose_their_offsets() {
    let mut h = Harness::new(cfg());
    h.g.commit_offsets(commit("", -1, "gone", 1), h.now).unwrap();
    h.g.commit_offsets(commit("", -1, "kept", 1), h.now).unwrap();
    h.g.take_effects();
    h.g.remove_topics(&["gone".to_owned()].into_iter().collect());
    assert!(h.g.fetch_offset(&TopicPartition::new("gone", 0)).is_none());
    assert!(h.g.fetch_offset(&TopicPartition::new("kept", 0)).is_some());
    assert_eq!(h.g.take_effects().records.len(), 1);
}

#[test]
fn duplicate_partitions_answer_each_entry_and_write_the_last_valid_once() {
    let mut h = Harness::new(cfg());
    let entry = |p: i32, offset: i64, metadata: &str| OffsetCommit {
        tp: TopicPartition::new("t", p),
        offset,
        leader_epoch: None,
        metadata: metadata.into(),
    };
    let too_long = "x".repeat(cfg().offset_metadata_max_bytes + 1);
    let mut req = commit("", -1, "t", 0);
    req.offsets = vec![
        entry(0, 1, ""),
        entry(1, 10, ""),
        entry(0, 2, ""),
        entry(0, 3, &too_long),
        entry(1, 11, ""),
    ];
    let results = h.g.commit_offsets(req, h.now).unwrap();
    let errors: Vec<(i32, Option<ResponseError>)> =
        results.iter().map(|(tp, e)| (tp.partition, *e)).collect();
    assert_eq!(
        errors,
        vec![
            (0, None),
            (1, None),
            (0, None),
            (0, Some(ResponseError::OffsetMetadataTooLarge)),
            (1, None)
        ]
    );
    // The last valid entry wins, as Kafka's replay of one record per entry leaves it.
    assert_eq!(h.g.fetch_offset(&TopicPartition::new("t", 0)).unwrap().offset, 2);
    assert_eq!(h.g.fetch_offset(&TopicPartition::new("t", 1)).unwrap().offset, 11);
    let written: Vec<(i32, i64)> =
        h.g.take_effects()
            .records
            .iter()
            .map(|r| match r {
                GroupRecord::OffsetCommit(o) => (o.partition, o.offset),
                other => panic!("unexpected record {other:?}"),
            })
            .collect();
    assert_eq!(written, vec![(0, 2), (1, 11)]);
}

#[test]
fn a_hundred_thousand_duplicates_write_one_record() {
    let mut h = Harness::new(cfg());
    let mut req = commit("", -1, "t", 0);
    req.offsets = (0..100_000)
        .map(|i| OffsetCommit {
            tp: TopicPartition::new("t", 0),
            offset: i,
            leader_epoch: None,
            metadata: String::new(),
        })
        .collect();
    let results = h.g.commit_offsets(req, h.now).unwrap();
    assert_eq!(results.len(), 100_000);
    assert_eq!(h.g.take_effects().records.len(), 1);
    assert_eq!(
        h.g.fetch_offset(&TopicPartition::new("t", 0)).unwrap().offset,
        99_999
    );
}
