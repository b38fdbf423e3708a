//! Whether this node is the cluster's only member, for storage that may take shortcuts only
//! while no other gateway can serve its partitions (the SeaweedMQ write-ahead log answers
//! acks=all from one local copy: safe alone, not once a second gateway may take a partition
//! over; docs/seaweedmq-mapping.md §3.3).
//!
//! Invariants:
//! - the published value is `true` only while the applied membership (voters and learners) is
//!   exactly this node and no member is being added;
//! - before a member is added, the value turns `false` and the registered grow hook (the
//!   storage's drain) completes; a hook error refuses the addition, so a second member never
//!   joins while records are acknowledged from this node's copy alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::NodeId;

/// Runs before a second member is added; `Err` refuses the addition with its message.
pub type GrowHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Publishes "this node is alone" and guards membership growth.
pub struct SoloGate {
    node_id: NodeId,
    tx: watch::Sender<bool>,
    state: Mutex<State>,
    hook: OnceLock<GrowHook>,
}

#[derive(Default)]
struct State {
    alone: bool,
    growing: usize,
}

impl std::fmt::Debug for SoloGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("SoloGate")
            .field("node_id", &self.node_id)
            .field("alone", &st.alone)
            .field("growing", &st.growing)
            .finish_non_exhaustive()
    }
}

impl SoloGate {
    /// A gate for `node_id` publishing into `tx` (starts `false`: membership unknown).
    pub fn new(node_id: NodeId, tx: watch::Sender<bool>) -> Self {
        tx.send_replace(false);
        Self {
            node_id,
            tx,
            state: Mutex::new(State::default()),
            hook: OnceLock::new(),
        }
    }

    /// Registers the hook run before a member is added (once; later calls are ignored).
    pub fn set_grow_hook(&self, hook: GrowHook) {
        let _ = self.hook.set(hook);
    }

    /// Records the applied membership: `members` are every voter and learner id.
    pub fn membership(&self, members: impl IntoIterator<Item = NodeId>) {
        let mut ids = members.into_iter();
        let alone = ids.next() == Some(self.node_id) && ids.next().is_none();
        let mut st = self.state.lock();
        st.alone = alone;
        self.publish(&st);
    }

    /// Turns the value `false` and runs the grow hook; the returned guard keeps it `false` until
    /// dropped (by then the new membership, or the failure, is what decides).
    ///
    /// # Errors
    /// The hook's message when it refuses.
    pub async fn before_grow(self: &Arc<Self>) -> Result<GrowGuard, String> {
        {
            let mut st = self.state.lock();
            st.growing += 1;
            self.publish(&st);
        }
        let guard = GrowGuard(Arc::clone(self));
        if let Some(hook) = self.hook.get() {
            hook().await?;
        }
        Ok(guard)
    }

    /// A receiver of the published value.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    fn publish(&self, st: &State) {
        let value = st.alone && st.growing == 0;
        self.tx.send_if_modified(|v| std::mem::replace(v, value) != value);
    }
}

/// Keeps [`SoloGate`] at `false` while a member addition runs.
#[derive(Debug)]
pub struct GrowGuard(Arc<SoloGate>);

impl Drop for GrowGuard {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.growing = st.growing.saturating_sub(1);
        self.0.publish(&st);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn alone_only_with_exactly_this_node_and_no_growth() {
        let (tx, rx) = watch::channel(true);
        let gate = Arc::new(SoloGate::new(1, tx));
        assert!(!*rx.borrow(), "unknown membership is not alone");
        gate.membership([1]);
        assert!(*rx.borrow());
        gate.membership([1, 2]);
        assert!(!*rx.borrow());
        gate.membership([2]);
        assert!(!*rx.borrow(), "a membership without this node");
        gate.membership([]);
        assert!(!*rx.borrow());
        gate.membership([1]);
        assert!(*rx.borrow());
    }

    #[tokio::test]
    async fn growth_turns_it_off_before_the_hook_and_a_refusal_restores_it() {
        let (tx, rx) = watch::channel(false);
        let gate = Arc::new(SoloGate::new(1, tx));
        gate.membership([1]);
        let saw_off = Arc::new(AtomicBool::new(false));
        let refuse = Arc::new(AtomicBool::new(true));
        {
            let (rx, saw_off, refuse) = (rx.clone(), Arc::clone(&saw_off), Arc::clone(&refuse));
            gate.set_grow_hook(Arc::new(move || {
                saw_off.store(!*rx.borrow(), Ordering::SeqCst);
                let refuse = refuse.load(Ordering::SeqCst);
                Box::pin(async move {
                    if refuse {
                        Err("not drained".to_owned())
                    } else {
                        Ok(())
                    }
                })
            }));
        }
        assert_eq!(gate.before_grow().await.err().as_deref(), Some("not drained"));
        assert!(saw_off.load(Ordering::SeqCst), "the hook ran with the value off");
        assert!(*rx.borrow(), "a refused growth leaves a lone node alone");

        refuse.store(false, Ordering::SeqCst);
        let guard = gate.before_grow().await.expect("hook accepts");
        assert!(!*rx.borrow());
        // The membership applied while the guard is held still has one node (the learner is
        // not yet in it): the value stays off.
        gate.membership([1]);
        assert!(!*rx.borrow());
        gate.membership([1, 2]);
        drop(guard);
        assert!(!*rx.borrow(), "two members");
    }
}
