//! One request's phases, in the order of DESIGN.md "One request, end to end", shared by every
//! protocol the listeners speak. Both paths, the native HTTP/1.1 one (`proxy::h1`, cleartext
//! and TLS) and the HTTP/2 path's (`proxy::service`), match and extract once, then run the one
//! attempt loop ([`crate::proxy::attempt::Attempts`]), which calls phases 3–4 and carries out
//! `core::retry`'s decisions; each path only moves the bytes of phase 5 and applies phase 6:
//!
//! 1. **match** ([`match_pool`]): host and path prefix → pool;
//! 2. **extract** ([`extract`], [`SessionIds::of`]): the session id (cookies first, then
//!    `;jsessionid=`), its pin route and the backend-facing id;
//! 3. **select** ([`select`]): sticky hit, new session or failover (`core::select`);
//! 4. **rebind** ([`rebind`]): the ids after a failover, by the pool's binder; the `rename`
//!    binder asks the store first;
//! 5. **forward**: the path's byte handling, with the session-id edit ([`session_edit`]) and
//!    the `Forwarded` value (`core::forwarding::push_forwarded`) shared; what to do when an
//!    attempt fails is `core::retry`'s decision, carried out by the attempt loop with
//!    [`mark_down`] and [`give_up`];
//! 6. **respond** ([`judge_response`], [`response_plan`], [`learn`], [`rewrite_set_cookies`]):
//!    passive health
//!    from the status, the registry learns the session, the pool learns the session cookie's
//!    attributes, `Set-Cookie`/`Location` are rewritten by `core::binder`.
//!
//! Every failure is a [`ProxyError`], whose [`ProxyError::status`] is the one place errors map
//! to statuses.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::core::binder::{self, BinderKind, RebindResult, ResponsePlan, SetCookieOutcome};
use crate::core::cookie::{self, WriteAttrs};
use crate::core::node_state::NodeState;
use crate::core::retry::Failure;
use crate::core::select::{self, Choice, NoCandidate, Outcome, SessionKey};
use crate::core::session::{self, FoundId, SessionSettings};
use crate::state::node::{now_ms, NodeRuntime, Refusal};
use crate::state::snapshot::{Node, Pool, Snapshot};
use crate::state::Balancer;
use crate::store::{OnStoreError, RenameOutcome};

