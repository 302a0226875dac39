//! Listeners: bind, accept, TLS handshake, serve HTTP/1.1 and HTTP/2 (h2c by prior knowledge,
//! h2 by ALPN) with upgrades, and drain gracefully on shutdown.
//!
//! The accept loop never dies on an accept error (it logs and backs off); each connection gets
//! its own task and span, and holds a permit of the listener's connection limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, ConfigError, ListenerConfig};
use crate::proxy::service::ProxyService;
use crate::proxy::tls::{self, TlsError};
use crate::proxy::upstream::UpstreamPools;
use crate::state::snapshot::SnapshotError;
use crate::state::Balancer;

/// Default time in-flight requests get to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// A listener bound and ready to serve.
pub struct BoundListener {
    pub listener: TcpListener,
    pub cfg: ListenerConfig,
    tls: Option<TlsAcceptor>,
}

impl BoundListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.cfg.bind)
    }
}

/// Binds one listener (and loads its TLS files).
pub async fn bind(cfg: &ListenerConfig) -> Result<BoundListener, ServerError> {
    let tls = match &cfg.tls {
        Some(t) => Some(TlsAcceptor::from(tls::server_config(t)?)),
        None => None,
    };
    let listener = TcpListener::bind(cfg.bind)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.bind,
            source,
        })?;
    Ok(BoundListener {
        listener,
        cfg: cfg.clone(),
        tls,
    })
}

/// Binds every listener of a config.
pub async fn bind_all(config: &Config) -> Result<Vec<BoundListener>, ServerError> {
    let mut out = Vec::new();
    for l in &config.listeners {
        out.push(bind(l).await?);
    }
    Ok(out)
}

/// Serves one listener until `shutdown`, then gives open connections `grace` to finish.
pub async fn serve_listener(
    bound: BoundListener,
    balancer: Arc<Balancer>,
    conns: Arc<UpstreamPools>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let local = bound.local_addr();
    let cfg = bound.cfg.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32);
    let builder = Arc::new(builder);
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = GracefulShutdown::new();
    tracing::info!(%local, tls = bound.tls.is_some(), "listening");
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, client) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = bound.listener.accept() => match r {
                Ok(x) => { backoff = Duration::from_millis(5); x }
                Err(e) => {
                    tracing::warn!(%local, error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service =
            ProxyService::new(balancer.clone(), conns.clone(), client, bound.tls.is_some());
        let span = tracing::debug_span!("conn", client.addr = %client, server.addr = %local);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = bound.tls.clone();
        let handshake_timeout = cfg.header_read_timeout;
        tokio::spawn(
            async move {
                let _permit = permit;
                let result = match tls {
                    None => {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with error");
                }
            }
            .instrument(span),
        );
    }
    drop(bound.listener);
    tracing::info!(%local, "stopped accepting; draining connections");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(%local, ?grace, "connections still open after the grace period");
    }
}

/// Resolves on Ctrl-C or SIGTERM: the stop signal of `serve`, `demo` and `demo-node`.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
