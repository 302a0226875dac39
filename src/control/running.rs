//! A balancer started in this process, as `serve`, `demo` and the integration tests use it:
//! bound addresses, the control plane and a stop handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::{Control, ReloadError, ReloadReport};
use crate::proxy::listener::{ServerError, SHUTDOWN_GRACE};
use crate::proxy::workers::Workers;
use crate::state::Balancer;

/// A balancer started in this process: bound addresses and a stop handle. Used by `serve`,
/// `demo` and the integration tests. The work is done by [`Control`]: admin listener, health
/// checkers, registry sweeper, hot reload.
pub struct Running {
    pub balancer: Arc<Balancer>,
    /// Addresses of the proxy listeners at start, in config order (see
    /// [`Running::current_listen_addrs`] after a reload).
    pub listen_addrs: Vec<SocketAddr>,
    /// Address of the admin listener at start, when the config has an `admin` section.
    pub admin_addr: Option<SocketAddr>,
    control: Arc<Control>,
}

impl Running {
    /// Validated config in, everything bound and serving out.
    pub async fn start(config: Config) -> Result<Running, ServerError> {
        Running::start_with_grace(config, SHUTDOWN_GRACE).await
    }

    pub async fn start_with_grace(config: Config, grace: Duration) -> Result<Running, ServerError> {
        Running::start_on(config, grace, Workers::inline()).await
    }

    /// Started with the proxy listeners on `workers` (what `serve` does).
    pub async fn start_on(
        config: Config,
        grace: Duration,
        workers: Workers,
    ) -> Result<Running, ServerError> {
        let control = Control::start_on(config, grace, workers).await?;
        Ok(Running {
            balancer: control.balancer.clone(),
            listen_addrs: control.listen_addrs(),
            admin_addr: control.admin_addr(),
            control,
        })
    }

    /// The first proxy listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listen_addrs[0]
    }

    /// The proxy listeners now (a reload may add and remove listeners).
    pub fn current_listen_addrs(&self) -> Vec<SocketAddr> {
        self.control.listen_addrs()
    }

    /// The control plane: reload, admin address.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Re-reads the config file and applies it (what `SIGHUP` does).
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.control.reload_from_file().await
    }

    /// A token that stops everything when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.control.shutdown_token()
    }

    /// Serves until the shutdown token is cancelled and every task has drained.
    pub async fn wait(self) {
        self.control.wait().await;
    }

    /// Stops accepting, lets in-flight requests finish (within the grace period), returns.
    pub async fn stop(self) {
        self.control.shutdown_token().cancel();
        self.control.wait().await;
    }
}

impl Drop for Running {
    /// A balancer dropped without `stop` (a failed test) stops serving in the background.
    fn drop(&mut self) {
        self.control.abandon();
    }
}
