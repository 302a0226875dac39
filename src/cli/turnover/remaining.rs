//! What is left on a node being turned over, read from the admin API's status report, and how
//! a turnover says it: the progress line, the closing line, and the errors that stop it. No I/O
//! here; [`crate::cli::turnover`] polls and prints.

use std::time::Duration;

use crate::control::api::StatusReport;
use crate::core::node_state::NodeState;

/// What is left on the node, summed over the pools that have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    pub live_sessions: u64,
    pub in_flight: u64,
    /// Every node of the route reports `drained` (draining or disabled, no live session).
    pub drained: bool,
}

impl Left {
    /// Nothing left: the node can be restarted.
    pub fn done(&self) -> bool {
        self.drained && self.live_sessions == 0 && self.in_flight == 0
    }
}

/// Why a turnover did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TurnoverError {
    /// The timeout came first; what was left at the last poll.
    #[error(
        "timed out after {}: {route} still has {}, {} in flight; it stays {} \
         (stickyroute ctl activate {route} puts it back)",
        elapsed_text(*.elapsed),
        plural(.left.live_sessions, "live session", "live sessions"),
        .left.in_flight,
        .state.as_str()
    )]
    TimedOut {
        route: String,
        state: NodeState,
        left: Left,
        elapsed: Duration,
    },
    #[error("no node {route:?}{} in the balancer's status", in_pool(.pool))]
    NoSuchNode { route: String, pool: Option<String> },
    /// Someone else changed the node's state while we waited.
    #[error(
        "{route} is now {state} in pool {pool} (changed by someone else?): turnover stopped; \
         the node was not activated"
    )]
    StateChanged {
        route: String,
        pool: String,
        state: String,
    },
}

fn in_pool(pool: &Option<String>) -> String {
    pool.as_ref()
        .map_or_else(String::new, |p| format!(" in pool {p:?}"))
}

/// Reads what is left on `route` from a status report. `want`: the state turnover set.
pub fn left(
    s: &StatusReport,
    route: &str,
    pool: Option<&str>,
    want: NodeState,
) -> Result<Left, TurnoverError> {
    let mut found = false;
    let mut out = Left {
        live_sessions: 0,
        in_flight: 0,
        drained: true,
    };
    for p in s.pools.iter().filter(|p| pool.is_none_or(|w| w == p.name)) {
        for n in p.nodes.iter().filter(|n| n.route == route) {
            found = true;
            if n.state != want.as_str() {
                return Err(TurnoverError::StateChanged {
                    route: route.to_string(),
                    pool: p.name.clone(),
                    state: n.state.clone(),
                });
            }
            out.live_sessions += n.live_sessions;
            out.in_flight += n.in_flight;
            out.drained &= n.drained;
        }
    }
    if !found {
        return Err(TurnoverError::NoSuchNode {
            route: route.to_string(),
            pool: pool.map(str::to_string),
        });
    }
    Ok(out)
}

/// `1m05s`-style elapsed time, to the second.
pub fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The progress line: `jvm2 disabled: 3 live sessions, 1 in flight, 12s elapsed`.
pub fn progress_line(route: &str, state: NodeState, l: &Left, elapsed: Duration) -> String {
    format!(
        "{route} {}: {}, {} in flight, {} elapsed",
        state.as_str(),
        plural(l.live_sessions, "live session", "live sessions"),
        l.in_flight,
        elapsed_text(elapsed)
    )
}

/// The closing line of a turnover that finished.
pub fn done_text(route: &str, elapsed: Duration) -> String {
    format!(
        "{route} can be restarted now (after {}); then: stickyroute ctl activate {route}\n",
        elapsed_text(elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{NodeReport, PoolReport, RegistryReport};

    fn node(route: &str, state: &str, live: u64, in_flight: u64) -> NodeReport {
        NodeReport {
            route: route.into(),
            address: "127.0.0.1:1".into(),
            domain: String::new(),
            weight: 1,
            state: state.into(),
            config_state: "active".into(),
            health: "up".into(),
            in_flight,
            requests: 0,
            failovers_in: 0,
            failovers_out: 0,
            connect_errors: 0,
            upstream_errors: 0,
            live_sessions: live,
            drained: state != "active" && state != "standby" && live == 0,
            last_error: None,
            source: "file".into(),
            leaving: false,
        }
    }

    fn report(pools: Vec<(&str, Vec<NodeReport>)>) -> StatusReport {
        serde_json::from_value(serde_json::json!({
            "version": "0",
            "config": "x",
            "registry": RegistryReport { sessions: 0, max_sessions: 1, rejected: 0 },
            "pools": pools.into_iter().map(|(name, nodes)| PoolReport {
                name: name.into(),
                binder: "translate".into(),
                health_checks: false,
                discovery: None,
                nodes,
            }).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn left_sums_over_pools_and_honours_pool() {
        let s = report(vec![
            (
                "a",
                vec![node("jvm1", "disabled", 2, 1), node("jvm2", "active", 9, 9)],
            ),
            ("b", vec![node("jvm1", "disabled", 3, 0)]),
        ]);
        let d = NodeState::Disabled;
        let all = left(&s, "jvm1", None, d).unwrap();
        assert_eq!(
            (all.live_sessions, all.in_flight, all.drained),
            (5, 1, false)
        );
        assert!(!all.done());
        let b = left(&s, "jvm1", Some("b"), d).unwrap();
        assert_eq!((b.live_sessions, b.in_flight), (3, 0));
        assert!(matches!(
            left(&s, "jvm9", None, d),
            Err(TurnoverError::NoSuchNode { .. })
        ));
        assert!(matches!(
            left(&s, "jvm2", Some("b"), d),
            Err(TurnoverError::NoSuchNode { .. })
        ));
        // Someone activated it meanwhile.
        let e = left(&s, "jvm2", None, d).unwrap_err();
        assert!(
            e.to_string().contains("jvm2 is now active in pool a"),
            "{e}"
        );
    }

    #[test]
    fn done_needs_no_session_no_request_and_drained() {
        let s = report(vec![("a", vec![node("jvm1", "draining", 0, 1)])]);
        let l = left(&s, "jvm1", None, NodeState::Draining).unwrap();
        assert!(l.drained && !l.done(), "a request in flight holds it");
        let s = report(vec![("a", vec![node("jvm1", "draining", 0, 0)])]);
        assert!(left(&s, "jvm1", None, NodeState::Draining).unwrap().done());
        // `drained` is what the API says, even when the counts are 0 (another balancer of a
        // cluster may still see sessions).
        let mut n = node("jvm1", "draining", 0, 0);
        n.drained = false;
        let s = report(vec![("a", vec![n])]);
        assert!(!left(&s, "jvm1", None, NodeState::Draining).unwrap().done());
    }

    #[test]
    fn lines_and_times() {
        assert_eq!(elapsed_text(Duration::from_millis(999)), "0s");
        assert_eq!(elapsed_text(Duration::from_secs(65)), "1m05s");
        assert_eq!(elapsed_text(Duration::from_secs(3725)), "1h02m05s");
        let l = Left {
            live_sessions: 1,
            in_flight: 0,
            drained: false,
        };
        assert_eq!(
            progress_line("jvm2", NodeState::Disabled, &l, Duration::from_secs(12)),
            "jvm2 disabled: 1 live session, 0 in flight, 12s elapsed"
        );
    }
}
