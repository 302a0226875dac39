//! Operator state changes (drain, disable, activate, standby) and the live-session counts an
//! operator waits on, behind one interface. Without a `cluster:` section every balancer keeps
//! its own ([`OperatorStates::Local`]); with one they are the group's, shared through Redis
//! ([`OperatorStates::Cluster`], see [`crate::state::cluster`]), so the admin API and `ctl`
//! never need to know which one runs.

use std::sync::Arc;

use crate::core::node_state::NodeState;
use crate::state::cluster::{ClusterError, ClusterState, GroupCounts};
use crate::state::registry::Registry;
use crate::state::snapshot::{Node, Snapshot};

/// Why a state change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("no pool named {0:?}")]
    UnknownPool(String),
    #[error("no node with route {route:?}{}", .pool.as_ref().map_or(String::new(), |p| format!(" in pool {p:?}")))]
    UnknownNode { route: String, pool: Option<String> },
    /// The group could not take the change (Redis unreachable): nothing changed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
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
    /// The group's, through Redis (`cluster:`).
    Cluster(Arc<ClusterState>),
}

/// A node's numbers as an operator waits on them: this instance's alone, or the group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    pub live_sessions: u64,
    pub in_flight: u64,
    /// Draining or disabled with no live session: on this instance (local), or on any live
    /// instance of the group (never while the group cannot be read).
    pub drained: bool,
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
            OperatorStates::Cluster(c) => {
                let previous: Vec<Changed> = targets
                    .iter()
                    .map(|(p, n)| Changed {
                        pool: p.to_string(),
                        previous: n.state(),
                    })
                    .collect();
                let names = targets
                    .iter()
                    .map(|(p, n)| (p.to_string(), n.route.clone()))
                    .collect();
                // The cluster task stores the change, announces it and applies it here
                // before it answers; refused at once when Redis is unreachable.
                c.request(names, state).await?;
                Ok(previous)
            }
        }
    }

    /// Live sessions on the node of `slot`, as far as this state knows (the group's sum in a
    /// cluster).
    pub fn live_sessions(&self, registry: &Registry, pool: &str, node: &Node) -> u64 {
        self.view(registry, pool, node).live_sessions
    }

    /// The node's sessions, in-flight requests and drain completion: this instance's, or the
    /// group's (this instance's own numbers now, plus what the other live instances published).
    pub fn view(&self, registry: &Registry, pool: &str, node: &Node) -> NodeView {
        let local_live = registry.live_sessions(node.slot);
        let local_inflight = node.inflight();
        let state = node.state();
        match self {
            OperatorStates::Local => NodeView {
                live_sessions: local_live,
                in_flight: local_inflight,
                drained: registry.is_drained(state, node.slot),
            },
            OperatorStates::Cluster(c) => {
                let GroupCounts {
                    live_sessions,
                    in_flight,
                } = c.others(pool, &node.route);
                let live = local_live + live_sessions;
                NodeView {
                    live_sessions: live,
                    in_flight: local_inflight + in_flight,
                    drained: c.connected()
                        && matches!(state, NodeState::Draining | NodeState::Disabled)
                        && live == 0,
                }
            }
        }
    }

    /// The state the group holds for a node, which beats the file's (`None` without a
    /// cluster, or when the group holds none for it).
    pub fn pinned(&self, pool: &str, route: &str) -> Option<NodeState> {
        match self {
            OperatorStates::Local => None,
            OperatorStates::Cluster(c) => c.pinned(pool, route),
        }
    }

    /// The group's state, when there is a cluster.
    pub fn cluster(&self) -> Option<&Arc<ClusterState>> {
        match self {
            OperatorStates::Local => None,
            OperatorStates::Cluster(c) => Some(c),
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
