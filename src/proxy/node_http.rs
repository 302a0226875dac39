//! The HTTP/2 path's exchange with an HTTP/1.1 node, on the `crate::h1` codec and a socket of
//! the shared keep-alive pool ([`crate::proxy::upstream::UpstreamPools`]), driven in the
//! client stream's own task: no connection task, no channel between them.
//!
//! [`send`] writes the head ([`crate::proxy::node_head::write_parts_head`]) and streams the
//! client's body ([`ForwardBody`]: `max_body_bytes`, `body_idle`) as `Content-Length` or
//! chunked, while it reads the response head: a node may answer before the body's end (an
//! early `413`), and waiting for one before the other deadlocks. Informational responses are
//! skipped. `timeouts.response` counts from the upload's end. The head becomes an
//! `http::Response` without the hop-by-hop fields; its body ([`NodeBody`]) owns the socket,
//! goes on with an upload still under way, decodes with [`BodyReader`] and hands out the read
//! buffer's bytes as frames without copying them. The socket goes back to the pool when the
//! response ended cleanly, the upload too, and both sides allow keep-alive.
//!
//! How a failure counts ([`Sent`]) is what `core::retry` expects, and what the native path
//! decides for the same events: a reused socket that fails before the whole request head was
//! written, no response byte and no body byte taken, did not get the request (`NotSent`, the
//! body given back: any request goes again). Once the head went out the node may have acted
//! on it: a close before the answer is the node's fault (`Upstream`), which only a replayable
//! request survives. A head that does not parse is the node's fault too; the client's body
//! failing is not.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::core::retry::Failure;
use crate::h1::{self, BodyFraming, BodyReader, Parsed, ResponseHead, Step};
use crate::proxy::buffers::{Buf, PooledResponseHead};
use crate::proxy::deadline;
use crate::proxy::upstream::{
    BodyIdle, BodyStalled, BodyTooLarge, BoxError, ForwardBody, UpstreamPools,
};

/// Room for the response head and what comes with it: most responses of a page's assets fit
/// whole. A small buffer, as each response takes a new one (its bytes go to the client
/// without a copy) and jemalloc serves small sizes from its per-thread caches.
const HEAD_READ: usize = 2 * 1024;

/// Room for a body's next bytes: what a `Content-Length` body still owes, within these
/// bounds; a chunked or close-delimited body reads the most.
const BODY_READ: std::ops::RangeInclusive<u64> = 1024..=64 * 1024;

/// Pieces queued for one vectored write.
const MAX_PIECES: usize = 8;

/// Where the node's socket goes back when the exchange ends cleanly.
pub struct Home {
    pub pools: Arc<UpstreamPools>,
    pub slot: u32,
    pub epoch: u64,
}

/// One exchange to send.
pub struct Exchange {
    /// The request head ([`crate::proxy::node_head::write_parts_head`]).
    pub head: Buf,
    /// The client's body, when the head declares one.
    pub body: Option<ForwardBody>,
    /// How `head` frames the body: `Length`, `Chunked`, or `Empty` (no `body`).
    pub framing: BodyFraming,
    /// A `HEAD` request: its response has no body whatever it declares.
    pub is_head: bool,
    /// The socket came from the pool.
    pub reused: bool,
    pub response_timeout: Duration,
    pub body_idle: Duration,
}

/// How an exchange went, for the attempt loop.
pub enum Sent {
    Response(Response<NodeBody>),
    /// The node did not get the request; the body (untouched) goes to the next attempt.
    NotSent(Option<ForwardBody>, String),
    Failed(Failure, String),
}

/// Sends `ex` on `stream` and reads the response head. The connection is set up before the
/// future is made, which holds `ex` once: an `async fn` keeps each argument it takes apart
/// beside the parts, and the future is copied whole into the request's when awaited.
pub fn send(stream: TcpStream, mut ex: Exchange, home: Home) -> impl Future<Output = Sent> {
    let head = std::mem::replace(&mut ex.head, Buf(Vec::new()));
    let body = ex.body.take();
    let mut conn = Box::new(NodeConn {
        stream,
        inb: BytesMut::new(),
        upload: Some(Upload::new(head, body, ex.framing, ex.body_idle)),
        upload_end: None,
        restorable: None,
        node_write_failed: false,
        heard: false,
        head_out: false,
    });
    let mut pooled = PooledResponseHead::take();
    async move {
        let head = pooled.head();
        let got = head_of(&mut conn, head, &ex).await;
        let head_len = match got {
            Ok(n) => n,
            Err(fault) => return fault.into_sent(&mut conn, ex.reused),
        };
        // The head's bytes are shared by the field values: no copy of them.
        let src = conn.inb.split_to(head_len).freeze();
        let resp = match response(&src, head) {
            Ok(r) => r,
            Err(why) => return Sent::Failed(Failure::Upstream, why),
        };
        conn.restorable = None;
        let reader = BodyReader::new(head.body());
        let keep_alive = head.keep_alive() && !conn.node_write_failed;
        let body = NodeBody::new(conn, reader, keep_alive, home, ex.body_idle);
        Sent::Response(resp.map(|()| body))
    }
}

