//! The running balancer's shared state: the routing snapshot (hot-swapped with arc-swap) and
//! what outlives it. One cheap-to-clone handle, passed to every connection, the admin listener
//! and the health checkers.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::backends::{Snapshot, SnapshotError};
use crate::config::Config;

/// Shared state of one balancer process.
#[derive(Debug)]
pub struct Balancer {
    snapshot: ArcSwap<Snapshot>,
}

impl Balancer {
    /// Builds the first snapshot from a validated config.
    pub fn new(config: Config) -> Result<Arc<Balancer>, SnapshotError> {
        let snapshot = Snapshot::build(Arc::new(config), None)?;
        Ok(Arc::new(Balancer {
            snapshot: ArcSwap::from_pointee(snapshot),
        }))
    }

    /// The current routing table.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config, carrying node runtimes over (see [`Snapshot::build`]).
    pub fn apply(&self, config: Config) -> Result<Arc<Snapshot>, SnapshotError> {
        let old = self.snapshot.load_full();
        let new = Arc::new(Snapshot::build(Arc::new(config), Some(&old))?);
        self.snapshot.store(new.clone());
        Ok(new)
    }
}
