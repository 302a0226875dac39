//! The HTTP/2 request path: one service per HTTP/2 client connection (h2c by prior knowledge,
//! `h2` by ALPN), driving the phases of [`crate::proxy::pipeline`] for each stream that
//! [`crate::proxy::h2_server`] hands it, over the `http` crate's types. HTTP/2
//! carries no `Upgrade` (h2 refuses the field, and extended CONNECT is not enabled), so no
//! request here becomes a tunnel.
//!
//! [`ProxyService::handle`] does match and extract once; [`ProxyService::attempts`] runs
//! select → connect → rebind → send for each node tried, and carries out what `core::retry`
//! decides when an attempt fails. An HTTP/1.1 node is reached through
//! [`crate::proxy::node_http`] on a socket of the shared pool, with the head
//! [`crate::proxy::node_head`] writes from the request's fields; an AJP node through
//! [`crate::proxy::ajp_exchange`]. The response is rewritten by the binder and streamed back,
//! the node's socket returning to the pool when the body ends. Every failure becomes a short
//! synthetic response with [`ProxyError::status`].

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

use crate::config::AjpConfig;
use crate::config::ListenerConfig;
use crate::core::binder::{self, ResponsePlan};
use crate::core::forwarding::{
    declared_body_too_large, is_idempotent, prepare_request, strip_hop_by_hop, TrustedProxies,
};
use crate::core::retry::Failure;
use crate::core::select::Choice;
use crate::core::session::IdLocation;
use crate::h1::BodyFraming;
use crate::proxy::ajp_client::ClientTls;
use crate::proxy::ajp_exchange;
use crate::proxy::attempt::{Attempts, Fail, Failed, Synthetic, Trace, Turn};
use crate::proxy::buffers::Buf;
use crate::proxy::client_body::ClientBody;
use crate::proxy::node_head;
use crate::proxy::node_http;
use crate::proxy::pipeline::{self, Ids, InflightGuard, SessionEdit, SessionIds};
use crate::proxy::upstream::{self, connect_http, ForwardBody, UpstreamPools};
use crate::state::node::ms_at;
use crate::state::snapshot::{Node, Pool};
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

    /// The per-listener settings of `cfg`: its trusted proxies and body limit.
    pub fn with_listener(mut self, cfg: &ListenerConfig) -> Self {
        self.trusted = cfg.trusted_proxies.clone();
        self.max_body = cfg.max_body_bytes;
        self.listener_port = cfg.bind.port();
        self
    }

    /// One stream's request, answered: its head in `parts` (which the attempts rewrite for
    /// each node tried), its body in `body`. Dropped unanswered when the client resets the
    /// stream, which spends from the connection's [`ResetBudget`].
    pub fn call<'s>(
        &'s self,
        parts: &'s mut http::request::Parts,
        body: ClientBody,
    ) -> impl Future<Output = Response<ResponseBody>> + 's {
        let watch = self.resets.clone().map(StreamWatch::new);
        self.handle(parts, body, watch)
    }
}

