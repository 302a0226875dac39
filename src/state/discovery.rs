//! What the balancer knows of each pool's DNS discovery, for the admin API, the status page
//! and `/metrics`: the last lookup's time, result and record count, the next lookup, and the
//! counters of lookups, conflicts and nodes added and removed. The lookups themselves run in
//! `control::discovery`; nothing here is on the request path.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::config::NodeSource;

/// One pool's discovery source as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// `srv` or `host`.
    pub kind: &'static str,
    /// The name looked up.
    pub name: String,
    /// Unix ms of the last lookup (0: none yet).
    pub last_lookup_ms: u64,
    /// Unix ms of the next one.
    pub next_lookup_ms: u64,
    /// Nodes the last good answer named.
    pub records: usize,
    /// The last lookup's error, while lookups fail.
    pub error: Option<String>,
    /// The set in use is older than the last lookup (it failed, or an empty answer is inside
    /// its grace period).
    pub stale: bool,
    /// Has any lookup answered yet (an empty pool answers 503 until one does)?
    pub answered: bool,
}

/// Result label of `stickyroute_discovery_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LookupResult {
    Ok,
    Empty,
    Error,
}

impl LookupResult {
    pub const ALL: [LookupResult; 3] = [LookupResult::Ok, LookupResult::Empty, LookupResult::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Ok => "ok",
            LookupResult::Empty => "empty",
            LookupResult::Error => "error",
        }
    }
}

/// Counters of one pool.
#[derive(Debug, Clone, Default)]
pub struct PoolCounters {
    pub lookups: BTreeMap<LookupResult, u64>,
    /// By [`NodeSource::as_str`].
    pub added: BTreeMap<&'static str, u64>,
    pub removed: BTreeMap<&'static str, u64>,
    /// Discovered routes that a file (or API) node already had.
    pub conflicts: u64,
}

#[derive(Debug, Default)]
struct Board {
    sources: BTreeMap<String, SourceStatus>,
    counters: BTreeMap<String, PoolCounters>,
    /// (pool, route) conflicts already reported.
    conflicts: std::collections::BTreeSet<(String, String)>,
}

/// Every pool's discovery status and counters.
#[derive(Debug, Default)]
pub struct DiscoveryBoard {
    inner: Mutex<Board>,
}

impl DiscoveryBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Updates the status of `pool`'s source.
    pub fn update(&self, pool: &str, f: impl FnOnce(&mut SourceStatus)) {
        f(self.lock().sources.entry(pool.to_string()).or_default());
    }

    /// Forgets a pool whose discovery block is gone (its counters stay until restart).
    pub fn forget_source(&self, pool: &str) {
        self.lock().sources.remove(pool);
    }

    pub fn source(&self, pool: &str) -> Option<SourceStatus> {
        self.lock().sources.get(pool).cloned()
    }

    pub fn count_lookup(&self, pool: &str, result: LookupResult) {
        *self
            .lock()
            .counters
            .entry(pool.to_string())
            .or_default()
            .lookups
            .entry(result)
            .or_default() += 1;
    }

    pub fn count_added(&self, pool: &str, source: NodeSource) {
        let mut b = self.lock();
        let c = b.counters.entry(pool.to_string()).or_default();
        *c.added.entry(source.as_str()).or_default() += 1;
    }

    pub fn count_removed(&self, pool: &str, source: NodeSource) {
        let mut b = self.lock();
        let c = b.counters.entry(pool.to_string()).or_default();
        *c.removed.entry(source.as_str()).or_default() += 1;
    }

    /// Records that a discovered route of `pool` is another node's; true (and counted) the
    /// first time, so that a conflict that lasts is logged and counted once.
    pub fn note_conflict(&self, pool: &str, route: &str) -> bool {
        let mut b = self.lock();
        if !b.conflicts.insert((pool.to_string(), route.to_string())) {
            return false;
        }
        b.counters.entry(pool.to_string()).or_default().conflicts += 1;
        true
    }

    /// Every pool's counters, by pool name.
    pub fn counters(&self) -> BTreeMap<String, PoolCounters> {
        self.lock().counters.clone()
    }
}
