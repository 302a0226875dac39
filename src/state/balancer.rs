//! The running balancer's shared state: the routing snapshot (hot-swapped with arc-swap) and
//! what outlives it: the session registry, the balancer-wide counters and where operator states
//! live (this process, or the group). One cheap-to-clone handle, passed to every connection,
//! the admin listener and the health checkers.
//!
//! Work that reads several of them together is here too: counting an answered request (the
//! snapshot's pool and node counters, or the balancer's own) and reporting drain completion
//! (the registry's counts, the operator's verdict).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::StatusCode;

use crate::config::Config;
use crate::config::NodeSource;
use crate::core::node_state::NodeState;
use crate::core::select::Outcome;
use crate::state::cluster::{default_instance_id, ClusterState};
use crate::state::discovery::DiscoveryBoard;
use crate::state::metrics::status_class;
use crate::state::operator::OperatorStates;
use crate::state::registry::Registry;
use crate::state::runtime_nodes::RuntimeNodes;
use crate::state::snapshot::{Snapshot, SnapshotError};

/// Shared state of one balancer process.
#[derive(Debug)]
pub struct Balancer {
    snapshot: ArcSwap<Snapshot>,
    /// Sessions seen recently, by node (statistics and drain; never used for routing).
    pub registry: Registry,
    /// Balancer-wide counters; per-node and per-pool ones live in their runtimes.
    pub metrics: BalancerMetrics,
    /// Where operator state changes go (this process, or the cluster).
    pub operator: OperatorStates,
    /// Each pool's DNS discovery: status and counters.
    pub discovery: DiscoveryBoard,
    /// What every snapshot is built from; the lock serializes rebuilds.
    sources: Mutex<Sources>,
    /// Operator states of runtime nodes that were removed (`disabled`, `standby`, a drain of
    /// an operator's): a node that joins again under the same route takes its state back.
    removed_states: Mutex<std::collections::HashMap<(String, String), NodeState>>,
}

/// The file's config and the nodes added at runtime: a snapshot's config is their merge.
#[derive(Debug)]
pub struct Sources {
    pub file: Arc<Config>,
    pub nodes: RuntimeNodes,
}

impl Balancer {
    /// Builds the first snapshot from a validated config.
    pub fn new(config: Config) -> Result<Arc<Balancer>, SnapshotError> {
        let registry = Registry::new(config.registry.max_sessions, config.session.idle_timeout);
        let operator = match &config.cluster {
            None => OperatorStates::Local,
            Some(c) => OperatorStates::Cluster(Arc::new(ClusterState::new(
                c.name.clone(),
                c.instance.clone().unwrap_or_else(default_instance_id),
                c.timeout,
            ))),
        };
        let file = Arc::new(config);
        let snapshot = Snapshot::build(file.clone(), None, &registry)?;
        Ok(Arc::new(Balancer {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            metrics: BalancerMetrics::default(),
            operator,
            discovery: DiscoveryBoard::default(),
            sources: Mutex::new(Sources {
                file,
                nodes: RuntimeNodes::default(),
            }),
            removed_states: Mutex::default(),
        }))
    }

    /// The sources of the snapshot, locked: changes to them end with [`Balancer::rebuild`].
    pub fn sources(&self) -> MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The config file's settings as last loaded (without runtime nodes).
    pub fn file_config(&self) -> Arc<Config> {
        self.sources().file.clone()
    }

    /// The current routing table.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config, carrying node runtimes over (see [`Snapshot::build`]); in a
    /// cluster, nodes keep the group's states whatever the file says.
    /// Runtime nodes stay unless the new file names their route or drops their pool (or,
    /// for discovered nodes, the pool's discovery).
    pub fn apply(&self, config: Config) -> Result<Arc<Snapshot>, SnapshotError> {
        let mut sources = self.sources();
        let file = Arc::new(config);
        let mut nodes = sources.nodes.clone();
        let dropped = nodes.retain_for(&file);
        let new = self.rebuild_from(&file, &nodes)?;
        sources.file = file;
        sources.nodes = nodes;
        for (pool, route, source) in dropped {
            tracing::info!(%pool, node = %route, source = source.as_str(), "runtime node dropped: the reloaded file names its route or no longer has its pool or discovery");
            self.discovery.count_removed(&pool, source);
        }
        Ok(new)
    }

    /// Builds and swaps in the snapshot of `sources` (held locked by the caller).
    pub fn rebuild(&self, sources: &Sources) -> Result<Arc<Snapshot>, SnapshotError> {
        self.rebuild_from(&sources.file, &sources.nodes)
    }

