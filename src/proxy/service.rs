//! The hyper request path: one `Service` per client connection (HTTP/2, h2c, TLS listeners,
//! upgrades), driving the phases of [`crate::proxy::pipeline`] over hyper's types.
//!
//! [`ProxyService::forward`] does match and extract and the node-independent rewriting once;
//! [`ProxyService::attempts`] runs select → connect → rebind → send for each node tried, and
//! carries out what `core::retry` decides when an attempt fails; the response is rewritten by
//! the binder and streamed back, its connection returning to the pool when the body ends.
//! Every failure becomes a short synthetic response with [`ProxyError::status`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::config::AjpConfig;
use crate::config::ListenerConfig;
use crate::core::binder::{self, ResponsePlan};
use crate::core::forwarding::{
    declared_body_too_large, is_idempotent, is_upgrade, prepare_request, strip_hop_by_hop,
    TrustedProxies,
};
use crate::core::retry::Failure;
use crate::core::select::Choice;
use crate::core::session::IdLocation;
use crate::proxy::ajp_client::ClientTls;
use crate::proxy::ajp_exchange;
use crate::proxy::attempt::{Attempts, Fail, Failed, Synthetic, Trace, Turn};
use crate::proxy::pipeline::{self, Ids, InflightGuard, SessionEdit, SessionIds};
use crate::proxy::tunnel::{self, TunnelPolicy};
use crate::proxy::upstream::{
    self, BodyIdle, ForwardBody, Sender, UploadState, UploadWatch, UpstreamPool, UpstreamPools,
};
use crate::state::node::now_ms;
use crate::state::snapshot::{Node, Pool, Snapshot};
use crate::state::Balancer;

pub use crate::proxy::pipeline::ProxyError;

/// Per-connection service.
#[derive(Clone)]
pub struct ProxyService {
    balancer: Arc<Balancer>,
    conns: Arc<UpstreamPools>,
    client: SocketAddr,
    tls: bool,
    /// `listeners[].trusted_proxies` of the listener that accepted the connection.
    trusted: TrustedProxies,
    /// `listeners[].max_body_bytes` of that listener.
    max_body: Option<u64>,
    /// The connection's rapid-reset guard (HTTP/2).
    resets: Option<Arc<ResetBudget>>,
    /// How the listener's tunnels are bounded, and where they run.
    tunnels: TunnelPolicy,
    /// The connection's permit of `listeners[].max_connections`, kept by a tunnel it becomes.
    permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    /// The listener's port (`server_port` of AJP requests).
    listener_port: u16,
    /// A TLS client's attributes, for AJP nodes.
    client_tls: Option<Arc<ClientTls>>,
}

impl ProxyService {
    /// A service with the listener defaults: no peer trusted. [`ProxyService::with_listener`]
    /// applies a listener's settings.
    pub fn new(
        balancer: Arc<Balancer>,
        conns: Arc<UpstreamPools>,
        client: SocketAddr,
        tls: bool,
    ) -> Self {
        ProxyService {
            balancer,
            conns,
            client,
            tls,
            trusted: TrustedProxies::default(),
            max_body: None,
            resets: None,
            tunnels: TunnelPolicy::default(),
            permit: None,
            listener_port: 0,
            client_tls: None,
        }
    }

    /// The TLS attributes of the client, passed to AJP nodes.
    pub fn with_client_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.client_tls = tls.map(Arc::new);
        self
    }

    /// Counts this connection's streams that the client cancels before their response
    /// against `budget` (see [`ResetBudget`]).
    pub fn with_reset_budget(mut self, budget: Arc<ResetBudget>) -> Self {
        self.resets = Some(budget);
        self
    }

    /// The listener's tunnel policy, and the connection permit a tunnel keeps.
    pub fn with_tunnels(
        mut self,
        tunnels: TunnelPolicy,
        permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    ) -> Self {
        self.tunnels = tunnels;
        self.permit = permit;
        self
    }

    /// The per-listener settings of `cfg`: its trusted proxies and body limit.
    pub fn with_listener(mut self, cfg: &ListenerConfig) -> Self {
        self.trusted = cfg.trusted_proxies.clone();
        self.max_body = cfg.max_body_bytes;
        self.listener_port = cfg.bind.port();
        self
    }
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // Dropped unanswered: hyper drops a stream's service future when the client
            // resets the stream.
            let watch = this.resets.clone().map(StreamWatch::new);
            let resp = this.handle(req).await;
            if let Some(w) = watch {
                w.answered();
            }
            Ok(resp)
        })
    }
}

