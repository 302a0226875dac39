//! The running balancer's shared state: the routing snapshot (hot-swapped with arc-swap) and
//! what outlives it: the session registry, the balancer-wide counters and where operator states
//! live (this process, or the group). One cheap-to-clone handle, passed to every connection,
//! the admin listener and the health checkers.
//!
//! Work that reads several of them together is here too: counting an answered request (the
//! snapshot's pool and node counters, or the balancer's own) and reporting drain completion
//! (the registry's counts, the operator's verdict).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::StatusCode;

use crate::config::Config;
use crate::core::select::Outcome;
use crate::state::cluster::{default_instance_id, ClusterState};
use crate::state::metrics::status_class;
use crate::state::operator::OperatorStates;
use crate::state::registry::Registry;
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
        let snapshot = Snapshot::build(Arc::new(config), None, &registry)?;
        Ok(Arc::new(Balancer {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            metrics: BalancerMetrics::default(),
            operator,
        }))
    }

    /// The current routing table.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config, carrying node runtimes over (see [`Snapshot::build`]); in a
    /// cluster, nodes keep the group's states whatever the file says.
    pub fn apply(&self, config: Config) -> Result<Arc<Snapshot>, SnapshotError> {
        let old = self.snapshot.load_full();
        // The group's states beat the file's: a reload keeps them.
        let new = Arc::new(Snapshot::build_pinned(
            Arc::new(config),
            Some(&old),
            &self.registry,
            &|pool, route| self.operator.pinned(pool, route),
        )?);
        self.registry.set_limits(
            new.config.registry.max_sessions,
            new.config.session.idle_timeout,
        );
        self.snapshot.store(new.clone());
        Ok(new)
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
