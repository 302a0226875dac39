//! The native path's exchange with an AJP/1.3 node, beside the HTTP/1.1 one in `exchange`
//! (the connection comes from [`crate::proxy::ajp_exchange::connect`]): the
//! Forward Request built from the client's head ([`crate::ajp`]), the request body as the
//! container asks for it (Get Body Chunk), and the container's packets turned into the
//! client's HTTP/1.1 response through the same head rewriting as an HTTP node's
//! (`relay::write_response`: `Set-Cookie` and `Location`, keep-alive, framing).
//!
//! AJP is strictly one packet at a time: while the container waits for a body chunk it sends
//! nothing, so one loop reads the node's packets and answers each in turn, with no second
//! task. Failures before the response head went out are returned for `core::retry` (502 or a
//! retry); after it, the node's `upstream_errors` counts them and the client connection is
//! closed early, never left out of step.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::context::Conn;
use super::relay::{flush_idle, read_body_bytes, write_all_idle, write_response};
use super::request::Request;
use crate::ajp::{self, Packet, SendHeaders};
use crate::config::AjpConfig;
use crate::core::forwarding::BodyBudget;
use crate::core::retry::Failure;
use crate::core::select::Choice;
use crate::h1::{self, BodyFraming, BodyOut, BodyReader, Method, Parsed, Step, Version};
use crate::proxy::ajp_client::ClientTls;
use crate::proxy::ajp_exchange::{read_more, HOP_BY_HOP_RESPONSE, SKIPPED_REQUEST};
use crate::proxy::attempt::Trace;
use crate::proxy::buffers::{Buf, PooledResponseHead};
use crate::proxy::client_io::ClientIo;
use crate::proxy::node_head::MAX_COOKIE_LINES;
use crate::proxy::pipeline::{self, Ids};
use crate::state::snapshot::Node;

type Fault = (Failure, String);

/// How an AJP exchange ended, for the client connection.
pub(super) struct Ended {
    /// The client connection can take another request.
    pub(super) keep: bool,
    /// Bytes after this request that were already read.
    pub(super) rest: Option<Buf>,
}

/// Sends the request as AJP and relays the response. `Err` only while nothing of the
/// response reached the client.
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    client: &mut ClientIo,
    mut upstream: TcpStream,
    req: &Request<'_>,
    conn: &Conn<'_>,
    node: &Node,
    cfg: &AjpConfig,
    choice: Choice,
    ids: &Ids<'_>,
    epoch: u64,
    trace: &mut Trace,
) -> Result<Ended, Fault> {
    let ps = cfg.packet_size;
    let mut upload = Upload::new(req, conn.cfg.max_body_bytes);
    let mut out = Buf::take();
    write_forward_request(req, conn, client, cfg, choice, ids, &mut out.0)?;
    // With a Content-Length the first chunk goes out unsolicited (Tomcat reads it at once);
    // a chunked upload waits for the container's first Get Body Chunk. Body bytes already
    // read go out with the Forward Request; none is read from the client before the Forward
    // Request was written, so a request not sent is whole for the next attempt.
    let first_chunk = matches!(req.head.body(), BodyFraming::Length(n) if n > 0);
    let max = ajp::max_body_chunk(ps);
    let buffered = first_chunk && {
        let chunk = upload.next_buffered(max)?;
        if !chunk.is_empty() {
            ajp::write_body_chunk(chunk, ps, &mut out.0)
                .map_err(|e| (Failure::Upstream, e.to_string()))?;
        }
        !chunk.is_empty()
    };
    if upstream.write_all(&out.0).await.is_err() {
        return Err((Failure::NotSent, "the connection to the node closed".into()));
    }
    if first_chunk && !buffered {
        let idle = req.m.pool.cfg.timeouts.body_idle;
        out.0.clear();
        let chunk = upload.next(client, max, idle).await?;
        ajp::write_body_chunk(chunk, ps, &mut out.0)
            .map_err(|e| (Failure::Upstream, e.to_string()))?;
        if upstream.write_all(&out.0).await.is_err() {
            return Err((
                Failure::Upstream,
                "the node closed during the request body".into(),
            ));
        }
    }
    drop(out);
    let mut relay = Relay::new(req, node, ids, cfg);
    let end = relay.run(client, &mut upstream, &mut upload, trace).await?;
    let keep_client = end.keep_client && upload.done;
    if end.reuse {
        conn.pools.ajp.checkin(node.slot, epoch, upstream);
    }
    Ok(Ended {
        keep: keep_client,
        rest: if keep_client { upload.rest() } else { None },
    })
}

