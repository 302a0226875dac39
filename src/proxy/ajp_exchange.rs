//! AJP/1.3 nodes, for both request paths: [`connect`] (a pooled connection, CPinged first
//! when it sat idle past `ajp.ping_after`), the request headers an AJP node is not given
//! ([`SKIPPED_REQUEST`], [`HOP_BY_HOP_RESPONSE`]), and the HTTP/2 path's exchange ([`send`]).
//!
//! On the HTTP/2 path the exchange runs in a task of its own: it writes the Forward Request
//! (the request is given back unsent if that fails), answers each Get Body Chunk from the
//! client's body, hands the Send Headers packet over as the response head and every Send Body
//! Chunk as a frame of [`AjpBody`]; End Response ends the body and, with `reuse`, puts the
//! connection back into [`UpstreamPools::ajp`]. Framing that is malformed or out of order is
//! the node's failure: before the head it is returned for `core::retry`, after it the body ends
//! in an error (the client's stream is reset) and the node's `upstream_errors` counts it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::ajp::{self, Packet};
use crate::config::{AjpConfig, Timeouts};
use crate::core::retry::Failure;
use crate::proxy::ajp_client::ClientTls;
use crate::proxy::idle_conns::IdleConns;
use crate::proxy::upstream::{open_fresh, BodyStalled, BoxError, ForwardBody, UpstreamPools};
use crate::state::node::NodeRuntime;
use crate::state::snapshot::Node;

/// A failure and its reason.
pub type Fault = (Failure, String);

/// Request headers not passed to an AJP node: hop-by-hop ones (AJP frames the body itself)
/// and forwarding headers a client could forge (the node reads the address from AJP).
pub const SKIPPED_REQUEST: [&[u8]; 12] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
];

/// Response headers dropped from an AJP response: the connection to the node is AJP's, not
/// the client's.
pub const HOP_BY_HOP_RESPONSE: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"trailer",
    b"upgrade",
];

/// A connection to an AJP node: a pooled one unless `fresh` (CPinged first when idle past
/// `ajp.ping_after`; one that fails the CPing is dropped), else a new one within
/// `timeouts.connect`. The flag says whether it was reused.
pub async fn connect(
    idle: &IdleConns,
    node: &Node,
    cfg: &AjpConfig,
    t: &Timeouts,
    epoch: u64,
    fresh: bool,
) -> Result<(TcpStream, bool), String> {
    if !fresh {
        while let Some((mut s, idle_for)) = idle.checkout(node.slot, epoch, t.idle, Instant::now())
        {
            if idle_for <= cfg.ping_after || cping(&mut s, t.connect).await.is_ok() {
                return Ok((s, true));
            }
        }
    }
    Ok((open_fresh(&node.addr, t.connect).await?, false))
}

/// One CPing/CPong within `limit`.
pub async fn cping(s: &mut TcpStream, limit: Duration) -> Result<(), String> {
    let exchange = async {
        s.write_all(&ajp::CPING_PACKET).await?;
        let mut pong = [0u8; 5];
        s.read_exact(&mut pong).await?;
        Ok::<_, std::io::Error>(pong)
    };
    match tokio::time::timeout(limit, exchange).await {
        Err(_) => Err(format!("no CPong within {limit:?}")),
        Ok(Err(e)) => Err(format!("CPing failed: {e}")),
        Ok(Ok(pong)) if pong == ajp::CPONG_PACKET => Ok(()),
        Ok(Ok(_)) => Err("the node answered CPing with something other than CPong".into()),
    }
}

/// Who the client is, for the Forward Request.
pub struct ClientSide<'a> {
    pub addr: SocketAddr,
    /// The port of the listener that accepted the client.
    pub listener_port: u16,
    /// The client came over TLS (`is_ssl`), and its attributes when known.
    pub is_ssl: bool,
    pub tls: Option<&'a ClientTls>,
}

/// Where the exchange ends up.
pub enum Sent {
    /// The node's head, and the body streaming from the exchange's task.
    Response(Response<AjpBody>),
    /// The Forward Request could not be written: the request, to send elsewhere.
    NotSent(Request<ForwardBody>, String),
    Failed(Fault),
}

/// Where the connection goes after End Response, and who is counted for a fault.
pub struct Home {
    pub pools: Arc<UpstreamPools>,
    pub slot: u32,
    pub epoch: u64,
    pub rt: Arc<NodeRuntime>,
}

