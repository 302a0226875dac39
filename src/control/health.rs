//! Active health checks (DESIGN.md "Node lifecycle and health").
//!
//! - [`ConsecutiveCounter`]: the pure `rise` / `fall` state machine; `record(ok)` says when the
//!   node changes state.
//! - [`probe`]: one `GET health.path` on a fresh connection, within `health.timeout`; good is a
//!   status listed in `expect_status`, or any 2xx when the list is empty. [`probe_node`]
//!   checks an AJP node with CPing or an AJP `GET` instead (`health.kind`, `ajp_probe`).
//! - [`run_checker`]: one task per node, every `health.interval` (missed ticks skipped), that
//!   drives the counter and sets the node's `probe_down` flag. Only transitions are logged.
//! - [`HealthChecks`]: the set of checker tasks, reconciled with each new snapshot (a reload
//!   keeps the task of a node whose route, address and health settings are unchanged).
//!
//! Passive checks stay in the request path: a refused connect, a timeout or a `fail_on_status`
//! answer marks the node down for `failover.recover_after`. With active checks configured, that
//! mark is lifted sooner, once `rise` consecutive probes after it succeeded.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::ajp_probe;
use crate::config::{AjpConfig, HealthConfig, HealthKind, NodeAddr, NodeProtocol};
use crate::core::health::{status_ok, ConsecutiveCounter};
use crate::proxy::upstream::open_tcp;
use crate::state::node::{now_ms, NodeRuntime};
use crate::state::snapshot::Snapshot;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("health check connect failed: {0}")]
    Connect(String),
    #[error("health check failed: {0}")]
    Http(String),
    #[error("health check answered {0}")]
    Status(u16),
    #[error("health check timed out after {0:?}")]
    Timeout(Duration),
}

/// One health check of the node at `addr` (`host` for the `Host` header).
pub async fn probe(addr: &NodeAddr, host: &str, cfg: &HealthConfig) -> Result<(), ProbeError> {
    let attempt = async {
        let stream = open_tcp(addr)
            .await
            .map_err(|e| ProbeError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let req = Request::get(cfg.path.as_str())
            .header(header::HOST, host)
            .header(header::USER_AGENT, "stickyroute-health-check")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        conn.abort();
        if status_ok(resp.status(), &cfg.expect_status) {
            Ok(())
        } else {
            Err(ProbeError::Status(resp.status().as_u16()))
        }
    };
    match tokio::time::timeout(cfg.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(cfg.timeout)),
    }
}

/// Identifies the node a checker watches, for logs.
#[derive(Debug, Clone)]
pub struct Target {
    pub pool: String,
    pub route: String,
    pub address: String,
    pub addr: NodeAddr,
    /// The node's AJP settings when it speaks AJP.
    pub ajp: Option<AjpConfig>,
}

/// One check of `target` as `cfg.kind` says for its protocol, within `cfg.timeout`.
pub async fn probe_node(target: &Target, cfg: &HealthConfig) -> Result<(), ProbeError> {
    let Some(ajp_cfg) = &target.ajp else {
        return probe(&target.addr, &target.address, cfg).await;
    };
    let check = async {
        match cfg.kind_for(NodeProtocol::Ajp) {
            HealthKind::Cping => ajp_probe::cping(&target.addr).await,
            HealthKind::Http => ajp_probe::get(&target.addr, &target.address, cfg, ajp_cfg).await,
        }
        .map_err(|e| match e {
            ajp_probe::ProbeError::Connect(m) => ProbeError::Connect(m),
            ajp_probe::ProbeError::Protocol(m) => ProbeError::Http(m),
            ajp_probe::ProbeError::Status(s) => ProbeError::Status(s),
        })
    };
    match tokio::time::timeout(cfg.timeout, check).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(cfg.timeout)),
    }
}

