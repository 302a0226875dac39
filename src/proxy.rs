//! The request path: one hyper `Service` per client connection.
//!
//! Phases, in order (DESIGN.md "One request, end to end"): match the pool, extract the session
//! id, select the node ([`balance::choose`]), get a connection (a refused connect marks the node
//! down and moves to the next candidate, the request untouched), rebind a failed-over session
//! ([`binder`]; the `rename` binder asks the store first), rewrite and forward, then rewrite the
//! response's `Set-Cookie`/`Location` and stream the body back. Every failure becomes a short
//! synthetic response through [`ProxyError::status`], the one place errors map to statuses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::backends::{now_ms, Node, NodeRuntime, Pool, RebindResult, Snapshot};
use crate::balance::{self, Choice, NoCandidate, Outcome, SessionKey};
use crate::balancer::Balancer;
use crate::binder::{self, BinderKind, ResponsePlan};
use crate::session::{self, IdLocation};
use crate::store::{OnStoreError, RenameOutcome};
use crate::upstream::{self, ForwardBody, Sender};

/// Everything that can go wrong on the request path, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no pool serves this host and path")]
    NoPool,
    #[error("{0}")]
    NoCandidate(NoCandidate),
    #[error("session store unavailable: {0}")]
    Store(String),
    #[error("no node could be reached ({0} attempts)")]
    Unreachable(usize),
    #[error("upstream failed: {0}")]
    Upstream(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the request body could not be read: {0}")]
    ClientBody(String),
}

