//! `stickyroute check -c FILE`: validate a config file the way `serve` would, without binding
//! anything, and say what it holds.

use std::path::Path;

use crate::config::{Config, ConfigError};

/// The config's one-line summary, or the error naming file, line and key.
pub fn check(path: &Path) -> Result<String, ConfigError> {
    Config::load(path).map(|c| c.summary())
}