    fn rebuild_from(
        &self,
        file: &Config,
        nodes: &RuntimeNodes,
    ) -> Result<Arc<Snapshot>, SnapshotError> {
        let old = self.snapshot.load_full();
        // The group's states beat the file's: a reload keeps them.
        let new = Arc::new(Snapshot::build_pinned(
            Arc::new(nodes.merge_into(file)),
            Some(&old),
            &self.registry,
            &|pool, route| self.operator.pinned(pool, route),
        )?);
        hold_new_runtime_nodes_down(&old, &new);
        self.restore_removed_states(&old, &new);
        self.registry.set_limits(
            new.config.registry.max_sessions,
            new.config.session.idle_timeout,
        );
        self.snapshot.store(new.clone());
        Ok(new)
    }

    /// Remembers the operator state of a runtime node being removed, when it is one an
    /// operator set (see [`Balancer::restore_removed_states`]).
    pub fn remember_removed_state(&self, pool: &str, route: &str, state: NodeState) {
        let mut m = self
            .removed_states
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if state == NodeState::Active {
            m.remove(&(pool.to_string(), route.to_string()));
        } else {
            m.insert((pool.to_string(), route.to_string()), state);
        }
    }

    /// Gives a runtime node that joins (a runtime new to `new`) the operator state it had
    /// when it was removed, unless the group holds one for it.
    fn restore_removed_states(&self, old: &Snapshot, new: &Snapshot) {
        let mut m = self
            .removed_states
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if m.is_empty() {
            return;
        }
        for pool in &new.pools {
            let old_pool = old.pool(&pool.cfg.name);
            for node in pool.nodes.iter().filter(|n| n.source != NodeSource::File) {
                let known = old_pool
                    .and_then(|p| p.node(&node.route))
                    .is_some_and(|o| Arc::ptr_eq(&o.rt, &node.rt));
                let key = (pool.cfg.name.clone(), node.route.clone());
                if known {
                    continue;
                }
                if let Some(state) = m.remove(&key) {
                    if self.operator.pinned(&key.0, &key.1).is_none() {
                        node.rt.set_state(state);
                    }
                }
            }
        }
    }

    /// Logs "node drained" once per drain for every node that became drained, and re-arms the
    /// event for nodes that are not drained. Nodes already drained at the first call (disabled
    /// in the file at startup) are not reported. In a cluster, "drained" is the group's
    /// verdict (no live instance sees a session).
    pub fn report_drained(&self) {
        let snap = self.snapshot();
        let first = self.registry.begin_drain_pass();
        for pool in &snap.pools {
            for node in &pool.nodes {
                let drained = self
                    .operator
                    .view(&self.registry, &pool.cfg.name, node)
                    .drained;
                if self.registry.record_drained(node.slot, drained) && !first {
                    tracing::info!(
                        pool = %pool.cfg.name,
                        node = %node.route,
                        state = node.state().as_str(),
                        "node drained: no live session left"
                    );
                }
            }
        }
    }
}

/// A node that joins at runtime a pool with health checks takes requests only once the
/// checks have passed `rise` times: its new runtime starts down (a file node starts up).
fn hold_new_runtime_nodes_down(old: &Snapshot, new: &Snapshot) {
    for pool in &new.pools {
        if pool.cfg.health.is_none() {
            continue;
        }
        let old_pool = old.pool(&pool.cfg.name);
        for node in pool.nodes.iter().filter(|n| n.source != NodeSource::File) {
            let known = old_pool
                .and_then(|p| p.node(&node.route))
                .is_some_and(|o| Arc::ptr_eq(&o.rt, &node.rt));
            if !known {
                node.rt
                    .health
                    .set_probe_down(true, Some("joined: waiting for health checks".into()));
            }
        }
    }
}

/// The balancer's own counters.
#[derive(Debug, Default)]
pub struct BalancerMetrics {
    /// Requests no pool serves, by status class.
    no_pool: [AtomicU64; 5],
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl BalancerMetrics {
    /// Counts one answered request. `pool` and `node` index the snapshot the request used;
    /// the request lands in that node's counters, or its pool's when it reached no node, or
    /// the balancer's when no pool serves it.
    pub fn observe_request(
        &self,
        snap: &Snapshot,
        pool: Option<usize>,
        node: Option<usize>,
        outcome: Option<Outcome>,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let Some(pool) = pool.and_then(|i| snap.pools.get(i)) else {
            self.no_pool[status_class(status)].fetch_add(1, Ordering::Relaxed);
            return;
        };
        pool.rt.metrics.duration.observe(elapsed);
        match (node.and_then(|i| pool.nodes.get(i)), outcome) {
            (Some(n), Some(o)) => n.rt.metrics.count(o, status, elapsed),
            _ => pool.rt.metrics.count_unrouted(status),
        }
    }

    /// Requests no pool serves, with this status class.
    pub fn no_pool(&self, status_class: usize) -> u64 {
        self.no_pool[status_class].load(Ordering::Relaxed)
    }

    pub fn record_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
