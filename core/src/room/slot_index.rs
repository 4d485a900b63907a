//! Slots found by a key their own contents hold (feature `alloc`).

use core::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

/// An index of slot numbers (rooms of a growable table, members of a
/// server's endpoint) by a key that each slot holds: a hash table of 4-byte
/// slot numbers, hashed by the key read from the slot, rather than a map
/// that holds every key a second time. With keys of 16 to 65 bytes, that
/// is 5 bytes a bucket instead of 21 to 73.
///
/// Every call that may hash slots again (insertion, shrinking) is given
/// `key_of`, which reads the key a slot holds; a slot is listed only once
/// it holds its key.
///
/// ```
/// use roomwire_core::room::SlotIndex;
/// let names = ["lobby", "game:1"];
/// let key_of = |slot: u32| names.get(slot as usize).copied();
/// let mut index = SlotIndex::new(std::hash::RandomState::new());
/// index.insert(0, "lobby", key_of);
/// index.insert(1, "game:1", key_of);
/// assert_eq!(index.find("game:1", key_of), Some(1));
/// index.remove(1, "game:1");
/// assert_eq!(index.find("game:1", key_of), None);
/// assert_eq!(index.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct SlotIndex<S> {
    slots: HashTable<u32>,
    hasher: S,
}

impl<S: BuildHasher> SlotIndex<S> {
    /// An empty index hashing with `hasher`.
    pub fn new(hasher: S) -> Self {
        Self { slots: HashTable::new(), hasher }
    }

    /// The slot holding `key`.
    pub fn find<'k, K, F>(&self, key: &K, key_of: F) -> Option<u32>
    where
        K: Hash + PartialEq + ?Sized + 'k,
        F: Fn(u32) -> Option<&'k K>,
    {
        self.slots.find(self.hasher.hash_one(key), |&slot| key_of(slot) == Some(key)).copied()
    }

    /// List `slot`, which holds `key`.
    pub fn insert<'k, K, F>(&mut self, slot: u32, key: &K, key_of: F)
    where
        K: Hash + ?Sized + 'k,
        F: Fn(u32) -> Option<&'k K>,
    {
        let hasher = &self.hasher;
        // Growing, the table hashes its slots again by the keys they hold.
        let rehash = |&listed: &u32| key_of(listed).map_or(0, |key| hasher.hash_one(key));
        self.slots.insert_unique(hasher.hash_one(key), slot, rehash);
    }

    /// Take out `slot`, listed under `key` (its slot need not hold it any
    /// more).
    pub fn remove<K: Hash + ?Sized>(&mut self, slot: u32, key: &K) {
        if let Ok(entry) = self.slots.find_entry(self.hasher.hash_one(key), |&listed| listed == slot) {
            entry.remove();
        }
    }

    /// How many slots are listed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Give back the memory not in use.
    pub fn shrink_to_fit<'k, K, F>(&mut self, key_of: F)
    where
        K: Hash + ?Sized + 'k,
        F: Fn(u32) -> Option<&'k K>,
    {
        let hasher = &self.hasher;
        self.slots.shrink_to_fit(|&listed| key_of(listed).map_or(0, |key| hasher.hash_one(key)));
    }
}

impl<S: Default> Default for SlotIndex<S> {
    fn default() -> Self {
        Self { slots: HashTable::new(), hasher: S::default() }
    }
}
