//! Deadline bookkeeping for the coordinator's single timer task.
//!
//! Each group reports its next deadline after every call; the schedule keeps, per group, the
//! earliest deadline it has queued. Later deadlines are not queued: when the earlier one fires,
//! the group is ticked and reports its then-next deadline. So the heap holds at most one live
//! entry per group plus stale ones that are skipped when popped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Min-heap of `(deadline_ms, group_id)`.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: BinaryHeap<Reverse<(u64, String)>>,
    queued: HashMap<String, u64>,
}

impl Schedule {
    /// Queues `deadline` for `group` unless an earlier or equal one is queued. Returns true
    /// when it became the earliest deadline overall (the timer task must wake up).
    pub(crate) fn schedule(&mut self, group: &str, deadline: u64) -> bool {
        if self.queued.get(group).is_some_and(|d| *d <= deadline) {
            return false;
        }
        let earliest = self.peek().is_none_or(|d| deadline < d);
        self.queued.insert(group.to_owned(), deadline);
        self.heap.push(Reverse((deadline, group.to_owned())));
        earliest
    }

    /// The earliest queued deadline.
    pub(crate) fn peek(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// Pops every group whose queued deadline is due at `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Vec<String> {
        let mut due = Vec::new();
        while let Some(Reverse((d, _))) = self.heap.peek() {
            if *d > now {
                break;
            }
            let Some(Reverse((d, group))) = self.heap.pop() else {
                break;
            };
            if self.queued.get(&group) == Some(&d) {
                self.queued.remove(&group);
                due.push(group);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_earliest_per_group() {
        let mut s = Schedule::default();
        assert!(s.schedule("a", 100));
        assert!(!s.schedule("a", 200));
        assert!(s.schedule("a", 50));
        assert!(!s.schedule("b", 70));
        assert_eq!(s.pop_due(60), vec!["a".to_owned()]);
        assert_eq!(s.pop_due(99), vec!["b".to_owned()]);
        assert!(s.pop_due(1000).is_empty());
        assert_eq!(s.peek(), None);
    }
}
