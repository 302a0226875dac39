//! Listeners: bind, accept, TLS handshake, serve HTTP/1.1 and HTTP/2 (h2c by prior knowledge,
//! h2 by ALPN, the client's preface checked first) with upgrades, and drain gracefully on
//! shutdown.
//!
//! The accept loop never dies on an accept error (it logs and backs off); each connection gets
//! its own task and span, and holds a permit of the listener's connection limit.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, ConfigError, ListenerConfig};
use crate::proxy::client_io::ClientIo;
use crate::proxy::h1;
use crate::proxy::h2_preface;
use crate::proxy::h2_server::{self, H2Limits};
use crate::proxy::service::ProxyService;
use crate::proxy::tls::{self, TlsError};
use crate::proxy::tls_session::TlsSession;
use crate::proxy::tunnel::TunnelPolicy;
use crate::proxy::upstream::UpstreamPools;
use crate::proxy::write_stall::WriteStall;
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

/// A listener bound and ready to serve: one socket per worker.
pub struct BoundListener {
    /// Bound and listening; not yet registered with a runtime (each worker registers its own).
    pub sockets: Vec<std::net::TcpListener>,
    pub cfg: ListenerConfig,
    tls: Option<TlsAcceptor>,
}

impl BoundListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.sockets
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(self.cfg.bind)
    }

    /// The TLS acceptor, when the listener has `tls`.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }
}

/// Pending connections the kernel queues per socket (what `TcpListener::bind` uses).
const BACKLOG: u32 = 1024;

/// Binds one listener with `sockets` sockets (one per worker; several share the address
/// through `SO_REUSEPORT`) and loads its TLS files.
pub async fn bind(cfg: &ListenerConfig, sockets: usize) -> Result<BoundListener, ServerError> {
    let tls = match &cfg.tls {
        Some(t) => Some(TlsAcceptor::from(tls::server_config(t, cfg.protocols)?)),
        None => None,
    };
    let err = |source| ServerError::Bind {
        addr: cfg.bind,
        source,
    };
    let shared = sockets > 1;
    let first = bind_socket(cfg.bind, shared).map_err(err)?;
    // A port of 0 is chosen by the kernel for the first socket; the others join it there.
    let addr = first.local_addr().map_err(err)?;
    let mut out = vec![first];
    for _ in 1..sockets {
        out.push(bind_socket(addr, shared).map_err(err)?);
    }
    Ok(BoundListener {
        sockets: out,
        cfg: cfg.clone(),
        tls,
    })
}

fn bind_socket(addr: SocketAddr, reuseport: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuseport {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuseport;
    socket.bind(addr)?;
    socket.listen(BACKLOG)?.into_std()
}

/// Binds every listener of a config.
pub async fn bind_all(config: &Config, sockets: usize) -> Result<Vec<BoundListener>, ServerError> {
    let mut out = Vec::new();
    for l in &config.listeners {
        out.push(bind(l, sockets).await?);
    }
    Ok(out)
}

/// What every connection of one listener's accept loop shares. `F` is the native path's
/// exchange future ([`h1::exchange_pool`]).
struct Shared<F> {
    balancer: Arc<Balancer>,
    conns: Arc<UpstreamPools>,
    native: Arc<h1::Context>,
    exchanges: Arc<h1::ExchangePool<F>>,
    h2: H2Limits,
    cfg: ListenerConfig,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    /// The upgraded connections' idle limit, stop signal and task tracker.
    tunnels: TunnelPolicy,
}

/// One accept loop of a listener: its socket, and what it shares with the listener's other
/// accept loops and with its worker.
pub struct AcceptLoop {
    pub socket: std::net::TcpListener,
    pub cfg: ListenerConfig,
    pub tls: Option<TlsAcceptor>,
    pub balancer: Arc<Balancer>,
    /// The worker's keep-alive connections to the nodes.
    pub conns: Arc<UpstreamPools>,
    /// The listener's `max_connections`, shared by its accept loops.
    pub limit: Arc<Semaphore>,
    pub shutdown: CancellationToken,
    pub grace: Duration,
}

/// Serves one socket of a listener until `shutdown`, then gives open connections `grace` to
/// finish. Runs on the worker that owns the socket.
pub async fn serve_listener(a: AcceptLoop) {
    let AcceptLoop {
        socket,
        cfg,
        tls,
        balancer,
        conns,
        limit,
        shutdown,
        grace,
    } = a;
    let listener = match TcpListener::from_std(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %cfg.bind, error = %e, "cannot register the listening socket");
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(cfg.bind);
    let h2 = H2Limits::of(&cfg);
    let native = TaskTracker::new();
    let tunnels = TunnelPolicy {
        idle: cfg.tunnel_idle_timeout,
        stop: CancellationToken::new(),
        tasks: native.clone(),
    };
    let shared = Arc::new(Shared {
        native: Arc::new(h1::Context {
            balancer: balancer.clone(),
            pools: conns.clone(),
            cfg: cfg.clone(),
            stopping: AtomicBool::new(false),
            tls: tls.is_some(),
        }),
        exchanges: Arc::new(h1::exchange_pool()),
        balancer,
        conns,
        h2,
        cfg: cfg.clone(),
        tls,
        shutdown: shutdown.clone(),
        tunnels: tunnels.clone(),
    });
    let graceful = GracefulShutdown::new();
    tracing::debug!(%local, tls = shared.tls.is_some(), "accepting");
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, client) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
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
        let span = tracing::debug_span!("conn", client.addr = %client, server.addr = %local);
        let watcher = graceful.watcher();
        let shared = shared.clone();
        // Two task types: a cleartext connection's task does not carry the TLS path's state.
        if shared.tls.is_none() {
            native.spawn(serve_cleartext(stream, client, shared, watcher, permit).instrument(span));
        } else {
            native.spawn(serve_tls(stream, client, shared, watcher, permit).instrument(span));
        }
    }
    drop(listener);
    shared.native.stop();
    drain(local, graceful, native, &tunnels, grace).await;
}

