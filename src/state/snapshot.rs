//! Nodes and pools as the request path sees them: one immutable [`Snapshot`] of the whole
//! routing table, swapped atomically on reload, whose nodes point at long-lived
//! [`NodeRuntime`]s (operator state, health, in-flight count, counters, pooled connections).
//!
//! A reload builds a new snapshot and hands every node whose route and address are unchanged
//! its old runtime, so health, counters, in-flight requests and runtime state survive
//! (pingora's `Backends::do_update`, but with one swap instead of two).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{AjpConfig, BalanceKind, Config, NodeAddr, NodeSource, PoolConfig};
use crate::core::node_state::NodeState;
use crate::core::select::PoolView;
use crate::state::node::NodeRuntime;
use crate::state::registry::Registry;
use crate::state::unknown_ids::UnknownIds;
use crate::store::SessionStore;

/// One application server, as of the current snapshot.
#[derive(Debug)]
pub struct Node {
    pub route: String,
    pub address: String,
    pub addr: NodeAddr,
    pub weight: u32,
    pub domain: String,
    /// Index of the preferred failover target in the pool's `nodes`.
    pub redirect: Option<usize>,
    /// The state the config file gives (the runtime state may differ after an admin change).
    pub config_state: NodeState,
    /// Seed for rendezvous hashing, derived from the route so every balancer agrees.
    pub route_seed: u64,
    /// The node's key in the session registry ([`Registry::slot`]).
    pub slot: u32,
    /// Requests open on the node at once (`nodes[].max_connections`, else the pool's
    /// `max_connections_per_node`); `None`: unlimited.
    pub max_connections: Option<u32>,
    /// Where the node comes from: the file, DNS discovery or the admin API.
    pub source: NodeSource,
    /// `Some` when the node speaks AJP/1.3 (`protocol: ajp`), with its settings.
    pub ajp: Option<AjpConfig>,
    pub rt: Arc<NodeRuntime>,
}

impl Node {
    pub fn state(&self) -> NodeState {
        self.rt.state()
    }

    pub fn is_up(&self, now_ms: u64) -> bool {
        self.rt.health.is_up(now_ms)
    }

    pub fn inflight(&self) -> u64 {
        self.rt.inflight.load(Ordering::Relaxed)
    }

    /// Could a new request take a slot on the node without queueing?
    pub fn has_room(&self) -> bool {
        self.rt.has_room(self.max_connections)
    }
}

/// Counters of one pool that outlive reloads.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Rebinds by result: index with [`RebindResult`].
    pub rebinds: [AtomicU64; 4],
    pub store_errors: AtomicU64,
    /// Failovers of the `rename` binder answered from the negative cache, without the store.
    pub unknown_id_hits: AtomicU64,
}

/// Pool-level runtime shared across reloads.
#[derive(Debug, Default)]
pub struct PoolRuntime {
    pub stats: PoolStats,
    /// Round-robin cursor.
    pub rr: AtomicUsize,
    /// Request counters and duration histogram for `/metrics`.
    pub metrics: crate::state::metrics::PoolMetrics,
    /// The session cookie's attributes as the pool's nodes set them, per context.
    pub cookies: crate::state::cookies::LearnedCookies,
}

/// Pools of at most this many nodes find a route by comparing, larger ones by hashing.
const LINEAR_ROUTE_LOOKUP: usize = 8;

/// A pool of nodes with its settings.
#[derive(Debug)]
pub struct Pool {
    pub cfg: PoolConfig,
    pub nodes: Vec<Node>,
    by_route: HashMap<String, usize>,
    pub store: Option<SessionStore>,
    /// The `rename` binder's negative cache, kept with the store across reloads (a new store
    /// starts with an empty one).
    pub unknown_ids: Option<Arc<UnknownIds>>,
    pub rt: Arc<PoolRuntime>,
}

impl Pool {
    /// Index of the node with this route. Every request with a session looks its route up:
    /// in a pool of a few nodes comparing the routes costs a fraction of hashing one.
    pub fn node_index(&self, route: &str) -> Option<usize> {
        if self.nodes.len() <= LINEAR_ROUTE_LOOKUP {
            return self.nodes.iter().position(|n| n.route == route);
        }
        self.by_route.get(route).copied()
    }