/// Why no response head came.
enum HeadFault {
    /// The client's body failed (its own failure kind).
    Client(Failure, String),
    /// Nothing came in `timeouts.response` after the upload.
    Timeout(Duration),
    /// The node closed or reset before a whole head.
    Closed(String),
    /// The node's bytes are not a response (or a `101` no one asked for).
    Invalid(String),
}

impl HeadFault {
    fn into_sent(self, conn: &mut NodeConn, reused: bool) -> Sent {
        match self {
            HeadFault::Client(f, why) => Sent::Failed(f, why),
            HeadFault::Timeout(t) => {
                Sent::Failed(Failure::Timeout, format!("no answer within {t:?}"))
            }
            // The node closed the idle connection as we took it, before the request head
            // went out: the request goes again, with its body when none of it was taken.
            HeadFault::Closed(why) if reused && !conn.heard && !conn.head_written() => {
                let restorable = match conn.upload.as_mut() {
                    Some(up) => up.untouched(),
                    None => conn.restorable.take(),
                };
                match restorable {
                    Some(body) => Sent::NotSent(body, why),
                    None => Sent::Failed(Failure::Upstream, why),
                }
            }
            HeadFault::Closed(why) | HeadFault::Invalid(why) => {
                Sent::Failed(Failure::Upstream, why)
            }
        }
    }
}

/// The node's socket, what was read from it, and the upload while it goes on.
struct NodeConn {
    stream: TcpStream,
    inb: BytesMut,
    upload: Option<Upload>,
    /// When the upload's last byte went to the node (or the node stopped taking it).
    upload_end: Option<Instant>,
    /// After the upload: the client's body if none of it was taken ([`Upload::untouched`]).
    restorable: Option<Option<ForwardBody>>,
    /// The node stopped taking the request (it answers without reading it all): the socket
    /// is not reused.
    node_write_failed: bool,
    /// A byte of the response came.
    heard: bool,
    /// The whole request head was written (kept when the upload ends).
    head_out: bool,
}

impl NodeConn {
    /// Whether the whole request head went to the node: from then on it may have acted on it.
    fn head_written(&self) -> bool {
        match &self.upload {
            Some(up) => up.head_sent == up.head.0.len(),
            None => self.head_out,
        }
    }
}

/// Reads the response head (informational ones skipped) while the upload goes on, within
/// `timeouts.response` of the upload's end. Returns the head's length in `conn.inb`.
async fn head_of(
    conn: &mut NodeConn,
    head: &mut ResponseHead,
    ex: &Exchange,
) -> Result<usize, HeadFault> {
    // While uploading: the upload and the node's answer at once. Bounded by the upload's own
    // idle limits (the client's frames, the node's reads).
    let early = poll_fn(|cx| {
        if let Poll::Ready(r) = conn.poll_upload(cx) {
            return Poll::Ready(r.map(|()| None));
        }
        conn.poll_head(cx, head, ex.is_head).map(|r| r.map(Some))
    })
    .await?;
    if let Some(n) = early {
        return Ok(n);
    }
    let at = conn.upload_end.unwrap_or_else(Instant::now) + ex.response_timeout;
    let late = deadline::timeout_at(at, poll_fn(|cx| conn.poll_head(cx, head, ex.is_head)));
    late.await
        .unwrap_or(Err(HeadFault::Timeout(ex.response_timeout)))
}

