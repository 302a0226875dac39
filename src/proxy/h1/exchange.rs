//! One request's exchange on the native path: phases 1–2 on the parsed head, the attempt
//! loop over the nodes ([`crate::proxy::attempt::Attempts`]), the head the node receives,
//! and how the exchange ends for the connection ([`Next`], a [`Tunnel`] after a `101`).
//! The bytes of the response and of a streamed request body move in [`super::relay`].

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::ajp;
use super::context::Conn;
use super::relay::{
    flush_idle, reframe, relay_response, stream_body, write_all_idle, Relayed, ResponseFrom,
};
use super::request::Request;
use crate::core::retry::Failure;
use crate::core::select::Choice;
use crate::h1::{BodyFraming, BodyReader, HeaderKind, RequestHead};
use crate::proxy::ajp_exchange;
use crate::proxy::attempt::{Attempts, Fail, Failed, Synthetic, Trace};
use crate::proxy::buffers::{self, rest_after, Buf};
use crate::proxy::client_io::ClientIo;
use crate::proxy::node_head;
use crate::proxy::pipeline::{self, Ids, InflightGuard, ProxyError};
use crate::proxy::tunnel::{self, TunnelPolicy};
use crate::proxy::upstream::connect_http;
use crate::state::node::ms_at;
use crate::state::snapshot::{Node, Snapshot};

/// What the connection does after a request.
pub enum Next {
    /// Keep it open; `Some` holds the bytes of the next request already read. The instant
    /// is when the response went out, where the keep-alive wait starts.
    Keep(Option<Buf>, Instant),
    Close,
    Tunnel(Tunnel),
}

/// How the request's exchange ended, for the connection.
struct Done {
    /// The client connection can take another request.
    keep: bool,
    /// Bytes after this request (its body included) that were already read.
    rest: Option<Buf>,
    /// After a `101`: the node's connection, and the head and early bytes for the client.
    tunnel: Option<Tunnel>,
}

/// An upgraded connection (WebSocket) to run as a byte tunnel.
pub struct Tunnel {
    upstream: TcpStream,
    head: Buf,
    early: Vec<u8>,
    /// The node's slot, held until the tunnel closes.
    slot: Option<InflightGuard>,
}

impl Tunnel {
    /// Sends the `101` head and the node's early bytes, then copies both ways until either
    /// side closes, the tunnel sits idle for `policy.idle`, or the shutdown grace ends
    /// ([`tunnel::relay`]).
    pub async fn run(mut self, mut client: ClientIo, policy: &TunnelPolicy) {
        tunnel::keepalive(client.tcp());
        tunnel::keepalive(&self.upstream);
        if write_all_idle(&mut client, &self.head.0, policy.idle)
            .await
            .is_err()
            || write_all_idle(&mut client, &self.early, policy.idle)
                .await
                .is_err()
            || flush_idle(&mut client, policy.idle).await.is_err()
        {
            return;
        }
        drop(std::mem::take(&mut self.early));
        drop(std::mem::replace(&mut self.head, Buf(Vec::new())));
        let end = tunnel::relay(&mut client, &mut self.upstream, policy).await;
        tracing::debug!(?end, "tunnel closed");
    }
}