/// The rapid-reset guard of one HTTP/2 connection (CVE-2023-44487): a client that opens
/// streams and resets them before their answer makes the balancer select, connect and forward
/// for nothing, at no cost of its own. Each such reset spends one unit of the budget
/// (`listeners[].h2.max_reset_streams`), each answered stream gives one back (up to the
/// maximum); a reset that finds it empty cancels [`ResetBudget::exhausted`], and the listener
/// closes the connection with `GOAWAY`. A browser that cancels a few requests among many it
/// lets finish never gets there. Streams reset before hyper accepted them are h2's own limit
/// (`max_pending_accept_reset_streams`, set to the same value).
#[derive(Debug)]
pub struct ResetBudget {
    left: std::sync::atomic::AtomicU32,
    max: u32,
    exhausted: tokio_util::sync::CancellationToken,
}

impl ResetBudget {
    pub fn new(max: u32) -> Arc<ResetBudget> {
        Arc::new(ResetBudget {
            left: std::sync::atomic::AtomicU32::new(max),
            max,
            exhausted: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Cancelled when the client reset more streams than the budget allows.
    pub fn exhausted(&self) -> &tokio_util::sync::CancellationToken {
        &self.exhausted
    }

    fn spend(&self) {
        let spent = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1));
        if spent.is_err() && !self.exhausted.is_cancelled() {
            tracing::warn!(
                max_reset_streams = self.max,
                "HTTP/2 client reset too many streams; closing the connection"
            );
            self.exhausted.cancel();
        }
    }

    fn refund(&self) {
        let max = self.max;
        let _ = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l < max).then_some(l + 1)
            });
    }
}

/// One stream's request on a connection with a [`ResetBudget`]: spends from it when dropped
/// before the response head was handed to hyper.
struct StreamWatch {
    budget: Arc<ResetBudget>,
    answered: bool,
}

impl StreamWatch {
    fn new(budget: Arc<ResetBudget>) -> Self {
        StreamWatch {
            budget,
            answered: false,
        }
    }

    fn answered(mut self) {
        self.answered = true;
        self.budget.refund();
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if !self.answered {
            self.budget.spend();
        }
    }
}

