//! `pools:`: each pool's matching (hosts, path prefix), nodes, failover, timeouts, cookie,
//! health checks and session store (`store`).

use std::collections::HashSet;

use cookie::SameSite;
use http::HeaderName;

use super::{check_limit, Ctx};
use crate::config::locator::ConfigError;
use crate::config::raw::{
    RawBalance, RawBinder, RawCookie, RawFailover, RawHealth, RawNode, RawNodeState, RawPool,
    RawSameSite, RawTimeouts,
};
use crate::config::types::{
    FailoverConfig, HealthConfig, NodeAddr, NodeConfig, NodeSource, PoolConfig, Timeouts,
};
use crate::core::binder::BinderKind;
use crate::core::cookie::CookieDefaults;
use crate::core::node_state::NodeState;
use crate::core::select::BalanceKind;

/// Every pool (at least one, names unique); `sep` is `session.separator`, which no route may
/// contain.
pub(super) fn validate_pools(
    raw: Vec<RawPool>,
    sep: char,
    ctx: &Ctx,
) -> Result<Vec<PoolConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(ctx.err("pools", "at least one pool is required"));
    }
    let mut pools = Vec::new();
    let mut pool_names = HashSet::new();
    for (pi, p) in raw.into_iter().enumerate() {
        let key = format!("pools[{pi}]");
        if p.name.is_empty() {
            return Err(ctx.err(format!("{key}.name"), "must not be empty"));
        }
        if !pool_names.insert(p.name.clone()) {
            return Err(ctx.err(
                format!("{key}.name"),
                format!("pool name {:?} is used twice", p.name),
            ));
        }
        pools.push(validate_pool(p, &key, sep, ctx)?);
    }
    Ok(pools)
}

/// One pool; `key` is `pools[i]`.
fn validate_pool(p: RawPool, key: &str, sep: char, ctx: &Ctx) -> Result<PoolConfig, ConfigError> {
    if !p.path_prefix.starts_with('/') {
        return Err(ctx.err(format!("{key}.path_prefix"), "must start with /"));
    }
    let hosts = validate_hosts(&p.hosts, key, ctx)?;
    if p.nodes.is_empty() && p.discovery.is_none() {
        return Err(ctx.err(
            format!("{key}.nodes"),
            "a pool needs at least one node, or a discovery block",
        ));
    }
    let per_node = match p.max_connections_per_node {
        Some(v) => Some(check_limit(
            v,
            format!("{key}.max_connections_per_node"),
            ctx,
        )?),
        None => None,
    };
    check_limit(
        p.max_queue_per_node,
        format!("{key}.max_queue_per_node"),
        ctx,
    )?;
    let nodes = validate_nodes(&p, key, sep, per_node, ctx)?;
    let discovery = match &p.discovery {
        None => None,
        Some(d) => Some(super::discovery::validate_discovery(
            d,
            &format!("{key}.discovery"),
            per_node,
            ctx,
        )?),
    };
    let failover = validate_failover(&p.failover, key, ctx)?;
    let timeouts = validate_timeouts(&p.timeouts, key, ctx)?;
    let cookie = validate_cookie(&p.cookie, key, ctx)?;
    let binder = match p.binder {
        RawBinder::Translate => BinderKind::Translate,
        RawBinder::Rename => BinderKind::Rename,
        RawBinder::Backend => BinderKind::Backend,
    };
    let store = match &p.store {
        None if binder == BinderKind::Rename => {
            return Err(ctx.err(
                format!("{key}.store"),
                "binder `rename` needs a session store (store: { kind: redis, url: … })",
            ))
        }
        None => None,
        Some(s) => Some(super::store::validate_store(
            s,
            &format!("{key}.store"),
            ctx,
        )?),
    };
    let health = match &p.health {
        None => None,
        Some(h) => Some(validate_health(h, &format!("{key}.health"), ctx)?),
    };
    for (i, s) in p.fail_on_status.iter().enumerate() {
        if !(100..=599).contains(s) {
            return Err(ctx.err(format!("{key}.fail_on_status[{i}]"), "not a status"));
        }
    }
    Ok(PoolConfig {
        name: p.name,
        hosts,
        path_prefix: p.path_prefix,
        binder,
        balance: match p.balance {
            RawBalance::P2c => BalanceKind::P2c,
            RawBalance::RoundRobin => BalanceKind::RoundRobin,
        },
        failover,
        timeouts,
        cookie,
        store,
        health,
        fail_on_status: p.fail_on_status,
        max_queue_per_node: p.max_queue_per_node,
        max_connections_per_node: per_node,
        nodes,
        discovery,
    })
}

