//! Nodes the config file does not name: discovered from DNS (`pools[].discovery`) or added
//! through the admin API. They live here, by pool and route, and join the file's nodes in
//! every snapshot the balancer builds (see [`RuntimeNodes::merge_into`]).
//!
//! A node that leaves (out of the DNS answer, or removed through the API) stays, marked
//! leaving, until it is drained or its drain deadline passes; then it is removed. The
//! decisions of what joins, moves, comes back and leaves are `core::discovery`'s.

use std::collections::BTreeMap;

use crate::config::{Config, NodeConfig, NodeSource};
use crate::core::discovery::{Found, Member};

/// A node from DNS or the API, as the snapshot gets it.
#[derive(Debug, Clone)]
pub struct RuntimeNode {
    pub cfg: NodeConfig,
    /// The DNS name its route came from (discovered nodes).
    pub dns_name: Option<String>,
    pub leaving: Option<Leaving>,
}

/// A node on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaving {
    /// When it left (ms on [`crate::state::node::now_ms`]'s clock).
    pub since_ms: u64,
    /// Removed at the latest then, drained or not.
    pub deadline_ms: u64,
    /// Leaving set it `draining` (it was `active`): coming back sets it `active` again. An
    /// operator's state (disabled, standby, a drain of their own) is never touched.
    pub drained_by_leave: bool,
}

/// Every pool's runtime nodes.
#[derive(Debug, Default, Clone)]
pub struct RuntimeNodes {
    pools: BTreeMap<String, BTreeMap<String, RuntimeNode>>,
}

impl RuntimeNodes {
    pub fn pool(&self, pool: &str) -> Option<&BTreeMap<String, RuntimeNode>> {
        self.pools.get(pool)
    }

    pub fn pool_mut(&mut self, pool: &str) -> &mut BTreeMap<String, RuntimeNode> {
        self.pools.entry(pool.to_string()).or_default()
    }

    pub fn get(&self, pool: &str, route: &str) -> Option<&RuntimeNode> {
        self.pools.get(pool).and_then(|p| p.get(route))
    }

    pub fn get_mut(&mut self, pool: &str, route: &str) -> Option<&mut RuntimeNode> {
        self.pools.get_mut(pool).and_then(|p| p.get_mut(route))
    }

    pub fn remove(&mut self, pool: &str, route: &str) -> Option<RuntimeNode> {
        self.pools.get_mut(pool).and_then(|p| p.remove(route))
    }

    /// Every (pool, node), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RuntimeNode)> {
        self.pools
            .iter()
            .flat_map(|(p, nodes)| nodes.values().map(move |n| (p.as_str(), n)))
    }

    /// The pool's discovered nodes as `core::discovery::diff` compares them.
    pub fn discovered_members(&self, pool: &str) -> BTreeMap<String, Member> {
        self.pools
            .get(pool)
            .into_iter()
            .flat_map(|nodes| nodes.values())
            .filter(|n| n.cfg.source == NodeSource::Discovery)
            .map(|n| {
                (
                    n.cfg.route.clone(),
                    Member {
                        addrs: discovered_addrs(&n.cfg),
                        leaving: n.leaving.is_some(),
                    },
                )
            })
            .collect()
    }

    /// Drops what a new file overrides: pools it no longer has, and routes it now names
    /// (the file's node wins). Returns the dropped (pool, route, source).
    pub fn retain_for(&mut self, file: &Config) -> Vec<(String, String, NodeSource)> {
        let mut dropped = Vec::new();
        self.pools.retain(|pool, nodes| {
            let Some(pc) = file.pool(pool) else {
                dropped.extend(
                    nodes
                        .values()
                        .map(|n| (pool.clone(), n.cfg.route.clone(), n.cfg.source)),
                );
                return false;
            };
            nodes.retain(|route, n| {
                let named = pc.nodes.iter().any(|f| &f.route == route);
                let discovery_gone =
                    n.cfg.source == NodeSource::Discovery && pc.discovery.is_none();
                if named || discovery_gone {
                    dropped.push((pool.clone(), route.clone(), n.cfg.source));
                }
                !named && !discovery_gone
            });
            true
        });
        dropped
    }

    /// `file` with every pool's runtime nodes after its own.
    pub fn merge_into(&self, file: &Config) -> Config {
        let mut cfg = file.clone();
        for pool in &mut cfg.pools {
            if let Some(nodes) = self.pools.get(&pool.name) {
                pool.nodes.extend(nodes.values().map(|n| n.cfg.clone()));
            }
        }
        cfg
    }
}

/// A discovered node's addresses (its `addr` holds exactly the looked-up list).
fn discovered_addrs(cfg: &NodeConfig) -> Vec<std::net::SocketAddr> {
    match &cfg.addr {
        crate::config::NodeAddr::Resolved(list) => list.to_vec(),
        crate::config::NodeAddr::Socket(a) => vec![*a],
        crate::config::NodeAddr::Host { .. } => Vec::new(),
    }
}

/// The node config of a discovered node of a pool with `discovery`.
pub fn discovered_node(found: &Found, d: &crate::config::DiscoveryConfig) -> NodeConfig {
    NodeConfig {
        route: found.route.clone(),
        address: found
            .addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        addr: crate::config::NodeAddr::Resolved(found.addrs.clone().into()),
        weight: d.weight,
        domain: d.domain.clone(),
        redirect: None,
        state: crate::core::node_state::NodeState::Active,
        max_connections: d.max_connections,
        source: NodeSource::Discovery,
    }
}