/// The rapid-reset guard of one HTTP/2 connection (CVE-2023-44487): a client that opens
/// streams and resets them before their answer makes the balancer select, connect and forward
/// for nothing, at no cost of its own. Each such reset spends one unit of the budget
/// (`listeners[].h2.max_reset_streams`), each answered stream gives one back (up to the
/// maximum); a reset that finds it empty cancels [`ResetBudget::exhausted`], and the listener
/// closes the connection with `GOAWAY`. A browser that cancels a few requests among many it
/// lets finish never gets there. Streams reset before the server accepted them are h2's own
/// limit (`max_pending_accept_reset_streams`, set to the same value).
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
/// before the response head was handed to the connection.
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
    /// Phases 1–2 (match, extract) and the node-independent rewriting, then the attempts;
    /// the outcome logged and counted. One future from here to the node's answer: the
    /// request's head is borrowed, not moved, down the levels, and each level's future is
    /// copied into its caller's when awaited, so fewer and smaller levels are fewer bytes
    /// moved per request.
    async fn handle(
        &self,
        parts: &mut http::request::Parts,
        body: ClientBody,
        watch: Option<StreamWatch>,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let method = parts.method.clone();
        // The client's target as sent: the log names it and each attempt rewrites from it.
        let original_uri = parts.uri.clone(); // shares the request's buffer; no copy
        let mut trace = Trace::default();
        let snap = self.balancer.snapshot();
        let answer = 'forward: {
            let host = match self.admit(parts, &body) {
                Ok(host) => host,
                Err(e) => break 'forward Err(e),
            };
            // The clock read once for the request's start serves its `now_ms` too.
            let started_ms = ms_at(start);
            // The client's cookies as sent: each attempt rewrites from these.
            let cookie_values: Vec<HeaderValue> = parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .cloned()
                .collect();
            let lines: Vec<Option<&str>> = cookie_values.iter().map(|v| v.to_str().ok()).collect();
            let path = original_uri.path();
            let m =
                match pipeline::match_and_extract(&snap, host.as_deref(), path, &lines, started_ms)
                {
                    Ok(m) => m,
                    Err(e) => break 'forward Err((e, None)),
                };
            trace.pool_ix = Some(m.pool_ix);
            let pool = m.pool;
            let settings = &snap.config.session.settings;
            // A request that may be replayed after a failure past sending: idempotent, no body.
            let replayable = pool.cfg.failover.retry_idempotent
                && is_idempotent(&parts.method)
                && body.is_end_stream();
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
                replayable,
                start,
                started_ms,
                path_param: settings.path_param.as_deref(),
                host: host.as_deref(),
                extend: self.trusted.extends(self.client.ip()),
            };
            self.attempts(&req, parts, body, &mut trace).await
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err((err, retry_after)) => {
                trace.warn_failed(&snap, &err);
                // Our short reason only: the internal text stays in the log above.
                synthetic(err.status(), &err.to_string(), retry_after)
            }
        };
        trace.status = resp.status().as_u16();
        let (client, method) = (self.client, method.as_str());
        trace.finish(
            &self.balancer,
            &snap,
            client,
            method,
            original_uri.path(),
            start,
        );
        if let Some(w) = watch {
            w.answered();
        }
        resp
    }

    /// Phase 1's refusals, before anything is read or sent: `CONNECT`, a body declared
    /// larger than the listener takes (`413`; a body without a length is counted while it
    /// streams, in `attempts`), a bad `Host`. The request's host when admitted, its cookie
    /// fields joined into one.
    fn admit(
        &self,
        parts: &mut http::request::Parts,
        body: &ClientBody,
    ) -> Result<Option<String>, Fail> {
        if parts.method == http::Method::CONNECT {
            return Err((ProxyError::ConnectUnsupported, None));
        }
        // The body's size hint is the declared `Content-Length` (`ClientBody` read it).
        if declared_body_too_large(self.max_body, body.size_hint().exact()) {
            return Err((ProxyError::BodyTooLarge, None));
        }
        let host = request_host(parts).map_err(|r| (ProxyError::BadHost(r), None))?;
        join_h2_cookies(parts);
        Ok(host)
    }

    /// Phases 3–6 for each node tried, through the shared attempt loop ([`Attempts`]):
    /// connect, send, and the response. The request's parts stay here for every attempt; a
    /// body the node did not get comes back for the next one.
    async fn attempts(
        &self,
        req: &Prepared<'_>,
        parts: &mut http::request::Parts,
        body: ClientBody,
        trace: &mut Trace,
    ) -> Result<Response<ResponseBody>, Fail> {
        let pool = req.pool;
        // Set when the client's body passes `max_body_bytes` while it streams to a node.
        let too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let idle = pool.cfg.timeouts.body_idle;
        let mut body = Some(ForwardBody::client(body, self.max_body, &too_large, idle));
        let mut cookies_dirty = false;
        let mut attempts = Attempts::new(
            pool,
            req.ids,
            req.sep,
            req.replayable,
            req.had_body,
            req.started_ms,
        );
        loop {
            let turn = attempts.next(trace).await?;
            let node = turn.node;
            if let Some(cfg) = &node.ajp {
                let mut state = AjpState {
                    parts: &mut *parts,
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
            let t = &pool.cfg.timeouts;
            let connected =
                connect_http(&self.conns, node, t, turn.epoch, turn.fresh, req.start).await;
            let (stream, reused) = match connected {
                Ok(c) => c,
                Err(reason) => {
                    attempts.failed(turn, Failed::new(Failure::Connect, reason, false))?;
                    continue;
                }
            };
            // A hit's ids at once; only a failover waits for its rebind.
            let ids = match attempts.kept(&turn) {
                Some(ids) => ids,
                None => attempts.rebind(&turn).await?,
            };
            apply_session(parts, req, ids.forward_id.as_deref(), &mut cookies_dirty);
            let failover = pipeline::failover_header_value(turn.choice, req.ids.as_ref(), req.sep);
            let body_now = body.take().filter(|b| !b.is_end_stream());
            let framing = body_framing(parts, body_now.as_ref());
            let ex = node_http::Exchange {
                head: self.node_head(req, parts, failover.as_deref(), framing),
                framing,
                body: body_now,
                is_head: parts.method == http::Method::HEAD,
                reused,
                response_timeout: t.response,
                body_idle: t.body_idle,
            };
            let home = node_http::Home {
                pools: self.conns.clone(),
                slot: node.slot,
                epoch: turn.epoch,
            };
            turn.slot.sending();
            let sent_at = Instant::now();
            let (failure, reason) = match node_http::send(stream, ex, home).await {
                node_http::Sent::Response(resp) => {
                    trace.answered(sent_at);
                    return Ok(self.respond(req, node, &ids, resp, turn.slot));
                }
                node_http::Sent::NotSent(unsent, reason) => {
                    body = unsent;
                    (Failure::NotSent, reason)
                }
                // Not the node's fault, nor a broken client connection.
                node_http::Sent::Failed(Failure::ClientBody, reason)
                    if too_large.load(Ordering::Relaxed) =>
                {
                    (Failure::BodyTooLarge, reason)
                }
                node_http::Sent::Failed(failure, reason) => {
                    if matches!(failure, Failure::ClientBody | Failure::ClientStalled) {
                        tracing::debug!(node = %node.route, reason = %reason, "client request body failed");
                    }
                    (failure, reason)
                }
            };
            let failed = Failed {
                renamed: attempts.renamed(&ids),
                ..Failed::new(failure, reason, reused)
            };
            drop(ids);
            attempts.failed(turn, failed)?;
        }
    }

    /// The head for an HTTP/1.1 node ([`node_head::write_parts_head`]), declaring `framing`.
    fn node_head(
        &self,
        req: &Prepared<'_>,
        parts: &http::request::Parts,
        failover: Option<&str>,
        framing: BodyFraming,
    ) -> Buf {
        let hop = node_head::Hop {
            client: self.client.ip(),
            tls: self.tls,
            extend: req.extend,
            host: req.host.unwrap_or(""),
        };
        let session = node_head::Session {
            failover_name: req.pool.cfg.failover.header.as_str().as_bytes(),
            failover,
            cookie_lines: None,
        };
        let (mut out, mut vals) = (Buf::take(), Buf::take());
        node_head::write_parts_head(parts, &hop, &session, framing, &mut vals.0, &mut out.0);
        out
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
        let ids = match attempts.kept(&turn) {
            Some(ids) => ids,
            None => attempts.rebind(&turn).await?,
        };
        let parts = self.ajp_parts(req, st, turn.choice, &ids);
        let body_now = st.body.take().unwrap_or_else(ForwardBody::empty);
        let request = Request::from_parts(parts, body_now);
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
                    trace.answered(sent_at);
                    return Ok(Some(self.respond_ajp(req, node, &ids, resp, turn.slot)));
                }
                ajp_exchange::Sent::NotSent(unsent, reason) => {
                    *st.body = Some(unsent.into_body());
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

    /// The request for an AJP node: the id it must see, then a copy rewritten as
    /// [`prepare_request`] does (the AJP writer forwards the fields it is given) with the
    /// failover header.
    fn ajp_parts(
        &self,
        req: &Prepared<'_>,
        st: &mut AjpState<'_>,
        choice: Choice,
        ids: &Ids<'_>,
    ) -> http::request::Parts {
        apply_session(st.parts, req, ids.forward_id.as_deref(), st.cookies_dirty);
        let mut parts = st.parts.clone();
        let header = &req.pool.cfg.failover.header;
        prepare_request(
            &mut parts,
            req.host,
            self.client,
            self.tls,
            header,
            req.extend,
        );
        if let Some(v) = pipeline::failover_header_value(choice, req.ids.as_ref(), req.sep) {
            if let Ok(v) = HeaderValue::from_str(&v) {
                parts.headers.insert(header.clone(), v);
            }
        }
        parts
    }

    /// Phase 6: passive health from the status, the response rewritten for the client, and
    /// the registry told what the response issued.
    fn respond(
        &self,
        req: &Prepared<'_>,
        node: &Node,
        ids: &Ids<'_>,
        resp: Response<node_http::NodeBody>,
        guard: InflightGuard,
    ) -> Response<ResponseBody> {
        let pool = req.pool;
        pipeline::judge_response(pool, node, resp.status(), req.started_ms);
        let plan = pipeline::response_plan(pool, req.cookie_name, ids, req.reissue, self.tls);
        let (mut parts, body) = resp.into_parts();
        // The hop-by-hop fields were left out when the head was read.
        let issued = rewrite_response_headers(&mut parts.headers, req, &plan);
        self.learn_issued(req, node, ids, &issued);
        Response::from_parts(parts, ResponseBody::Upstream { body, guard })
    }
}

/// What an AJP attempt changes of the request loop's state: the request to send (given back
/// when it was not sent), the client body, and whether the cookies need rewriting again.
struct AjpState<'s> {
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
    /// Idempotent without a body: may be sent again after a failure past sending.
    replayable: bool,
    /// When the request arrived: the pooled node connection's age at checkout is measured
    /// from it, as on the HTTP/1.1 path.
    start: Instant,
    /// `now_ms()` when the request arrived: passive marks older than this are cleared by a
    /// good answer.
    started_ms: u64,
    path_param: Option<&'a str>,
    /// The request's host as decided ([`request_host`]).
    host: Option<&'a str>,
    /// The peer is a trusted proxy: its forwarding chains are extended, not replaced.
    extend: bool,
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

/// How the head declares the body: its length when the client's request gives one, chunked
/// when the length is unknown, none for no body; but `Content-Length: 0` for a `POST`, `PUT`
/// or `PATCH` without one (servers may answer these `411 Length Required` without a length).
fn body_framing(parts: &http::request::Parts, body: Option<&ForwardBody>) -> BodyFraming {
    match body.map(|b| b.size_hint().exact()) {
        Some(Some(n)) => BodyFraming::Length(n),
        Some(None) => BodyFraming::Chunked,
        None if matches!(
            parts.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        ) =>
        {
            BodyFraming::Length(0)
        }
        None => BodyFraming::Empty,
    }
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
        let path = req.original_uri.path();
        let outcome = pipeline::rewrite_set_cookies(req.pool, plan, path, &mut values);
        let changed = outcome.changed();
        issued = outcome.issued;
        if changed {
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

/// The body sent to the client: a node's (its socket returns to the pool when it ends), or a
/// synthetic one.
pub enum ResponseBody {
    /// An HTTP/1.1 node's body, and the node's slot held until it ends.
    Upstream {
        body: node_http::NodeBody,
        guard: InflightGuard,
    },
    Synthetic(Full<Bytes>),
    /// An AJP node's body, and the node's slot held until it ends.
    Ajp {
        body: ajp_exchange::AjpBody,
        _guard: InflightGuard,
    },
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = upstream::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Synthetic(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(|never| match never {}))),
            ResponseBody::Ajp { body, .. } => Pin::new(body).poll_frame(cx),
            ResponseBody::Upstream { body, guard } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Err(e))) = &polled {
                    // The response started: no retry. The error resets the client's stream;
                    // a node that stalled counts against it.
                    if let Some(stalled) = e.downcast_ref::<node_http::ResponseStalled>() {
                        let rt = guard.runtime();
                        rt.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(fault = "stalled mid-body (timeouts.body_idle)", idle = ?stalled.0, "response body cut off");
                    } else {
                        tracing::debug!(error = %e, "response body cut off");
                    }
                }
                polled
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
