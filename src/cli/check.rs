//! `stickyroute check -c FILE`: validate a config file the way `serve` would, without binding
//! anything, and say what it holds.

use std::path::Path;

use crate::config::{Config, ConfigError};

/// The config's one-line summary, or the error naming file, line and key.
pub fn check(path: &Path) -> Result<String, ConfigError> {
    // The admin token and the cluster's Redis URL may come from the environment, as for
    // `serve`; an admin listener off loopback without a token is refused here too.
    let token = std::env::var(crate::config::ADMIN_TOKEN_ENV).ok();
    let url = std::env::var(crate::config::CLUSTER_REDIS_ENV).ok();
    Config::load(path)?
        .with_admin_token_override(token)?
        .with_cluster_redis_override(url)?
        .with_ajp_secrets(|var| std::env::var(var).ok())
        .map(|c| c.summary())
}

/// `stickyroute check`: prints the summary (exit 0), or the error to stderr (exit 1).
pub fn run_cli(path: &Path) -> std::process::ExitCode {
    match check(path) {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