/// The Forward Request for the client's head: the id the node must see, the failover
/// header, hop-by-hop and forwarding headers out (AJP carries the client's address itself).
fn write_forward_request(
    req: &Request<'_>,
    conn: &Conn<'_>,
    client: &ClientIo,
    cfg: &AjpConfig,
    choice: Choice,
    ids: &Ids<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Fault> {
    let (src, head) = (req.src, req.head);
    let (cookie_lines, target) = req.session_edit(ids.forward_id.as_deref());
    let failover = pipeline::failover_header_value(choice, req.m.ids.as_ref(), req.sep);
    let fo_name = req.m.pool.cfg.failover.header.as_str().as_bytes();
    let mut headers: Vec<(&[u8], &[u8])> = Vec::with_capacity(head.headers().len() + 4);
    for i in 0..head.headers().len() {
        let name = head.header_name(i, src);
        let skip = SKIPPED_REQUEST.iter().any(|s| s.eq_ignore_ascii_case(name))
            || name.eq_ignore_ascii_case(fo_name)
            || (cookie_lines.is_some() && name.eq_ignore_ascii_case(b"cookie"))
            || head.connection_names(src, name);
        if !skip {
            headers.push((name, head.header_value(i, src)));
        }
    }
    if head.host(src).is_some() && head.find(src, b"host").is_none() {
        headers.push((b"Host", req.host.as_bytes()));
    }
    for l in cookie_lines.iter().flatten().take(MAX_COOKIE_LINES) {
        headers.push((b"Cookie", l.as_bytes()));
    }
    if let Some(v) = &failover {
        headers.push((fo_name, v.as_bytes()));
    }
    let (prefix, origin) = head.origin_form(src);
    let origin = target.as_deref().map_or(origin, str::as_bytes);
    let (path, query) = match origin.iter().position(|&b| b == b'?') {
        Some(q) => (&origin[..q], Some(&origin[q + 1..])),
        None => (origin, None),
    };
    let mut uri = prefix.to_vec();
    uri.extend_from_slice(path);
    let addr = conn.client.ip().to_canonical().to_string();
    let server_name = req.host.rsplit_once(':').map_or(req.host, |(h, _)| h);
    let tls = match client {
        ClientIo::Tls(session) => ClientTls::of(session),
        ClientIo::Plain(_) => None,
    };
    let fr = ajp::ForwardRequest {
        method: head.method_bytes(src),
        protocol: if head.version() == Version::Http10 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        },
        uri: &uri,
        query,
        remote_addr: addr.as_bytes(),
        remote_host: addr.as_bytes(),
        remote_port: Some(conn.client.port()),
        server_name: server_name.as_bytes(),
        server_port: conn.cfg.bind.port(),
        is_ssl: req.tls,
        headers: &headers,
        secret: cfg.secret.as_deref().map(str::as_bytes),
        tls: tls.as_ref().map(ClientTls::attributes),
    };
    ajp::write_forward_request(&fr, cfg.packet_size, out)
        .map_err(|e| (Failure::ClientBody, e.to_string()))
}

/// The client's request body, decoded, handed out as the container asks for it.
struct Upload {
    reader: BodyReader,
    budget: BodyBudget,
    /// Raw bytes from the client not decoded yet, from `pos` on.
    input: Vec<u8>,
    pos: usize,
    /// Decoded body bytes not sent yet.
    pending: Vec<u8>,
    /// The body is fully decoded (`input[pos..]` is what follows it).
    done: bool,
    /// The last chunk handed out, kept for the borrow of [`Upload::next`].
    chunk: Vec<u8>,
    /// The client sent `Expect: 100-continue` and has not been told to go on yet.
    expects_continue: bool,
}

impl Upload {
    fn new(req: &Request<'_>, max_body: Option<u64>) -> Upload {
        let framing = req.head.body();
        Upload {
            reader: BodyReader::new(framing),
            budget: BodyBudget::new(max_body),
            input: req.src[req.head.head_len()..].to_vec(),
            pos: 0,
            pending: Vec::new(),
            done: matches!(framing, BodyFraming::Empty),
            chunk: Vec::new(),
            expects_continue: req.head.expect_continue() && req.head.version() == Version::Http11,
        }
    }

