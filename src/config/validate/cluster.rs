//! `cluster:`: the group's Redis, its name and this instance's id.

use std::time::Duration;

use super::Ctx;
use crate::config::locator::ConfigError;
use crate::config::raw::RawCluster;
use crate::config::types::ClusterConfig;

/// A Redis URL the cluster can use: `redis://` (TLS is not built in), with a host.
pub(crate) fn check_redis_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(format!("{url:?} must start with redis://"));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

/// A group name or instance id: it becomes part of Redis keys and channel names.
fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(super) fn validate_cluster(c: RawCluster, ctx: &Ctx) -> Result<ClusterConfig, ConfigError> {
    if !cfg!(feature = "redis-store") {
        return Err(ctx.err(
            "cluster",
            "a cluster needs the cargo feature \"redis-store\", which this build of stickyroute \
             was compiled without",
        ));
    }
    if let Some(url) = &c.redis {
        check_redis_url(url).map_err(|m| ctx.err("cluster.redis", m))?;
    }
    if !is_cluster_name(&c.name) {
        return Err(ctx.err(
            "cluster.name",
            format!(
                "group name {:?} may only use letters, digits and - _ . (1 to 64)",
                c.name
            ),
        ));
    }
    if let Some(id) = &c.instance {
        if !is_cluster_name(id) {
            return Err(ctx.err(
                "cluster.instance",
                format!("instance id {id:?} may only use letters, digits and - _ . (1 to 64)"),
            ));
        }
    }
    if c.heartbeat < Duration::from_millis(50) {
        return Err(ctx.err("cluster.heartbeat", "must be at least 50ms"));
    }
    if c.timeout.is_zero() {
        return Err(ctx.err("cluster.timeout", "must not be zero"));
    }
    Ok(ClusterConfig {
        redis: c.redis,
        name: c.name,
        instance: c.instance,
        heartbeat: c.heartbeat,
        timeout: c.timeout,
        file: ctx.file.to_string(),
        line: ctx.locator.line("cluster"),
    })
}