/// `pools[].hosts`: lower-cased, without spaces or slashes.
fn validate_hosts(raw: &[String], key: &str, ctx: &Ctx) -> Result<Vec<String>, ConfigError> {
    let mut hosts = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        let host = h.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(ctx.err(format!("{key}.hosts[{i}]"), format!("invalid host {h:?}")));
        }
        hosts.push(host);
    }
    Ok(hosts)
}

/// `pools[].nodes`: routes unique and valid with `sep`, then every `redirect` names another
/// node of the pool. `per_node` is the pool's `max_connections_per_node`.
fn validate_nodes(
    p: &RawPool,
    key: &str,
    sep: char,
    per_node: Option<u32>,
    ctx: &Ctx,
) -> Result<Vec<NodeConfig>, ConfigError> {
    let mut nodes = Vec::new();
    let mut routes = HashSet::new();
    for (ni, n) in p.nodes.iter().enumerate() {
        let nkey = format!("{key}.nodes[{ni}]");
        check_route(n, &nkey, sep, &mut routes, ctx)?;
        nodes.push(validate_node(n, &nkey, per_node, ctx)?);
    }
    for (ni, n) in nodes.iter().enumerate() {
        if let Some(target) = &n.redirect {
            if !routes.contains(target) {
                return Err(ctx.err(
                    format!("{key}.nodes[{ni}].redirect"),
                    format!("redirect {target:?} names no node of pool {:?}", p.name),
                ));
            }
            if target == &n.route {
                return Err(ctx.err(
                    format!("{key}.nodes[{ni}].redirect"),
                    "a node cannot redirect to itself",
                ));
            }
        }
    }
    Ok(nodes)
}

/// A node's route: not empty, without the separator, of the allowed characters, and not one
/// of `routes` (the pool's routes so far, which it joins).
fn check_route(
    n: &RawNode,
    nkey: &str,
    sep: char,
    routes: &mut HashSet<String>,
    ctx: &Ctx,
) -> Result<(), ConfigError> {
    if n.route.is_empty() {
        return Err(ctx.err(format!("{nkey}.route"), "must not be empty"));
    }
    if n.route.contains(sep) {
        return Err(ctx.err(
            format!("{nkey}.route"),
            format!("route {:?} contains the separator {sep:?}", n.route),
        ));
    }
    if !crate::core::session::is_valid_route(&n.route, sep) {
        return Err(ctx.err(
            format!("{nkey}.route"),
            format!(
                "route {:?} may only use letters, digits and - _ ~ ! . : (at most 64)",
                n.route
            ),
        ));
    }
    if !routes.insert(n.route.clone()) {
        return Err(ctx.err(
            format!("{nkey}.route"),
            format!("duplicate route {:?}", n.route),
        ));
    }
    Ok(())
}

/// The rest of one node (its route is checked): weight, address, connection limit.
fn validate_node(
    n: &RawNode,
    nkey: &str,
    per_node: Option<u32>,
    ctx: &Ctx,
) -> Result<NodeConfig, ConfigError> {
    if n.weight == 0 {
        return Err(ctx.err(format!("{nkey}.weight"), "must be at least 1"));
    }
    let addr = NodeAddr::parse(&n.address).map_err(|m| ctx.err(format!("{nkey}.address"), m))?;
    let max_connections = match n.max_connections {
        Some(v) => Some(check_limit(v, format!("{nkey}.max_connections"), ctx)?),
        None => per_node,
    };
    Ok(NodeConfig {
        route: n.route.clone(),
        address: n.address.clone(),
        addr,
        weight: n.weight,
        domain: n.domain.clone().unwrap_or_default(),
        redirect: n.redirect.clone(),
        state: match n.state {
            RawNodeState::Active => NodeState::Active,
            RawNodeState::Draining => NodeState::Draining,
            RawNodeState::Disabled => NodeState::Disabled,
            RawNodeState::Standby => NodeState::Standby,
        },
        max_connections,
        source: NodeSource::File,
    })
}