impl NodeConn {
    /// Drives the upload: `Ready(Ok)` once it ended (or the node stopped taking it; its
    /// answer is still read), `Ready(Err)` when the client's body failed.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HeadFault>> {
        let Some(up) = self.upload.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match up.poll(cx, &mut self.stream) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.restorable = up.untouched();
                self.head_out = up.head_sent == up.head.0.len();
                self.upload = None;
                self.upload_end = Some(Instant::now());
                match r {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(UploadFault::Node(why)) => {
                        tracing::debug!(reason = %why, "the node stopped taking the request");
                        self.node_write_failed = true;
                        Poll::Ready(Ok(()))
                    }
                    Err(UploadFault::Client(f, why)) => Poll::Ready(Err(HeadFault::Client(f, why))),
                }
            }
        }
    }

    /// Reads until a final response head parses.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        head: &mut ResponseHead,
        is_head: bool,
    ) -> Poll<Result<usize, HeadFault>> {
        loop {
            if !self.inb.is_empty() {
                match h1::parse_response(&self.inb, is_head, head) {
                    Ok(Parsed::Partial) => {}
                    Ok(Parsed::Complete(n)) if head.is_informational() => {
                        self.inb.advance(n);
                        continue;
                    }
                    Ok(Parsed::Complete(_)) if head.is_upgrade() => {
                        let why = "the node switched protocols unasked".to_string();
                        return Poll::Ready(Err(HeadFault::Invalid(why)));
                    }
                    Ok(Parsed::Complete(n)) => return Poll::Ready(Ok(n)),
                    Err(e) => {
                        let why = format!("invalid response: {e}");
                        return Poll::Ready(Err(HeadFault::Invalid(why)));
                    }
                }
            }
            match ready!(poll_read(&mut self.stream, &mut self.inb, HEAD_READ, cx)) {
                Ok(0) => {
                    let why = "the node closed before answering".to_string();
                    return Poll::Ready(Err(HeadFault::Closed(why)));
                }
                Ok(_) => self.heard = true,
                Err(e) => {
                    let why = format!("the node's connection failed before answering: {e}");
                    return Poll::Ready(Err(HeadFault::Closed(why)));
                }
            }
        }
    }
}

/// Clears tokio's read readiness of a node socket whose last read took exactly the response's
/// bytes and so left the readiness of their arrival set. The pool's check before the socket's
/// next use (a read that must find nothing) then makes a system call only when something
/// arrived since: data, or the node's close (tokio keeps a peer's close as a state of its own
/// that no clearing removes). Called in the poll of that last read, so no readiness event can
/// have come in between and be lost; without it, every reuse paid a read that found nothing.
fn settle_read_readiness(stream: &TcpStream) {
    let _ = stream.try_io(tokio::io::Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}

/// Reads what the socket has into `inb`, with room for `want` bytes made first when it has
/// less than a quarter of that.
fn poll_read(
    stream: &mut TcpStream,
    inb: &mut BytesMut,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if inb.capacity() - inb.len() < want / 4 {
        inb.reserve(want);
    }
    loop {
        match stream.try_read_buf(inb) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            r => return Poll::Ready(r),
        }
        ready!(stream.poll_read_ready(cx))?;
    }
}