    pub fn node(&self, route: &str) -> Option<&Node> {
        self.node_index(route).map(|i| &self.nodes[i])
    }

    /// Does `path` fall under this pool's prefix (on a segment boundary)?
    fn path_matches(&self, path: &str) -> bool {
        let prefix = self.cfg.path_prefix.as_str();
        match path.strip_prefix(prefix) {
            None => false,
            Some(rest) => {
                prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', ';', '?'])
            }
        }
    }
}

/// The routing table at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub pools: Vec<Pool>,
}

/// Error building a snapshot (a store that cannot be opened).
#[derive(Debug, thiserror::Error)]
#[error("pool {pool:?}: session store: {message}")]
pub struct SnapshotError {
    pub pool: String,
    pub message: String,
}

impl Snapshot {
    /// Builds the routing table for `config`, reusing runtimes (and stores) of `previous` for
    /// nodes whose route and address are unchanged. A node whose configured state changed
    /// takes the new configured state; otherwise its runtime state is kept. Every node gets
    /// its slot from `registry` (stable per pool and route).
    pub fn build(
        config: Arc<Config>,
        previous: Option<&Snapshot>,
        registry: &Registry,
    ) -> Result<Snapshot, SnapshotError> {
        Snapshot::build_pinned(config, previous, registry, &|_, _| None)
    }

    /// [`Snapshot::build`], where `pinned(pool, route)` names a state that beats the file's
    /// (the group's state in a cluster): such a node takes it whatever the file says.
    pub fn build_pinned(
        config: Arc<Config>,
        previous: Option<&Snapshot>,
        registry: &Registry,
        pinned: &dyn Fn(&str, &str) -> Option<NodeState>,
    ) -> Result<Snapshot, SnapshotError> {
        let mut pools = Vec::with_capacity(config.pools.len());
        for pc in &config.pools {
            let old_pool = previous.and_then(|p| p.pools.iter().find(|op| op.cfg.name == pc.name));
            let by_route: HashMap<String, usize> = pc
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.route.clone(), i))
                .collect();
            let nodes = pc
                .nodes
                .iter()
                .map(|nc| {
                    let old = old_pool
                        .and_then(|op| op.node(&nc.route))
                        .filter(|on| on.addr == nc.addr && on.address == nc.address);
                    let pin = pinned(&pc.name, &nc.route);
                    let rt = match old {
                        Some(on) => {
                            match pin {
                                Some(p) if p != on.rt.state() => on.rt.set_state(p),
                                Some(_) => {}
                                None if on.config_state != nc.state => on.rt.set_state(nc.state),
                                None => {}
                            }
                            on.rt.clone()
                        }
                        None => Arc::new(NodeRuntime::new(pin.unwrap_or(nc.state))),
                    };
                    Node {
                        route: nc.route.clone(),
                        address: nc.address.clone(),
                        addr: nc.addr.clone(),
                        weight: nc.weight,
                        domain: nc.domain.clone(),
                        redirect: nc.redirect.as_ref().and_then(|r| by_route.get(r).copied()),
                        config_state: nc.state,
                        route_seed: xxhash_rust::xxh3::xxh3_64(nc.route.as_bytes()),
                        slot: registry.slot(&pc.name, &nc.route),
                        max_connections: nc.max_connections,
                        source: nc.source,
                        ajp: nc.ajp.clone(),
                        rt,
                    }
                })
                .collect();
            let (store, unknown_ids) = match &pc.store {
                None => (None, None),
                Some(sc) => match old_pool.filter(|op| op.cfg.store.as_ref() == Some(sc)) {
                    Some(op) if op.store.is_some() => (op.store.clone(), op.unknown_ids.clone()),
                    _ => (
                        Some(SessionStore::open(sc).map_err(|e| SnapshotError {
                            pool: pc.name.clone(),
                            message: e.to_string(),
                        })?),
                        Some(Arc::new(UnknownIds::new(sc.negative_ttl))),
                    ),
                },
            };
            pools.push(Pool {
                cfg: pc.clone(),
                nodes,
                by_route,
                store,
                unknown_ids,
                rt: old_pool.map(|op| op.rt.clone()).unwrap_or_default(),
            });
        }
        Ok(Snapshot { config, pools })
    }

    /// The pool for a request: host must match (pools without hosts match any), longest path
    /// prefix wins, a pool naming the host beats one that does not.
    pub fn match_pool(&self, host: Option<&str>, path: &str) -> Option<&Pool> {
        self.match_pool_index(host, path).map(|i| &self.pools[i])
    }

    /// [`Snapshot::match_pool`] as an index into `pools` (for metrics and the access log).
    pub fn match_pool_index(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(strip_port);
        let mut best: Option<(usize, (bool, usize))> = None;
        for (i, pool) in self.pools.iter().enumerate() {
            let host_named = if pool.cfg.hosts.is_empty() {
                false
            } else {
                match host {
                    Some(h) if pool.cfg.hosts.iter().any(|ph| ph.eq_ignore_ascii_case(h)) => true,
                    _ => continue,
                }
            };
            if !pool.path_matches(path) {
                continue;
            }
            // A pool naming the host wins over any path length, as in nginx and HAProxy.
            let rank = (host_named, pool.cfg.path_prefix.len());
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.cfg.name == name)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    // By bytes from the end, for cost: every request's host goes through here, and the
    // port is a few bytes from the end (`memrchr`'s setup costs more on strings this short).
    match host.bytes().rposition(|b| b == b':') {
        Some(at) if host.as_bytes()[at + 1..].iter().all(u8::is_ascii_digit) => &host[..at],
        _ => host,
    }
}

