//! The control plane of a running balancer: what is started next to the proxy listeners
//! (admin listener, health checkers, registry sweeper, the cluster task) and hot reload (DESIGN.md "Operating
//! it").
//!
//! A reload, from `SIGHUP` or `POST /api/v1/reload`, runs in this order, one at a time:
//!
//! 1. read and validate the file (an invalid file is refused: the running config stays);
//! 2. bind the listeners that are new (a bind failure refuses the reload, nothing changed);
//! 3. build the new snapshot and swap it in with one atomic store ([`Balancer::apply`]): a
//!    request sees the old config or the new one, never a mix; nodes whose route and address
//!    are unchanged keep their runtime (health, counters, in-flight, operator state); removed
//!    nodes finish their in-flight requests (each request holds its node's runtime);
//! 4. start the new listeners, stop the removed ones (their open connections drain), restart a
//!    listener whose settings changed on the same address (a short gap: the old socket closes
//!    before the new one binds);
//! 5. move the admin listener if its address changed, and reconcile the health checkers.
//!
//! In a cluster, step 3 keeps the group's operator states whatever the new file says, and a
//! reload that changes the `cluster:` section is refused (a restart joins another group).
//!
//! Unchanged listeners, TLS ones included, keep running untouched (a new certificate at the
//! same path needs a restart).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod admin;
mod ajp_probe;
pub mod api;
#[cfg(feature = "redis-store")]
pub mod cluster;
pub mod discovery;
pub mod exposition;
#[cfg(feature = "redis-store")]
pub mod group_nodes;
pub mod health;
pub mod html;
mod reload;
pub mod running;
pub mod sweeper;

pub use api::{ReloadReport, ADMIN_TOKEN_ENV};
#[cfg(unix)]
pub use reload::{listen_for_sighup, reload_on_sighup};
pub use running::Running;

use crate::config::{Config, ConfigError, ListenerConfig};
use crate::proxy::listener::{self as server, BoundListener, ServerError};
use crate::proxy::tls::TlsError;
use crate::proxy::workers::Workers;
use crate::state::snapshot::SnapshotError;
use crate::state::Balancer;
use discovery::DiscoveryTasks;
use health::HealthChecks;

/// Reads and validates a config file, then applies `STICKYROUTE_ADMIN_TOKEN` (when set and not
/// empty) as the admin token and `STICKYROUTE_CLUSTER_REDIS` as `cluster.redis`. `serve` and
/// every reload load the file through this; `ajp.secret_env` variables are read here too.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let token = std::env::var(ADMIN_TOKEN_ENV).ok();
    let redis = std::env::var(crate::config::CLUSTER_REDIS_ENV).ok();
    Config::load(path)?
        .with_admin_token_override(token)?
        .with_cluster_redis_override(redis)?
        .with_ajp_secrets(|var| std::env::var(var).ok())
}

/// Why a reload was refused. The running configuration stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("shutting down")]
    ShuttingDown,
}

impl From<ServerError> for ReloadError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Config(c) => ReloadError::Invalid(c),
            ServerError::Bind { addr, source } => ReloadError::Bind { addr, source },
            ServerError::Tls(t) => ReloadError::Tls(t),
            ServerError::Snapshot(s) => ReloadError::Snapshot(s),
        }
    }
}

struct ListenerHandle {
    cfg: ListenerConfig,
    addr: SocketAddr,
    stop: CancellationToken,
}

struct AdminHandle {
    bind: SocketAddr,
    addr: SocketAddr,
    stop: CancellationToken,
}

struct State {
    listeners: Vec<ListenerHandle>,
    admin: Option<AdminHandle>,
    health: HealthChecks,
    discovery: DiscoveryTasks,
}

/// Addresses currently served.
#[derive(Debug, Clone, Default)]
struct Addrs {
    listeners: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
}

