//! The open streams of one hyper-served connection (HTTP/2), for its idle keep-alive limit:
//! a connection with no open stream for `listeners[].keepalive_timeout` is closed, as an idle
//! HTTP/1.1 connection is.
//!
//! A stream is open from the moment hyper hands its request to the service until its
//! response body ends or is dropped. [`Counted`] wraps the service so that every stream holds
//! a [`StreamGuard`], carried by the response body ([`CountedBody`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};

use crate::state::node::now_ms;

/// How many streams of a connection are open, and since when none is.
#[derive(Debug)]
pub struct OpenStreams {
    open: AtomicUsize,
    /// `now_ms()` when the last stream closed (or the connection began).
    idle_since_ms: AtomicU64,
}

impl OpenStreams {
    pub fn new() -> Arc<OpenStreams> {
        Arc::new(OpenStreams {
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
        })
    }

    fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    /// How long the connection has had no open stream, at `now_ms`; `None` while one is open.
    pub fn idle_for(&self, now_ms: u64) -> Option<Duration> {
        if self.open.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(now_ms.saturating_sub(since)))
    }
}

/// One open stream; closes it when dropped.
#[derive(Debug)]
pub struct StreamGuard(Arc<OpenStreams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // The time first: a reader that sees no open stream then reads a current time.
        if self.0.open.load(Ordering::Relaxed) == 1 {
            self.0.idle_since_ms.store(now_ms(), Ordering::Relaxed);
        }
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service whose every stream counts as open until its response body is done.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    streams: Arc<OpenStreams>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, streams: Arc<OpenStreams>) -> Self {
        Counted { inner, streams }
    }
}

impl<S, B, Q> hyper::service::Service<Request<Q>> for Counted<S>
where
    S: hyper::service::Service<Request<Q>, Response = Response<B>>,
    S::Future: Unpin,
{
    type Response = Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn call(&self, req: Request<Q>) -> Self::Future {
        CountedFuture {
            guard: Some(self.streams.open()),
            inner: self.inner.call(req),
        }
    }
}

/// The service's future with its stream's guard, handed to the response body when it is
/// ready. A wrapper rather than another boxed `async` block: no allocation per stream.
pub struct CountedFuture<F> {
    inner: F,
    guard: Option<StreamGuard>,
}

impl<F, B, E> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>> + Unpin,
{
    type Output = Result<Response<CountedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let resp = std::task::ready!(Pin::new(&mut this.inner).poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(resp.map(|body| CountedBody {
            inner: body,
            _guard: guard,
        })))
    }
}

/// A response body that keeps its stream open until it ends or is dropped.
pub struct CountedBody<B> {
    inner: B,
    /// `None` only if the future was polled again after it was ready.
    _guard: Option<StreamGuard>,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_streams_and_idle_time() {
        let s = OpenStreams::new();
        let start = s.idle_since_ms.load(Ordering::Relaxed);
        assert_eq!(s.idle_for(start + 500), Some(Duration::from_millis(500)));
        let a = s.open();
        let b = s.open();
        assert_eq!(s.idle_for(start + 1_000), None);
        drop(a);
        assert_eq!(s.idle_for(start + 1_000), None, "one stream still open");
        drop(b);
        let since = s.idle_since_ms.load(Ordering::Relaxed);
        assert!(since >= start);
        assert_eq!(s.idle_for(since + 250), Some(Duration::from_millis(250)));
        // A clock read before the last close counts as no idle time, not an underflow.
        assert_eq!(s.idle_for(since.saturating_sub(10)), Some(Duration::ZERO));
    }
}
