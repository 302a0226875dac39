//! Byte tunnels for upgraded connections (WebSocket and other `101 Switching Protocols`), on
//! both request paths: what bounds them.
//!
//! - `listeners[].tunnel_idle_timeout`: a tunnel with no byte in either direction for that
//!   long is closed (checked on the coarse [`deadline`] table, re-armed from the last byte
//!   seen, so a busy tunnel costs a clock read per read and no timer per read);
//! - TCP keepalive on both sockets ([`KEEPALIVE_TIME`], [`KEEPALIVE_INTERVAL`]), so that a
//!   peer that vanished without a FIN or RST is noticed by the kernel;
//! - graceful shutdown: the listener cancels [`TunnelPolicy::stop`] at the grace deadline, and
//!   every tunnel still open closes then. Tunnels run in the listener's task tracker, so the
//!   drain waits for them until that deadline (and they keep their connection permit, counted
//!   against `listeners[].max_connections`, until they close).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::deadline::Deadline;

/// Idle time of a tunnel's socket before the kernel sends the first keepalive probe.
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
/// Time between keepalive probes that get no answer (the kernel's probe count, 9 on Linux,
/// then drops the connection: a dead peer is noticed after about 150 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// What the tunnels of one listener share.
#[derive(Clone, Debug)]
pub struct TunnelPolicy {
    /// `listeners[].tunnel_idle_timeout`.
    pub idle: Duration,
    /// Cancelled at the end of the shutdown grace period: every open tunnel closes.
    pub stop: CancellationToken,
    /// The listener's connection tasks: a tunnel spawned apart from its connection (hyper's
    /// upgrades) joins them, so the drain waits for it.
    pub tasks: TaskTracker,
}

impl Default for TunnelPolicy {
    /// For a service outside a listener: `tunnel_idle_timeout`'s default (1 h), never
    /// stopped, a task tracker of its own.
    fn default() -> Self {
        TunnelPolicy {
            idle: Duration::from_secs(60 * 60),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Either side closed (or failed).
    Closed,
    /// No byte either way for `tunnel_idle_timeout`.
    Idle,
    /// The grace period of a shutdown ended.
    Shutdown,
}

/// Turns on TCP keepalive ([`KEEPALIVE_TIME`], [`KEEPALIVE_INTERVAL`]) on a tunnel's socket.
pub fn keepalive(stream: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot set TCP keepalive on a tunnel");
    }
}

/// Copies bytes both ways between `a` and `b` until either closes, nothing moved for
/// `policy.idle`, or `policy.stop` is cancelled.
pub async fn relay<A, B>(a: &mut A, b: &mut B, policy: &TunnelPolicy) -> End
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let start = Instant::now();
    // Milliseconds from `start` to the last read that moved bytes, either way.
    let last = AtomicU64::new(0);
    let mut a = Active {
        io: a,
        start,
        last: &last,
    };
    let mut b = Active {
        io: b,
        start,
        last: &last,
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    let mut copy = std::pin::pin!(copy);
    let stopped = policy.stop.cancelled();
    let mut stopped = std::pin::pin!(stopped);
    let idle = policy.idle;
    let mut deadline = Deadline::new(start + idle);
    std::future::poll_fn(|cx| {
        if copy.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Closed);
        }
        if stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Shutdown);
        }
        loop {
            if deadline.poll_expired(cx).is_pending() {
                return Poll::Pending;
            }
            let seen = start + Duration::from_millis(last.load(Ordering::Relaxed));
            if Instant::now() >= seen + idle {
                return Poll::Ready(End::Idle);
            }
            // Bytes moved since the deadline was armed: wait from the last of them.
            deadline = Deadline::new(seen + idle);
        }
    })
    .await
}

/// One side of a tunnel: notes the time of every read that moved bytes.
struct Active<'a, T: ?Sized> {
    io: &'a mut T,
    start: Instant,
    last: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin + ?Sized> AsyncRead for Active<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let ms = this.start.elapsed().as_millis() as u64;
            this.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin + ?Sized> AsyncWrite for Active<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn policy(idle_ms: u64) -> TunnelPolicy {
        TunnelPolicy {
            idle: Duration::from_millis(idle_ms),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    #[tokio::test]
    async fn an_idle_tunnel_ends_and_a_busy_one_does_not() {
        let (mut a, mut a_peer) = tokio::io::duplex(64);
        let (mut b, mut b_peer) = tokio::io::duplex(64);
        let p = policy(200);
        let t = tokio::spawn(async move {
            let start = Instant::now();
            let end = relay(&mut a, &mut b, &p).await;
            (end, start.elapsed())
        });
        // Busy for 600 ms: a byte every 50 ms, echoed through.
        for _ in 0..12 {
            a_peer.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            b_peer.read_exact(&mut one).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every byte came through: the tunnel stayed open while busy (550 ms, past the
        // 200 ms limit), and closed once quiet.
        let (end, took) = t.await.unwrap();
        assert_eq!(end, End::Idle);
        assert!(took >= Duration::from_millis(700), "{took:?}");
    }

    #[tokio::test]
    async fn stop_ends_a_tunnel() {
        let (mut a, _a_peer) = tokio::io::duplex(64);
        let (mut b, _b_peer) = tokio::io::duplex(64);
        let p = policy(60_000);
        let stop = p.stop.clone();
        let t = tokio::spawn(async move { relay(&mut a, &mut b, &p).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        assert_eq!(t.await.unwrap(), End::Shutdown);
    }
}
