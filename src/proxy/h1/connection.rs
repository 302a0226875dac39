//! One client connection's loop ([`serve`]): wait idle for the next request, read and parse
//! its head, lend the connection an exchange executor for it, and go on until either side
//! closes, the client switches to HTTP/2, or an upgrade turns the connection into a tunnel.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokio::io::AsyncReadExt;

use super::buffers::{Buf, PooledRequestHead, BUF_SIZE};
use super::context::Context;
use super::exchange::{write_synthetic, Next, Tunnel};
use super::executor::{ExchangePool, Job};
use crate::config::ListenerConfig;
use crate::h1::{self, Parsed, RequestHead};
use crate::proxy::attempt::Synthetic;
use crate::proxy::client_io::ClientIo;
use crate::proxy::deadline;

/// How a connection ended.
pub enum Outcome {
    /// Closed by either side, or shut down, with nothing left of the connection.
    Closed,
    /// Done, by either side or a shutdown: the connection only needs closing (a TLS session
    /// says `close_notify` first).
    Finished(ClientIo),
    /// The client spoke HTTP/2 with prior knowledge: these bytes were read; hyper takes over.
    Http2(ClientIo, Vec<u8>),
    /// The node accepted an upgrade: run the tunnel.
    Upgraded(ClientIo, Tunnel),
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
                    if !idle_wait(&mut client, &ctx).await {
                        return Outcome::Finished(client);
                    }
                    Buf::take()
                }
            };
            let mut head = PooledRequestHead::take();
            match read_head(&mut client, &mut buf.0, &mut head.0, &ctx.cfg).await {
                HeadRead::Complete => {}
                HeadRead::Closed => return Outcome::Finished(client),
                HeadRead::Http2 => return Outcome::Http2(client, std::mem::take(&mut buf.0)),
                HeadRead::Bad(status, reason) => {
                    let code =
                        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
                    let synthetic = Synthetic::new(code, reason, None);
                    let _ = Box::pin(write_synthetic(&mut client, &synthetic, false)).await;
                    return Outcome::Finished(client);
                }
            }
            let job = Job {
                client,
                peer,
                head,
                ctx,
            };
            let Some((job, next)) = exchanges.run((job, buf)).await else {
                return Outcome::Closed;
            };
            client = job.client;
            ctx = job.ctx;
            drop(job.head);
            match next {
                Next::Keep(rest) => carry = rest,
                Next::Close => return Outcome::Finished(client),
                Next::Tunnel(t) => return Outcome::Upgraded(client, t),
            }
            if ctx.shutdown.is_cancelled() {
                return Outcome::Finished(client);
            }
        }
    }
}

/// Waits, holding no buffer, until the idle client sends bytes (`true`), or closes, shuts
/// down or stays idle for `keepalive_timeout` (`false`).
///
/// A hand-rolled wait, for size: the readiness waker lives in the socket's own slot, the
/// deadline is a table slot, and shutdown wakes it through `deadline::nudge_idle`: a few
/// words in every idle connection's state. Not an `async fn`, for the same reason as
/// [`serve`].
fn idle_wait<'a>(client: &'a mut ClientIo, ctx: &'a Context) -> impl Future<Output = bool> + 'a {
    let mut idle = deadline::Deadline::idle(Instant::now() + ctx.cfg.keepalive_timeout);
    std::future::poll_fn(move |cx| {
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
    // `None` until a parse found the head partial: a head that arrives whole (the common
    // case) is parsed at once; one that arrives in pieces is parsed again only when the new
    // bytes may complete it.
    let mut scanned: Option<usize> = None;
    loop {
        if !buf.is_empty() && scanned.is_none_or(|s| h1::may_be_complete(buf, s)) {
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
        if !buf.is_empty() {
            scanned = Some(buf.len());
        }
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
