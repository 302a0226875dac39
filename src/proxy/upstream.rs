//! Upstream connections: a keep-alive pool per node, and the body type forwarded upstream.
//!
//! Our own pool rather than hyper-util's legacy `Client`, for one reason of correctness: the
//! request path must know whether a request was *sent*. We connect (or check out) first and only
//! then hand over the request, so a refused connection moves the untouched request, streaming
//! body included, to the next node; and hyper's `try_send_request` returns a request that a
//! closing pooled connection did not send. A connection goes back to the pool when its response
//! body ends (see `proxy::service::ResponseBody`).

use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::NodeAddr;

/// How long a checkout waits for a pooled connection that is finishing its last exchange.
const READY_WAIT: Duration = Duration::from_millis(50);

/// Idle connections kept per node.
pub const MAX_IDLE_PER_NODE: usize = 512;

/// The body of a forwarded request: the client's own stream (counted against
/// `listeners[].max_body_bytes` when it has one), or nothing (a retried request).
#[derive(Debug)]
pub enum ForwardBody {
    Incoming(Incoming),
    Limited(LimitedBody),
    Empty,
}

/// A client body that may carry at most `left` more bytes. One byte more and the stream
/// fails with [`BodyTooLarge`] (the upload to the node is aborted) and `tripped` is set, so
/// the request path answers `413` rather than blaming the client's connection or the node.
#[derive(Debug)]
pub struct LimitedBody {
    body: Incoming,
    left: u64,
    tripped: Arc<std::sync::atomic::AtomicBool>,
}

/// The client's body passed `listeners[].max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than max_body_bytes")]
pub struct BodyTooLarge;

impl ForwardBody {
    /// `body`, counted against `limit` when there is one; `tripped` is set when it passes it.
    pub fn client(
        body: Incoming,
        limit: Option<u64>,
        tripped: &Arc<std::sync::atomic::AtomicBool>,
    ) -> ForwardBody {
        match limit {
            None => ForwardBody::Incoming(body),
            Some(max) => ForwardBody::Limited(LimitedBody {
                body,
                left: max,
                tripped: tripped.clone(),
            }),
        }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ForwardBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ForwardBody::Limited(l) => {
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
            ForwardBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Incoming(b) => b.is_end_stream(),
            ForwardBody::Limited(l) => l.body.is_end_stream(),
            ForwardBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Incoming(b) => b.size_hint(),
            ForwardBody::Limited(l) => l.body.size_hint(),
            ForwardBody::Empty => SizeHint::with_exact(0),
        }
    }
}

pub type Sender = http1::SendRequest<ForwardBody>;

/// Why no connection could be had. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out after {after:?}")]
    Timeout { addr: NodeAddr, after: Duration },
    #[error("connect to {addr}: {source}")]
    Io {
        addr: NodeAddr,
        source: std::io::Error,
    },
    #[error("handshake with {addr}: {source}")]
    Handshake {
        addr: NodeAddr,
        source: hyper::Error,
    },
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
    /// The node's `conn_epoch` when the connection was checked out: a node marked down since
    /// has a newer epoch, and the connection is dropped instead of reused.
    epoch: u64,
}

/// Keep-alive connections of one node.
#[derive(Debug, Default)]
pub struct UpstreamPool {
    idle: Mutex<Vec<Idle>>,
}

impl UpstreamPool {
    /// A ready connection: the most recently used idle one that is still open and younger than
    /// `idle_timeout`, else (or when `fresh`) a new one. The flag says whether it was reused.
    pub async fn checkout(
        &self,
        addr: &NodeAddr,
        connect_timeout: Duration,
        idle_timeout: Duration,
        fresh: bool,
        epoch: u64,
    ) -> Result<(Sender, bool), ConnectError> {
        loop {
            if fresh {
                break;
            }
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut idle) = idle else { break };
            if idle.epoch != epoch || idle.since.elapsed() > idle_timeout || idle.sender.is_closed()
            {
                continue;
            }
            if idle.sender.is_ready() {
                return Ok((idle.sender, true));
            }
            // Just finished an exchange: give it a moment to become idle, never longer (a
            // connection still streaming a request body would otherwise hold us indefinitely).
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, idle.sender.ready()).await {
                return Ok((idle.sender, true));
            }
        }
        // Boxed: opening a connection is the rare case; its large future would otherwise be
        // part of every checkout's.
        Box::pin(connect(addr, connect_timeout))
            .await
            .map(|s| (s, false))
    }

    /// Returns a connection whose exchange is complete.
    pub fn checkin(&self, sender: Sender, epoch: u64) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_PER_NODE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
                epoch,
            });
        }
    }

    /// Drops every idle connection (a node removed or known dead).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The keep-alive pools of every node, by the node's registry slot (dense, stable across
/// reloads, so a node that survives a reload keeps its idle connections).
#[derive(Debug, Default)]
pub struct UpstreamPools {
    by_slot: RwLock<Vec<Option<Arc<UpstreamPool>>>>,
}

impl UpstreamPools {
    /// The pool of the node with `slot`, made on first use.
    pub fn get(&self, slot: u32) -> Arc<UpstreamPool> {
        let i = slot as usize;
        if let Some(Some(p)) = self
            .by_slot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(i)
        {
            return p.clone();
        }
        let mut w = self.by_slot.write().unwrap_or_else(|e| e.into_inner());
        if w.len() <= i {
            w.resize(i + 1, None);
        }
        w[i].get_or_insert_with(Default::default).clone()
    }
}

/// Opens a TCP connection to a node, looking the host up first when it is a name (at each
/// connect, so a node whose name moves is followed).
pub async fn open_tcp(addr: &NodeAddr) -> std::io::Result<TcpStream> {
    match addr {
        NodeAddr::Socket(a) => TcpStream::connect(a).await,
        NodeAddr::Host { host, port } => TcpStream::connect((host.as_str(), *port)).await,
    }
}

/// Opens a new HTTP/1.1 connection (upgrades allowed) and spawns its driver task.
pub async fn connect(addr: &NodeAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, open_tcp(addr)).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                addr: addr.clone(),
                after: timeout,
            })
        }
        Ok(Err(source)) => {
            return Err(ConnectError::Io {
                addr: addr.clone(),
                source,
            })
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake {
            addr: addr.clone(),
            source,
        })?;
    let addr = addr.to_string();
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection closed");
        }
    });
    Ok(sender)
}
