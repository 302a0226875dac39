//! The running balancer's shared state: the routing snapshot (hot-swapped with arc-swap) and
//! what outlives it: the session registry and the balancer-wide metrics. One cheap-to-clone
//! handle, passed to every connection, the admin listener and the health checkers.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
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
        let snapshot = Snapshot::build(Arc::new(config), None, &registry)?;
        Ok(Arc::new(Balancer {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            metrics: Metrics::default(),
            operator: OperatorStates::Local,
        }))
    }

    /// The current routing table.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config, carrying node runtimes over (see [`Snapshot::build`]).
    pub fn apply(&self, config: Config) -> Result<Arc<Snapshot>, SnapshotError> {
        let old = self.snapshot.load_full();
        let new = Arc::new(Snapshot::build(
            Arc::new(config),
            Some(&old),
            &self.registry,
        )?);
        self.registry.set_limits(
            new.config.registry.max_sessions,
            new.config.session.idle_timeout,
        );
        self.snapshot.store(new.clone());
        Ok(new)
    }
}
