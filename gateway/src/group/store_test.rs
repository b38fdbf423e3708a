use super::*;
use crate::group::record::OffsetCommitRecord;

fn commit(group: &str, partition: i32, offset: i64) -> GroupRecord {
    GroupRecord::OffsetCommit(OffsetCommitRecord {
        group_id: group.into(),
        topic: "t".into(),
        partition,
        offset,
        leader_epoch: None,
        metadata: String::new(),
        commit_timestamp_ms: 1,
        expire_timestamp_ms: None,
    })
}

async fn write(store: &GroupStore, records: Vec<GroupRecord>) {
    store
        .submit(records)
        .await
        .expect("writer alive")
        .expect("durable");
}

#[tokio::test]
async fn replays_after_reopen_and_truncates_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (store, image) = GroupStore::open(dir.path(), u64::MAX).unwrap();
    assert!(image.groups.is_empty());
    write(&store, vec![commit("a", 0, 1), commit("a", 1, 2)]).await;
    write(
        &store,
        vec![
            commit("b", 0, 3),
            GroupRecord::OffsetDelete {
                group_id: "a".into(),
                topic: "t".into(),
                partition: 1,
            },
        ],
    )
    .await;
    write(
        &store,
        vec![
            commit("c", 0, 4),
            GroupRecord::GroupDelete { group_id: "c".into() },
        ],
    )
    .await;
    drop(store);

    let log = file_path(dir.path(), "log", 0);
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[0, 0, 0, 50, 1, 2, 3]).unwrap();
    drop(f);

    let (store, image) = GroupStore::open(dir.path(), u64::MAX).unwrap();
    let mut expected = GroupImage::default();
    for r in [commit("a", 0, 1), commit("b", 0, 3)] {
        expected.apply(&r);
    }
    assert_eq!(image, expected);
    write(&store, vec![commit("a", 0, 10)]).await;
    drop(store);
    let (_store, image) = GroupStore::open(dir.path(), u64::MAX).unwrap();
    assert_eq!(image.groups["a"].offsets[&("t".to_owned(), 0)].offset, 10);
}

#[tokio::test]
async fn compaction_snapshots_and_starts_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = GroupStore::open(dir.path(), 256).unwrap();
    for i in 0..50 {
        write(&store, vec![commit("g", i % 3, i64::from(i))]).await;
    }
    drop(store);
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("snapshot-")), "{names:?}");
    assert!(
        !names.contains(&"log-00000000000000000000.bin".to_owned()),
        "{names:?}"
    );
    let (_store, image) = GroupStore::open(dir.path(), 256).unwrap();
    let offsets: Vec<i64> = image.groups["g"].offsets.values().map(|o| o.offset).collect();
    assert_eq!(offsets, vec![48, 49, 47]);
}

#[test]
fn corrupt_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(file_path(dir.path(), "snapshot", 3), b"KGGROUP\x01garbage").unwrap();
    assert!(matches!(
        GroupStore::open(dir.path(), u64::MAX),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_group_left_without_metadata_or_offsets_leaves_the_image() {
    let delete = |partition| GroupRecord::OffsetDelete {
        group_id: "a".into(),
        topic: "t".into(),
        partition,
    };
    let mut image = GroupImage::default();
    for r in [commit("a", 0, 1), commit("a", 1, 2), delete(0)] {
        image.apply(&r);
    }
    assert_eq!(image.groups["a"].offsets.len(), 1);
    image.apply(&delete(1));
    assert!(image.groups.is_empty(), "{image:?}");
    let mut rebuilt = GroupImage::default();
    image.records().for_each(|r| rebuilt.apply(&r));
    assert_eq!(rebuilt, image, "a snapshot rebuilds the same image");
}
