//! `POST /api/v1/nodes?pool=NAME` and `DELETE /api/v1/nodes/{route}?pool=NAME`: nodes added
//! and removed at runtime, as HAProxy's `add server` / `del server`. The answers' statuses are
//! decided here; the listener's routing and the JSON rendering are the caller's.

use std::time::Duration;

use http::StatusCode;

use crate::config::{NodeAddr, NodeConfig, NodeSource};
use crate::control::api::NewNode;
use crate::core::node_state::NodeState;
use crate::state::membership::MembershipError;
use crate::state::Balancer;

/// How long an API removal waits for the node to drain when the pool gives no
/// `discovery.drain_timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// A refusal: its status and reason.
pub type Refusal = (StatusCode, String);

/// Adds the node of `body` to `pool`.
pub fn add(balancer: &Balancer, pool: Option<&str>, body: &[u8]) -> Result<NewNode, Refusal> {
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
    balancer.add_node(pool, cfg).map_err(refusal)?;
    Ok(new)
}

/// Starts the removal of `route` from `pool`.
pub fn remove(balancer: &Balancer, pool: Option<&str>, route: &str) -> Result<(), Refusal> {
    let pool = pool.ok_or((
        StatusCode::BAD_REQUEST,
        "the pool parameter is required (?pool=NAME)".to_string(),
    ))?;
    let drain_timeout = balancer
        .file_config()
        .pool(pool)
        .and_then(|p| p.discovery.as_ref().map(|d| d.drain_timeout))
        .unwrap_or(DEFAULT_DRAIN_TIMEOUT);
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