/// One request and its response, then the access log line.
pub(super) async fn exchange(
    client: &mut ClientIo,
    buf: Buf,
    head: &RequestHead,
    conn: &Conn<'_>,
) -> Next {
    let start = Instant::now();
    let snap = conn.balancer.snapshot();
    let mut trace = Trace::default();
    let path = std::str::from_utf8(head.path(&buf.0)).ok();
    let result = route_and_forward(client, &buf.0, head, path, &snap, conn, &mut trace, start);
    let result = result.await;
    let done = match result {
        Ok(done) => done,
        Err((err, retry_after)) => {
            trace.status = err.status().as_u16();
            trace.warn_failed(&snap, &err);
            // The body was not read: the connection cannot be reused unless there was none.
            let keep = head.keep_alive() && matches!(head.body(), BodyFraming::Empty);
            let synthetic = Synthetic::new(err.status(), &err.to_string(), retry_after);
            let w = Box::pin(write_synthetic(client, &synthetic, keep)).await;
            let rest = rest_after(&buf.0, head.head_len());
            Done {
                keep: keep && w.is_ok(),
                rest,
                tunnel: None,
            }
        }
    };
    let mut done = done;
    if client.is_tls() && done.tunnel.is_none() {
        // What the TLS session still holds of the response (a client slow to read).
        let idle = trace
            .pool_ix
            .map_or(SYNTHETIC_WRITE, |i| snap.pools[i].cfg.timeouts.body_idle);
        if flush_idle(client, idle).await.is_err() {
            done.keep = false;
        }
        trace.end = None; // the flush is part of the request's time
    }
    let method = head
        .method()
        .as_str()
        .unwrap_or_else(|| std::str::from_utf8(head.method_bytes(&buf.0)).unwrap_or("-"));
    let end = trace.finish(
        conn.balancer,
        &snap,
        conn.client,
        method,
        path.unwrap_or("/"),
        start,
    );
    if let Some(t) = done.tunnel {
        Next::Tunnel(t)
    } else if done.keep {
        Next::Keep(done.rest, end)
    } else {
        Next::Close
    }
}

/// Phases 1–2 on the parsed head, then the attempts.
/// `path` is the head's path as text; `None` when it is not UTF-8.
#[allow(clippy::too_many_arguments)]
async fn route_and_forward(
    client: &mut ClientIo,
    src: &[u8],
    head: &RequestHead,
    path: Option<&str>,
    snap: &Snapshot,
    conn: &Conn<'_>,
    trace: &mut Trace,
    start: Instant,
) -> Result<Done, Fail> {
    let host = head.host(src).and_then(|h| std::str::from_utf8(h).ok());
    let path = path.ok_or_else(|| {
        (
            ProxyError::ClientBody("request target is not UTF-8".into()),
            None,
        )
    })?;
    if let BodyFraming::Length(n) = head.body() {
        if crate::core::forwarding::declared_body_too_large(conn.cfg.max_body_bytes, Some(n)) {
            return Err((ProxyError::BodyTooLarge, None));
        }
    }
    let mut lines: [Option<&str>; 8] = [None; 8];
    let mut n = 0;
    for i in head.indices(HeaderKind::Cookie) {
        if n < lines.len() {
            lines[n] = std::str::from_utf8(head.header_value(i, src)).ok();
            n += 1;
        }
    }
    let started_ms = ms_at(start);
    let m = pipeline::match_and_extract(snap, host, path, &lines[..n], started_ms)
        .map_err(|e| (e, None))?;
    trace.pool_ix = Some(m.pool_ix);
    let settings = &snap.config.session.settings;
    let req = Request {
        head,
        src,
        m,
        lines: &lines[..n],
        start,
        sep: settings.separator,
        path_param: settings.path_param.as_deref(),
        started_ms,
        host: host.unwrap_or(""),
        balancer: conn.balancer,
        pools: conn.pools,
        tls: conn.tls,
    };
    attempts(client, &req, conn, trace).await
}

