//! The native HTTP/1.1 path: HTTP/1.1 clients to HTTP/1.1 nodes on the [`crate::h1`] codec.
//!
//! Hand-written rather than hyper, for cost: hyper keeps an 8 KiB read and an 8 KiB write
//! buffer per connection for its whole life, and runs each connection to a node as a task of
//! its own, with a channel send and a wake-up per request. Here the node's connection is
//! driven in the client's task, and buffers come from a per-thread pool only while bytes move:
//! an idle keep-alive connection holds its socket and a few words of state.
//!
//! Only the byte handling is here. The phases are [`crate::proxy::pipeline`]'s, the retry
//! decisions `core::retry`'s, cookie and `Set-Cookie` rewriting `core::session`'s and
//! `core::binder`'s, the same calls the hyper path makes. An HTTP/2 preface goes to hyper with
//! the bytes already read ([`Outcome::Http2`]); an upgrade (WebSocket) becomes a byte tunnel
//! after the node's `101` ([`crate::proxy::tunnel`]).
//!
//! Timeouts, all on the coarse [`deadline`] table: the request head within
//! `header_read_timeout`; every read and write of a body within `timeouts.body_idle` of the
//! one before (armed only when the socket makes it wait, so a response that arrives with its
//! head costs no clock read); the response head within `timeouts.response` of the end of the
//! request body.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::client_io::ClientIo;
use tokio_util::sync::CancellationToken;

use crate::config::ListenerConfig;
use crate::core::binder::{self, ResponsePlan};
use crate::core::retry::Failure;
use crate::core::select::Choice;
use crate::h1::{
    self, BodyFraming, BodyOut, BodyReader, HeaderKind, Method, Parsed, RequestEdits, RequestHead,
    ResponseEdits, ResponseHead, Step, Version,
};
use crate::proxy::attempt::{Attempts, Fail, Failed, Synthetic, Trace};
use crate::proxy::deadline;
use crate::proxy::pipeline::{self, Ids, InflightGuard, Matched, ProxyError, SessionEdit};
use crate::proxy::tunnel::{self, TunnelPolicy};
use crate::proxy::upstream::open_tcp;
use crate::state::node::now_ms;
use crate::state::snapshot::{Node, Pool, Snapshot};
use crate::state::Balancer;

/// Size of a pooled buffer; a larger head grows it up to the listener's `max_header_bytes`.
const BUF_SIZE: usize = 16 * 1024;
/// Buffers kept per thread for reuse.
const POOLED_BUFS: usize = 256;
/// Idle connections kept per node.
const MAX_IDLE_PER_NODE: usize = 512;

thread_local! {
    static BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this thread's pool, given back (emptied) on drop.
pub struct Buf(Vec<u8>);

impl Buf {
    fn take() -> Buf {
        let b = BUFS.with(|p| p.borrow_mut().pop());
        Buf(b.unwrap_or_else(|| Vec::with_capacity(BUF_SIZE)))
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0);
        if b.capacity() == 0 || b.capacity() > 4 * BUF_SIZE {
            return; // a grown buffer is not kept
        }
        b.clear();
        BUFS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOLED_BUFS {
                p.push(b);
            }
        });
    }
}

thread_local! {
    static RESP_HEADS: RefCell<Vec<ResponseHead>> = const { RefCell::new(Vec::new()) };
}

/// A response head from this thread's pool (its field vector keeps its capacity), given
/// back on drop.
struct PooledResponseHead(ResponseHead);

impl PooledResponseHead {
    fn take() -> PooledResponseHead {
        let h = RESP_HEADS.with(|p| p.borrow_mut().pop());
        PooledResponseHead(h.unwrap_or_default())
    }
}

impl Drop for PooledResponseHead {
    fn drop(&mut self) {
        let h = std::mem::replace(&mut self.0, ResponseHead::new());
        RESP_HEADS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOLED_BUFS {
                p.push(h);
            }
        });
    }
}

/// An idle keep-alive connection to a node.
struct IdleConn {
    stream: TcpStream,
    since: Instant,
    epoch: u64,
}

/// Keep-alive connections of the native path, per node slot.
#[derive(Default)]
pub struct RawPools {
    by_slot: Mutex<Vec<Vec<IdleConn>>>,
}

impl std::fmt::Debug for RawPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPools").finish_non_exhaustive()
    }
}

impl RawPools {
    /// The most recent idle connection of the node that is open, current and young enough.
    fn checkout(&self, slot: u32, epoch: u64, idle_timeout: Duration) -> Option<TcpStream> {
        loop {
            let conn = {
                let mut all = self.by_slot.lock().unwrap_or_else(|e| e.into_inner());
                all.get_mut(slot as usize)?.pop()?
            };
            if conn.epoch != epoch || conn.since.elapsed() > idle_timeout {
                continue;
            }
            // An idle connection has nothing to read: data or EOF means it is unusable.
            let mut probe = [0u8; 1];
            match conn.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(conn.stream),
                _ => continue,
            }
        }
    }

    fn checkin(&self, slot: u32, epoch: u64, stream: TcpStream) {
        let mut all = self.by_slot.lock().unwrap_or_else(|e| e.into_inner());
        let i = slot as usize;
        if all.len() <= i {
            all.resize_with(i + 1, Vec::new);
        }
        if all[i].len() < MAX_IDLE_PER_NODE {
            all[i].push(IdleConn {
                stream,
                since: Instant::now(),
                epoch,
            });
        }
    }
}

/// What one client connection's request code borrows.
pub struct Conn<'a> {
    pub balancer: &'a Arc<Balancer>,
    pub pools: &'a RawPools,
    pub client: SocketAddr,
    pub cfg: &'a ListenerConfig,
    pub shutdown: &'a CancellationToken,
    /// The client connection is TLS: `X-Forwarded-Proto: https`, `Secure` cookies.
    pub tls: bool,
}

/// What every connection of one accept loop shares, owned.
pub struct Context {
    pub balancer: Arc<Balancer>,
    pub pools: Arc<RawPools>,
    pub cfg: ListenerConfig,
    pub shutdown: CancellationToken,
    /// The listener terminates TLS.
    pub tls: bool,
}