impl ProxyService {
    async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let start = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone(); // shares the request's buffer; no copy
        let mut trace = Trace::default();
        let snap = self.balancer.snapshot();
        let resp = match self.forward(&snap, req, &mut trace).await {
            Ok(resp) => resp,
            Err((err, retry_after)) => {
                trace.warn_failed(&snap, &err);
                // Our short reason only: the internal text stays in the log above.
                synthetic(err.status(), &err.to_string(), retry_after)
            }
        };
        trace.status = resp.status().as_u16();
        let (client, method) = (self.client, method.as_str());
        trace.finish(&self.balancer, &snap, client, method, uri.path(), start);
        resp
    }

    /// Phases 1–2 (match, extract) and the node-independent rewriting, then the attempts.
    async fn forward(
        &self,
        snap: &Snapshot,
        req: Request<Incoming>,
        trace: &mut Trace,
    ) -> Result<Response<ResponseBody>, Fail> {
        let (mut parts, body) = req.into_parts();
        // A body declared larger than the listener takes: `413` before anything is read or
        // sent (a body without a length is counted while it streams, in `attempts`).
        let declared = body.size_hint().exact().or_else(|| {
            parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        });
        if declared_body_too_large(self.max_body, declared) {
            return Err((ProxyError::BodyTooLarge, None));
        }
        let host = request_host(&parts).map_err(|r| (ProxyError::BadHost(r), None))?;
        join_h2_cookies(&mut parts);
        let started_ms = now_ms();
        // The client's cookies and target as sent: each attempt rewrites from these.
        let cookie_values: Vec<HeaderValue> = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .cloned()
            .collect();
        let original_uri = parts.uri.clone();
        let lines: Vec<Option<&str>> = cookie_values.iter().map(|v| v.to_str().ok()).collect();
        let path = original_uri.path();
        let m = pipeline::match_and_extract(snap, host.as_deref(), path, &lines, started_ms)
            .map_err(|e| (e, None))?;
        trace.pool_ix = Some(m.pool_ix);
        let pool = m.pool;
        let settings = &snap.config.session.settings;
        let client_upgrade = take_client_upgrade(&mut parts);
        prepare_request(
            &mut parts,
            host.as_deref(),
            self.client,
            self.tls,
            &pool.cfg.failover.header,
            self.trusted.extends(self.client.ip()),
        );
        // A request that may be replayed after a failure past sending: idempotent, no body.
        let replay = (pool.cfg.failover.retry_idempotent
            && is_idempotent(&parts.method)
            && body.is_end_stream())
        .then(|| parts.clone());
        let req = Prepared {
            pool,
            sep: settings.separator,
            ids: m.ids,
            cookie_name: m.cookie_name,
            location: m.found.as_ref().map(|f| &f.location),
            reissue: m.found.as_ref().is_some_and(|f| f.older_forms),
            cookie_values: &cookie_values,
            lines: &lines,
            original_uri: &original_uri,
            had_body: !body.is_end_stream(),
            replay,
            started_ms,
            path_param: settings.path_param.as_deref(),
        };
        self.attempts(&req, parts, body, client_upgrade, trace)
            .await
    }

    /// Phases 3–6 for each node tried, through the shared attempt loop ([`Attempts`]):
    /// connect, send, and the response; on a failure the request is restored for the next
    /// attempt (from hyper's unsent request, or the replay copy).
    async fn attempts(
        &self,
        req: &Prepared<'_>,
        mut parts: http::request::Parts,
        body: Incoming,
        mut client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        trace: &mut Trace,
    ) -> Result<Response<ResponseBody>, Fail> {
        let pool = req.pool;
        // Set when the client's body passes `max_body_bytes` while it streams to a node.
        let too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let idle = pool.cfg.timeouts.body_idle;
        let mut body = Some(ForwardBody::client(body, self.max_body, &too_large, idle));
        let mut cookies_dirty = false;
        let replayable = req.replay.is_some();
        let mut attempts = Attempts::new(pool, req.ids, req.sep, replayable, req.had_body);
        loop {
            let turn = attempts.next(trace).await?;
            let node = turn.node;
            if let Some(cfg) = &node.ajp {
                let mut state = AjpState {
                    upgrade: client_upgrade.is_some(),
                    parts: &mut parts,
                    body: &mut body,
                    cookies_dirty: &mut cookies_dirty,
                    too_large: &too_large,
                };
                let tried = self.attempt_ajp(req, cfg, turn, &mut attempts, &mut state, trace);
                match Box::pin(tried).await? {
                    Some(resp) => return Ok(resp),
                    None => continue,
                }
            }
            let conns = self.conns.get(node.slot);
            let t = &pool.cfg.timeouts;
            let checkout = conns
                .checkout(&node.addr, t.connect, t.idle, turn.fresh, turn.epoch)
                .await;
            let (sender, reused) = match checkout {
                Ok(c) => c,
                Err(e) => {
                    let failed = Failed::new(Failure::Connect, e.to_string(), false);
                    attempts.failed(turn, failed)?;
                    continue;
                }
            };
            let ids = attempts.rebind(&turn).await?;
            self.rewrite_for_node(req, &mut parts, turn.choice, &ids, &mut cookies_dirty);
            let body_now = body.take().unwrap_or_else(ForwardBody::empty);
            let request = Request::from_parts(take_parts(&mut parts), body_now);
            turn.slot.sending();
            let sent_at = Instant::now();
            let (failure, reason, err) = match send(sender, request, t.response).await {
                SendResult::Response(resp, sender) => {
                    trace.upstream = Some(sent_at.elapsed());
                    let conn = (sender, conns, turn.epoch);
                    let upgrade = client_upgrade.take();
                    return Ok(self.respond(req, node, &ids, resp, conn, turn.slot, upgrade));
                }
                SendResult::NotSent(unsent, reason) => {
                    let (p, b) = unsent.into_parts();
                    parts = p;
                    body = Some(b);
                    cookies_dirty = true;
                    (Failure::NotSent, reason, None)
                }
                // Not the node's fault, nor a broken client connection.
                SendResult::ClientBody(reason)
                | SendResult::Failed(ProxyError::Upstream(reason))
                    if too_large.load(Ordering::Relaxed) =>
                {
                    (Failure::BodyTooLarge, reason, None)
                }
                SendResult::ClientBody(reason) => {
                    tracing::debug!(node = %node.route, reason = %reason, "client request body failed");
                    (Failure::ClientBody, reason, None)
                }
                SendResult::ClientStalled(reason) => {
                    tracing::debug!(node = %node.route, reason = %reason, "client request body stalled");
                    (Failure::ClientStalled, reason, None)
                }
                SendResult::Failed(err) => {
                    let failure = match err {
                        ProxyError::Timeout(_) => Failure::Timeout,
                        _ => Failure::Upstream,
                    };
                    (failure, err.to_string(), Some(err))
                }
            };
            let failed = Failed {
                err,
                renamed: attempts.renamed(&ids),
                ..Failed::new(failure, reason, reused)
            };
            drop(ids);
            attempts.failed(turn, failed)?;
            restore_replay(req, failure, &mut parts, &mut body, &mut cookies_dirty);
        }
    }

    /// One attempt on an AJP node ([`ajp_exchange`]): `Some` response, or `None` when the
    /// failure was recorded and the loop goes on to the next attempt.
    async fn attempt_ajp<'p>(
        &self,
        req: &Prepared<'_>,
        cfg: &AjpConfig,
        turn: Turn<'p>,
        attempts: &mut Attempts<'p>,
        st: &mut AjpState<'_>,
        trace: &mut Trace,
    ) -> Result<Option<Response<ResponseBody>>, Fail> {
        if st.upgrade {
            let why = "WebSocket upgrades cannot cross AJP (the node speaks AJP/1.3)";
            return Err((ProxyError::NotImplemented(why), None));
        }
        let node = turn.node;
        let t = &req.pool.cfg.timeouts;
        let connected =
            ajp_exchange::connect(&self.conns.ajp, node, cfg, t, turn.epoch, turn.fresh).await;
        let (stream, reused) = match connected {
            Ok(c) => c,
            Err(e) => {
                attempts.failed(turn, Failed::new(Failure::Connect, e, false))?;
                return Ok(None);
            }
        };
        let ids = attempts.rebind(&turn).await?;
        self.rewrite_for_node(req, st.parts, turn.choice, &ids, st.cookies_dirty);
        let body_now = st.body.take().unwrap_or_else(ForwardBody::empty);
        let request = Request::from_parts(take_parts(st.parts), body_now);
        turn.slot.sending();
        let sent_at = Instant::now();
        let client = ajp_exchange::ClientSide {
            addr: self.client,
            listener_port: self.listener_port,
            is_ssl: self.tls,
            tls: self.client_tls.as_deref(),
        };
        let home = ajp_exchange::Home {
            pools: self.conns.clone(),
            slot: node.slot,
            epoch: turn.epoch,
            rt: node.rt.clone(),
        };
        let (failure, reason) =
            match ajp_exchange::send(stream, request, &client, cfg, t, home).await {
                ajp_exchange::Sent::Response(resp) => {
                    trace.upstream = Some(sent_at.elapsed());
                    return Ok(Some(self.respond_ajp(req, node, &ids, resp, turn.slot)));
                }
                ajp_exchange::Sent::NotSent(unsent, reason) => {
                    let (p, b) = unsent.into_parts();
                    *st.parts = p;
                    *st.body = Some(b);
                    *st.cookies_dirty = true;
                    (Failure::NotSent, reason)
                }
                ajp_exchange::Sent::Failed((Failure::ClientBody, reason))
                    if st.too_large.load(Ordering::Relaxed) =>
                {
                    (Failure::BodyTooLarge, reason)
                }
                ajp_exchange::Sent::Failed(fault) => fault,
            };
        let failed = Failed {
            renamed: attempts.renamed(&ids),
            ..Failed::new(failure, reason, reused)
        };
        drop(ids);
        attempts.failed(turn, failed)?;
        if matches!(failure, Failure::Upstream | Failure::Timeout) {
            if let Some(saved) = &req.replay {
                *st.parts = saved.clone();
                *st.body = Some(ForwardBody::empty());
                *st.cookies_dirty = true;
            }
        }
        Ok(None)
    }

    /// An AJP node's response for the client: judged, rewritten by the binder, learned from,
    /// its body streaming from the exchange's task.
    fn respond_ajp(
        &self,
        req: &Prepared<'_>,
        node: &Node,
        ids: &Ids<'_>,
        resp: Response<ajp_exchange::AjpBody>,
        guard: InflightGuard,
    ) -> Response<ResponseBody> {
        let pool = req.pool;
        pipeline::judge_response(pool, node, resp.status(), req.started_ms);
        let plan = pipeline::response_plan(pool, req.cookie_name, ids, req.reissue, self.tls);
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let issued = rewrite_response_headers(&mut parts.headers, req, &plan);
        self.learn_issued(req, node, ids, &issued);
        Response::from_parts(
            parts,
            ResponseBody::Ajp {
                body,
                _guard: guard,
            },
        )
    }

    /// Tells the registry which session ids the node's response issued (the same for HTTP and
    /// AJP nodes).
    fn learn_issued(&self, req: &Prepared<'_>, node: &Node, ids: &Ids<'_>, issued: &[String]) {
        pipeline::learn(
            &self.balancer,
            req.pool,
            node,
            req.sep,
            req.ids.map(|i| i.backend),
            ids.forward_id.as_deref(),
            issued.iter().map(String::as_str),
        );
    }

    /// Node-dependent rewriting: the id the backend sees, the failover header.
    fn rewrite_for_node(
        &self,
        req: &Prepared<'_>,
        parts: &mut http::request::Parts,
        choice: Choice,
        ids: &Ids<'_>,
        cookies_dirty: &mut bool,
    ) {
        apply_session(parts, req, ids.forward_id.as_deref(), cookies_dirty);
        let header = &req.pool.cfg.failover.header;
        parts.headers.remove(header);
        if let Some(v) = pipeline::failover_header_value(choice, req.ids.as_ref(), req.sep) {
            if let Ok(v) = HeaderValue::from_str(&v) {
                parts.headers.insert(header.clone(), v);
            }
        }
    }

    /// Phase 6: passive health from the status, the response rewritten for the client, and
    /// the registry told what the response issued.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        req: &Prepared<'_>,
        node: &Node,
        ids: &Ids<'_>,
        resp: Response<Incoming>,
        conn: (Sender, Arc<UpstreamPool>, u64),
        guard: InflightGuard,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<ResponseBody> {
        let pool = req.pool;
        pipeline::judge_response(pool, node, resp.status(), req.started_ms);
        let plan = pipeline::response_plan(pool, req.cookie_name, ids, req.reissue, self.tls);
        let upgrade = client_upgrade.map(|on| ClientUpgrade {
            on,
            policy: self.tunnels.clone(),
            permit: self.permit.clone(),
        });
        let (resp, issued) = respond(resp, conn, guard, req, &plan, upgrade);
        self.learn_issued(req, node, ids, &issued);
        resp
    }
}

