//! `listeners:` (each with its `tls` and `h2` settings) and `admin:`.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{parse_addr, valid_admin_token, Ctx, MAX_LIMIT};
use crate::config::locator::ConfigError;
use crate::config::raw::{
    RawAdmin, RawClientAuth, RawH2, RawListener, RawListenerProtocol, RawTls,
};
use crate::config::types::{
    AdminConfig, ClientAuth, H2Limits, ListenerConfig, Protocols, TlsConfig,
};
use crate::core::forwarding::{Cidr, TrustedProxies};

/// `listeners[].h2.max_concurrent_streams` by default: what HAProxy and most servers
/// advertise.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// `listeners[].h2.max_reset_streams` by default.
pub const DEFAULT_H2_MAX_RESET_STREAMS: u32 = 100;

/// Every listener, and the set of addresses they bind (the admin listener must stay apart).
pub(super) fn validate_listeners(
    raw: Vec<RawListener>,
    ctx: &Ctx,
) -> Result<(Vec<ListenerConfig>, HashSet<SocketAddr>), ConfigError> {
    if raw.is_empty() {
        return Err(ctx.err("listeners", "at least one listener is required"));
    }
    let mut listeners = Vec::new();
    let mut binds = HashSet::new();
    for (i, l) in raw.into_iter().enumerate() {
        listeners.push(validate_listener(
            l,
            &format!("listeners[{i}]"),
            &mut binds,
            ctx,
        )?);
    }
    Ok((listeners, binds))
}

/// One entry of `listeners:`; `key` is `listeners[i]`, `binds` the addresses of those before
/// it (this one's is added).
fn validate_listener(
    l: RawListener,
    key: &str,
    binds: &mut HashSet<SocketAddr>,
    ctx: &Ctx,
) -> Result<ListenerConfig, ConfigError> {
    let bind = parse_addr(ctx, &format!("{key}.bind"), &l.bind)?;
    // Port 0 (any free port, for tests) may appear several times.
    if !binds.insert(bind) && bind.port() != 0 {
        return Err(ctx.err(format!("{key}.bind"), format!("{bind} is bound twice")));
    }
    if l.max_connections == 0 {
        return Err(ctx.err(format!("{key}.max_connections"), "must be at least 1"));
    }
    if l.max_header_bytes < 8192 {
        return Err(ctx.err(
            format!("{key}.max_header_bytes"),
            "must be at least 8192 (the HTTP/1 parser's minimum buffer)",
        ));
    }
    if l.max_body_bytes == Some(0) {
        return Err(ctx.err(
            format!("{key}.max_body_bytes"),
            "0 would refuse every request body; omit the key for no limit",
        ));
    }
    for (name, d) in [
        ("header_read_timeout", l.header_read_timeout),
        ("keepalive_timeout", l.keepalive_timeout),
        ("tunnel_idle_timeout", l.tunnel_idle_timeout),
    ] {
        if d.is_zero() {
            return Err(ctx.err(format!("{key}.{name}"), "must not be zero"));
        }
    }
    let mut blocks = Vec::new();
    for (j, text) in l.trusted_proxies.iter().enumerate() {
        blocks.push(
            Cidr::parse(text).map_err(|m| ctx.err(format!("{key}.trusted_proxies[{j}]"), m))?,
        );
    }
    Ok(ListenerConfig {
        bind,
        tls: match l.tls {
            None => None,
            Some(t) => Some(validate_tls(t, key, ctx)?),
        },
        max_connections: l.max_connections,
        header_read_timeout: l.header_read_timeout,
        keepalive_timeout: l.keepalive_timeout,
        max_header_bytes: l.max_header_bytes,
        trusted_proxies: TrustedProxies::new(blocks),
        max_body_bytes: l.max_body_bytes,
        h2: validate_h2(&l.h2, l.max_header_bytes, key, ctx)?,
        tunnel_idle_timeout: l.tunnel_idle_timeout,
        protocols: validate_protocols(l.protocols.as_deref(), key, ctx)?,
    })
}