/// The HTTP/2 path's exchange with an AJP node on `stream` (see the module's text).
pub async fn send(
    mut stream: TcpStream,
    request: Request<ForwardBody>,
    client: &ClientSide<'_>,
    cfg: &AjpConfig,
    t: &Timeouts,
    home: Home,
) -> Sent {
    let (parts, body) = request.into_parts();
    let mut out = Vec::new();
    if let Err(e) = write_forward_request(&parts, client, cfg, &mut out) {
        return Sent::Failed((Failure::ClientBody, e.to_string()));
    }
    if let Err(e) = stream.write_all(&out).await {
        let why = format!("the connection to the node closed: {e}");
        return Sent::NotSent(Request::from_parts(parts, body), why);
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let is_head = parts.method == http::Method::HEAD;
    let (head_tx, head_rx) = oneshot::channel();
    let (body_tx, body_rx) = mpsc::channel(4);
    let driver = Driver {
        ps: cfg.packet_size,
        response: t.response,
        idle: t.body_idle,
        upload: Upload::new(body),
        head_tx: Some(head_tx),
        body_tx,
        left: None,
        is_head,
    };
    tokio::spawn(driver.run(stream, declared.is_some_and(|n| n > 0), home));
    match head_rx.await {
        Ok(Ok(h)) => match response(h, body_rx) {
            Ok(resp) => Sent::Response(resp),
            Err(why) => Sent::Failed((Failure::Upstream, why)),
        },
        Ok(Err(fault)) => Sent::Failed(fault),
        Err(_) => Sent::Failed((Failure::Upstream, "the AJP exchange ended early".into())),
    }
}

/// The Forward Request for a request of the HTTP/2 path.
fn write_forward_request(
    parts: &http::request::Parts,
    client: &ClientSide<'_>,
    cfg: &AjpConfig,
    out: &mut Vec<u8>,
) -> Result<(), ajp::Error> {
    let mut headers: Vec<(&[u8], &[u8])> = Vec::with_capacity(parts.headers.len() + 1);
    for (name, value) in &parts.headers {
        let n = name.as_str().as_bytes();
        if !SKIPPED_REQUEST.contains(&n) {
            headers.push((n, value.as_bytes()));
        }
    }
    let authority = parts.uri.authority().map(|a| a.as_str()).unwrap_or("");
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(authority);
    if !parts.headers.contains_key(http::header::HOST) && !authority.is_empty() {
        headers.push((b"host", authority.as_bytes()));
    }
    let addr = client.addr.ip().to_canonical().to_string();
    let req = ajp::ForwardRequest {
        method: parts.method.as_str().as_bytes(),
        protocol: match parts.version {
            Version::HTTP_2 => b"HTTP/2.0",
            Version::HTTP_10 => b"HTTP/1.0",
            _ => b"HTTP/1.1",
        },
        uri: parts.uri.path().as_bytes(),
        query: parts.uri.query().map(str::as_bytes),
        remote_addr: addr.as_bytes(),
        remote_host: addr.as_bytes(),
        remote_port: Some(client.addr.port()),
        server_name: host.rsplit_once(':').map_or(host, |(h, _)| h).as_bytes(),
        server_port: client.listener_port,
        is_ssl: client.is_ssl,
        headers: &headers,
        secret: cfg.secret.as_deref().map(str::as_bytes),
        tls: client.tls.map(ClientTls::attributes),
    };
    ajp::write_forward_request(&req, cfg.packet_size, out)
}

/// A Send Headers packet, owned.
struct Head {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The client's response head from the node's, hop-by-hop headers out.
fn response(
    h: Head,
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
) -> Result<Response<AjpBody>, String> {
    let status = StatusCode::from_u16(h.status).map_err(|_| format!("AJP status {}", h.status))?;
    let mut resp = Response::new(AjpBody { rx });
    *resp.status_mut() = status;
    for (name, value) in h.headers {
        if HOP_BY_HOP_RESPONSE
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&name))
        {
            continue;
        }
        let name = HeaderName::from_bytes(&name).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_bytes(&value).map_err(|e| e.to_string())?;
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}

/// The response body of an AJP node, fed by the exchange's task.
#[derive(Debug)]
pub struct AjpBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl Body for AjpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// The client's request body, handed out as the container asks for it.
struct Upload {
    body: ForwardBody,
    pending: Bytes,
    ended: bool,
}

impl Upload {
    fn new(body: ForwardBody) -> Upload {
        Upload {
            ended: body.is_end_stream(),
            body,
            pending: Bytes::new(),
        }
    }

    /// Up to `max` body bytes; empty when the body has ended.
    async fn next(&mut self, max: usize) -> Result<Bytes, Fault> {
        while self.pending.is_empty() && !self.ended {
            match self.body.frame().await {
                None => self.ended = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending = data;
                    }
                }
                Some(Err(e)) => {
                    let failure = if e.is::<BodyStalled>() {
                        Failure::ClientStalled
                    } else {
                        Failure::ClientBody
                    };
                    return Err((failure, e.to_string()));
                }
            }
        }
        let n = self.pending.len().min(max);
        Ok(self.pending.split_to(n))
    }
}

/// The exchange's task: the node's packets, answered in turn.
struct Driver {
    ps: usize,
    response: Duration,
    idle: Duration,
    upload: Upload,
    /// Until the head went out.
    head_tx: Option<oneshot::Sender<Result<Head, Fault>>>,
    body_tx: mpsc::Sender<Result<Bytes, BoxError>>,
    /// What is left of a declared Content-Length.
    left: Option<u64>,
    /// A HEAD request: the length is the entity's, no body follows.
    is_head: bool,
}

