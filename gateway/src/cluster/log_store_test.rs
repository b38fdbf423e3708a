use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

use super::*;
use crate::cluster::state_machine::StateMachineStore;

struct DiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for DiskBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let log =
            LogStore::open(&dir.path().join("raft")).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let sm = StateMachineStore::open(&dir.path().join("raft"))
            .map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

/// openraft's storage conformance suite, the acceptance bar for our log and state machine.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(DiskBuilder).unwrap();
}

#[tokio::test]
async fn log_and_vote_survive_reopen() {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    let dir = tempfile::tempdir().unwrap();
    let entry = |i: u64| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
        payload: EntryPayload::Blank,
    };
    {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        log.blocking_append((1..=10).map(entry)).await.unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 0), 4))
            .await
            .unwrap();
        log.truncate(LogId::new(CommittedLeaderId::new(1, 0), 9))
            .await
            .unwrap();
    }
    let mut log = LogStore::open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(4));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(8));
    let got: Vec<u64> = log
        .try_get_log_entries(0..100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(got, vec![5, 6, 7, 8]);
}
