//! Nodes joining and leaving a running balancer, from DNS answers and the admin API: what
//! joins, what drains, what comes back and what is removed, each change one snapshot rebuild.
//!
//! Operator states win: leaving drains only a node that was `active`, and coming back
//! reactivates only a node that leaving drained. A leaving node is removed once drained (no
//! live session, in the group's count with `cluster:`, and no request in flight), at the
//! latest at its drain deadline.

use crate::config::{NodeConfig, NodeSource};
use crate::core::discovery::{diff, Change, Found};
use crate::core::node_state::NodeState;
use crate::state::balancer::{Balancer, Sources};
use crate::state::node::now_ms;
use crate::state::runtime_nodes::{discovered_node, Leaving, RuntimeNode};
use crate::state::snapshot::SnapshotError;

/// How long a removed API node may drain when its pool gives no `discovery.drain_timeout`.
pub const API_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Why a runtime change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("no pool {0:?}")]
    NoPool(String),
    #[error("pool {pool:?} has no node {route:?}")]
    NoNode { pool: String, route: String },
    #[error("pool {pool:?} already has a node {route:?}")]
    Exists { pool: String, route: String },
    #[error("node {route:?} of pool {pool:?} comes from {origin}: {hint}")]
    NotRemovable {
        pool: String,
        route: String,
        origin: &'static str,
        hint: &'static str,
    },
    #[error("{0}")]
    Snapshot(String),
}

impl From<SnapshotError> for MembershipError {
    fn from(e: SnapshotError) -> Self {
        MembershipError::Snapshot(e.to_string())
    }
}

impl Balancer {
    /// Applies the discovered set `found` of `pool`: new routes join, routes at new addresses
    /// move, leaving routes named again come back, and routes no longer named start leaving.
    pub fn discovered(&self, pool: &str, found: &[Found]) -> Result<(), MembershipError> {
        let mut sources = self.sources();
        let Some(d) = sources.file.pool(pool).and_then(|p| p.discovery.clone()) else {
            return Err(MembershipError::NoPool(pool.to_string()));
        };
        let file_routes: Vec<String> = sources
            .file
            .pool(pool)
            .map(|p| p.nodes.iter().map(|n| n.route.clone()).collect())
            .unwrap_or_default();
        let members = sources.nodes.discovered_members(pool);
        let now = now_ms();
        let mut leaving = Vec::new();
        let mut back = Vec::new();
        let mut changed = false;
        for change in diff(&members, found) {
            match change {
                Change::Join(f) => {
                    let taken = if file_routes.contains(&f.route) {
                        Some("the config file")
                    } else if sources.nodes.get(pool, &f.route).is_some() {
                        Some("the admin API")
                    } else {
                        None
                    };
                    if let Some(owner) = taken {
                        if self.discovery.note_conflict(pool, &f.route) {
                            tracing::warn!(%pool, node = %f.route, name = %f.name, owner, "discovery: route conflict, the existing node wins");
                        }
                        continue;
                    }
                    tracing::info!(%pool, node = %f.route, name = %f.name, addrs = %discovered_node(&f, &d).address, "discovery: node joins");
                    self.discovery.count_added(pool, NodeSource::Discovery);
                    sources.nodes.pool_mut(pool).insert(
                        f.route.clone(),
                        RuntimeNode {
                            cfg: discovered_node(&f, &d),
                            dns_name: Some(f.name.clone()),
                            leaving: None,
                        },
                    );
                    changed = true;
                }
                Change::Moved(f) => {
                    tracing::info!(%pool, node = %f.route, addrs = %discovered_node(&f, &d).address, "discovery: node moved to new addresses");
                    if let Some(n) = sources.nodes.get_mut(pool, &f.route) {
                        n.cfg = discovered_node(&f, &d);
                        n.dns_name = Some(f.name.clone());
                        if let Some(l) = n.leaving.take() {
                            back.push((f.route.clone(), l));
                        }
                    }
                    changed = true;
                }
                Change::Back(route) => {
                    if let Some(l) = sources
                        .nodes
                        .get_mut(pool, &route)
                        .and_then(|n| n.leaving.take())
                    {
                        tracing::info!(%pool, node = %route, "discovery: leaving node named again, it stays");
                        back.push((route, l));
                    }
                }
                Change::Leave(route) => {
                    tracing::info!(%pool, node = %route, "discovery: node left the answer, draining");
                    leaving.push(route);
                }
            }
        }
        for route in &leaving {
            self.start_leaving(&mut sources, pool, route, now, d.drain_timeout);
        }
        if changed {
            self.rebuild(&sources)?;
        }
        self.after_membership_change(&mut sources, pool, &leaving, &back);
        Ok(())
    }