/// What an AJP attempt changes of the request loop's state: the request to send (given back
/// when it was not sent), the client body, and whether the cookies need rewriting again.
struct AjpState<'s> {
    /// The client asked for an upgrade, which AJP cannot carry.
    upgrade: bool,
    parts: &'s mut http::request::Parts,
    body: &'s mut Option<ForwardBody>,
    cookies_dirty: &'s mut bool,
    too_large: &'s std::sync::atomic::AtomicBool,
}

/// What every attempt of one request shares: the pool, the session as the client sent it, and
/// the copy kept for a replay.
struct Prepared<'a> {
    pool: &'a Pool,
    sep: char,
    ids: Option<SessionIds<'a>>,
    cookie_name: &'a str,
    location: Option<&'a IdLocation>,
    /// The request also carried older forms of its session id (stale cookies).
    reissue: bool,
    cookie_values: &'a [HeaderValue],
    /// `cookie_values` as text (`None`: not UTF-8), as the session was extracted from them.
    lines: &'a [Option<&'a str>],
    original_uri: &'a Uri,
    had_body: bool,
    replay: Option<http::request::Parts>,
    /// `now_ms()` when the request arrived: passive marks older than this are cleared by a
    /// good answer.
    started_ms: u64,
    path_param: Option<&'a str>,
}

