//! The attempt loop of one request, shared by both request paths: the native HTTP/1.1 path
//! ([`crate::proxy::h1`], cleartext and TLS) and the HTTP/2 path ([`crate::proxy::service`],
//! HTTP/2 and h2c).
//!
//! [`Attempts`] owns what the attempts of one request share and every decision between
//! them:
//! - **select** ([`Attempts::next`]): the next node (never one already tried; the same one
//!   again when the last attempt is to be repeated on a new connection), the slot on it (a
//!   node at its `max_connections` is queued for, not failed) and its connection epoch;
//! - **rebind** ([`Attempts::rebind`]): the ids on that node. A retry after a `rename` starts
//!   from the id the store holds now, not from the client's original one;
//! - **after a failure** ([`Attempts::failed`]): the one mapping from failures to the node's
//!   error counters, `core::retry`'s decision, passive health, and the error the client gets
//!   when the loop gives up.
//!
//! [`Trace`] is what the access log and the request metrics learn of the request, written
//! once by [`Trace::finish`]; [`Synthetic`] the balancer's own error responses. The paths keep
//! only their byte handling: connect, send, relay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::core::binder::BinderKind;
use crate::core::retry::{self, Action, Attempt, Failure};
use crate::core::select::{Choice, Outcome};
use crate::proxy::access_log;
use crate::proxy::deadline;
use crate::proxy::pipeline::{self, Ids, InflightGuard, ProxyError, SessionIds};
use crate::state::node::now_ms;
use crate::state::snapshot::{Node, Pool, Snapshot};
use crate::state::Balancer;

/// A request's end when the loop gives up: the error, and the `Retry-After` of a `503`.
pub type Fail = (ProxyError, Option<Duration>);

/// What every attempt of one request shares, and the state the loop carries between them.
pub struct Attempts<'a> {
    pool: &'a Pool,
    ids: Option<SessionIds<'a>>,
    sep: char,
    /// Idempotent, no body, `retry_idempotent`: may be sent again after a failure past sending.
    replayable: bool,
    had_body: bool,
    /// [`crate::state::node::now_ms`] when the request started: the first attempt's
    /// selection reads no clock of its own.
    started_ms: u64,
    tried: Vec<usize>,
    number: usize,
    /// The next attempt goes to this node again, on a new connection.
    fresh_next: Option<Choice>,
    retried_fresh: bool,
    /// Under `rename`: the id an earlier attempt of this request renamed the session to.
    renamed_to: Option<String>,
}

/// One attempt: the node chosen, its slot, and how to connect to it.
pub struct Turn<'a> {
    pub node: &'a Node,
    pub choice: Choice,
    /// The node's in-flight slot; a tunnel keeps it.
    pub slot: InflightGuard,
    /// The node's connection epoch when the attempt began (pooled connections of older
    /// epochs are retired).
    pub epoch: u64,
    /// This attempt must open a new connection (a replay after a pooled one failed).
    pub fresh: bool,
}

/// How an attempt failed, as the path saw it.
pub struct Failed {
    pub failure: Failure,
    /// The internal text, for logs and the node's `last_error`.
    pub reason: String,
    /// The protocol's own error, when it has a better status than the failure's default.
    pub err: Option<ProxyError>,
    /// The connection came from the keep-alive pool.
    pub reused: bool,
    /// The id this attempt renamed the session to ([`Attempts::renamed`]), kept for the next.
    pub renamed: Option<String>,
}

impl Failed {
    /// A failure with its reason and nothing else known.
    pub fn new(failure: Failure, reason: String, reused: bool) -> Failed {
        Failed {
            failure,
            reason,
            err: None,
            reused,
            renamed: None,
        }
    }
}