/// Phases 3–6 for each node tried, through the shared attempt loop ([`Attempts`]).
async fn attempts(
    client: &mut ClientIo,
    req: &Request<'_>,
    conn: &Conn<'_>,
    trace: &mut Trace,
) -> Result<Done, Fail> {
    let pool = req.m.pool;
    let replayable = pool.cfg.failover.retry_idempotent
        && req.head.method().is_idempotent()
        && matches!(req.head.body(), BodyFraming::Empty);
    let had_body = !matches!(req.head.body(), BodyFraming::Empty);
    let mut attempts = Attempts::new(
        pool,
        req.m.ids,
        req.sep,
        replayable,
        had_body,
        req.started_ms,
    );
    loop {
        let turn = attempts.next(trace).await?;
        let (node, choice, epoch) = (turn.node, turn.choice, turn.epoch);
        if node.ajp.is_some() && req.head.upgrade() {
            let why = "WebSocket upgrades cannot cross AJP (the node speaks AJP/1.3)";
            return Err((ProxyError::NotImplemented(why), None));
        }
        let connected = match &node.ajp {
            None => {
                let t = &pool.cfg.timeouts;
                connect_http(conn.pools, node, t, epoch, turn.fresh, req.start).await
            }
            Some(cfg) => {
                let t = &pool.cfg.timeouts;
                Box::pin(ajp_exchange::connect(
                    &conn.pools.ajp,
                    node,
                    cfg,
                    t,
                    epoch,
                    turn.fresh,
                ))
                .await
            }
        };
        let failed = match connected {
            Err(reason) => Failed::new(Failure::Connect, reason, false),
            Ok((upstream, reused)) => {
                // A hit's ids at once; only a failover waits for its rebind.
                let ids = match attempts.kept(&turn) {
                    Some(ids) => ids,
                    None => attempts.rebind(&turn).await?,
                };
                turn.slot.sending();
                let sent_at = Instant::now();
                let r = match &node.ajp {
                    None => {
                        forward(
                            client, upstream, req, conn, node, choice, &ids, epoch, sent_at, trace,
                        )
                        .await
                    }
                    Some(cfg) => {
                        let fwd = ajp::forward(
                            client, upstream, req, conn, node, cfg, choice, &ids, epoch, trace,
                        );
                        Box::pin(fwd).await.map(|e| Done {
                            keep: e.keep,
                            rest: e.rest,
                            tunnel: None,
                        })
                    }
                };
                match r {
                    Ok(mut done) => {
                        trace.answered(sent_at);
                        // A tunnel keeps its connection to the node, and so its slot.
                        if let Some(t) = &mut done.tunnel {
                            t.slot = Some(turn.slot);
                        }
                        return Ok(done);
                    }
                    Err((failure, reason)) => Failed {
                        renamed: attempts.renamed(&ids),
                        ..Failed::new(failure, reason, reused)
                    },
                }
            }
        };
        attempts.failed(turn, failed)?;
    }
}

/// Sends the request on `upstream` and relays the response. `Err` carries the failure for
/// `core::retry`; it is only returned while nothing of the response reached the client.
#[allow(clippy::too_many_arguments)]
async fn forward(
    client: &mut ClientIo,
    mut upstream: TcpStream,
    req: &Request<'_>,
    conn: &Conn<'_>,
    node: &Node,
    choice: Choice,
    ids: &Ids<'_>,
    epoch: u64,
    sent_at: Instant,
    trace: &mut Trace,
) -> Result<Done, (Failure, String)> {
    let mut out = Buf::take();
    write_head(req, conn, choice, ids, &mut out.0);
    let framing = req.head.body();
    let mut reader = BodyReader::new(framing);
    let mut budget = crate::core::forwarding::BodyBudget::new(conn.cfg.max_body_bytes);
    let early = &req.src[req.head.head_len()..];
    let (body_done, used) = reframe(&mut reader, &mut budget, early, framing, &mut out.0)?;
    if upstream.write_all(&out.0).await.is_err() {
        return Err((Failure::NotSent, "the connection to the node closed".into()));
    }
    if body_done {
        let rest = rest_after(req.src, req.head.head_len() + used);
        let from = ResponseFrom::Sent(sent_at);
        let relay = relay_response(client, &mut upstream, req, node, ids, trace, from, out);
        let relayed = relay.await?;
        return Ok(finish(upstream, req, node, epoch, relayed, rest));
    }
    if req.head.expect_continue() {
        let _ = client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        let _ = flush_idle(client, req.m.pool.cfg.timeouts.body_idle).await;
    }
    // The rest of the body and the response at once: a node may answer (an echo, an early
    // error) before it read the whole body, and waiting for one before the other deadlocks.
    let (mut client_rd, mut client_wr) = client.split();
    let (mut up_rd, mut up_wr) = upstream.split();
    // Set by the upload when the body's last byte went to the node: `timeouts.response`
    // counts from there, however long a slow but steady upload took.
    let upload_end = OnceLock::new();
    // The first failure ends both (an aborted upload must not wait for the node's answer).
    // Boxed: only a body larger than the first read gets here, and the two futures inline
    // would be part of every connection's state, idle ones included.
    let both = Box::pin(async {
        tokio::try_join!(
            stream_body(
                &mut client_rd,
                &mut up_wr,
                &mut reader,
                &mut budget,
                (framing, req.m.pool.cfg.timeouts.body_idle),
                &upload_end,
            ),
            relay_response(
                &mut client_wr,
                &mut up_rd,
                req,
                node,
                ids,
                trace,
                ResponseFrom::Upload(&upload_end),
                out,
            ),
        )
    });
    let (rest, relayed) = both.await?;
    let relayed = match relayed {
        // No tunnel for a request with a body.
        Relayed::Upgrade { .. } => {
            return Err((
                Failure::Upstream,
                "the node upgraded a request with a body".into(),
            ))
        }
        r => r,
    };
    Ok(finish(upstream, req, node, epoch, relayed, rest))
}