/// `listeners[].protocols`: `http1`, `h2` or both, each at most once; absent means both.
fn validate_protocols(
    list: Option<&[RawListenerProtocol]>,
    key: &str,
    ctx: &Ctx,
) -> Result<Protocols, ConfigError> {
    let Some(list) = list else {
        return Ok(Protocols::default());
    };
    let key = format!("{key}.protocols");
    if list.is_empty() {
        return Err(ctx.err(key, "needs http1, h2 or both; omit the key for both"));
    }
    let mut p = Protocols {
        http1: false,
        h2: false,
    };
    for proto in list {
        let (seen, name) = match proto {
            RawListenerProtocol::Http1 => (&mut p.http1, "http1"),
            RawListenerProtocol::H2 => (&mut p.h2, "h2"),
        };
        if std::mem::replace(seen, true) {
            return Err(ctx.err(key, format!("{name} is listed twice")));
        }
    }
    Ok(p)
}

/// `listeners[].tls`: `client_auth` needs `client_ca`, and `client_ca` alone means
/// `required`.
fn validate_tls(t: RawTls, key: &str, ctx: &Ctx) -> Result<TlsConfig, ConfigError> {
    let client_auth = match (t.client_ca, t.client_auth) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(ctx.err(
                format!("{key}.tls.client_auth"),
                "needs tls.client_ca (the CA certificates, PEM, that client certificates are verified against)",
            ))
        }
        (Some(ca), auth) => Some(ClientAuth {
            ca,
            required: !matches!(auth, Some(RawClientAuth::Optional)),
        }),
    };
    Ok(TlsConfig {
        cert: t.cert,
        key: t.key,
        client_auth,
    })
}

/// `listeners[].h2`, with its defaults: the header list size follows `max_header_bytes`.
fn validate_h2(
    h: &RawH2,
    max_header_bytes: usize,
    key: &str,
    ctx: &Ctx,
) -> Result<H2Limits, ConfigError> {
    let streams = h
        .max_concurrent_streams
        .unwrap_or(DEFAULT_H2_MAX_CONCURRENT_STREAMS);
    if streams == 0 || streams > 10_000 {
        return Err(ctx.err(
            format!("{key}.h2.max_concurrent_streams"),
            "must be between 1 and 10000",
        ));
    }
    let list = h
        .max_header_list_size
        .unwrap_or_else(|| u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    if !(1024..=16 * 1024 * 1024).contains(&list) {
        return Err(ctx.err(
            format!("{key}.h2.max_header_list_size"),
            "must be between 1024 and 16777216 bytes",
        ));
    }
    let resets = h.max_reset_streams.unwrap_or(DEFAULT_H2_MAX_RESET_STREAMS);
    if resets == 0 || resets > MAX_LIMIT {
        return Err(ctx.err(
            format!("{key}.h2.max_reset_streams"),
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(H2Limits {
        max_concurrent_streams: streams,
        max_header_list_size: list,
        max_reset_streams: resets,
    })
}

/// `admin:`; `binds` are the proxy listeners' addresses.
pub(super) fn validate_admin(
    a: RawAdmin,
    binds: &HashSet<SocketAddr>,
    ctx: &Ctx,
) -> Result<AdminConfig, ConfigError> {
    let bind = parse_addr(ctx, "admin.bind", &a.bind)?;
    if binds.contains(&bind) && bind.port() != 0 {
        return Err(ctx.err(
            "admin.bind",
            format!("{bind} is also a proxy listener; the admin listener must be apart"),
        ));
    }
    if a.token.as_deref() == Some("") {
        return Err(ctx.err("admin.token", "must not be empty (omit it instead)"));
    }
    if let Some(t) = &a.token {
        if !valid_admin_token(t) {
            return Err(ctx.err(
                "admin.token",
                "must be printable ASCII without spaces (it travels in an Authorization header)",
            ));
        }
    }
    Ok(AdminConfig {
        bind,
        token: a.token,
        line: ctx.locator.line("admin"),
    })
}