/// How a connection ended.
pub enum Outcome {
    /// Closed by either side, or shut down.
    Closed,
    /// The client spoke HTTP/2 with prior knowledge: these bytes were read; hyper takes over.
    Http2(ClientIo, Vec<u8>),
    /// The node accepted an upgrade: run the tunnel.
    Upgraded(ClientIo, Tunnel),
}

thread_local! {
    static REQ_HEADS: RefCell<Vec<RequestHead>> = const { RefCell::new(Vec::new()) };
}

/// A request head from this thread's pool (its field vector keeps its capacity), given back
/// on drop: an idle connection holds none.
pub struct PooledRequestHead(RequestHead);

impl PooledRequestHead {
    fn take() -> PooledRequestHead {
        let h = REQ_HEADS.with(|p| p.borrow_mut().pop());
        PooledRequestHead(h.unwrap_or_default())
    }
}

impl Drop for PooledRequestHead {
    fn drop(&mut self) {
        let h = std::mem::replace(&mut self.0, RequestHead::new());
        REQ_HEADS.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOLED_BUFS {
                p.push(h);
            }
        });
    }
}

/// One request's exchange: what it owns while it runs, handed back when it ends.
pub struct Job {
    client: ClientIo,
    peer: SocketAddr,
    head: PooledRequestHead,
    ctx: Arc<Context>,
}

/// Where a pooled executor takes its next exchange from and leaves its result.
#[derive(Default)]
pub struct Inbox {
    job: Option<(Job, Buf)>,
    done: Option<(Job, Next)>,
}

type InboxRef = Arc<Mutex<Inbox>>;

fn lock(inbox: &InboxRef) -> std::sync::MutexGuard<'_, Inbox> {
    inbox.lock().unwrap_or_else(|e| e.into_inner())
}

/// A long-lived exchange loop in a box: [`executor`]'s future and its inbox.
struct Executor<E> {
    inbox: InboxRef,
    fut: Pin<Box<E>>,
}

/// Exchange executors, lent to a connection for one request at a time.
///
/// Why: an exchange's state (the request's heads, the node connection, the retry loop, every
/// nested wait) is about 2 KiB. Inline in the connection's task every idle keep-alive
/// connection would hold it; boxed per request every request would allocate (and copy the
/// 2 KiB state into the box). An executor is one boxed future that runs exchanges in a loop,
/// polled by whichever connection borrowed it: an idle connection holds a few words, a
/// request allocates nothing. `E` is [`executor`]'s future, named only through
/// [`exchange_pool`].
pub struct ExchangePool<E> {
    make: fn(InboxRef) -> E,
    free: Mutex<Vec<Executor<E>>>,
}

/// The exchange pool of one accept loop.
pub fn exchange_pool() -> ExchangePool<impl Future<Output = ()> + Send> {
    ExchangePool {
        make: executor,
        free: Mutex::new(Vec::new()),
    }
}

impl<E: Future<Output = ()>> ExchangePool<E> {
    /// Runs one exchange on a pooled executor, polled by the calling task.
    async fn run(&self, job: Job, buf: Buf) -> Option<(Job, Next)> {
        let popped = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut ex = popped.unwrap_or_else(|| {
            let inbox = InboxRef::default();
            Executor {
                fut: Box::pin((self.make)(inbox.clone())),
                inbox,
            }
        });
        lock(&ex.inbox).job = Some((job, buf));
        let out = std::future::poll_fn(|cx| {
            if ex.fut.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None); // not reached: the loop does not end
            }
            match lock(&ex.inbox).done.take() {
                Some(done) => Poll::Ready(Some(done)),
                None => Poll::Pending,
            }
        })
        .await;
        if out.is_some() {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if free.len() < POOLED_BUFS {
                free.push(ex);
            }
        }
        out
    }
}

/// Runs the exchanges put in `inbox`, one after another, forever. Between two exchanges it
/// waits without a waker: only the connection that lends it polls it, and that connection
/// looks at `done` after every poll.
async fn executor(inbox: InboxRef) {
    loop {
        let (mut job, buf) = std::future::poll_fn(|_| match lock(&inbox).job.take() {
            Some(j) => Poll::Ready(j),
            None => Poll::Pending,
        })
        .await;
        let next = {
            let conn = Conn {
                balancer: &job.ctx.balancer,
                pools: &job.ctx.pools,
                client: job.peer,
                cfg: &job.ctx.cfg,
                shutdown: &job.ctx.shutdown,
                tls: job.ctx.tls,
            };
            exchange(&mut job.client, buf, &job.head.0, &conn).await
        };
        lock(&inbox).done = Some((job, next));
    }
}

