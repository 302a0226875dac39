//! The `rename` binder's negative cache: session ids the pool's store recently said it does
//! not know (a rename answered [`crate::store::RenameOutcome::NotFound`]).
//!
//! A client that keeps sending an id the store has never seen (a stale cookie, a bot, a
//! flood of made-up ids on a route that is down) would otherwise cost one store round-trip
//! per request, each up to the store's `timeout`. For `store.negative_ttl` (default `5s`)
//! after a `NotFound`, a failover of the same id skips the store and is treated as not found
//! again (the request is forwarded under the new id, as after a real `NotFound`).
//!
//! Bounded by construction: a table of [`UnknownIds::SLOTS`] slots (64 KiB), each the id's
//! seeded xxh3 hash and its expiry, in sets of [`UnknownIds::WAYS`] (one cache line). An id
//! lives in the set its hash picks; a new id takes a free or expired slot of that set, else the
//! one that expires first. Sets rather than single slots: with one slot per id, two of a
//! handful of ids that share a slot would evict each other on every request and reach the
//! store every time; a set holds them all until more ids than it has ways share it.
//! The mutex is held for one set's read or write, and only on the failover path of a `rename`
//! pool, which is about to wait for the network anyway. Only `NotFound` is cached: an id the
//! store knows, or a store error, is asked again every time.

use std::sync::Mutex;
use std::time::Duration;

/// Ids the store does not know, with an expiry.
#[derive(Debug)]
pub struct UnknownIds {
    ttl_ms: u64,
    seed: u64,
    /// `(hash, expires_ms)`; hash 0 is an empty slot.
    slots: Mutex<Box<[(u64, u64)]>>,
}

impl UnknownIds {
    /// Slots in the table: at most this many ids are remembered at once.
    pub const SLOTS: usize = 4096;
    /// Slots per set.
    pub const WAYS: usize = 4;

    /// A cache that remembers an id for `ttl`; `Duration::ZERO` remembers nothing.
    pub fn new(ttl: Duration) -> Self {
        UnknownIds {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            // Seeded per process: nobody can choose ids that fight over one slot.
            seed: rand::random(),
            slots: Mutex::new(vec![(0, 0); Self::SLOTS].into_boxed_slice()),
        }
    }

    fn hash(&self, id: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), self.seed).max(1)
    }

    /// The slots of the set `h` belongs to.
    fn set(h: u64) -> std::ops::Range<usize> {
        let first = (h as usize) % (Self::SLOTS / Self::WAYS) * Self::WAYS;
        first..first + Self::WAYS
    }

    /// Whether the store said it does not know `id` less than the TTL before `now_ms`.
    pub fn contains(&self, id: &str, now_ms: u64) -> bool {
        if self.ttl_ms == 0 {
            return false;
        }
        let h = self.hash(id);
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots[Self::set(h)]
            .iter()
            .any(|&(hash, expires)| hash == h && now_ms < expires)
    }

    /// Remembers that the store does not know `id`, from `now_ms` on.
    pub fn insert(&self, id: &str, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        let h = self.hash(id);
        let expires = now_ms.saturating_add(self.ttl_ms);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let set = &mut slots[Self::set(h)];
        // The id's own slot, else a free or expired one, else the one that expires first.
        let way = set
            .iter()
            .position(|&(hash, _)| hash == h)
            .or_else(|| set.iter().position(|&(hash, e)| hash == 0 || e <= now_ms))
            .unwrap_or_else(|| {
                (0..Self::WAYS)
                    .min_by_key(|&i| set[i].1)
                    .unwrap_or_default()
            });
        set[way] = (h, expires);
    }

    /// Ids remembered and not expired at `now_ms` (for tests and the status of the cache).
    pub fn len(&self, now_ms: u64) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().filter(|(h, e)| *h != 0 && now_ms < *e).count()
    }

    pub fn is_empty(&self, now_ms: u64) -> bool {
        self.len(now_ms) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_for_the_ttl_only() {
        let c = UnknownIds::new(Duration::from_secs(5));
        assert!(!c.contains("X.jvm1", 1_000));
        c.insert("X.jvm1", 1_000);
        assert!(c.contains("X.jvm1", 1_000));
        assert!(c.contains("X.jvm1", 5_999));
        assert!(!c.contains("X.jvm1", 6_000), "expired after 5 s");
        assert!(!c.contains("Y.jvm1", 1_000), "another id");
        // A new NotFound renews the entry.
        c.insert("X.jvm1", 6_000);
        assert!(c.contains("X.jvm1", 10_999));
    }

    /// More ids than a set has ways, all in one set: each stays until it is the one that
    /// expires first; ids in other sets are untouched.
    #[test]
    fn a_full_set_gives_up_the_slot_that_expires_first() {
        let c = UnknownIds::new(Duration::from_secs(5));
        let first = c.hash("A0.jvm1");
        let same_set: Vec<String> = (1..)
            .map(|i| format!("A{i}.jvm1"))
            .filter(|id| UnknownIds::set(c.hash(id)) == UnknownIds::set(first))
            .take(UnknownIds::WAYS)
            .collect();
        c.insert("A0.jvm1", 1_000);
        for (i, id) in same_set[..UnknownIds::WAYS - 1].iter().enumerate() {
            c.insert(id, 1_001 + i as u64);
        }
        // The set is full: all of them are remembered at once.
        assert!(c.contains("A0.jvm1", 2_000));
        assert!(same_set[..UnknownIds::WAYS - 1]
            .iter()
            .all(|id| c.contains(id, 2_000)));
        // Renewing A0 keeps its slot; the next id evicts the one that expires first.
        c.insert("A0.jvm1", 2_000);
        c.insert(&same_set[UnknownIds::WAYS - 1], 2_001);
        assert!(c.contains("A0.jvm1", 2_001));
        assert!(!c.contains(&same_set[0], 2_001), "expires first, evicted");
        assert!(same_set[1..].iter().all(|id| c.contains(id, 2_001)));
        assert_eq!(c.len(2_001), UnknownIds::WAYS);
    }

    #[test]
    fn zero_ttl_remembers_nothing() {
        let c = UnknownIds::new(Duration::ZERO);
        c.insert("X.jvm1", 1_000);
        assert!(!c.contains("X.jvm1", 1_000));
        assert!(c.is_empty(1_000));
    }

    #[test]
    fn bounded_whatever_the_number_of_ids() {
        // One new id per millisecond, each remembered far longer than the run: a set that is
        // full gives up the id that expires first, the oldest.
        let c = UnknownIds::new(Duration::from_secs(1_000));
        for i in 0..100_000u64 {
            c.insert(&format!("RANDOM{i}.jvm1"), i);
        }
        let n = c.len(100_000);
        assert!(n <= UnknownIds::SLOTS, "{n}");
        assert!(n > UnknownIds::SLOTS * 99 / 100, "{n}");
        // The latest ids are still there: one leaves only once four newer ones took its set
        // (the seed is random; with 1,024 sets, losing more than 5 of the last 100 that way is
        // too unlikely to happen).
        let recent = (99_900..100_000)
            .filter(|i| c.contains(&format!("RANDOM{i}.jvm1"), 100_000))
            .count();
        assert!(recent >= 95, "{recent}");
    }
}