/// Everything that can go wrong on the request path, each with its status.
///
/// Two texts: the `Display` form is what the client reads after the status (`502 Bad
/// Gateway: no node could be reached`): a short reason of ours, never the text of an
/// internal error, which could name addresses, OS errors or the store's messages.
/// [`ProxyError::detail`] adds that internal text for logs; the node's `last_error` in the
/// status API keeps it too (`mark_down`).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no pool serves this host and path")]
    NoPool,
    #[error("{0}")]
    NoCandidate(NoCandidate),
    /// The store's error.
    #[error("the session store is unavailable")]
    Store(String),
    /// Attempts made, and the last failure (a connect error's OS text, say).
    #[error("no node could be reached")]
    Unreachable { attempts: usize, last: String },
    /// What failed after the request was sent.
    #[error("the node failed to answer")]
    Upstream(String),
    #[error("the node did not answer in time")]
    Timeout(Duration),
    /// Why the client's request or body could not be read.
    #[error("the request could not be read")]
    ClientBody(String),
    /// The client stopped sending its request body for `timeouts.body_idle`.
    #[error("the request body stalled")]
    ClientStalled(String),
    /// The request body is over `listeners[].max_body_bytes`.
    #[error("the request body is larger than this listener accepts")]
    BodyTooLarge,
    /// The request's `Host` is missing, doubled or invalid (the native path refuses these in
    /// its codec).
    #[error("{0}")]
    BadHost(&'static str),
    /// The node is at its `max_connections` and its queue is full, or no slot freed within
    /// `timeouts.queue`. Not a failure of the node: it is not marked down, and a pinned
    /// session is not moved (that would rebind it because its node is busy).
    #[error("node {route} is at its connection limit")]
    NodeBusy { route: String, why: Refusal },
    /// What the chosen node's protocol cannot carry (a WebSocket upgrade to an AJP node).
    #[error("{0}")]
    NotImplemented(&'static str),
    /// CONNECT over HTTP/2: this proxy does not tunnel (the native path refuses it in its
    /// codec with the same status and reason).
    #[error("CONNECT not supported")]
    ConnectUnsupported,
}

impl ProxyError {
    /// The one mapping from errors to statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoPool => StatusCode::NOT_FOUND,
            ProxyError::NoCandidate(_) | ProxyError::Store(_) | ProxyError::NodeBusy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Unreachable { .. } | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientStalled(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadHost(_) => StatusCode::BAD_REQUEST,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::ConnectUnsupported => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The client's reason followed by the internal text, for logs only.
    pub fn detail(&self) -> String {
        match self {
            ProxyError::NoPool
            | ProxyError::NoCandidate(_)
            | ProxyError::BodyTooLarge
            | ProxyError::BadHost(_)
            | ProxyError::NotImplemented(_)
            | ProxyError::ConnectUnsupported => self.to_string(),
            ProxyError::Store(e)
            | ProxyError::Upstream(e)
            | ProxyError::ClientBody(e)
            | ProxyError::ClientStalled(e) => {
                format!("{self}: {e}")
            }
            ProxyError::Unreachable { attempts, last } => {
                format!("{self} ({attempts} attempts; last: {last})")
            }
            ProxyError::Timeout(d) => format!("{self} (timeouts.response {d:?})"),
            ProxyError::NodeBusy { why, .. } => format!("{self} ({})", why.as_str()),
        }
    }
}

/// Phase 1, match: the index of the pool that serves `host` and `path`.
pub fn match_pool(snap: &Snapshot, host: Option<&str>, path: &str) -> Result<usize, ProxyError> {
    snap.match_pool_index(host, path).ok_or(ProxyError::NoPool)
}

/// Phase 2, extract: the session id of the request, from its `Cookie` lines (`None` for a
/// line that is not UTF-8) and its path. Among duplicate cookies, one naming a live node wins.
pub fn extract<'a>(
    settings: &SessionSettings,
    pool: &Pool,
    cookie_lines: &[Option<&'a str>],
    path: &'a str,
    now: u64,
) -> Option<FoundId<'a>> {
    session::find_session(settings, cookie_lines, path, |route| {
        pool.node(route)
            .is_some_and(|n| n.is_up(now) && n.state() != NodeState::Disabled)
    })
}

/// The ids of a request's session before selection.
#[derive(Debug, Clone, Copy)]
pub struct SessionIds<'a> {
    /// As the client holds it.
    pub client: &'a str,
    /// As the node knows it (differs after a `translate` rebind).
    pub backend: &'a str,
    /// The route after the last separator (`""` for an id without one).
    pub pin: &'a str,
}

impl<'a> SessionIds<'a> {
    pub fn of(found: Option<&FoundId<'a>>, binder: BinderKind, sep: char) -> Option<Self> {
        let client = found?.id;
        Some(SessionIds {
            client,
            backend: binder::backend_facing(binder, client, sep),
            pin: session::pin_route(client, sep).unwrap_or(""),
        })
    }

    /// The session as selection sees it. An id without a route (`X`, `X.`) names no node:
    /// like a foreign id it fails over over the whole pool, keyed by the id, so its requests
    /// agree on one node.
    pub fn key(&self) -> SessionKey<'a> {
        SessionKey {
            pin: self.pin,
            backend_id: self.backend,
        }
    }
}

/// The name of the session cookie the client used, else the first configured one.
pub fn cookie_name<'s>(settings: &'s SessionSettings, found: Option<&FoundId<'_>>) -> &'s str {
    match found.map(|f| &f.location) {
        Some(session::IdLocation::Cookie { name, .. }) => settings.cookies[*name].as_str(),
        _ => settings
            .cookies
            .first()
            .map_or("JSESSIONID", String::as_str),
    }
}

/// Phases 1 and 2 together, as every protocol runs them: the pool, the session id found
/// in the request, its ids, and the cookie name to answer with.
#[derive(Debug)]
pub struct Matched<'a> {
    pub pool_ix: usize,
    pub pool: &'a Pool,
    pub found: Option<FoundId<'a>>,
    pub ids: Option<SessionIds<'a>>,
    pub cookie_name: &'a str,
}