/// Serves one client connection until it closes.
///
/// Not an `async fn`, for size: an async fn copies its arguments into locals, and every idle
/// connection's task would hold both.
pub fn serve<E>(
    client: ClientIo,
    peer: SocketAddr,
    ctx: Arc<Context>,
    exchanges: &ExchangePool<E>,
) -> impl Future<Output = Outcome> + '_
where
    E: Future<Output = ()>,
{
    let (mut client, mut ctx) = (client, ctx);
    async move {
        // Bytes of the next request read along with the last one (pipelining).
        let mut carry: Option<Buf> = None;
        loop {
            let mut buf = match carry.take() {
                Some(b) => b,
                None => {
                    // Idle: hold no buffer, wait for bytes (or shutdown, or the idle limit). A
                    // hand-rolled wait, for size: the readiness waker lives in the socket's own
                    // slot, the deadline is a table slot, and shutdown wakes it through
                    // `deadline::nudge_idle`: a few words in every idle connection's state.
                    let mut idle =
                        deadline::Deadline::idle(Instant::now() + ctx.cfg.keepalive_timeout);
                    let readable = std::future::poll_fn(|cx| {
                        if ctx.shutdown.is_cancelled() {
                            return Poll::Ready(false);
                        }
                        match client.poll_read_ready(cx) {
                            Poll::Ready(r) => return Poll::Ready(r.is_ok()),
                            Poll::Pending => {}
                        }
                        if idle.poll_expired(cx).is_ready() {
                            return Poll::Ready(false);
                        }
                        // A shutdown between the first look and arming the deadline.
                        if ctx.shutdown.is_cancelled() {
                            return Poll::Ready(false);
                        }
                        Poll::Pending
                    })
                    .await;
                    drop(idle);
                    if !readable {
                        return Outcome::Closed;
                    }
                    Buf::take()
                }
            };
            let mut head = PooledRequestHead::take();
            match read_head(&mut client, &mut buf.0, &mut head.0, &ctx.cfg).await {
                HeadRead::Complete => {}
                HeadRead::Closed => return Outcome::Closed,
                HeadRead::Http2 => return Outcome::Http2(client, std::mem::take(&mut buf.0)),
                HeadRead::Bad(status, reason) => {
                    let code =
                        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
                    let synthetic = Synthetic::new(code, reason, None);
                    let _ = Box::pin(write_synthetic(&mut client, &synthetic, false)).await;
                    return Outcome::Closed;
                }
            }
            let job = Job {
                client,
                peer,
                head,
                ctx,
            };
            let Some((job, next)) = exchanges.run(job, buf).await else {
                return Outcome::Closed;
            };
            client = job.client;
            ctx = job.ctx;
            drop(job.head);
            match next {
                Next::Keep(rest) => carry = rest,
                Next::Close => return Outcome::Closed,
                Next::Tunnel(t) => return Outcome::Upgraded(client, t),
            }
            if ctx.shutdown.is_cancelled() {
                return Outcome::Closed;
            }
        }
    }
}

enum HeadRead {
    Complete,
    Closed,
    Http2,
    Bad(u16, &'static str),
}

/// Reads until `buf` holds a complete request head, within `header_read_timeout` of the
/// moment this request's bytes started to arrive.
async fn read_head(
    client: &mut ClientIo,
    buf: &mut Vec<u8>,
    head: &mut RequestHead,
    cfg: &ListenerConfig,
) -> HeadRead {
    let deadline = Instant::now() + cfg.header_read_timeout;
    let mut scanned = 0;
    loop {
        if !buf.is_empty() && h1::may_be_complete(buf, scanned) {
            match h1::parse_request(buf, head) {
                Ok(Parsed::Complete(n)) if n > cfg.max_header_bytes => {
                    return HeadRead::Bad(431, "request header fields too large")
                }
                Ok(Parsed::Complete(_)) => return HeadRead::Complete,
                Ok(Parsed::Partial) => {}
                Err(h1::Error::Http2Preface) => return HeadRead::Http2,
                Err(e) => return HeadRead::Bad(e.status(), e.reason()),
            }
        }
        if buf.len() >= cfg.max_header_bytes {
            return HeadRead::Bad(431, "request header fields too large");
        }
        scanned = buf.len();
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(BUF_SIZE);
        }
        match deadline::timeout_at(deadline, client.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return HeadRead::Closed,
            Ok(Ok(_)) => {}
            Err(_) if buf.is_empty() => return HeadRead::Closed,
            Err(_) => return HeadRead::Bad(408, "request head not received in time"),
        }
    }
}

/// What the connection does after a request.
pub enum Next {
    /// Keep it open; `Some` holds the bytes of the next request already read.
    Keep(Option<Buf>),
    Close,
    Tunnel(Tunnel),
}

/// How the request's exchange ended, for the connection.
struct Done {
    /// The client connection can take another request.
    keep: bool,
    /// Bytes after this request (its body included) that were already read.
    rest: Option<Buf>,
    /// After a `101`: the node's connection, and the head and early bytes for the client.
    tunnel: Option<Tunnel>,
}

/// An upgraded connection (WebSocket) to run as a byte tunnel.
pub struct Tunnel {
    upstream: TcpStream,
    head: Buf,
    early: Vec<u8>,
    /// The node's slot, held until the tunnel closes.
    slot: Option<InflightGuard>,
}

impl Tunnel {
    /// Sends the `101` head and the node's early bytes, then copies both ways until either
    /// side closes, the tunnel sits idle for `policy.idle`, or the shutdown grace ends
    /// ([`tunnel::relay`]).
    pub async fn run(mut self, mut client: ClientIo, policy: &TunnelPolicy) {
        tunnel::keepalive(client.tcp());
        tunnel::keepalive(&self.upstream);
        if write_all_idle(&mut client, &self.head.0, policy.idle)
            .await
            .is_err()
            || write_all_idle(&mut client, &self.early, policy.idle)
                .await
                .is_err()
            || flush_idle(&mut client, policy.idle).await.is_err()
        {
            return;
        }
        drop(std::mem::take(&mut self.early));
        drop(std::mem::replace(&mut self.head, Buf(Vec::new())));
        let end = tunnel::relay(&mut client, &mut self.upstream, policy).await;
        tracing::debug!(?end, "tunnel closed");
    }
}

/// One request and its response, then the access log line.
async fn exchange(client: &mut ClientIo, buf: Buf, head: &RequestHead, conn: &Conn<'_>) -> Next {
    let start = Instant::now();
    let snap = conn.balancer.snapshot();
    let mut trace = Trace::default();
    let result = route_and_forward(client, &buf.0, head, &snap, conn, &mut trace).await;
    let done = match result {
        Ok(done) => done,
        Err((err, retry_after)) => {
            trace.status = err.status().as_u16();
            trace.warn_failed(&snap, &err);
            // The body was not read: the connection cannot be reused unless there was none.
            let keep = head.keep_alive() && matches!(head.body(), BodyFraming::Empty);
            let synthetic = Synthetic::new(err.status(), &err.to_string(), retry_after);
            let w = Box::pin(write_synthetic(client, &synthetic, keep)).await;
            let rest = rest_after(&buf.0, head.head_len());
            Done {
                keep: keep && w.is_ok(),
                rest,
                tunnel: None,
            }
        }
    };
    let mut done = done;
    if client.is_tls() && done.tunnel.is_none() {
        // What the TLS session still holds of the response (a client slow to read).
        let idle = trace
            .pool_ix
            .map_or(SYNTHETIC_WRITE, |i| snap.pools[i].cfg.timeouts.body_idle);
        if flush_idle(client, idle).await.is_err() {
            done.keep = false;
        }
    }
    let method = std::str::from_utf8(head.method_bytes(&buf.0)).unwrap_or("-");
    let path = std::str::from_utf8(head.path(&buf.0)).unwrap_or("/");
    trace.finish(conn.balancer, &snap, conn.client, method, path, start);
    if let Some(t) = done.tunnel {
        Next::Tunnel(t)
    } else if done.keep {
        Next::Keep(done.rest)
    } else {
        Next::Close
    }
}

