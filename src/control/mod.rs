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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod admin;
pub mod api;
#[cfg(feature = "redis-store")]
pub mod cluster;
pub mod exposition;
pub mod health;
pub mod running;
pub mod sweeper;

pub use api::{ReloadReport, ADMIN_TOKEN_ENV};
pub use running::Running;

use crate::config::{Config, ConfigError, ListenerConfig};
use crate::proxy::listener::{self as server, BoundListener, ServerError};
use crate::proxy::tls::TlsError;
use crate::proxy::workers::Workers;
use crate::state::snapshot::SnapshotError;
use crate::state::Balancer;
use health::HealthChecks;

/// How long a restarted listener waits for its old socket to close.
const REBIND_WAIT: Duration = Duration::from_secs(3);

/// Reads and validates a config file, then applies `STICKYROUTE_ADMIN_TOKEN` (when set and not
/// empty) as the admin token and `STICKYROUTE_CLUSTER_REDIS` as `cluster.redis`. `serve` and
/// every reload load the file through this.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let token = std::env::var(ADMIN_TOKEN_ENV).ok();
    let redis = std::env::var(crate::config::CLUSTER_REDIS_ENV).ok();
    Config::load(path)?
        .with_admin_token_override(token)?
        .with_cluster_redis_override(redis)
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
    grace: Duration,
    /// Every task serving this balancer (listeners, admin, sweeper); [`Control::wait`] waits
    /// for all of them.
    tracker: TaskTracker,
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
            grace,
            tracker: TaskTracker::new(),
            state: tokio::sync::Mutex::new(State {
                listeners: Vec::new(),
                admin: None,
                health: HealthChecks::default(),
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
        control.tracker.spawn(sweeper::run_sweeper(
            balancer.clone(),
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
            let (raw, conns) = self.workers.pools(i);
            let accept = server::AcceptLoop {
                socket,
                cfg: bound.cfg.clone(),
                tls: tls.clone(),
                balancer: self.balancer.clone(),
                raw,
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

    fn serve_admin(self: &Arc<Self>, bind: SocketAddr, listener: TcpListener) -> AdminHandle {
        let stop = self.shutdown.child_token();
        let addr = listener.local_addr().unwrap_or(bind);
        self.tracker.spawn(admin::serve(
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

    /// Cancelling it stops everything.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown is requested and every listener has drained.
    pub async fn wait(&self) {
        self.shutdown.cancelled().await;
        self.state.lock().await.health.stop();
        self.tracker.close();
        self.tracker.wait().await;
        self.workers.stop();
    }

    /// Re-reads the file the running configuration came from and applies it.
    pub async fn reload_from_file(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        let path = PathBuf::from(&self.balancer.snapshot().config.source);
        let result = match load_config(&path) {
            Ok(config) => self.apply(config).await,
            Err(e) => Err(ReloadError::Invalid(e)),
        };
        if let Err(e) = &result {
            if !matches!(e, ReloadError::ShuttingDown) {
                self.balancer.metrics.record_reload(false);
                tracing::warn!(file = %path.display(), error = %e, "configuration reload refused; the running configuration stays");
            }
        }
        result
    }

    /// Applies a validated configuration (see the module docs for the order of steps).
    pub async fn apply(self: &Arc<Self>, config: Config) -> Result<ReloadReport, ReloadError> {
        let mut st = self.state.lock().await;
        if self.shutdown.is_cancelled() {
            return Err(ReloadError::ShuttingDown);
        }
        check_cluster_unchanged(&self.balancer.snapshot().config, &config)?;
        config.check_admin_exposure()?;

        // Plan the proxy listeners: keep identical ones, restart changed ones on the same
        // address, bind new ones now.
        enum Plan {
            Keep(usize),
            Restart(usize, ListenerConfig),
            Add(BoundListener),
        }
        let mut used = vec![false; st.listeners.len()];
        let mut plan = Vec::new();
        for cfg in &config.listeners {
            if let Some(i) = (0..used.len()).find(|i| !used[*i] && st.listeners[*i].cfg == *cfg) {
                used[i] = true;
                plan.push(Plan::Keep(i));
                continue;
            }
            if cfg.bind.port() != 0 {
                if let Some(i) =
                    (0..used.len()).find(|i| !used[*i] && st.listeners[*i].cfg.bind == cfg.bind)
                {
                    used[i] = true;
                    if let Some(t) = &cfg.tls {
                        crate::proxy::tls::server_config(t)?; // refuse now rather than after the swap
                    }
                    plan.push(Plan::Restart(i, cfg.clone()));
                    continue;
                }
            }
            plan.push(Plan::Add(server::bind(cfg, self.workers.count()).await?));
        }
        // The admin listener: same address → keep; a new port → bind now; the same port on
        // another address → after the swap.
        let new_admin = config.admin.as_ref().map(|a| a.bind);
        let old_admin = st.admin.as_ref().map(|h| (h.bind, h.addr));
        enum AdminPlan {
            Keep,
            Stop,
            Start(SocketAddr, TcpListener),
            Restart(SocketAddr),
        }
        let admin_plan = match (old_admin, new_admin) {
            (None, None) => AdminPlan::Keep,
            (Some(_), None) => AdminPlan::Stop,
            (Some((bind, _)), Some(new)) if bind == new => AdminPlan::Keep,
            (Some((_, addr)), Some(new)) if new.port() != 0 && new.port() == addr.port() => {
                AdminPlan::Restart(new)
            }
            (_, Some(new)) => AdminPlan::Start(new, bind_admin(new).await?),
        };

        // The swap.
        let snap = self.balancer.apply(config)?;

        // Listeners.
        let mut report = ReloadReport {
            file: snap.config.source.clone(),
            pools: snap.pools.len(),
            nodes: snap.pools.iter().map(|p| p.nodes.len()).sum(),
            listeners_added: Vec::new(),
            listeners_removed: Vec::new(),
            listeners_restarted: Vec::new(),
            admin: None,
            warnings: Vec::new(),
        };
        let mut old: Vec<Option<ListenerHandle>> = st.listeners.drain(..).map(Some).collect();
        let mut restarts = Vec::new();
        let mut next = Vec::new();
        for p in plan {
            match p {
                Plan::Keep(i) => next.push(old[i].take()),
                Plan::Add(bound) => {
                    let h = self.serve_proxy(bound);
                    report.listeners_added.push(h.addr);
                    next.push(Some(h));
                }
                Plan::Restart(i, cfg) => {
                    if let Some(h) = old[i].take() {
                        h.stop.cancel();
                    }
                    restarts.push((next.len(), cfg));
                    next.push(None);
                }
            }
        }
        for h in old.into_iter().flatten() {
            h.stop.cancel();
            report.listeners_removed.push(h.addr);
        }
        for (slot, cfg) in restarts {
            match rebind(&cfg, self.workers.count()).await {
                Ok(bound) => {
                    let h = self.serve_proxy(bound);
                    report.listeners_restarted.push(h.addr);
                    next[slot] = Some(h);
                }
                Err(e) => {
                    tracing::error!(bind = %cfg.bind, error = %e, "listener could not be restarted after reload");
                    report.warnings.push(format!("listener {}: {e}", cfg.bind));
                }
            }
        }
        st.listeners = next.into_iter().flatten().collect();

        // Admin listener.
        match admin_plan {
            AdminPlan::Keep => {}
            AdminPlan::Stop => {
                if let Some(h) = st.admin.take() {
                    h.stop.cancel();
                }
            }
            AdminPlan::Start(bind, listener) => {
                if let Some(h) = st.admin.take() {
                    h.stop.cancel();
                }
                st.admin = Some(self.serve_admin(bind, listener));
            }
            AdminPlan::Restart(bind) => {
                if let Some(h) = st.admin.take() {
                    h.stop.cancel();
                }
                match rebind_admin(bind).await {
                    Ok(l) => st.admin = Some(self.serve_admin(bind, l)),
                    Err(e) => {
                        tracing::error!(%bind, error = %e, "admin listener could not be restarted after reload");
                        report.warnings.push(format!("admin listener {bind}: {e}"));
                    }
                }
            }
        }
        report.admin = st.admin.as_ref().map(|h| h.addr);

        st.health.reconcile(&snap, &self.shutdown);
        self.publish_addrs(&st);
        drop(st);
        self.balancer.metrics.record_reload(true);
        tracing::info!(
            file = %report.file,
            pools = report.pools,
            nodes = report.nodes,
            listeners_added = report.listeners_added.len(),
            listeners_removed = report.listeners_removed.len(),
            listeners_restarted = report.listeners_restarted.len(),
            "configuration reloaded"
        );
        Ok(report)
    }
}

/// A reload may not join, leave or change a group (the cluster task and the instance's
/// identity are set at start): such a reload is refused, naming the `cluster` key.
fn check_cluster_unchanged(running: &Config, next: &Config) -> Result<(), ReloadError> {
    let same = match (&running.cluster, &next.cluster) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_settings(b),
        _ => false,
    };
    if same {
        return Ok(());
    }
    Err(ReloadError::Invalid(ConfigError {
        file: next.source.clone(),
        line: next.cluster.as_ref().and_then(|c| c.line),
        key: "cluster".into(),
        message: "the cluster section cannot change on reload; restart the balancer to join, \
                  leave or change a group"
            .into(),
    }))
}

async fn bind_admin(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Binds `cfg` again once the socket of the listener it replaces has closed.
async fn rebind(cfg: &ListenerConfig, sockets: usize) -> Result<BoundListener, ServerError> {
    let deadline = tokio::time::Instant::now() + REBIND_WAIT;
    loop {
        match server::bind(cfg, sockets).await {
            Err(ServerError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            r => return r,
        }
    }
}

async fn rebind_admin(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let deadline = tokio::time::Instant::now() + REBIND_WAIT;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        }
    }
}

/// Starts listening for `SIGHUP`. Call it before the listeners bind: from then on a `SIGHUP`
/// is queued for [`reload_on_sighup`] instead of killing the process (the default action).
#[cfg(unix)]
pub fn listen_for_sighup() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload through the admin API only");
            None
        }
    }
}

/// Reloads the configuration file on every `SIGHUP` until shutdown; logs each result.
#[cfg(unix)]
pub async fn reload_on_sighup(control: Arc<Control>, mut hup: tokio::signal::unix::Signal) {
    let shutdown = control.shutdown_token();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            s = hup.recv() => if s.is_none() { return },
        }
        tracing::info!("SIGHUP: reloading the configuration");
        // Success and refusal are both logged by the reload itself.
        let _ = control.reload_from_file().await;
    }
}

#[cfg(all(test, feature = "redis-store"))]
mod tests {
    use super::*;

    fn config(cluster: &str) -> Config {
        let yaml = format!(
            "listeners: [{{ bind: \"127.0.0.1:1\" }}]\npools:\n  - name: app\n    nodes: [{{ route: a, address: \"127.0.0.1:2\" }}]\n{cluster}"
        );
        Config::from_yaml(&yaml, "b.yaml").unwrap()
    }

    #[test]
    fn a_reload_may_not_change_the_group() {
        let prod = "cluster:\n  redis: \"redis://h:1/\"\n  name: prod\n";
        let ok = |a: &str, b: &str| check_cluster_unchanged(&config(a), &config(b)).is_ok();
        assert!(ok("", ""));
        assert!(ok(prod, prod));
        // The same group written elsewhere in the file is the same group.
        assert!(ok(prod, &format!("\n\n{prod}")));
        assert!(!ok("", prod), "joining");
        assert!(!ok(prod, ""), "leaving");
        assert!(!ok(prod, &prod.replace("prod", "staging")));
        assert!(!ok(prod, &format!("{prod}  heartbeat: 2s\n")));
        let err = check_cluster_unchanged(&config(prod), &config(&prod.replace("prod", "x")))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("b.yaml:5: key `cluster`"), "{text}");
        assert!(text.contains("restart"), "{text}");
    }
}