    /// Up to `max` body bytes (empty: the body has ended), reading from the client as
    /// needed, each read within `idle`.
    async fn next(
        &mut self,
        client: &mut ClientIo,
        max: usize,
        idle: Duration,
    ) -> Result<&[u8], Fault> {
        while self.pending.len() < max && !self.done {
            if self.decode()? {
                continue;
            }
            if !self.pending.is_empty() {
                break;
            }
            if std::mem::take(&mut self.expects_continue) {
                write_all_idle(client, b"HTTP/1.1 100 Continue\r\n\r\n", idle)
                    .await
                    .and(flush_idle(client, idle).await)
                    .map_err(|_| {
                        (
                            Failure::ClientBody,
                            "the client stopped reading".to_string(),
                        )
                    })?;
            }
            self.input.clear();
            self.pos = 0;
            self.input.reserve(16 * 1024);
            read_body_bytes(client, &mut self.input, idle).await?;
        }
        let n = self.pending.len().min(max);
        self.chunk.clear();
        self.chunk.extend(self.pending.drain(..n));
        Ok(&self.chunk)
    }

    /// Up to `max` body bytes from what was already read, without reading from the client.
    fn next_buffered(&mut self, max: usize) -> Result<&[u8], Fault> {
        while self.pending.len() < max && !self.done && self.decode()? {}
        let n = self.pending.len().min(max);
        self.chunk.clear();
        self.chunk.extend(self.pending.drain(..n));
        Ok(&self.chunk)
    }

    /// Decodes what `input` holds into `pending`; false when it needs more bytes.
    fn decode(&mut self) -> Result<bool, Fault> {
        if self.reader.is_done() && !matches!(self.reader, BodyReader::Chunked(_)) {
            self.done = true;
            return Ok(true);
        }
        let input = &self.input[self.pos..];
        let step = self
            .reader
            .decode(input)
            .map_err(|e| (Failure::ClientBody, e.reason().to_string()))?;
        match step {
            Step::Data { start, end } => {
                if !self.budget.spend(end - start) {
                    return Err((Failure::BodyTooLarge, "over max_body_bytes".into()));
                }
                self.pending.extend_from_slice(&input[start..end]);
                self.pos += end;
            }
            Step::Trailer { end, .. } => self.pos += end,
            Step::NeedMore => {
                self.pos = self.input.len();
                return Ok(false);
            }
            Step::Done { consumed } => {
                self.pos += consumed;
                self.done = true;
            }
        }
        Ok(true)
    }

    /// The bytes read past the body (a pipelined request).
    fn rest(&self) -> Option<Buf> {
        let rest = &self.input[self.pos..];
        (!rest.is_empty()).then(|| {
            let mut b = Buf::take();
            b.0.extend_from_slice(rest);
            b
        })
    }
}

/// How the response ended.
struct End {
    keep_client: bool,
    /// The node's connection may carry another request.
    reuse: bool,
}

/// Where the response is: before its head, or in its body.
enum Phase {
    Head,
    /// The head went out; how the body is framed for the client, and what is left of a
    /// declared Content-Length.
    Body {
        out: BodyOut,
        left: Option<u64>,
        keep_client: bool,
    },
}

/// The container's packets to the client's response.
struct Relay<'r, 'a> {
    req: &'r Request<'a>,
    node: &'r Node,
    ids: &'r Ids<'r>,
    ps: usize,
    phase: Phase,
}

impl<'r, 'a> Relay<'r, 'a> {
    fn new(req: &'r Request<'a>, node: &'r Node, ids: &'r Ids<'r>, cfg: &AjpConfig) -> Self {
        Relay {
            req,
            node,
            ids,
            ps: cfg.packet_size,
            phase: Phase::Head,
        }
    }