/// Match and extract: `host` (without a port or with), the request `path` (with its `;`
/// parameters), the `Cookie` lines.
pub fn match_and_extract<'a>(
    snap: &'a Snapshot,
    host: Option<&str>,
    path: &'a str,
    cookie_lines: &[Option<&'a str>],
    now: u64,
) -> Result<Matched<'a>, ProxyError> {
    let pool_ix = match_pool(snap, host, path)?;
    let pool = &snap.pools[pool_ix];
    let settings = &snap.config.session.settings;
    let found = extract(settings, pool, cookie_lines, path, now);
    let ids = SessionIds::of(found.as_ref(), pool.cfg.binder, settings.separator);
    let cookie_name = cookie_name(settings, found.as_ref());
    Ok(Matched {
        pool_ix,
        pool,
        found,
        ids,
        cookie_name,
    })
}

/// Phase 3, select: the node for this attempt; `tried` are the nodes that failed already.
/// A failover is counted on both nodes.
pub fn select(
    pool: &Pool,
    session: Option<SessionKey<'_>>,
    tried: &[usize],
    now_ms: u64,
) -> Result<Choice, ProxyError> {
    let choice = select::choose(pool, session, tried, now_ms).map_err(ProxyError::NoCandidate)?;
    if choice.outcome == Outcome::Failover {
        let node = &pool.nodes[choice.node];
        node.rt.stats.failovers_in.fetch_add(1, Ordering::Relaxed);
        if let Some(from) = choice.from {
            pool.nodes[from]
                .rt
                .stats
                .failovers_out
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(choice)
}

/// `Retry-After` of a pool's `503`: how long a node stays marked down, at least a second.
pub fn retry_after(pool: &Pool) -> Duration {
    pool.cfg.failover.recover_after.max(Duration::from_secs(1))
}

/// Ids of one request on one node, after the binder. Borrowed on a sticky hit (nothing is
/// allocated), owned after a rebind.
#[derive(Debug, Default, Clone)]
pub struct Ids<'a> {
    /// The id forwarded to the node.
    pub forward_id: Option<Cow<'a, str>>,
    /// The id the client holds after the response.
    pub client_id: Option<Cow<'a, str>>,
    /// The client's id changed (a failover rebind): it gets a `Set-Cookie`.
    pub client_changed: bool,
}

/// The ids of a request that did not fail over: as the client sent them (nothing allocated).
pub fn kept_ids<'a>(ids: Option<&SessionIds<'a>>, backend: Option<&'a str>) -> Ids<'a> {
    match ids {
        None => Ids::default(),
        Some(s) => Ids {
            forward_id: Some(Cow::Borrowed(backend.unwrap_or(s.backend))),
            client_id: Some(Cow::Borrowed(s.client)),
            client_changed: false,
        },
    }
}

/// Phase 4, rebind: decides the ids of this request on `node`; a `rename` failover renames the
/// session in the store first. `backend_id` is the backend-facing id now (after an earlier
/// rename in this request, the renamed one).
pub async fn rebind<'a>(
    pool: &Pool,
    sep: char,
    node: &Node,
    choice: Choice,
    client_id: &'a str,
    backend_id: &'a str,
) -> Result<Ids<'a>, ProxyError> {
    let keep = Ids {
        forward_id: Some(Cow::Borrowed(backend_id)),
        client_id: Some(Cow::Borrowed(client_id)),
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
        let now = now_ms();
        let cache = pool.unknown_ids.as_deref();
        // An id the store said it does not know, a moment ago: do not ask again.
        let outcome = if cache.is_some_and(|c| c.contains(old, now)) {
            stats.unknown_id_hits.fetch_add(1, Ordering::Relaxed);
            Ok(RenameOutcome::NotFound)
        } else {
            // Boxed: a store's rename future is large, and an unboxed one would be moved
            // along with every request's future even though only a `rename` failover awaits
            // it.
            let outcome = Box::pin(store.rename(old, new)).await;
            if let (Ok(RenameOutcome::NotFound), Some(c)) = (&outcome, cache) {
                c.insert(old, now);
            }
            outcome
        };
        match outcome {
            Ok(RenameOutcome::Renamed) => {}
            Ok(RenameOutcome::AlreadyRenamed) => result = RebindResult::AlreadyRenamed,
            Ok(RenameOutcome::NotFound) => result = RebindResult::NotFound,
            Err(e) => {
                stats.store_errors.fetch_add(1, Ordering::Relaxed);
                stats.rebinds[RebindResult::StoreError as usize].fetch_add(1, Ordering::Relaxed);
                let policy = pool.cfg.store.as_ref().map(|s| s.on_error);
                // `forward_old_id` only when the rename surely did not happen: after one that
                // may have (a timeout), the old id may no longer exist, and the node would
                // start a new session in its place. The 503's retry finds it renamed.
                let unsure = e.may_have_applied();
                tracing::warn!(pool = %pool.cfg.name, store = store.kind_name(), to = %node.route, error = %e, may_have_applied = unsure, "session rename failed");
                return match policy {
                    Some(OnStoreError::Fail) => Err(ProxyError::Store(e.to_string())),
                    _ if unsure => Err(ProxyError::Store(format!(
                        "{e} (it may have been applied: the old id is not forwarded)"
                    ))),
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
        forward_id: Some(Cow::Owned(rb.forward_id)),
        client_id: Some(Cow::Owned(rb.client_id)),
        client_changed: changed,
    })
}

/// The failover header's value for a moved session (`X.jvm1; route=jvm1`), telling the node
/// where the session came from. `None` on a hit or when the id has no route.
pub fn failover_header_value(
    choice: Choice,
    ids: Option<&SessionIds<'_>>,
    sep: char,
) -> Option<String> {
    if choice.outcome != Outcome::Failover {
        return None;
    }
    let ids = ids?;
    let from = session::pin_route(ids.client, sep)?;
    Some(format!("{}; route={from}", ids.backend))
}

/// The error a request answers with once `core::retry` gave up on it: a failure before
/// anything was sent is `Unreachable` (with `Retry-After`), the client's own body `400`, a
/// failure after sending the protocol's error (`err`) or one made from `reason`. `reason`,
/// the internal text, goes into the error's [`ProxyError::detail`], not to the client.
pub fn give_up(
    failure: Failure,
    attempts: usize,
    reason: String,
    err: Option<ProxyError>,
    pool: &Pool,
) -> (ProxyError, Option<Duration>) {
    match failure {
        Failure::Connect | Failure::NotSent => (
            ProxyError::Unreachable {
                attempts,
                last: reason,
            },
            Some(retry_after(pool)),
        ),
        Failure::ClientBody => (ProxyError::ClientBody(reason), None),
        Failure::ClientStalled => (ProxyError::ClientStalled(reason), None),
        Failure::BodyTooLarge => (ProxyError::BodyTooLarge, None),
        Failure::Timeout => (
            err.unwrap_or(ProxyError::Timeout(pool.cfg.timeouts.response)),
            None,
        ),
        Failure::Upstream => (err.unwrap_or(ProxyError::Upstream(reason)), None),
    }
}

/// Passive health: marks `node` down for `failover.recover_after` and retires its pooled
/// connections. Only the transition is logged.
pub fn mark_down(pool: &Pool, node: &Node, reason: String) {
    let was_up = node
        .rt
        .mark_down(now_ms(), pool.cfg.failover.recover_after, reason.clone());
    if was_up {
        node.rt
            .metrics
            .health_down_passive
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(pool = %pool.cfg.name, node = %node.route, reason = %reason, recover_after = ?pool.cfg.failover.recover_after, "node marked down");
    }
}

/// How the request must change for the node to see `forward_id` where the client had its
/// id: nothing (the id is unchanged: a sticky hit allocates nothing), new `Cookie` lines
/// (replacing the lines that held a session cookie; the others stay), or a new target.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEdit {
    Unchanged,
    CookieLines(Vec<String>),
    Target(String),
}

