//! The write-stall guard of HTTP/2 client connections (TLS, h2c): a client that
//! stops reading, so that the socket's send buffer stays full, is cut off after
//! `pools[].timeouts.body_idle` instead of holding its node connection and in-flight slot.
//!
//! The native HTTP/1.1 path bounds each write itself; `h2` writes through its connection's
//! stream, so the bound sits there: while `poll_write` (or `poll_flush`) stays pending, a
//! coarse [`Deadline`] runs (a slot in the thread's deadline table, no timer of tokio's), and when it expires the write fails with `TimedOut`, which ends the `h2` connection and
//! drops the response body and its node connection. Any write that goes through resets it, so
//! a slow but steady reader is not cut. An idle connection has no pending write and no timer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::deadline::Deadline;

/// `inner` with writes that may stay pending for at most `limit`.
pub struct WriteStall<S> {
    inner: S,
    limit: Duration,
    /// Armed by the first pending write, cleared by the next one that goes through.
    timer: Option<Deadline>,
}

impl<S> WriteStall<S> {
    pub fn new(inner: S, limit: Duration) -> WriteStall<S> {
        WriteStall {
            inner,
            limit,
            timer: None,
        }
    }

    /// After a pending write: arms the timer (once) and fails when it expired.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Deadline::new(Instant::now() + limit));
        match timer.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?} (timeouts.body_idle)"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            done => {
                this.timer = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            done => {
                this.timer = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            done => {
                this.timer = None;
                done
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_is_cut_and_a_steady_one_is_not() {
        // A duplex pipe with a 1 KiB buffer: writes stay pending while the other end does not read.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteStall::new(a, Duration::from_millis(100));
        let chunk = vec![7u8; 512];
        // Steady: read 512 B every 50 ms, for 400 ms; every write goes through in time.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                b.read_exact(&mut buf).await.unwrap();
            }
            b // then stop reading, keeping the pipe open
        });
        for _ in 0..10 {
            w.write_all(&chunk).await.unwrap();
        }
        let _b = reader.await.unwrap();
        // Nobody reads any more: the buffer fills, and the write fails after the limit.
        let mut failed = None;
        for _ in 0..10 {
            if let Err(e) = w.write_all(&chunk).await {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("a write fails once the reader stopped");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("body_idle"), "{e}");
    }
}