/// The bytes of `buf` after `used`, in a pooled buffer; `None` when there are none.
fn rest_after(buf: &[u8], used: usize) -> Option<Buf> {
    let rest = buf.get(used..).filter(|r| !r.is_empty())?;
    let mut b = Buf::take();
    b.0.extend_from_slice(rest);
    Some(b)
}

/// What every attempt of one request shares.
struct Request<'a> {
    head: &'a RequestHead,
    src: &'a [u8],
    m: Matched<'a>,
    lines: &'a [Option<&'a str>],
    sep: char,
    path_param: Option<&'a str>,
    started_ms: u64,
    host: &'a str,
    balancer: &'a Balancer,
    pools: &'a RawPools,
    tls: bool,
}

/// Phases 1–2 on the parsed head, then the attempts.
async fn route_and_forward(
    client: &mut ClientIo,
    src: &[u8],
    head: &RequestHead,
    snap: &Snapshot,
    conn: &Conn<'_>,
    trace: &mut Trace,
) -> Result<Done, Fail> {
    let host = head.host(src).and_then(|h| std::str::from_utf8(h).ok());
    let path = std::str::from_utf8(head.path(src)).map_err(|_| {
        (
            ProxyError::ClientBody("request target is not UTF-8".into()),
            None,
        )
    })?;
    if let BodyFraming::Length(n) = head.body() {
        if crate::core::forwarding::declared_body_too_large(conn.cfg.max_body_bytes, Some(n)) {
            return Err((ProxyError::BodyTooLarge, None));
        }
    }
    let mut lines: [Option<&str>; 8] = [None; 8];
    let mut n = 0;
    for i in head.indices(HeaderKind::Cookie) {
        if n < lines.len() {
            lines[n] = std::str::from_utf8(head.header_value(i, src)).ok();
            n += 1;
        }
    }
    let started_ms = now_ms();
    let m = pipeline::match_and_extract(snap, host, path, &lines[..n], started_ms)
        .map_err(|e| (e, None))?;
    trace.pool_ix = Some(m.pool_ix);
    let settings = &snap.config.session.settings;
    let req = Request {
        head,
        src,
        m,
        lines: &lines[..n],
        sep: settings.separator,
        path_param: settings.path_param.as_deref(),
        started_ms,
        host: host.unwrap_or(""),
        balancer: conn.balancer,
        pools: conn.pools,
        tls: conn.tls,
    };
    attempts(client, &req, conn, trace).await
}

/// Phases 3–6 for each node tried, through the shared attempt loop ([`Attempts`]).
async fn attempts(
    client: &mut ClientIo,
    req: &Request<'_>,
    conn: &Conn<'_>,
    trace: &mut Trace,
) -> Result<Done, Fail> {
    let pool = req.m.pool;
    let replayable = pool.cfg.failover.retry_idempotent
        && req.head.method().is_idempotent()
        && matches!(req.head.body(), BodyFraming::Empty);
    let had_body = !matches!(req.head.body(), BodyFraming::Empty);
    let mut attempts = Attempts::new(pool, req.m.ids, req.sep, replayable, had_body);
    loop {
        let turn = attempts.next(trace).await?;
        let (node, choice, epoch) = (turn.node, turn.choice, turn.epoch);
        let failed = match connect(conn, pool, node, epoch, turn.fresh).await {
            Err(reason) => Failed::new(Failure::Connect, reason, false),
            Ok((upstream, reused)) => {
                let ids = attempts.rebind(&turn).await?;
                turn.slot.sending();
                let sent_at = Instant::now();
                let r = forward(
                    client, upstream, req, conn, node, choice, &ids, epoch, trace,
                )
                .await;
                match r {
                    Ok(mut done) => {
                        trace.upstream.get_or_insert(sent_at.elapsed());
                        // A tunnel keeps its connection to the node, and so its slot.
                        if let Some(t) = &mut done.tunnel {
                            t.slot = Some(turn.slot);
                        }
                        return Ok(done);
                    }
                    Err((failure, reason)) => Failed {
                        renamed: attempts.renamed(&ids),
                        ..Failed::new(failure, reason, reused)
                    },
                }
            }
        };
        attempts.failed(turn, failed)?;
    }
}

/// A connection to `node`: a pooled one unless `fresh`, else a new one within the connect
/// timeout. The flag says whether it was reused.
async fn connect(
    conn: &Conn<'_>,
    pool: &Pool,
    node: &Node,
    epoch: u64,
    fresh: bool,
) -> Result<(TcpStream, bool), String> {
    if !fresh {
        if let Some(s) = conn
            .pools
            .checkout(node.slot, epoch, pool.cfg.timeouts.idle)
        {
            return Ok((s, true));
        }
    }
    let t = pool.cfg.timeouts.connect;
    // Boxed, timer included: the rare path's state stays out of every connection's.
    match Box::pin(tokio::time::timeout(t, open_tcp(&node.addr))).await {
        Err(_) => Err(format!("connect to {} timed out after {t:?}", node.addr)),
        Ok(Err(e)) => Err(format!("connect to {} failed: {e}", node.addr)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok((s, false))
        }
    }
}