/// HTTP/2 may split cookies over several fields; an HTTP/1.1 backend gets one header
/// (RFC 9113, 8.2.3).
fn join_h2_cookies(parts: &mut http::request::Parts) {
    if parts.version != Version::HTTP_2
        || parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .nth(1)
            .is_none()
    {
        return;
    }
    let joined: Vec<&str> = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if let Ok(v) = HeaderValue::from_str(&joined.join("; ")) {
        parts.headers.insert(header::COOKIE, v);
    }
}

/// Takes hyper's upgrade handle out of a request that asks for an upgrade (WebSocket).
fn take_client_upgrade(parts: &mut http::request::Parts) -> Option<hyper::upgrade::OnUpgrade> {
    is_upgrade(&parts.headers).then(|| {
        let mut tmp = Request::new(());
        *tmp.extensions_mut() = std::mem::take(&mut parts.extensions);
        let on = hyper::upgrade::on(&mut tmp);
        parts.extensions = std::mem::take(tmp.extensions_mut());
        on
    })
}

/// A client's upgrade request, and how the tunnel it may become is bounded.
struct ClientUpgrade {
    on: hyper::upgrade::OnUpgrade,
    policy: TunnelPolicy,
    permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// Rewrites the upstream response for the client and wires up the body (or the tunnel).
/// Also returns the session ids the response issued (client-facing), for the registry.
fn respond(
    resp: Response<Incoming>,
    conn: (Sender, Arc<UpstreamPool>, u64),
    guard: InflightGuard,
    req: &Prepared<'_>,
    plan: &ResponsePlan<'_>,
    client_upgrade: Option<ClientUpgrade>,
) -> (Response<ResponseBody>, Vec<String>) {
    let (mut parts, body) = resp.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(up) = client_upgrade {
            let mut tmp = Response::new(());
            *tmp.extensions_mut() = std::mem::take(&mut parts.extensions);
            let upstream_upgrade = hyper::upgrade::on(&mut tmp);
            let tasks = up.policy.tasks.clone();
            tasks.spawn(async move {
                let _guard = guard;
                let _conn = conn;
                let _permit = up.permit;
                match tokio::try_join!(up.on, upstream_upgrade) {
                    Ok((client, upstream)) => run_tunnel(client, upstream, &up.policy).await,
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            return (
                Response::from_parts(parts, ResponseBody::Synthetic(Full::new(Bytes::new()))),
                Vec::new(),
            );
        }
    }
    strip_hop_by_hop(&mut parts.headers, false);
    let issued = rewrite_response_headers(&mut parts.headers, req, plan);
    let idle = req.pool.cfg.timeouts.body_idle;
    let body = ResponseBody::upstream(body, conn, guard, idle);
    (Response::from_parts(parts, body), issued)
}

/// The byte tunnel between an upgraded client and node ([`tunnel::relay`]). The node's side
/// is our own TCP connection: keepalive goes on its socket, after the bytes hyper read past
/// the node's `101` reached the client.
async fn run_tunnel(
    client: hyper::upgrade::Upgraded,
    upstream: hyper::upgrade::Upgraded,
    policy: &TunnelPolicy,
) {
    use tokio::io::AsyncWriteExt;
    let mut client = TokioIo::new(client);
    let end = match upstream.downcast::<TokioIo<tokio::net::TcpStream>>() {
        Ok(parts) => {
            let mut node = parts.io.into_inner();
            tunnel::keepalive(&node);
            if client.write_all(&parts.read_buf).await.is_err() {
                return;
            }
            tunnel::relay(&mut client, &mut node, policy).await
        }
        Err(upstream) => {
            let mut upstream = TokioIo::new(upstream);
            tunnel::relay(&mut client, &mut upstream, policy).await
        }
    };
    tracing::debug!(?end, "tunnel closed");
}

enum SendResult {
    Response(Response<Incoming>, Sender),
    NotSent(Request<ForwardBody>, String),
    Failed(ProxyError),
    /// The client's own request body failed (aborted upload, length mismatch): not the node's
    /// fault, so the node is not marked down.
    ClientBody(String),
    /// The client stopped sending its body for `timeouts.body_idle`: not the node's fault.
    ClientStalled(String),
}

/// Sends on `sender`. A connection that closed before taking the request gives the request
/// back unsent (`core::retry` decides whether a new connection or another node gets it).
/// `timeouts.response` counts from the end of the request body.
async fn send(
    mut sender: Sender,
    request: Request<ForwardBody>,
    response_timeout: Duration,
) -> SendResult {
    let upload = request.body().upload();
    let fut = sender.try_send_request(request);
    match head_within(fut, upload.clone(), response_timeout).await {
        None => SendResult::Failed(ProxyError::Timeout(response_timeout)),
        Some(Ok(resp)) => SendResult::Response(resp, sender),
        Some(Err(mut e)) => match e.take_message() {
            Some(req) => SendResult::NotSent(req, e.into_error().to_string()),
            None => {
                let err = e.into_error();
                let stalled = upload
                    .as_ref()
                    .is_some_and(|u| *u.borrow() == UploadState::Stalled);
                if stalled {
                    return SendResult::ClientStalled(err.to_string());
                }
                // A failure of the body we were streaming from the client is a user error.
                if err.is_user() || err.is_body_write_aborted() {
                    return SendResult::ClientBody(err.to_string());
                }
                SendResult::Failed(ProxyError::Upstream(err.to_string()))
            }
        },
    }
}

/// `fut` (the node's response head), or `None` once `timeout` passed since the request body
/// ended: at once for a body that was empty (`upload` is `None`), else when the upload says
/// so. An upload that goes away without ending (it failed: `fut` fails too) starts the
/// timeout then, so the wait is bounded whatever happens.
async fn head_within<F: Future>(
    fut: F,
    upload: Option<UploadWatch>,
    timeout: Duration,
) -> Option<F::Output> {
    let expired = async {
        let end = match upload {
            None => Instant::now(),
            Some(mut rx) => {
                let ended = rx
                    .wait_for(|s| matches!(s, UploadState::Ended(_)))
                    .await
                    .map(|s| *s);
                match ended {
                    Ok(UploadState::Ended(at)) => at,
                    _ => Instant::now(),
                }
            }
        };
        tokio::time::sleep_until((end + timeout).into()).await;
    };
    tokio::select! {
        r = fut => Some(r),
        () = expired => None,
    }
}

/// Moves the request parts out to send them, leaving an empty shell that is refilled from a
/// request hyper hands back unsent (or from the replay copy).
fn take_parts(parts: &mut http::request::Parts) -> http::request::Parts {
    let (empty, _) = Request::new(()).into_parts();
    std::mem::replace(parts, empty)
}

/// Host of the request, or why the client gets a `400`, as the native path decides it
/// (RFC 9112 §3.2): more than one `Host` field, an invalid one, or none on HTTP/1.1 without an
/// absolute-form target is refused; an absolute-form target's authority replaces `Host`. On
/// HTTP/2 the `:authority` wins over a `Host` field (RFC 9113 §8.3.1).
fn request_host(parts: &http::request::Parts) -> Result<Option<String>, &'static str> {
    let mut fields = parts.headers.get_all(header::HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return Err("more than one Host header");
    }
    if let Some(a) = parts.uri.authority() {
        return Ok(Some(a.as_str().to_string()));
    }
    match field {
        Some(v) if crate::h1::is_valid_host(v.as_bytes()) => {
            Ok(v.to_str().ok().map(str::to_string))
        }
        Some(_) => Err("invalid Host header"),
        None if parts.version == http::Version::HTTP_11 => Err("missing Host header"),
        None => Ok(None),
    }
}

/// Puts `forward_id` where the client had its id (cookie or path parameter), starting from the
/// client's original cookies and path so a retry on another node starts clean.
fn apply_session(
    parts: &mut http::request::Parts,
    req: &Prepared<'_>,
    forward_id: Option<&str>,
    cookies_dirty: &mut bool,
) {
    let (Some(loc), Some(forward_id)) = (req.location, forward_id) else {
        return;
    };
    let (cookie_values, lines, original_uri) = (req.cookie_values, req.lines, req.original_uri);
    let (path, query) = (original_uri.path(), original_uri.query());
    match pipeline::session_edit(loc, lines, req.cookie_name, path, query, forward_id) {
        SessionEdit::Unchanged if matches!(loc, IdLocation::PathParam { .. }) => {
            parts.uri = original_uri.clone();
        }
        // The common sticky hit: the client's cookies go through as they are.
        SessionEdit::Unchanged if !*cookies_dirty => {}
        SessionEdit::Unchanged => {
            parts.headers.remove(header::COOKIE);
            for v in cookie_values {
                parts.headers.append(header::COOKIE, v.clone());
            }
        }
        SessionEdit::CookieLines(new_lines) => {
            *cookies_dirty = true;
            parts.headers.remove(header::COOKIE);
            for (i, line) in lines.iter().enumerate() {
                if line.is_none() {
                    parts
                        .headers
                        .append(header::COOKIE, cookie_values[i].clone());
                }
            }
            for l in new_lines {
                if let Ok(v) = HeaderValue::from_str(&l) {
                    parts.headers.append(header::COOKIE, v);
                }
            }
        }
        SessionEdit::Target(t) => {
            if let Ok(uri) = t.parse::<Uri>() {
                parts.uri = uri;
            }
        }
    }
}

/// `Set-Cookie` and `Location` rewriting by the binder; returns the session ids issued.
fn rewrite_response_headers(
    headers: &mut HeaderMap,
    req: &Prepared<'_>,
    plan: &ResponsePlan<'_>,
) -> Vec<String> {
    let mut issued = Vec::new();
    let has_set_cookie = headers.contains_key(header::SET_COOKIE);
    if has_set_cookie || plan.client_changed || plan.reissue {
        let mut values: Vec<String> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let before = values.clone();
        let path = req.original_uri.path();
        issued = pipeline::rewrite_set_cookies(req.pool, plan, path, &mut values).issued;
        if values != before {
            let raw: Vec<HeaderValue> = headers
                .get_all(header::SET_COOKIE)
                .iter()
                .cloned()
                .collect();
            headers.remove(header::SET_COOKIE);
            // Values that were not UTF-8 were not parsed: keep them as they were.
            for v in raw.iter().filter(|v| v.to_str().is_err()) {
                headers.append(header::SET_COOKIE, v.clone());
            }
            for v in values {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.append(header::SET_COOKIE, v);
                }
            }
        }
    }
    if let (Some(param), Some(from), Some(to)) = (req.path_param, plan.forward_id, plan.client_id) {
        if from != to {
            if let Some(loc) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                if let Some(new) = binder::rewrite_path_param(loc, param, from, to) {
                    if let Ok(v) = HeaderValue::from_str(&new) {
                        headers.insert(header::LOCATION, v);
                    }
                }
            }
        }
    }
    issued
}