/// The one session-id edit of both request paths. `lines` are the request's `Cookie` lines
/// as sent (`None`: not UTF-8), `path` and `query` its target as sent.
pub fn session_edit(
    location: &session::IdLocation,
    lines: &[Option<&str>],
    cookie_name: &str,
    path: &str,
    query: Option<&str>,
    forward_id: &str,
) -> SessionEdit {
    match location {
        loc @ session::IdLocation::Cookie { .. } => {
            match session::rewrite_cookie_lines(lines, cookie_name, loc, forward_id) {
                Some(l) => SessionEdit::CookieLines(l),
                None => SessionEdit::Unchanged,
            }
        }
        session::IdLocation::PathParam { start, end } => {
            if path.get(*start..*end) == Some(forward_id) {
                return SessionEdit::Unchanged;
            }
            let mut t = session::replace_range(path, *start, *end, forward_id);
            if let Some(q) = query {
                t.push('?');
                t.push_str(q);
            }
            SessionEdit::Target(t)
        }
    }
}

/// Phase 6, what the binder does to the response's cookies: the one place a response plan
/// is assembled. `reissue`: the request also carried older forms of its id; `secure`: the
/// client connection is TLS.
pub fn response_plan<'i>(
    pool: &Pool,
    cookie_name: &'i str,
    ids: &'i Ids<'_>,
    reissue: bool,
    secure: bool,
) -> ResponsePlan<'i> {
    ResponsePlan {
        binder: pool.cfg.binder,
        cookie_name,
        forward_id: ids.forward_id.as_deref(),
        client_id: ids.client_id.as_deref(),
        client_changed: ids.client_changed,
        reissue,
        secure,
    }
}

