//! The HTTP/2 server side of a client connection: the `h2` crate's connection and all its
//! streams driven in the connection's own task.
//!
//! Each stream is a future in the connection's [`FuturesUnordered`], not a task of its own:
//! no spawn, no wake-up crossing tasks, and the frames that the streams answering in one
//! wake-up queue leave in one write when the connection is polled after them. A stream's
//! future runs the service ([`ProxyService::call`]) while watching for the client's reset
//! (a reset drops it, as a cancelled request); the driver sends the answer's head and pipes
//! its body under the stream's send window ([`BodyPipe`]).
//!
//! Work of one kind is done for all the streams at hand before work of the other: the
//! streams opened are all taken before any runs, and the answers ready are all computed
//! before their heads go to `h2`. Done per stream, the `h2` connection's code and the request
//! path's alternate, and each evicts the other from the instruction cache (callgrind's cache
//! simulation, `h2load -c 32 -m 10`: two fifths of the instruction-cache misses per request).
//!
//! The connection keeps the limits of a listener's HTTP/1.1 connections: closed with `GOAWAY`
//! after `keepalive_timeout` without an open stream, on the listener's shutdown, and when the
//! client spends its [`ResetBudget`] (then closed for good after [`CUT_OFF_GRACE`]).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ListenerConfig;
use crate::proxy::client_body::ClientBody;
use crate::proxy::service::{ProxyService, ResetBudget, ResponseBody};
use crate::state::node::now_ms;

/// The receive windows a connection and each stream open with (1 MiB, as hyper's server
/// opens them): a 64 KiB window would stall an upload every 64 KiB for a round trip.
const WINDOW: u32 = 1024 * 1024;

/// The most response bytes queued per stream beyond its send window.
const SEND_BUFFER: usize = 400 * 1024;

/// The most streams taken from the connection in a row before the ones taken run.
const ACCEPT_BATCH: usize = 64;

/// How long a connection cut off for resetting too many streams gets to finish after its
/// `GOAWAY`, before it is closed whatever it does.
const CUT_OFF_GRACE: Duration = Duration::from_secs(1);

/// What a listener's HTTP/2 connections share: their settings and when to stop.
pub struct H2Limits {
    builder: h2::server::Builder,
    max_reset_streams: u32,
    keepalive: Duration,
}

impl H2Limits {
    /// The HTTP/2 settings of `cfg` (`listeners[].h2`, `keepalive_timeout`). The reset limits
    /// of h2 itself (streams reset before they were accepted, resets its protocol checks
    /// force) take the same value as the [`ResetBudget`] for streams reset before their
    /// answer.
    pub fn of(cfg: &ListenerConfig) -> H2Limits {
        let h2 = cfg.h2;
        let mut builder = h2::server::Builder::new();
        builder
            .initial_window_size(WINDOW)
            .initial_connection_window_size(WINDOW)
            .max_send_buffer_size(SEND_BUFFER)
            .max_header_list_size(h2.max_header_list_size)
            .max_concurrent_streams(h2.max_concurrent_streams)
            .max_pending_accept_reset_streams(h2.max_reset_streams as usize)
            .max_local_error_reset_streams(Some(h2.max_reset_streams as usize));
        H2Limits {
            builder,
            max_reset_streams: h2.max_reset_streams,
            keepalive: cfg.keepalive_timeout,
        }
    }
}