    /// Adds a node through the admin API.
    pub fn add_node(&self, pool: &str, cfg: NodeConfig) -> Result<(), MembershipError> {
        let mut sources = self.sources();
        let Some(pc) = sources.file.pool(pool) else {
            return Err(MembershipError::NoPool(pool.to_string()));
        };
        let exists = pc.nodes.iter().any(|n| n.route == cfg.route)
            || sources.nodes.get(pool, &cfg.route).is_some();
        if exists {
            return Err(MembershipError::Exists {
                pool: pool.to_string(),
                route: cfg.route,
            });
        }
        let route = cfg.route.clone();
        sources.nodes.pool_mut(pool).insert(
            route.clone(),
            RuntimeNode {
                cfg,
                dns_name: None,
                leaving: None,
            },
        );
        if let Err(e) = self.rebuild(&sources) {
            sources.nodes.remove(pool, &route);
            return Err(e.into());
        }
        self.discovery.count_added(pool, NodeSource::Api);
        tracing::info!(%pool, node = %route, "node added through the admin API");
        Ok(())
    }

    /// Why `route` of `pool` cannot be removed through the API, if it cannot: unknown, or
    /// named by the file or by DNS.
    pub fn check_removable(&self, pool: &str, route: &str) -> Result<(), MembershipError> {
        let sources = self.sources();
        let Some(pc) = sources.file.pool(pool) else {
            return Err(MembershipError::NoPool(pool.to_string()));
        };
        let refused = |source: NodeSource, hint| MembershipError::NotRemovable {
            pool: pool.to_string(),
            route: route.to_string(),
            origin: source.as_str(),
            hint,
        };
        if pc.nodes.iter().any(|n| n.route == route) {
            return Err(refused(
                NodeSource::File,
                "remove it from the file and reload",
            ));
        }
        match sources.nodes.get(pool, route).map(|n| n.cfg.source) {
            None => Err(MembershipError::NoNode {
                pool: pool.to_string(),
                route: route.to_string(),
            }),
            Some(NodeSource::Discovery) => Err(refused(
                NodeSource::Discovery,
                "it leaves when DNS no longer names it",
            )),
            Some(_) => Ok(()),
        }
    }

    /// Starts the removal of a node added through the API: it drains, then goes (at the
    /// latest after `drain_timeout`). File and discovered nodes are refused: the file, or
    /// DNS, names them.
    pub fn remove_node(
        &self,
        pool: &str,
        route: &str,
        drain_timeout: std::time::Duration,
    ) -> Result<(), MembershipError> {
        self.check_removable(pool, route)?;
        let mut sources = self.sources();
        if sources
            .nodes
            .get(pool, route)
            .is_some_and(|n| n.leaving.is_none())
        {
            self.start_leaving(&mut sources, pool, route, now_ms(), drain_timeout);
            let leaving = [route.to_string()];
            self.after_membership_change(&mut sources, pool, &leaving, &[]);
            tracing::info!(%pool, node = %route, "node removal started through the admin API: draining");
        }
        Ok(())
    }

    /// Makes `pool`'s API nodes match the group's (`cluster:`): nodes the group has join (or
    /// stop leaving), API nodes it no longer has start leaving. True when anything changed.
    pub fn group_nodes(&self, pool: &str, group: Vec<NodeConfig>) -> Result<bool, MembershipError> {
        let mut sources = self.sources();
        let Some(pc) = sources.file.pool(pool) else {
            return Ok(false);
        };
        let drain_timeout = pc
            .discovery
            .as_ref()
            .map_or(API_DRAIN_TIMEOUT, |d| d.drain_timeout);
        let file_routes: Vec<String> = pc.nodes.iter().map(|n| n.route.clone()).collect();
        let (mut rebuild, mut back, mut leaving) = (false, Vec::new(), Vec::new());
        for cfg in &group {
            if file_routes.contains(&cfg.route) {
                continue;
            }
            match sources.nodes.get_mut(pool, &cfg.route) {
                Some(n) if n.cfg.source != NodeSource::Api => {}
                Some(n) => {
                    if n.cfg.addr != cfg.addr
                        || n.cfg.weight != cfg.weight
                        || n.cfg.domain != cfg.domain
                    {
                        n.cfg = cfg.clone();
                        rebuild = true;
                    }
                    if let Some(l) = n.leaving.take() {
                        back.push((cfg.route.clone(), l));
                    }
                }
                None => {
                    tracing::info!(%pool, node = %cfg.route, "node added by the group");
                    self.discovery.count_added(pool, NodeSource::Api);
                    sources.nodes.pool_mut(pool).insert(
                        cfg.route.clone(),
                        RuntimeNode {
                            cfg: cfg.clone(),
                            dns_name: None,
                            leaving: None,
                        },
                    );
                    rebuild = true;
                }
            }
        }
        let gone: Vec<String> = sources
            .nodes
            .pool(pool)
            .into_iter()
            .flat_map(|nodes| nodes.values())
            .filter(|n| n.cfg.source == NodeSource::Api && n.leaving.is_none())
            .filter(|n| !group.iter().any(|g| g.route == n.cfg.route))
            .map(|n| n.cfg.route.clone())
            .collect();
        for route in gone {
            tracing::info!(%pool, node = %route, "node removed by the group: draining");
            self.start_leaving(&mut sources, pool, &route, now_ms(), drain_timeout);
            leaving.push(route);
        }
        if rebuild {
            self.rebuild(&sources)?;
        }
        self.after_membership_change(&mut sources, pool, &leaving, &back);
        Ok(rebuild || !leaving.is_empty() || !back.is_empty())
    }