/// Phase 6, respond: a `fail_on_status` answer marks the node down; any other answer clears
/// passive marks older than the request (`started_ms`: marks set since then stay).
pub fn judge_response(pool: &Pool, node: &Node, status: StatusCode, started_ms: u64) {
    if pool.cfg.fail_on_status.contains(&status.as_u16()) {
        mark_down(pool, node, format!("answered {status}"));
    } else {
        node.rt.health.clear_passive_before(started_ms);
    }
}

/// Phase 6, respond: the attributes the node set on the session cookie in its response to
/// `request_path` (its `Set-Cookie` values as it sent them) are remembered for the pool.
pub fn learn_cookie_attrs<'v>(
    pool: &Pool,
    cookie_name: &str,
    request_path: &str,
    set_cookies: impl IntoIterator<Item = &'v str>,
) {
    for v in set_cookies {
        if cookie::value_if_named(v, cookie_name).is_none() {
            continue;
        }
        let raw = cookie::attributes(v);
        if pool.rt.cookies.seen(cookie_name, request_path, raw) {
            continue; // the same attributes as last time: already learned
        }
        if let Some(attrs) = cookie::learn(v, cookie_name, request_path) {
            if pool.rt.cookies.learn(cookie_name, request_path, attrs) {
                tracing::debug!(pool = %pool.cfg.name, context = cookie::context_of(request_path), "learned the session cookie's attributes");
            }
            pool.rt.cookies.remember(cookie_name, request_path, raw);
        }
    }
}

/// The attributes of a session cookie the balancer writes in the response to `request_path`:
/// what the pool's nodes set on theirs for that context, else the pool's `cookie:` defaults.
pub fn cookie_attrs(pool: &Pool, cookie_name: &str, request_path: &str) -> WriteAttrs {
    let learned = pool.rt.cookies.lookup(cookie_name, request_path);
    cookie::attrs_to_write(learned.as_ref(), &pool.cfg.cookie)
}

/// Phase 6, respond: the response's `Set-Cookie` values (every one, in order) rewritten by the
/// binder, after learning from them; a cookie the balancer adds takes [`cookie_attrs`]. Every
/// protocol's response path goes through here.
pub fn rewrite_set_cookies(
    pool: &Pool,
    plan: &ResponsePlan<'_>,
    request_path: &str,
    values: &mut Vec<String>,
) -> SetCookieOutcome {
    learn_cookie_attrs(
        pool,
        plan.cookie_name,
        request_path,
        values.iter().map(String::as_str),
    );
    binder::rewrite_set_cookies(values, plan, || {
        cookie_attrs(pool, plan.cookie_name, request_path)
    })
}