impl<'a> Attempts<'a> {
    pub fn new(
        pool: &'a Pool,
        ids: Option<SessionIds<'a>>,
        sep: char,
        replayable: bool,
        had_body: bool,
        started_ms: u64,
    ) -> Attempts<'a> {
        Attempts {
            pool,
            ids,
            sep,
            replayable,
            had_body,
            started_ms,
            tried: Vec::new(),
            number: 0,
            fresh_next: None,
            retried_fresh: false,
            renamed_to: None,
        }
    }

    /// Phase 3 for the next attempt: the node, noted in `trace`, and a slot on it.
    pub async fn next(&mut self, trace: &mut Trace) -> Result<Turn<'a>, Fail> {
        self.number += 1;
        let pool = self.pool;
        let fresh = self.fresh_next.take();
        let choice = match fresh {
            Some(same) => same,
            None => {
                let key = self.ids.map(|i| i.key());
                // A later attempt follows a failure that may have taken a while: its own time.
                let now = if self.number == 1 {
                    self.started_ms
                } else {
                    now_ms()
                };
                pipeline::select(pool, key, &self.tried, now)
                    .map_err(|e| (e, Some(pipeline::retry_after(pool))))?
            }
        };
        let node = &pool.nodes[choice.node];
        trace.outcome = Some(choice.outcome);
        trace.node_ix = Some(choice.node);
        // A slot before the connect: a node at its limit makes the request wait (or refuses
        // it) without counting against the node's health.
        let slot = match InflightGuard::try_new(node) {
            Some(g) => g,
            None => queue_for_slot(pool, node).await?,
        };
        Ok(Turn {
            node,
            choice,
            slot,
            epoch: node.rt.conn_epoch.load(Ordering::Relaxed),
            fresh: fresh.is_some(),
        })
    }

    /// Phase 4 when the turn keeps the session where it is (no failover): the ids at once,
    /// without a wait. `None`: the turn needs [`Attempts::rebind`].
    pub fn kept(&self, turn: &Turn<'a>) -> Option<Ids<'_>> {
        self.kept_or_moved(turn).ok()
    }

    /// The ids of a turn that keeps the session (or of a request without one), else the
    /// session a failover moves.
    fn kept_or_moved(&self, turn: &Turn<'a>) -> Result<Ids<'_>, SessionIds<'a>> {
        match self.ids {
            None => Ok(Ids::default()),
            Some(ids) if turn.choice.outcome != Outcome::Failover => {
                Ok(pipeline::kept_ids(Some(&ids), self.renamed_to.as_deref()))
            }
            Some(ids) => Err(ids),
        }
    }

    /// Phase 4: the ids of this request on the turn's node. After a `rename` by an earlier
    /// attempt, from the id the session was renamed to.
    pub async fn rebind(&self, turn: &Turn<'a>) -> Result<Ids<'_>, Fail> {
        let ids = match self.kept_or_moved(turn) {
            Ok(kept) => return Ok(kept),
            Err(moved) => moved,
        };
        let renamed = self.renamed_to.as_deref();
        let backend = renamed.unwrap_or(ids.backend);
        // Boxed: only a failover awaits the binder (and maybe a store); a hit does not carry
        // its future's size.
        Box::pin(pipeline::rebind(
            self.pool,
            self.sep,
            turn.node,
            turn.choice,
            ids.client,
            backend,
        ))
        .await
        .map_err(|e| (e, Some(pipeline::retry_after(self.pool))))
    }

    /// The id `ids` renamed the session to, under `rename`: what the next attempt starts from
    /// ([`Failed::renamed`]).
    pub fn renamed(&self, ids: &Ids<'_>) -> Option<String> {
        if self.pool.cfg.binder == BinderKind::Rename && ids.client_changed {
            ids.forward_id.as_deref().map(str::to_string)
        } else {
            None
        }
    }

    /// After a failed attempt: counts it against the node, carries out `core::retry`'s
    /// decision, and gives up with the client's error when the decision is to fail.
    pub fn failed(&mut self, turn: Turn<'a>, f: Failed) -> Result<(), Fail> {
        let Turn { node, choice, .. } = turn;
        count_failure(node, f.failure);
        if f.renamed.is_some() {
            self.renamed_to = f.renamed;
        }
        let attempt = Attempt {
            number: self.number,
            max: self.pool.cfg.failover.max_attempts,
            replayable: self.replayable,
            reused: f.reused,
            retried_fresh: self.retried_fresh,
            had_body: self.had_body,
        };
        let decision = retry::decide(f.failure, &attempt);
        if decision.mark_down {
            pipeline::mark_down(self.pool, node, f.reason.clone());
        }
        match decision.action {
            Action::NextNode => self.tried.push(choice.node),
            Action::SameNodeFresh => {
                tracing::debug!(node = %node.route, error = %f.reason, "pooled connection failed; retrying on a new one");
                self.retried_fresh = true;
                self.fresh_next = Some(choice);
            }
            Action::Fail => {
                return Err(pipeline::give_up(
                    f.failure,
                    self.number,
                    f.reason,
                    f.err,
                    self.pool,
                ))
            }
        }
        Ok(())
    }
}

/// The one mapping from a failed attempt to the node's error counters: nothing sent is a
/// connect error, a failure past sending an upstream error, and the client's own body
/// (aborted, stalled, too large) is not the node's.
pub fn count_failure(node: &Node, failure: Failure) {
    let stats = &node.rt.stats;
    match failure {
        Failure::Connect | Failure::NotSent => {
            stats.connect_errors.fetch_add(1, Ordering::Relaxed);
        }
        Failure::Upstream | Failure::Timeout => {
            stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
        Failure::ClientBody | Failure::ClientStalled | Failure::BodyTooLarge => {}
    }
}

/// Waits for a slot on a node at its `max_connections`, for at most `timeouts.queue`; then,
/// or at once when the node's queue is full, a `503`. Boxed: only a request that finds its
/// node full waits, and the wait's state stays out of every request's.
async fn queue_for_slot(pool: &Pool, node: &Node) -> Result<InflightGuard, Fail> {
    let retry_after = Some(pipeline::busy_retry_after(pool));
    let deadline = Instant::now() + pool.cfg.timeouts.queue;
    let wait = Box::pin(deadline::timeout_at(
        deadline,
        InflightGuard::queue(pool, node),
    ));
    match wait.await {
        Ok(Ok(slot)) => Ok(slot),
        Ok(Err(e)) => Err((e, retry_after)),
        Err(deadline::Elapsed) => Err((pipeline::queue_timeout(pool, node), retry_after)),
    }
}

/// What the access log and the request metrics learn about one request.
#[derive(Default)]
pub struct Trace {
    pub pool_ix: Option<usize>,
    pub node_ix: Option<usize>,
    pub outcome: Option<Outcome>,
    /// From sending the request to the node's response head.
    pub upstream: Option<Duration>,
    /// The status the client got.
    pub status: u16,
    /// When the response was sent, if the path read the clock then: the request's end.
    pub end: Option<Instant>,
}

impl Trace {
    /// The node's answer is in: one clock read for the time it took since `sent_at` (unless
    /// the path noted it already) and for the request's end.
    pub fn answered(&mut self, sent_at: Instant) {
        let end = Instant::now();
        self.end = Some(end);
        self.upstream
            .get_or_insert(end.saturating_duration_since(sent_at));
    }

    /// Logs a request's error as a warning when it is the balancer's or a node's (5xx), with
    /// the internal detail the client does not see.
    pub fn warn_failed(&self, snap: &Snapshot, err: &ProxyError) {
        if err.status().is_server_error() {
            let pool = self
                .pool_ix
                .map_or("-", |i| snap.pools[i].cfg.name.as_str());
            tracing::warn!(pool, error = %err.detail(), "request failed");
        }
    }

    /// The request's access log line and metrics. `path` is the request's path; its path
    /// parameters (`;jsessionid=`) are cut: session ids are never logged.
    pub fn finish(
        &self,
        balancer: &Balancer,
        snap: &Snapshot,
        client: SocketAddr,
        method: &str,
        path: &str,
        start: Instant,
    ) -> Instant {
        let pool = self.pool_ix.map(|i| &snap.pools[i]);
        let end = self.end.unwrap_or_else(Instant::now);
        let elapsed = end.saturating_duration_since(start);
        let line = access_log::Line {
            client,
            method,
            // `;` is ASCII: the cut falls on a character boundary (by bytes, for cost).
            path: path
                .bytes()
                .position(|b| b == b';')
                .map_or(path, |i| &path[..i]),
            status: self.status,
            pool: pool.map_or("-", |p| p.cfg.name.as_str()),
            node: pool
                .zip(self.node_ix)
                .map_or("-", |(p, n)| p.nodes[n].route.as_str()),
            outcome: self.outcome.map_or("none", Outcome::as_str),
            upstream_us: self.upstream.map_or(0, |d| d.as_micros() as u64),
            total_us: elapsed.as_micros() as u64,
        };
        line.log();
        let status =
            http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        balancer.metrics.observe_request(
            snap,
            self.pool_ix,
            self.node_ix,
            self.outcome,
            status,
            elapsed,
        );
        end
    }
}

/// A short text response of the balancer's own (`502 Bad Gateway: no node could be
/// reached`): the one definition of its status, headers and body for both paths.
pub struct Synthetic {
    pub status: http::StatusCode,
    pub body: String,
    /// `Retry-After` in seconds, on a `503` only.
    pub retry_after: Option<u64>,
}

impl Synthetic {
    pub const CONTENT_TYPE: &'static str = "text/plain; charset=utf-8";
    pub const CACHE_CONTROL: &'static str = "no-store";

    /// `reason` is the client's short reason, never an internal error's text.
    pub fn new(status: http::StatusCode, reason: &str, retry_after: Option<Duration>) -> Synthetic {
        let body = format!(
            "{} {}: {reason}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let retry_after = (status == http::StatusCode::SERVICE_UNAVAILABLE)
            .then(|| retry_after.map_or(1, |d| d.as_secs().max(1)));
        Synthetic {
            status,
            body,
            retry_after,
        }
    }

    /// The response as HTTP/1.1 bytes; `keep_alive: false` adds `connection: close`.
    pub fn to_http1(&self, keep_alive: bool) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncache-control: {}\r\ncontent-length: {}\r\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            Self::CONTENT_TYPE,
            Self::CACHE_CONTROL,
            self.body.len()
        );
        if let Some(secs) = self.retry_after {
            let _ = write!(out, "retry-after: {secs}\r\n");
        }
        if !keep_alive {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn synthetic_responses() {
        let cases: &[(u16, Option<u64>, bool, &str)] = &[
            (
                502,
                None,
                true,
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: 42\r\n\r\n502 Bad Gateway: no node could be reached\n",
            ),
            (
                503,
                Some(5),
                false,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: 50\r\nretry-after: 5\r\nconnection: close\r\n\r\n503 Service Unavailable: no node could be reached\n",
            ),
            // No Retry-After given: one second.
            (
                503,
                None,
                true,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\ncontent-length: 50\r\nretry-after: 1\r\n\r\n503 Service Unavailable: no node could be reached\n",
            ),
        ];
        for (status, secs, keep, want) in cases {
            let s = Synthetic::new(
                StatusCode::from_u16(*status).unwrap(),
                "no node could be reached",
                secs.map(Duration::from_secs),
            );
            assert_eq!(s.to_http1(*keep), *want, "{status} {secs:?} {keep}");
        }
        // Only a 503 carries Retry-After.
        let s = Synthetic::new(StatusCode::BAD_GATEWAY, "x", Some(Duration::from_secs(9)));
        assert_eq!(s.retry_after, None);
    }
}
