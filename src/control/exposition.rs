//! The `/metrics` exposition: every counter and gauge of the balancer in the OpenMetrics text
//! format (through `prometheus-client`), or in the classic Prometheus text format for scrapers
//! that do not ask for OpenMetrics.
//!
//! Nothing is registered ahead: at scrape time a collector walks the current snapshot and
//! reads the atomics of `state::metrics` (and the node, pool, registry and cluster state they
//! sit next to), one function per group of metric families, in a fixed order.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::config::NodeSource;
use crate::core::binder::RebindResult;
use crate::core::node_state::NodeState;
use crate::state::discovery::LookupResult;
use crate::state::metrics::{
    ACCESS_LOG_DROPPED, ACCESS_LOG_DROPPED_LINES, CLUSTER_CONNECTED, CLUSTER_DISCONNECTS,
    CLUSTER_ERRORS, CLUSTER_INSTANCES, CONFIG_RELOADS, FAILOVERS, HEALTH_TRANSITIONS, NODE_DRAINED,
    NODE_IN_FLIGHT, NODE_LIMIT_REFUSED, NODE_LIVE_SESSIONS, NODE_MAX_CONNECTIONS,
    NODE_QUEUE_LENGTH, NODE_REQUEST_DURATION, NODE_STATE, NODE_UP, OUTCOMES, REBINDS,
    REGISTRY_EXPIRED, REGISTRY_MAX_SESSIONS, REGISTRY_REJECTED, REGISTRY_SESSIONS,
    RENAME_UNKNOWN_CACHED, REQUESTS, REQUEST_DURATION, STATUS_CLASSES, STORE_ERRORS,
    UPSTREAM_ERRORS, UPSTREAM_REQUESTS,
};
use crate::state::metrics::{
    DISCOVERY_CONFLICTS, DISCOVERY_LOOKUPS, DISCOVERY_NODES, NODES_ADDED, NODES_REMOVED,
};
use crate::state::node::{now_ms, Refusal};
use crate::state::snapshot::{Node, Snapshot};
use crate::state::Balancer;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`to_prometheus_text`]'s output.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let b = &self.0;
        let snap = b.snapshot();
        requests(&mut enc, b, &snap)?;
        durations(&mut enc, &snap)?;
        node_traffic(&mut enc, &snap)?;
        node_capacity(&mut enc, b, &snap)?;
        pools(&mut enc, &snap)?;
        registry_and_process(&mut enc, b)?;
        discovery(&mut enc, b, &snap)?;
        cluster(&mut enc, b)
    }
}

type Enc<'a> = DescriptorEncoder<'a>;
type Labels<'s, const N: usize> = [(&'static str, &'s str); N];

fn ld(v: &AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}