/// Serves one HTTP/2 connection (its preface already checked and put back) until it ends.
pub async fn serve<I>(io: I, service: ProxyService, limits: &H2Limits, shutdown: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let budget = ResetBudget::new(limits.max_reset_streams);
    let service = service.with_reset_budget(budget.clone());
    let conn = match limits.builder.handshake::<_, Bytes>(io).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
    };
    let mut driver = Driver::new(conn, |req, respond| stream(&service, req, respond));
    let cut_off = budget.exhausted();
    let mut closing = false;
    let mut close_by: Option<Instant> = None;
    let keepalive = limits.keepalive;
    let mut idle_check = Instant::now() + keepalive;
    let ended = loop {
        // Polled only once `close_by` is set.
        let until = close_by.unwrap_or(idle_check);
        tokio::select! {
            biased;
            r = poll_fn(|cx| driver.poll(cx)) => break r,
            // No open stream for the keep-alive timeout: `GOAWAY`, as an idle HTTP/1.1
            // connection is closed.
            _ = tokio::time::sleep_until(idle_check), if !closing => {
                match driver.idle_for(now_ms()) {
                    Some(idle) if idle >= keepalive => {
                        tracing::debug!(?idle, "idle HTTP/2 connection closed");
                        closing = true;
                        driver.graceful_shutdown();
                    }
                    Some(idle) => idle_check = Instant::now() + (keepalive - idle),
                    None => idle_check = Instant::now() + keepalive,
                }
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                driver.graceful_shutdown();
            }
            _ = cut_off.cancelled(), if close_by.is_none() => {
                if !closing {
                    closing = true;
                    driver.graceful_shutdown();
                }
                close_by = Some(Instant::now() + CUT_OFF_GRACE);
            }
            _ = tokio::time::sleep_until(until), if close_by.is_some() => {
                tracing::debug!("connection cut off");
                break Ok(());
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with error");
    }
}

/// A stream's answer and the stream to send it on.
type Answer = (Response<ResponseBody>, h2::server::SendResponse<Bytes>);

/// The connection and its streams, polled together. A stream is first a future of the
/// service's answer, then, once its head is sent, a [`BodyPipe`] while its body goes out.
struct Driver<I, M, F> {
    conn: h2::server::Connection<I, Bytes>,
    make: M,
    streams: FuturesUnordered<std::pin::Pin<Box<F>>>,
    /// The answers that came in one pass over the streams, sent together after it.
    answers: Vec<Answer>,
    bodies: FuturesUnordered<BodyPipe>,
    /// The connection's end, once `h2` gave it; the streams still open then are finished
    /// (each sees the connection's end as a reset) before the driver ends.
    ended: Option<Result<(), h2::Error>>,
    /// `now_ms()` when the last stream ended (or the connection began).
    idle_since_ms: u64,
}

impl<I, M, F> Driver<I, M, F>
where
    I: AsyncRead + AsyncWrite + Unpin,
    M: FnMut(Request<h2::RecvStream>, h2::server::SendResponse<Bytes>) -> F,
    F: Future<Output = Option<Answer>>,
{
    fn new(conn: h2::server::Connection<I, Bytes>, make: M) -> Self {
        Driver {
            conn,
            make,
            streams: FuturesUnordered::new(),
            answers: Vec::new(),
            bodies: FuturesUnordered::new(),
            ended: None,
            idle_since_ms: now_ms(),
        }
    }

    /// Whether no stream is open: none waits for its answer nor sends its body.
    fn no_stream(&self) -> bool {
        self.streams.is_empty() && self.bodies.is_empty()
    }

    /// How long the connection has had no open stream, at `now_ms`; `None` while one is open.
    fn idle_for(&self, now_ms: u64) -> Option<Duration> {
        if !self.no_stream() {
            return None;
        }
        Some(Duration::from_millis(
            now_ms.saturating_sub(self.idle_since_ms),
        ))
    }

    /// `GOAWAY`: no new stream, the open ones finish.
    fn graceful_shutdown(&mut self) {
        self.conn.graceful_shutdown();
    }

    /// Runs the streams, then the connection (which writes what they queued and reads the
    /// next frames), until neither has more to do. Ready when the connection has ended and
    /// its last stream with it.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), h2::Error>> {
        let this = self;
        loop {
            if this.run_streams(cx) && this.no_stream() {
                this.idle_since_ms = now_ms();
            }
            if this.ended.is_some() {
                if !this.no_stream() {
                    return Poll::Pending;
                }
                return Poll::Ready(this.ended.take().unwrap_or(Ok(())));
            }
            if this.accept(cx) {
                return Poll::Pending;
            }
        }
    }

    /// Polls the streams that were woken, then sends the answers they gave together, and
    /// then the bodies. The service's code runs for every answer, then `h2`'s for every
    /// head, rather than the two alternating per stream. True when a stream ended.
    fn run_streams(&mut self, cx: &mut Context<'_>) -> bool {
        let mut ended = false;
        while let Poll::Ready(Some(answer)) = self.streams.poll_next_unpin(cx) {
            match answer {
                Some(answer) => self.answers.push(answer),
                None => ended = true,
            }
        }
        for (resp, respond) in self.answers.drain(..) {
            let Some((body, tx)) = send_head(respond, resp) else {
                ended = true;
                continue;
            };
            // Most bodies are in hand with their head and go at once; only one that is not
            // is kept (and allocated for) among the bodies under way.
            let mut pipe = BodyPipe::new(body, tx);
            match Pin::new(&mut pipe).poll(cx) {
                Poll::Ready(()) => ended = true,
                Poll::Pending => self.bodies.push(pipe),
            }
        }
        while let Poll::Ready(Some(())) = self.bodies.poll_next_unpin(cx) {
            ended = true;
        }
        ended
    }

    /// Takes the streams the client opened, up to [`ACCEPT_BATCH`] of them, before any of
    /// them runs: the `h2` connection's code runs for the whole batch, then the streams' for
    /// theirs, instead of the two alternating per stream and evicting each other from the
    /// instruction cache. True when the connection has nothing more for now.
    fn accept(&mut self, cx: &mut Context<'_>) -> bool {
        for taken in 0..ACCEPT_BATCH {
            match self.conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    // The stream's future is made straight into its box: made first and
                    // then boxed, its whole size is copied.
                    let slot = Box::<F>::new_uninit();
                    let stream = Box::write(slot, (self.make)(req, respond));
                    self.streams.push(Box::into_pin(stream))
                }
                Poll::Ready(Some(Err(e))) => {
                    self.ended = Some(Err(e));
                    return false;
                }
                Poll::Ready(None) => {
                    self.ended = Some(Ok(()));
                    return false;
                }
                // The connection registered its wake-up. Streams taken in this batch have
                // not run yet: they run first, and the connection is polled again after them.
                Poll::Pending => return taken == 0,
            }
        }
        false
    }
}

