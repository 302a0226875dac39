//! Prometheus metrics: the names (one constant each), the counters the request path bumps, and
//! the `/metrics` rendering (OpenMetrics text through `prometheus-client`).
//!
//! The request path never takes a lock or looks up a label set: every counter lives in plain
//! atomics next to what it counts ([`NodeMetrics`] in each node's runtime, [`PoolMetrics`] in
//! each pool's, [`Metrics`] in the balancer), and a [`Collector`] walks the current snapshot at
//! scrape time and exports them with their labels. One request costs two relaxed atomic adds
//! for the counter and four for the duration histograms (the pool's and the node's).
//!
//! A node's counters live as long as its runtime: they survive reloads that keep its route and
//! address; a node whose address changes starts from zero (Prometheus sees a counter reset), and
//! a removed node's series end.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::core::binder::RebindResult;
use crate::core::node_state::NodeState;
use crate::core::select::Outcome;
use crate::state::balancer::Balancer;
use crate::state::snapshot::Snapshot;

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

/// Status classes `1xx`..`5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const OUTCOMES: [Outcome; 3] = [Outcome::Hit, Outcome::New, Outcome::Failover];

fn class_index(status: StatusCode) -> usize {
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
    fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
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

/// Balancer-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests no pool serves, by status class.
    no_pool: [AtomicU64; 5],
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl Metrics {
    /// Counts one answered request. `pool` and `node` index the snapshot the request used.
    pub fn observe_request(
        &self,
        snap: &Snapshot,
        pool: Option<usize>,
        node: Option<usize>,
        outcome: Option<Outcome>,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let class = class_index(status);
        let Some(pool) = pool.and_then(|i| snap.pools.get(i)) else {
            self.no_pool[class].fetch_add(1, Ordering::Relaxed);
            return;
        };
        pool.rt.metrics.duration.observe(elapsed);
        match (node.and_then(|i| pool.nodes.get(i)), outcome) {
            (Some(n), Some(o)) => {
                n.rt.metrics.requests[outcome_index(o)][class].fetch_add(1, Ordering::Relaxed);
                n.rt.metrics.duration.observe(elapsed);
            }
            _ => {
                pool.rt.metrics.unrouted[class].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn record_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Renders every metric of `balancer` in the OpenMetrics text format.
pub fn render(balancer: &Arc<Balancer>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(balancer.clone())));
    let mut out = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        let _ = writeln!(out, "# metrics encoding failed");
    }
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`to_prometheus_text`]'s output.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Converts OpenMetrics text to the classic Prometheus text format (0.0.4), for scrapers and
/// parsers that do not ask for OpenMetrics: counter families are named with their `_total`
/// suffix in `# HELP` / `# TYPE`, and `# UNIT` / `# EOF` lines are dropped.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    let _ = writeln!(out, "{prefix}{name}_total {tail}");
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Reads the atomics at scrape time.
#[derive(Debug)]
struct Scrape(Arc<Balancer>);

type Enc<'a> = DescriptorEncoder<'a>;

fn counter_family<'a, L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut Enc<'a>,
    name: &str,
    help: &str,
    rows: &[(L, u64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge_family<'a, L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut Enc<'a>,
    name: &str,
    help: &str,
    rows: &[(L, i64)],
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let b = &self.0;
        let snap = b.snapshot();
        let now = crate::state::node::now_ms();
        let ld = |v: &AtomicU64| v.load(Ordering::Relaxed);

        // Requests.
        let mut rows: Vec<([(&str, &str); 4], u64)> = Vec::new();
        for (class, name) in CLASSES.iter().enumerate() {
            let v = ld(&b.metrics.no_pool[class]);
            if v > 0 {
                rows.push((
                    [
                        ("pool", ""),
                        ("node", ""),
                        ("outcome", "none"),
                        ("status_class", name),
                    ],
                    v,
                ));
            }
        }
        for pool in &snap.pools {
            let p = pool.cfg.name.as_str();
            for (class, name) in CLASSES.iter().enumerate() {
                let v = ld(&pool.rt.metrics.unrouted[class]);
                if v > 0 {
                    rows.push((
                        [
                            ("pool", p),
                            ("node", ""),
                            ("outcome", "none"),
                            ("status_class", name),
                        ],
                        v,
                    ));
                }
            }
            for node in &pool.nodes {
                for o in OUTCOMES {
                    for (class, name) in CLASSES.iter().enumerate() {
                        let v = node.rt.metrics.requests(o, class);
                        // Always export the common series so rates start at zero.
                        if v > 0 || class == 1 {
                            rows.push((
                                [
                                    ("pool", p),
                                    ("node", &node.route),
                                    ("outcome", o.as_str()),
                                    ("status_class", name),
                                ],
                                v,
                            ));
                        }
                    }
                }
            }
        }
        counter_family(
            &mut enc,
            REQUESTS,
            "Client requests answered, by pool, node, outcome and status class",
            &rows,
        )?;

        // Duration histogram.
        {
            let mut m = enc.encode_descriptor(
                REQUEST_DURATION,
                "Time from request to response head",
                None,
                MetricType::Histogram,
            )?;
            for pool in &snap.pools {
                let (sum, count, buckets) = pool.rt.metrics.duration.read();
                let labels = [("pool", pool.cfg.name.as_str())];
                m.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                NODE_REQUEST_DURATION,
                "Time from request to response head, by the node that answered",
                None,
                MetricType::Histogram,
            )?;
            for pool in &snap.pools {
                for node in &pool.nodes {
                    let (sum, count, buckets) = node.rt.metrics.duration.read();
                    let labels = [("pool", pool.cfg.name.as_str()), ("node", &node.route)];
                    m.encode_family(&labels)?
                        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
                }
            }
        }

        // Per-node counters and gauges.
        let mut upstream = Vec::new();
        let mut errors = Vec::new();
        let mut failovers = Vec::new();
        let mut transitions = Vec::new();
        let mut up = Vec::new();
        let mut state = Vec::new();
        let mut in_flight = Vec::new();
        let mut queued = Vec::new();
        let mut max_conns = Vec::new();
        let mut refused = Vec::new();
        let mut live = Vec::new();
        let mut drained = Vec::new();
        for pool in &snap.pools {
            let p = pool.cfg.name.as_str();
            for node in &pool.nodes {
                let r = node.route.as_str();
                let rt = &node.rt;
                let pn = [("pool", p), ("node", r)];
                upstream.push((pn, ld(&rt.stats.requests)));
                errors.push((
                    [("pool", p), ("node", r), ("kind", "connect")],
                    ld(&rt.stats.connect_errors),
                ));
                errors.push((
                    [("pool", p), ("node", r), ("kind", "response")],
                    ld(&rt.stats.upstream_errors),
                ));
                failovers.push((
                    [("pool", p), ("node", r), ("direction", "in")],
                    ld(&rt.stats.failovers_in),
                ));
                failovers.push((
                    [("pool", p), ("node", r), ("direction", "out")],
                    ld(&rt.stats.failovers_out),
                ));
                let m = &rt.metrics;
                transitions.push((
                    [
                        ("pool", p),
                        ("node", r),
                        ("to", "down"),
                        ("check", "active"),
                    ],
                    ld(&m.health_down_active),
                ));
                transitions.push((
                    [("pool", p), ("node", r), ("to", "up"), ("check", "active")],
                    ld(&m.health_up_active),
                ));
                transitions.push((
                    [
                        ("pool", p),
                        ("node", r),
                        ("to", "down"),
                        ("check", "passive"),
                    ],
                    ld(&m.health_down_passive),
                ));
                up.push((pn, i64::from(node.is_up(now))));
                let current = node.state();
                for s in [
                    NodeState::Active,
                    NodeState::Draining,
                    NodeState::Disabled,
                    NodeState::Standby,
                ] {
                    state.push((
                        [("pool", p), ("node", r), ("state", s.as_str())],
                        i64::from(s == current),
                    ));
                }
                in_flight.push((pn, node.inflight() as i64));
                queued.push((pn, ld(&rt.queued) as i64));
                if let Some(max) = node.max_connections {
                    max_conns.push((pn, i64::from(max)));
                }
                for why in crate::state::node::Refusal::ALL {
                    refused.push((
                        [("pool", p), ("node", r), ("reason", why.as_str())],
                        ld(&rt.stats.refused[why as usize]),
                    ));
                }
                live.push((pn, b.registry.live_sessions(node.slot) as i64));
                drained.push((pn, i64::from(b.registry.is_drained(current, node.slot))));
            }
        }
        counter_family(
            &mut enc,
            UPSTREAM_REQUESTS,
            "Requests sent to a node, retries included",
            &upstream,
        )?;
        counter_family(
            &mut enc,
            UPSTREAM_ERRORS,
            "Failed connects and failed upstream responses",
            &errors,
        )?;
        counter_family(
            &mut enc,
            FAILOVERS,
            "Sessions moved to (in) or away from (out) a node",
            &failovers,
        )?;
        counter_family(
            &mut enc,
            HEALTH_TRANSITIONS,
            "Node health transitions",
            &transitions,
        )?;
        gauge_family(&mut enc, NODE_UP, "1 when the node is up", &up)?;
        gauge_family(
            &mut enc,
            NODE_STATE,
            "1 for the node's current runtime state",
            &state,
        )?;
        gauge_family(
            &mut enc,
            NODE_IN_FLIGHT,
            "Requests in flight on the node (each holds a connection to it)",
            &in_flight,
        )?;
        gauge_family(
            &mut enc,
            NODE_QUEUE_LENGTH,
            "Requests waiting for a node at its max_connections",
            &queued,
        )?;
        gauge_family(
            &mut enc,
            NODE_MAX_CONNECTIONS,
            "The node's max_connections (nodes that have one)",
            &max_conns,
        )?;
        counter_family(
            &mut enc,
            NODE_LIMIT_REFUSED,
            "Requests refused with 503 by a node's connection limit, by reason",
            &refused,
        )?;
        gauge_family(
            &mut enc,
            NODE_LIVE_SESSIONS,
            "Sessions seen within the idle timeout, by node",
            &live,
        )?;
        gauge_family(
            &mut enc,
            NODE_DRAINED,
            "1 when a draining or disabled node has no live session",
            &drained,
        )?;

        // Pools.
        let mut rebinds = Vec::new();
        let mut store_errors = Vec::new();
        let mut unknown_cached = Vec::new();
        for pool in &snap.pools {
            let p = pool.cfg.name.as_str();
            for r in RebindResult::ALL {
                rebinds.push((
                    [
                        ("pool", p),
                        ("binder", pool.cfg.binder.as_str()),
                        ("result", r.as_str()),
                    ],
                    ld(&pool.rt.stats.rebinds[r as usize]),
                ));
            }
            store_errors.push(([("pool", p)], ld(&pool.rt.stats.store_errors)));
            if pool.store.is_some() {
                unknown_cached.push(([("pool", p)], ld(&pool.rt.stats.unknown_id_hits)));
            }
        }
        counter_family(
            &mut enc,
            REBINDS,
            "Session rebinds after failover, by binder and result",
            &rebinds,
        )?;
        counter_family(
            &mut enc,
            STORE_ERRORS,
            "Session store failures",
            &store_errors,
        )?;
        counter_family(
            &mut enc,
            RENAME_UNKNOWN_CACHED,
            "Rename failovers of ids the store had just said it does not know, answered without asking it",
            &unknown_cached,
        )?;

        // Registry and process.
        let rs = b.registry.stats();
        let single_gauge = |enc: &mut Enc, name: &str, help: &str, v: i64| -> std::fmt::Result {
            ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
        };
        let single_counter = |enc: &mut Enc, name: &str, help: &str, v: u64| -> std::fmt::Result {
            ConstCounter::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)
        };
        single_gauge(
            &mut enc,
            REGISTRY_SESSIONS,
            "Sessions tracked by the registry",
            rs.sessions as i64,
        )?;
        single_gauge(
            &mut enc,
            REGISTRY_MAX_SESSIONS,
            "Bound of the registry",
            rs.max_sessions as i64,
        )?;
        single_counter(
            &mut enc,
            REGISTRY_REJECTED,
            "New sessions not tracked because the registry was full",
            rs.rejected,
        )?;
        single_counter(
            &mut enc,
            REGISTRY_EXPIRED,
            "Sessions forgotten after the idle timeout",
            rs.expired,
        )?;
        single_counter(
            &mut enc,
            ACCESS_LOG_DROPPED,
            "Access log lines dropped because the log writer fell behind",
            ACCESS_LOG_DROPPED_LINES.load(Ordering::Relaxed),
        )?;
        counter_family(
            &mut enc,
            CONFIG_RELOADS,
            "Configuration reloads, by result",
            &[
                ([("result", "ok")], ld(&b.metrics.reloads_ok)),
                ([("result", "error")], ld(&b.metrics.reloads_failed)),
            ],
        )?;
        if let Some(c) = b.operator.cluster() {
            let labels = [("group", c.name.as_str())];
            gauge_family(
                &mut enc,
                CLUSTER_CONNECTED,
                "1 when the cluster's Redis is reachable",
                &[(labels, i64::from(c.connected()))],
            )?;
            let alive = 1 + c.members().iter().filter(|m| m.alive).count();
            gauge_family(
                &mut enc,
                CLUSTER_INSTANCES,
                "Live instances of the group, this one included",
                &[(labels, alive as i64)],
            )?;
            counter_family(
                &mut enc,
                CLUSTER_ERRORS,
                "Failed cluster operations on Redis",
                &[(labels, ld(&c.errors))],
            )?;
            counter_family(
                &mut enc,
                CLUSTER_DISCONNECTS,
                "Times the connection to the cluster's Redis was lost",
                &[(labels, ld(&c.disconnects))],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_to_prometheus_text() {
        let om =
            "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
                  # HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn status_classes() {
        for (status, want) in [(101, 0), (200, 1), (204, 1), (302, 2), (404, 3), (503, 4)] {
            assert_eq!(
                class_index(StatusCode::from_u16(status).unwrap()),
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