/// Phase 6, respond: the registry learns where the session is (the id the client carried,
/// the id forwarded, the ids the response issued, all backend-facing).
pub fn learn<'i>(
    balancer: &Balancer,
    pool: &Pool,
    node: &Node,
    sep: char,
    carried: Option<&str>,
    forwarded: Option<&str>,
    issued: impl IntoIterator<Item = &'i str>,
) {
    let kind = pool.cfg.binder;
    balancer.registry.learn(
        node.slot,
        carried,
        forwarded,
        issued
            .into_iter()
            .map(|id| binder::backend_facing(kind, id, sep)),
    );
}

/// A slot on a node (see `NodeRuntime`'s slots): counted in flight from before the connect
/// until the response, or the tunnel, ends; given back on drop.
pub struct InflightGuard(Arc<NodeRuntime>);

impl InflightGuard {
    /// A slot on `node` if it has one now: always on an unlimited node (one increment, as
    /// the in-flight count always cost). `None`: wait with [`InflightGuard::queue`].
    pub fn try_new(node: &Node) -> Option<Self> {
        node.rt
            .try_take_slot(node.max_connections)
            .then(|| InflightGuard(node.rt.clone()))
    }

    /// Waits in `node`'s queue for a slot: a full queue refuses at once. No timeout of its
    /// own: each protocol bounds the wait by `timeouts.queue` with its timer and calls
    /// [`queue_timeout`] when it passes.
    pub async fn queue(pool: &Pool, node: &Node) -> Result<Self, ProxyError> {
        let limit = node.max_connections.unwrap_or(u32::MAX);
        let Some(ticket) = node.rt.enqueue(pool.cfg.max_queue_per_node) else {
            return Err(refuse(pool, node, Refusal::QueueFull));
        };
        node.rt.wait_for_slot(limit, ticket).await;
        Ok(InflightGuard(node.rt.clone()))
    }

    /// Counts the request as sent to the node (`stickyroute_upstream_requests`).
    pub fn sending(&self) {
        self.0.stats.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn runtime(&self) -> &Arc<NodeRuntime> {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.release_slot();
    }
}

/// The error of a request that waited `timeouts.queue` for a slot on `node` in vain.
pub fn queue_timeout(pool: &Pool, node: &Node) -> ProxyError {
    refuse(pool, node, Refusal::QueueTimeout)
}

/// `Retry-After` of a `503` for a busy node: the queue's wait, at least a second.
pub fn busy_retry_after(pool: &Pool) -> Duration {
    pool.cfg.timeouts.queue.max(Duration::from_secs(1))
}

fn refuse(pool: &Pool, node: &Node, why: Refusal) -> ProxyError {
    node.rt.refused(why);
    tracing::debug!(pool = %pool.cfg.name, node = %node.route, why = why.as_str(), "node at its connection limit");
    ProxyError::NodeBusy {
        route: node.route.clone(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session::IdLocation;

    #[test]
    fn session_edits() {
        let path = "/app;jsessionid=X.jvm1/page";
        let param = IdLocation::PathParam { start: 16, end: 22 };
        let cookie = IdLocation::Cookie {
            name: 0,
            header: 0,
            start: 11,
            end: 17,
            sole: false,
        };
        let lines = [Some("JSESSIONID=X.jvm1; lang=en")];
        let cases: Vec<(&IdLocation, Option<&str>, &str, SessionEdit)> = vec![
            // The id as the node must see it already: nothing changes.
            (&param, None, "X.jvm1", SessionEdit::Unchanged),
            (&cookie, None, "X.jvm1", SessionEdit::Unchanged),
            // A path parameter is replaced in place; the query stays.
            (
                &param,
                Some("a=1"),
                "X.jvm2",
                SessionEdit::Target("/app;jsessionid=X.jvm2/page?a=1".into()),
            ),
            (
                &param,
                None,
                "X.jvm1.jvm3",
                SessionEdit::Target("/app;jsessionid=X.jvm1.jvm3/page".into()),
            ),
            // A cookie line is rewritten with its other cookies.
            (
                &cookie,
                None,
                "X.jvm2",
                SessionEdit::CookieLines(vec!["JSESSIONID=X.jvm2; lang=en".into()]),
            ),
        ];
        for (loc, query, fwd, want) in cases {
            let got = session_edit(loc, &lines, "JSESSIONID", path, query, fwd);
            assert_eq!(got, want, "{loc:?} {query:?} {fwd}");
        }
    }
}
