//! The writer behind [`super::ClusterGroupLog`]: commits each group's submissions in
//! submission order, and different groups independently of each other.
//!
//! Invariants:
//! - At most one commit per group is in flight; later submissions of that group queue behind
//!   it and go out together, in order, when it finishes.
//! - A group whose commit is slow (a proposal waiting for a quorum) holds up only its own
//!   queue: the loop keeps taking submissions and starting other groups' commits meanwhile.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::group::record::GroupRecord;
use crate::group::store::StoreError;

/// What one submission asks of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Work {
    /// Append these records of the group.
    Records(Vec<GroupRecord>),
    /// Retire the submission's epoch (after a failed write).
    Renew,
}

/// One queued request of the group coordinator.
pub(super) struct Submission {
    pub(super) group_id: String,
    pub(super) epoch: u64,
    pub(super) work: Work,
    pub(super) ack: oneshot::Sender<Result<(), StoreError>>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("group_id", &self.group_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Runs until every sender of `rx` is gone and all queued submissions are answered. `commit`
/// performs one submission and answers whether it is durable.
pub(super) async fn run<C, F>(commit: C, mut rx: mpsc::UnboundedReceiver<Submission>)
where
    C: Fn(String, u64, Work) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    // Groups with a commit in flight, with what queued behind it.
    let mut waiting: HashMap<String, VecDeque<Submission>> = HashMap::new();
    let mut running: JoinSet<()> = JoinSet::new();
    let mut tasks: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut open = true;
    while open || !running.is_empty() {
        tokio::select! {
            next = rx.recv(), if open => match next {
                Some(s) => match waiting.get_mut(&s.group_id) {
                    Some(queue) => queue.push_back(s),
                    None => {
                        waiting.insert(s.group_id.clone(), VecDeque::new());
                        let group = s.group_id.clone();
                        let id = start(&mut running, commit.clone(), VecDeque::from([s]));
                        tasks.insert(id, group);
                    }
                },
                None => open = false,
            },
            Some(done) = running.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        // A panicked commit: the acks it held were dropped, which answers
                        // their callers `Closed`; the group's queue carries on.
                        tracing::error!(error = %e, "group write task failed");
                        e.id()
                    }
                };
                let Some(group) = tasks.remove(&id) else { continue };
                match waiting.remove(&group) {
                    Some(queue) if !queue.is_empty() => {
                        waiting.insert(group.clone(), VecDeque::new());
                        let id = start(&mut running, commit.clone(), queue);
                        tasks.insert(id, group);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Starts committing `batch` (submissions of one group, in order); returns the task's id.
fn start<C, F>(running: &mut JoinSet<()>, commit: C, batch: VecDeque<Submission>) -> tokio::task::Id
where
    C: Fn(String, u64, Work) -> F + Send + 'static,
    F: Future<Output = Result<(), StoreError>> + Send + 'static,
{
    running
        .spawn(async move {
            for s in batch {
                let result = commit(s.group_id, s.epoch, s.work).await;
                // The caller may have gone away (connection closed); nothing to do then.
                let _ = s.ack.send(result);
            }
        })
        .id()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use parking_lot::Mutex;
    use tokio::sync::Notify;

    use super::*;

    fn submit(
        tx: &mpsc::UnboundedSender<Submission>,
        group: &str,
        epoch: u64,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (ack, rx) = oneshot::channel();
        let s = Submission {
            group_id: group.into(),
            epoch,
            work: Work::Records(Vec::new()),
            ack,
        };
        tx.send(s).expect("writer running");
        rx
    }

    #[tokio::test]
    async fn a_stalled_group_holds_up_only_its_own_queue() {
        let release = Arc::new(Notify::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let commit = {
            let (release, order) = (release.clone(), order.clone());
            move |group: String, epoch: u64, _work: Work| {
                let (release, order) = (release.clone(), order.clone());
                async move {
                    if group == "slow" && epoch == 1 {
                        release.notified().await;
                    }
                    order.lock().push((group, epoch));
                    Ok(())
                }
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(run(commit, rx));

        let slow_first = submit(&tx, "slow", 1);
        let slow_second = submit(&tx, "slow", 2);
        // Submitted after the stalled one, in later batches: each must still complete.
        for epoch in 1..=3 {
            let fast = submit(&tx, "fast", epoch);
            let answer = tokio::time::timeout(Duration::from_secs(10), fast).await;
            assert!(
                matches!(answer, Ok(Ok(Ok(())))),
                "fast write {epoch} waited for the stalled group: {answer:?}"
            );
        }
        release.notify_one();
        assert!(slow_first.await.expect("answered").is_ok());
        assert!(slow_second.await.expect("answered").is_ok());
        let slow: Vec<u64> = order
            .lock()
            .iter()
            .filter(|(g, _)| g == "slow")
            .map(|(_, e)| *e)
            .collect();
        assert_eq!(slow, vec![1, 2], "one group's submissions commit in order");
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("writer ends when the log is dropped")
            .expect("writer task");
    }
}