/// Sends the request on `upstream` and relays the response. `Err` carries the failure for
/// `core::retry`; it is only returned while nothing of the response reached the client.
#[allow(clippy::too_many_arguments)]
async fn forward(
    client: &mut ClientIo,
    mut upstream: TcpStream,
    req: &Request<'_>,
    conn: &Conn<'_>,
    node: &Node,
    choice: Choice,
    ids: &Ids<'_>,
    epoch: u64,
    trace: &mut Trace,
) -> Result<Done, (Failure, String)> {
    let mut out = Buf::take();
    write_head(req, conn, choice, ids, &mut out.0);
    let framing = req.head.body();
    let mut reader = BodyReader::new(framing);
    let mut budget = crate::core::forwarding::BodyBudget::new(conn.cfg.max_body_bytes);
    let early = &req.src[req.head.head_len()..];
    let (body_done, used) = reframe(&mut reader, &mut budget, early, framing, &mut out.0)?;
    if upstream.write_all(&out.0).await.is_err() {
        return Err((Failure::NotSent, "the connection to the node closed".into()));
    }
    drop(out);
    if body_done {
        let rest = rest_after(req.src, req.head.head_len() + used);
        let relayed = relay_response(client, &mut upstream, req, node, ids, trace, None).await?;
        return Ok(finish(upstream, req, node, epoch, relayed, rest));
    }
    if req.head.expect_continue() {
        let _ = client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        let _ = flush_idle(client, req.m.pool.cfg.timeouts.body_idle).await;
    }
    // The rest of the body and the response at once: a node may answer (an echo, an early
    // error) before it read the whole body, and waiting for one before the other deadlocks.
    let (mut client_rd, mut client_wr) = client.split();
    let (mut up_rd, mut up_wr) = upstream.split();
    // Set by the upload when the body's last byte went to the node: `timeouts.response`
    // counts from there, however long a slow but steady upload took.
    let upload_end = OnceLock::new();
    // The first failure ends both (an aborted upload must not wait for the node's answer).
    // Boxed: only a body larger than the first read gets here, and the two futures inline
    // would be part of every connection's state, idle ones included.
    let both = Box::pin(async {
        tokio::try_join!(
            stream_body(
                &mut client_rd,
                &mut up_wr,
                &mut reader,
                &mut budget,
                (framing, req.m.pool.cfg.timeouts.body_idle),
                &upload_end,
            ),
            relay_response(
                &mut client_wr,
                &mut up_rd,
                req,
                node,
                ids,
                trace,
                Some(&upload_end)
            ),
        )
    });
    let (rest, relayed) = both.await?;
    let relayed = match relayed {
        // No tunnel for a request with a body.
        Relayed::Upgrade { .. } => {
            return Err((
                Failure::Upstream,
                "the node upgraded a request with a body".into(),
            ))
        }
        r => r,
    };
    Ok(finish(upstream, req, node, epoch, relayed, rest))
}

/// After the response: the node's connection back to the pool (or into a tunnel), and what
/// the client connection does next.
fn finish(
    upstream: TcpStream,
    req: &Request<'_>,
    node: &Node,
    epoch: u64,
    relayed: Relayed,
    rest: Option<Buf>,
) -> Done {
    match relayed {
        Relayed::Upgrade { head, early } => Done {
            keep: false,
            rest: None,
            tunnel: Some(Tunnel {
                upstream,
                head,
                early,
                slot: None,
            }),
        },
        Relayed::Sent {
            keep_client,
            reusable,
        } => {
            if reusable {
                req.pools.checkin(node.slot, epoch, upstream);
            }
            Done {
                keep: keep_client,
                rest: rest.filter(|_| keep_client),
                tunnel: None,
            }
        }
    }
}

/// Writes the head the node receives: the session id it must see, the forwarding headers,
/// the failover header; hop-by-hop headers and client-supplied forwarding headers out.
fn write_head(
    req: &Request<'_>,
    conn: &Conn<'_>,
    choice: Choice,
    ids: &Ids<'_>,
    out: &mut Vec<u8>,
) {
    let pool = req.m.pool;
    let (cookie_lines, target) = session_edit(req, ids.forward_id.as_deref());
    let mut vals = Buf::take();
    let src = req.src;
    // Kept and extended from a trusted proxy (every line, in order), replaced for anyone else.
    let extend = conn.cfg.trusted_proxies.extends(conn.client.ip());
    let chain = |name: &'static [u8]| {
        crate::core::forwarding::prior_chain(
            extend,
            req.head
                .find_all(src, name)
                .map(|i| req.head.header_value(i, src)),
        )
    };
    let (xff_prev, fwd_prev) = (chain(b"x-forwarded-for"), chain(b"forwarded"));
    let xff_prev = xff_prev.as_deref().map(str::as_bytes);
    h1::push_forwarded_for(&mut vals.0, xff_prev, conn.client.ip());
    let xff_end = vals.0.len();
    // The client's address as X-Forwarded-For just wrote it (it ends the value): formatted
    // once for both headers.
    let ip_len = ip_text_len(&vals.0[..xff_end]);
    let v6 = conn.client.ip().to_canonical().is_ipv6();
    let prev = fwd_prev.as_deref().map(str::as_bytes);
    // The address as X-Forwarded-For wrote it, copied within the buffer both values share.
    let ip = xff_end - ip_len..xff_end;
    let push_ip = |out: &mut Vec<u8>| out.extend_from_within(ip);
    crate::core::forwarding::push_forwarded(&mut vals.0, prev, push_ip, v6, req.tls, req.host);
    let failover = pipeline::failover_header_value(choice, req.m.ids.as_ref(), req.sep);
    let fo_name = pool.cfg.failover.header.as_str().as_bytes();
    let skip: [&[u8]; 7] = [
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"expect",
        fo_name,
        if cookie_lines.is_some() {
            b"cookie"
        } else {
            b""
        },
    ];
    let mut extra: [(&[u8], &[u8]); 24] = [(b"", b""); 24];
    let mut n = 0;
    let mut add = |name: &'static [u8], value| {
        extra[n] = (name, value);
        n += 1;
    };
    add(b"X-Forwarded-For", &vals.0[..xff_end]);
    add(
        b"X-Forwarded-Proto",
        if req.tls { &b"https"[..] } else { &b"http"[..] },
    );
    if !req.host.is_empty() {
        add(b"X-Forwarded-Host", req.host.as_bytes());
    }
    add(b"Forwarded", &vals.0[xff_end..]);
    for l in cookie_lines.iter().flatten().take(16) {
        add(b"Cookie", l.as_bytes());
    }
    if let Some(v) = &failover {
        extra[n] = (fo_name, v.as_bytes());
        n += 1;
    }
    let edits = RequestEdits {
        skip: &skip,
        extra: &extra[..n],
        upgrade: req.head.upgrade(),
        target: target.as_deref().map(str::as_bytes),
        default_host: req.host.as_bytes(),
        ..RequestEdits::default()
    };
    h1::write_request_head(src, req.head, &edits, out);
}

