//! `POST /api/v1/nodes?pool=NAME` and `DELETE /api/v1/nodes/{route}?pool=NAME`: nodes added
//! and removed at runtime, as HAProxy's `add server` / `del server`. The answers' statuses are
//! decided here; the listener's routing and the JSON rendering are the caller's.

use http::StatusCode;

use crate::config::{NodeAddr, NodeConfig, NodeSource};
use crate::control::api::NewNode;
use crate::core::node_state::NodeState;
use crate::state::cluster::{unix_ms, ClusterError, GroupChange, SharedNode};
use crate::state::membership::{MembershipError, API_DRAIN_TIMEOUT};
use crate::state::Balancer;

/// A refusal: its status and reason.
pub type Refusal = (StatusCode, String);

/// Adds the node of `body` to `pool`: in a cluster, to the group first (every instance then
/// serves it), then here.
pub async fn add(balancer: &Balancer, pool: Option<&str>, body: &[u8]) -> Result<NewNode, Refusal> {
    let pool = pool.ok_or((
        StatusCode::BAD_REQUEST,
        "the pool parameter is required (?pool=NAME)".to_string(),
    ))?;
    let new: NewNode = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("body must be JSON like {{\"route\": \"jvm4\", \"address\": \"10.0.0.4:8080\"}}: {e}"),
        )
    })?;
    let file = balancer.file_config();
    let Some(pc) = file.pool(pool) else {
        return Err((StatusCode::NOT_FOUND, format!("no pool {pool:?}")));
    };
    let sep = file.session.settings.separator;
    if !crate::core::session::is_valid_route(&new.route, sep) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "route {:?} may only use letters, digits and - _ ~ ! . : (at most 64), without the separator {sep:?}",
                new.route
            ),
        ));
    }
    let addr = NodeAddr::parse(&new.address).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    if new.weight == Some(0) {
        return Err((StatusCode::BAD_REQUEST, "weight must be at least 1".into()));
    }
    let cfg = NodeConfig {
        route: new.route.clone(),
        address: new.address.clone(),
        addr,
        weight: new.weight.unwrap_or(1),
        domain: new.domain.clone().unwrap_or_default(),
        redirect: None,
        state: NodeState::Active,
        max_connections: pc.max_connections_per_node,
        source: NodeSource::Api,
    };
    let taken = || MembershipError::Exists {
        pool: pool.to_string(),
        route: new.route.clone(),
    };
    let here = pc.nodes.iter().any(|n| n.route == new.route)
        || balancer
            .snapshot()
            .pool(pool)
            .and_then(|p| p.node(&new.route))
            .is_some();
    if here {
        return Err(refusal(taken()));
    }
    if let Some(group) = balancer.operator.cluster() {
        let shared = SharedNode {
            route: new.route.clone(),
            address: new.address.clone(),
            weight: cfg.weight,
            domain: cfg.domain.clone(),
            by: group.instance.clone(),
            at_ms: unix_ms(),
        };
        let change = GroupChange::AddNode {
            pool: pool.to_string(),
            node: shared,
        };
        if !group.change(change).await.map_err(unavailable)? {
            return Err(refusal(taken()));
        }
    }
    match balancer.add_node(pool, cfg) {
        // The group's sync added it here meanwhile.
        Err(MembershipError::Exists { .. }) if balancer.operator.cluster().is_some() => Ok(new),
        Err(e) => Err(refusal(e)),
        Ok(()) => Ok(new),
    }
}

/// The group could not take the change: nothing changed.
fn unavailable(e: ClusterError) -> Refusal {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// Starts the removal of `route` from `pool`: in a cluster, from the group first.
pub async fn remove(balancer: &Balancer, pool: Option<&str>, route: &str) -> Result<(), Refusal> {
    let pool = pool.ok_or((
        StatusCode::BAD_REQUEST,
        "the pool parameter is required (?pool=NAME)".to_string(),
    ))?;
    let drain_timeout = balancer
        .file_config()
        .pool(pool)
        .and_then(|p| p.discovery.as_ref().map(|d| d.drain_timeout))
        .unwrap_or(API_DRAIN_TIMEOUT);
    // Refusals (unknown, a file or discovered node) before the group is asked.
    balancer.check_removable(pool, route).map_err(refusal)?;
    if let Some(group) = balancer.operator.cluster() {
        let change = GroupChange::RemoveNode {
            pool: pool.to_string(),
            route: route.to_string(),
        };
        group.change(change).await.map_err(unavailable)?;
    }
    balancer
        .remove_node(pool, route, drain_timeout)
        .map_err(refusal)
}

fn refusal(e: MembershipError) -> Refusal {
    let status = match &e {
        MembershipError::NoPool(_) | MembershipError::NoNode { .. } => StatusCode::NOT_FOUND,
        MembershipError::Exists { .. } | MembershipError::NotRemovable { .. } => {
            StatusCode::CONFLICT
        }
        MembershipError::Snapshot(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string())
}
