//! Prometheus metrics: the names (one constant each) and the counters the request path bumps.
//! `control::exposition` renders them for `/metrics`.
//!
//! The request path never takes a lock or looks up a label set: every counter lives in plain
//! atomics next to what it counts ([`NodeMetrics`] in each node's runtime, [`PoolMetrics`] in
//! each pool's, `BalancerMetrics` in the balancer), and the exposition walks the current
//! snapshot at scrape time and exports them with their labels. One request costs two relaxed
//! atomic adds for the counter and four for the duration histograms (the pool's and the node's).
//!
//! A node's counters live as long as its runtime: they survive reloads that keep its route and
//! address; a node whose address changes starts from zero (Prometheus sees a counter reset), and
//! a removed node's series end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;

use crate::core::select::Outcome;

// Names. Counters are written without `_total`: the OpenMetrics encoder appends it.

/// `stickyroute_requests_total{pool,node,outcome,status_class}`: client requests answered.
/// `outcome` is `hit`, `new`, `failover` or `none` (no node was selected: no pool, no
/// candidate); `node` and `pool` are empty when there was none.
pub const REQUESTS: &str = "stickyroute_requests";
/// `stickyroute_request_duration_seconds{pool}`: time to the response head, histogram.
pub const REQUEST_DURATION: &str = "stickyroute_request_duration_seconds";
/// `stickyroute_node_request_duration_seconds{pool,node}`: the same, by the node that answered
/// (requests that reached no node are only in [`REQUEST_DURATION`]).
pub const NODE_REQUEST_DURATION: &str = "stickyroute_node_request_duration_seconds";
/// `stickyroute_upstream_requests_total{pool,node}`: requests sent to a node (retries included).
pub const UPSTREAM_REQUESTS: &str = "stickyroute_upstream_requests";
/// `stickyroute_upstream_errors_total{pool,node,kind}`: `kind` = `connect` or `response`.
pub const UPSTREAM_ERRORS: &str = "stickyroute_upstream_errors";
/// `stickyroute_failovers_total{pool,node,direction}`: sessions moved to (`in`) or away from
/// (`out`) a node.
pub const FAILOVERS: &str = "stickyroute_failovers";
/// `stickyroute_discovery_lookups_total{pool,result}`: DNS lookups of a pool's discovery,
/// `result` = `ok`, `empty` (no records) or `error`.
pub const DISCOVERY_LOOKUPS: &str = "stickyroute_discovery_lookups";
/// `stickyroute_discovery_nodes{pool}`: nodes the pool's discovery names now (leaving ones
/// excluded).
pub const DISCOVERY_NODES: &str = "stickyroute_discovery_nodes";
/// `stickyroute_discovery_conflicts_total{pool}`: discovered routes a file or API node already
/// had (the existing node wins).
pub const DISCOVERY_CONFLICTS: &str = "stickyroute_discovery_conflicts";
/// `stickyroute_nodes_added_total{pool,source}`: nodes that joined at runtime, `source` =
/// `discovery` or `api`.
pub const NODES_ADDED: &str = "stickyroute_nodes_added";
/// `stickyroute_nodes_removed_total{pool,source}`: runtime nodes removed (drained, at their
/// deadline, or dropped by a reload).
pub const NODES_REMOVED: &str = "stickyroute_nodes_removed";
/// `stickyroute_rebinds_total{pool,binder,result}`.
pub const REBINDS: &str = "stickyroute_rebinds";
/// `stickyroute_store_errors_total{pool}`: session store failures of the `rename` binder.
pub const STORE_ERRORS: &str = "stickyroute_store_errors";
/// `stickyroute_rename_unknown_cached_total{pool}`: `rename` failovers of an id the store had
/// just said it does not know, answered from the negative cache without asking the store.
pub const RENAME_UNKNOWN_CACHED: &str = "stickyroute_rename_unknown_cached";
/// `stickyroute_health_transitions_total{pool,node,to,check}`: `to` = `up` / `down`,
/// `check` = `active` (probes) or `passive` (request failures).
pub const HEALTH_TRANSITIONS: &str = "stickyroute_health_transitions";
/// `stickyroute_node_up{pool,node}`: 1 when the node is up.
pub const NODE_UP: &str = "stickyroute_node_up";
/// `stickyroute_node_state{pool,node,state}`: 1 for the node's current runtime state.
pub const NODE_STATE: &str = "stickyroute_node_state";
/// `stickyroute_node_in_flight{pool,node}`.
pub const NODE_IN_FLIGHT: &str = "stickyroute_node_in_flight";
/// Gauge: requests waiting for a slot on a node at its `max_connections`.
pub const NODE_QUEUE_LENGTH: &str = "stickyroute_node_queue_length";
/// Gauge: a node's `max_connections` (only nodes that have one).
pub const NODE_MAX_CONNECTIONS: &str = "stickyroute_node_max_connections";
/// Counter: requests refused by a node's connection limit, by reason (`queue_full`,
/// `queue_timeout`).
pub const NODE_LIMIT_REFUSED: &str = "stickyroute_node_limit_refused";
/// `stickyroute_node_live_sessions{pool,node}`: sessions in the registry pinned to the node.
pub const NODE_LIVE_SESSIONS: &str = "stickyroute_node_live_sessions";
/// `stickyroute_node_drained{pool,node}`: 1 when a draining or disabled node has no live session.
pub const NODE_DRAINED: &str = "stickyroute_node_drained";
/// `stickyroute_registry_sessions`: sessions tracked.
pub const REGISTRY_SESSIONS: &str = "stickyroute_registry_sessions";
/// `stickyroute_registry_max_sessions`: the bound (`registry.max_sessions`).
pub const REGISTRY_MAX_SESSIONS: &str = "stickyroute_registry_max_sessions";
/// `stickyroute_registry_rejected_total`: new sessions not tracked because the registry was full.
pub const REGISTRY_REJECTED: &str = "stickyroute_registry_rejected";
/// `stickyroute_registry_expired_total`: sessions forgotten after `session.idle_timeout`.
pub const REGISTRY_EXPIRED: &str = "stickyroute_registry_expired";
/// `stickyroute_access_log_dropped_total`: access lines dropped because the log writer fell
/// behind.
pub const ACCESS_LOG_DROPPED: &str = "stickyroute_access_log_dropped";
/// The count behind [`ACCESS_LOG_DROPPED`], bumped by the access log (`proxy::access_log`).
pub static ACCESS_LOG_DROPPED_LINES: AtomicU64 = AtomicU64::new(0);
/// `stickyroute_cluster_connected{group}`: 1 when the cluster's Redis is reachable (only with
/// a `cluster:` section; the `node_*` gauges stay this instance's own).
pub const CLUSTER_CONNECTED: &str = "stickyroute_cluster_connected";
/// `stickyroute_cluster_instances{group}`: live instances of the group, this one included.
pub const CLUSTER_INSTANCES: &str = "stickyroute_cluster_instances";
/// `stickyroute_cluster_errors_total{group}`: failed Redis operations of the cluster task.
pub const CLUSTER_ERRORS: &str = "stickyroute_cluster_errors";
/// `stickyroute_cluster_disconnects_total{group}`: connections to Redis lost after being up.
pub const CLUSTER_DISCONNECTS: &str = "stickyroute_cluster_disconnects";
/// `stickyroute_config_reloads_total{result}`: `result` = `ok` or `error`.
pub const CONFIG_RELOADS: &str = "stickyroute_config_reloads";