    /// Removes every leaving node that is drained or past its deadline; returns how many.
    pub fn remove_drained(&self) -> Result<usize, MembershipError> {
        let mut sources = self.sources();
        let snap = self.snapshot();
        let now = now_ms();
        let mut gone = Vec::new();
        for (pool, n) in sources.nodes.iter() {
            let Some(l) = n.leaving else { continue };
            let node = snap.pool(pool).and_then(|p| p.node(&n.cfg.route));
            let view = node.map(|node| self.operator.view(&self.registry, pool, node));
            let drained = view.is_none_or(|v| v.live_sessions == 0 && v.in_flight == 0);
            if drained || now >= l.deadline_ms {
                let live = view.map_or(0, |v| v.live_sessions);
                if let Some(node) = node {
                    // A drain that leaving set (and nobody changed since) is not the operator's.
                    let state = match node.state() {
                        NodeState::Draining if l.drained_by_leave => NodeState::Active,
                        other => other,
                    };
                    self.remember_removed_state(pool, &n.cfg.route, state);
                }
                gone.push((
                    pool.to_string(),
                    n.cfg.route.clone(),
                    n.cfg.source,
                    drained,
                    live,
                ));
            }
        }
        for (pool, route, source, drained, live) in &gone {
            sources.nodes.remove(pool, route);
            self.discovery.count_removed(pool, *source);
            if *drained {
                tracing::info!(%pool, node = %route, source = source.as_str(), "node removed: drained");
            } else {
                tracing::warn!(%pool, node = %route, source = source.as_str(), live_sessions = live, "node removed at its drain deadline with sessions left");
            }
        }
        if !gone.is_empty() {
            self.rebuild(&sources)?;
        }
        Ok(gone.len())
    }

    fn start_leaving(
        &self,
        sources: &mut Sources,
        pool: &str,
        route: &str,
        now: u64,
        drain_timeout: std::time::Duration,
    ) {
        if let Some(n) = sources.nodes.get_mut(pool, route) {
            let ms = u64::try_from(drain_timeout.as_millis()).unwrap_or(u64::MAX);
            n.leaving = Some(Leaving {
                since_ms: now,
                deadline_ms: now.saturating_add(ms),
                drained_by_leave: false,
            });
        }
    }

    /// Sets the operator states that leaving and coming back imply, on the current snapshot:
    /// a leaving `active` node drains; a node that comes back is reactivated if leaving
    /// drained it and nobody changed its state since.
    fn after_membership_change(
        &self,
        sources: &mut Sources,
        pool: &str,
        leaving: &[String],
        back: &[(String, Leaving)],
    ) {
        let snap = self.snapshot();
        let Some(p) = snap.pool(pool) else { return };
        for route in leaving {
            let Some(node) = p.node(route) else { continue };
            if node.state() == NodeState::Active {
                node.rt.set_state(NodeState::Draining);
                if let Some(l) = sources
                    .nodes
                    .get_mut(pool, route)
                    .and_then(|n| n.leaving.as_mut())
                {
                    l.drained_by_leave = true;
                }
            }
        }
        for (route, l) in back {
            let Some(node) = p.node(route) else { continue };
            if l.drained_by_leave && node.state() == NodeState::Draining {
                node.rt.set_state(NodeState::Active);
            }
        }
    }
}