/// One running balancer: the shared [`Balancer`] plus everything that serves it.
pub struct Control {
    pub balancer: Arc<Balancer>,
    /// The threads that run the proxy listeners, each with its keep-alive pools to the nodes
    /// (shared by every listener across reloads).
    workers: Workers,
    shutdown: CancellationToken,
    /// Cancelled by [`Control::wait`] once everything but the admin listener has finished
    /// after a shutdown: the admin listener serves through the drain (its `/ready` answers
    /// `503` then), and stops at this.
    drained: CancellationToken,
    grace: Duration,
    /// Every task serving this balancer but the admin listener (proxy listeners, sweeper,
    /// cluster task); [`Control::wait`] waits for all of them.
    tracker: TaskTracker,
    /// The admin listener's task, waited for after `tracker`'s.
    admin_tasks: TaskTracker,
    /// Serializes reloads (an async mutex: a reload awaits binds while holding it).
    state: tokio::sync::Mutex<State>,
    addrs: Mutex<Addrs>,
}

impl Control {
    /// Binds every listener (proxy and admin), then starts serving, the health checkers and
    /// the registry sweeper. The proxy listeners run on the calling runtime.
    pub async fn start(config: Config, grace: Duration) -> Result<Arc<Control>, ServerError> {
        Control::start_on(config, grace, Workers::inline()).await
    }

    /// [`Control::start`] with the proxy listeners on `workers` (one socket per worker).
    pub async fn start_on(
        config: Config,
        grace: Duration,
        workers: Workers,
    ) -> Result<Arc<Control>, ServerError> {
        // Whoever built the config (a file through `load_config`, a test, the demo), an
        // admin listener off loopback without a token is never served.
        config.check_admin_exposure()?;
        let bound = server::bind_all(&config, workers.count()).await?;
        let admin_listener = match &config.admin {
            Some(a) => Some((a.bind, bind_admin(a.bind).await?)),
            None => None,
        };
        let balancer = Balancer::new(config)?;
        let control = Arc::new(Control {
            balancer: balancer.clone(),
            workers,
            shutdown: CancellationToken::new(),
            drained: CancellationToken::new(),
            grace,
            tracker: TaskTracker::new(),
            admin_tasks: TaskTracker::new(),
            state: tokio::sync::Mutex::new(State {
                listeners: Vec::new(),
                admin: None,
                health: HealthChecks::default(),
                discovery: DiscoveryTasks::default(),
            }),
            addrs: Mutex::new(Addrs::default()),
        });
        control.start_cluster().await?;
        let mut st = control.state.lock().await;
        for b in bound {
            let handle = control.serve_proxy(b);
            st.listeners.push(handle);
        }
        if let Some((bind, listener)) = admin_listener {
            st.admin = Some(control.serve_admin(bind, listener));
        }
        st.health.reconcile(&balancer.snapshot(), &control.shutdown);
        st.discovery.reconcile(&control, &control.shutdown);
        control.tracker.spawn(sweeper::run_sweeper(
            balancer.clone(),
            control.shutdown.child_token(),
        ));
        control.tracker.spawn(discovery::run_removals(
            Arc::downgrade(&control),
            control.shutdown.child_token(),
        ));
        control.publish_addrs(&st);
        drop(st);
        Ok(control)
    }

    /// With a `cluster:` section: starts the cluster task and waits (a few Redis deadlines at
    /// most) for its first read of the group's states, so that the listeners start with the
    /// group's states rather than the file's. An unreachable Redis does not stop the start:
    /// the task keeps trying, the status says disconnected.
    async fn start_cluster(self: &Arc<Self>) -> Result<(), ServerError> {
        let snap = self.balancer.snapshot();
        let (Some(cfg), Some(state)) = (&snap.config.cluster, self.balancer.operator.cluster())
        else {
            return Ok(());
        };
        #[cfg(feature = "redis-store")]
        {
            let task = cluster::ClusterTask::new(
                self.balancer.clone(),
                state.clone(),
                cfg,
                Arc::downgrade(self),
            )?;
            let (ready, first_sync) = tokio::sync::oneshot::channel();
            self.tracker
                .spawn(task.run(ready, self.shutdown.child_token()));
            let bound = cfg.timeout * 3 + Duration::from_secs(1);
            if tokio::time::timeout(bound, first_sync).await.is_err() {
                tracing::warn!(group = %cfg.name, "cluster: no first sync within {bound:?}; serving with the file's states until Redis answers");
            }
            Ok(())
        }
        #[cfg(not(feature = "redis-store"))]
        {
            let _ = state;
            Err(ServerError::Config(ConfigError {
                file: cfg.file.clone(),
                line: cfg.line,
                key: "cluster".into(),
                message: "this build has no Redis support (cargo feature redis-store)".into(),
            }))
        }
    }

