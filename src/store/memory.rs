//! The `memory` store: sessions in a map inside this process.
//!
//! Owns the embedded map used by the demo (three demo nodes and the balancer in one process share
//! one map through clones of the handle). One `Mutex` guards the whole map so that a rename is a
//! single step: no reader ever sees both ids missing. Nothing `.await`s while the lock is held,
//! hence `std::sync::Mutex` rather than tokio's.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{RenameOutcome, SessionRecord, MEMORY_STORE_TIMEOUT};

/// Handle on an embedded session map; clones share the map.
#[derive(Clone)]
pub struct MemoryStore {
    map: Arc<Mutex<HashMap<String, SessionRecord>>>,
    timeout: Duration,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.lock().len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A new, empty map with [`MEMORY_STORE_TIMEOUT`].
    pub fn new() -> Self {
        Self::with_timeout(MEMORY_STORE_TIMEOUT)
    }

    pub(crate) fn with_timeout(timeout: Duration) -> Self {
        MemoryStore {
            map: Arc::new(Mutex::new(HashMap::new())),
            timeout,
        }
    }

    /// Number of stored sessions, expired ones included.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The map; a panic while it was locked left no half-done change behind (every change is a
    /// single map call), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, SessionRecord>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn rename(&self, old: &str, new: &str) -> RenameOutcome {
        let mut map = self.lock();
        if map.contains_key(new) {
            // Like RENAMENX: an existing `new` is never overwritten.
            return RenameOutcome::AlreadyRenamed;
        }
        match map.remove(old) {
            Some(record) => {
                map.insert(new.to_owned(), record);
                RenameOutcome::Renamed
            }
            None => RenameOutcome::NotFound,
        }
    }

    /// The stored record, expired or not (the caller filters).
    pub(crate) fn load(&self, id: &str) -> Option<SessionRecord> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn save(&self, id: &str, record: &SessionRecord) {
        self.lock().insert(id.to_owned(), record.clone());
    }

    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> SessionRecord {
        SessionRecord {
            data: serde_json::json!({ "n": n }),
            last_access_ms: n,
            max_inactive_secs: 60,
            valid: true,
        }
    }

    #[test]
    fn rename_cases() {
        // (name, ids present before, outcome, ids present after)
        let cases: [(&str, &[&str], RenameOutcome, &[&str]); 4] = [
            ("old only", &["a"], RenameOutcome::Renamed, &["b"]),
            ("new only", &["b"], RenameOutcome::AlreadyRenamed, &["b"]),
            ("neither", &[], RenameOutcome::NotFound, &[]),
            (
                "both: new kept, old untouched",
                &["a", "b"],
                RenameOutcome::AlreadyRenamed,
                &["a", "b"],
            ),
        ];
        for (name, before, outcome, after) in cases {
            let store = MemoryStore::new();
            for id in before {
                store.save(id, &record(1));
            }
            assert_eq!(store.rename("a", "b"), outcome, "{name}");
            let mut present: Vec<_> = ["a", "b"]
                .into_iter()
                .filter(|id| store.load(id).is_some())
                .collect();
            present.sort_unstable();
            assert_eq!(present, after, "{name}");
        }
    }

    #[test]
    fn rename_keeps_the_record() {
        let store = MemoryStore::new();
        store.save("a", &record(7));
        store.rename("a", "b");
        assert_eq!(store.load("b"), Some(record(7)));
    }

    #[test]
    fn concurrent_renames_keep_exactly_one_session() {
        let store = MemoryStore::new();
        store.save("a", &record(3));
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| scope.spawn(|| store.rename("a", "b")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let renamed = outcomes
            .iter()
            .filter(|o| **o == RenameOutcome::Renamed)
            .count();
        assert_eq!(renamed, 1);
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, RenameOutcome::Renamed | RenameOutcome::AlreadyRenamed)));
        assert_eq!(store.len(), 1);
        assert_eq!(store.load("b"), Some(record(3)));
    }

    #[test]
    fn save_replaces_and_remove_deletes() {
        let store = MemoryStore::new();
        store.save("a", &record(1));
        store.save("a", &record(2));
        assert_eq!(store.load("a"), Some(record(2)));
        store.remove("a");
        store.remove("a");
        assert!(store.is_empty());
    }
}