/// The response head as an `http::Response` for the client, without the fields that stay on
/// the node's connection ([`h1::response_field_hop_by_hop`]); `Content-Length` stays, for
/// the client's side to frame the body by.
fn response(src: &Bytes, head: &ResponseHead) -> Result<Response<()>, String> {
    let status = StatusCode::from_u16(head.status())
        .map_err(|_| format!("invalid response status {}", head.status()))?;
    let mut headers = HeaderMap::with_capacity(head.headers().len());
    for h in head.headers() {
        if h1::response_field_hop_by_hop(head, src, h) {
            continue;
        }
        let name = h.name.get(src);
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_maybe_shared(src.slice(h.value.range())),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// The upload's failure.
enum UploadFault {
    /// The client's body failed.
    Client(Failure, String),
    /// The node's socket failed or took nothing for `body_idle`.
    Node(String),
}

/// The request going out: the bytes queued for the socket, and the client's body still to
/// come.
struct Upload {
    head: Buf,
    /// How much of `head` was written.
    head_sent: usize,
    out: VecDeque<Bytes>,
    body: Option<ForwardBody>,
    chunked: bool,
    /// What a `Content-Length` body still owes.
    left: u64,
    /// A frame was taken from the body: it cannot be sent again.
    consumed: bool,
    /// The node's side: no byte taken for `body_idle` while some are queued.
    idle: BodyIdle,
}

impl Upload {
    fn new(head: Buf, body: Option<ForwardBody>, framing: BodyFraming, idle: Duration) -> Upload {
        let (chunked, left) = match framing {
            BodyFraming::Chunked => (true, 0),
            BodyFraming::Length(n) => (false, n),
            BodyFraming::Empty | BodyFraming::CloseDelimited => (false, 0),
        };
        Upload {
            head,
            head_sent: 0,
            out: VecDeque::new(),
            body,
            chunked,
            left,
            consumed: false,
            idle: BodyIdle::new(idle),
        }
    }

    /// The body, when none of it was taken.
    fn untouched(&mut self) -> Option<Option<ForwardBody>> {
        (!self.consumed).then(|| self.body.take())
    }

    /// Queues the client's frames and writes them, until the body ended and all is written.
    fn poll(&mut self, cx: &mut Context<'_>, io: &mut TcpStream) -> Poll<Result<(), UploadFault>> {
        loop {
            while self.out.len() < MAX_PIECES - 2 {
                let Some(body) = self.body.as_mut() else {
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(frame))) => {
                        self.consumed = true;
                        if let Ok(data) = frame.into_data() {
                            self.queue(data)?;
                        }
                        if self.body.as_ref().is_some_and(|b| b.is_end_stream()) {
                            self.end()?;
                        }
                    }
                    Poll::Ready(None) => self.end()?,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(client_fault(&e))),
                }
            }
            if !self.pending() {
                return match self.body {
                    None => Poll::Ready(Ok(())),
                    Some(_) => Poll::Pending,
                };
            }
            let mut slices = [IoSlice::new(&[]); MAX_PIECES];
            let mut n = 0;
            let head = &self.head.0[self.head_sent..];
            if !head.is_empty() {
                slices[0] = IoSlice::new(head);
                n = 1;
            }
            for b in self.out.iter().take(MAX_PIECES - n) {
                slices[n] = IoSlice::new(b);
                n += 1;
            }
            // One piece (a head alone, the usual request) goes out with `send`: `writev` takes
            // the kernel's longer file path for the same bytes.
            let wrote = if n == 1 {
                Pin::new(&mut *io).poll_write(cx, &slices[0])
            } else {
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
            };
            match wrote {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(UploadFault::Node("wrote nothing".into())))
                }
                Poll::Ready(Ok(written)) => {
                    self.advance(written);
                    self.idle.touch();
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(UploadFault::Node(format!("write to the node: {e}"))))
                }
                Poll::Pending => {
                    if self.idle.expired(cx) {
                        let t = self.idle.limit();
                        let why =
                            format!("the node took no request byte for {t:?} (timeouts.body_idle)");
                        return Poll::Ready(Err(UploadFault::Node(why)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Queues a data frame, framed.
    fn queue(&mut self, data: Bytes) -> Result<(), UploadFault> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.pending() {
            // The node's idle limit counts from when it has something to take.
            self.idle.touch();
        }
        if self.chunked {
            let mut header = Vec::with_capacity(12);
            h1::write_chunk_header(data.len() as u64, &mut header);
            self.out.push_back(Bytes::from(header));
            self.out.push_back(data);
            self.out.push_back(Bytes::from_static(h1::CHUNK_END));
            return Ok(());
        }
        let n = data.len() as u64;
        if n > self.left {
            let why = "the request body is longer than its Content-Length".into();
            return Err(UploadFault::Client(Failure::ClientBody, why));
        }
        self.left -= n;
        self.out.push_back(data);
        Ok(())
    }

    /// The client's body ended: the last chunk, or the check that the length was met.
    fn end(&mut self) -> Result<(), UploadFault> {
        self.body = None;
        if self.chunked {
            self.out.push_back(Bytes::from_static(h1::LAST_CHUNK));
        } else if self.left != 0 {
            let why = "the request body is shorter than its Content-Length".into();
            return Err(UploadFault::Client(Failure::ClientBody, why));
        }
        Ok(())
    }

    /// Bytes wait to be written.
    fn pending(&self) -> bool {
        self.head_sent < self.head.0.len() || !self.out.is_empty()
    }

    /// Drops `n` written bytes from the front: the head's, then the queue's.
    fn advance(&mut self, mut n: usize) {
        let head = (self.head.0.len() - self.head_sent).min(n);
        self.head_sent += head;
        n -= head;
        while n > 0 {
            let Some(front) = self.out.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.out.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        while self.out.front().is_some_and(Bytes::is_empty) {
            self.out.pop_front();
        }
    }
}

/// The client's body failed: stalled, over `max_body_bytes`, or broken.
fn client_fault(e: &BoxError) -> UploadFault {
    if e.is::<BodyStalled>() {
        UploadFault::Client(Failure::ClientStalled, e.to_string())
    } else if e.is::<BodyTooLarge>() {
        UploadFault::Client(Failure::BodyTooLarge, e.to_string())
    } else {
        UploadFault::Client(
            Failure::ClientBody,
            format!("the client's body failed: {e}"),
        )
    }
}

/// The node sent no response body byte for `timeouts.body_idle`.
#[derive(Debug, thiserror::Error)]
#[error("the node sent no response body frame for {0:?} (timeouts.body_idle)")]
pub struct ResponseStalled(pub Duration);

/// The node's response body cut off, or an upload still under way that failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyFailed(String);

/// A node's response body: owns the socket until the body's end, when it goes back to the
/// pool if it can carry another exchange.
pub struct NodeBody {
    conn: Option<Box<NodeConn>>,
    reader: BodyReader,
    keep_alive: bool,
    home: Home,
    idle: BodyIdle,
    /// The body's failure, raised at the poll after the one that found it.
    failed: Option<BoxError>,
}

impl NodeBody {
    fn new(
        conn: Box<NodeConn>,
        reader: BodyReader,
        keep_alive: bool,
        home: Home,
        idle: Duration,
    ) -> NodeBody {
        let mut b = NodeBody {
            conn: Some(conn),
            reader,
            keep_alive,
            home,
            idle: BodyIdle::new(idle),
            failed: None,
        };
        // The head was read in this poll: when the whole body came with it, nothing of this
        // response is left in the socket.
        let whole = b
            .reader
            .remaining()
            .is_some_and(|n| n <= b.buffered() as u64);
        if whole {
            if let Some(conn) = &b.conn {
                settle_read_readiness(&conn.stream);
            }
        }
        if b.reader.is_done() {
            b.finish(false);
        }
        b
    }

    /// Bytes of the body already read from the socket.
    fn buffered(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.inb.len())
    }

    /// The body ended: the socket goes back to the pool if the exchange left it clean.
    /// `just_read`: the poll that found the end read from the socket.
    fn finish(&mut self, just_read: bool) {
        let Some(conn) = self.conn.take() else { return };
        let clean = conn.upload.is_none() && !conn.node_write_failed && conn.inb.is_empty();
        if self.keep_alive && clean {
            if just_read {
                settle_read_readiness(&conn.stream);
            }
            let h = &self.home;
            h.pools.http.checkin(h.slot, h.epoch, conn.stream);
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if conn.upload.is_some() {
            if let Poll::Ready(Err(HeadFault::Client(_, why))) = conn.poll_upload(cx) {
                self.conn = None;
                return Poll::Ready(Some(Err(Box::new(BodyFailed(why)))));
            }
        }
        let mut just_read = false;
        loop {
            match self.reader.decode(&conn.inb) {
                Ok(Step::Data { start, end }) => {
                    conn.inb.advance(start);
                    let data = conn.inb.split_to(end - start).freeze();
                    if self.reader.is_done() {
                        self.finish(just_read);
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                // Trailers are not passed on (the native path drops them too).
                Ok(Step::Trailer { end, .. }) => {
                    conn.inb.advance(end);
                    continue;
                }
                Ok(Step::Done { consumed }) => {
                    conn.inb.advance(consumed);
                    self.finish(just_read);
                    return Poll::Ready(None);
                }
                // The decoder took all of it (a chunk header's start is kept in its state).
                Ok(Step::NeedMore) => conn.inb.clear(),
                Err(e) => {
                    self.conn = None;
                    let why = format!("invalid response body: {e}");
                    return Poll::Ready(Some(Err(Box::new(BodyFailed(why)))));
                }
            }
            let want = self.reader.remaining().map_or(*BODY_READ.end(), |n| {
                n.clamp(*BODY_READ.start(), *BODY_READ.end())
            });
            match poll_read(&mut conn.stream, &mut conn.inb, want as usize, cx) {
                Poll::Ready(Ok(0)) => {
                    let end = self.reader.finish_eof();
                    self.keep_alive = false;
                    self.conn = None;
                    return Poll::Ready(match end {
                        Ok(()) => None,
                        Err(e) => Some(Err(Box::new(BodyFailed(format!("the node closed: {e}"))))),
                    });
                }
                Poll::Ready(Ok(_)) => {
                    self.idle.touch();
                    just_read = true;
                }
                Poll::Ready(Err(e)) => {
                    self.conn = None;
                    let why = format!("the node's connection failed mid-body: {e}");
                    return Poll::Ready(Some(Err(Box::new(BodyFailed(why)))));
                }
                Poll::Pending => {
                    if self.idle.expired(cx) {
                        self.conn = None;
                        let limit = self.idle.limit();
                        return Poll::Ready(Some(Err(Box::new(ResponseStalled(limit)))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Body for NodeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match this.poll_data(cx) {
            // Raised at the next poll: the server first writes what it holds of the
            // response, so a response cut off reaches the client as far as it got (as on
            // the native path), whatever the timing of the node's close.
            Poll::Ready(Some(Err(e))) => {
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            polled => polled.map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && (self.conn.is_none() || self.reader.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        match self.reader.remaining() {
            Some(n) if self.conn.is_some() => SizeHint::with_exact(n),
            Some(_) if self.failed.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
