//! The running balancer's shared state: the routing snapshot (hot-swapped with arc-swap) and
//! what outlives it: the session registry, the balancer-wide metrics and where operator states
//! live (this process, or the group). One cheap-to-clone
//! handle, passed to every connection, the admin listener and the health checkers.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::state::cluster::{default_instance_id, ClusterState};
use crate::state::metrics::Metrics;
use crate::state::operator::OperatorStates;
use crate::state::registry::Registry;
use crate::state::snapshot::{Snapshot, SnapshotError};

/// Shared state of one balancer process.
#[derive(Debug)]
pub struct Balancer {
    snapshot: ArcSwap<Snapshot>,
    /// Sessions seen recently, by node (statistics and drain; never used for routing).
    pub registry: Registry,
    /// Balancer-wide counters; per-node ones live in the node runtimes.
    pub metrics: Metrics,
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
            metrics: Metrics::default(),
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
}
