//! `pools[].discovery`: what is looked up (SRV, or A/AAAA with a port), where, how routes come
//! from names, and the timing of lookups, drains and empty answers.

use std::net::SocketAddr;

use super::Ctx;
use crate::config::locator::ConfigError;
use crate::config::raw::RawDiscovery;
use crate::config::types::{DiscoveryConfig, DiscoverySource};
use crate::core::discovery::RouteRule;

/// One pool's `discovery` block; `key` is `pools[i].discovery`, `per_node` the pool's
/// `max_connections_per_node`.
pub(super) fn validate_discovery(
    d: &RawDiscovery,
    key: &str,
    per_node: Option<u32>,
    ctx: &Ctx,
) -> Result<DiscoveryConfig, ConfigError> {
    let source = match (&d.srv, &d.host, d.port) {
        (Some(_), Some(_), _) => {
            return Err(ctx.err(
                format!("{key}.host"),
                "give either srv (SRV records) or host with port (A/AAAA records), not both",
            ))
        }
        (Some(_), None, Some(_)) => {
            return Err(ctx.err(
                format!("{key}.port"),
                "SRV records give each node's port: port goes with host, not srv",
            ))
        }
        (Some(name), None, None) => {
            DiscoverySource::Srv(dns_name(name, &format!("{key}.srv"), ctx)?)
        }
        (None, Some(_), None) => {
            return Err(ctx.err(
                format!("{key}.port"),
                "host needs a port (A/AAAA records give none)",
            ))
        }
        (None, Some(name), Some(port)) => {
            if port == 0 {
                return Err(ctx.err(format!("{key}.port"), "must be 1 to 65535"));
            }
            DiscoverySource::Host {
                name: dns_name(name, &format!("{key}.host"), ctx)?,
                port,
            }
        }
        (None, None, _) => {
            return Err(ctx.err(
                key,
                "needs srv (SRV records) or host with port (A/AAAA records)",
            ))
        }
    };
    let resolver = match &d.resolver {
        None => None,
        Some(r) => Some(parse_resolver(r).map_err(|m| ctx.err(format!("{key}.resolver"), m))?),
    };
    let route = RouteRule::parse(&d.route).map_err(|m| ctx.err(format!("{key}.route"), m))?;
    for (name, v) in [
        ("min_interval", d.min_interval),
        ("max_interval", d.max_interval),
        ("drain_timeout", d.drain_timeout),
    ] {
        if v.is_zero() {
            return Err(ctx.err(format!("{key}.{name}"), "must be more than 0"));
        }
    }
    if d.max_interval < d.min_interval {
        return Err(ctx.err(
            format!("{key}.max_interval"),
            format!(
                "must be at least min_interval ({})",
                humantime::format_duration(d.min_interval)
            ),
        ));
    }
    if d.weight == 0 {
        return Err(ctx.err(format!("{key}.weight"), "must be at least 1"));
    }
    Ok(DiscoveryConfig {
        source,
        resolver,
        route,
        min_interval: d.min_interval,
        max_interval: d.max_interval,
        drain_timeout: d.drain_timeout,
        empty_grace: d.empty_grace,
        weight: d.weight,
        domain: d.domain.clone().unwrap_or_default(),
        max_connections: per_node,
    })
}

/// A DNS name to look up: letters, digits, `-`, `_` and dots, at most 253 bytes.
fn dns_name(name: &str, key: &str, ctx: &Ctx) -> Result<String, ConfigError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(ctx.err(key, format!("{name:?} is not a DNS name")));
    }
    Ok(name.to_string())
}

/// `ip:port`, or a bare IP (port 53).
fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not ip:port or an IP address"))
}