/// Length of the address that ends an X-Forwarded-For value (after its last `", "`).
fn ip_text_len(xff: &[u8]) -> usize {
    xff.iter()
        .rev()
        .take_while(|&&c| c != b' ' && c != b',')
        .count()
}

/// The session id the node must see: rewritten cookie lines or a rewritten target, each
/// only when it changes (a sticky hit allocates nothing).
fn session_edit(
    req: &Request<'_>,
    forward_id: Option<&str>,
) -> (Option<Vec<String>>, Option<String>) {
    let (Some(found), Some(fwd)) = (req.m.found.as_ref(), forward_id) else {
        return (None, None);
    };
    let path = std::str::from_utf8(req.head.path(req.src)).unwrap_or("/");
    let query = req
        .head
        .query(req.src)
        .map(|q| std::str::from_utf8(q).unwrap_or(""));
    let loc = &found.location;
    match pipeline::session_edit(loc, req.lines, req.m.cookie_name, path, query, fwd) {
        SessionEdit::Unchanged => (None, None),
        SessionEdit::CookieLines(l) => (Some(l), None),
        SessionEdit::Target(t) => (None, Some(t)),
    }
}

/// Decodes body bytes from `input` into `out`, re-framing a chunked body. Returns whether the
/// body is complete and how many bytes of `input` it used.
fn reframe(
    reader: &mut BodyReader,
    budget: &mut crate::core::forwarding::BodyBudget,
    mut input: &[u8],
    framing: BodyFraming,
    out: &mut Vec<u8>,
) -> Result<(bool, usize), (Failure, String)> {
    let chunked = matches!(framing, BodyFraming::Chunked);
    let mut used = 0;
    loop {
        if reader.is_done() && !chunked {
            return Ok((true, used));
        }
        match reader
            .decode(input)
            .map_err(|e| (Failure::ClientBody, e.reason().to_string()))?
        {
            Step::Data { start, end } => {
                if !budget.spend(end - start) {
                    return Err((Failure::BodyTooLarge, "over max_body_bytes".into()));
                }
                if chunked {
                    h1::write_chunk_header((end - start) as u64, out);
                    out.extend_from_slice(&input[start..end]);
                    out.extend_from_slice(h1::CHUNK_END);
                } else {
                    out.extend_from_slice(&input[start..end]);
                }
                used += end;
                input = &input[end..];
            }
            Step::Trailer { end, .. } => {
                used += end;
                input = &input[end..];
            }
            Step::NeedMore => return Ok((false, used + input.len())),
            Step::Done { consumed } => {
                if chunked {
                    out.extend_from_slice(h1::LAST_CHUNK);
                }
                return Ok((true, used + consumed));
            }
        }
    }
}

/// Streams the rest of the request body from the client to the node, each read and each
/// write within `body_idle` of the one before, and notes in `upload_end` when it is done.
/// Returns the bytes read past the body's end (a pipelined request).
async fn stream_body<C: AsyncRead + Unpin, U: AsyncWrite + Unpin>(
    client: &mut C,
    upstream: &mut U,
    reader: &mut BodyReader,
    budget: &mut crate::core::forwarding::BodyBudget,
    (framing, idle): (BodyFraming, Duration),
    upload_end: &OnceLock<Instant>,
) -> Result<Option<Buf>, (Failure, String)> {
    let mut inb = Buf::take();
    let mut out = Buf::take();
    loop {
        inb.0.clear();
        match deadline::timeout_pending(idle, client.read_buf(&mut inb.0)).await {
            Err(_) => {
                let why = format!("no request body byte for {idle:?} (timeouts.body_idle)");
                return Err((Failure::ClientStalled, why));
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err((
                    Failure::ClientBody,
                    "the client closed during the body".into(),
                ))
            }
            Ok(Ok(_)) => {}
        }
        out.0.clear();
        let (done, used) = reframe(reader, budget, &inb.0, framing, &mut out.0)?;
        if let Err(e) = write_all_idle(upstream, &out.0, idle).await {
            let why = if e.kind() == std::io::ErrorKind::TimedOut {
                format!("the node took no request body byte for {idle:?} (timeouts.body_idle)")
            } else {
                "the node closed during the request body".into()
            };
            return Err((Failure::Upstream, why));
        }
        if done {
            let _ = upload_end.set(Instant::now());
            return Ok(rest_after(&inb.0, used));
        }
    }
}

/// Writes all of `buf`, each write within `idle` of the one before
/// ([`deadline::timeout_pending`]): a peer that stops reading is cut off after `idle`, with
/// an error of kind `TimedOut`. A write the socket takes at once reads no clock.
async fn write_all_idle<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    mut buf: &[u8],
    idle: Duration,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match deadline::timeout_pending(idle, w.write(buf)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Ok(())
}

