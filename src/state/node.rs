//! The part of a node that outlives config reloads: operator state, health (passive marks and
//! the active checker's verdict), in-flight count, the queue of requests waiting for a node at
//! its `max_connections`, and counters. All atomics: the request path reads and bumps them
//! without locks (a request that waits in the queue registers with a `Notify`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::core::node_state::NodeState;

/// Milliseconds on a process-local monotonic clock (never 0, so 0 can mean "unset").
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] of an instant already read (a request's start): one clock read serves both.
pub fn ms_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(|| at);
    at.saturating_duration_since(start).as_millis() as u64 + 1
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
    /// Requests refused by the node's connection limit, by [`Refusal`].
    pub refused: [AtomicU64; 2],
}

/// Why a request got no slot on a node at its `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node's queue already held `max_queue_per_node` requests.
    QueueFull = 0,
    /// No slot freed within `timeouts.queue`.
    QueueTimeout = 1,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::QueueFull, Refusal::QueueTimeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
        }
    }
}

/// The part of a node that outlives config reloads.
#[derive(Debug)]
pub struct NodeRuntime {
    state: AtomicU8,
    pub health: Health,
    /// Requests holding a slot: connecting to the node, or waiting for or reading its answer
    /// (tunnels included). What `max_connections` caps.
    pub inflight: AtomicU64,
    /// Requests waiting for a slot.
    pub queued: AtomicU64,
    /// Wakes one waiting request when a slot frees.
    slot_freed: Notify,
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
            queued: AtomicU64::new(0),
            slot_freed: Notify::new(),
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

/// Slots: a request holds one while it connects to the node and until its response (or
/// tunnel) ends. On an unlimited node taking one is the in-flight count's increment; with a
/// limit it is a compare-and-swap below the limit, and a request that finds none waits in the
/// node's queue, woken in arrival order as slots free.
///
/// The queue counter and the in-flight count are read and written `SeqCst` on both sides (a
/// waiter's enqueue-then-retry, a release's decrement-then-look), so a release never misses a
/// waiter that found the node full. On x86 that costs nothing over `Relaxed` for the RMWs.
impl NodeRuntime {
    /// Takes a slot if there is one now: always on an unlimited node; under `limit` only when
    /// nobody is queued (a newcomer does not pass the queue).
    pub fn try_take_slot(&self, limit: Option<u32>) -> bool {
        let Some(limit) = limit else {
            self.inflight.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        self.queued.load(Ordering::SeqCst) == 0 && self.take_below(limit)
    }

    fn take_below(&self, limit: u32) -> bool {
        self.inflight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < u64::from(limit)).then_some(n + 1)
            })
            .is_ok()
    }

    /// Does the node have a free slot for a newcomer right now?
    pub fn has_room(&self, limit: Option<u32>) -> bool {
        limit.is_none_or(|l| {
            self.queued.load(Ordering::Relaxed) == 0
                && self.inflight.load(Ordering::Relaxed) < u64::from(l)
        })
    }

    /// Joins the queue; `None` when `max_queue` requests wait already. The ticket leaves the
    /// queue when dropped.
    pub fn enqueue(&self, max_queue: u32) -> Option<QueueTicket<'_>> {
        let before = self.queued.fetch_add(1, Ordering::SeqCst);
        let ticket = QueueTicket(self);
        (before < u64::from(max_queue)).then_some(ticket)
    }

    /// Waits in the queue until a slot is taken (no timeout: the caller drops this to give
    /// up).
    pub async fn wait_for_slot(&self, limit: u32, ticket: QueueTicket<'_>) {
        loop {
            let freed = self.slot_freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a release between the look and the wait wakes it.
            freed.as_mut().enable();
            if self.take_below(limit) {
                drop(ticket);
                return;
            }
            freed.await;
        }
    }

    /// Gives a slot back and wakes the first waiting request, if any.
    pub fn release_slot(&self) {
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.slot_freed.notify_one();
        }
    }

    /// Counts a refusal of the connection limit.
    pub fn refused(&self, why: Refusal) {
        self.stats.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A place in a node's queue, given up on drop.
#[derive(Debug)]
pub struct QueueTicket<'a>(&'a NodeRuntime);

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
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
