//! The bytes of one exchange after the request head: the rest of a request body streamed to
//! the node ([`stream_body`], [`reframe`]), and the node's response read, rewritten and
//! relayed to the client ([`relay_response`]), each read and write within its idle limit.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::request::Request;
use super::splice::{self, PlainSocket, SpliceFault, Spliced};
use crate::core::binder::{self, ResponsePlan};
use crate::core::forwarding::BodyBudget;
use crate::core::retry::Failure;
use crate::h1::{
    self, BodyFraming, BodyOut, BodyReader, HeaderKind, Method, Parsed, ResponseEdits,
    ResponseHead, Step, Version,
};
use crate::proxy::attempt::Trace;
use crate::proxy::buffers::{rest_after, Buf, PooledResponseHead, BUF_SIZE};
use crate::proxy::deadline;
use crate::proxy::pipeline::{self, Ids};
use crate::state::snapshot::Node;

/// Decodes body bytes from `input` into `out`, re-framing a chunked body. Returns whether the
/// body is complete and how many bytes of `input` it used.
pub(super) fn reframe(
    reader: &mut BodyReader,
    budget: &mut BodyBudget,
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
/// Returns the bytes read past the body's end (a pipelined request). A long `Content-Length`
/// body from a cleartext client is spliced socket to socket (its length was checked against
/// `max_body_bytes` before anything was sent).
pub(super) async fn stream_body<C, U>(
    client: &mut C,
    upstream: &mut U,
    reader: &mut BodyReader,
    budget: &mut BodyBudget,
    (framing, idle): (BodyFraming, Duration),
    upload_end: &OnceLock<Instant>,
) -> Result<Option<Buf>, (Failure, String)>
where
    C: AsyncRead + Unpin + PlainSocket,
    U: AsyncWrite + Unpin + PlainSocket,
{
    if let BodyReader::Length(left) = *reader {
        if let (true, Some(c), Some(u)) = (
            left > BUF_SIZE as u64,
            client.plain_socket(),
            upstream.plain_socket(),
        ) {
            let moved = splice::move_length(c, u, left, idle).await;
            if let Spliced::Done = moved.map_err(|f| upload_fault(f, idle))? {
                if !budget.spend(left as usize) {
                    return Err((Failure::BodyTooLarge, "over max_body_bytes".into()));
                }
                *reader = BodyReader::Length(0);
                splice::settle_readiness(c);
                let _ = upload_end.set(Instant::now());
                return Ok(None);
            }
        }
    }
    let mut inb = Buf::take();
    let mut out = Buf::take();
    loop {
        inb.0.clear();
        read_body_bytes(client, &mut inb.0, idle).await?;
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

/// An upload's fault, the client being the sender and the node the receiver: the same
/// verdicts as the copying loop's.
fn upload_fault(f: SpliceFault, idle: Duration) -> (Failure, String) {
    match f {
        SpliceFault::SourceStalled => (
            Failure::ClientStalled,
            format!("no request body byte for {idle:?} (timeouts.body_idle)"),
        ),
        SpliceFault::SourceClosed | SpliceFault::SourceFailed => (
            Failure::ClientBody,
            "the client closed during the body".into(),
        ),
        SpliceFault::SinkStalled => (
            Failure::Upstream,
            format!("the node took no request body byte for {idle:?} (timeouts.body_idle)"),
        ),
        SpliceFault::SinkFailed => (
            Failure::Upstream,
            "the node closed during the request body".into(),
        ),
    }
}

/// Reads more of the client's request body into `buf`: a client silent for `idle` stalled
/// (`408`, not the node's fault), one that closes or fails ended its body early.
pub(super) async fn read_body_bytes<C: AsyncRead + Unpin + ?Sized>(
    client: &mut C,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), (Failure, String)> {
    match deadline::timeout_pending(idle, client.read_buf(buf)).await {
        Err(_) => {
            let why = format!("no request body byte for {idle:?} (timeouts.body_idle)");
            Err((Failure::ClientStalled, why))
        }
        Ok(Ok(0)) | Ok(Err(_)) => Err((
            Failure::ClientBody,
            "the client closed during the body".into(),
        )),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Writes all of `buf`, each write within `idle` of the one before
/// ([`deadline::timeout_pending`]): a peer that stops reading is cut off after `idle`, with
/// an error of kind `TimedOut`. A write the socket takes at once reads no clock.
pub(super) async fn write_all_idle<W: AsyncWrite + Unpin + ?Sized>(
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
pub(super) async fn flush_idle<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    idle: Duration,
) -> std::io::Result<()> {
    match deadline::timeout_pending(idle, w.flush()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// How the response went, for the connections.
pub(super) enum Relayed {
    /// Sent. `keep_client`: the client connection stays open; `reusable`: the node's
    /// connection may go back to the pool.
    Sent { keep_client: bool, reusable: bool },
    /// A `101`: this head and these early bytes go to the client, then a byte tunnel.
    Upgrade { head: Buf, early: Vec<u8> },
}

/// Where `timeouts.response` counts from.
#[derive(Clone, Copy)]
pub(super) enum ResponseFrom<'a> {
    /// The request went out whole, its head written at this instant.
    Sent(Instant),
    /// A request body still streaming: set when its last byte went to the node.
    Upload(&'a OnceLock<Instant>),
}

/// Reads the node's response head (1xx forwarded and skipped), rewrites it, streams the body.
/// Until the final head is parsed nothing reaches the client, so a failure can be retried.
/// `out` is the buffer the request's head went out in, reused for the response's.
#[allow(clippy::too_many_arguments)]
pub(super) async fn relay_response<C, U>(
    client: &mut C,
    upstream: &mut U,
    req: &Request<'_>,
    node: &Node,
    ids: &Ids<'_>,
    trace: &mut Trace,
    from: ResponseFrom<'_>,
    mut out: Buf,
) -> Result<Relayed, (Failure, String)>
where
    C: AsyncWrite + Unpin + PlainSocket,
    U: AsyncRead + Unpin + PlainSocket,
{
    let pool = req.m.pool;
    let mut inb = Buf::take();
    let mut pooled = PooledResponseHead::take();
    let resp = pooled.head();
    let head_len = read_response_head(client, upstream, req, &mut inb.0, resp, from).await?;
    trace.status = resp.status();
    let status = http::StatusCode::from_u16(resp.status()).unwrap_or(http::StatusCode::BAD_GATEWAY);
    pipeline::judge_response(pool, node, status, req.started_ms);
    out.0.clear();
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
    from: ResponseFrom<'_>,
) -> Result<usize, (Failure, String)> {
    let is_head = req.head.method() == Method::Head;
    let t = &req.m.pool.cfg.timeouts;
    let timeout = t.response;
    // `timeouts.response` counts from the end of the request body: from when the head went
    // out when the body went with it, else from when the upload ends. Until then the wait goes
    // in slices no longer than the response timeout (the upload has its own `body_idle`
    // limit), so the deadline is seen on time once the body's end is known.
    let mut deadline: Option<Instant> = match from {
        ResponseFrom::Sent(at) => Some(at + timeout),
        ResponseFrom::Upload(_) => None,
    };
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
        let read = match from {
            ResponseFrom::Sent(_) => {
                let read = upstream.read_buf(inb);
                deadline::timeout_pending_from(&mut deadline, timeout, read).await
            }
            ResponseFrom::Upload(end) => {
                if deadline.is_none() {
                    deadline = end.get().map(|&end| end + timeout);
                }
                let at = deadline.unwrap_or_else(|| Instant::now() + slice);
                deadline::timeout_at(at, upstream.read_buf(inb)).await
            }
        };
        match read {
            Err(_) if deadline.is_none() => {} // still uploading: look again
            Err(_) => return Err((Failure::Timeout, format!("no answer within {timeout:?}"))),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err((Failure::Upstream, "the node closed before answering".into()))
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Who broke off a response body.
enum BodyFault {
    /// The client stopped reading for `body_idle`, or closed: not the node's fault.
    Client,
    /// The node stalled for `body_idle`, closed early or sent a body that does not parse.
    Node(&'static str),
}

impl From<SpliceFault> for BodyFault {
    /// A response's fault: the node is the sender, the client the receiver.
    fn from(f: SpliceFault) -> BodyFault {
        match f {
            SpliceFault::SourceStalled => BodyFault::Node("stalled mid-body (timeouts.body_idle)"),
            SpliceFault::SourceClosed => BodyFault::Node("closed mid-body"),
            SpliceFault::SourceFailed => BodyFault::Node("failed mid-body"),
            SpliceFault::SinkStalled | SpliceFault::SinkFailed => BodyFault::Client,
        }
    }
}

/// Writes the response head for the client into `out`: `Set-Cookie` and `Location`
/// rewritten by the binder (only when there is something to rewrite). Returns the session ids
/// the response issued, and how to send the body.
pub(super) fn write_response(
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
        // Room for the node's values and one of the balancer's: no regrowth on the way.
        let set_cookies = resp.indices(HeaderKind::SetCookie).count();
        let mut values = Vec::with_capacity(set_cookies + 1);
        let mut raw = Vec::new(); // not UTF-8: kept as they were
        for i in resp.indices(HeaderKind::SetCookie) {
            match std::str::from_utf8(resp.header_value(i, src)) {
                Ok(v) => values.push(v.to_string()),
                Err(_) => raw.push(i),
            }
        }
        let path = std::str::from_utf8(req.head.path(req.src)).unwrap_or("/");
        let outcome = pipeline::rewrite_set_cookies(pool, &plan, path, &mut values);
        if outcome.changed() {
            rewritten = Some((values, raw));
        }
        issued = outcome.issued;
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

/// Sends the head in `out` and the body: what followed the head in `early`, then the rest
/// from the node, as `framing` and `body` say; each read from the node and each write to the
/// client within `idle` of the one before. `Ok(true)` when the node's connection can be
/// reused. A small response arrives with its head: one write, no loop, no clock read.
async fn send_body<C: AsyncWrite + Unpin + PlainSocket, U: AsyncRead + Unpin + PlainSocket>(
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
    let long = match reader {
        BodyReader::Length(left) if !done && left > BUF_SIZE as u64 => Some(left),
        _ => None,
    };
    if let (Some(left), false) = (long, rechunk) {
        if let (Some(c), Some(u)) = (client.plain_socket(), upstream.plain_socket()) {
            if let Spliced::Done = splice::move_length(u, c, left, idle).await? {
                return Ok(true);
            }
        }
    }
    let mut inb = Buf::take();
    if long.is_some() {
        // A long body moves in reads of up to four buffers' worth: a quarter of the system
        // calls of 16 KiB reads. The buffer stays this size in the thread's pool.
        inb.0.reserve(LONG_BODY_READ);
    }
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
        if !rechunk && matches!(reader, BodyReader::Length(_) | BodyReader::CloseDelimited) {
            // The body's bytes go to the client straight from the read buffer: no copy.
            let (piece, d) = identity_piece(&mut reader, &inb.0).map_err(invalid)?;
            done = d;
            write_all_idle(client, &inb.0[piece], idle)
                .await
                .map_err(to_client)?;
            continue;
        }
        out.clear();
        done = relay_piece(&mut reader, &inb.0, rechunk, out).map_err(invalid)?;
        write_all_idle(client, out, idle).await.map_err(to_client)?;
    }
    Ok(!matches!(reader, BodyReader::CloseDelimited))
}

/// For a body with a length or up to the close, passed on as it is: the range of `input` that
/// is body (bytes a node sent past its `Content-Length` are not), and whether the body is now
/// complete.
fn identity_piece(
    reader: &mut BodyReader,
    input: &[u8],
) -> Result<(std::ops::Range<usize>, bool), h1::Error> {
    if reader.is_done() {
        return Ok((0..0, true));
    }
    Ok(match reader.decode(input)? {
        Step::Data { start, end } => (start..end, reader.is_done()),
        Step::Done { .. } => (0..0, true),
        Step::NeedMore | Step::Trailer { .. } => (0..0, false),
    })
}

/// The read size of a response body longer than one buffer.
const LONG_BODY_READ: usize = 4 * BUF_SIZE;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_pieces() {
        // (reader, input, range that is body, complete)
        let cases: Vec<(BodyReader, &[u8], std::ops::Range<usize>, bool)> = vec![
            (BodyReader::Length(10), b"abcd", 0..4, false),
            (BodyReader::Length(4), b"abcd", 0..4, true),
            // Bytes past the Content-Length are not body.
            (BodyReader::Length(4), b"abcdEXTRA", 0..4, true),
            (BodyReader::Length(0), b"abcd", 0..0, true),
            (BodyReader::CloseDelimited, b"abcde", 0..5, false),
        ];
        for (mut reader, input, want, done) in cases {
            let got = identity_piece(&mut reader, input).unwrap();
            assert_eq!(got, (want.clone(), done), "{input:?}");
        }
        // A second piece continues where the first left off.
        let mut reader = BodyReader::Length(6);
        assert_eq!(identity_piece(&mut reader, b"abc").unwrap(), (0..3, false));
        assert_eq!(identity_piece(&mut reader, b"defg").unwrap(), (0..3, true));
    }
}
