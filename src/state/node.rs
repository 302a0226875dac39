//! The part of a node that outlives config reloads: operator state, health (passive marks and
//! the active checker's verdict), in-flight count and counters. All atomics: the request path
//! reads and bumps them without locks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::core::node_state::NodeState;

/// Milliseconds on a process-local monotonic clock (never 0, so 0 can mean "unset").
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    Instant::now().duration_since(start).as_millis() as u64 + 1
}

/// Health of one node: passive marks (connect errors, timeouts, `fail_on_status`) expire after
/// `recover_after`; the active checker owns `probe_down`.
#[derive(Debug, Default)]
pub struct Health {
    down_until_ms: AtomicU64,
    /// When the current passive mark was set (0: never).
    marked_at_ms: AtomicU64,
    probe_down: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn is_up(&self, now_ms: u64) -> bool {
        !self.probe_down.load(Ordering::Relaxed)
            && self.down_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Marks the node down for `recover_after`; returns true when it was up before.
    pub fn mark_down(&self, now_ms: u64, recover_after: Duration, reason: String) -> bool {
        let until =
            now_ms.saturating_add(u64::try_from(recover_after.as_millis()).unwrap_or(u64::MAX));
        self.marked_at_ms.store(now_ms, Ordering::Relaxed);
        let before = self.down_until_ms.swap(until, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        before <= now_ms && !self.probe_down.load(Ordering::Relaxed)
    }

    /// Clears a passive mark (good probes).
    pub fn clear_passive(&self) {
        if self.down_until_ms.load(Ordering::Relaxed) != 0 {
            self.down_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// A request sent at `sent_ms` succeeded: clear a passive mark only if it is older than
    /// that request. A mark set meanwhile (another request's timeout or failure) is newer
    /// evidence and stays.
    pub fn clear_passive_before(&self, sent_ms: u64) {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        if until != 0 && self.marked_at_ms.load(Ordering::Relaxed) < sent_ms {
            let _ =
                self.down_until_ms
                    .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Set by the active health checker.
    pub fn set_probe_down(&self, down: bool, reason: Option<String>) {
        self.probe_down.store(down, Ordering::Relaxed);
        if let Some(r) = reason {
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
        if !down {
            self.clear_passive();
        }
    }

    pub fn probe_down(&self) -> bool {
        self.probe_down.load(Ordering::Relaxed)
    }

    /// Is a passive mark (request failure) still in force at `now_ms`?
    pub fn passive_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) > now_ms
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Counters of one node (exported by the admin API and `/metrics`).
#[derive(Debug, Default)]
pub struct NodeStats {
    pub requests: AtomicU64,
    /// Sessions that failed over *to* this node.
    pub failovers_in: AtomicU64,
    /// Sessions that failed over *away from* this node.
    pub failovers_out: AtomicU64,
    pub connect_errors: AtomicU64,
    pub upstream_errors: AtomicU64,
}

/// The part of a node that outlives config reloads.
#[derive(Debug)]
pub struct NodeRuntime {
    state: AtomicU8,
    pub health: Health,
    pub inflight: AtomicU64,
    pub stats: NodeStats,
    /// Bumped whenever the node is marked down: pooled connections opened before are dropped
    /// by their pools instead of being tried (every worker keeps pools of its own).
    pub conn_epoch: AtomicU64,
    /// Request and health counters for `/metrics`.
    pub metrics: crate::state::metrics::NodeMetrics,
}

impl NodeRuntime {
    pub fn new(state: NodeState) -> Self {
        NodeRuntime {
            state: AtomicU8::new(state as u8),
            health: Health::default(),
            inflight: AtomicU64::new(0),
            stats: NodeStats::default(),
            conn_epoch: AtomicU64::new(0),
            metrics: Default::default(),
        }
    }

    pub fn state(&self) -> NodeState {
        NodeState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: NodeState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

impl NodeRuntime {
    /// Marks the node down (passive health) and retires its pooled connections.
    /// Returns true when it was up before.
    pub fn mark_down(&self, now_ms: u64, recover_after: Duration, reason: String) -> bool {
        self.conn_epoch.fetch_add(1, Ordering::Relaxed);
        self.health.mark_down(now_ms, recover_after, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_health_expires() {
        let h = Health::default();
        assert!(h.is_up(100));
        assert!(h.mark_down(100, Duration::from_millis(50), "refused".into()));
        assert!(!h.is_up(120));
        assert!(!h.mark_down(120, Duration::from_millis(50), "refused".into()));
        assert!(h.is_up(171));
        assert_eq!(h.last_error().as_deref(), Some("refused"));
    }

    #[test]
    fn success_clears_only_older_marks() {
        let h = Health::default();
        h.mark_down(100, Duration::from_secs(10), "timeout".into());
        h.clear_passive_before(100); // a request sent at the same moment proves nothing
        assert!(!h.is_up(150));
        h.clear_passive_before(120); // sent after the mark and answered: the node works
        assert!(h.is_up(150));
        h.mark_down(200, Duration::from_secs(10), "timeout".into());
        h.clear_passive_before(190); // sent before the new mark: the mark stays
        assert!(!h.is_up(250));
    }
}