/// Selection reads pools through this view (see [`crate::core::select`]).
impl PoolView for Pool {
    fn len(&self) -> usize {
        self.nodes.len()
    }
    fn index_of(&self, route: &str) -> Option<usize> {
        self.node_index(route)
    }
    fn state(&self, node: usize) -> NodeState {
        self.nodes[node].state()
    }
    fn is_up(&self, node: usize, now_ms: u64) -> bool {
        self.nodes[node].is_up(now_ms)
    }
    fn weight(&self, node: usize) -> u32 {
        self.nodes[node].weight
    }
    fn domain(&self, node: usize) -> &str {
        &self.nodes[node].domain
    }
    fn redirect(&self, node: usize) -> Option<usize> {
        self.nodes[node].redirect
    }
    fn inflight(&self, node: usize) -> u64 {
        self.nodes[node].inflight()
    }
    fn has_room(&self, node: usize) -> bool {
        self.nodes[node].has_room()
    }
    fn route_seed(&self, node: usize) -> u64 {
        self.nodes[node].route_seed
    }
    fn balance(&self) -> BalanceKind {
        self.cfg.balance
    }
    fn cross_domain(&self) -> bool {
        self.cfg.failover.cross_domain
    }
    fn next_ticket(&self) -> u64 {
        self.rt.rr.fetch_add(1, Ordering::Relaxed) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn test_registry() -> Registry {
        Registry::new(1000, std::time::Duration::from_secs(60))
    }

    fn snapshot(yaml: &str) -> Snapshot {
        let c = Config::from_yaml(yaml, "t.yaml").unwrap();
        Snapshot::build(Arc::new(c), None, &test_registry()).unwrap()
    }

    const TWO_POOLS: &str = r#"
listeners: [{ bind: "127.0.0.1:1" }]
pools:
  - name: root
    nodes: [{ route: a, address: "127.0.0.1:2" }]
  - name: app
    path_prefix: /app
    nodes: [{ route: b, address: "127.0.0.1:3" }]
  - name: shop
    hosts: [shop.example]
    path_prefix: /app
    nodes: [{ route: c, address: "127.0.0.1:4" }]
"#;

    #[test]
    fn pool_matching_table() {
        let s = snapshot(TWO_POOLS);
        let cases = [
            (None, "/", "root"),
            (None, "/app", "app"),
            (None, "/app/x", "app"),
            (None, "/app;jsessionid=X.b", "app"),
            (None, "/apple", "root"),
            (Some("shop.example"), "/app/x", "shop"),
            (Some("SHOP.example:8080"), "/app/x", "shop"),
            (Some("other"), "/app/x", "app"),
            (Some("shop.example"), "/", "root"),
        ];
        for (host, path, want) in cases {
            let got = s.match_pool(host, path).map(|p| p.cfg.name.as_str());
            assert_eq!(got, Some(want), "{host:?} {path}");
        }
    }

    #[test]
    fn a_pool_naming_the_host_beats_a_longer_prefix() {
        let s = snapshot(
            r#"
listeners: [{ bind: "127.0.0.1:1" }]
pools:
  - name: shop
    hosts: [shop.example]
    nodes: [{ route: a, address: "127.0.0.1:2" }]
  - name: app
    path_prefix: /app
    nodes: [{ route: b, address: "127.0.0.1:3" }]
"#,
        );
        let name = |h, p| s.match_pool(h, p).map(|p| p.cfg.name.clone());
        assert_eq!(
            name(Some("shop.example"), "/app/x").as_deref(),
            Some("shop")
        );
        assert_eq!(name(Some("other"), "/app/x").as_deref(), Some("app"));
    }

    #[test]
    fn reload_keeps_runtime_of_unchanged_nodes() {
        let first = snapshot(TWO_POOLS);
        first.pools[0].nodes[0]
            .rt
            .stats
            .requests
            .store(7, Ordering::Relaxed);
        first.pools[0].nodes[0].rt.set_state(NodeState::Draining);
        let changed = TWO_POOLS.replace(
            "route: b, address: \"127.0.0.1:3\"",
            "route: b, address: \"127.0.0.1:9\"",
        );
        let c = Config::from_yaml(&changed, "t.yaml").unwrap();
        let second = Snapshot::build(Arc::new(c), Some(&first), &test_registry()).unwrap();
        let a = &second.pools[0].nodes[0];
        assert_eq!(a.rt.stats.requests.load(Ordering::Relaxed), 7);
        assert_eq!(a.state(), NodeState::Draining);
        assert!(Arc::ptr_eq(&a.rt, &first.pools[0].nodes[0].rt));
        let b = &second.pools[1].nodes[0];
        assert!(!Arc::ptr_eq(&b.rt, &first.pools[1].nodes[0].rt));
    }

    #[test]
    fn a_pinned_state_beats_the_file_on_build_and_reload() {
        let c = Config::from_yaml(TWO_POOLS, "t.yaml").unwrap();
        let pin = |pool: &str, route: &str| {
            (pool == "root" && route == "a").then_some(NodeState::Draining)
        };
        let first = Snapshot::build_pinned(Arc::new(c), None, &test_registry(), &pin).unwrap();
        assert_eq!(first.pools[0].nodes[0].state(), NodeState::Draining);
        assert_eq!(first.pools[1].nodes[0].state(), NodeState::Active);
        // The reloaded file says disabled for both: the pinned node keeps the group's state.
        let changed = TWO_POOLS
            .replace(
                "route: a, address: \"127.0.0.1:2\"",
                "route: a, address: \"127.0.0.1:2\", state: disabled",
            )
            .replace(
                "route: b, address: \"127.0.0.1:3\"",
                "route: b, address: \"127.0.0.1:3\", state: disabled",
            );
        let c = Config::from_yaml(&changed, "t.yaml").unwrap();
        let second =
            Snapshot::build_pinned(Arc::new(c), Some(&first), &test_registry(), &pin).unwrap();
        assert_eq!(second.pools[0].nodes[0].state(), NodeState::Draining);
        assert_eq!(second.pools[1].nodes[0].state(), NodeState::Disabled);
    }

    #[test]
    fn strip_port_cases() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}

/// Selection over real snapshots (the policy itself is in `core::select`).
#[cfg(test)]
mod select_tests {
    use super::tests::test_registry;
    use super::*;
    use crate::core::select::{choose, Choice, NoCandidate, Outcome, SessionKey};
    use crate::state::node::now_ms;
    use std::sync::Arc;
    use std::time::Duration;