/// One stream until its answer: the service's answer and the stream to send it on, or
/// `None` when the client reset the stream first (the service's future is dropped then, as a
/// cancelled request). The request is split here, outside the future, so that the future
/// holds its head once (a request given to an `async fn` stays in its future beside what is
/// taken out of it).
fn stream<'a>(
    service: &'a ProxyService,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> impl Future<Output = Option<Answer>> + 'a {
    let (mut parts, recv) = req.into_parts();
    let body = ClientBody::stream(recv, &parts.headers);
    async move {
        let mut answer = pin!(service.call(&mut parts, body));
        let resp = poll_fn(|cx| {
            if let Poll::Ready(resp) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            match respond.poll_reset(cx) {
                Poll::Ready(reason) => {
                    tracing::debug!(?reason, "stream reset before its answer");
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        resp.map(|resp| (resp, respond))
    }
}

/// A response's head sent on its stream; its body and the stream to send it on, when it has
/// one (the body goes under the stream's send window, in [`BodyPipe`]). The head carries no
/// connection-specific field: the request path leaves a node's out when it reads the head,
/// and makes none of its own.
fn send_head(
    mut respond: h2::server::SendResponse<Bytes>,
    resp: Response<ResponseBody>,
) -> Option<(ResponseBody, h2::SendStream<Bytes>)> {
    let (mut head, body) = resp.into_parts();
    let end = body.is_end_stream();
    if !end && !head.headers.contains_key(header::CONTENT_LENGTH) {
        if let Some(len) = body.size_hint().exact() {
            head.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
    }
    match respond.send_response(Response::from_parts(head, ()), end) {
        Ok(tx) => (!end).then_some((body, tx)),
        Err(e) => {
            tracing::debug!(error = %e, "response head not sent");
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            None
        }
    }
}

/// A response's body going onto its stream. A chunk is taken from the body before any
/// window is claimed (claiming first would hold connection window for a body that has
/// nothing yet), then waits for the stream's window; a client's reset ends any wait at once.
struct BodyPipe {
    body: ResponseBody,
    tx: h2::SendStream<Bytes>,
    /// A chunk taken from the body, not the last, waiting for send window.
    held: Option<Bytes>,
}

type PipeError = Box<dyn std::error::Error + Send + Sync>;

impl BodyPipe {
    fn new(body: ResponseBody, tx: h2::SendStream<Bytes>) -> BodyPipe {
        BodyPipe {
            body,
            tx,
            held: None,
        }
    }

    /// Sends what the body has and the window lets out; ready when the body is sent whole.
    fn pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PipeError>> {
        let BodyPipe { body, tx, held } = self;
        loop {
            if let Some(h) = held.take() {
                if tx.capacity() == 0 {
                    match tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(None) => return Poll::Ready(Err("send window closed".into())),
                        Poll::Pending => {
                            *held = Some(h);
                            return pending_unless_reset(tx, cx);
                        }
                    }
                    if tx.capacity() == 0 {
                        *held = Some(h);
                        continue;
                    }
                }
                tx.send_data(h, false)?;
                continue;
            }
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    tx.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(None) => {
                    tx.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return pending_unless_reset(tx, cx),
            };
            match frame.into_data() {
                // The last chunk goes at once: `h2` holds it until the window lets it out,
                // which bounds what waits to this one chunk, as a wait for window would.
                Ok(data) if body.is_end_stream() => {
                    tx.send_data(data, true)?;
                    return Poll::Ready(Ok(()));
                }
                Ok(data) if data.is_empty() => {}
                Ok(data) => {
                    // One byte claimed: `h2` raises the claim to the buffered length in
                    // `send_data`, and a small claim does not hold window other streams need.
                    tx.reserve_capacity(1);
                    *held = Some(data);
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        tx.reserve_capacity(0);
                        tx.send_trailers(trailers)?;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl Future for BodyPipe {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let r = std::task::ready!(self.get_mut().pump(cx));
        if let Err(e) = r {
            tracing::debug!(error = %e, "response body not sent in full");
        }
        Poll::Ready(())
    }
}

/// Pending, with the stream's reset watched so that a client's `RST_STREAM` wakes the wait;
/// the reset's error if it came.
fn pending_unless_reset(
    tx: &mut h2::SendStream<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), PipeError>> {
    match tx.poll_reset(cx) {
        Poll::Ready(Ok(reason)) => Poll::Ready(Err(format!("stream reset: {reason:?}").into())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        Poll::Pending => Poll::Pending,
    }
}
