//! Raw YAML sections (`raw`) to the validated types (`types`), one section at a time: the
//! listeners and the admin listener (`listeners`), the pools and their nodes (`pools`), a pool's
//! session store (`store`), the cluster (`cluster`); the session and registry sections, being
//! short, are here. The first error ends validation; it names the key, and the
//! [`KeyLocator`] finds the line it is written on.

use std::net::SocketAddr;

use super::locator::{ConfigError, KeyLocator};
use super::raw::{RawConfig, RawSession};
use super::types::{Config, RegistryConfig, SessionConfig};
use crate::core::session::SessionSettings;

mod cluster;
mod discovery;
mod listeners;
mod pools;
mod store;

pub(crate) use cluster::check_redis_url;
pub use listeners::{DEFAULT_H2_MAX_CONCURRENT_STREAMS, DEFAULT_H2_MAX_RESET_STREAMS};

/// Characters that may separate the id from its route: none of them can end a cookie value or a
/// path parameter early.
pub const SEPARATORS: &str = ".-_!~:";

/// Bounds of the connection and queue limits: more is a typo, not a setting.
const MAX_LIMIT: u32 = 1_000_000;

/// What every validation step needs: the file's name and where its keys are written.
struct Ctx<'a> {
    file: &'a str,
    locator: KeyLocator,
}

impl Ctx<'_> {
    /// The error for `key`, on the line where it (or its nearest written ancestor) is.
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError {
            file: self.file.to_string(),
            line: self.locator.line(&key),
            key,
            message: message.into(),
        }
    }
}

/// Validates the whole document; `locator` was built from the same text as `raw`.
pub(super) fn validate(
    raw: RawConfig,
    locator: KeyLocator,
    file: &str,
) -> Result<Config, ConfigError> {
    let ctx = &Ctx { file, locator };
    let (listeners, binds) = listeners::validate_listeners(raw.listeners, ctx)?;
    let admin = match raw.admin {
        None => None,
        Some(a) => Some(listeners::validate_admin(a, &binds, ctx)?),
    };
    let (session, separator) = validate_session(raw.session, ctx)?;
    if raw.registry.max_sessions == 0 {
        return Err(ctx.err("registry.max_sessions", "must be at least 1"));
    }
    let pools = pools::validate_pools(raw.pools, separator, ctx)?;
    let cluster = match raw.cluster {
        None => None,
        Some(c) => Some(cluster::validate_cluster(c, ctx)?),
    };
    Ok(Config {
        source: file.to_string(),
        listeners,
        admin,
        session,
        registry: RegistryConfig {
            max_sessions: raw.registry.max_sessions,
        },
        pools,
        cluster,
    })
}

/// The `session:` section, and the separator the routes of every pool are checked against.
fn validate_session(s: RawSession, ctx: &Ctx) -> Result<(SessionConfig, char), ConfigError> {
    let mut sep_chars = s.separator.chars();
    let separator = match (sep_chars.next(), sep_chars.next()) {
        (Some(c), None) if SEPARATORS.contains(c) => c,
        _ => {
            return Err(ctx.err(
                "session.separator",
                format!("must be one of {SEPARATORS:?}, got {:?}", s.separator),
            ))
        }
    };
    if s.cookies.is_empty() && s.path_param.is_none() {
        return Err(ctx.err(
            "session.cookies",
            "no cookie names and no path_param: sessions could never be found",
        ));
    }
    for (i, name) in s.cookies.iter().enumerate() {
        if !is_token(name) {
            return Err(ctx.err(
                format!("session.cookies[{i}]"),
                format!("{name:?} is not a valid cookie name"),
            ));
        }
    }
    if let Some(p) = &s.path_param {
        if !is_token(p) || p.contains('=') {
            return Err(ctx.err("session.path_param", format!("{p:?} is not a valid name")));
        }
    }
    if s.idle_timeout.is_zero() {
        return Err(ctx.err("session.idle_timeout", "must not be zero"));
    }
    let session = SessionConfig {
        settings: SessionSettings {
            cookies: s.cookies,
            path_param: s.path_param,
            separator,
        },
        idle_timeout: s.idle_timeout,
    };
    Ok((session, separator))
}

/// A listening address: an IP literal with a port, or `localhost:PORT` (127.0.0.1). No name
/// lookup happens here: the config layer does no I/O, and a listener bound to whatever a name
/// resolves to at start is a surprise for an operator anyway.
fn parse_addr(ctx: &Ctx, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(ctx.err(key, format!("address {text:?} needs a port (host:port)")));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ctx.err(key, format!("invalid address {text:?}: bad port {port:?}")))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(ctx.err(
        key,
        format!("invalid address {text:?}: use an IP address (such as 0.0.0.0 or 127.0.0.1) or localhost"),
    ))
}

/// An admin token must fit in `Authorization: Bearer <token>`.
pub fn valid_admin_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())
}

/// An HTTP token (RFC 9110): what a cookie or parameter name may be made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A connection or queue limit: at least 1, at most [`MAX_LIMIT`].
fn check_limit(value: u32, key: String, ctx: &Ctx) -> Result<u32, ConfigError> {
    if value == 0 {
        return Err(ctx.err(key, "must be at least 1 (omit the key for no limit)"));
    }
    if value > MAX_LIMIT {
        return Err(ctx.err(key, format!("must be at most {MAX_LIMIT}")));
    }
    Ok(value)
}
