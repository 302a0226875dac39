//! The admin API's data types: what `GET /api/v1/status`, the state changes and the reload
//! answer, as JSON. `ctl` and the status page read these and nothing else of the server.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Environment variable that provides (or overrides) `admin.token`, for `serve` and `ctl`.
pub use crate::config::ADMIN_TOKEN_ENV;

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub version: String,
    /// The configuration file in use.
    pub config: String,
    pub registry: RegistryReport,
    pub pools: Vec<PoolReport>,
    /// The group, when a `cluster:` section is configured. Then each node's `live_sessions`,
    /// `in_flight` and `drained` are the group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReport>,
}

/// The group this instance belongs to (`cluster:`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterReport {
    /// `cluster.name`.
    pub name: String,
    /// Whether Redis is reachable now; while it is not, changes are refused and nodes keep
    /// their last known states.
    pub connected: bool,
    /// This instance's id.
    pub instance: String,
    /// Why the group is disconnected (the last Redis error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed Redis operations since start.
    #[serde(default)]
    pub errors: u64,
    /// Every instance known to the group, this one first.
    pub instances: Vec<InstanceReport>,
}

/// One instance of the group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceReport {
    pub id: String,
    /// It published its counts within the last 3 heartbeats.
    pub alive: bool,
    /// This is the instance that answered.
    #[serde(default)]
    pub local: bool,
    /// Its admin listener, as it published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// Milliseconds since it last published (0 for this instance).
    #[serde(default)]
    pub last_seen_ms: u64,
    /// What it sees of each node (the last counts it published).
    #[serde(default)]
    pub nodes: Vec<InstanceNodeReport>,
}

/// One node as one instance sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceNodeReport {
    pub pool: String,
    pub route: String,
    pub live_sessions: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegistryReport {
    pub sessions: usize,
    pub max_sessions: usize,
    /// New sessions not tracked because the registry was full.
    pub rejected: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PoolReport {
    pub name: String,
    pub binder: String,
    pub health_checks: bool,
    pub nodes: Vec<NodeReport>,
    /// The pool's DNS discovery, when it has a `discovery` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryReport>,
}

/// A pool's discovery source as last seen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// `srv` or `host`.
    pub kind: String,
    /// The name looked up.
    pub name: String,
    /// Unix milliseconds of the last lookup (0: none yet) and of the next.
    pub last_lookup_ms: u64,
    pub next_lookup_ms: u64,
    /// Nodes the last good answer named.
    pub records: usize,
    /// The last lookup's error, while lookups fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The nodes in use are from an earlier answer: the last lookup failed, or gave no
    /// records and the pool waits out `empty_grace`.
    pub stale: bool,
}

/// `POST /api/v1/nodes?pool=NAME`: a node added at runtime (not written to the file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    pub route: String,
    /// `ip:port` or `host:port` (a host name is looked up at each new connection).
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub route: String,
    pub address: String,
    pub domain: String,
    pub weight: u32,
    /// Runtime state: `active`, `draining`, `disabled`, `standby`.
    pub state: String,
    /// The state the config file gives.
    pub config_state: String,
    /// `up` or `down`.
    pub health: String,
    /// Requests in flight to the node (summed over the live instances, in a cluster).
    pub in_flight: u64,
    /// Requests sent to the node (retries included).
    pub requests: u64,
    pub failovers_in: u64,
    pub failovers_out: u64,
    pub connect_errors: u64,
    pub upstream_errors: u64,
    /// Sessions seen on the node within `session.idle_timeout` (by the live instances of the
    /// group, in a cluster).
    pub live_sessions: u64,
    /// Draining or disabled, and no live session left (on any live instance of the group, in
    /// a cluster; never while the group is disconnected).
    pub drained: bool,
    pub last_error: Option<String>,
    /// Where the node comes from: `file`, `discovery` or `api`.
    #[serde(default = "file_source")]
    pub source: String,
    /// It left (DNS no longer names it, or its removal was asked): it drains, then goes.
    #[serde(default)]
    pub leaving: bool,
}

fn file_source() -> String {
    "file".into()
}

/// The result of a state change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateChange {
    pub route: String,
    pub state: String,
    /// Every node changed: pool and previous state.
    pub nodes: Vec<ChangedNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChangedNode {
    pub pool: String,
    pub previous: String,
}

/// What a successful reload changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// The file that was read.
    pub file: String,
    pub pools: usize,
    pub nodes: usize,
    pub listeners_added: Vec<SocketAddr>,
    pub listeners_removed: Vec<SocketAddr>,
    pub listeners_restarted: Vec<SocketAddr>,
    /// The admin listener's address after the reload.
    pub admin: Option<SocketAddr>,
    /// Problems that did not refuse the reload (a restarted listener that could not bind).
    pub warnings: Vec<String>,
}