/// A short text response made by the balancer itself.
pub fn synthetic(
    status: StatusCode,
    reason: &str,
    retry_after: Option<Duration>,
) -> Response<ResponseBody> {
    let s = Synthetic::new(status, reason, retry_after);
    let mut resp = Response::new(ResponseBody::Synthetic(Full::new(Bytes::from(s.body))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(Synthetic::CONTENT_TYPE),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(Synthetic::CACHE_CONTROL),
    );
    if let Some(secs) = s.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// The body sent to the client: an upstream body whose connection returns to the pool when it
/// ends, or a synthetic one.
pub enum ResponseBody {
    Upstream {
        body: Incoming,
        /// Taken when the body ends and the connection goes back to the pool.
        conn: Option<(Sender, Arc<UpstreamPool>, u64)>,
        guard: InflightGuard,
        /// `timeouts.body_idle` between two frames from the node.
        idle: BodyIdle,
    },
    Synthetic(Full<Bytes>),
    /// An AJP node's body, and the node's slot held until it ends.
    Ajp {
        body: ajp_exchange::AjpBody,
        _guard: InflightGuard,
    },
}

impl ResponseBody {
    fn upstream(
        body: Incoming,
        conn: (Sender, Arc<UpstreamPool>, u64),
        guard: InflightGuard,
        idle: Duration,
    ) -> Self {
        let mut b = ResponseBody::Upstream {
            body,
            conn: Some(conn),
            guard,
            idle: BodyIdle::new(idle),
        };
        b.release_if_done();
        b
    }

    /// Returns the connection to the pool once the upstream body is complete.
    fn release_if_done(&mut self) {
        if let ResponseBody::Upstream { body, conn, .. } = self {
            if body.is_end_stream() {
                if let Some((sender, pool, epoch)) = conn.take() {
                    pool.checkin(sender, epoch);
                }
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.release_if_done();
    }
}

/// The node sent no response body frame for `timeouts.body_idle`.
#[derive(Debug, thiserror::Error)]
#[error("the node sent no response body frame for {0:?} (timeouts.body_idle)")]
pub struct ResponseStalled(pub Duration);

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = upstream::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this {
            ResponseBody::Synthetic(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(|never| match never {}))),
            ResponseBody::Ajp { body, .. } => Pin::new(body).poll_frame(cx),
            ResponseBody::Upstream {
                body,
                conn,
                guard,
                idle,
            } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(_))) => idle.touch(),
                    Poll::Pending if idle.expired(cx) => {
                        // The response started: no retry. The node's connection is dropped
                        // (not pooled) and the error resets the client's stream or connection.
                        conn.take();
                        let rt = guard.runtime();
                        rt.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                        let limit = idle.limit();
                        tracing::warn!(fault = "stalled mid-body (timeouts.body_idle)", idle = ?limit, "response body cut off");
                        return Poll::Ready(Some(Err(Box::new(ResponseStalled(limit)))));
                    }
                    _ => {}
                }
                if matches!(polled, Poll::Ready(None)) || body.is_end_stream() {
                    if let Some((sender, pool, epoch)) = conn.take() {
                        pool.checkin(sender, epoch);
                    }
                }
                polled.map(|o| o.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Synthetic(full) => full.is_end_stream(),
            ResponseBody::Upstream { body, .. } => body.is_end_stream(),
            ResponseBody::Ajp { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Synthetic(full) => full.size_hint(),
            ResponseBody::Upstream { body, .. } => body.size_hint(),
            ResponseBody::Ajp { body, .. } => body.size_hint(),
        }
    }
}

