//! Operator state changes (drain, disable, activate, standby) and the live-session counts an
//! operator waits on, behind one interface. Today every balancer keeps its own
//! ([`OperatorStates::Local`]); a `cluster:` section shares them through Redis (a variant of its
//! own), so the admin API and `ctl` never need to know which one runs.

use crate::core::node_state::NodeState;
use crate::state::registry::Registry;
use crate::state::snapshot::{Node, Snapshot};

/// Why a state change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("no pool named {0:?}")]
    UnknownPool(String),
    #[error("no node with route {route:?}{}", .pool.as_ref().map_or(String::new(), |p| format!(" in pool {p:?}")))]
    UnknownNode { route: String, pool: Option<String> },
}

/// One node a change applied to: its pool and the state it had before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub pool: String,
    pub previous: NodeState,
}

/// Where operator states live.
#[derive(Debug, Default)]
pub enum OperatorStates {
    /// In this process only (no `cluster:` section).
    #[default]
    Local,
}

impl OperatorStates {
    /// Sets the node `route` of `pool` (or of every pool that has it) to `state`.
    pub async fn set(
        &self,
        snap: &Snapshot,
        route: &str,
        pool: Option<&str>,
        state: NodeState,
    ) -> Result<Vec<Changed>, OperatorError> {
        let targets = targets(snap, route, pool)?;
        match self {
            OperatorStates::Local => Ok(targets
                .into_iter()
                .map(|(pool_name, n)| {
                    let previous = n.state();
                    n.rt.set_state(state);
                    if previous != state {
                        tracing::info!(pool = %pool_name, node = %n.route, from = previous.as_str(), to = state.as_str(), "node state changed");
                    }
                    Changed {
                        pool: pool_name.to_string(),
                        previous,
                    }
                })
                .collect()),
        }
    }

    /// Live sessions on the node of `slot`, as far as this state knows.
    pub fn live_sessions(&self, registry: &Registry, slot: u32) -> u64 {
        match self {
            OperatorStates::Local => registry.live_sessions(slot),
        }
    }
}

/// The nodes a change names: `route` in `pool`, or in every pool when `pool` is `None`.
fn targets<'s>(
    snap: &'s Snapshot,
    route: &str,
    pool: Option<&str>,
) -> Result<Vec<(&'s str, &'s Node)>, OperatorError> {
    if let Some(p) = pool {
        if snap.pool(p).is_none() {
            return Err(OperatorError::UnknownPool(p.to_string()));
        }
    }
    let found: Vec<(&str, &Node)> = snap
        .pools
        .iter()
        .filter(|p| pool.is_none_or(|name| p.cfg.name == name))
        .filter_map(|p| p.node(route).map(|n| (p.cfg.name.as_str(), n)))
        .collect();
    if found.is_empty() {
        return Err(OperatorError::UnknownNode {
            route: route.to_string(),
            pool: pool.map(str::to_string),
        });
    }
    Ok(found)
}
