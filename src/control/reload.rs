//! Hot reload of a running [`Control`]: from `SIGHUP` or `POST /api/v1/reload`, one at a time,
//! in the order the `control` module docs give. The plans ([`ListenerPlan`], [`AdminPlan`]) are
//! made, and everything that can fail without harm (binds, TLS files) is tried, before the
//! snapshot is swapped; after the swap only restarts on the same address remain, and their
//! failures are warnings of the report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{bind_admin, load_config, Control, ListenerHandle, ReloadError, ReloadReport, State};
use crate::config::{Config, ConfigError, ListenerConfig};
use crate::proxy::listener::{self as server, BoundListener, ServerError};
use crate::state::snapshot::Snapshot;

/// How long a restarted listener waits for its old socket to close.
const REBIND_WAIT: Duration = Duration::from_secs(3);

/// What becomes of one proxy listener of the new config.
enum ListenerPlan {
    /// Identical to the running listener at this index: it stays.
    Keep(usize),
    /// Same address as the running listener at this index, other settings: stop it, then
    /// bind again.
    Restart(usize, ListenerConfig),
    /// A new address, already bound.
    Add(BoundListener),
}

/// What becomes of the admin listener.
enum AdminPlan {
    Keep,
    Stop,
    /// A new address, already bound.
    Start(SocketAddr, TcpListener),
    /// The same port on another address: bound after the old one closed.
    Restart(SocketAddr),
}

impl Control {
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
        let plan = self.plan_listeners(&st, &config).await?;
        let admin_plan = plan_admin(&st, &config).await?;

        let snap = self.balancer.apply(config)?;

        let mut report = empty_report(&snap);
        self.switch_listeners(&mut st, plan, &mut report).await;
        self.switch_admin(&mut st, admin_plan, &mut report).await;
        st.health.reconcile(&snap, &self.shutdown);
        st.discovery.reconcile(self, &self.shutdown);
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

    /// Keeps identical listeners, restarts changed ones on the same address (their TLS files
    /// are read now, to refuse the reload rather than fail after the swap), binds new ones.
    async fn plan_listeners(
        &self,
        st: &State,
        config: &Config,
    ) -> Result<Vec<ListenerPlan>, ReloadError> {
        let mut used = vec![false; st.listeners.len()];
        let mut plan = Vec::new();
        for cfg in &config.listeners {
            if let Some(i) = (0..used.len()).find(|i| !used[*i] && st.listeners[*i].cfg == *cfg) {
                used[i] = true;
                plan.push(ListenerPlan::Keep(i));
                continue;
            }
            if cfg.bind.port() != 0 {
                if let Some(i) =
                    (0..used.len()).find(|i| !used[*i] && st.listeners[*i].cfg.bind == cfg.bind)
                {
                    used[i] = true;
                    if let Some(t) = &cfg.tls {
                        crate::proxy::tls::server_config(t, cfg.protocols)?;
                    }
                    plan.push(ListenerPlan::Restart(i, cfg.clone()));
                    continue;
                }
            }
            plan.push(ListenerPlan::Add(
                server::bind(cfg, self.workers.count()).await?,
            ));
        }
        Ok(plan)
    }

    /// Carries out `plan` after the swap: starts the new listeners, stops the removed ones,
    /// restarts the changed ones (a failed restart is a warning: the reload is done).
    async fn switch_listeners(
        &self,
        st: &mut State,
        plan: Vec<ListenerPlan>,
        report: &mut ReloadReport,
    ) {
        let mut old: Vec<Option<ListenerHandle>> = st.listeners.drain(..).map(Some).collect();
        let mut restarts = Vec::new();
        let mut next = Vec::new();
        for p in plan {
            match p {
                ListenerPlan::Keep(i) => next.push(old[i].take()),
                ListenerPlan::Add(bound) => {
                    let h = self.serve_proxy(bound);
                    report.listeners_added.push(h.addr);
                    next.push(Some(h));
                }
                ListenerPlan::Restart(i, cfg) => {
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
    }

    /// Carries out `plan` for the admin listener after the swap.
    async fn switch_admin(
        self: &Arc<Self>,
        st: &mut State,
        plan: AdminPlan,
        report: &mut ReloadReport,
    ) {
        match plan {
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
    }
}

/// The admin listener: the same address → keep; a new port → bind now; the same port on
/// another address → after the swap.
async fn plan_admin(st: &State, config: &Config) -> Result<AdminPlan, ReloadError> {
    let new_admin = config.admin.as_ref().map(|a| a.bind);
    let old_admin = st.admin.as_ref().map(|h| (h.bind, h.addr));
    Ok(match (old_admin, new_admin) {
        (None, None) => AdminPlan::Keep,
        (Some(_), None) => AdminPlan::Stop,
        (Some((bind, _)), Some(new)) if bind == new => AdminPlan::Keep,
        (Some((_, addr)), Some(new)) if new.port() != 0 && new.port() == addr.port() => {
            AdminPlan::Restart(new)
        }
        (_, Some(new)) => AdminPlan::Start(new, bind_admin(new).await?),
    })
}

/// The report of a reload that swapped in `snap`, before any listener changed.
fn empty_report(snap: &Snapshot) -> ReloadReport {
    ReloadReport {
        file: snap.config.source.clone(),
        pools: snap.pools.len(),
        nodes: snap.pools.iter().map(|p| p.nodes.len()).sum(),
        listeners_added: Vec::new(),
        listeners_removed: Vec::new(),
        listeners_restarted: Vec::new(),
        admin: None,
        warnings: Vec::new(),
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

/// Binds the admin address again once the old admin socket has closed.
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
