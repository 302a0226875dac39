//! Nodes and pools as the request path sees them: one immutable [`Snapshot`] of the whole
//! routing table, swapped atomically on reload, whose nodes point at long-lived
//! [`NodeRuntime`]s (operator state, health, in-flight count, counters, pooled connections).
//!
//! A reload builds a new snapshot and hands every node whose route and address are unchanged
//! its old runtime, so health, counters, in-flight requests and runtime state survive
//! (pingora's `Backends::do_update`, but with one swap instead of two).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{Config, NodeAddr, PoolConfig};
use crate::store::SessionStore;
use crate::upstream::UpstreamPool;

/// Operator state of a node; independent of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeState {
    /// All traffic.
    Active = 0,
    /// Pinned sessions stay, no new ones.
    Draining = 1,
    /// No traffic: a pinned session moves on its next request.
    Disabled = 2,
    /// Used only when no active node of the domain is up.
    Standby = 3,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Disabled => "disabled",
            NodeState::Standby => "standby",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        match s {
            "active" => Some(NodeState::Active),
            "draining" => Some(NodeState::Draining),
            "disabled" => Some(NodeState::Disabled),
            "standby" => Some(NodeState::Standby),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> NodeState {
        match v {
            1 => NodeState::Draining,
            2 => NodeState::Disabled,
            3 => NodeState::Standby,
            _ => NodeState::Active,
        }
    }
}

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
    pub conns: UpstreamPool,
    /// Request and health counters for `/metrics`.
    pub metrics: crate::metrics::NodeMetrics,
}

impl NodeRuntime {
    pub fn new(state: NodeState) -> Self {
        NodeRuntime {
            state: AtomicU8::new(state as u8),
            health: Health::default(),
            inflight: AtomicU64::new(0),
            stats: NodeStats::default(),
            conns: UpstreamPool::default(),
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
    /// The node's key in the session registry ([`crate::registry::node_slot`]).
    pub slot: u32,
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
}

/// Counters of one pool that outlive reloads.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Rebinds by result: index with [`RebindResult`].
    pub rebinds: [AtomicU64; 4],
    pub store_errors: AtomicU64,
}

/// Result of one rebind, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebindResult {
    /// The client received a new id (translate, or a successful store rename).
    Rebound = 0,
    /// The store had already renamed it (a concurrent request or another balancer).
    AlreadyRenamed = 1,
    /// The store did not know the session; the new id was used anyway.
    NotFound = 2,
    /// The store failed; `on_store_error` decided.
    StoreError = 3,
}

impl RebindResult {
    pub const ALL: [RebindResult; 4] = [
        RebindResult::Rebound,
        RebindResult::AlreadyRenamed,
        RebindResult::NotFound,
        RebindResult::StoreError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RebindResult::Rebound => "rebound",
            RebindResult::AlreadyRenamed => "already_renamed",
            RebindResult::NotFound => "not_found",
            RebindResult::StoreError => "store_error",
        }
    }
}

/// Pool-level runtime shared across reloads.
#[derive(Debug, Default)]
pub struct PoolRuntime {
    pub stats: PoolStats,
    /// Round-robin cursor.
    pub rr: AtomicUsize,
    /// Request counters and duration histogram for `/metrics`.
    pub metrics: crate::metrics::PoolMetrics,
}

/// A pool of nodes with its settings.
#[derive(Debug)]
pub struct Pool {
    pub cfg: PoolConfig,
    pub nodes: Vec<Node>,
    by_route: HashMap<String, usize>,
    pub store: Option<SessionStore>,
    pub rt: Arc<PoolRuntime>,
}

impl Pool {
    /// Index of the node with this route.
    pub fn node_index(&self, route: &str) -> Option<usize> {
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
    /// takes the new configured state; otherwise its runtime state is kept.
    pub fn build(
        config: Arc<Config>,
        previous: Option<&Snapshot>,
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
                    let rt = match old {
                        Some(on) => {
                            if on.config_state != nc.state {
                                on.rt.set_state(nc.state);
                            }
                            on.rt.clone()
                        }
                        None => Arc::new(NodeRuntime::new(nc.state)),
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
                        slot: crate::registry::node_slot(&pc.name, &nc.route),
                        rt,
                    }
                })
                .collect();
            let store = match &pc.store {
                None => None,
                Some(sc) => match old_pool.and_then(|op| {
                    op.store
                        .clone()
                        .filter(|_| op.cfg.store.as_ref() == Some(sc))
                }) {
                    Some(s) => Some(s),
                    None => Some(SessionStore::open(sc).map_err(|e| SnapshotError {
                        pool: pc.name.clone(),
                        message: e.to_string(),
                    })?),
                },
            };
            pools.push(Pool {
                cfg: pc.clone(),
                nodes,
                by_route,
                store,
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
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(yaml: &str) -> Snapshot {
        let c = Config::from_yaml(yaml, "t.yaml").unwrap();
        Snapshot::build(Arc::new(c), None).unwrap()
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
        let second = Snapshot::build(Arc::new(c), Some(&first)).unwrap();
        let a = &second.pools[0].nodes[0];
        assert_eq!(a.rt.stats.requests.load(Ordering::Relaxed), 7);
        assert_eq!(a.state(), NodeState::Draining);
        assert!(Arc::ptr_eq(&a.rt, &first.pools[0].nodes[0].rt));
        let b = &second.pools[1].nodes[0];
        assert!(!Arc::ptr_eq(&b.rt, &first.pools[1].nodes[0].rt));
    }

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

    #[test]
    fn strip_port_cases() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "::1");
    }
}
