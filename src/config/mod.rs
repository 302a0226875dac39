//! `balancer.yaml`: parsing and validation.
//!
//! Two layers: raw serde structs (`deny_unknown_fields`, defaults) read the YAML, then
//! [`Config::from_yaml`] validates them into typed values (`SocketAddr`, `Duration`, enums).
//! Every error names the file, the line and the key: serde errors carry a location and, through
//! `serde_path_to_error`, the key path; validation errors find their key's line with
//! [`KeyLocator`], which walks the YAML events once.
//!
//! | file             | what it owns                                                          |
//! |------------------|-----------------------------------------------------------------------|
//! | `mod.rs`         | [`Config::load`] and [`Config::from_yaml`]: text → raw → validated   |
//! | `raw.rs`         | the serde structs, their defaults                                     |
//! | `validate/`      | raw → validated, one file per section (listeners, pools, store, cluster) |
//! | `types.rs`       | the validated types the rest of the balancer reads                    |
//! | `store.rs`       | the validated session-store settings                                  |
//! | `environment.rs` | what `STICKYROUTE_ADMIN_TOKEN`, `STICKYROUTE_CLUSTER_REDIS` and `ajp.secret_env` add |
//! | `locator.rs`     | [`ConfigError`] and the key → line map                                |
//! | `duration.rs`    | how every duration is read and bounded                                |

use std::path::Path;

pub mod duration;
mod environment;
mod locator;
mod raw;
pub mod store;
mod types;
mod validate;

pub use self::duration::MAX_DURATION;
pub use self::environment::ADMIN_TOKEN_ENV;
pub use self::locator::{ConfigError, KeyLocator};
pub use self::types::CLUSTER_REDIS_ENV;
pub use self::types::{
    AdminConfig, AjpConfig, ClientAuth, ClusterConfig, Config, DiscoveryConfig, DiscoverySource,
    FailoverConfig, H2Limits, HealthConfig, HealthKind, ListenerConfig, NodeAddr, NodeConfig,
    NodeProtocol, NodeSource, PoolConfig, Protocols, RegistryConfig, SessionConfig, Timeouts,
    TlsConfig, DEFAULT_AJP_PACKET_SIZE, DEFAULT_AJP_PING_AFTER,
};
pub use self::validate::{
    valid_admin_token, DEFAULT_H2_MAX_CONCURRENT_STREAMS, DEFAULT_H2_MAX_RESET_STREAMS, SEPARATORS,
};
pub use crate::core::select::BalanceKind;

use self::raw::RawConfig;

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Config::from_yaml(&text, &file)
    }

    /// Parses and validates YAML text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let de = serde_norway::Deserializer::from_str(text);
        let locator = KeyLocator::new(text);
        let raw: RawConfig =
            serde_path_to_error::deserialize(de).map_err(|e| serde_error(e, &locator, file))?;
        validate::validate(raw, locator, file)
    }
}

/// A serde error as a [`ConfigError`]: the key path from `serde_path_to_error`, the most
/// precise line of the two that serde and `locator` know, the message without what the key
/// and line already show.
fn serde_error(
    e: serde_path_to_error::Error<serde_norway::Error>,
    locator: &KeyLocator,
    file: &str,
) -> ConfigError {
    let key = e.path().to_string();
    let inner = e.into_inner();
    // serde_norway places an error in a value (a bad duration, a wrong type) at the start of
    // the mapping holding it, never past the key itself; the locator knows the key's own
    // line, so the later of the two is the precise one.
    let line = match (inner.location().map(|l| l.line()), locator.exact_line(&key)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    // serde_norway appends " at line L column C"; the line is already shown.
    let mut message = inner.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    // ... and prefixes the path, which the key already shows.
    if let Some((prefix, rest)) = message.split_once(": ") {
        if !prefix.contains(' ') {
            message = rest.to_string();
        }
    }
    ConfigError {
        file: file.to_string(),
        line,
        key: if key == "." { String::new() } else { key },
        message,
    }
}

#[cfg(test)]
mod tests;
