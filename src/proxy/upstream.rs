//! Upstream connections: the keep-alive sockets of every node ([`UpstreamPools`], one set per
//! worker for both request paths), connecting ([`connect_http`], [`open_fresh`],
//! [`open_tcp`]), and the body type the HTTP/2 path forwards upstream.
//!
//! We connect (or check out) first and only then send, so a refused connection moves the
//! untouched request, streaming body included, to the next node. A connection goes back to
//! the pool when its exchange ended cleanly and both sides allow keep-alive.
//!
//! A client's request body is watched on its way ([`ForwardBody`]): it fails after
//! `timeouts.body_idle` without a frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::proxy::client_body::ClientBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use crate::config::{NodeAddr, Timeouts};
use crate::proxy::idle_conns::IdleConns;
use crate::state::snapshot::Node;

/// The body of a forwarded request: the client's own stream (counted against
/// `listeners[].max_body_bytes` when it has one), or nothing (a retried request). A client
/// body that is not empty is watched: it fails with [`BodyStalled`] after `body_idle` without
/// a frame.
#[derive(Debug)]
pub struct ForwardBody {
    kind: BodyKind,
    idle: Option<Box<BodyIdle>>,
}

#[derive(Debug)]
enum BodyKind {
    Client(ClientBody),
    Limited(LimitedBody),
    Empty,
}

/// The client sent no body frame for `timeouts.body_idle`.
#[derive(Debug, thiserror::Error)]
#[error("no request body frame for {0:?} (timeouts.body_idle)")]
pub struct BodyStalled(pub Duration);

/// The time since a body's last frame, against `timeouts.body_idle`: a tokio timer made only
/// once the body has to wait, and moved to the last frame's time only when it fires or is
/// polled pending (not at every frame).
#[derive(Debug)]
pub struct BodyIdle {
    limit: Duration,
    last: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl BodyIdle {
    pub fn new(limit: Duration) -> BodyIdle {
        BodyIdle {
            limit,
            last: Instant::now(),
            timer: None,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// A frame arrived.
    pub fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// For a poll of the body that was pending: true once no frame came for the limit.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let due = tokio::time::Instant::from_std(self.last + self.limit);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// A client body that may carry at most `left` more bytes. One byte more and the stream
/// fails with [`BodyTooLarge`] (the upload to the node is aborted) and `tripped` is set, so
/// the request path answers `413` rather than blaming the client's connection or the node.
#[derive(Debug)]
pub struct LimitedBody {
    body: ClientBody,
    left: u64,
    tripped: Arc<std::sync::atomic::AtomicBool>,
}

/// The client's body passed `listeners[].max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than max_body_bytes")]
pub struct BodyTooLarge;

impl ForwardBody {
    /// `body`, counted against `limit` when there is one (`tripped` is set when it passes
    /// it), and held to `idle` between two frames when it is not empty.
    pub fn client(
        body: ClientBody,
        limit: Option<u64>,
        tripped: &Arc<std::sync::atomic::AtomicBool>,
        idle: Duration,
    ) -> ForwardBody {
        let idle = (!body.is_end_stream()).then(|| Box::new(BodyIdle::new(idle)));
        let kind = match limit {
            None => BodyKind::Client(body),
            Some(max) => BodyKind::Limited(LimitedBody {
                body,
                left: max,
                tripped: tripped.clone(),
            }),
        };
        ForwardBody { kind, idle }
    }

    /// No body (a replayed request).
    pub fn empty() -> ForwardBody {
        ForwardBody {
            kind: BodyKind::Empty,
            idle: None,
        }
    }
}

impl BodyKind {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            BodyKind::Client(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            BodyKind::Limited(l) => {
                let frame = match Pin::new(&mut l.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => frame,
                    other => return other.map_err(Into::into),
                };
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > l.left {
                        l.tripped.store(true, std::sync::atomic::Ordering::Relaxed);
                        l.left = 0;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    l.left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            BodyKind::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            BodyKind::Client(b) => b.is_end_stream(),
            BodyKind::Limited(l) => l.body.is_end_stream(),
            BodyKind::Empty => true,
        }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.kind.poll_frame(cx);
        let Some(idle) = this.idle.as_deref_mut() else {
            return polled;
        };
        match &polled {
            Poll::Ready(Some(Ok(_))) => idle.touch(),
            Poll::Pending if idle.expired(cx) => {
                return Poll::Ready(Some(Err(Box::new(BodyStalled(idle.limit())))));
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Client(b) => b.size_hint(),
            BodyKind::Limited(l) => l.body.size_hint(),
            BodyKind::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The error of a body forwarded either way.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The idle keep-alive connections to the nodes, per node slot (dense, stable across
/// reloads, so a node that survives a reload keeps its idle connections): one set per worker,
/// shared by both request paths.
#[derive(Debug, Default)]
pub struct UpstreamPools {
    /// HTTP/1.1 connections.
    pub http: IdleConns,
    /// AJP connections of AJP nodes.
    pub ajp: IdleConns,
}

/// A connection to `node` for an HTTP/1.1 exchange: its most recent idle one unless `fresh`,
/// else a new one within `timeouts.connect`. The flag says whether it was reused; the error
/// says why no connection could be had (nothing was sent).
pub async fn connect_http(
    pools: &UpstreamPools,
    node: &Node,
    t: &Timeouts,
    epoch: u64,
    fresh: bool,
    now: Instant,
) -> Result<(TcpStream, bool), String> {
    if !fresh {
        if let Some((s, _)) = pools.http.checkout(node.slot, epoch, t.idle, now) {
            return Ok((s, true));
        }
    }
    Ok((open_fresh(&node.addr, t.connect).await?, false))
}

/// A new connection to a node within `limit` (`timeouts.connect`), with `TCP_NODELAY`; the
/// error says why there is none, naming the address. For every node protocol.
pub async fn open_fresh(addr: &NodeAddr, limit: Duration) -> Result<TcpStream, String> {
    // Boxed, timer included: the rare path's state stays out of every request's.
    match Box::pin(tokio::time::timeout(limit, open_tcp(addr))).await {
        Err(_) => Err(format!("connect to {addr} timed out after {limit:?}")),
        Ok(Err(e)) => Err(format!("connect to {addr} failed: {e}")),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Opens a TCP connection to a node, looking the host up first when it is a name (at each
/// connect, so a node whose name moves is followed).
pub async fn open_tcp(addr: &NodeAddr) -> std::io::Result<TcpStream> {
    match addr {
        NodeAddr::Socket(a) => TcpStream::connect(a).await,
        NodeAddr::Host { host, port } => TcpStream::connect((host.as_str(), *port)).await,
        NodeAddr::Resolved(list) => TcpStream::connect(&list[..]).await,
    }
}