/// Upper bounds of the duration histogram, in microseconds (the last bucket is `+Inf`).
pub const DURATION_BUCKETS_US: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Status classes `1xx`..`5xx`, the labels of the indexes [`status_class`] returns.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The outcomes [`NodeMetrics`] counts, in their export order.
pub const OUTCOMES: [Outcome; 3] = [Outcome::Hit, Outcome::New, Outcome::Failover];

/// The index of `status`'s class in [`STATUS_CLASSES`] (below 1xx counts as 1xx, above 5xx as
/// 5xx).
pub fn status_class(status: StatusCode) -> usize {
    (status.as_u16() / 100).clamp(1, 5) as usize - 1
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Hit => 0,
        Outcome::New => 1,
        Outcome::Failover => 2,
    }
}

/// A lock-free histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct AtomicHistogram {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl AtomicHistogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = DURATION_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(DURATION_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with upper bounds in seconds).
    pub fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let bound = DURATION_BUCKETS_US
                .get(i)
                .map_or(f64::MAX, |us| *us as f64 / 1e6);
            out.push((bound, n));
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, out)
    }
}

/// Counters of one node (in its runtime, so they survive reloads with it).
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Requests answered, by outcome (hit, new, failover) and status class.
    requests: [[AtomicU64; 5]; 3],
    pub health_down_active: AtomicU64,
    pub health_up_active: AtomicU64,
    pub health_down_passive: AtomicU64,
    /// Time to the response head of the requests this node answered.
    pub duration: AtomicHistogram,
}

impl NodeMetrics {
    /// Counts one request this node answered.
    pub fn count(&self, outcome: Outcome, status: StatusCode, elapsed: Duration) {
        self.requests[outcome_index(outcome)][status_class(status)].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed);
    }

    /// Requests answered through this node with this outcome and status class.
    pub fn requests(&self, outcome: Outcome, status_class: usize) -> u64 {
        self.requests[outcome_index(outcome)][status_class].load(Ordering::Relaxed)
    }
}

/// Counters of one pool.
#[derive(Debug, Default)]
pub struct PoolMetrics {
    /// Requests of this pool that reached no node, by status class.
    unrouted: [AtomicU64; 5],
    pub duration: AtomicHistogram,
}

impl PoolMetrics {
    /// Counts one request of this pool that reached no node (its duration is counted apart,
    /// in [`PoolMetrics::duration`], for every request of the pool).
    pub fn count_unrouted(&self, status: StatusCode) {
        self.unrouted[status_class(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of this pool that reached no node, with this status class.
    pub fn unrouted(&self, status_class: usize) -> u64 {
        self.unrouted[status_class].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for (status, want) in [(101, 0), (200, 1), (204, 1), (302, 2), (404, 3), (503, 4)] {
            assert_eq!(
                status_class(StatusCode::from_u16(status).unwrap()),
                want,
                "{status}"
            );
        }
    }

    #[test]
    fn histogram_buckets_and_sum() {
        let h = AtomicHistogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let (sum, count, buckets) = h.read();
        assert_eq!(count, 4);
        assert!((sum - 100.0036).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.0005, 2));
        assert_eq!(buckets[3], (0.005, 1));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
    }
}
