//! The `rename` binder's negative cache: session ids the pool's store recently said it does
//! not know (a rename answered [`crate::store::RenameOutcome::NotFound`]).
//!
//! A client that keeps sending an id the store has never seen (a stale cookie, a bot, a
//! flood of made-up ids on a route that is down) would otherwise cost one store round-trip
//! per request, each up to the store's `timeout`. For `store.negative_ttl` (default `5s`)
//! after a `NotFound`, a failover of the same id skips the store and is treated as not found
//! again (the request is forwarded under the new id, as after a real `NotFound`).
//!
//! Bounded by construction: a direct-mapped table of [`UnknownIds::SLOTS`] slots (64 KiB),
//! each the id's seeded xxh3 hash and its expiry; a new id takes its slot whatever was there.
//! The mutex is held for one slot read or write, and only on the failover path of a `rename`
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

    /// Whether the store said it does not know `id` less than the TTL before `now_ms`.
    pub fn contains(&self, id: &str, now_ms: u64) -> bool {
        if self.ttl_ms == 0 {
            return false;
        }
        let h = self.hash(id);
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (hash, expires) = slots[(h as usize) % Self::SLOTS];
        hash == h && now_ms < expires
    }

    /// Remembers that the store does not know `id`, from `now_ms` on.
    pub fn insert(&self, id: &str, now_ms: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        let h = self.hash(id);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots[(h as usize) % Self::SLOTS] = (h, now_ms.saturating_add(self.ttl_ms));
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

    #[test]
    fn zero_ttl_remembers_nothing() {
        let c = UnknownIds::new(Duration::ZERO);
        c.insert("X.jvm1", 1_000);
        assert!(!c.contains("X.jvm1", 1_000));
        assert!(c.is_empty(1_000));
    }

    #[test]
    fn bounded_whatever_the_number_of_ids() {
        let c = UnknownIds::new(Duration::from_secs(5));
        for i in 0..100_000 {
            c.insert(&format!("RANDOM{i}.jvm1"), 1_000);
        }
        let n = c.len(1_000);
        assert!(n <= UnknownIds::SLOTS, "{n}");
        // Most slots are used (a direct-mapped table loses some to collisions).
        assert!(n > UnknownIds::SLOTS * 9 / 10, "{n}");
        // The latest ids are mostly still there.
        let recent = (99_900..100_000)
            .filter(|i| c.contains(&format!("RANDOM{i}.jvm1"), 1_000))
            .count();
        assert!(recent > 90, "{recent}");
    }
}