    /// Reads and answers packets until End Response. Before the head went out a failure is
    /// returned; after it the node is counted and the client connection closes.
    async fn run(
        &mut self,
        client: &mut ClientIo,
        upstream: &mut TcpStream,
        upload: &mut Upload,
        trace: &mut Trace,
    ) -> Result<End, Fault> {
        let mut inb = Buf::take();
        match self
            .packets(client, upstream, upload, &mut inb.0, trace)
            .await
        {
            Ok(end) => Ok(end),
            Err(fault) if matches!(self.phase, Phase::Head) => Err(fault),
            Err((failure, why)) => {
                if !matches!(
                    failure,
                    Failure::ClientBody | Failure::ClientStalled | Failure::BodyTooLarge
                ) {
                    self.node
                        .rt
                        .stats
                        .upstream_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(node = %self.node.route, fault = %why, "AJP response cut off");
                Ok(End {
                    keep_client: false,
                    reuse: false,
                })
            }
        }
    }

    async fn packets(
        &mut self,
        client: &mut ClientIo,
        upstream: &mut TcpStream,
        upload: &mut Upload,
        inb: &mut Vec<u8>,
        trace: &mut Trace,
    ) -> Result<End, Fault> {
        let t = &self.req.m.pool.cfg.timeouts;
        loop {
            let parsed = ajp::parse_packet(inb, self.ps)
                .map_err(|e| (Failure::Upstream, format!("invalid AJP packet: {e}")))?;
            let Some((packet, used)) = parsed else {
                let limit = if matches!(self.phase, Phase::Head) {
                    t.response
                } else {
                    t.body_idle
                };
                if matches!(self.phase, Phase::Body { .. }) {
                    flush_idle(client, t.body_idle)
                        .await
                        .map_err(|_| (Failure::ClientBody, "the client stopped reading".into()))?;
                }
                read_more(upstream, inb, limit).await?;
                continue;
            };
            let step = match packet {
                Packet::SendHeaders(h) => self.head(client, &h, trace).await,
                Packet::SendBodyChunk(data) => self.body(client, data).await,
                Packet::GetBodyChunk(asked) => {
                    let max = usize::from(asked).clamp(1, ajp::max_body_chunk(self.ps));
                    let chunk = upload.next(client, max, t.body_idle).await?;
                    let mut out = Vec::with_capacity(chunk.len() + 6);
                    ajp::write_body_chunk(chunk, self.ps, &mut out)
                        .map_err(|e| (Failure::Upstream, e.to_string()))?;
                    write_all_idle(upstream, &out, t.body_idle)
                        .await
                        .map_err(|_| {
                            (
                                Failure::Upstream,
                                "the node closed during the request body".into(),
                            )
                        })
                }
                Packet::EndResponse { reuse } => {
                    let extra = inb.len() > used;
                    return self.end(client, reuse && !extra).await;
                }
                Packet::CPong => Err((Failure::Upstream, "CPong in a response".into())),
            };
            step?;
            inb.drain(..used);
        }
    }

    /// Send Headers: the client's head, rewritten as an HTTP node's would be.
    async fn head(
        &mut self,
        client: &mut ClientIo,
        h: &SendHeaders<'_>,
        trace: &mut Trace,
    ) -> Result<(), Fault> {
        if !matches!(self.phase, Phase::Head) {
            return Err((Failure::Upstream, "a second Send Headers".into()));
        }
        if h.status < 200 {
            return Err((
                Failure::Upstream,
                format!("AJP status {} is not final", h.status),
            ));
        }
        let req = self.req;
        let is_head = req.head.method() == Method::Head;
        let mut src = Buf::take();
        http1_head(h, is_head, &mut src.0);
        let mut pooled = PooledResponseHead::take();
        let resp = pooled.head();
        match h1::parse_response(&src.0, is_head, resp) {
            Ok(Parsed::Complete(_)) => {}
            Ok(Parsed::Partial) | Err(_) => {
                return Err((
                    Failure::Upstream,
                    "AJP headers that make no HTTP/1.1 head".into(),
                ))
            }
        }
        let pool = req.m.pool;
        trace.status = h.status;
        let status = http::StatusCode::from_u16(h.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        pipeline::judge_response(pool, self.node, status, req.started_ms);
        let mut out = Buf::take();
        let (issued, rout) = write_response(req, &src.0, resp, self.ids, &mut out.0);
        pipeline::learn(
            req.balancer,
            pool,
            self.node,
            req.sep,
            req.m.ids.map(|i| i.backend),
            self.ids.forward_id.as_deref(),
            issued.iter().map(String::as_str),
        );
        let left = match resp.body() {
            BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let keep_client =
            rout.keep_alive && req.head.keep_alive() && rout.body != BodyOut::UntilClose;
        self.phase = Phase::Body {
            out: rout.body,
            left,
            keep_client,
        };
        let idle = pool.cfg.timeouts.body_idle;
        write_all_idle(client, &out.0, idle)
            .await
            .map_err(|_| (Failure::ClientBody, "the client stopped reading".into()))
    }

    /// Send Body Chunk: the bytes to the client, framed as the head said.
    async fn body(&mut self, client: &mut ClientIo, data: &[u8]) -> Result<(), Fault> {
        let Phase::Body { out, left, .. } = &mut self.phase else {
            return Err((Failure::Upstream, "a body chunk before the headers".into()));
        };
        if let Some(left) = left {
            let n = data.len() as u64;
            if n > *left {
                return Err((
                    Failure::Upstream,
                    "more body than its Content-Length".into(),
                ));
            }
            *left -= n;
        }
        let idle = self.req.m.pool.cfg.timeouts.body_idle;
        let to_client = |_| {
            (
                Failure::ClientBody,
                "the client stopped reading".to_string(),
            )
        };
        match out {
            BodyOut::None => Ok(()),
            _ if data.is_empty() => Ok(()),
            BodyOut::Chunked => {
                let mut framed = Vec::with_capacity(data.len() + 16);
                h1::write_chunk_header(data.len() as u64, &mut framed);
                framed.extend_from_slice(data);
                framed.extend_from_slice(h1::CHUNK_END);
                write_all_idle(client, &framed, idle)
                    .await
                    .map_err(to_client)
            }
            BodyOut::Length(_) | BodyOut::UntilClose => {
                write_all_idle(client, data, idle).await.map_err(to_client)
            }
        }
    }

    /// End Response: the body must be complete; a chunked one gets its last chunk.
    async fn end(&mut self, client: &mut ClientIo, reuse: bool) -> Result<End, Fault> {
        let Phase::Body {
            out,
            left,
            keep_client,
        } = self.phase
        else {
            return Err((Failure::Upstream, "End Response before the headers".into()));
        };
        if out != BodyOut::None && left.is_some_and(|l| l > 0) {
            return Err((
                Failure::Upstream,
                "End Response before the declared Content-Length".into(),
            ));
        }
        let idle = self.req.m.pool.cfg.timeouts.body_idle;
        if out == BodyOut::Chunked {
            write_all_idle(client, h1::LAST_CHUNK, idle)
                .await
                .map_err(|_| (Failure::ClientBody, "the client stopped reading".into()))?;
        }
        Ok(End { keep_client, reuse })
    }
}

/// The HTTP/1.1 head a Send Headers packet stands for: its headers without hop-by-hop
/// ones, and `Transfer-Encoding: chunked` when a body without a length follows (AJP frames
/// the body itself, so the head never says how).
fn http1_head(h: &SendHeaders<'_>, is_head: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(h.status).as_bytes());
    out.push(b' ');
    let canonical = http::StatusCode::from_u16(h.status)
        .ok()
        .and_then(|s| s.canonical_reason());
    let message = if h.message.is_empty() || h.message.iter().all(u8::is_ascii_digit) {
        canonical.unwrap_or("Unknown").as_bytes()
    } else {
        h.message
    };
    out.extend_from_slice(message);
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    for &(name, value) in &h.headers {
        if HOP_BY_HOP_RESPONSE
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name))
        {
            continue;
        }
        has_length |= name.eq_ignore_ascii_case(b"content-length");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = is_head || matches!(h.status, 204 | 304);
    if !has_length && !bodiless {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_heads_from_send_headers() {
        type Case<'a> = (u16, &'a [u8], Vec<(&'a [u8], &'a [u8])>, bool, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                200,
                b"200",
                vec![(b"Content-Type", b"text/plain"), (b"Content-Length", b"2")],
                false,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n",
            ),
            (
                200,
                b"",
                vec![
                    (b"Transfer-Encoding", b"chunked"),
                    (b"Connection", b"close"),
                ],
                false,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            (
                302,
                b"Found it",
                vec![(b"Location", b"/x")],
                false,
                "HTTP/1.1 302 Found it\r\nLocation: /x\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            (
                304,
                b"304",
                vec![],
                false,
                "HTTP/1.1 304 Not Modified\r\n\r\n",
            ),
            (200, b"200", vec![], true, "HTTP/1.1 200 OK\r\n\r\n"),
            (
                599,
                b"599",
                vec![],
                false,
                "HTTP/1.1 599 Unknown\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
        ];
        for (status, message, headers, is_head, want) in cases {
            let h = SendHeaders {
                status,
                message,
                headers,
            };
            let mut out = Vec::new();
            http1_head(&h, is_head, &mut out);
            assert_eq!(String::from_utf8_lossy(&out), want);
        }
    }
}