/// After a failure past sending (only a replayable request gets that far), the next attempt
/// starts from the request's saved copy.
fn restore_replay(
    req: &Prepared<'_>,
    failure: Failure,
    parts: &mut http::request::Parts,
    body: &mut Option<ForwardBody>,
    cookies_dirty: &mut bool,
) {
    if matches!(failure, Failure::Upstream | Failure::Timeout) {
        if let Some(saved) = &req.replay {
            *parts = saved.clone();
            *body = Some(ForwardBody::empty());
            *cookies_dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_rules() {
        use http::Version as V;
        let parts = |uri: &str, version: V, hosts: &[&str]| {
            let mut b = Request::builder().uri(uri).version(version);
            for h in hosts {
                b = b.header(header::HOST, *h);
            }
            b.body(()).unwrap().into_parts().0
        };
        type Case<'a> = (&'a str, V, &'a [&'a str], Result<Option<&'a str>, &'a str>);
        let cases: &[Case] = &[
            ("/", V::HTTP_11, &["app.test"], Ok(Some("app.test"))),
            (
                "/",
                V::HTTP_11,
                &["app.test:8080"],
                Ok(Some("app.test:8080")),
            ),
            ("/", V::HTTP_11, &[], Err("missing Host header")),
            ("/", V::HTTP_10, &[], Ok(None)),
            (
                "/",
                V::HTTP_11,
                &["a.test", "b.test"],
                Err("more than one Host header"),
            ),
            ("/", V::HTTP_11, &["a b"], Err("invalid Host header")),
            (
                "http://other.test/x",
                V::HTTP_11,
                &["app.test"],
                Ok(Some("other.test")),
            ),
            (
                "http://other.test/x",
                V::HTTP_11,
                &[],
                Ok(Some("other.test")),
            ),
            ("https://h2.test/x", V::HTTP_2, &[], Ok(Some("h2.test"))),
            (
                "https://h2.test/x",
                V::HTTP_2,
                &["h2.test"],
                Ok(Some("h2.test")),
            ),
        ];
        for (uri, version, hosts, want) in cases {
            let got = request_host(&parts(uri, *version, hosts));
            assert_eq!(
                got.as_ref().map(Option::as_deref),
                want.as_ref().map(|o| *o),
                "{uri} {version:?} {hosts:?}"
            );
        }
    }
}
