//! The retry and failover policy (DESIGN.md "One request", step 7): after an attempt on a
//! node failed, what happens next. A function from the failure and the attempt's facts to a
//! [`Decision`], so that the rules are read in one place and tested by table; the request
//! path only carries the decision out.
//!
//! The rules:
//! - nothing was sent on a *reused* keep-alive connection (it closed before taking the
//!   request): the request goes again, once, on a fresh connection to the same node, for any
//!   method;
//! - nothing was sent otherwise (connect refused or timed out, or a fresh connection closed
//!   before taking the request): the node is marked down and the untouched request moves to
//!   the next candidate, for any method;
//! - the client's own body failed: the client gets `400` (`413` when it passed
//!   `max_body_bytes`), the node is not blamed, nothing is retried;
//! - a failure after sending, on a *reused* keep-alive connection, of a replayable request
//!   (idempotent, no body, `retry_idempotent`): most often the node closing an idle connection
//!   at the moment we reused it, so the request is replayed once on a fresh connection to the
//!   same node before the node is judged;
//! - otherwise the node is marked down only on evidence about the node: a failure on a fresh
//!   connection, or a timeout while nothing of the client was still arriving (a timeout during
//!   an upload may be the client's slowness);
//! - a replayable request then moves to the next candidate (never after a timeout: the node
//!   may still be working on it); anything else fails;
//! - never more than `max_attempts` nodes.

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be opened (refused, unreachable, connect timeout).
    Connect,
    /// A connection was there but closed before taking the request: nothing was sent.
    NotSent,
    /// The client's request body failed (aborted upload, length mismatch).
    ClientBody,
    /// The client stopped sending its request body for `timeouts.body_idle`.
    ClientStalled,
    /// The client's request body passed `listeners[].max_body_bytes` while it streamed.
    BodyTooLarge,
    /// The node did not answer within `timeouts.response`.
    Timeout,
    /// The exchange failed after the request was sent (reset, garbage, closed mid-head).
    Upstream,
}

/// What is known about the attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first node tried.
    pub number: usize,
    /// `failover.max_attempts`.
    pub max: usize,
    /// Idempotent method, no request body, and `retry_idempotent` on: may be sent again.
    pub replayable: bool,
    /// The connection came from the keep-alive pool.
    pub reused: bool,
    /// This request was already replayed once on a fresh connection.
    pub retried_fresh: bool,
    /// The request had a body.
    pub had_body: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Try the next candidate node (the failed one is excluded).
    NextNode,
    /// Send the request again to the same node, on a new connection.
    SameNodeFresh,
    /// Answer the client with the failure's status.
    Fail,
}

/// The decision: mark the node down (passive health) or not, and the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub mark_down: bool,
    pub action: Action,
}

/// The policy. Pure: see the module docs for the rules.
pub fn decide(failure: Failure, a: &Attempt) -> Decision {
    let more = a.number < a.max;
    let next_or_fail = |ok: bool| {
        if ok && more {
            Action::NextNode
        } else {
            Action::Fail
        }
    };
    match failure {
        // Most often the node closed an idle pooled connection as we took it: nothing was
        // sent, so any request goes again, once, on a new connection to the same node.
        Failure::NotSent if a.reused && !a.retried_fresh => Decision {
            mark_down: false,
            action: Action::SameNodeFresh,
        },
        Failure::Connect | Failure::NotSent => Decision {
            mark_down: true,
            action: next_or_fail(true),
        },
        Failure::ClientBody | Failure::ClientStalled | Failure::BodyTooLarge => Decision {
            mark_down: false,
            action: Action::Fail,
        },
        Failure::Upstream if a.replayable && a.reused && !a.retried_fresh => Decision {
            mark_down: false,
            action: Action::SameNodeFresh,
        },
        Failure::Upstream => Decision {
            mark_down: !a.reused,
            action: next_or_fail(a.replayable),
        },
        Failure::Timeout => Decision {
            mark_down: !a.had_body,
            action: Action::Fail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn attempt(number: usize, replayable: bool, reused: bool, fresh: bool) -> Attempt {
        Attempt {
            number,
            max: 3,
            replayable,
            reused,
            retried_fresh: fresh,
            had_body: !replayable,
        }
    }

    #[test]
    #[rustfmt::skip]
    fn decision_table() {
        use Action::*;
        use Failure::*;
        // (case, failure, attempt, mark down, action)
        let cases: &[(&str, Failure, Attempt, bool, Action)] = &[
            ("refused connect moves on", Connect, attempt(1, false, false, false), true, NextNode),
            ("refused connect, last attempt", Connect, attempt(3, true, false, false), true, Fail),
            ("pooled conn closed before sending a POST: again on a fresh one", NotSent, attempt(1, false, true, false), false, SameNodeFresh),
            ("not sent on a fresh conn after the pooled one moves it", NotSent, attempt(2, false, false, true), true, NextNode),
            ("fresh conn closed before sending moves it", NotSent, attempt(1, false, false, false), true, NextNode),
            ("not sent on the last attempt", NotSent, attempt(3, false, false, false), true, Fail),
            ("pooled conn not sent on the last attempt: the fresh retry is still due", NotSent, attempt(3, false, true, false), false, SameNodeFresh),
            ("client body failure blames nobody", ClientBody, attempt(1, false, false, false), false, Fail),
            ("a stalled upload blames nobody and is not retried", ClientStalled, attempt(1, false, false, false), false, Fail),
            ("a body over max_body_bytes blames nobody and is not retried", BodyTooLarge, attempt(1, false, false, false), false, Fail),
            ("reused conn died under a GET: replay fresh", Upstream, attempt(1, true, true, false), false, SameNodeFresh),
            ("replayed fresh and failed again: node down, next", Upstream, attempt(1, true, false, true), true, NextNode),
            ("reused conn died under a POST: no replay, no blame", Upstream, attempt(1, false, true, false), false, Fail),
            ("fresh conn died under a POST: node down, fail", Upstream, attempt(1, false, false, false), true, Fail),
            ("fresh conn died under a GET: node down, next", Upstream, attempt(2, true, false, false), true, NextNode),
            ("GET failing on the last node", Upstream, attempt(3, true, false, false), true, Fail),
            ("timeout of a GET: node down, no replay", Timeout, attempt(1, true, false, false), true, Fail),
            ("timeout during an upload: client may be slow", Timeout, attempt(1, false, false, false), false, Fail),
        ];
        for (name, failure, a, mark_down, action) in cases {
            let d = decide(*failure, a);
            assert_eq!(
                d,
                Decision {
                    mark_down: *mark_down,
                    action: *action
                },
                "{name}"
            );
        }
    }

    #[test]
    fn a_single_attempt_pool_never_moves() {
        for f in [Failure::Connect, Failure::NotSent, Failure::Upstream] {
            let a = Attempt {
                max: 1,
                ..attempt(1, true, false, true)
            };
            assert_eq!(decide(f, &a).action, Action::Fail, "{f:?}");
        }
    }
}
