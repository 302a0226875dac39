//! One client connection's loop ([`serve`]): wait idle for the next request, lend the
//! connection an exchange executor to read its head and run its exchange, and go on until
//! either side closes, the client switches to HTTP/2, or an upgrade turns the connection into
//! a tunnel.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use super::context::Context;
use super::exchange::{Next, Tunnel};
use super::executor::{ExchangePool, Job, Turn};
use crate::proxy::buffers::Buf;
use crate::proxy::client_io::ClientIo;
use crate::proxy::deadline;

/// How a connection ended.
pub enum Outcome {
    /// Closed by either side, or shut down, with nothing left of the connection.
    Closed,
    /// Done, by either side or a shutdown: the connection only needs closing (a TLS session
    /// says `close_notify` first).
    Finished(ClientIo),
    /// The client (at this address) spoke HTTP/2 with prior knowledge: these bytes were
    /// read; hyper takes over.
    Http2(ClientIo, Vec<u8>, SocketAddr),
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
    exchanges: Arc<ExchangePool<E>>,
) -> impl Future<Output = Outcome>
where
    E: Future<Output = ()>,
{
    let (mut client, mut ctx) = (client, ctx);
    async move {
        let now = Instant::now();
        let mut next = Between::Idle(now);
        // The keep-alive deadline, one slot for the connection's life: moved at each wait
        // rather than armed and given back around every request.
        let mut idle = deadline::Deadline::idle(now + ctx.cfg.keepalive_timeout);
        loop {
            let carry = match next {
                Between::Carry(bytes) => Some(bytes),
                Between::Idle(since) => {
                    idle.reset(since + ctx.cfg.keepalive_timeout);
                    if !idle_wait(&mut client, &ctx, &mut idle).await {
                        return Outcome::Finished(client);
                    }
                    None
                }
            };
            // The head is read on the executor too: its buffers and state are not part of
            // the connection's own.
            let job = Job { client, peer, ctx };
            let Some((job, turn)) = exchanges.run((job, carry)).await else {
                return Outcome::Closed;
            };
            client = job.client;
            ctx = job.ctx;
            next = match turn {
                Turn::Exchanged(Next::Keep(Some(rest), _)) => Between::Carry(rest),
                Turn::Exchanged(Next::Keep(None, end)) => Between::Idle(end),
                Turn::Exchanged(Next::Close) | Turn::Closed => return Outcome::Finished(client),
                Turn::Exchanged(Next::Tunnel(t)) => return Outcome::Upgraded(client, t),
                Turn::Http2(read) => return Outcome::Http2(client, read, peer),
            };
            if ctx.stopping() {
                return Outcome::Finished(client);
            }
        }
    }
}

/// What comes between two requests on a connection.
enum Between {
    /// Bytes of the next request read along with the last one (pipelining).
    Carry(Buf),
    /// A wait for the next request, idle since this instant (the last response's end).
    Idle(Instant),
}

/// Waits, holding no buffer, until the idle client sends bytes (`true`), or closes, shuts
/// down or reaches the `idle` deadline (`false`).
///
/// A hand-rolled wait, for size: the readiness waker lives in the socket's own slot, the
/// deadline is a table slot, and a draining listener wakes it through
/// `deadline::nudge_idle`: a few words in every idle connection's state. Not an `async fn`,
/// for the same reason as [`serve`].
fn idle_wait<'a>(
    client: &'a mut ClientIo,
    ctx: &'a Context,
    idle: &'a mut deadline::Deadline,
) -> impl Future<Output = bool> + 'a {
    std::future::poll_fn(move |cx| {
        if ctx.stopping() {
            return Poll::Ready(false);
        }
        match client.poll_read_ready(cx) {
            Poll::Ready(r) => return Poll::Ready(r.is_ok()),
            Poll::Pending => {}
        }
        if idle.poll_expired(cx).is_ready() {
            return Poll::Ready(false);
        }
        // A drain between the first look and arming the deadline.
        if ctx.stopping() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
}
