//! A hash map split into shards that each grow on their own, for the index's maps that grow with the log.
//!
//! A hash table grows by moving every entry into one twice its size, all in one insert: a table of a
//! million streams took ~140 ms to grow (~280 ms at two million), and the writer does it holding the
//! index's lock, so every append and read waits. With [`SHARDS`] shards an insert moves at most one
//! shard's entries (under 1 ms at a million and 1.4 ms at two, measured), at the cost of hashing each key
//! twice.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hash};

/// Shards of every map (a power of two: the top bits of a hash pick one).
const SHARDS: usize = 256;

/// A map of `K` to `V`. Hashers are seeded at random per map and per shard (keys come from clients), and
/// the shard's seed differs from the picker's: within a shard, keys share the picker's top bits only.
pub(super) struct ShardedMap<K, V> {
    shards: Box<[foldhash::HashMap<K, V>]>,
    pick: foldhash::fast::RandomState,
}

impl<K: Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| foldhash::HashMap::default()).collect(),
            pick: foldhash::fast::RandomState::default(),
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        (self.pick.hash_one(key) >> (u64::BITS - SHARDS.trailing_zeros())) as usize
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.shards[self.shard(key)].get(key)
    }

    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let shard = self.shard(key);
        self.shards[shard].get_mut(key)
    }

    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let shard = self.shard(&key);
        self.shards[shard].entry(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let shard = self.shard(&key);
        self.shards[shard].insert(key, value)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map_and_spreads_keys_over_the_shards() {
        let mut map: ShardedMap<Box<str>, u64> = ShardedMap::default();
        for i in 0..10_000u64 {
            assert_eq!(map.insert(format!("P520102-{i}").into(), i), None);
        }
        assert_eq!(map.insert("P520102-7".into(), 70), Some(7), "a key is in one shard only");
        *map.get_mut("P520102-8").expect("present") += 1;
        match map.entry("P520102-9".into()) {
            Entry::Occupied(e) => assert_eq!(*e.get(), 9),
            Entry::Vacant(_) => panic!("present"),
        }
        assert!(matches!(map.entry("P520102-x".into()), Entry::Vacant(_)));
        assert_eq!((map.get("P520102-7"), map.get("P520102-8"), map.get("P520102-x")), (Some(&70), Some(&9), None));
        assert_eq!(map.len(), 10_000);
        // Every shard is used, none holds more than twice its share: no shard grows like the whole map.
        let (least, most) = map.shards.iter().fold((usize::MAX, 0), |(l, m), s| (l.min(s.len()), m.max(s.len())));
        assert!(least > 0 && most < 2 * 10_000 / SHARDS, "shard sizes {least}..={most}");
    }
}