fn counter_family<L: EncodeLabelSet>(
    enc: &mut Enc,
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

fn gauge_family<L: EncodeLabelSet>(
    enc: &mut Enc,
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

fn single_counter(enc: &mut Enc, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn single_gauge(enc: &mut Enc, name: &str, help: &str, v: i64) -> std::fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// The rows of one family over every node of the snapshot, pool by pool: `rows(pool, node)`
/// gives the node's rows (none, one, or one per label value).
fn per_node<'s, L, V, I>(snap: &'s Snapshot, rows: impl Fn(&'s str, &'s Node) -> I) -> Vec<(L, V)>
where
    I: IntoIterator<Item = (L, V)>,
{
    snap.pools
        .iter()
        .flat_map(|p| p.nodes.iter().map(move |n| (p.cfg.name.as_str(), n)))
        .flat_map(|(p, n)| rows(p, n))
        .collect()
}

/// The `pool` and `node` labels of a node.
fn pn<'s>(pool: &'s str, node: &'s Node) -> Labels<'s, 2> {
    [("pool", pool), ("node", &node.route)]
}

/// `stickyroute_requests_total`: requests no pool serves, then per pool the ones that reached
/// no node and the ones each node answered (the 2xx series of every node always, so rates
/// start at zero).
fn requests(enc: &mut Enc, b: &Balancer, snap: &Snapshot) -> std::fmt::Result {
    let row = |pool, node, outcome, class: &'static str, v| {
        (
            [
                ("pool", pool),
                ("node", node),
                ("outcome", outcome),
                ("status_class", class),
            ],
            v,
        )
    };
    let mut rows: Vec<(Labels<4>, u64)> = Vec::new();
    for (class, name) in STATUS_CLASSES.iter().enumerate() {
        let v = b.metrics.no_pool(class);
        if v > 0 {
            rows.push(row("", "", "none", name, v));
        }
    }
    for pool in &snap.pools {
        let p = pool.cfg.name.as_str();
        for (class, name) in STATUS_CLASSES.iter().enumerate() {
            let v = pool.rt.metrics.unrouted(class);
            if v > 0 {
                rows.push(row(p, "", "none", name, v));
            }
        }
        for node in &pool.nodes {
            for o in OUTCOMES {
                for (class, name) in STATUS_CLASSES.iter().enumerate() {
                    let v = node.rt.metrics.requests(o, class);
                    if v > 0 || class == 1 {
                        rows.push(row(p, &node.route, o.as_str(), name, v));
                    }
                }
            }
        }
    }
    counter_family(
        enc,
        REQUESTS,
        "Client requests answered, by pool, node, outcome and status class",
        &rows,
    )
}

/// The duration histograms: by pool, then by the node that answered.
fn durations(enc: &mut Enc, snap: &Snapshot) -> std::fmt::Result {
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
    let mut m = enc.encode_descriptor(
        NODE_REQUEST_DURATION,
        "Time from request to response head, by the node that answered",
        None,
        MetricType::Histogram,
    )?;
    for pool in &snap.pools {
        for node in &pool.nodes {
            let (sum, count, buckets) = node.rt.metrics.duration.read();
            m.encode_family(&pn(&pool.cfg.name, node))?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
    }
    Ok(())
}

/// Per-node counters of the traffic sent to nodes and of their health: requests, errors,
/// failovers, health transitions.
fn node_traffic(enc: &mut Enc, snap: &Snapshot) -> std::fmt::Result {
    counter_family(
        enc,
        UPSTREAM_REQUESTS,
        "Requests sent to a node, retries included",
        &per_node(snap, |p, n| [(pn(p, n), ld(&n.rt.stats.requests))]),
    )?;
    counter_family(
        enc,
        UPSTREAM_ERRORS,
        "Failed connects and failed upstream responses",
        &per_node(snap, |p, n| {
            let s = &n.rt.stats;
            let kind = |k| [("pool", p), ("node", &n.route), ("kind", k)];
            [
                (kind("connect"), ld(&s.connect_errors)),
                (kind("response"), ld(&s.upstream_errors)),
            ]
        }),
    )?;
    counter_family(
        enc,
        FAILOVERS,
        "Sessions moved to (in) or away from (out) a node",
        &per_node(snap, |p, n| {
            let s = &n.rt.stats;
            let direction = |d| [("pool", p), ("node", &n.route), ("direction", d)];
            [
                (direction("in"), ld(&s.failovers_in)),
                (direction("out"), ld(&s.failovers_out)),
            ]
        }),
    )?;
    counter_family(
        enc,
        HEALTH_TRANSITIONS,
        "Node health transitions",
        &per_node(snap, |p, n| {
            let m = &n.rt.metrics;
            let to = |to, check| {
                [
                    ("pool", p),
                    ("node", &n.route),
                    ("to", to),
                    ("check", check),
                ]
            };
            [
                (to("down", "active"), ld(&m.health_down_active)),
                (to("up", "active"), ld(&m.health_up_active)),
                (to("down", "passive"), ld(&m.health_down_passive)),
            ]
        }),
    )
}

/// Per-node gauges of what a node is now (up, runtime state, in flight, queued, its limit,
/// live sessions, drained) and the refusals of its connection limit.
fn node_capacity(enc: &mut Enc, b: &Balancer, snap: &Snapshot) -> std::fmt::Result {
    let now = now_ms();
    gauge_family(
        enc,
        NODE_UP,
        "1 when the node is up",
        &per_node(snap, |p, n| [(pn(p, n), i64::from(n.is_up(now)))]),
    )?;
    gauge_family(
        enc,
        NODE_STATE,
        "1 for the node's current runtime state",
        &per_node(snap, |p, n| {
            let current = n.state();
            [
                NodeState::Active,
                NodeState::Draining,
                NodeState::Disabled,
                NodeState::Standby,
            ]
            .map(|s| {
                (
                    [("pool", p), ("node", &n.route), ("state", s.as_str())],
                    i64::from(s == current),
                )
            })
        }),
    )?;
    gauge_family(
        enc,
        NODE_IN_FLIGHT,
        "Requests in flight on the node (each holds a connection to it)",
        &per_node(snap, |p, n| [(pn(p, n), n.inflight() as i64)]),
    )?;
    gauge_family(
        enc,
        NODE_QUEUE_LENGTH,
        "Requests waiting for a node at its max_connections",
        &per_node(snap, |p, n| [(pn(p, n), ld(&n.rt.queued) as i64)]),
    )?;
    gauge_family(
        enc,
        NODE_MAX_CONNECTIONS,
        "The node's max_connections (nodes that have one)",
        &per_node(snap, |p, n| {
            n.max_connections.map(|max| (pn(p, n), i64::from(max)))
        }),
    )?;
    counter_family(
        enc,
        NODE_LIMIT_REFUSED,
        "Requests refused with 503 by a node's connection limit, by reason",
        &per_node(snap, |p, n| {
            Refusal::ALL.map(|why| {
                (
                    [("pool", p), ("node", &n.route), ("reason", why.as_str())],
                    ld(&n.rt.stats.refused[why as usize]),
                )
            })
        }),
    )?;
    gauge_family(
        enc,
        NODE_LIVE_SESSIONS,
        "Sessions seen within the idle timeout, by node",
        &per_node(snap, |p, n| {
            [(pn(p, n), b.registry.live_sessions(n.slot) as i64)]
        }),
    )?;
    gauge_family(
        enc,
        NODE_DRAINED,
        "1 when a draining or disabled node has no live session",
        &per_node(snap, |p, n| {
            let drained = b.registry.is_drained(n.state(), n.slot);
            [(pn(p, n), i64::from(drained))]
        }),
    )
}

/// Per-pool counters of the session binders and stores.
fn pools(enc: &mut Enc, snap: &Snapshot) -> std::fmt::Result {
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
        enc,
        REBINDS,
        "Session rebinds after failover, by binder and result",
        &rebinds,
    )?;
    counter_family(enc, STORE_ERRORS, "Session store failures", &store_errors)?;
    counter_family(
        enc,
        RENAME_UNKNOWN_CACHED,
        "Rename failovers of ids the store had just said it does not know, answered without asking it",
        &unknown_cached,
    )
}

/// Discovery lookups and nodes (pools with `discovery`), and nodes added and removed at
/// runtime (every pool that had any). A removed node's own series end with it.
fn discovery(enc: &mut Enc, b: &Balancer, snap: &Snapshot) -> std::fmt::Result {
    let counters = b.discovery.counters();
    let mut lookups = Vec::new();
    let mut nodes = Vec::new();
    let mut conflicts = Vec::new();
    for pool in snap.pools.iter().filter(|p| p.cfg.discovery.is_some()) {
        let name = pool.cfg.name.as_str();
        let c = counters.get(name);
        for r in LookupResult::ALL {
            let v = c.and_then(|c| c.lookups.get(&r)).copied().unwrap_or(0);
            lookups.push(([("pool", name), ("result", r.as_str())], v));
        }
        let present = pool
            .nodes
            .iter()
            .filter(|n| n.source == NodeSource::Discovery)
            .count()
            .saturating_sub(leaving_discovered(b, name));
        nodes.push(([("pool", name)], present as i64));
        conflicts.push(([("pool", name)], c.map_or(0, |c| c.conflicts)));
    }
    counter_family(
        enc,
        DISCOVERY_LOOKUPS,
        "DNS lookups of a pool's discovery, by result",
        &lookups,
    )?;
    gauge_family(
        enc,
        DISCOVERY_NODES,
        "Nodes the pool's discovery names now",
        &nodes,
    )?;
    counter_family(
        enc,
        DISCOVERY_CONFLICTS,
        "Discovered routes another node already had",
        &conflicts,
    )?;
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for (pool, c) in &counters {
        for source in [NodeSource::Discovery, NodeSource::Api] {
            let s = source.as_str();
            let labels = [("pool", pool.as_str()), ("source", s)];
            added.push((labels, c.added.get(s).copied().unwrap_or(0)));
            removed.push((labels, c.removed.get(s).copied().unwrap_or(0)));
        }
    }
    counter_family(
        enc,
        NODES_ADDED,
        "Nodes that joined at runtime, by source",
        &added,
    )?;
    counter_family(
        enc,
        NODES_REMOVED,
        "Runtime nodes removed, by source",
        &removed,
    )
}

/// Discovered nodes of `pool` that are leaving.
fn leaving_discovered(b: &Balancer, pool: &str) -> usize {
    b.sources().nodes.pool(pool).map_or(0, |nodes| {
        nodes
            .values()
            .filter(|n| n.cfg.source == NodeSource::Discovery && n.leaving.is_some())
            .count()
    })
}

/// The session registry, the access log and config reloads.
fn registry_and_process(enc: &mut Enc, b: &Balancer) -> std::fmt::Result {
    let rs = b.registry.stats();
    single_gauge(
        enc,
        REGISTRY_SESSIONS,
        "Sessions tracked by the registry",
        rs.sessions as i64,
    )?;
    single_gauge(
        enc,
        REGISTRY_MAX_SESSIONS,
        "Bound of the registry",
        rs.max_sessions as i64,
    )?;
    single_counter(
        enc,
        REGISTRY_REJECTED,
        "New sessions not tracked because the registry was full",
        rs.rejected,
    )?;
    single_counter(
        enc,
        REGISTRY_EXPIRED,
        "Sessions forgotten after the idle timeout",
        rs.expired,
    )?;
    single_counter(
        enc,
        ACCESS_LOG_DROPPED,
        "Access log lines dropped because the log writer fell behind",
        ld(&ACCESS_LOG_DROPPED_LINES),
    )?;
    counter_family(
        enc,
        CONFIG_RELOADS,
        "Configuration reloads, by result",
        &[
            ([("result", "ok")], ld(&b.metrics.reloads_ok)),
            ([("result", "error")], ld(&b.metrics.reloads_failed)),
        ],
    )
}

/// The group, with a `cluster:` section (nothing without one).
fn cluster(enc: &mut Enc, b: &Balancer) -> std::fmt::Result {
    let Some(c) = b.operator.cluster() else {
        return Ok(());
    };
    let labels = [("group", c.name.as_str())];
    gauge_family(
        enc,
        CLUSTER_CONNECTED,
        "1 when the cluster's Redis is reachable",
        &[(labels, i64::from(c.connected()))],
    )?;
    let alive = 1 + c.members().iter().filter(|m| m.alive).count();
    gauge_family(
        enc,
        CLUSTER_INSTANCES,
        "Live instances of the group, this one included",
        &[(labels, alive as i64)],
    )?;
    counter_family(
        enc,
        CLUSTER_ERRORS,
        "Failed cluster operations on Redis",
        &[(labels, ld(&c.errors))],
    )?;
    counter_family(
        enc,
        CLUSTER_DISCONNECTS,
        "Times the connection to the cluster's Redis was lost",
        &[(labels, ld(&c.disconnects))],
    )
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
}