/// `pools[].failover`.
fn validate_failover(f: &RawFailover, key: &str, ctx: &Ctx) -> Result<FailoverConfig, ConfigError> {
    if f.max_attempts == 0 {
        return Err(ctx.err(format!("{key}.failover.max_attempts"), "must be at least 1"));
    }
    let header = HeaderName::from_bytes(f.header.as_bytes()).map_err(|_| {
        ctx.err(
            format!("{key}.failover.header"),
            format!("{:?} is not a valid header name", f.header),
        )
    })?;
    Ok(FailoverConfig {
        cross_domain: f.cross_domain,
        max_attempts: f.max_attempts,
        recover_after: f.recover_after,
        retry_idempotent: f.retry_idempotent,
        header,
    })
}

/// `pools[].timeouts`: none of them zero.
fn validate_timeouts(t: &RawTimeouts, key: &str, ctx: &Ctx) -> Result<Timeouts, ConfigError> {
    for (name, d) in [
        ("connect", t.connect),
        ("response", t.response),
        ("body_idle", t.body_idle),
        ("idle", t.idle),
        ("queue", t.queue),
    ] {
        if d.is_zero() {
            return Err(ctx.err(format!("{key}.timeouts.{name}"), "must not be zero"));
        }
    }
    Ok(Timeouts {
        connect: t.connect,
        response: t.response,
        body_idle: t.body_idle,
        idle: t.idle,
        queue: t.queue,
    })
}

/// `pools[].cookie`: the attributes of a session cookie the balancer writes.
fn validate_cookie(c: &RawCookie, key: &str, ctx: &Ctx) -> Result<CookieDefaults, ConfigError> {
    if c.path
        .as_deref()
        .is_some_and(|path| !path.starts_with('/') || path.contains([';', ' ']))
    {
        return Err(ctx.err(
            format!("{key}.cookie.path"),
            "must be a path starting with /",
        ));
    }
    Ok(CookieDefaults {
        path: c.path.clone(),
        http_only: c.http_only,
        same_site: c.same_site.map(|s| match s {
            RawSameSite::Strict => SameSite::Strict,
            RawSameSite::Lax => SameSite::Lax,
            RawSameSite::None => SameSite::None,
        }),
    })
}

/// `pools[].health`; `hkey` is `pools[i].health`.
fn validate_health(h: &RawHealth, hkey: &str, ctx: &Ctx) -> Result<HealthConfig, ConfigError> {
    if !h.path.starts_with('/') || h.path.contains(['\r', '\n', ' ']) {
        return Err(ctx.err(format!("{hkey}.path"), "must be a path starting with /"));
    }
    if h.interval.is_zero() {
        return Err(ctx.err(format!("{hkey}.interval"), "must not be zero"));
    }
    if h.timeout.is_zero() {
        return Err(ctx.err(format!("{hkey}.timeout"), "must not be zero"));
    }
    if h.rise == 0 {
        return Err(ctx.err(format!("{hkey}.rise"), "must be at least 1"));
    }
    if h.fall == 0 {
        return Err(ctx.err(format!("{hkey}.fall"), "must be at least 1"));
    }
    for (i, s) in h.expect_status.iter().enumerate() {
        if !(100..=599).contains(s) {
            return Err(ctx.err(format!("{hkey}.expect_status[{i}]"), "not a status"));
        }
    }
    Ok(HealthConfig {
        path: h.path.clone(),
        interval: h.interval,
        timeout: h.timeout,
        rise: h.rise,
        fall: h.fall,
        expect_status: h.expect_status.clone(),
    })
}