/// Flushes what a TLS session still holds (a no-op on a socket), within `idle`.
async fn flush_idle<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    idle: Duration,
) -> std::io::Result<()> {
    match deadline::timeout_pending(idle, w.flush()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// How the response went, for the connections.
enum Relayed {
    /// Sent. `keep_client`: the client connection stays open; `reusable`: the node's
    /// connection may go back to the pool.
    Sent { keep_client: bool, reusable: bool },
    /// A `101`: this head and these early bytes go to the client, then a byte tunnel.
    Upgrade { head: Buf, early: Vec<u8> },
}

/// Reads the node's response head (1xx forwarded and skipped), rewrites it, streams the body.
/// Until the final head is parsed nothing reaches the client, so a failure can be retried.
/// `upload_end`: set when a request body still streaming ends (`None`: it was sent).
async fn relay_response<C, U>(
    client: &mut C,
    upstream: &mut U,
    req: &Request<'_>,
    node: &Node,
    ids: &Ids<'_>,
    trace: &mut Trace,
    upload_end: Option<&OnceLock<Instant>>,
) -> Result<Relayed, (Failure, String)>
where
    C: AsyncWrite + Unpin,
    U: AsyncRead + Unpin,
{
    let pool = req.m.pool;
    let mut inb = Buf::take();
    let mut pooled = PooledResponseHead::take();
    let resp = &mut pooled.0;
    let head_len = read_response_head(client, upstream, req, &mut inb.0, resp, upload_end).await?;
    trace.status = resp.status();
    let status = http::StatusCode::from_u16(resp.status()).unwrap_or(http::StatusCode::BAD_GATEWAY);
    pipeline::judge_response(pool, node, status, req.started_ms);
    let mut out = Buf::take();
    let (issued, rout) = write_response(req, &inb.0, resp, ids, &mut out.0);
    pipeline::learn(
        req.balancer,
        pool,
        node,
        req.sep,
        req.m.ids.map(|i| i.backend),
        ids.forward_id.as_deref(),
        issued.iter().map(String::as_str),
    );
    if resp.is_upgrade() && req.head.upgrade() {
        let early = inb.0[head_len..].to_vec();
        return Ok(Relayed::Upgrade { head: out, early });
    }
    let early = &inb.0[head_len..];
    let idle = pool.cfg.timeouts.body_idle;
    let r = send_body(
        client,
        upstream,
        &mut out.0,
        early,
        (resp.body(), rout.body),
        idle,
    )
    .await;
    let reusable = match r {
        Ok(reusable) => reusable,
        Err(fault) => {
            // The response started: no retry. Both connections close (the caller drops the
            // node's), and only a node's fault counts against it.
            match fault {
                BodyFault::Node(what) => {
                    node.rt
                        .stats
                        .upstream_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %node.route, fault = what, ?idle, "response body cut off");
                }
                BodyFault::Client => {
                    tracing::debug!(node = %node.route, "the client stopped taking the response")
                }
            }
            return Ok(Relayed::Sent {
                keep_client: false,
                reusable: false,
            });
        }
    };
    let keep_client = rout.keep_alive && req.head.keep_alive() && rout.body != BodyOut::UntilClose;
    Ok(Relayed::Sent {
        keep_client,
        reusable: reusable && resp.keep_alive(),
    })
}

/// The response head from the node: informational responses (`100 Continue`, `103`) are
/// passed to an HTTP/1.1 client and skipped. Returns the head's length in `inb`.
async fn read_response_head<C: AsyncWrite + Unpin, U: AsyncRead + Unpin>(
    client: &mut C,
    upstream: &mut U,
    req: &Request<'_>,
    inb: &mut Vec<u8>,
    resp: &mut ResponseHead,
    upload_end: Option<&OnceLock<Instant>>,
) -> Result<usize, (Failure, String)> {
    let is_head = req.head.method() == Method::Head;
    let t = &req.m.pool.cfg.timeouts;
    let timeout = t.response;
    // `timeouts.response` counts from the end of the request body: from now when it went out
    // with the head, else from when the upload ends. Until then the wait goes in slices no
    // longer than the response timeout (the upload has its own `body_idle` limit), so the
    // deadline is seen on time once the body's end is known.
    let mut deadline = upload_end.is_none().then(|| Instant::now() + timeout);
    let slice = t.body_idle.min(timeout);
    loop {
        if !inb.is_empty() {
            match h1::parse_response(inb, is_head, resp) {
                Ok(Parsed::Partial) => {}
                Ok(Parsed::Complete(n)) if resp.is_informational() && !resp.is_upgrade() => {
                    if req.head.version() == Version::Http11 {
                        let _ = client.write_all(&inb[..n]).await;
                    }
                    inb.drain(..n);
                    continue;
                }
                Ok(Parsed::Complete(n)) => return Ok(n),
                Err(e) => return Err((Failure::Upstream, format!("invalid response: {e}"))),
            }
        }
        if inb.capacity() - inb.len() < 1024 {
            inb.reserve(BUF_SIZE);
        }
        if deadline.is_none() {
            deadline = upload_end.and_then(OnceLock::get).map(|&end| end + timeout);
        }
        let at = deadline.unwrap_or_else(|| Instant::now() + slice);
        match deadline::timeout_at(at, upstream.read_buf(inb)).await {
            Err(_) if deadline.is_none() => {} // still uploading: look again
            Err(_) => return Err((Failure::Timeout, format!("no answer within {timeout:?}"))),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err((Failure::Upstream, "the node closed before answering".into()))
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Writes the response head for the client into `out`: `Set-Cookie` and `Location`
/// rewritten by the binder (only when there is something to rewrite). Returns the session ids
/// the response issued, and how to send the body.
fn write_response(
    req: &Request<'_>,
    src: &[u8],
    resp: &ResponseHead,
    ids: &Ids<'_>,
    out: &mut Vec<u8>,
) -> (Vec<String>, h1::ResponseOut) {
    let pool = req.m.pool;
    let reissue = req.m.found.as_ref().is_some_and(|f| f.older_forms);
    let plan = pipeline::response_plan(pool, req.m.cookie_name, ids, reissue, req.tls);
    let mut issued = Vec::new();
    let mut rewritten: Option<(Vec<String>, Vec<usize>)> = None;
    let has_set_cookie = resp.indices(HeaderKind::SetCookie).next().is_some();
    if has_set_cookie || plan.client_changed || plan.reissue {
        let mut values = Vec::new();
        let mut raw = Vec::new(); // not UTF-8: kept as they were
        for i in resp.indices(HeaderKind::SetCookie) {
            match std::str::from_utf8(resp.header_value(i, src)) {
                Ok(v) => values.push(v.to_string()),
                Err(_) => raw.push(i),
            }
        }
        let before = values.clone();
        let path = std::str::from_utf8(req.head.path(req.src)).unwrap_or("/");
        issued = pipeline::rewrite_set_cookies(pool, &plan, path, &mut values).issued;
        if values != before {
            rewritten = Some((values, raw));
        }
    }
    let location = location_rewrite(req, src, resp, &plan);
    let mut replace: [(usize, &[u8]); 1] = [(usize::MAX, b"")];
    let mut n_replace = 0;
    if let (Some(i), Some(v)) = (resp.location(), location.as_deref()) {
        replace[0] = (i, v.as_bytes());
        n_replace = 1;
    }
    let mut extra: Vec<(&[u8], &[u8])> = Vec::new();
    let skip: &[&[u8]] = match &rewritten {
        Some((values, raw)) => {
            for &i in raw {
                extra.push((b"Set-Cookie", resp.header_value(i, src)));
            }
            for v in values {
                extra.push((b"Set-Cookie", v.as_bytes()));
            }
            &[b"set-cookie"]
        }
        None => &[],
    };
    let edits = ResponseEdits {
        client_version: req.head.version(),
        keep_alive: req.head.keep_alive(),
        skip,
        replace: &replace[..n_replace],
        extra: &extra,
    };
    let rout = h1::write_response_head(src, resp, &edits, out);
    (issued, rout)
}

/// A `Location` carrying the forwarded id in its `;jsessionid=` parameter, rewritten to the
/// client's id.
fn location_rewrite(
    req: &Request<'_>,
    src: &[u8],
    resp: &ResponseHead,
    plan: &ResponsePlan<'_>,
) -> Option<String> {
    let (param, from, to) = (req.path_param?, plan.forward_id?, plan.client_id?);
    if from == to {
        return None;
    }
    let loc = std::str::from_utf8(resp.header_value(resp.location()?, src)).ok()?;
    binder::rewrite_path_param(loc, param, from, to)
}

/// Who broke off a response body.
enum BodyFault {
    /// The client stopped reading for `body_idle`, or closed: not the node's fault.
    Client,
    /// The node stalled for `body_idle`, closed early or sent a body that does not parse.
    Node(&'static str),
}

/// Sends the head in `out` and the body: what followed the head in `early`, then the rest
/// from the node, as `framing` and `body` say; each read from the node and each write to the
/// client within `idle` of the one before. `Ok(true)` when the node's connection can be
/// reused. A small response arrives with its head: one write, no loop, no clock read.
async fn send_body<C: AsyncWrite + Unpin, U: AsyncRead + Unpin>(
    client: &mut C,
    upstream: &mut U,
    out: &mut Vec<u8>,
    early: &[u8],
    (framing, body): (BodyFraming, BodyOut),
    idle: Duration,
) -> Result<bool, BodyFault> {
    let rechunk = body == BodyOut::Chunked;
    let mut reader = BodyReader::new(if body == BodyOut::None {
        BodyFraming::Empty
    } else {
        framing
    });
    let invalid = |_| BodyFault::Node("sent a body that does not parse");
    let mut done = relay_piece(&mut reader, early, rechunk, out).map_err(invalid)?;
    let to_client = |_| BodyFault::Client;
    write_all_idle(client, out, idle).await.map_err(to_client)?;
    let mut inb = Buf::take();
    while !done {
        // What a TLS session holds goes out before the wait for the node's next bytes (a
        // no-op on a socket).
        flush_idle(client, idle).await.map_err(to_client)?;
        inb.0.clear();
        let n = match deadline::timeout_pending(idle, upstream.read_buf(&mut inb.0)).await {
            Err(_) => return Err(BodyFault::Node("stalled mid-body (timeouts.body_idle)")),
            Ok(Err(_)) => return Err(BodyFault::Node("failed mid-body")),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            // EOF: the end of a close-delimited body, else a node that closed mid-body.
            if matches!(reader, BodyReader::CloseDelimited) {
                if rechunk {
                    write_all_idle(client, h1::LAST_CHUNK, idle)
                        .await
                        .map_err(to_client)?;
                }
                return Ok(false);
            }
            return Err(BodyFault::Node("closed mid-body"));
        }
        out.clear();
        done = relay_piece(&mut reader, &inb.0, rechunk, out).map_err(invalid)?;
        write_all_idle(client, out, idle).await.map_err(to_client)?;
    }
    Ok(!matches!(reader, BodyReader::CloseDelimited))
}

/// Appends the body bytes of `input` to `out` (re-chunked when `rechunk`); true when the body
/// is complete.
fn relay_piece(
    reader: &mut BodyReader,
    mut input: &[u8],
    rechunk: bool,
    out: &mut Vec<u8>,
) -> Result<bool, h1::Error> {
    loop {
        if reader.is_done() {
            if rechunk {
                out.extend_from_slice(h1::LAST_CHUNK);
            }
            return Ok(true);
        }
        match reader.decode(input)? {
            Step::Data { start, end } => {
                if rechunk {
                    h1::write_chunk_header((end - start) as u64, out);
                    out.extend_from_slice(&input[start..end]);
                    out.extend_from_slice(h1::CHUNK_END);
                } else {
                    out.extend_from_slice(&input[start..end]);
                }
                input = &input[end..];
            }
            Step::Trailer { end, .. } => input = &input[end..],
            Step::NeedMore => return Ok(false),
            Step::Done { .. } => {
                if rechunk {
                    out.extend_from_slice(h1::LAST_CHUNK);
                }
                return Ok(true);
            }
        }
    }
}

/// A short text response of the balancer's own ([`Synthetic`]).
async fn write_synthetic(
    client: &mut ClientIo,
    synthetic: &Synthetic,
    keep_alive: bool,
) -> std::io::Result<()> {
    let bytes = synthetic.to_http1(keep_alive);
    write_all_idle(client, bytes.as_bytes(), SYNTHETIC_WRITE).await?;
    flush_idle(client, SYNTHETIC_WRITE).await
}

/// How long the balancer's own short responses may wait for a client that does not read.
const SYNTHETIC_WRITE: Duration = Duration::from_secs(10);