/// After the accept loop stopped: open connections get `grace` to finish (idle keep-alive
/// ones close at once, HTTP/2 ones get `GOAWAY`), then tunnels are told to close.
async fn drain(
    local: SocketAddr,
    graceful: GracefulShutdown,
    native: TaskTracker,
    tunnels: &TunnelPolicy,
    grace: Duration,
) {
    // Idle keep-alive connections wait without a shutdown waiter of their own: wake them to
    // look at their listener's `stopping` flag, set before this.
    crate::proxy::deadline::nudge_idle();
    native.close();
    tracing::info!(%local, "stopped accepting; draining connections");
    let drained = async {
        graceful.shutdown().await;
        native.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(%local, ?grace, "connections still open after the grace period");
    }
    // Tunnels (WebSocket) have no end of their own: they close at the grace deadline.
    tunnels.stop.cancel();
    if tokio::time::timeout(TUNNEL_CLOSE, native.wait())
        .await
        .is_err()
    {
        tracing::warn!(%local, "connections still open after closing the tunnels");
    }
}

/// How long a closing TLS connection may take to send its `close_notify`.
const CLOSE_NOTIFY: Duration = Duration::from_secs(1);

/// How long the drain waits for tunnels to close once told to, after the grace period.
const TUNNEL_CLOSE: Duration = Duration::from_secs(1);

/// One cleartext client connection: on the native path ([`serve_native`]), or as HTTP/2
/// from its first byte on a listener that speaks HTTP/2 alone ([`serve_h2c`], boxed: not
/// part of every connection's task).
fn serve_cleartext<F>(
    stream: TcpStream,
    client: SocketAddr,
    shared: Arc<Shared<F>>,
    watcher: hyper_util::server::graceful::Watcher,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::future::Either;
    let stream = ClientIo::Plain(stream);
    if !shared.cfg.protocols.http1 {
        let h2c = serve_h2c(stream, Vec::new(), client, shared, watcher, permit);
        return Either::Right(Box::pin(h2c));
    }
    Either::Left(serve_native(stream, client, shared, watcher, permit))
}

/// HTTP/1.1 on the native path until the connection closes ([`h1::serve`]), then what its
/// end calls for ([`after_native`]). `permit` (a tunnel included) and `watcher` are held
/// until then.
///
/// Composed, not an `async fn`, for size: an async fn or block keeps its arguments for its
/// whole life beside the future it moved them into, and every idle connection's task would
/// hold each of them twice.
fn serve_native<F>(
    stream: ClientIo,
    client: SocketAddr,
    shared: Arc<Shared<F>>,
    watcher: hyper_util::server::graceful::Watcher,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::FutureExt;
    let native = shared.native.clone();
    let exchanges = shared.exchanges.clone();
    h1::serve(stream, client, native, exchanges)
        .then(move |outcome| after_native(outcome, shared, watcher, permit))
}

