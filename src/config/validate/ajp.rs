//! A node's protocol and its `ajp:` block (the pool's merged with the node's own): secret or
//! secret variable, whether a secret is required, packet size, CPing interval; and the
//! `health.kind` each node gets.

use std::time::Duration;

use super::Ctx;
use crate::config::duration;
use crate::config::locator::ConfigError;
use crate::config::raw::{RawAjp, RawNode, RawPool, RawProtocol};
use crate::config::types::{
    AjpConfig, NodeProtocol, DEFAULT_AJP_PACKET_SIZE, DEFAULT_AJP_PING_AFTER,
};

/// The largest packet size Tomcat accepts.
const MAX_AJP_PACKET_SIZE: usize = 65536;

/// A node's protocol, and its AJP settings when it speaks AJP; `nkey` is `pools[i].nodes[j]`.
pub(super) fn validate_node_protocol(
    p: &RawPool,
    n: &RawNode,
    key: &str,
    nkey: &str,
    ctx: &Ctx,
) -> Result<(NodeProtocol, Option<AjpConfig>), ConfigError> {
    let protocol = match n.protocol.unwrap_or(p.protocol) {
        RawProtocol::Http => NodeProtocol::Http,
        RawProtocol::Ajp => NodeProtocol::Ajp,
    };
    if protocol == NodeProtocol::Http {
        if n.ajp.is_some() {
            return Err(ctx.err(
                format!("{nkey}.ajp"),
                "ajp settings on a node that speaks http (set protocol: ajp)",
            ));
        }
        return Ok((protocol, None));
    }
    let base = p.ajp.clone().unwrap_or_default();
    // Errors name the node's block for keys it sets, the pool's for the rest.
    let (merged, own) = match &n.ajp {
        Some(own) => (own.merged_over(&base), Some(own)),
        None => (base, None),
    };
    let key_of = |name: &str, set_by_node: bool| {
        if set_by_node {
            format!("{nkey}.ajp.{name}")
        } else {
            format!("{key}.ajp.{name}")
        }
    };
    // A node made AJP by its own `protocol` answers for its missing secret.
    let node_made_ajp = n.protocol == Some(RawProtocol::Ajp) && p.protocol != RawProtocol::Ajp;
    let node_secret =
        node_made_ajp || own.is_some_and(|o| o.secret.is_some() || o.secret_env.is_some());
    let ajp = validate_ajp(
        &merged,
        |name| {
            let by_node = match name {
                "secret" | "secret_env" => node_secret,
                "packet_size" => own.is_some_and(|o| o.packet_size.is_some()),
                "ping_after" => own.is_some_and(|o| o.ping_after.is_some()),
                _ => own.is_some_and(|o| o.secret_required.is_some()),
            };
            key_of(name, by_node)
        },
        nkey,
        ctx,
    )?;
    Ok((protocol, Some(ajp)))
}

/// The merged block; `key_of` gives the key path of one of its keys for errors.
fn validate_ajp(
    a: &RawAjp,
    key_of: impl Fn(&str) -> String,
    nkey: &str,
    ctx: &Ctx,
) -> Result<AjpConfig, ConfigError> {
    if a.secret.is_some() && a.secret_env.is_some() {
        return Err(ctx.err(
            key_of("secret_env"),
            "give either secret or secret_env, not both",
        ));
    }
    if let Some(s) = &a.secret {
        if s.is_empty() || s.len() > 1024 || s.contains(['\0', '\r', '\n']) {
            return Err(ctx.err(
                key_of("secret"),
                "must be 1 to 1024 characters without NUL or line breaks",
            ));
        }
    }
    if let Some(var) = &a.secret_env {
        let ok = !var.is_empty()
            && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !var.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(ctx.err(
                key_of("secret_env"),
                format!("{var:?} is not an environment variable name (letters, digits, _)"),
            ));
        }
    }
    let required = a.secret_required.unwrap_or(true);
    if required && a.secret.is_none() && a.secret_env.is_none() {
        return Err(ctx.err(
            key_of("secret"),
            format!(
                "{nkey} speaks AJP without a secret: set ajp.secret or ajp.secret_env (the \
                 connector's `secret`; Tomcat 9.0.31+ refuses AJP without one since \
                 CVE-2020-1938), or ajp.secret_required: false to run without"
            ),
        ));
    }
    let packet_size = match a.packet_size {
        None => DEFAULT_AJP_PACKET_SIZE,
        Some(v) => usize::try_from(v).unwrap_or(usize::MAX),
    };
    if !(DEFAULT_AJP_PACKET_SIZE..=MAX_AJP_PACKET_SIZE).contains(&packet_size) {
        return Err(ctx.err(
            key_of("packet_size"),
            format!(
                "must be between {DEFAULT_AJP_PACKET_SIZE} and {MAX_AJP_PACKET_SIZE} (the \
                 connector's packetSize)"
            ),
        ));
    }
    let ping_after = match &a.ping_after {
        None => DEFAULT_AJP_PING_AFTER,
        Some(text) => parse_ping_after(text).map_err(|m| ctx.err(key_of("ping_after"), m))?,
    };
    let secret_env_key = key_of("secret_env");
    Ok(AjpConfig {
        secret: a.secret.clone(),
        secret_env: a.secret_env.clone(),
        packet_size,
        ping_after,
        line: ctx.locator.line(&secret_env_key),
        secret_env_key,
        file: ctx.file.to_string(),
    })
}

fn parse_ping_after(text: &str) -> Result<Duration, String> {
    let d = duration::parse(text)?;
    if d.is_zero() {
        return Err("must not be zero".into());
    }
    Ok(d)
}
