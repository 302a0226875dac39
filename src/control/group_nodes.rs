//! Runtime nodes of a `cluster:` group in Redis: the hash `stickyroute:{group}:nodes:{pool}`,
//! route → [`SharedNode`] JSON. An API add writes the field (`HSETNX`: a route the group has
//! is refused), an API removal deletes it, and every heartbeat each instance reads every
//! pool's hash and makes its own runtime nodes match: a field it lacks joins, a runtime node
//! whose field is gone drains and is removed ([`Balancer::group_nodes`]).

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;

use crate::config::{NodeAddr, NodeConfig, NodeSource};
use crate::core::node_state::NodeState;
use crate::state::cluster::SharedNode;
use crate::state::Balancer;

/// Writes `node` to `key` unless the route is there; false when it was.
pub async fn add(
    conn: &mut MultiplexedConnection,
    key: &str,
    node: &SharedNode,
) -> Result<bool, String> {
    let json = serde_json::to_string(node).unwrap_or_default();
    redis::cmd("HSETNX")
        .arg(key)
        .arg(&node.route)
        .arg(&json)
        .query_async(conn)
        .await
        .map_err(|e| {
            format!(
                "adding node {:?}: {}",
                node.route,
                crate::store::error_chain(&e)
            )
        })
}

/// Deletes `route` from `key`; true when it was there.
pub async fn remove(
    conn: &mut MultiplexedConnection,
    key: &str,
    route: &str,
) -> Result<bool, String> {
    let n: u64 = redis::cmd("HDEL")
        .arg(key)
        .arg(route)
        .query_async(conn)
        .await
        .map_err(|e| format!("removing node {route:?}: {}", crate::store::error_chain(&e)))?;
    Ok(n > 0)
}

/// Reads the pool's hash at `key` and makes `pool`'s runtime API nodes match it; true when
/// nodes joined or started leaving.
pub async fn sync(
    conn: &mut MultiplexedConnection,
    key: &str,
    balancer: &Balancer,
    pool: &str,
) -> Result<bool, String> {
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(|e| {
            format!(
                "reading the nodes of pool {pool:?}: {}",
                crate::store::error_chain(&e)
            )
        })?;
    let mut nodes = Vec::new();
    for (route, json) in fields {
        match serde_json::from_str::<SharedNode>(&json) {
            Ok(n) if n.route == route => match node_config(&n, balancer, pool) {
                Some(cfg) => nodes.push(cfg),
                None => {
                    tracing::warn!(%pool, node = %route, address = %n.address, "cluster: ignoring a runtime node with an invalid address")
                }
            },
            _ => tracing::warn!(%pool, node = %route, "cluster: ignoring a malformed runtime node"),
        }
    }
    balancer
        .group_nodes(pool, nodes)
        .map_err(|e| format!("applying the nodes of pool {pool:?}: {e}"))
}

/// The node config of a group's runtime node.
fn node_config(n: &SharedNode, balancer: &Balancer, pool: &str) -> Option<NodeConfig> {
    let addr = NodeAddr::parse(&n.address).ok()?;
    let per_node = balancer
        .file_config()
        .pool(pool)
        .and_then(|p| p.max_connections_per_node);
    Some(NodeConfig {
        route: n.route.clone(),
        address: n.address.clone(),
        addr,
        weight: n.weight.max(1),
        domain: n.domain.clone(),
        redirect: None,
        state: NodeState::Active,
        max_connections: per_node,
        source: NodeSource::Api,
    })
}