    /// Starts one accept loop per socket of `bound`, each on its worker.
    fn serve_proxy(&self, bound: BoundListener) -> ListenerHandle {
        let stop = self.shutdown.child_token();
        let handle = ListenerHandle {
            cfg: bound.cfg.clone(),
            addr: bound.local_addr(),
            stop: stop.clone(),
        };
        let limit = Arc::new(tokio::sync::Semaphore::new(bound.cfg.max_connections));
        let tls = bound.tls().cloned();
        tracing::info!(local = %handle.addr, tls = tls.is_some(), workers = bound.sockets.len(), "listening");
        for (i, socket) in bound.sockets.into_iter().enumerate() {
            let conns = self.workers.pools(i);
            let accept = server::AcceptLoop {
                socket,
                cfg: bound.cfg.clone(),
                tls: tls.clone(),
                balancer: self.balancer.clone(),
                conns,
                limit: limit.clone(),
                shutdown: stop.clone(),
                grace: self.grace,
            };
            let task = self.workers.spawn(i, server::serve_listener(accept));
            self.tracker.spawn(async move {
                let _ = task.await;
            });
        }
        handle
    }

    /// Serves the admin API on `listener` until a reload stops it, or until the drain after a
    /// shutdown is over.
    fn serve_admin(self: &Arc<Self>, bind: SocketAddr, listener: TcpListener) -> AdminHandle {
        let stop = self.drained.child_token();
        let addr = listener.local_addr().unwrap_or(bind);
        self.admin_tasks.spawn(admin::serve(
            listener,
            self.clone(),
            stop.clone(),
            self.grace,
        ));
        AdminHandle { bind, addr, stop }
    }

    fn publish_addrs(&self, st: &State) {
        let mut a = self.addrs.lock().unwrap_or_else(|e| e.into_inner());
        a.listeners = st.listeners.iter().map(|l| l.addr).collect();
        a.admin = st.admin.as_ref().map(|h| h.addr);
    }

    /// Addresses of the proxy listeners now, in config order.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .listeners
            .clone()
    }

    /// Address of the admin listener, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.addrs.lock().unwrap_or_else(|e| e.into_inner()).admin
    }

    /// Cancelling it stops everything: the proxy listeners stop accepting and drain, the
    /// admin listener answers `GET /ready` with `503` until the drain is over.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Whether a shutdown has begun (`GET /ready` answers `503` from then on).
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Starts and stops health checkers for the nodes of the current snapshot (after nodes
    /// joined or left at runtime).
    pub async fn reconcile_health(&self) {
        let mut st = self.state.lock().await;
        if !self.shutdown.is_cancelled() {
            st.health
                .reconcile(&self.balancer.snapshot(), &self.shutdown);
        }
    }

    /// Waits until shutdown is requested and every listener has drained: the proxy listeners
    /// and the other tasks first, the admin listener last.
    pub async fn wait(&self) {
        self.shutdown.cancelled().await;
        let mut st = self.state.lock().await;
        st.health.stop();
        st.discovery.stop();
        drop(st);
        self.tracker.close();
        self.tracker.wait().await;
        self.drained.cancel();
        self.admin_tasks.close();
        self.admin_tasks.wait().await;
        self.workers.stop();
    }

    /// Stops everything without waiting, the admin listener included (a [`Running`] dropped
    /// without [`Running::stop`]).
    pub(crate) fn abandon(&self) {
        self.shutdown.cancel();
        self.drained.cancel();
    }
}

async fn bind_admin(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}
