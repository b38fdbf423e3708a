//! Duplicate detection for requests naming the same resource more than once, in one pass (a
//! pairwise check costs a request of n entries n² comparisons on a runtime worker).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// The keys that occur more than once in `keys`.
pub(super) fn repeated<K: Hash + Eq>(keys: impl IntoIterator<Item = K>) -> HashSet<K> {
    let mut again: HashMap<K, bool> = HashMap::new();
    for k in keys {
        again.entry(k).and_modify(|twice| *twice = true).or_insert(false);
    }
    again
        .into_iter()
        .filter_map(|(k, twice)| twice.then_some(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_repeated_keys() {
        let found = repeated(["a", "b", "a", "c", "b", "a"]);
        assert_eq!(found, HashSet::from(["a", "b"]));
        assert!(repeated(0..100_000).is_empty());
    }
}