impl Driver {
    async fn run(mut self, mut stream: TcpStream, first_chunk: bool, home: Home) {
        let result = self.exchange(&mut stream, first_chunk).await;
        match result {
            Ok(reuse) => {
                if reuse {
                    home.pools.ajp.checkin(home.slot, home.epoch, stream);
                }
            }
            Err(fault) => match self.head_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Err(fault));
                }
                None => {
                    if !matches!(fault.0, Failure::ClientBody | Failure::ClientStalled) {
                        home.rt
                            .stats
                            .upstream_errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(fault = %fault.1, "AJP response cut off");
                    let _ = self.body_tx.send(Err(fault.1.into())).await;
                }
            },
        }
    }

    /// Until End Response; `Ok(reuse)`.
    async fn exchange(&mut self, stream: &mut TcpStream, first_chunk: bool) -> Result<bool, Fault> {
        if first_chunk {
            let chunk = self.upload.next(ajp::max_body_chunk(self.ps)).await?;
            self.write_chunk(stream, &chunk).await?;
        }
        let mut inb = Vec::with_capacity(8192);
        loop {
            let parsed = ajp::parse_packet(&inb, self.ps)
                .map_err(|e| (Failure::Upstream, format!("invalid AJP packet: {e}")))?;
            let Some((packet, used)) = parsed else {
                let limit = if self.head_tx.is_some() {
                    self.response
                } else {
                    self.idle
                };
                read_more(stream, &mut inb, limit).await?;
                continue;
            };
            match packet {
                Packet::SendHeaders(h) => self.head(&h)?,
                Packet::SendBodyChunk(data) => self.body(data).await?,
                Packet::GetBodyChunk(asked) => {
                    let max = usize::from(asked).clamp(1, ajp::max_body_chunk(self.ps));
                    let chunk = self.upload.next(max).await?;
                    self.write_chunk(stream, &chunk).await?;
                }
                Packet::EndResponse { reuse } => {
                    if self.head_tx.is_some() {
                        return Err((Failure::Upstream, "End Response before the headers".into()));
                    }
                    if self.left.is_some_and(|l| l > 0) {
                        let why = "End Response before the declared Content-Length";
                        return Err((Failure::Upstream, why.into()));
                    }
                    return Ok(reuse && inb.len() == used);
                }
                Packet::CPong => return Err((Failure::Upstream, "CPong in a response".into())),
            }
            inb.drain(..used);
        }
    }

    async fn write_chunk(&self, stream: &mut TcpStream, chunk: &[u8]) -> Result<(), Fault> {
        let mut out = Vec::with_capacity(chunk.len() + 6);
        ajp::write_body_chunk(chunk, self.ps, &mut out)
            .map_err(|e| (Failure::Upstream, e.to_string()))?;
        match tokio::time::timeout(self.idle, stream.write_all(&out)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err((Failure::Upstream, "the node took no request body".into())),
        }
    }

    fn head(&mut self, h: &ajp::SendHeaders<'_>) -> Result<(), Fault> {
        let Some(tx) = self.head_tx.take() else {
            return Err((Failure::Upstream, "a second Send Headers".into()));
        };
        if h.status < 200 {
            return Err((
                Failure::Upstream,
                format!("AJP status {} is not final", h.status),
            ));
        }
        let bodiless = self.is_head || matches!(h.status, 204 | 304);
        self.left = h
            .header("content-length")
            .filter(|_| !bodiless)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok());
        let head = Head {
            status: h.status,
            headers: h
                .headers
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect(),
        };
        // A client gone before the head: nothing to answer, the node's answer is dropped.
        let _ = tx.send(Ok(head));
        Ok(())
    }

    async fn body(&mut self, data: &[u8]) -> Result<(), Fault> {
        if self.head_tx.is_some() {
            return Err((Failure::Upstream, "a body chunk before the headers".into()));
        }
        if let Some(left) = &mut self.left {
            let n = data.len() as u64;
            if n > *left {
                return Err((
                    Failure::Upstream,
                    "more body than its Content-Length".into(),
                ));
            }
            *left -= n;
        }
        if data.is_empty() {
            return Ok(());
        }
        let frame = Ok(Bytes::copy_from_slice(data));
        match tokio::time::timeout(self.idle, self.body_tx.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err((
                Failure::ClientBody,
                "the client stopped taking the response".into(),
            )),
        }
    }
}

/// More bytes from the node into `inb`, within `limit`.
pub async fn read_more(
    stream: &mut TcpStream,
    inb: &mut Vec<u8>,
    limit: Duration,
) -> Result<(), Fault> {
    if inb.capacity() - inb.len() < 1024 {
        inb.reserve(16 * 1024);
    }
    match tokio::time::timeout(limit, stream.read_buf(inb)).await {
        Err(_) => Err((Failure::Timeout, format!("no AJP packet within {limit:?}"))),
        Ok(Ok(0)) | Ok(Err(_)) => Err((Failure::Upstream, "the node closed mid-response".into())),
        Ok(Ok(_)) => Ok(()),
    }
}