impl ProxyError {
    /// The one mapping from errors to statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoPool => StatusCode::NOT_FOUND,
            ProxyError::NoCandidate(_) | ProxyError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unreachable(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Per-connection service.
#[derive(Clone)]
pub struct ProxyService {
    balancer: Arc<Balancer>,
    client: SocketAddr,
    tls: bool,
}

impl ProxyService {
    pub fn new(balancer: Arc<Balancer>, client: SocketAddr, tls: bool) -> Self {
        ProxyService {
            balancer,
            client,
            tls,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// What the access log and counters learn about one request.
/// Indexes into the snapshot rather than names: nothing is allocated for the log line.
struct Trace {
    outcome: Option<Outcome>,
    upstream: Option<Duration>,
    pool_ix: Option<usize>,
    node_ix: Option<usize>,
}

impl ProxyService {
    async fn handle(&self, req: Request<Incoming>) -> Response<ResponseBody> {
        let start = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone(); // shares the request's buffer; no copy
        let mut trace = Trace {
            outcome: None,
            upstream: None,
            pool_ix: None,
            node_ix: None,
        };
        let snap = self.balancer.snapshot();
        let resp = match self.forward(&snap, req, &mut trace).await {
            Ok(resp) => resp,
            Err((err, retry_after)) => {
                if err.status().is_server_error() {
                    let pool = trace
                        .pool_ix
                        .map_or("-", |i| snap.pools[i].cfg.name.as_str());
                    tracing::warn!(pool, error = %err, "request failed");
                }
                synthetic(err.status(), &err.to_string(), retry_after)
            }
        };
        let pool = trace.pool_ix.map(|i| &snap.pools[i]);
        tracing::info!(
            target: "stickyroute::access",
            client = %self.client,
            method = %method,
            // Path parameters (`;jsessionid=`) are cut: session ids are never logged.
            path = uri.path().split(';').next().unwrap_or("/"),
            status = resp.status().as_u16(),
            pool = pool.map_or("-", |p| p.cfg.name.as_str()),
            node = pool
                .zip(trace.node_ix)
                .map_or("-", |(p, n)| p.nodes[n].route.as_str()),
            outcome = trace.outcome.map_or("none", Outcome::as_str),
            upstream_us = trace.upstream.map_or(0, |d| d.as_micros() as u64),
            total_us = start.elapsed().as_micros() as u64,
        );
        self.balancer.metrics.observe_request(
            &snap,
            trace.pool_ix,
            trace.node_ix,
            trace.outcome,
            resp.status(),
            start.elapsed(),
        );
        resp
    }

    async fn forward(
        &self,
        snap: &Snapshot,
        req: Request<Incoming>,
        trace: &mut Trace,
    ) -> Result<Response<ResponseBody>, (ProxyError, Option<Duration>)> {
        let (mut parts, body) = req.into_parts();
        let host = request_host(&parts);
        let pool_ix = snap
            .match_pool_index(host.as_deref(), parts.uri.path())
            .ok_or((ProxyError::NoPool, None))?;
        let pool = &snap.pools[pool_ix];
        trace.pool_ix = Some(pool_ix);
        let settings = &snap.config.session.settings;
        let sep = settings.separator;
        let binder_kind = pool.cfg.binder;
        let retry_after = Some(pool.cfg.failover.recover_after.max(Duration::from_secs(1)));

        // HTTP/2 may split cookies over several fields; an HTTP/1.1 backend gets one header
        // (RFC 9113, 8.2.3).
        if parts.version == Version::HTTP_2
            && parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .nth(1)
                .is_some()
        {
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
        // Extract the session id (owned: the request is rewritten below).
        let now = now_ms();
        let cookie_values: Vec<HeaderValue> = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .cloned()
            .collect();
        let found = {
            let lines: Vec<Option<&str>> = cookie_values.iter().map(|v| v.to_str().ok()).collect();
            session::find_session(settings, &lines, parts.uri.path(), |route| {
                pool.node(route).is_some_and(|n| {
                    n.is_up(now) && n.state() != crate::backends::NodeState::Disabled
                })
            })
            .map(|f| (f.id.to_string(), f.location))
        };
        let cookie_name = match &found {
            Some((_, IdLocation::Cookie { name, .. })) => settings.cookies[*name].as_str(),
            _ => settings
                .cookies
                .first()
                .map_or("JSESSIONID", String::as_str),
        };
        let client_id = found.as_ref().map(|(id, _)| id.as_str());
        let backend_id = client_id.map(|id| binder::backend_facing(binder_kind, id, sep));
        let session_key = match (client_id, backend_id) {
            // An id without a route (`X`, `X.`) names no node: like a foreign id it fails over
            // over the whole pool, keyed by the id, so its requests agree on one node.
            (Some(cid), Some(bid)) => Some(SessionKey {
                pin: session::pin_route(cid, sep).unwrap_or(""),
                backend_id: bid,
            }),
            _ => None,
        };

        // Node-independent request rewriting, done once.
        let client_upgrade = is_upgrade(&parts.headers).then(|| {
            let mut tmp = Request::new(());
            *tmp.extensions_mut() = std::mem::take(&mut parts.extensions);
            let on = hyper::upgrade::on(&mut tmp);
            parts.extensions = std::mem::take(tmp.extensions_mut());
            on
        });
        prepare_request(
            &mut parts,
            host.as_deref(),
            self.client,
            self.tls,
            &pool.cfg.failover.header,
        );
        let original_path = parts.uri.clone();
        // A request that may be replayed after a failure past sending: idempotent, no body.
        let replay = (pool.cfg.failover.retry_idempotent
            && is_idempotent(&parts.method)
            && body.is_end_stream())
        .then(|| parts.clone());
        let mut cookies_dirty = false;
        let had_body = !body.is_end_stream();
        let mut body = Some(ForwardBody::Incoming(body));

        let mut tried: Vec<usize> = Vec::new();
        let mut attempts = 0usize;
        // Set after a reused keep-alive connection failed: the next try opens a new one.
        let mut fresh_next = false;
        let mut retried_fresh = false;
        // Under `rename`: the id the session was renamed to during this request.
        let mut renamed_to: Option<String> = None;
        let max_attempts = pool.cfg.failover.max_attempts;
        loop {
            attempts += 1;
            let choice = balance::choose(pool, session_key, &tried, now_ms())
                .map_err(|e| (ProxyError::NoCandidate(e), retry_after))?;
            let node = &pool.nodes[choice.node];
            trace.outcome = Some(choice.outcome);
            trace.node_ix = Some(choice.node);

            let fresh = std::mem::take(&mut fresh_next);
            let (sender, reused) = match node
                .rt
                .conns
                .checkout(
                    &node.addr,
                    pool.cfg.timeouts.connect,
                    pool.cfg.timeouts.idle,
                    fresh,
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    node.rt.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    mark_down(pool, node, e.to_string());
                    tried.push(choice.node);
                    if attempts >= max_attempts {
                        return Err((ProxyError::Unreachable(attempts), retry_after));
                    }
                    continue;
                }
            };

            // Rebind a moved session for this node. A retry after a rename starts from the
            // id the store holds now, not from the original one.
            let ids = self
                .rebind(
                    pool,
                    sep,
                    node,
                    choice,
                    client_id,
                    renamed_to.as_deref().or(backend_id),
                )
                .await
                .map_err(|e| (e, retry_after))?;
            if binder_kind == BinderKind::Rename && ids.client_changed {
                renamed_to.clone_from(&ids.forward_id);
            }
            if choice.outcome == Outcome::Failover {
                node.rt.stats.failovers_in.fetch_add(1, Ordering::Relaxed);
                if let Some(from) = choice.from {
                    pool.nodes[from]
                        .rt
                        .stats
                        .failovers_out
                        .fetch_add(1, Ordering::Relaxed);
                }
            }

            // Node-dependent rewriting: the id the backend sees, the failover header.
            apply_session(
                &mut parts,
                &cookie_values,
                &original_path,
                found.as_ref().map(|(_, l)| l),
                cookie_name,
                ids.forward_id.as_deref(),
                &mut cookies_dirty,
            );
            parts.headers.remove(&pool.cfg.failover.header);
            if choice.outcome == Outcome::Failover {
                if let (Some(bid), Some(from)) = (
                    backend_id,
                    client_id.and_then(|c| session::pin_route(c, sep)),
                ) {
                    if let Ok(v) = HeaderValue::from_str(&format!("{bid}; route={from}")) {
                        parts.headers.insert(pool.cfg.failover.header.clone(), v);
                    }
                }
            }

            let req_body = match body.take() {
                Some(b) => b,
                None => ForwardBody::Empty,
            };
            let request = Request::from_parts(take_parts(&mut parts), req_body);
            let guard = InflightGuard::new(node.rt.clone());
            node.rt.stats.requests.fetch_add(1, Ordering::Relaxed);
            let sent_at = Instant::now();
            match send(
                sender,
                request,
                node,
                pool.cfg.timeouts.response,
                pool.cfg.timeouts.connect,
            )
            .await
            {
                SendResult::Response(resp, sender) => {
                    trace.upstream = Some(sent_at.elapsed());
                    if pool.cfg.fail_on_status.contains(&resp.status().as_u16()) {
                        mark_down(pool, node, format!("answered {}", resp.status()));
                    } else {
                        // `now` is when this request started: marks set since then stay.
                        node.rt.health.clear_passive_before(now);
                    }
                    let plan = ResponsePlan {
                        binder: binder_kind,
                        cookie_name,
                        forward_id: ids.forward_id.as_deref(),
                        client_id: ids.client_id.as_deref(),
                        client_changed: ids.client_changed,
                        secure: self.tls,
                    };
                    let (resp, issued) = respond(
                        resp,
                        sender,
                        guard,
                        pool,
                        &plan,
                        settings.path_param.as_deref(),
                        client_upgrade,
                    );
                    self.balancer.registry.learn(
                        node.slot,
                        backend_id,
                        ids.forward_id.as_deref(),
                        issued
                            .iter()
                            .map(|id| binder::backend_facing(binder_kind, id, sep)),
                    );
                    return Ok(resp);
                }
                SendResult::NotSent(req, reason) => {
                    // The connection closed before taking the request: nothing was sent.
                    node.rt.stats.connect_errors.fetch_add(1, Ordering::Relaxed);
                    mark_down(pool, node, reason);
                    let (p, b) = req.into_parts();
                    parts = p;
                    cookies_dirty = true;
                    body = Some(b);
                    tried.push(choice.node);
                    if attempts >= max_attempts {
                        return Err((ProxyError::Unreachable(attempts), retry_after));
                    }
                }
                SendResult::ClientBody(reason) => {
                    tracing::debug!(node = %node.route, reason = %reason, "client request body failed");
                    return Err((ProxyError::ClientBody(reason), None));
                }
                SendResult::Failed(err) => {
                    node.rt
                        .stats
                        .upstream_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let timed_out = matches!(err, ProxyError::Timeout(_));
                    if let (Some(saved), true) = (&replay, reused && !timed_out && !retried_fresh) {
                        // A reused keep-alive connection closed under the request: most often
                        // the node closing an idle connection, not the node dying. Replay once
                        // on a new connection before judging the node.
                        tracing::debug!(node = %node.route, error = %err, "pooled connection failed; retrying on a new one");
                        retried_fresh = true;
                        fresh_next = true;
                        parts = saved.clone();
                        cookies_dirty = true;
                        body = Some(ForwardBody::Empty);
                        continue;
                    }
                    // Judge the node only on evidence about the node: a failure on a fresh
                    // connection, or a timeout while nothing of the client was still arriving.
                    // A reused connection closing is the keep-alive race; a timeout during an
                    // upload may be the client's slowness.
                    if (timed_out && !had_body) || (!timed_out && !reused) {
                        mark_down(pool, node, err.to_string());
                    }
                    match &replay {
                        Some(saved) if attempts < max_attempts && !timed_out => {
                            parts = saved.clone();
                            cookies_dirty = true;
                            body = Some(ForwardBody::Empty);
                            tried.push(choice.node);
                        }
                        _ => return Err((err, None)),
                    }
                }
            }
        }
    }

    /// Decides the ids of this request on `node`; a `rename` failover renames in the store.
    async fn rebind(
        &self,
        pool: &Pool,
        sep: char,
        node: &Node,
        choice: Choice,
        client_id: Option<&str>,
        backend_id: Option<&str>,
    ) -> Result<Ids, ProxyError> {
        let (Some(client_id), Some(backend_id)) = (client_id, backend_id) else {
            return Ok(Ids::default());
        };
        let keep = Ids {
            forward_id: Some(backend_id.to_string()),
            client_id: Some(client_id.to_string()),
            client_changed: false,
        };
        if choice.outcome != Outcome::Failover {
            return Ok(keep);
        }
        let rb = binder::rebind(pool.cfg.binder, backend_id, &node.route, sep);
        let stats = &pool.rt.stats;
        let mut result = RebindResult::Rebound;
        if let Some((old, new)) = &rb.rename {
            let Some(store) = &pool.store else {
                return Ok(keep);
            };
            match store.rename(old, new).await {
                Ok(RenameOutcome::Renamed) => {}
                Ok(RenameOutcome::AlreadyRenamed) => result = RebindResult::AlreadyRenamed,
                Ok(RenameOutcome::NotFound) => result = RebindResult::NotFound,
                Err(e) => {
                    stats.store_errors.fetch_add(1, Ordering::Relaxed);
                    stats.rebinds[RebindResult::StoreError as usize]
                        .fetch_add(1, Ordering::Relaxed);
                    let policy = pool.cfg.store.as_ref().map(|s| s.on_error);
                    tracing::warn!(pool = %pool.cfg.name, store = store.kind_name(), to = %node.route, error = %e, "session rename failed");
                    return match policy {
                        Some(OnStoreError::Fail) => Err(ProxyError::Store(e.to_string())),
                        _ => Ok(keep),
                    };
                }
            }
        }
        if pool.cfg.binder != BinderKind::Backend {
            stats.rebinds[result as usize].fetch_add(1, Ordering::Relaxed);
        }
        let changed = rb.client_id != client_id;
        tracing::debug!(pool = %pool.cfg.name, to = %node.route, binder = pool.cfg.binder.as_str(), result = result.as_str(), "session rebound");
        Ok(Ids {
            forward_id: Some(rb.forward_id),
            client_id: Some(rb.client_id),
            client_changed: changed,
        })
    }
}

/// Rewrites the upstream response for the client and wires up the body (or the tunnel).
/// Also returns the session ids the response issued (client-facing), for the registry.
fn respond(
    resp: Response<Incoming>,
    sender: Sender,
    guard: InflightGuard,
    pool: &Pool,
    plan: &ResponsePlan<'_>,
    path_param: Option<&str>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> (Response<ResponseBody>, Vec<String>) {
    let (mut parts, body) = resp.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let mut tmp = Response::new(());
            *tmp.extensions_mut() = std::mem::take(&mut parts.extensions);
            let upstream_upgrade = hyper::upgrade::on(&mut tmp);
            tokio::spawn(async move {
                let _guard = guard;
                let _sender = sender;
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
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
    let issued = rewrite_response_headers(&mut parts.headers, pool, plan, path_param);
    let body = ResponseBody::upstream(body, sender, guard);
    (Response::from_parts(parts, body), issued)
}

/// Ids of one request after the binder.
#[derive(Debug, Default)]
struct Ids {
    forward_id: Option<String>,
    client_id: Option<String>,
    client_changed: bool,
}

enum SendResult {
    Response(Response<Incoming>, Sender),
    NotSent(Request<ForwardBody>, String),
    Failed(ProxyError),
    /// The client's own request body failed (aborted upload, length mismatch): not the node's
    /// fault, so the node is not marked down.
    ClientBody(String),
}

/// Sends on `sender`; a pooled connection that closed under us is replaced once by a fresh one.
async fn send(
    mut sender: Sender,
    request: Request<ForwardBody>,
    node: &Node,
    response_timeout: Duration,
    connect_timeout: Duration,
) -> SendResult {
    let mut request = request;
    for fresh in [false, true] {
        if fresh {
            match upstream::connect(&node.addr, connect_timeout).await {
                Ok(s) => sender = s,
                Err(e) => return SendResult::NotSent(request, e.to_string()),
            }
        }
        let fut = sender.try_send_request(request);
        match tokio::time::timeout(response_timeout, fut).await {
            Err(_) => return SendResult::Failed(ProxyError::Timeout(response_timeout)),
            Ok(Ok(resp)) => return SendResult::Response(resp, sender),
            Ok(Err(mut e)) => match e.take_message() {
                Some(req) if !fresh => request = req,
                Some(req) => return SendResult::NotSent(req, e.into_error().to_string()),
                None => {
                    let err = e.into_error();
                    // A failure of the body we were streaming from the client is a user error.
                    if err.is_user() || err.is_body_write_aborted() {
                        return SendResult::ClientBody(err.to_string());
                    }
                    return SendResult::Failed(ProxyError::Upstream(err.to_string()));
                }
            },
        }
    }
    unreachable!("the loop returns on its second pass")
}

fn mark_down(pool: &Pool, node: &Node, reason: String) {
    let was_up =
        node.rt
            .health
            .mark_down(now_ms(), pool.cfg.failover.recover_after, reason.clone());
    node.rt.conns.clear();
    if was_up {
        node.rt
            .metrics
            .health_down_passive
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(pool = %pool.cfg.name, node = %node.route, reason = %reason, recover_after = ?pool.cfg.failover.recover_after, "node marked down");
    }
}

/// Moves the request parts out to send them, leaving an empty shell that is refilled from a
/// request hyper hands back unsent (or from the replay copy).
fn take_parts(parts: &mut http::request::Parts) -> http::request::Parts {
    let (empty, _) = Request::new(()).into_parts();
    std::mem::replace(parts, empty)
}

/// Host of the request: `Host` header, else the URI authority (HTTP/2).
fn request_host(parts: &http::request::Parts) -> Option<String> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers (and those named by `Connection`). An upgrade keeps `Upgrade`
/// and gets `Connection: upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        if keep_upgrade && *name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Node-independent rewriting: HTTP/1.1 origin-form, hop-by-hop headers, forwarding headers,
/// and no client-supplied failover header.
fn prepare_request(
    parts: &mut http::request::Parts,
    host: Option<&str>,
    client: SocketAddr,
    tls: bool,
    failover_header: &HeaderName,
) {
    let upgrade = is_upgrade(&parts.headers);
    strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(failover_header);
    if parts.version != Version::HTTP_11 && parts.version != Version::HTTP_10 {
        parts.version = Version::HTTP_11;
    }
    if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        if let Ok(uri) = pq.parse::<Uri>() {
            parts.uri = uri;
        }
    }
    if let Some(h) = host {
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(h) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    let ip = client.ip().to_string();
    let xff = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    let proto = if tls { "https" } else { "http" };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static(proto));
    let for_value = if client.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip
    };
    let mut forwarded = format!("for={for_value};proto={proto}");
    if let Some(h) = host {
        if let Ok(v) = HeaderValue::from_str(h) {
            parts.headers.insert("x-forwarded-host", v);
        }
        if !h.contains(['"', '\\']) {
            forwarded.push_str(&format!(";host=\"{h}\""));
        }
    }
    let forwarded = match parts
        .headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {forwarded}"),
        None => forwarded,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        parts.headers.insert(header::FORWARDED, v);
    }
}

/// Puts `forward_id` where the client had its id (cookie or path parameter), starting from the
/// client's original cookies and path so a retry on another node starts clean.
fn apply_session(
    parts: &mut http::request::Parts,
    cookie_values: &[HeaderValue],
    original_uri: &Uri,
    location: Option<&IdLocation>,
    cookie_name: &str,
    forward_id: Option<&str>,
    cookies_dirty: &mut bool,
) {
    let (Some(loc), Some(forward_id)) = (location, forward_id) else {
        return;
    };
    match loc {
        IdLocation::Cookie { .. } => {
            let lines: Vec<Option<&str>> = cookie_values.iter().map(|v| v.to_str().ok()).collect();
            let rewritten = session::rewrite_cookie_lines(&lines, cookie_name, loc, forward_id);
            if rewritten.is_none() && !*cookies_dirty {
                return; // the common sticky hit: the client's cookies go through as they are
            }
            *cookies_dirty = true;
            parts.headers.remove(header::COOKIE);
            match rewritten {
                None => {
                    for v in cookie_values {
                        parts.headers.append(header::COOKIE, v.clone());
                    }
                }
                Some(new_lines) => {
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
            }
        }
        IdLocation::PathParam { start, end } => {
            let path = original_uri.path();
            if &path[*start..*end] == forward_id {
                parts.uri = original_uri.clone();
                return;
            }
            let mut new = session::replace_range(path, *start, *end, forward_id);
            if let Some(q) = original_uri.query() {
                new.push('?');
                new.push_str(q);
            }
            if let Ok(uri) = new.parse::<Uri>() {
                parts.uri = uri;
            }
        }
    }
}

/// `Set-Cookie` and `Location` rewriting by the binder; returns the session ids issued.
fn rewrite_response_headers(
    headers: &mut HeaderMap,
    pool: &Pool,
    plan: &ResponsePlan<'_>,
    path_param: Option<&str>,
) -> Vec<String> {
    let mut issued = Vec::new();
    let has_set_cookie = headers.contains_key(header::SET_COOKIE);
    if has_set_cookie || plan.client_changed {
        let mut values: Vec<String> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let before = values.clone();
        issued = binder::rewrite_set_cookies(&mut values, plan, &pool.cfg.cookie).issued;
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
    if let (Some(param), Some(from), Some(to)) = (path_param, plan.forward_id, plan.client_id) {
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
    let body = format!(
        "{} {}: {reason}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(ResponseBody::Synthetic(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Counts a request in flight on a node until its response body is done.
pub struct InflightGuard(Arc<NodeRuntime>);

impl InflightGuard {
    fn new(rt: Arc<NodeRuntime>) -> Self {
        rt.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(rt)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The body sent to the client: an upstream body whose connection returns to the pool when it
/// ends, or a synthetic one.
pub enum ResponseBody {
    Upstream {
        body: Incoming,
        /// Taken when the body ends and the connection goes back to the pool.
        conn: Option<Sender>,
        guard: InflightGuard,
    },
    Synthetic(Full<Bytes>),
}

impl ResponseBody {
    fn upstream(body: Incoming, sender: Sender, guard: InflightGuard) -> Self {
        let mut b = ResponseBody::Upstream {
            body,
            conn: Some(sender),
            guard,
        };
        b.release_if_done();
        b
    }

    /// Returns the connection to the pool once the upstream body is complete.
    fn release_if_done(&mut self) {
        if let ResponseBody::Upstream { body, conn, guard } = self {
            if body.is_end_stream() {
                if let Some(sender) = conn.take() {
                    guard.0.conns.checkin(sender);
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

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match this {
            ResponseBody::Synthetic(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(|never| match never {}))),
            ResponseBody::Upstream { body, conn, guard } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None)) || body.is_end_stream() {
                    if let Some(sender) = conn.take() {
                        guard.0.conns.checkin(sender);
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Synthetic(full) => full.size_hint(),
            ResponseBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}