/// Checks one node every `cfg.interval` until `cancel`.
pub async fn run_checker(
    target: Target,
    rt: Arc<NodeRuntime>,
    cfg: HealthConfig,
    cancel: CancellationToken,
) {
    let mut counter = ConsecutiveCounter::new(cfg.rise, cfg.fall, !rt.health.probe_down());
    // Successes in a row since the last passive mark was seen (to lift it after `rise`).
    let mut good_since_passive: Option<u32> = None;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = probe_node(&target, &cfg) => r,
        };
        let ok = result.is_ok();
        match counter.record(ok) {
            Some(false) => {
                let reason = result.err().map(|e| e.to_string());
                tracing::warn!(
                    pool = %target.pool,
                    node = %target.route,
                    reason = reason.as_deref().unwrap_or(""),
                    fall = cfg.fall,
                    "node down (health check)"
                );
                rt.health.set_probe_down(true, reason);
                rt.conn_epoch.fetch_add(1, Ordering::Relaxed);
                rt.metrics
                    .health_down_active
                    .fetch_add(1, Ordering::Relaxed);
            }
            Some(true) => {
                tracing::info!(pool = %target.pool, node = %target.route, rise = cfg.rise, "node up (health check)");
                rt.health.set_probe_down(false, None);
                rt.metrics.health_up_active.fetch_add(1, Ordering::Relaxed);
                good_since_passive = None;
            }
            None => {}
        }
        // A passive mark (failed request) is lifted by `rise` good probes after it.
        if counter.is_up() && rt.health.passive_down(now_ms()) {
            let n = if ok {
                good_since_passive.unwrap_or(0) + 1
            } else {
                0
            };
            if n >= cfg.rise {
                rt.health.clear_passive();
                good_since_passive = None;
                tracing::info!(pool = %target.pool, node = %target.route, "node up (health check after a failed request)");
            } else {
                good_since_passive = Some(n);
            }
        } else {
            good_since_passive = None;
        }
    }
}

struct Checker {
    rt: Arc<NodeRuntime>,
    addr: NodeAddr,
    ajp: Option<AjpConfig>,
    cfg: HealthConfig,
    cancel: CancellationToken,
}

/// The running checker tasks, one per node of every pool with a `health` section.
#[derive(Default)]
pub struct HealthChecks {
    checkers: HashMap<(String, String), Checker>,
}

impl HealthChecks {
    /// Starts, keeps or stops checkers so that they match `snap`. Checkers stop when `parent`
    /// is cancelled. A node that loses its health check is no longer held down by it.
    pub fn reconcile(&mut self, snap: &Snapshot, parent: &CancellationToken) {
        let mut wanted: HashSet<(String, String)> = HashSet::new();
        for pool in &snap.pools {
            for node in &pool.nodes {
                let key = (pool.cfg.name.clone(), node.route.clone());
                let Some(cfg) = &pool.cfg.health else {
                    if let Some(old) = self.checkers.remove(&key) {
                        old.cancel.cancel();
                        if Arc::ptr_eq(&old.rt, &node.rt) {
                            node.rt.health.set_probe_down(false, None);
                        }
                    }
                    continue;
                };
                wanted.insert(key.clone());
                if let Some(old) = self.checkers.get(&key) {
                    let same = old.addr == node.addr && old.ajp == node.ajp && &old.cfg == cfg;
                    if Arc::ptr_eq(&old.rt, &node.rt) && same {
                        continue;
                    }
                    old.cancel.cancel();
                }
                let cancel = parent.child_token();
                let target = Target {
                    pool: pool.cfg.name.clone(),
                    route: node.route.clone(),
                    address: node.address.clone(),
                    addr: node.addr.clone(),
                    ajp: node.ajp.clone(),
                };
                tokio::spawn(run_checker(
                    target,
                    node.rt.clone(),
                    cfg.clone(),
                    cancel.clone(),
                ));
                self.checkers.insert(
                    key,
                    Checker {
                        rt: node.rt.clone(),
                        addr: node.addr.clone(),
                        ajp: node.ajp.clone(),
                        cfg: cfg.clone(),
                        cancel,
                    },
                );
            }
        }
        self.checkers.retain(|key, c| {
            let keep = wanted.contains(key);
            if !keep {
                c.cancel.cancel();
            }
            keep
        });
    }

    /// Number of running checkers.
    pub fn len(&self) -> usize {
        self.checkers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checkers.is_empty()
    }

    /// Stops every checker.
    pub fn stop(&mut self) {
        for c in self.checkers.values() {
            c.cancel.cancel();
        }
        self.checkers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (rise, fall, start up, results, transitions expected after each result)
    #[tokio::test]
    async fn probe_of_a_closed_port_fails_fast() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let cfg = HealthConfig {
            kind: None,
            path: "/health".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
            expect_status: vec![],
        };
        let err = probe(&NodeAddr::Socket(addr), &addr.to_string(), &cfg)
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::Connect(_)), "{err}");
    }

    #[tokio::test]
    async fn probe_times_out_on_a_silent_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s); // accept and never answer
            }
        });
        let cfg = HealthConfig {
            kind: None,
            path: "/health".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(100),
            rise: 1,
            fall: 1,
            expect_status: vec![],
        };
        let err = probe(&NodeAddr::Socket(addr), "x", &cfg).await.unwrap_err();
        assert_eq!(err, ProbeError::Timeout(Duration::from_millis(100)));
    }
}