/// What the end of a native connection calls for: nothing, or one boxed future that holds
/// `permit` and `watcher` until it ends (a TLS close, a tunnel or an HTTP/2 connection: their
/// state is not carried by every idle connection's task).
fn after_native<F>(
    outcome: h1::Outcome,
    shared: Arc<Shared<F>>,
    watcher: hyper_util::server::graceful::Watcher,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> futures_util::future::Either<
    std::future::Ready<()>,
    Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::future::Either;
    let boxed: Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match outcome {
        h1::Outcome::Closed | h1::Outcome::Finished(ClientIo::Plain(_)) => {
            return Either::Left(std::future::ready(()))
        }
        // A TLS client is told the session ends (`close_notify`), as HAProxy and nginx
        // do; a socket just closes.
        h1::Outcome::Finished(ClientIo::Tls(mut tls)) => Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let _held = (permit, watcher);
            let _ = tokio::time::timeout(CLOSE_NOTIFY, tls.shutdown()).await;
        }),
        // In this task, so the listener's drain sees it.
        h1::Outcome::Upgraded(client, tunnel) => Box::pin(async move {
            let _held = (permit, watcher);
            tunnel.run(client, &shared.tunnels).await;
        }),
        h1::Outcome::Http2(stream, read, client) => {
            Box::pin(serve_h2c(stream, read, client, shared, watcher, permit))
        }
    };
    Either::Right(boxed)
}

/// HTTP/2 with prior knowledge, after the native path read its first bytes: the preface
/// checked, then [`h2_server`] with the bytes already read.
async fn serve_h2c<F>(
    mut stream: ClientIo,
    mut read: Vec<u8>,
    client: SocketAddr,
    shared: Arc<Shared<F>>,
    watcher: hyper_util::server::graceful::Watcher,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    // HTTP/2 has no `101` upgrade: no tunnel to share the permit with.
    let _permit = permit;
    let timeout = shared.cfg.header_read_timeout;
    if h2_preface::read(&mut stream, &mut read, timeout).await != h2_preface::Outcome::Valid {
        return;
    }
    let tls = stream.is_tls();
    let service = ProxyService::new(shared.balancer.clone(), shared.conns.clone(), client, tls)
        .with_listener(&shared.cfg);
    let limit = write_stall_limit(&shared.balancer);
    let io = WriteStall::new(Rewind::new(read, stream), limit);
    h2_server::serve(io, service, &shared.h2, &shared.shutdown).await;
    drop(watcher);
}

/// One TLS client connection: the handshake, then HTTP/1.1 on the native path, or HTTP/2
/// through [`h2_server`] when the client chose `h2` by ALPN and sent the HTTP/2 preface.
async fn serve_tls<F>(
    stream: TcpStream,
    client: SocketAddr,
    shared: Arc<Shared<F>>,
    watcher: hyper_util::server::graceful::Watcher,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(acceptor) = &shared.tls else {
        return;
    };
    // The handshake within the header read timeout; its state is boxed and dropped after.
    let timeout = shared.cfg.header_read_timeout;
    let config = acceptor.config().clone();
    let accept = TlsSession::accept(stream, config);
    let handshake = Box::pin(tokio::time::timeout(timeout, accept));
    let stream = match handshake.await {
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
    let mut stream = Box::new(stream);
    // Without ALPN (a client that offered none), a listener that speaks HTTP/2 alone reads
    // HTTP/2 by prior knowledge.
    if stream.alpn_protocol() != Some(b"h2") && shared.cfg.protocols.http1 {
        let stream = ClientIo::Tls(stream);
        Box::pin(serve_native(stream, client, shared, watcher, permit)).await;
        return;
    }
    // The preface goes back into the session for `h2` to read: no replay wrapper on every
    // read of the connection's life.
    let mut read = Vec::with_capacity(h2_preface::PREFACE.len());
    let preface = h2_preface::read(&mut *stream, &mut read, timeout);
    if Box::pin(preface).await != h2_preface::Outcome::Valid {
        return;
    }
    stream.unread(&read);
    let client_tls = crate::proxy::ajp_client::ClientTls::of(&stream);
    let service = ProxyService::new(shared.balancer.clone(), shared.conns.clone(), client, true)
        .with_listener(&shared.cfg)
        .with_client_tls(client_tls);
    // HTTP/2 has no `101` upgrade: the connection alone holds its permit.
    let _permit = permit;
    let io = WriteStall::new(stream, write_stall_limit(&shared.balancer));
    Box::pin(h2_server::serve(io, service, &shared.h2, &shared.shutdown)).await;
    drop(watcher);
}

/// How long a write to an HTTP/2 client may stay pending: the longest
/// `pools[].timeouts.body_idle` (the connection is not tied to one pool), read at its start.
fn write_stall_limit(balancer: &Balancer) -> Duration {
    let snap = balancer.snapshot();
    snap.pools
        .iter()
        .map(|p| p.cfg.timeouts.body_idle)
        .max()
        .unwrap_or(Duration::from_secs(60))
}

/// A stream that first yields bytes already read from it: hands a connection to `h2` after
/// the native path looked at its first bytes.
struct Rewind {
    read: Vec<u8>,
    pos: usize,
    inner: ClientIo,
}

impl Rewind {
    fn new(read: Vec<u8>, inner: ClientIo) -> Rewind {
        Rewind {
            read,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.pos);
            buf.put_slice(&this.read[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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