/// After the response: the node's connection back to the pool (or into a tunnel), and what
/// the client connection does next.
fn finish(
    upstream: TcpStream,
    req: &Request<'_>,
    node: &Node,
    epoch: u64,
    relayed: Relayed,
    rest: Option<Buf>,
) -> Done {
    match relayed {
        Relayed::Upgrade { head, early } => Done {
            keep: false,
            rest: None,
            tunnel: Some(Tunnel {
                upstream,
                head,
                early,
                slot: None,
            }),
        },
        Relayed::Sent {
            keep_client,
            reusable,
        } => {
            if reusable {
                req.pools.http.checkin(node.slot, epoch, upstream);
            }
            Done {
                keep: keep_client,
                rest: rest.filter(|_| keep_client),
                tunnel: None,
            }
        }
    }
}

/// Writes the head the node receives ([`node_head::write_native_head`]): the session id it
/// must see, the forwarding fields, the failover header.
fn write_head(
    req: &Request<'_>,
    conn: &Conn<'_>,
    choice: Choice,
    ids: &Ids<'_>,
    out: &mut Vec<u8>,
) {
    let (cookie_lines, target) = req.session_edit(ids.forward_id.as_deref());
    let failover = pipeline::failover_header_value(choice, req.m.ids.as_ref(), req.sep);
    let hop = node_head::Hop {
        client: conn.client.ip(),
        tls: req.tls,
        // Kept and extended from a trusted proxy, replaced for anyone else.
        extend: conn.cfg.trusted_proxies.extends(conn.client.ip()),
        host: req.host,
    };
    let session = node_head::Session {
        failover_name: req.m.pool.cfg.failover.header.as_str().as_bytes(),
        failover: failover.as_deref(),
        cookie_lines: cookie_lines.as_deref(),
    };
    let target = target.as_deref().map(str::as_bytes);
    buffers::with_scratch(|vals| {
        node_head::write_native_head(req.src, req.head, &hop, &session, target, vals, out);
    });
}

/// A short text response of the balancer's own ([`Synthetic`]).
pub(super) async fn write_synthetic(
    client: &mut ClientIo,
    synthetic: &Synthetic,
    keep_alive: bool,
) -> std::io::Result<()> {
    let bytes = synthetic.to_http1(keep_alive);
    write_all_idle(client, bytes.as_bytes(), SYNTHETIC_WRITE).await?;
    flush_idle(client, SYNTHETIC_WRITE).await
}

/// How long the balancer's own short responses may wait for a client that does not read.
const SYNTHETIC_WRITE: Duration = Duration::from_secs(10);
