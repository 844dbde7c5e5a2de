//! A bounded in-memory cache of accepted signatures, for refusing exact replays.
//!
//! An entry lives until its request time leaves the window (after which the window check
//! refuses the request anyway), or until the cache is full and it is the oldest entry. Entries
//! leave in insertion order, so an expired entry behind a live one lingers until it reaches the
//! front; lookups treat it as absent, and the capacity bounds memory regardless.

use std::collections::{HashMap, VecDeque};

/// The 32 bytes of a V2 signature (parsed, so `AB..` and `ab..` are the same key).
pub(crate) type Key = [u8; 32];

#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    /// Key to expiry (Unix ms).
    seen: HashMap<Key, u64>,
    /// Keys in insertion order, with the expiry they were inserted with.
    order: VecDeque<(Key, u64)>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` signatures (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `key` as accepted until `expires_ms`; `false` when it is already recorded and
    /// not yet expired at `now_ms` (a replay), in which case nothing changes.
    pub(crate) fn insert(&mut self, key: Key, expires_ms: u64, now_ms: u64) -> bool {
        self.evict_expired(now_ms);
        if self.seen.get(&key).is_some_and(|&exp| exp > now_ms) {
            return false;
        }
        while self.order.len() >= self.capacity {
            self.pop_front();
        }
        self.seen.insert(key, expires_ms);
        self.order.push_back((key, expires_ms));
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    fn evict_expired(&mut self, now_ms: u64) {
        while self.order.front().is_some_and(|&(_, exp)| exp <= now_ms) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((key, exp)) = self.order.pop_front() {
            // Only forget the key if this queue entry is the live one for it (a key re-inserted
            // after expiring has a newer entry further back).
            if self.seen.get(&key) == Some(&exp) {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn k(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn second_insert_is_a_replay_until_expiry() {
        let mut c = ReplayCache::new(10);
        assert!(c.insert(k(1), 100, 0));
        assert!(!c.insert(k(1), 100, 50));
        assert!(!c.insert(k(1), 100, 99));
        assert!(c.insert(k(1), 300, 100)); // expired: accepted again (the window refuses it anyway)
        assert!(!c.insert(k(1), 300, 150));
        assert!(c.insert(k(2), 300, 150));
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let mut c = ReplayCache::new(3);
        for n in 1..=3 {
            assert!(c.insert(k(n), 1_000, 0));
        }
        assert!(c.insert(k(4), 1_000, 0)); // evicts 1
        assert_eq!(c.len(), 3);
        assert!(!c.insert(k(2), 1_000, 0));
        assert!(!c.insert(k(4), 1_000, 0));
        assert!(c.insert(k(1), 1_000, 0)); // forgotten: evicts 2
        assert!(c.insert(k(2), 1_000, 0));
    }

    #[test]
    fn expired_entries_leave_first() {
        let mut c = ReplayCache::new(100);
        for n in 0..50 {
            assert!(c.insert(k(n), 10, 0));
        }
        assert!(c.insert(k(200), 1_000, 20));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn reinserted_key_survives_its_stale_queue_entry() {
        let mut c = ReplayCache::new(2);
        assert!(c.insert(k(1), 10, 0));
        assert!(c.insert(k(2), 1_000, 0));
        // k(1) expired at 10; re-accepted with a later expiry at 20 (evicting the stale entry).
        assert!(c.insert(k(1), 1_000, 20));
        assert!(!c.insert(k(1), 1_000, 30));
        assert!(!c.insert(k(2), 1_000, 30));
    }

    #[test]
    fn zero_capacity_means_one() {
        let mut c = ReplayCache::new(0);
        assert!(c.insert(k(1), 10, 0));
        assert!(!c.insert(k(1), 10, 1));
    }
}