    fn pool(yaml_nodes: &str, failover: &str) -> Snapshot {
        let yaml = format!(
            "listeners: [{{ bind: \"127.0.0.1:1\" }}]\npools:\n  - name: app\n    failover: {failover}\n    nodes:\n{yaml_nodes}"
        );
        let c = Config::from_yaml(&yaml, "t.yaml").unwrap();
        Snapshot::build(Arc::new(c), None, &test_registry()).unwrap()
    }

    const NODES: &str =
        "      - { route: jvm1, address: \"127.0.0.1:11\", domain: a, redirect: jvm3 }
      - { route: jvm2, address: \"127.0.0.1:12\", domain: a }
      - { route: jvm3, address: \"127.0.0.1:13\", domain: a }
      - { route: jvm4, address: \"127.0.0.1:14\", domain: b }
      - { route: jvm5, address: \"127.0.0.1:15\", domain: a, state: standby }
";

    #[test]
    fn routes_are_found_by_comparing_in_small_pools_and_by_hashing_in_large_ones() {
        for n in [1, LINEAR_ROUTE_LOOKUP, LINEAR_ROUTE_LOOKUP + 1, 40] {
            let nodes: String = (0..n)
                .map(|i| {
                    format!(
                        "      - {{ route: n{i}, address: \"127.0.0.1:{}\" }}\n",
                        100 + i
                    )
                })
                .collect();
            let s = pool(&nodes, "{}");
            let p = &s.pools[0];
            for i in 0..n {
                assert_eq!(p.node_index(&format!("n{i}")), Some(i), "{n} nodes");
            }
            for missing in ["", "n", "N0", "n0 ", &format!("n{n}")] {
                assert_eq!(p.node_index(missing), None, "{n} nodes: {missing:?}");
            }
        }
    }

    fn key<'a>(pin: &'a str, id: &'a str) -> Option<SessionKey<'a>> {
        Some(SessionKey {
            pin,
            backend_id: id,
        })
    }

    fn down(s: &Snapshot, route: &str) {
        s.pools[0].node(route).unwrap().rt.health.mark_down(
            now_ms(),
            Duration::from_secs(60),
            "test".into(),
        );
    }

    fn routes(
        s: &Snapshot,
        c: Result<Choice, NoCandidate>,
    ) -> Result<(&str, Outcome), NoCandidate> {
        c.map(|c| (s.pools[0].nodes[c.node].route.as_str(), c.outcome))
    }

    #[test]
    fn sticky_and_failover_table() {
        // (down nodes, disabled nodes, pin, expected route or error, outcome)
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static str,
            Result<(&'static str, Outcome), NoCandidate>,
        );
        let cases: &[Case] = &[
            (&[], &[], "jvm2", Ok(("jvm2", Outcome::Hit))),
            (&[], &[], "jvm5", Ok(("jvm5", Outcome::Hit))), // a pinned standby node keeps its session
            (&["jvm1"], &[], "jvm1", Ok(("jvm3", Outcome::Failover))), // redirect honoured
            (&[], &["jvm1"], "jvm1", Ok(("jvm3", Outcome::Failover))),
            (
                &["jvm1", "jvm3"],
                &[],
                "jvm1",
                Ok(("jvm2", Outcome::Failover)),
            ), // redirect down
            (
                &["jvm1", "jvm2", "jvm3"],
                &[],
                "jvm1",
                Ok(("jvm5", Outcome::Failover)),
            ), // standby
            (
                &["jvm1", "jvm2", "jvm3", "jvm5"],
                &[],
                "jvm1",
                Err(NoCandidate::DomainDown),
            ),
            (&["jvm4"], &[], "jvm4", Err(NoCandidate::DomainDown)),
        ];
        for (downs, disabled, pin, want) in cases {
            let s = pool(NODES, "{}");
            for d in *downs {
                down(&s, d);
            }
            for d in *disabled {
                s.pools[0]
                    .node(d)
                    .unwrap()
                    .rt
                    .set_state(NodeState::Disabled);
            }
            let id = format!("ABC.{pin}");
            let got = routes(&s, choose(&s.pools[0], key(pin, &id), &[], now_ms()));
            assert_eq!(got, *want, "down {downs:?} disabled {disabled:?} pin {pin}");
        }
    }

    #[test]
    fn cross_domain_when_allowed() {
        let s = pool(NODES, "{ cross_domain: true }");
        down(&s, "jvm4");
        let got = routes(
            &s,
            choose(&s.pools[0], key("jvm4", "X.jvm4"), &[], now_ms()),
        );
        let (route, outcome) = got.unwrap();
        assert_eq!(outcome, Outcome::Failover);
        assert_ne!(route, "jvm4");
        assert_ne!(
            route, "jvm5",
            "active nodes of another domain come before standby"
        );
    }

    #[test]
    fn unknown_route_fails_over_over_whole_pool() {
        let s = pool(NODES, "{}");
        let c = choose(&s.pools[0], key("gone", "X.gone"), &[], now_ms()).unwrap();
        assert_eq!(c.outcome, Outcome::Failover);
        assert_eq!(c.from, None);
        assert_ne!(s.pools[0].nodes[c.node].state(), NodeState::Standby);
    }

    #[test]
    fn failover_is_deterministic_and_spread() {
        let nodes = "      - { route: jvm1, address: \"127.0.0.1:11\" }
      - { route: jvm2, address: \"127.0.0.1:12\" }
      - { route: jvm3, address: \"127.0.0.1:13\" }
      - { route: jvm4, address: \"127.0.0.1:14\", weight: 2 }
";
        let a = pool(nodes, "{}");
        let b = pool(nodes, "{}");
        down(&a, "jvm1");
        down(&b, "jvm1");
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let id = format!("{i:032X}.jvm1");
            let ca = choose(&a.pools[0], key("jvm1", &id), &[], now_ms()).unwrap();
            let cb = choose(&b.pools[0], key("jvm1", &id), &[], now_ms()).unwrap();
            assert_eq!(ca.node, cb.node, "two snapshots disagree on {id}");
            counts[ca.node] += 1;
        }
        assert_eq!(counts[0], 0);
        // weights 1:1:2 over jvm2..jvm4 -> expect 1000/1000/2000, allow 15%
        for (i, want) in [(1, 1000.0), (2, 1000.0), (3, 2000.0)] {
            let got = counts[i] as f64;
            assert!((got - want).abs() / want < 0.15, "{counts:?}");
        }
    }

    #[test]
    fn new_sessions_skip_draining_disabled_standby() {
        let nodes = "      - { route: a, address: \"127.0.0.1:11\" }
      - { route: b, address: \"127.0.0.1:12\", state: draining }
      - { route: c, address: \"127.0.0.1:13\", state: disabled }
      - { route: d, address: \"127.0.0.1:14\", state: standby }
      - { route: e, address: \"127.0.0.1:15\", weight: 3 }
";
        let s = pool(nodes, "{}");
        let mut counts = [0usize; 5];
        for _ in 0..4000 {
            let c = choose(&s.pools[0], None, &[], now_ms()).unwrap();
            assert_eq!(c.outcome, Outcome::New);
            counts[c.node] += 1;
        }
        assert_eq!(&counts[1..4], &[0, 0, 0], "{counts:?}");
        assert!(
            (counts[4] as f64 / counts[0] as f64 - 3.0).abs() < 0.5,
            "{counts:?}"
        );
        // only standby left up -> standby serves
        down(&s, "a");
        down(&s, "e");
        let c = choose(&s.pools[0], None, &[], now_ms()).unwrap();
        assert_eq!(s.pools[0].nodes[c.node].route, "d");
    }

    #[test]
    fn tried_nodes_are_skipped() {
        let s = pool(NODES, "{}");
        let c = choose(&s.pools[0], key("jvm1", "X.jvm1"), &[0], now_ms()).unwrap();
        assert_eq!(s.pools[0].nodes[c.node].route, "jvm3");
        let c = choose(&s.pools[0], key("jvm1", "X.jvm1"), &[0, 2], now_ms()).unwrap();
        assert_eq!(s.pools[0].nodes[c.node].route, "jvm2");
    }

    #[test]
    fn round_robin_is_weighted() {
        let nodes = "      - { route: a, address: \"127.0.0.1:11\" }
      - { route: b, address: \"127.0.0.1:12\", weight: 2 }
";
        let yaml = format!("listeners: [{{ bind: \"127.0.0.1:1\" }}]\npools:\n  - name: app\n    balance: round_robin\n    nodes:\n{nodes}");
        let c = Config::from_yaml(&yaml, "t.yaml").unwrap();
        let s = Snapshot::build(Arc::new(c), None, &test_registry()).unwrap();
        let picks: Vec<usize> = (0..6)
            .map(|_| choose(&s.pools[0], None, &[], now_ms()).unwrap().node)
            .collect();
        assert_eq!(picks, vec![0, 1, 1, 0, 1, 1]);
    }
}
