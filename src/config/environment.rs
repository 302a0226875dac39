//! What the environment may add to a validated [`Config`]: the admin token
//! ([`ADMIN_TOKEN_ENV`]), the cluster's Redis URL ([`CLUSTER_REDIS_ENV`](super::types::CLUSTER_REDIS_ENV))
//! and AJP secrets named by `ajp.secret_env`, read by the caller so that parsing stays pure,
//! and the check that an admin listener off loopback has a token.

use super::locator::ConfigError;
use super::types::{Config, CLUSTER_REDIS_ENV};
use super::validate::{check_redis_url, valid_admin_token};

/// Environment variable that provides (or overrides) `admin.token`.
pub const ADMIN_TOKEN_ENV: &str = "STICKYROUTE_ADMIN_TOKEN";

impl Config {
    /// Replaces the admin token with `token` when it is `Some` and not empty (the
    /// `STICKYROUTE_ADMIN_TOKEN` environment variable, applied by the caller at load time so
    /// that parsing stays pure), then checks the admin listener is not exposed without one
    /// ([`Config::check_admin_exposure`]). Without an `admin` section there is nothing to
    /// protect and the token is ignored.
    pub fn with_admin_token_override(
        mut self,
        token: Option<String>,
    ) -> Result<Config, ConfigError> {
        if let (Some(admin), Some(t)) = (self.admin.as_mut(), token) {
            let t = t.trim().to_string();
            if !t.is_empty() {
                if !valid_admin_token(&t) {
                    return Err(ConfigError {
                        file: self.source.clone(),
                        line: admin.line,
                        key: "admin.token".into(),
                        message: format!(
                            "{}: must be printable ASCII without spaces (it travels in an Authorization header)",
                            ADMIN_TOKEN_ENV
                        ),
                    });
                }
                admin.token = Some(t);
            }
        }
        self.check_admin_exposure()?;
        Ok(self)
    }

    /// An admin listener off loopback needs a token: without one, anyone who reaches the
    /// address could drain or disable nodes and read the pool's layout. `check` and `serve`
    /// refuse such a config (after the environment had its say), naming `admin.token`.
    pub fn check_admin_exposure(&self) -> Result<(), ConfigError> {
        match &self.admin {
            Some(a) if a.token.is_none() && !a.on_loopback() => Err(ConfigError {
                file: self.source.clone(),
                line: a.line,
                key: "admin.token".into(),
                message: format!(
                    "the admin listener {} is not on loopback, so it needs a token: set \
                     admin.token or {}, or bind it to 127.0.0.1",
                    a.bind, ADMIN_TOKEN_ENV
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Replaces `cluster.redis` with `url` when it is `Some` and not empty (the
    /// [`CLUSTER_REDIS_ENV`] environment variable, read by the caller so that parsing stays
    /// pure), then checks the section has a usable URL. Without a `cluster` section the URL is
    /// ignored: a group needs a name.
    pub fn with_cluster_redis_override(
        mut self,
        url: Option<String>,
    ) -> Result<Config, ConfigError> {
        if let Some(c) = self.cluster.as_mut() {
            if let Some(u) = url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
                if let Err(m) = check_redis_url(&u) {
                    return Err(ConfigError {
                        file: c.file.clone(),
                        line: c.line,
                        key: "cluster.redis".into(),
                        message: format!("{CLUSTER_REDIS_ENV}: {m}"),
                    });
                }
                c.redis = Some(u);
            }
            c.redis_url()?;
        }
        Ok(self)
    }

    /// Fills every AJP node's secret from the variable its `ajp.secret_env` names, looked up
    /// with `lookup` (`std::env::var` for `serve` and `check`). A variable that is unset or
    /// empty is an error naming the key.
    pub fn with_ajp_secrets(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        for node in self.pools.iter_mut().flat_map(|p| p.nodes.iter_mut()) {
            let Some(ajp) = node.ajp.as_mut() else {
                continue;
            };
            let Some(var) = &ajp.secret_env else {
                continue;
            };
            match lookup(var).filter(|v| !v.is_empty()) {
                Some(v) if !v.contains(['\0', '\r', '\n']) => ajp.secret = Some(v),
                found => {
                    return Err(ConfigError {
                        file: ajp.file.clone(),
                        line: ajp.line,
                        key: ajp.secret_env_key.clone(),
                        message: match found {
                            None => format!("environment variable {var} is not set or empty"),
                            Some(_) => {
                                format!("environment variable {var} holds a line break or NUL")
                            }
                        },
                    })
                }
            }
        }
        Ok(self)
    }
}
